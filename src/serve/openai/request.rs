//! Reading a chat completion request: the model, the question and the one
//! video part, in each shape OpenAI-compatible clients send a video in:
//!
//! - `{"type": "video_url", "video_url": {"url": …}}` (vLLM, SGLang, OpenRouter);
//! - `{"type": "file", "file": {"file_data" | "file_id", "format": "video/…",
//!   "video_metadata": {"fps", "start_offset", "end_offset"}}}` (LiteLLM);
//! - `{"type": "input_video", "input_video": {"data" | "url", "format"}}` or a
//!   plain string (llama.cpp's server);
//! - `{"type": "image_url", "image_url": {"url": "data:video/…"}}`.
//!
//! A URL is a `data:video/…;base64,` URL, an http(s) URL, or the id of an
//! upload (`POST /v1/videos`). A part that cannot be used is refused with
//! its place in the request (`messages[0].content[1]`), never skipped.

use axum::http::StatusCode;
use serde_json::Value;

use crate::config::Config;
use crate::schema::{Millis, SamplingMode, SamplingPlan, Task, TimeRange};
use crate::serve::ApiError;

use crate::config::TASKS;

/// The highest `video_metadata.fps` taken (the frame sampler's own limit).
const MAX_FPS: f64 = 120.0;

/// A model the endpoint serves: a task, and the providers it may use (the
/// task's chain when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: String,
    pub task: &'static str,
    pub chain: Vec<String>,
}

/// The built-in models, then the router aliases of `config`.
pub fn models(config: &Config) -> Vec<Model> {
    let built_in = TASKS.iter().map(|t| Model { id: format!("vidgate/{t}"), task: t, chain: Vec::new() });
    let aliases = config.router.aliases.iter().filter_map(|(name, alias)| {
        let task = TASKS.iter().find(|t| **t == alias.task)?;
        Some(Model { id: name.clone(), task, chain: alias.chain.clone() })
    });
    built_in.chain(aliases).collect()
}

/// The model called `id`; 404 `model_not_found` when there is none.
pub fn model(config: &Config, id: &str) -> Result<Model, ApiError> {
    models(config).into_iter().find(|m| m.id == id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!(
                "the model `{id}` does not exist: the models are vidgate/describe, vidgate/timeline, \
                 vidgate/ask, vidgate/find and the router aliases (GET /v1/models lists them)"
            ),
        )
        .code("model_not_found")
        .param("model")
    })
}

/// Where the video of a request is.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoRef {
    /// Base64 text (a data URL's, or a bare base64 field's), with the media
    /// type when the request states one.
    Inline { mime: Option<String>, base64: String },
    /// An http(s) URL, fetched by the gateway (with its address guard).
    Url(String),
    /// The id of an upload made with `POST /v1/videos`.
    Upload(String),
}

/// The request's one video part.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPart {
    /// Where it is in the request, e.g. `messages[0].content[1]`.
    pub param: String,
    pub video: VideoRef,
    /// Frame rate and time range from a `video_metadata`.
    pub sampling: SamplingPlan,
}

/// A chat completion request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: Model,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// The text of the last user message.
    pub question: String,
    pub video: VideoPart,
}

impl ChatRequest {
    /// The task the model names, with the question where it needs one.
    ///
    /// # Errors
    /// `vidgate/ask` or `vidgate/find` without text in the last user message.
    pub fn task(&self) -> Result<Task, ApiError> {
        let text = self.question.trim().to_string();
        let needs = |what: &str| {
            ApiError::invalid(format!(
                "the model {} needs {what}: put it in a text part of the last user message",
                self.model.id
            ))
            .param("messages")
        };
        Ok(match self.model.task {
            "describe" => Task::Describe,
            "timeline" => Task::Timeline,
            "ask" if text.is_empty() => return Err(needs("a question")),
            "ask" => Task::Ask { question: text },
            _ if text.is_empty() => return Err(needs("what to find")),
            _ => Task::Find { what: text },
        })
    }
}

/// Read `body` (a chat completion request) against the models of `config`.
/// Fields OpenAI clients send that do not change a video's answer
/// (`temperature`, `max_tokens`, `user`, ...) are taken and not used.
///
/// # Errors
/// 400 naming the field at fault; 404 for a model that does not exist.
pub fn parse(mut body: Value, config: &Config) -> Result<ChatRequest, ApiError> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::invalid("the body is not a JSON object"));
    };
    let model = match fields.get("model") {
        Some(Value::String(id)) => self::model(config, id)?,
        _ => return Err(ApiError::invalid("`model` is missing: a string, e.g. \"vidgate/describe\"").param("model")),
    };
    let stream = match fields.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("`stream` is not a boolean").param("stream")),
    };
    let include_usage = match fields.get("stream_options").and_then(|o| o.get("include_usage")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid("`stream_options.include_usage` is not a boolean")
                .param("stream_options.include_usage"))
        }
    };
    match fields.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => return Err(ApiError::invalid("`n` must be 1: one answer per video").param("n")),
    }
    let Some(Value::Array(messages)) = fields.get_mut("messages") else {
        return Err(ApiError::invalid("`messages` is missing: an array of messages").param("messages"));
    };
    if let Some(i) = messages.iter().position(|m| !m.get("role").is_some_and(Value::is_string)) {
        return Err(
            ApiError::invalid("a message that is not an object with a `role` string").param(format!("messages[{i}]"))
        );
    }
    let last_user = messages.iter().rposition(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let Some(last_user) = last_user else {
        return Err(ApiError::invalid("no user message: the video and the question go in one").param("messages"));
    };
    let mut question = Vec::new();
    let mut videos = Vec::new();
    for (i, message) in messages.iter_mut().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default().to_string();
        let user = role == "user";
        match message.get_mut("content") {
            Some(Value::String(text)) if i == last_user => question.push(std::mem::take(text)),
            Some(Value::Array(parts)) => {
                for (j, part) in parts.iter_mut().enumerate() {
                    let param = format!("messages[{i}].content[{j}]");
                    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
                    match kind.as_str() {
                        "text" | "input_text" => {
                            if i == last_user {
                                match part.get_mut("text") {
                                    Some(Value::String(text)) => question.push(std::mem::take(text)),
                                    _ => {
                                        return Err(ApiError::invalid("a text part without its `text` string")
                                            .param(format!("{param}.text")))
                                    }
                                }
                            }
                        }
                        "video_url" | "file" | "input_video" | "image_url" => {
                            videos.push(video_part(&kind, part, param)?);
                        }
                        // Other roles' parts (an assistant's refusal, ...) carry no video.
                        _ if !user => {}
                        "" => return Err(ApiError::invalid("a content part without a `type`").param(param)),
                        other => {
                            return Err(ApiError::invalid(format!(
                                "a `{other}` part cannot be used: vidgate takes one video part \
                                 (video_url, file, input_video) and text"
                            ))
                            .param(param))
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut videos = videos.into_iter();
    let Some(video) = videos.next() else {
        return Err(ApiError::invalid(
            "no video in the messages: send one as a content part \
             {\"type\": \"video_url\", \"video_url\": {\"url\": \"https://… or data:video/mp4;base64,…\"}}",
        )
        .param("messages"));
    };
    if let Some(second) = videos.next() {
        return Err(ApiError::invalid(format!("a second video: one video per request (the first is {})", video.param))
            .param(second.param));
    }
    Ok(ChatRequest { model, stream, include_usage, question: question.join("\n"), video })
}

/// A string field of `object`, taken out of it (a data URL is not copied).
fn take_str(object: &mut Value, key: &str) -> Option<String> {
    match object.get_mut(key)? {
        Value::String(s) => Some(std::mem::take(s)),
        _ => None,
    }
}

/// A video part of type `kind` (an `image_url` only when it carries a
/// `data:video/` URL).
fn video_part(kind: &str, part: &mut Value, param: String) -> Result<VideoPart, ApiError> {
    let outer_metadata = part.get("video_metadata").cloned();
    let mut inner = part.get_mut(kind).map(Value::take).unwrap_or(Value::Null);
    let field = format!("{param}.{kind}");
    let (video, metadata) = match (kind, &mut inner) {
        ("video_url" | "image_url" | "input_video", Value::String(url)) => {
            let url = std::mem::take(url);
            if kind == "input_video" {
                (bare_or_url(url, None, &field)?, None)
            } else {
                (resolve_url(url, &field)?, None)
            }
        }
        ("video_url" | "image_url", Value::Object(_)) => {
            let url = take_str(&mut inner, "url")
                .ok_or_else(|| ApiError::invalid("no `url` string").param(format!("{field}.url")))?;
            (resolve_url(url, &format!("{field}.url"))?, inner.get("video_metadata").cloned())
        }
        ("input_video", Value::Object(_)) => {
            let format = inner.get("format").and_then(Value::as_str).map(|f| {
                if f.contains('/') {
                    f.to_string()
                } else {
                    format!("video/{f}")
                }
            });
            check_format(format.as_deref(), &format!("{field}.format"))?;
            let video = if let Some(data) = take_str(&mut inner, "data") {
                bare_or_url(data, format, &format!("{field}.data"))?
            } else if let Some(url) = take_str(&mut inner, "url") {
                resolve_url(url, &format!("{field}.url"))?
            } else {
                return Err(ApiError::invalid("no `data` (base64) or `url` string").param(field));
            };
            (video, inner.get("video_metadata").cloned())
        }
        ("file", Value::Object(_)) => {
            let format = inner.get("format").and_then(Value::as_str).map(str::to_string);
            check_format(format.as_deref(), &format!("{field}.format"))?;
            let video = match (take_str(&mut inner, "file_data"), take_str(&mut inner, "file_id")) {
                (Some(data), None) => bare_or_url(data, format, &format!("{field}.file_data"))?,
                (None, Some(id)) => resolve_url(id, &format!("{field}.file_id"))?,
                _ => {
                    return Err(ApiError::invalid(
                        "give one of `file_data` (a data:video/… URL or base64) or `file_id` \
                         (an http(s) URL or an upload id from POST /v1/videos)",
                    )
                    .param(field))
                }
            };
            (video, inner.get("video_metadata").cloned())
        }
        _ => {
            return Err(ApiError::invalid(format!("a `{kind}` part without its `{kind}` object")).param(field));
        }
    };
    if kind == "image_url" {
        let is_video = match &video {
            VideoRef::Inline { mime: Some(mime), .. } => mime.starts_with("video/"),
            _ => false,
        };
        if !is_video {
            return Err(ApiError::invalid(
                "an image_url part is taken only with a data:video/… URL; vidgate reads videos: \
                 send the video as a video_url part",
            )
            .param(param));
        }
    }
    let sampling = match metadata.or(outer_metadata) {
        Some(m) => sampling(&m, &format!("{field}.video_metadata"))?,
        None => SamplingPlan::default(),
    };
    Ok(VideoPart { param, video, sampling })
}

/// A stated media type must be a video's.
fn check_format(format: Option<&str>, param: &str) -> Result<(), ApiError> {
    match format {
        Some(f) if !f.to_ascii_lowercase().starts_with("video/") => {
            Err(ApiError::invalid(format!("`{}` is not a video type: give video/mp4, video/webm, ...", shorten(f)))
                .param(param.to_string()))
        }
        _ => Ok(()),
    }
}

/// The first characters of a URL or base64 text, lower case, enough to tell
/// its scheme (never a copy of the whole, which may be a gigabyte).
fn head(text: &str) -> String {
    text.chars().take(8).collect::<String>().to_ascii_lowercase()
}

/// A field that is a URL or bare base64 (`mime` its stated type).
fn bare_or_url(text: String, mime: Option<String>, param: &str) -> Result<VideoRef, ApiError> {
    let lower = head(&text);
    if lower.starts_with("data:") || lower.starts_with("http://") || lower.starts_with("https://") {
        return resolve_url(text, param);
    }
    if text.is_empty() {
        return Err(ApiError::invalid("the video's base64 is empty").param(param.to_string()));
    }
    Ok(VideoRef::Inline { mime, base64: text })
}

/// A data URL, an http(s) URL or an upload id.
fn resolve_url(mut url: String, param: &str) -> Result<VideoRef, ApiError> {
    let head = head(&url);
    if head.starts_with("data:") {
        let Some(comma) = url.find(',') else {
            return Err(ApiError::invalid("the data URL has no `,` before its data").param(param.to_string()));
        };
        let header = url[5..comma].to_string();
        let mut fields = header.split(';');
        let mime = fields.next().unwrap_or_default().trim().to_ascii_lowercase();
        if !fields.any(|f| f.trim().eq_ignore_ascii_case("base64")) {
            return Err(
                ApiError::invalid("the data URL is not base64: give data:video/mp4;base64,…").param(param.to_string())
            );
        }
        if !mime.starts_with("video/") {
            let shown = if mime.is_empty() { "no media type" } else { mime.as_str() };
            return Err(ApiError::invalid(format!(
                "the data URL carries {}, not a video: give data:video/mp4;base64,… (or video/webm, ...)",
                shorten(shown)
            ))
            .param(param.to_string()));
        }
        // The data is moved to the front, not copied.
        url.replace_range(..=comma, "");
        return Ok(VideoRef::Inline { mime: Some(mime), base64: url });
    }
    if head.starts_with("http://") || head.starts_with("https://") {
        return Ok(VideoRef::Url(url));
    }
    if !url.is_empty() && url.len() <= 64 && url.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(VideoRef::Upload(url));
    }
    let scheme = url.split_once(':').map_or("no scheme", |(s, _)| s);
    Err(ApiError::invalid(format!(
        "a video URL with {} cannot be used: give a data:video/…;base64 URL, an http(s) URL, \
         or the id of an upload from POST /v1/videos",
        shorten(scheme)
    ))
    .param(param.to_string()))
}

/// At most 40 characters of something the client sent, for a message.
fn shorten(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("`{short}…`")
    } else {
        format!("`{short}`")
    }
}

/// A `video_metadata` (`fps`, `start_offset`, `end_offset`, as LiteLLM and
/// Gemini write them) as a sampling plan.
fn sampling(metadata: &Value, param: &str) -> Result<SamplingPlan, ApiError> {
    let mut plan = SamplingPlan::default();
    let Some(fields) = metadata.as_object() else {
        return Err(ApiError::invalid("`video_metadata` is not an object").param(param.to_string()));
    };
    if let Some(fps) = fields.get("fps").filter(|v| !v.is_null()) {
        match fps.as_f64() {
            Some(fps) if fps > 0.0 && fps <= MAX_FPS => plan.mode = SamplingMode::Fps { fps },
            _ => {
                return Err(ApiError::invalid(format!("`fps` is {fps}: give a number in (0, {MAX_FPS}]"))
                    .param(format!("{param}.fps")))
            }
        }
    }
    let offset = |names: [&str; 2]| -> Result<Option<Millis>, ApiError> {
        let Some((name, value)) = names.iter().find_map(|n| Some((*n, fields.get(*n).filter(|v| !v.is_null())?)))
        else {
            return Ok(None);
        };
        offset_ms(value).map(Some).ok_or_else(|| {
            ApiError::invalid(format!(
                "`{name}` is {value}: give a time such as \"12.5s\", \"1:30\", 12.5 (seconds) or {{\"seconds\": 12}}"
            ))
            .param(format!("{param}.{name}"))
        })
    };
    let start = offset(["start_offset", "startOffset"])?;
    let end = offset(["end_offset", "endOffset"])?;
    if start.is_some() || end.is_some() {
        let (start_ms, end_ms) = (start.unwrap_or(0), end.unwrap_or(Millis::MAX));
        plan.range = Some(TimeRange::new(start_ms, end_ms).ok_or_else(|| {
            ApiError::invalid(format!("the end offset ({end_ms} ms) is not after the start offset ({start_ms} ms)"))
                .param(format!("{param}.end_offset"))
        })?);
    }
    Ok(plan)
}

/// An offset: `"12.5s"`, `"1:30"`, a number of seconds, or a protobuf
/// Duration object `{"seconds", "nanos"}`.
fn offset_ms(value: &Value) -> Option<Millis> {
    let from_seconds =
        |s: f64| (0.0..=crate::timecode::MAX_SECONDS).contains(&s).then(|| (s * 1000.0).round() as Millis);
    match value {
        Value::String(text) => crate::timecode::parse(text),
        Value::Number(n) => from_seconds(n.as_f64()?),
        Value::Object(o) => {
            let seconds = match o.get("seconds") {
                None => 0.0,
                Some(Value::String(s)) => s.parse::<f64>().ok()?,
                Some(v) => v.as_f64()?,
            };
            let nanos = o.get("nanos").map_or(Some(0.0), Value::as_f64)?;
            from_seconds(seconds + nanos / 1e9)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let mut c = Config::builtin().unwrap();
        c.router
            .aliases
            .insert("quick".into(), crate::config::RouteAlias { task: "ask".into(), chain: vec!["gemini".into()] });
        c
    }

    fn chat(parts: Value) -> Value {
        json!({ "model": "vidgate/ask", "temperature": 0.2, "max_tokens": 99,
                "messages": [{ "role": "system", "content": "be brief" }, { "role": "user", "content": parts }] })
    }

    fn refused(body: Value) -> ApiError {
        parse(body, &config()).unwrap_err()
    }

    #[test]
    fn each_video_shape_is_read_with_its_question() {
        let https = "https://example.com/clip.mp4";
        for part in [
            json!({ "type": "video_url", "video_url": { "url": https } }),
            json!({ "type": "video_url", "video_url": https }),
            json!({ "type": "file", "file": { "file_id": https, "format": "video/mp4" } }),
            json!({ "type": "input_video", "input_video": { "url": https } }),
            json!({ "type": "input_video", "input_video": https }),
        ] {
            let read = parse(chat(json!([{ "type": "text", "text": "Who waves?" }, part.clone()])), &config()).unwrap();
            assert_eq!(read.video.video, VideoRef::Url(https.into()), "{part}");
            assert_eq!(read.video.param, "messages[1].content[1]", "{part}");
            assert_eq!(read.question, "Who waves?");
            assert_eq!(read.task().unwrap(), Task::Ask { question: "Who waves?".into() });
        }
        let inline = |mime: Option<&str>| VideoRef::Inline { mime: mime.map(str::to_string), base64: "AAAA".into() };
        for (part, want) in [
            (
                json!({ "type": "video_url", "video_url": { "url": "data:video/mp4;base64,AAAA" } }),
                inline(Some("video/mp4")),
            ),
            (
                json!({ "type": "image_url", "image_url": { "url": "data:video/webm;base64,AAAA" } }),
                inline(Some("video/webm")),
            ),
            (
                json!({ "type": "file", "file": { "file_data": "data:video/mp4;base64,AAAA" } }),
                inline(Some("video/mp4")),
            ),
            (
                json!({ "type": "file", "file": { "file_data": "AAAA", "format": "video/mp4" } }),
                inline(Some("video/mp4")),
            ),
            (
                json!({ "type": "input_video", "input_video": { "data": "AAAA", "format": "mp4" } }),
                inline(Some("video/mp4")),
            ),
            (json!({ "type": "input_video", "input_video": "AAAA" }), inline(None)),
            (json!({ "type": "file", "file": { "file_id": "0123abcd" } }), VideoRef::Upload("0123abcd".into())),
        ] {
            let read = parse(chat(json!([{ "type": "text", "text": "Who waves?" }, part.clone()])), &config()).unwrap();
            assert_eq!(read.video.video, want, "{part}");
        }
    }

    #[test]
    fn video_metadata_sets_the_frame_rate_and_the_range() {
        let part = json!({ "type": "file", "file": { "file_id": "https://e.com/a.mp4", "format": "video/mp4",
            "video_metadata": { "fps": 2, "start_offset": "1.5s", "end_offset": { "seconds": 8 } } } });
        let read = parse(chat(json!([{ "type": "text", "text": "q" }, part])), &config()).unwrap();
        assert_eq!(read.video.sampling.mode, SamplingMode::Fps { fps: 2.0 });
        assert_eq!(read.video.sampling.range, TimeRange::new(1500, 8000));
        let part = json!({ "type": "video_url", "video_url": { "url": "https://e.com/a.mp4" },
            "video_metadata": { "startOffset": 4 } });
        let read = parse(chat(json!([{ "type": "text", "text": "q" }, part])), &config()).unwrap();
        assert_eq!(read.video.sampling.range, TimeRange::new(4000, Millis::MAX));
        for (metadata, param) in [
            (json!({ "fps": 0 }), "fps"),
            (json!({ "fps": 500 }), "fps"),
            (json!({ "start_offset": "soon" }), "start_offset"),
            (json!({ "start_offset": "9s", "end_offset": "2s" }), "end_offset"),
        ] {
            let part =
                json!({ "type": "file", "file": { "file_id": "https://e.com/a.mp4", "video_metadata": metadata } });
            let e = refused(chat(json!([{ "type": "text", "text": "q" }, part])));
            assert_eq!(
                e.param.as_deref(),
                Some(format!("messages[1].content[1].file.video_metadata.{param}").as_str()),
                "{e}"
            );
        }
    }

    #[test]
    fn a_part_that_cannot_be_used_is_refused_with_its_place() {
        let text = json!({ "type": "text", "text": "q" });
        for (part, param, needle) in [
            (
                json!({ "type": "video_url", "video_url": { "url": "data:text/plain;base64,aGk=" } }),
                "messages[1].content[1].video_url.url",
                "`text/plain`, not a video",
            ),
            (
                json!({ "type": "video_url", "video_url": { "url": "data:video/mp4,rawbytes" } }),
                "messages[1].content[1].video_url.url",
                "not base64",
            ),
            (
                json!({ "type": "video_url", "video_url": { "url": "ftp://e.com/a.mp4" } }),
                "messages[1].content[1].video_url.url",
                "`ftp`",
            ),
            (json!({ "type": "video_url", "video_url": {} }), "messages[1].content[1].video_url.url", "no `url`"),
            (
                json!({ "type": "image_url", "image_url": { "url": "data:image/png;base64,AAAA" } }),
                "messages[1].content[1].image_url.url",
                "not a video",
            ),
            (
                json!({ "type": "image_url", "image_url": { "url": "https://e.com/cat.png" } }),
                "messages[1].content[1]",
                "video_url part",
            ),
            (
                json!({ "type": "file", "file": { "file_data": "AAAA", "format": "application/pdf" } }),
                "messages[1].content[1].file.format",
                "not a video type",
            ),
            (json!({ "type": "file", "file": {} }), "messages[1].content[1].file", "file_data"),
            (
                json!({ "type": "input_audio", "input_audio": { "data": "AAAA" } }),
                "messages[1].content[1]",
                "`input_audio` part",
            ),
        ] {
            let e = refused(chat(json!([text.clone(), part.clone()])));
            assert_eq!((e.status, e.param.as_deref()), (StatusCode::BAD_REQUEST, Some(param)), "{part}: {e}");
            assert!(e.message.contains(needle), "{part}: {e}");
        }
        let url = |u: &str| json!({ "type": "video_url", "video_url": { "url": u } });
        let two = refused(chat(json!([text.clone(), url("https://e.com/a.mp4"), url("https://e.com/b.mp4")])));
        assert_eq!(two.param.as_deref(), Some("messages[1].content[2]"), "{two}");
        let odd = refused(json!({ "model": "vidgate/ask", "messages": ["hello", { "role": "user", "content": "q" }] }));
        assert_eq!(odd.param.as_deref(), Some("messages[0]"), "{odd}");
        let none = refused(chat(json!([text.clone()])));
        assert_eq!(none.param.as_deref(), Some("messages"), "{none}");
        assert!(none.message.contains("no video"), "{none}");
        let mut no_question = chat(json!([url("https://e.com/a.mp4")]));
        let read = parse(no_question.clone(), &config()).unwrap();
        assert_eq!(read.task().unwrap_err().param.as_deref(), Some("messages"));
        no_question["model"] = json!("vidgate/describe");
        assert_eq!(parse(no_question, &config()).unwrap().task().unwrap(), Task::Describe);
    }

    #[test]
    fn the_model_picks_the_task_and_an_unknown_one_is_404() {
        let body = |model: &str| {
            json!({ "model": model, "messages": [{ "role": "user", "content": [
            { "type": "text", "text": "a red car" }, { "type": "video_url", "video_url": { "url": "https://e.com/a.mp4" } }] }] })
        };
        let find = parse(body("vidgate/find"), &config()).unwrap();
        assert_eq!(find.task().unwrap(), Task::Find { what: "a red car".into() });
        let alias = parse(body("quick"), &config()).unwrap();
        assert_eq!((alias.model.task, alias.model.chain.clone()), ("ask", vec!["gemini".to_string()]));
        let e = refused(body("gpt-4o"));
        assert_eq!(
            (e.status, e.code, e.param.as_deref()),
            (StatusCode::NOT_FOUND, Some("model_not_found"), Some("model"))
        );
        let ids: Vec<String> = models(&config()).into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["vidgate/describe", "vidgate/timeline", "vidgate/ask", "vidgate/find", "quick"]);
    }
}
