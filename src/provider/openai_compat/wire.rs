//! Chat Completions as it travels: serde structs shaped like the API, and
//! nothing else. Field names follow the reference, not vidgate's schema.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use crate::config::ImageDetail;
use crate::media::Jpeg;
use crate::provider::usage::TokenCount;

/// `POST /chat/completions`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// The output cap of current OpenAI models (reasoning tokens included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// The older name, which many compatible servers still expect instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// The rate a video is sampled at, where the server reads it at the top.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// vLLM's arguments to the model's processor (a video's `fps` or `num_frames`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm_processor_kwargs: Option<MmProcessorKwargs>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct MmProcessorKwargs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_frames: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Message {
    pub role: Role,
    pub content: Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    User,
}

/// A message's content: a plain string, or an array of parts.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(super) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Part {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    /// vLLM, SGLang, OpenRouter, DashScope, Kimi.
    VideoUrl {
        video_url: VideoUrl,
    },
    /// llama.cpp's server: the bare base64 in `data`.
    InputVideo {
        input_video: InputVideo,
    },
    /// LiteLLM: a file part with the video's MIME type.
    File {
        file: FileData,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct VideoUrl {
    pub url: VideoDataUrl,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct InputVideo {
    pub data: Base64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct FileData {
    pub file_data: VideoDataUrl,
    pub format: &'static str,
}

/// A video's base64, shared rather than copied into each request.
#[derive(Clone)]
pub(super) struct Base64(pub Arc<str>);

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Debug for Base64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} base64 characters>", self.0.len())
    }
}

/// `data:video/mp4;base64,...`.
#[derive(Clone)]
pub(super) struct VideoDataUrl {
    pub mime: &'static str,
    pub base64: Base64,
}

impl VideoDataUrl {
    fn prefix(&self) -> String {
        format!("data:{};base64,", self.mime)
    }
}

impl Serialize for VideoDataUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.prefix(), self.base64.0))
    }
}

impl fmt::Debug for VideoDataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.prefix(), self.base64)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ImageUrl {
    pub url: JpegDataUrl,
    pub detail: ImageDetail,
}

/// `data:image/jpeg;base64,...`, holding the frame's own base64, which is
/// made once and shared by every request that sends the frame.
#[derive(Clone)]
pub(super) struct JpegDataUrl(Arc<str>);

impl JpegDataUrl {
    const PREFIX: &'static str = "data:image/jpeg;base64,";

    pub fn of(jpeg: &Jpeg) -> Self {
        Self(jpeg.base64())
    }

    /// The base64 after the prefix.
    #[cfg(test)]
    pub fn base64(&self) -> &Arc<str> {
        &self.0
    }
}

impl Serialize for JpegDataUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", Self::PREFIX, self.0))
    }
}

impl fmt::Debug for JpegDataUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}<{} characters>", Self::PREFIX, self.0.len())
    }
}

impl ChatRequest {
    /// The request as JSON: byte for byte what serializing it writes, but with
    /// each image's base64 copied in as it is. Its alphabet needs no escaping,
    /// and scanning it for escapes was much of the time a request took to build.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        // Destructured, so a field added to the request cannot be left out here.
        let Self { model, messages, max_completion_tokens, max_tokens, response_format, fps, mm_processor_kwargs } =
            self;
        let images: usize = messages
            .iter()
            .filter_map(|m| match &m.content {
                Content::Parts(parts) => Some(parts),
                Content::Text(_) => None,
            })
            .flatten()
            .map(|p| match p {
                Part::ImageUrl { image_url } => image_url.url.0.len() + 80,
                Part::Text { text } => text.len() + 32,
                Part::VideoUrl { video_url: VideoUrl { url: v } }
                | Part::File { file: FileData { file_data: v, .. } } => v.base64.0.len() + 96,
                Part::InputVideo { input_video } => input_video.data.0.len() + 64,
            })
            .sum();
        let mut out = Vec::with_capacity(256 + images);
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut out, model)?;
        out.extend_from_slice(b",\"messages\":[");
        for (i, Message { role, content }) in messages.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"role\":");
            serde_json::to_writer(&mut out, role)?;
            out.extend_from_slice(b",\"content\":");
            match content {
                Content::Text(text) => serde_json::to_writer(&mut out, text)?,
                Content::Parts(parts) => {
                    out.push(b'[');
                    for (j, part) in parts.iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        match part {
                            Part::ImageUrl { image_url: ImageUrl { url, detail } } => {
                                out.extend_from_slice(b"{\"type\":\"image_url\",\"image_url\":{\"url\":\"");
                                out.extend_from_slice(JpegDataUrl::PREFIX.as_bytes());
                                out.extend_from_slice(url.0.as_bytes());
                                out.extend_from_slice(b"\",\"detail\":");
                                serde_json::to_writer(&mut out, detail)?;
                                out.extend_from_slice(b"}}");
                            }
                            Part::VideoUrl { video_url: VideoUrl { url } } => {
                                out.extend_from_slice(b"{\"type\":\"video_url\",\"video_url\":{\"url\":");
                                url.write_json(&mut out)?;
                                out.extend_from_slice(b"}}");
                            }
                            Part::InputVideo { input_video: InputVideo { data } } => {
                                out.extend_from_slice(b"{\"type\":\"input_video\",\"input_video\":{\"data\":\"");
                                out.extend_from_slice(data.0.as_bytes());
                                out.extend_from_slice(b"\"}}");
                            }
                            Part::File { file: FileData { file_data, format } } => {
                                out.extend_from_slice(b"{\"type\":\"file\",\"file\":{\"file_data\":");
                                file_data.write_json(&mut out)?;
                                out.extend_from_slice(b",\"format\":");
                                serde_json::to_writer(&mut out, format)?;
                                out.extend_from_slice(b"}}");
                            }
                            text => serde_json::to_writer(&mut out, text)?,
                        }
                    }
                    out.push(b']');
                }
            }
            out.push(b'}');
        }
        out.push(b']');
        if let Some(cap) = max_completion_tokens {
            out.extend_from_slice(b",\"max_completion_tokens\":");
            serde_json::to_writer(&mut out, cap)?;
        }
        if let Some(cap) = max_tokens {
            out.extend_from_slice(b",\"max_tokens\":");
            serde_json::to_writer(&mut out, cap)?;
        }
        if let Some(format) = response_format {
            out.extend_from_slice(b",\"response_format\":");
            serde_json::to_writer(&mut out, format)?;
        }
        if let Some(fps) = fps {
            out.extend_from_slice(b",\"fps\":");
            serde_json::to_writer(&mut out, fps)?;
        }
        if let Some(kwargs) = mm_processor_kwargs {
            out.extend_from_slice(b",\"mm_processor_kwargs\":");
            serde_json::to_writer(&mut out, kwargs)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

impl VideoDataUrl {
    /// The URL as a JSON string, its base64 copied in unscanned.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let prefix = self.prefix();
        // The MIME type is ours, but it goes through the escaper all the same.
        let quoted = serde_json::to_string(&prefix)?;
        out.extend_from_slice(&quoted.as_bytes()[..quoted.len() - 1]);
        out.extend_from_slice(self.base64.0.as_bytes());
        out.push(b'"');
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ResponseFormat {
    JsonSchema { json_schema: JsonSchema },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct JsonSchema {
    pub name: String,
    pub schema: serde_json::Value,
    pub strict: bool,
}

/// A successful answer. Compatible servers omit fields freely, so almost
/// everything defaults.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ChatResponse {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Choice {
    #[serde(default)]
    pub message: Option<AssistantMessage>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct AssistantMessage {
    #[serde(default)]
    pub content: Option<AnswerContent>,
    #[serde(default)]
    pub refusal: Option<String>,
}

/// OpenAI answers with a string; a few compatible servers with text parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum AnswerContent {
    Text(String),
    Parts(Vec<AnswerPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct AnswerPart {
    #[serde(default)]
    pub text: Option<String>,
}

/// Counts the spec types as integers, so a negative one is no parse error:
/// it costs the usage, never the answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: TokenCount,
    #[serde(default)]
    pub completion_tokens: TokenCount,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: TokenCount,
}

/// `{"error": {...}}`, or the bare string some servers send.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum ErrorDetail {
    Object(ErrorObject),
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorObject {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A string at OpenAI, a number at llama-server.
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub param: Option<String>,
}
