//! The Messages API as it travels: serde structs shaped like the API
//! reference, and nothing else.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use crate::provider::usage::TokenCount;

/// `POST /v1/messages`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    User,
}

/// A content block of the request.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    Text { text: String },
    Image { source: ImageSource },
}

/// `{"type":"base64","media_type":"image/jpeg","data":…}`, holding the
/// frame's own base64, made once and shared by every request that sends it.
#[derive(Clone, Serialize)]
pub(super) struct ImageSource {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub media_type: &'static str,
    #[serde(serialize_with = "shared_str")]
    pub data: Arc<str>,
}

fn shared_str<S: Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

impl fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} <{} characters>", self.kind, self.media_type, self.data.len())
    }
}

/// A client tool: the answer's JSON is the `input` of its `tool_use` block.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Tool {
    pub name: String,
    pub description: String,
    pub input_schema: serde_json::Value,
}

/// `{"type":"tool","name":…}` makes the model call that tool; `{"type":"auto"}`
/// lets it choose, for models that refuse a forced tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ToolChoice {
    Auto,
    Tool { name: String },
}

/// A `Message` answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct MessageResponse {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_details: Option<StopDetails>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

/// A content block of the answer; kinds vidgate does not ask for (thinking,
/// server tools) are kept as `Other` and ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        name: String,
        #[serde(default)]
        input: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

/// Why a refusal stopped the answer, where the API says.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct StopDetails {
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub explanation: Option<String>,
}

/// `usage`: `input_tokens` counts only the uncached part of the prompt; the
/// cache's writes and reads are counted apart.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireUsage {
    pub input_tokens: TokenCount,
    pub output_tokens: TokenCount,
    pub cache_creation_input_tokens: TokenCount,
    pub cache_read_input_tokens: TokenCount,
    pub cache_creation: Option<CacheCreation>,
}

/// The cache writes by lifetime, which are priced apart.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct CacheCreation {
    pub ephemeral_5m_input_tokens: TokenCount,
    pub ephemeral_1h_input_tokens: TokenCount,
}

/// `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}
