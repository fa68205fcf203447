//! Jobs to Chat Completions requests and answers back, as pure functions.

use super::video::{Knob, VideoData, VideoOptions};
use super::wire::{
    AnswerContent, Base64, ChatRequest, ChatResponse, Content, ErrorBody, ErrorDetail, FileData, ImageUrl, InputVideo,
    JpegDataUrl, JsonSchema, Message, MmProcessorKwargs, Part, ResponseFormat, Role, VideoDataUrl, VideoUrl,
};
use crate::config::{ImageDetail, VideoPart, VideoSampling};
use crate::provider::{usage, Cause, ErrorClass, ErrorFacts, Job, JobInput, ProviderError};
use crate::timecode;

/// Between the prompt and a text input, which travel as one string.
pub(super) const TEXT_SEPARATOR: &str = "\n\n";

/// Which field carries the output cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum TokenLimitField {
    /// `max_completion_tokens`: OpenAI, and required by its reasoning models.
    #[default]
    MaxCompletionTokens,
    /// `max_tokens`: servers that predate the new name.
    MaxTokens,
}

/// A JSON schema the answer is held to (`strict` structured output).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ResponseSchema {
    /// `a-z`, `A-Z`, `0-9`, `_` and `-`, at most 64 characters.
    pub name: String,
    pub schema: serde_json::Value,
}

/// How a provider's requests are shaped, settled once from its profile.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RequestOptions {
    pub detail: ImageDetail,
    pub token_limit: TokenLimitField,
    pub response_schema: Option<ResponseSchema>,
}

impl Default for RequestOptions {
    /// The API's own defaults: `auto` detail, `max_completion_tokens`, free text.
    fn default() -> Self {
        Self { detail: ImageDetail::Auto, token_limit: TokenLimitField::default(), response_schema: None }
    }
}

/// Tokens as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenUsage {
    /// All prompt tokens, the cached ones included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

/// What a successful answer says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedAnswer {
    pub text: String,
    /// Absent when the server reports none or one that cannot be used; the
    /// estimate then stands.
    pub usage: Option<TokenUsage>,
    /// Why the reported usage could not be used (`prompt_tokens = -5`).
    pub unusable_usage: Option<String>,
    /// The model that answered, as the provider names it.
    pub model: Option<String>,
    /// The answer stopped at the output cap.
    pub truncated: bool,
}

/// An error body, `{"error": {"message", "type", "code", "param"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ApiError {
    pub message: String,
    pub kind: Option<String>,
    pub code: Option<String>,
    pub param: Option<String>,
}

impl ApiError {
    /// One line for a person: the message, then the code or type.
    pub fn summary(&self) -> String {
        match self.code.as_deref().or(self.kind.as_deref()) {
            Some(tag) if !tag.is_empty() => format!("{} ({tag})", self.message),
            _ => self.message.clone(),
        }
    }
}

/// The text part that precedes each frame.
pub(super) use crate::provider::frame_label;

/// The request for `job` on `model`: one user message, the prompt first, then
/// each frame as its time and its JPEG in a data URL.
///
/// # Errors
/// A video input or a frame that is not JPEG is for another backend (fall
/// back); a job without frames or without an output cap is bad input (fatal).
pub(super) fn build_request(
    job: &Job,
    model: &str,
    options: &RequestOptions,
    provider: &str,
) -> Result<ChatRequest, ProviderError> {
    has_cap(job, provider)?;
    let content = match &job.input {
        JobInput::Text(text) => Content::Text(format!("{}{TEXT_SEPARATOR}{text}", job.prompt)),
        JobInput::Video { .. } => {
            return Err(ProviderError::new(
                provider,
                ErrorClass::FallBack,
                "this model takes frames, not a video file (its profile has no native_video = true)",
            ));
        }
        JobInput::Audio(_) => return Err(crate::provider::no_audio(provider)),
        JobInput::Frames(frames) if frames.is_empty() => {
            return Err(ProviderError::new(provider, ErrorClass::Fatal, "the job has no frames"));
        }
        JobInput::Frames(frames) => {
            let mut parts = Vec::with_capacity(1 + 2 * frames.len());
            parts.push(Part::Text { text: job.prompt.to_string() });
            for frame in frames.iter() {
                let jpeg = crate::provider::jpeg_of(frame, provider)?;
                parts.push(Part::Text { text: frame_label(frame.pts_ms) });
                let url = JpegDataUrl::of(jpeg);
                parts.push(Part::ImageUrl { image_url: ImageUrl { url, detail: options.detail } });
            }
            Content::Parts(parts)
        }
    };
    Ok(request(job, model, options, content))
}

/// The request that sends `job`'s video itself, in the part `video_options`
/// names, the prompt first, with the sampling knob the server takes.
///
/// # Errors
/// A job that is not a video, or one with a time range (this protocol has no
/// offsets: the range must arrive cut), falls back; a job without an output
/// cap is bad input (fatal).
pub(super) fn build_video_request(
    job: &Job,
    video: &VideoData,
    video_options: &VideoOptions,
    model: &str,
    options: &RequestOptions,
    provider: &str,
) -> Result<ChatRequest, ProviderError> {
    has_cap(job, provider)?;
    let sampled = match &job.input {
        JobInput::Video { range: Some(range), .. } => {
            return Err(ProviderError::new(
                provider,
                ErrorClass::FallBack,
                format!(
                    "this server takes a video whole, without offsets: {}..{} must be cut out first",
                    timecode::format(range.start_ms),
                    timecode::format(range.end_ms)
                ),
            ));
        }
        _ => video_options
            .sample(job)
            .ok_or_else(|| ProviderError::new(provider, ErrorClass::FallBack, "a video request needs a video job"))?,
    };
    let url = || VideoDataUrl { mime: video.mime, base64: Base64(video.base64.clone()) };
    let part = match video_options.part {
        VideoPart::VideoUrl => Part::VideoUrl { video_url: VideoUrl { url: url() } },
        VideoPart::InputVideo => Part::InputVideo { input_video: InputVideo { data: Base64(video.base64.clone()) } },
        VideoPart::File => Part::File { file: FileData { file_data: url(), format: video.mime } },
    };
    let content = Content::Parts(vec![Part::Text { text: job.prompt.to_string() }, part]);
    let mut request = request(job, model, options, content);
    match (video_options.sampling, sampled.knob) {
        (_, Knob::None) | (VideoSampling::None, _) => {}
        (VideoSampling::Fps, Knob::Fps(fps)) => request.fps = Some(fps),
        (VideoSampling::Fps, Knob::NumFrames(_)) => {}
        (VideoSampling::MmProcessorKwargs, Knob::Fps(fps)) => {
            request.mm_processor_kwargs = Some(MmProcessorKwargs { fps: Some(fps), num_frames: None })
        }
        (VideoSampling::MmProcessorKwargs, Knob::NumFrames(n)) => {
            request.mm_processor_kwargs = Some(MmProcessorKwargs { fps: None, num_frames: Some(n) })
        }
    }
    Ok(request)
}

fn has_cap(job: &Job, provider: &str) -> Result<(), ProviderError> {
    if job.max_output_tokens == 0 {
        return Err(ProviderError::new(
            provider,
            ErrorClass::Fatal,
            "the job has no output cap (max_output_tokens = 0)",
        ));
    }
    Ok(())
}

/// One user message of `content`, with the output cap and any schema.
fn request(job: &Job, model: &str, options: &RequestOptions, content: Content) -> ChatRequest {
    let cap = Some(job.max_output_tokens);
    let (max_completion_tokens, max_tokens) = match options.token_limit {
        TokenLimitField::MaxCompletionTokens => (cap, None),
        TokenLimitField::MaxTokens => (None, cap),
    };
    ChatRequest {
        model: model.to_string(),
        messages: vec![Message { role: Role::User, content }],
        max_completion_tokens,
        max_tokens,
        response_format: options.response_schema.as_ref().map(|s| ResponseFormat::JsonSchema {
            json_schema: JsonSchema { name: s.name.clone(), schema: s.schema.clone(), strict: true },
        }),
        fps: None,
        mm_processor_kwargs: None,
    }
}

/// Read a successful (2xx) answer.
///
/// # Errors
/// A body that is not a Chat Completions answer is transient (a garbled
/// reply); an error body, a refusal, a content filter or an empty answer falls
/// back. All of them may have been billed.
pub(crate) fn parse_response(body: &[u8], job: &Job, provider: &str) -> Result<ParsedAnswer, ProviderError> {
    let fail = |class, message: String| {
        let mut err = ProviderError::new(provider, class, message).with_cause(Cause::BadAnswer);
        err.body = Some(body_start(body));
        err.maybe_billed = true;
        err
    };
    // The usual answer parses straight into its type; only an odd one is looked at twice.
    let answer: ChatResponse = match serde_json::from_slice::<ChatResponse>(body) {
        Ok(answer) if !answer.choices.is_empty() => answer,
        _ => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| fail(ErrorClass::Transient, format!("the answer is not JSON: {e}")))?;
            if value.get("choices").is_none() {
                if let Some(api) = parse_error_body(body) {
                    return Err(fail(ErrorClass::FallBack, format!("error in a success answer: {}", api.summary())));
                }
            }
            serde_json::from_value(value)
                .map_err(|e| fail(ErrorClass::Transient, format!("the answer is not a chat completion: {e}")))?
        }
    };
    let counts = answer.usage.map(|u| {
        let cached = u.prompt_tokens_details.map(|d| d.cached_tokens).unwrap_or_default();
        usage::counts([
            ("prompt_tokens", &u.prompt_tokens),
            ("completion_tokens", &u.completion_tokens),
            ("prompt_tokens_details.cached_tokens", &cached),
        ])
    });
    let (usage, unusable_usage) = match counts {
        Some(Ok([input_tokens, output_tokens, cached_input_tokens])) => {
            (Some(TokenUsage { input_tokens, output_tokens, cached_input_tokens }), None)
        }
        Some(Err(what)) => (None, Some(what)),
        None => (None, None),
    };
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(fail(ErrorClass::FallBack, "the answer has no choices".into()));
    };
    let finish = choice.finish_reason.as_deref().unwrap_or("");
    let message = choice.message.unwrap_or_default();
    if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
        let err = fail(ErrorClass::FallBack, format!("the model refused: {refusal}"));
        return Err(err.with_cause(Cause::ContentPolicy));
    }
    if finish == "content_filter" {
        let err = fail(ErrorClass::FallBack, "the answer was withheld by the provider's content filter".into());
        return Err(err.with_cause(Cause::ContentPolicy));
    }
    let text = match message.content {
        Some(AnswerContent::Text(text)) => text,
        Some(AnswerContent::Parts(parts)) => parts.into_iter().filter_map(|p| p.text).collect(),
        None => String::new(),
    };
    if text.trim().is_empty() {
        let why = if finish == "length" {
            format!("the output cap of {} tokens was spent before any text", job.max_output_tokens)
        } else {
            format!("finish_reason {finish:?}")
        };
        return Err(fail(ErrorClass::FallBack, format!("the answer is empty ({why})")));
    }
    Ok(ParsedAnswer { text, usage, unusable_usage, model: answer.model, truncated: finish == "length" })
}

/// The error an error body describes, when it is one.
pub(super) fn parse_error_body(body: &[u8]) -> Option<ApiError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(match parsed.error {
        ErrorDetail::Text(message) => ApiError { message, ..ApiError::default() },
        ErrorDetail::Object(o) => ApiError {
            message: o.message.unwrap_or_default(),
            kind: o.kind,
            code: o.code.and_then(|c| match c {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }),
            param: o.param,
        },
    })
}

/// What an error body says, for the one classification (`error::classify`).
pub(crate) fn error_facts(body: &[u8]) -> Option<ErrorFacts> {
    parse_error_body(body).map(|api| ErrorFacts {
        code: api.code.or(api.kind),
        message: api.message,
        ..ErrorFacts::default()
    })
}

fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(ProviderError::BODY_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;
