//! Jobs to `generateContent` requests and answers back, as pure functions.
//! Error bodies and the Files API resource are read in `status`.

use super::wire::{
    Blob, Content, FileData, GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part, PartData, Role,
    UsageMetadata, VideoMetadata,
};
use crate::provider::{usage, Cause, ErrorClass, Job, JobInput, ProviderError};
use crate::schema::{Task, TimeRange};
use crate::timecode;

#[cfg(test)]
use super::wire::parse_proto_duration;
pub(super) use super::wire::MediaResolution;

/// Between the prompt and a text input, which travel as one part.
pub(super) const TEXT_SEPARATOR: &str = "\n\n";

/// The densest sampling the API takes (`VideoMetadata.fps` is in (0, 24]).
pub(super) const MAX_FPS: f64 = 24.0;

/// Finish and block reasons that mean a content policy withheld the answer.
const POLICY_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "RECITATION",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
];

/// How the video itself travels, chosen by the caller from its size.
#[derive(Debug, Clone, Copy)]
pub(super) enum VideoPart<'a> {
    /// The bytes inside the request, as their base64 (standard alphabet),
    /// or a marker the caller puts it in place of.
    Inline { mime_type: &'a str, base64: &'a str },
    /// A Files API upload (or a URL the API fetches), by its URI.
    File { mime_type: &'a str, uri: &'a str },
}

/// How a provider's requests are shaped, settled once from its profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RequestOptions {
    /// The API's own default when absent.
    pub media_resolution: Option<MediaResolution>,
    /// Frames per second sampled from a native video; the API's 1 when absent.
    pub fps: Option<f64>,
    /// The model can be held to a response schema (timeline and find answers).
    pub json_schema: bool,
}

/// `low`, `medium` or `high`, as a profile writes it.
pub(super) fn media_resolution(text: &str) -> Option<MediaResolution> {
    match text.trim().to_ascii_lowercase().as_str() {
        "low" => Some(MediaResolution::Low),
        "medium" => Some(MediaResolution::Medium),
        "high" => Some(MediaResolution::High),
        _ => None,
    }
}

/// Prompt tokens by modality, as `promptTokensDetails` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ModalityTokens {
    pub text: u64,
    pub image: u64,
    pub video: u64,
    pub audio: u64,
    /// Documents and modalities added later.
    pub other: u64,
}

impl ModalityTokens {
    pub fn total(&self) -> u64 {
        [self.image, self.video, self.audio, self.other].into_iter().fold(self.text, u64::saturating_add)
    }
}

/// Tokens as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenUsage {
    /// All prompt tokens, cached ones included.
    pub prompt: u64,
    pub candidates: u64,
    /// Thinking tokens, billed as output.
    pub thoughts: u64,
    /// Prompt tokens served from a context cache.
    pub cached: u64,
    pub prompt_by_modality: ModalityTokens,
}

impl TokenUsage {
    pub fn input_tokens(&self) -> u64 {
        self.prompt.max(self.prompt_by_modality.total())
    }

    pub fn output_tokens(&self) -> u64 {
        self.candidates.saturating_add(self.thoughts)
    }
}

/// What a successful answer says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedAnswer {
    pub text: String,
    /// Absent when the answer reports none or one that cannot be used; the
    /// estimate then stands.
    pub usage: Option<TokenUsage>,
    /// Why the reported usage could not be used (`promptTokenCount = -5`).
    pub unusable_usage: Option<String>,
    /// The model that answered, e.g. `gemini-2.5-flash`.
    pub model_version: Option<String>,
    /// The answer stopped at the output cap (`MAX_TOKENS`).
    pub truncated: bool,
}

/// The text part that precedes each frame.
pub(super) use crate::provider::frame_label;

/// Timeline and find answers are held to the timeline schema, when the model allows.
pub(super) fn structured(job: &Job, options: &RequestOptions) -> bool {
    options.json_schema && matches!(job.task, Task::Timeline | Task::Find { .. })
}

/// The request for `job`: one user turn with the media first (the video, or
/// each frame after its time), then the prompt.
///
/// # Errors
/// An RGB frame is for another backend (fall back). A job with no output cap,
/// no frames, a video job without its [`VideoPart`], a part for a job that
/// has no video, a range outside the video or an fps outside (0, 24] is a
/// mistake upstream (fatal).
pub(super) fn build_request(
    job: &Job,
    video: Option<VideoPart<'_>>,
    options: &RequestOptions,
    provider: &str,
) -> Result<GenerateContentRequest, ProviderError> {
    let fatal = |message: String| ProviderError::new(provider, ErrorClass::Fatal, message);
    if job.max_output_tokens == 0 {
        return Err(fatal("the job has no output cap (max_output_tokens = 0)".into()));
    }
    let mut parts = Vec::new();
    match (&job.input, video) {
        (JobInput::Video { range, duration_ms, .. }, Some(video)) => {
            let span = range.or(job.span);
            let metadata = video_metadata(span, *duration_ms, options.fps).map_err(fatal)?;
            let data = match video {
                VideoPart::Inline { mime_type, base64 } => {
                    PartData::InlineData(Blob { mime_type: mime_type.to_string(), data: base64.into() })
                }
                VideoPart::File { mime_type, uri } => {
                    PartData::FileData(FileData { mime_type: mime_type.to_string(), file_uri: uri.to_string() })
                }
            };
            parts.push(Part { data, video_metadata: metadata });
        }
        (JobInput::Video { .. }, None) => return Err(fatal("a video job needs the video's bytes or file URI".into())),
        (JobInput::Audio(_), None) => return Err(crate::provider::no_audio(provider)),
        (_, Some(_)) => return Err(fatal("a video part was given for a job without a video".into())),
        (JobInput::Frames(frames), None) if frames.is_empty() => return Err(fatal("the job has no frames".into())),
        (JobInput::Frames(frames), None) => {
            parts.reserve(2 * frames.len() + 1);
            for frame in frames.iter() {
                let jpeg = crate::provider::jpeg_of(frame, provider)?;
                parts.push(text_part(frame_label(frame.pts_ms)));
                parts.push(Part {
                    data: PartData::InlineData(Blob { mime_type: "image/jpeg".into(), data: jpeg.base64() }),
                    video_metadata: None,
                });
            }
        }
        (JobInput::Text(_), None) => {}
    }
    parts.push(text_part(match &job.input {
        JobInput::Text(text) => format!("{}{TEXT_SEPARATOR}{text}", job.prompt),
        _ => job.prompt.to_string(),
    }));
    let schema = structured(job, options).then(|| super::schema::gemini_schema(&crate::timeline::json_schema()));
    Ok(GenerateContentRequest {
        contents: vec![Content { role: Role::User, parts }],
        generation_config: GenerationConfig {
            max_output_tokens: Some(job.max_output_tokens),
            response_mime_type: schema.is_some().then(|| "application/json".to_string()),
            response_schema: schema,
            media_resolution: options.media_resolution,
        },
    })
}

fn text_part(text: String) -> Part {
    Part { data: PartData::Text(text), video_metadata: None }
}

/// Offsets for the part of the file to watch (none for the whole file), and the fps.
fn video_metadata(
    span: Option<TimeRange>,
    duration_ms: u64,
    fps: Option<f64>,
) -> Result<Option<VideoMetadata>, String> {
    let mut metadata = VideoMetadata::default();
    if let Some(fps) = fps {
        if !(fps > 0.0 && fps <= MAX_FPS) {
            return Err(format!("fps {fps} is outside the API's range (0, {MAX_FPS}]"));
        }
        metadata.fps = Some(fps);
    }
    if let Some(span) = span {
        if span.end_ms <= span.start_ms {
            return Err(format!(
                "the range {}–{} is empty",
                timecode::format(span.start_ms),
                timecode::format(span.end_ms)
            ));
        }
        let known = duration_ms > 0;
        if known && span.start_ms >= duration_ms {
            return Err(format!(
                "the range starts at {}, after the video's end {}",
                timecode::format(span.start_ms),
                timecode::format(duration_ms)
            ));
        }
        if span.start_ms > 0 {
            metadata.start_offset = Some(proto_duration(span.start_ms));
        }
        if !known || span.end_ms < duration_ms {
            metadata.end_offset = Some(proto_duration(span.end_ms));
        }
    }
    Ok((metadata != VideoMetadata::default()).then_some(metadata))
}

/// A `google.protobuf.Duration` in JSON, to the millisecond: `40s`, `12.5s`, `0.001s`.
pub(super) fn proto_duration(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    if milli == 0 {
        return format!("{secs}s");
    }
    let frac = format!("{milli:03}");
    format!("{secs}.{}s", frac.trim_end_matches('0'))
}

/// Read a successful (2xx) answer.
///
/// # Errors
/// A body that is not JSON, or not an answer, is transient (a garbled reply).
/// A blocked prompt or a withheld answer falls back with a message that starts
/// `content policy:`; so do an empty answer and an error body inside a 200.
/// All of them may have been billed.
pub(crate) fn parse_response(body: &[u8], job: &Job, provider: &str) -> Result<ParsedAnswer, ProviderError> {
    let fail = |class, message: String| {
        let mut err = ProviderError::new(provider, class, message).with_cause(Cause::BadAnswer);
        err.body = Some(body_start(body));
        err.maybe_billed = true;
        err
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| fail(ErrorClass::Transient, format!("the answer is not JSON: {e}")))?;
    if value.get("candidates").is_none() {
        if let Some(api) = super::status::parse_error_body(body) {
            return Err(fail(ErrorClass::FallBack, format!("error in a success answer: {}", api.summary())));
        }
    }
    let answer: GenerateContentResponse = serde_json::from_value(value)
        .map_err(|e| fail(ErrorClass::Transient, format!("the answer is not a generateContent answer: {e}")))?;
    let (usage, unusable_usage) = match answer.usage_metadata.as_ref().map(token_usage) {
        Some(Ok(usage)) => (Some(usage), None),
        Some(Err(what)) => (None, Some(what)),
        None => (None, None),
    };
    let blocked = answer.prompt_feedback.and_then(|f| f.block_reason).filter(|r| r != "BLOCK_REASON_UNSPECIFIED");
    if let Some(reason) = blocked {
        let err = fail(ErrorClass::FallBack, format!("content policy: the prompt was blocked ({reason})"));
        return Err(err.with_cause(Cause::ContentPolicy));
    }
    let Some(candidate) = answer.candidates.into_iter().next() else {
        return Err(fail(ErrorClass::FallBack, "the answer has no candidates".into()));
    };
    let finish = candidate.finish_reason.unwrap_or_default();
    if POLICY_REASONS.contains(&finish.as_str()) {
        let err = fail(ErrorClass::FallBack, format!("content policy: the answer was withheld ({finish})"));
        return Err(err.with_cause(Cause::ContentPolicy));
    }
    let text: String =
        candidate.content.unwrap_or_default().parts.into_iter().filter(|p| !p.thought).filter_map(|p| p.text).collect();
    let truncated = finish == "MAX_TOKENS";
    if text.trim().is_empty() {
        let why = if truncated {
            format!("the output cap of {} tokens was spent before any text", job.max_output_tokens)
        } else {
            format!("finishReason {finish:?}")
        };
        return Err(fail(ErrorClass::FallBack, format!("the answer is empty ({why})")));
    }
    Ok(ParsedAnswer { text, usage, unusable_usage, model_version: answer.model_version, truncated })
}

fn token_usage(meta: &UsageMetadata) -> Result<TokenUsage, String> {
    let mut by = ModalityTokens::default();
    for detail in &meta.prompt_tokens_details {
        let [count] = usage::counts([("promptTokensDetails.tokenCount", &detail.token_count)])?;
        let slot = match detail.modality.as_str() {
            "TEXT" => &mut by.text,
            "IMAGE" => &mut by.image,
            "VIDEO" => &mut by.video,
            "AUDIO" => &mut by.audio,
            _ => &mut by.other,
        };
        *slot = slot.saturating_add(count);
    }
    let [prompt, candidates, thoughts, cached] = usage::counts([
        ("promptTokenCount", &meta.prompt_token_count),
        ("candidatesTokenCount", &meta.candidates_token_count),
        ("thoughtsTokenCount", &meta.thoughts_token_count),
        ("cachedContentTokenCount", &meta.cached_content_token_count),
    ])?;
    Ok(TokenUsage { prompt, candidates, thoughts, cached, prompt_by_modality: by })
}

pub(super) fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(ProviderError::BODY_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;
