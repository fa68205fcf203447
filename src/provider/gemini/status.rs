//! What the API says about a call rather than in an answer: error bodies
//! (`google.rpc.Status` with its details), classified once, and the state of
//! an uploaded file. Pure functions, like `translate`.

use std::time::Duration;

use super::wire::{parse_proto_duration, Detail, ErrorBody, File};
use crate::provider::ErrorFacts;

/// One `QuotaFailure` violation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct QuotaViolation {
    pub metric: Option<String>,
    /// E.g. `GenerateRequestsPerMinutePerProjectPerModel-FreeTier`.
    pub id: Option<String>,
    /// The limit that was hit.
    pub value: Option<u64>,
}

impl QuotaViolation {
    /// A daily quota: retrying before it resets (midnight Pacific) is pointless.
    pub fn per_day(&self) -> bool {
        self.id.as_deref().is_some_and(|id| id.contains("PerDay"))
    }
}

/// An error body, `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ApiError {
    pub code: Option<i64>,
    pub message: String,
    /// `RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...
    pub status: Option<String>,
    /// `RetryInfo.retryDelay`.
    pub retry_delay: Option<Duration>,
    pub quota: Vec<QuotaViolation>,
    /// `ErrorInfo.reason`s, e.g. `API_KEY_INVALID`.
    pub reasons: Vec<String>,
}

impl ApiError {
    /// One line for a person: the message, then the status.
    pub fn summary(&self) -> String {
        match self.status.as_deref() {
            Some(status) if !status.is_empty() => format!("{} ({status})", self.message),
            _ => self.message.clone(),
        }
    }

    /// The key itself was refused: invalid, expired, or reported as leaked.
    /// No other call with it can succeed this run.
    pub fn key_refused(&self) -> bool {
        const REASONS: &[&str] = &["API_KEY_INVALID", "API_KEY_EXPIRED"];
        const MESSAGES: &[&str] = &["reported as leaked", "api key not valid", "api key expired"];
        let message = self.message.to_ascii_lowercase();
        self.reasons.iter().any(|r| REASONS.contains(&r.as_str())) || MESSAGES.iter().any(|m| message.contains(m))
    }
}

/// The error an error body describes, when it is one.
pub(super) fn parse_error_body(body: &[u8]) -> Option<ApiError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    let status = parsed.error;
    let mut api = ApiError {
        code: status.code,
        message: status.message.unwrap_or_default(),
        status: status.status,
        ..ApiError::default()
    };
    for detail in status.details {
        match serde_json::from_value::<Detail>(detail) {
            Ok(Detail::RetryInfo { retry_delay }) => {
                api.retry_delay = retry_delay.as_deref().and_then(parse_proto_duration);
            }
            Ok(Detail::QuotaFailure { violations }) => api.quota.extend(violations.into_iter().map(|v| {
                QuotaViolation { metric: v.quota_metric, id: v.quota_id, value: v.quota_value.and_then(|q| q.value()) }
            })),
            Ok(Detail::ErrorInfo { reason: Some(reason) }) => api.reasons.push(reason),
            Ok(_) | Err(_) => {}
        }
    }
    Some(api)
}

/// What an error body says, for the one classification (`error::classify`):
/// its message and status, `RetryInfo.retryDelay`, a quota that no wait
/// within reason refills (a daily quota, which resets at midnight Pacific
/// time, or a limit of 0: a model the tier does not include), and whether the
/// key itself was refused.
pub(super) fn error_facts(body: &[u8]) -> Option<ErrorFacts> {
    let api = parse_error_body(body)?;
    let quota_spent = match api.quota.iter().find(|v| v.per_day()) {
        Some(daily) => Some(format!(
            "the daily quota {} is used up; it resets at midnight Pacific time",
            daily.id.as_deref().unwrap_or_default()
        )),
        None => api
            .quota
            .iter()
            .any(|v| v.value == Some(0))
            .then(|| format!("this model has no quota on the key's tier (limit 0): {}", api.message)),
    };
    Some(ErrorFacts {
        key_refused: api.key_refused(),
        code: api.status,
        retry_delay: api.retry_delay,
        quota_spent,
        message: api.message,
    })
}

/// Where an uploaded file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    /// Still being processed: poll again before using it.
    Processing,
    /// Ready to be referenced by its URI.
    Active,
    /// Processing failed; the file cannot be used.
    Failed,
    /// `STATE_UNSPECIFIED`, or a state added later.
    Unknown,
}

/// An uploaded file, as `files.get` or the upload's answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileInfo {
    /// `files/abc123`.
    pub name: String,
    /// What a `fileData` part refers to.
    pub uri: String,
    pub mime_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub state: FileState,
    /// When the API deletes it, RFC 3339 (48 hours after the upload).
    pub expires: Option<String>,
    /// Base64 of the SHA-256 of the content.
    pub sha256: Option<String>,
    /// Why processing failed.
    pub error: Option<String>,
    /// The video's length, once processed.
    pub video_duration: Option<Duration>,
}

/// Read a `File`, bare or wrapped as the upload's `{"file": {...}}`.
///
/// # Errors
/// A body that is not JSON, or a file without its name or URI, with the reason.
pub(super) fn parse_file(body: &[u8]) -> Result<FileInfo, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the file answer is not JSON: {e}"))?;
    if let Some(inner) = value.get_mut("file").filter(|f| f.is_object()) {
        value = inner.take();
    }
    let file: File = serde_json::from_value(value).map_err(|e| format!("the file answer is not a File: {e}"))?;
    let name = file.name.filter(|n| !n.is_empty()).ok_or("the file answer has no name")?;
    let uri = file.uri.filter(|u| !u.is_empty()).ok_or_else(|| format!("file {name} has no URI"))?;
    let state = match file.state.as_deref() {
        Some("PROCESSING") => FileState::Processing,
        Some("ACTIVE") => FileState::Active,
        Some("FAILED") => FileState::Failed,
        _ => FileState::Unknown,
    };
    Ok(FileInfo {
        name,
        uri,
        mime_type: file.mime_type,
        size_bytes: file.size_bytes.and_then(|s| s.value()),
        state,
        expires: file.expiration_time,
        sha256: file.sha256_hash,
        error: file.error.and_then(|e| e.message),
        video_duration: file.video_metadata.and_then(|m| m.video_duration).as_deref().and_then(parse_proto_duration),
    })
}

#[cfg(test)]
mod tests;
