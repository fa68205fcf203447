//! Jobs to Messages API requests and answers back, as pure functions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::{
    Block, ContentBlock, ErrorBody, ImageSource, Message, MessageResponse, MessagesRequest, Role, Tool, ToolChoice,
};
use crate::provider::http::QuotaLeft;
use crate::provider::{usage, Cause, ErrorClass, ErrorFacts, Job, JobInput, ProviderError};
use crate::timecode;

/// Between the prompt and a text input, which travel as one text block.
pub(super) const TEXT_SEPARATOR: &str = "\n\n";

/// The tool whose input is a timeline or find answer.
pub(super) const TOOL_NAME: &str = "timeline";
const TOOL_DESCRIPTION: &str = "Record the events seen, each with its start and end time and what happens.";

/// The API's own limits, as the profile states them for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub images_per_request: u32,
    pub request_bytes: u64,
}

impl Limits {
    /// Images up to 8000 px a side; above 20 images in a request, 2000 px.
    const MAX_SIDE: u32 = 8000;
    const MAX_SIDE_MANY: u32 = 2000;
    const MANY_IMAGES: usize = 20;
}

/// How a provider's requests are shaped, settled once from its profile.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RequestOptions {
    /// Timeline and find answers go through the tool of this schema.
    pub schema: serde_json::Value,
    /// Make the model call the tool (`tool_choice: tool`); `false` offers it
    /// (`auto`), for models that refuse a forced tool.
    pub force_tool: bool,
}

/// Tokens as the API reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenUsage {
    /// The prompt tokens neither written to nor read from the cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cache writes with a 5-minute lifetime (all of them, when the API
    /// does not split them by lifetime).
    pub cache_write_5m_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub cache_read_tokens: u64,
}

impl TokenUsage {
    /// Every prompt token, however it was billed.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_write_5m_tokens + self.cache_write_1h_tokens + self.cache_read_tokens
    }
}

/// What a successful answer says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedAnswer {
    /// The answer's text, or the JSON input of its tool call.
    pub text: String,
    /// Absent when none was reported or it cannot be used; the estimate then stands.
    pub usage: Option<TokenUsage>,
    /// Why the reported usage could not be used (`input_tokens = -5`).
    pub unusable_usage: Option<String>,
    /// The model that answered, as the API names it.
    pub model: Option<String>,
    /// `stop_reason: "max_tokens"`: the answer stopped at the output cap.
    pub truncated: bool,
    /// `stop_reason: "refusal"`, and why when the API says.
    pub refusal: Option<String>,
}

/// An error body's `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ApiError {
    pub kind: Option<String>,
    pub message: String,
}

impl ApiError {
    /// One line for a person: the message, then the type.
    pub fn summary(&self) -> String {
        match self.kind.as_deref().filter(|k| !k.is_empty()) {
            Some(kind) => format!("{} ({kind})", self.message),
            None => self.message.clone(),
        }
    }
}

/// The text block that precedes each frame.
pub(super) use crate::provider::frame_label;

/// The request for `job` on `model`: one user message, the prompt first, then
/// each frame as a text block with its time and a base64 JPEG image block.
/// A structured job (timeline, find) offers the one tool of `options`.
///
/// # Errors
/// A video input or an RGB frame is for another backend (fall back); a job
/// without frames or without an output cap is bad input (fatal).
pub(super) fn build_request(
    job: &Job,
    model: &str,
    options: &RequestOptions,
    provider: &str,
) -> Result<MessagesRequest, ProviderError> {
    if job.max_output_tokens == 0 {
        return Err(ProviderError::new(
            provider,
            ErrorClass::Fatal,
            "the job has no output cap (max_output_tokens = 0)",
        ));
    }
    let content = match &job.input {
        JobInput::Text(text) => vec![Block::Text { text: format!("{}{TEXT_SEPARATOR}{text}", job.prompt) }],
        JobInput::Video { .. } => {
            return Err(ProviderError::new(
                provider,
                ErrorClass::FallBack,
                "the Anthropic Messages API takes frames, not a video file",
            ));
        }
        JobInput::Audio(_) => return Err(crate::provider::no_audio(provider)),
        JobInput::Frames(frames) if frames.is_empty() => {
            return Err(ProviderError::new(provider, ErrorClass::Fatal, "the job has no frames"));
        }
        JobInput::Frames(frames) => {
            let mut blocks = Vec::with_capacity(1 + 2 * frames.len());
            blocks.push(Block::Text { text: job.prompt.to_string() });
            for frame in frames.iter() {
                let jpeg = crate::provider::jpeg_of(frame, provider)?;
                blocks.push(Block::Text { text: frame_label(frame.pts_ms) });
                blocks.push(Block::Image {
                    source: ImageSource { kind: "base64", media_type: "image/jpeg", data: jpeg.base64() },
                });
            }
            blocks
        }
    };
    let (tools, tool_choice) = if job.structured() {
        let tool =
            Tool { name: TOOL_NAME.into(), description: TOOL_DESCRIPTION.into(), input_schema: options.schema.clone() };
        let choice = if options.force_tool { ToolChoice::Tool { name: TOOL_NAME.into() } } else { ToolChoice::Auto };
        (vec![tool], Some(choice))
    } else {
        (Vec::new(), None)
    };
    Ok(MessagesRequest {
        model: model.to_string(),
        max_tokens: job.max_output_tokens,
        messages: vec![Message { role: Role::User, content }],
        tools,
        tool_choice,
    })
}

/// Refuse, before anything is sent, a job over the API's limits: too many
/// images, an image too large, or a request body over the size cap.
///
/// # Errors
/// Which limit, with the job's figure and the limit (fall back: another
/// provider may take it; nothing was sent).
pub(super) fn check_limits(job: &Job, limits: Limits, provider: &str) -> Result<(), ProviderError> {
    let JobInput::Frames(frames) = &job.input else { return Ok(()) };
    let refuse = |message: String| {
        let mut err = ProviderError::new(provider, ErrorClass::FallBack, message);
        err.not_sent = true;
        err
    };
    if frames.len() as u64 > u64::from(limits.images_per_request) {
        return Err(refuse(format!(
            "{} images in one request is over the model's limit of {}",
            frames.len(),
            limits.images_per_request
        )));
    }
    let side = if frames.len() > Limits::MANY_IMAGES { Limits::MAX_SIDE_MANY } else { Limits::MAX_SIDE };
    if let Some(frame) = frames.iter().find(|f| f.width > side || f.height > side) {
        return Err(refuse(format!(
            "frame {} is {}x{} px, over the API's {side}x{side} px for {} images in a request",
            frame.index,
            frame.width,
            frame.height,
            frames.len()
        )));
    }
    let bytes = request_bytes(job);
    if bytes > limits.request_bytes {
        return Err(refuse(format!(
            "the request would be about {bytes} bytes, over the API's limit of {} bytes",
            limits.request_bytes
        )));
    }
    Ok(())
}

/// The request body's size, from above: each image's base64 and its
/// framing, and the text.
pub(super) fn request_bytes(job: &Job) -> u64 {
    const FRAMING: u64 = 160;
    let text = job.prompt.len() as u64 + FRAMING;
    match &job.input {
        JobInput::Frames(frames) => {
            text + frames
                .iter()
                .map(|f| (f.data.bytes().len() as u64).div_ceil(3) * 4 + frame_label(f.pts_ms).len() as u64 + FRAMING)
                .sum::<u64>()
        }
        JobInput::Text(t) => text + t.len() as u64,
        JobInput::Video { .. } | JobInput::Audio(_) => text,
    }
}

/// Read a successful (2xx) answer. A refusal is returned as such, with its
/// usage: the caller bills it.
///
/// # Errors
/// A body that is not a Messages answer is transient (a garbled reply); an
/// error body or an empty answer falls back. All of them may have been billed.
pub(crate) fn parse_response(body: &[u8], job: &Job, provider: &str) -> Result<ParsedAnswer, ProviderError> {
    let fail = |class, message: String| {
        let mut err = ProviderError::new(provider, class, message);
        err.body = Some(body_start(body));
        err.maybe_billed = true;
        err
    };
    let answer = match serde_json::from_slice::<MessageResponse>(body) {
        Ok(answer) if answer.kind.as_deref() != Some("error") => answer,
        parsed => {
            if let Some(api) = parse_error_body(body) {
                return Err(fail(ErrorClass::FallBack, format!("error in a success answer: {}", api.summary())));
            }
            let why = parsed.err().map_or_else(|| "no message".to_string(), |e| e.to_string());
            return Err(fail(ErrorClass::Transient, format!("the answer is not a Messages answer: {why}")));
        }
    };
    let (usage, unusable_usage) = match answer.usage.as_ref().map(read_usage) {
        Some(Ok(usage)) => (Some(usage), None),
        Some(Err(what)) => (None, Some(what)),
        None => (None, None),
    };
    let stop = answer.stop_reason.as_deref().unwrap_or("");
    let refusal = (stop == "refusal").then(|| {
        let details = answer.stop_details.clone().unwrap_or_default();
        [details.category, details.explanation].into_iter().flatten().collect::<Vec<_>>().join(": ")
    });
    // The tool's input is the answer when the model called it; else its text.
    let tool_input = answer.content.iter().find_map(|b| match b {
        ContentBlock::ToolUse { name, input } if name == TOOL_NAME => Some(input.to_string()),
        _ => None,
    });
    let text = tool_input.unwrap_or_else(|| {
        answer
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    });
    if refusal.is_none() && text.trim().is_empty() {
        let why = if stop == "max_tokens" {
            format!("the output cap of {} tokens was spent before any text", job.max_output_tokens)
        } else {
            format!("stop_reason {stop:?}")
        };
        return Err(fail(ErrorClass::FallBack, format!("the answer is empty ({why})")));
    }
    Ok(ParsedAnswer { text, usage, unusable_usage, model: answer.model, truncated: stop == "max_tokens", refusal })
}

fn read_usage(u: &super::wire::WireUsage) -> Result<TokenUsage, String> {
    let split = u.cache_creation.clone().unwrap_or_default();
    let [input_tokens, output_tokens, written, cache_read_tokens, five, hour] = usage::counts([
        ("input_tokens", &u.input_tokens),
        ("output_tokens", &u.output_tokens),
        ("cache_creation_input_tokens", &u.cache_creation_input_tokens),
        ("cache_read_input_tokens", &u.cache_read_input_tokens),
        ("cache_creation.ephemeral_5m_input_tokens", &split.ephemeral_5m_input_tokens),
        ("cache_creation.ephemeral_1h_input_tokens", &split.ephemeral_1h_input_tokens),
    ])?;
    // Writes the split does not account for are taken at the 5-minute lifetime, the API's default.
    let cache_write_1h_tokens = hour.min(written.max(five + hour));
    let cache_write_5m_tokens = written.max(five + hour) - cache_write_1h_tokens;
    Ok(TokenUsage { input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens })
}

/// The error a body describes, when it is one.
pub(super) fn parse_error_body(body: &[u8]) -> Option<ApiError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(ApiError { kind: parsed.error.kind, message: parsed.error.message.unwrap_or_default() })
}

/// An error body's facts, for the one classification of failed answers.
pub(super) fn error_facts(body: &[u8]) -> Option<ErrorFacts> {
    parse_error_body(body).map(|api| ErrorFacts { code: api.kind, message: api.message, ..ErrorFacts::default() })
}

/// The error for a refusal: the model declined the content, so another
/// provider may take it; what it billed comes with it.
pub(super) fn refusal_error(provider: &str, why: &str) -> ProviderError {
    let why = if why.is_empty() { String::new() } else { format!(": {why}") };
    let mut err =
        ProviderError::new(provider, ErrorClass::FallBack, format!("the model refused (stop_reason \"refusal\"){why}"));
    err.maybe_billed = true;
    err.with_cause(Cause::ContentPolicy)
}

/// Quota left, from `anthropic-ratelimit-*` headers (remaining, limit, and
/// the reset as an RFC 3339 time), in the shape the other protocols read:
/// requests, and the tightest token bucket (`tokens`, else input tokens).
pub(super) fn quota<'a>(header: impl Fn(&str) -> Option<&'a str>, now: SystemTime) -> QuotaLeft {
    let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    let reset = |name: &str| {
        let at = parse_rfc3339(header(name)?)?;
        Some(timecode::capped(at.duration_since(now).unwrap_or(Duration::ZERO)))
    };
    let tokens = if header("anthropic-ratelimit-tokens-remaining").is_some() { "tokens" } else { "input-tokens" };
    QuotaLeft {
        requests: number("anthropic-ratelimit-requests-remaining"),
        tokens: number(&format!("anthropic-ratelimit-{tokens}-remaining")),
        requests_limit: number("anthropic-ratelimit-requests-limit"),
        tokens_limit: number(&format!("anthropic-ratelimit-{tokens}-limit")),
        requests_reset: reset("anthropic-ratelimit-requests-reset"),
        tokens_reset: reset(&format!("anthropic-ratelimit-{tokens}-reset")),
    }
}

/// `2026-12-04T18:09:58Z`, with optional fractions and a numeric offset.
pub(super) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    // At most four digits a field: no field of a real time is longer, and no sum below can overflow.
    let digits = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date = date.splitn(3, '-');
    let (year, month, day) = (digits(date.next()?)?, digits(date.next()?)?, digits(date.next()?)?);
    let (clock, offset_s) = match time.find(['Z', 'z', '+', '-']) {
        Some(at) => {
            let zone = &time[at..];
            let offset = match zone {
                "Z" | "z" => 0,
                _ => {
                    let (h, m) = zone[1..].split_once(':')?;
                    let minutes = digits(h)? * 60 + digits(m)?;
                    if zone.starts_with('-') {
                        -minutes * 60
                    } else {
                        minutes * 60
                    }
                }
            };
            (&time[..at], offset)
        }
        None => return None,
    };
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock = clock.splitn(3, ':');
    let (hour, minute, second) = (digits(clock.next()?)?, digits(clock.next()?)?, digits(clock.next()?)?);
    let in_range = (1970..=9999).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
    if !in_range || hour > 23 || minute > 59 || second > 60 || offset_s.abs() > 86_400 {
        return None;
    }
    let nanos = match fraction {
        "" => 0,
        f if f.bytes().all(|b| b.is_ascii_digit()) => {
            f.chars().chain("000000000".chars()).take(9).collect::<String>().parse().ok()?
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
