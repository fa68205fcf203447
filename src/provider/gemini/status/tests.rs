//! Error bodies and file states, recorded and hand-written.

use serde_json::json;

use super::*;
use crate::provider::ErrorClass;

const PER_MINUTE: &str = include_str!("../../../../fixtures/recorded/gemini/429_retry_info.json");
const INVALID_ARGUMENT: &str = include_str!("../../../../fixtures/recorded/gemini/400_invalid_argument.json");

const CAP: Duration = Duration::from_secs(60);

/// A non-2xx answer through the one classification, read as this protocol reads it.
fn classify_error(provider: &str, status: u16, body: &str, cap: Duration) -> crate::provider::ProviderError {
    let facts = error_facts(body.as_bytes());
    crate::provider::classify(provider, status, body, facts.as_ref(), &Default::default(), cap)
}

#[test]
fn a_per_minute_quota_waits_for_its_retry_delay() {
    let api = parse_error_body(PER_MINUTE.as_bytes()).expect("an error body");
    assert_eq!(api.retry_delay, Some(Duration::from_millis(34_400)));
    assert_eq!(api.quota[0].id.as_deref(), Some("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"));
    assert!(!api.quota[0].per_day());

    let e = classify_error("gemini", 429, PER_MINUTE, CAP);
    assert!(e.is_retryable() && !e.disables_provider, "{e}");
    assert_eq!(e.retry_after(), Some(Duration::from_millis(34_400)));
    assert_eq!(e.message, "HTTP 429: You exceeded your current quota, please check your plan. (RESOURCE_EXHAUSTED)");
    // Asked to wait longer than we would: the next provider takes over.
    let e = classify_error("gemini", 429, PER_MINUTE, Duration::from_secs(30));
    assert!(e.should_fall_back() && e.message.contains("over the 30 s cap"), "{e}");
    // No details at all: still worth a retry.
    let bare = r#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#;
    let e = classify_error("gemini", 429, bare, CAP);
    assert!(e.is_retryable() && e.retry_after.is_none());
}

/// The shape of a free-tier daily limit: its RetryInfo says 59 s, but the
/// quota only resets at midnight Pacific time.
#[test]
fn a_per_day_quota_falls_back_at_once() {
    let body = json!({"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details.",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "20"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"}]}})
    .to_string();
    let api = parse_error_body(body.as_bytes()).expect("an error body");
    assert!(api.quota[0].per_day() && api.quota[0].value == Some(20));
    let e = classify_error("gemini", 429, &body, CAP);
    assert_eq!(e.class, ErrorClass::FallBack);
    assert_eq!(e.retry_after, None, "the 59 s would be a lie");
    assert!(e.message.contains("daily quota GenerateRequestsPerDayPerProjectPerModel-FreeTier"), "{e}");
    assert!(!e.disables_provider, "another model or tomorrow may work");

    // A limit of 0: the tier does not include the model at all.
    let zero = json!({"error": {"code": 429, "message": "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "0"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5.2s"}]}})
    .to_string();
    let e = classify_error("gemini", 429, &zero, CAP);
    assert!(e.should_fall_back() && e.message.contains("limit 0"), "{e}");
}

#[test]
fn refused_keys_disable_the_provider() {
    // As Gemini answers a key that Google found published.
    let leaked = r#"{"error": {"code": 403, "message": "Your API key was reported as leaked. Please use another API key.", "status": "PERMISSION_DENIED"}}"#;
    let e = classify_error("gemini", 403, leaked, CAP);
    assert!(e.disables_provider && e.should_fall_back(), "{e}");
    assert!(e.message.contains("reported as leaked"), "{e}");

    let invalid = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}}]}})
    .to_string();
    let api = parse_error_body(invalid.as_bytes()).expect("an error body");
    assert_eq!(api.reasons, ["API_KEY_INVALID"]);
    let e = classify_error("gemini", 400, &invalid, CAP);
    assert!(e.disables_provider && e.should_fall_back() && e.status == Some(400), "{e}");
    // The reason alone is enough, whatever the message says.
    let by_reason = json!({"error": {"code": 400, "message": "x", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
    assert!(classify_error("g", 400, &by_reason.to_string(), CAP).disables_provider);
}

#[test]
fn statuses_are_classified_by_the_one_rule() {
    let e = classify_error("gemini", 400, INVALID_ARGUMENT, CAP);
    assert!(e.should_fall_back() && !e.disables_provider);
    assert!(e.message.starts_with("HTTP 400: Thinking level MINIMAL is not supported"), "{e}");
    assert!(e.message.ends_with("(INVALID_ARGUMENT)"));
    let overloaded = r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#;
    for status in [500, 503, 504] {
        assert!(classify_error("g", status, overloaded, CAP).is_retryable(), "{status}");
    }
    let missing = r#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta.", "status": "NOT_FOUND"}}"#;
    for (status, body) in [(400, INVALID_ARGUMENT), (404, missing), (404, "")] {
        let e = classify_error("g", status, body, CAP);
        assert!(e.should_fall_back() && !e.is_retryable(), "{status}");
    }
    // Not JSON: the status alone decides.
    assert_eq!(classify_error("g", 502, "<html>Bad Gateway</html>", CAP).message, "HTTP 502");
    // A detail without @type, or of an unknown type, is skipped, not fatal to the parse.
    let odd = r#"{"error": {"code": 429, "message": "slow down", "details": [{"retryDelay": "30s"}, {"@type": "x.y/Z", "a": 1}]}}"#;
    let api = parse_error_body(odd.as_bytes()).expect("an error body");
    assert_eq!((api.retry_delay, api.quota.len()), (None, 0));
}

#[test]
fn files_are_read_bare_or_wrapped() {
    let uploaded = br#"{"file": {"name": "files/nvp2l539zsmd", "mimeType": "video/mp4", "sizeBytes": "1048576",
        "createTime": "2026-11-26T08:00:00.000000Z", "updateTime": "2026-11-26T08:00:00.000000Z",
        "expirationTime": "2026-11-28T08:00:00.000000Z", "sha256Hash": "ZmFrZQ==",
        "uri": "https://generativelanguage.googleapis.com/v1beta/files/nvp2l539zsmd", "state": "PROCESSING", "source": "UPLOADED"}}"#;
    let file = parse_file(uploaded).expect("a file");
    assert_eq!(file.name, "files/nvp2l539zsmd");
    assert_eq!(file.uri, "https://generativelanguage.googleapis.com/v1beta/files/nvp2l539zsmd");
    assert_eq!((file.state, file.size_bytes), (FileState::Processing, Some(1_048_576)));
    assert_eq!(file.expires.as_deref(), Some("2026-11-28T08:00:00.000000Z"));
    assert_eq!((file.sha256.as_deref(), file.error.as_deref()), (Some("ZmFrZQ=="), None));

    let active = br#"{"name": "files/a", "uri": "u", "state": "ACTIVE", "sizeBytes": 7, "videoMetadata": {"videoDuration": "61.5s"}}"#;
    let file = parse_file(active).expect("a file");
    assert_eq!((file.state, file.size_bytes), (FileState::Active, Some(7)));
    assert_eq!(file.video_duration, Some(Duration::from_millis(61_500)));

    let failed =
        br#"{"name": "files/b", "uri": "u", "state": "FAILED", "error": {"code": 3, "message": "Unsupported codec."}}"#;
    let file = parse_file(failed).expect("a file");
    assert_eq!((file.state, file.error.as_deref()), (FileState::Failed, Some("Unsupported codec.")));
    assert_eq!(
        parse_file(br#"{"name": "files/c", "uri": "u", "state": "ARCHIVED"}"#).map(|f| f.state),
        Ok(FileState::Unknown)
    );

    assert!(parse_file(br#"{"name": "files/d"}"#).unwrap_err().contains("files/d has no URI"));
    assert!(parse_file(br#"{"uri": "u"}"#).unwrap_err().contains("no name"));
    assert!(parse_file(b"<html>").unwrap_err().contains("not JSON"));
}
