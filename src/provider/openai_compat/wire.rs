//! Chat Completions as it travels: serde structs shaped like the API, and
//! nothing else. Field names follow the reference, not vidgate's schema.

use serde::{Deserialize, Serialize};

use crate::config::ImageDetail;
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
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ImageUrl {
    /// `data:image/jpeg;base64,...`
    pub url: String,
    pub detail: ImageDetail,
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
