//! `generateContent` and the Files API as they travel: serde structs in the
//! REST (camelCase) form of the v1beta protos, and nothing else.
//!
//! Enum-valued answer fields (`finishReason`, `blockReason`, `modality`,
//! `state`) are read as strings, so a value added to the API later is
//! reported instead of failing the whole answer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::provider::usage::TokenCount;

/// `POST /v1beta/models/{model}:generateContent`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentRequest {
    pub contents: Vec<Content>,
    pub generation_config: GenerationConfig,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Content {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Role {
    User,
}

/// One part: exactly one kind of data, and video metadata for a video.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(flatten)]
    pub data: PartData,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_metadata: Option<VideoMetadata>,
}

/// The proto's `oneof data`: serialized as the one key it holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum PartData {
    Text(String),
    InlineData(Blob),
    FileData(FileData),
}

/// Raw bytes, base64 in JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Blob {
    pub mime_type: String,
    /// A frame's shared base64 (made once for all its requests), or a video's.
    #[serde(serialize_with = "str_of")]
    pub data: Arc<str>,
}

fn str_of<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

/// A file by URI: a Files API upload or a URL the API fetches itself.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileData {
    pub mime_type: String,
    pub file_uri: String,
}

/// Which part of a video the model sees, and how densely.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VideoMetadata {
    /// A `google.protobuf.Duration` in JSON: `"12.5s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_offset: Option<String>,
    /// Frames per second sampled, in (0, 24]; 1 when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// `application/json` when a schema is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    /// The OpenAPI-subset `Schema`, not JSON Schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_resolution: Option<MediaResolution>,
}

/// `GenerationConfig.MediaResolution`: tokens per image and video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum MediaResolution {
    #[serde(rename = "MEDIA_RESOLUTION_LOW")]
    Low,
    #[serde(rename = "MEDIA_RESOLUTION_MEDIUM")]
    Medium,
    #[serde(rename = "MEDIA_RESOLUTION_HIGH")]
    High,
}

/// A successful answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub model_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub content: Option<CandidateContent>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, `RECITATION`, ...
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct CandidateContent {
    #[serde(default)]
    pub parts: Vec<AnswerPart>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct AnswerPart {
    #[serde(default)]
    pub text: Option<String>,
    /// A thinking summary, not the answer.
    #[serde(default)]
    pub thought: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// Token counts; any of them may be missing (a blocked prompt has no
/// candidates), and one that is no count costs the usage, not the answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: TokenCount,
    #[serde(default)]
    pub candidates_token_count: TokenCount,
    #[serde(default)]
    pub thoughts_token_count: TokenCount,
    #[serde(default)]
    pub cached_content_token_count: TokenCount,
    #[serde(default)]
    pub prompt_tokens_details: Vec<ModalityTokenCount>,
}

/// A modality with no `tokenCount` (seen for silent audio) counts as zero.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModalityTokenCount {
    #[serde(default)]
    pub modality: String,
    #[serde(default)]
    pub token_count: TokenCount,
}

/// The `File` resource (`GET /v1beta/files/{id}`, and inside an upload's answer).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct File {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// An int64, which proto JSON writes as a string.
    #[serde(default)]
    pub size_bytes: Option<Int64>,
    /// `PROCESSING`, `ACTIVE` or `FAILED`.
    #[serde(default)]
    pub state: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expiration_time: Option<String>,
    /// Base64 of the SHA-256.
    #[serde(default)]
    pub sha256_hash: Option<String>,
    #[serde(default)]
    pub error: Option<Status>,
    #[serde(default)]
    pub video_metadata: Option<VideoFileMetadata>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VideoFileMetadata {
    #[serde(default)]
    pub video_duration: Option<String>,
}

/// int64 and uint64 fields: a string in proto JSON, a number from some encoders.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Int64 {
    Number(u64),
    Text(String),
}

impl Int64 {
    pub fn value(&self) -> Option<u64> {
        match self {
            Int64::Number(n) => Some(*n),
            Int64::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// `{"error": google.rpc.Status}`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ErrorBody {
    pub error: Status,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Status {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    /// The canonical code's name, e.g. `RESOURCE_EXHAUSTED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Read one by one as [`Detail`]; a detail of another shape is skipped.
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

/// The `google.rpc` error details vidgate acts on.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "@type")]
pub(super) enum Detail {
    #[serde(rename = "type.googleapis.com/google.rpc.RetryInfo", rename_all = "camelCase")]
    RetryInfo {
        #[serde(default)]
        retry_delay: Option<String>,
    },
    #[serde(rename = "type.googleapis.com/google.rpc.QuotaFailure")]
    QuotaFailure {
        #[serde(default)]
        violations: Vec<QuotaViolation>,
    },
    #[serde(rename = "type.googleapis.com/google.rpc.ErrorInfo")]
    ErrorInfo {
        #[serde(default)]
        reason: Option<String>,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QuotaViolation {
    #[serde(default)]
    pub quota_metric: Option<String>,
    /// E.g. `GenerateRequestsPerDayPerProjectPerModel-FreeTier`.
    #[serde(default)]
    pub quota_id: Option<String>,
    /// The limit that was hit (an int64, so a string).
    #[serde(default)]
    pub quota_value: Option<Int64>,
}

/// Read a `google.protobuf.Duration` (`"27s"`, `"1.5s"`, `"0.000250s"`).
pub(super) fn parse_proto_duration(text: &str) -> Option<std::time::Duration> {
    let number = text.trim().strip_suffix('s')?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || whole.len() > 12 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    Some(crate::timecode::capped(std::time::Duration::new(whole.parse().ok()?, nanos)))
}
