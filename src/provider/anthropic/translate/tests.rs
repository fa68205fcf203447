//! The translation, checked against recorded and documented bodies.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::media::Frame;
use crate::media::FrameData;
use crate::schema::Task;

const IMAGE: &str = include_str!("../../../../fixtures/recorded/anthropic/image_describe.response.json");
const TOOL_USE: &str = include_str!("../../../../fixtures/recorded/anthropic/tool_use.response.json");
const REFUSAL: &str = include_str!("../../../../fixtures/recorded/anthropic/refusal.response.json");
const ERROR_SHAPE: &str = include_str!("../../../../fixtures/recorded/anthropic/error_shape.json");
const OVERLOADED: &str = include_str!("../../../../fixtures/recorded/anthropic/529_overloaded.json");

fn frame(index: u32, pts_ms: u64, bytes: &[u8]) -> Frame {
    Frame { index, pts_ms, width: 512, height: 288, data: FrameData::Jpeg(bytes.to_vec().into()) }
}

fn job(task: Task, input: JobInput) -> Job {
    Job {
        task,
        input,
        prompt: Arc::from("Describe what happens."),
        prompt_version: Arc::from("frames@1"),
        max_output_tokens: 300,
        span: None,
    }
}

fn frames_job(task: Task) -> Job {
    let frames = vec![frame(0, 0, &[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9]), frame(1, 61_500, &[0xFF, 0xD8, 0xFF, 0xD9])];
    job(task, JobInput::Frames(Arc::from(frames)))
}

fn options(force_tool: bool) -> RequestOptions {
    RequestOptions { schema: crate::timeline::json_schema(), force_tool }
}

fn request_json(job: &Job, options: &RequestOptions) -> Value {
    serde_json::to_value(build_request(job, "claude-haiku-4-5", options, "anthropic").expect("builds"))
        .expect("serializes")
}

/// A recorded body with fields replaced, the rest kept as recorded.
fn recorded_with(body: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(body).unwrap();
    edit(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn each_frame_is_a_base64_image_block_after_its_time() {
    let req = request_json(&frames_job(Task::Describe), &options(true));
    assert_eq!(req["model"], "claude-haiku-4-5");
    assert_eq!(req["max_tokens"], 300);
    assert!(req.get("tools").is_none() && req.get("tool_choice").is_none(), "no tool for a description: {req}");
    assert_eq!(req["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(req["messages"][0]["role"], "user");
    let blocks = req["messages"][0]["content"].as_array().expect("blocks");
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["text", "text", "image", "text", "image"]);
    assert_eq!(blocks[0], json!({"type": "text", "text": "Describe what happens."}));
    assert_eq!(blocks[1], json!({"type": "text", "text": "Frame at 00:00.000:"}));
    assert_eq!(blocks[3], json!({"type": "text", "text": "Frame at 01:01.500:"}));
    for (block, want) in
        [(&blocks[2], &[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9][..]), (&blocks[4], &[0xFF, 0xD8, 0xFF, 0xD9][..])]
    {
        assert_eq!(block["source"]["type"], "base64");
        assert_eq!(block["source"]["media_type"], "image/jpeg");
        let data = block["source"]["data"].as_str().expect("data");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).expect("base64"), want);
    }
}

#[test]
fn a_timeline_goes_through_one_forced_tool_of_the_timeline_schema() {
    let req = request_json(&frames_job(Task::Timeline), &options(true));
    assert_eq!(
        req["tools"],
        json!([{"name": "timeline", "description": TOOL_DESCRIPTION, "input_schema": crate::timeline::json_schema()}])
    );
    assert_eq!(req["tool_choice"], json!({"type": "tool", "name": "timeline"}));
    let find = request_json(&frames_job(Task::Find { what: "a dog".into() }), &options(true));
    assert_eq!(find["tool_choice"], json!({"type": "tool", "name": "timeline"}));
    // A model that refuses a forced tool is offered it instead.
    let offered = request_json(&frames_job(Task::Timeline), &options(false));
    assert_eq!(offered["tool_choice"], json!({"type": "auto"}));
    assert_eq!(offered["tools"][0]["name"], "timeline");
}

#[test]
fn text_and_bad_inputs() {
    let text = request_json(&job(Task::Describe, JobInput::Text("observations".into())), &options(true));
    assert_eq!(
        text["messages"][0]["content"],
        json!([{"type": "text", "text": "Describe what happens.\n\nobservations"}])
    );
    let video = job(
        Task::Describe,
        JobInput::Video { path: "v.mp4".into(), range: None, duration_ms: 1, size_bytes: 1, fps: None, sha256: None },
    );
    let err = build_request(&video, "m", &options(true), "anthropic").unwrap_err();
    assert!(err.should_fall_back(), "{err}");
    let empty = job(Task::Describe, JobInput::Frames(Arc::from(Vec::new())));
    assert_eq!(build_request(&empty, "m", &options(true), "anthropic").unwrap_err().class, ErrorClass::Fatal);
    let mut capless = frames_job(Task::Describe);
    capless.max_output_tokens = 0;
    assert_eq!(build_request(&capless, "m", &options(true), "anthropic").unwrap_err().class, ErrorClass::Fatal);
    let rgb = vec![Frame { index: 3, pts_ms: 5, width: 2, height: 2, data: FrameData::Rgb(vec![0; 12]) }];
    let err =
        build_request(&job(Task::Describe, JobInput::Frames(Arc::from(rgb))), "m", &options(true), "a").unwrap_err();
    assert!(err.should_fall_back() && err.message.contains("frame 3"), "{err}");
}

#[test]
fn the_recorded_description_is_read_with_its_usage() {
    let answer = parse_response(IMAGE.as_bytes(), &frames_job(Task::Describe), "anthropic").unwrap();
    assert!(answer.text.starts_with("This is a kiwi fruit"), "{}", answer.text);
    assert_eq!(answer.model.as_deref(), Some("claude-3-5-sonnet-20241022"));
    assert_eq!(answer.usage, Some(TokenUsage { input_tokens: 1586, output_tokens: 67, ..TokenUsage::default() }));
    assert!(!answer.truncated && answer.refusal.is_none() && answer.unusable_usage.is_none());
}

#[test]
fn the_tool_call_input_is_the_answer() {
    let events = json!({"events": [{"start": "00:01.000", "end": "00:02.000", "text": "A dog runs."}]});
    let body = recorded_with(TOOL_USE, |v| {
        v["content"][0]["name"] = json!("timeline");
        v["content"][0]["input"] = events.clone();
    });
    let answer = parse_response(&body, &frames_job(Task::Timeline), "anthropic").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&answer.text).unwrap(), events);
    assert_eq!(answer.usage.unwrap().output_tokens, 56);
    // Another tool's call is not the answer; with no text beside it the answer is empty.
    let err = parse_response(TOOL_USE.as_bytes(), &frames_job(Task::Timeline), "anthropic").unwrap_err();
    assert!(err.should_fall_back() && err.message.contains("empty"), "{err}");
}

#[test]
fn a_refusal_is_returned_as_one_with_its_usage() {
    let answer = parse_response(REFUSAL.as_bytes(), &frames_job(Task::Describe), "anthropic").unwrap();
    assert_eq!(answer.refusal.as_deref(), Some(""));
    assert_eq!(answer.usage.unwrap().prompt_tokens(), 1);
    let body = recorded_with(REFUSAL, |v| {
        v["stop_details"]["category"] = json!("cyber");
        v["stop_details"]["explanation"] = json!("This request was refused due to policy.");
    });
    let answer = parse_response(&body, &frames_job(Task::Describe), "anthropic").unwrap();
    assert_eq!(answer.refusal.as_deref(), Some("cyber: This request was refused due to policy."));
    let err = refusal_error("anthropic", answer.refusal.as_deref().unwrap());
    assert!(err.should_fall_back() && err.maybe_billed, "{err}");
    assert!(err.message.contains("refused") && err.message.contains("cyber"), "{err}");
}

#[test]
fn an_answer_cut_at_max_tokens_is_kept_and_marked() {
    let body = recorded_with(IMAGE, |v| v["stop_reason"] = json!("max_tokens"));
    let answer = parse_response(&body, &frames_job(Task::Describe), "anthropic").unwrap();
    assert!(answer.truncated && answer.text.starts_with("This is a kiwi"));
    let empty = recorded_with(IMAGE, |v| {
        v["stop_reason"] = json!("max_tokens");
        v["content"] = json!([]);
    });
    let err = parse_response(&empty, &frames_job(Task::Describe), "anthropic").unwrap_err();
    assert!(err.message.contains("output cap of 300 tokens"), "{err}");
}

#[test]
fn cache_writes_and_reads_are_counted_apart() {
    let body = recorded_with(TOOL_USE, |v| {
        v["content"] = json!([{"type": "text", "text": "ok"}]);
        v["usage"]["cache_creation_input_tokens"] = json!(300);
        v["usage"]["cache_creation"] = json!({"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200});
        v["usage"]["cache_read_input_tokens"] = json!(50);
    });
    let usage = parse_response(&body, &frames_job(Task::Describe), "anthropic").unwrap().usage.unwrap();
    assert_eq!(
        usage,
        TokenUsage {
            input_tokens: 762,
            output_tokens: 56,
            cache_write_5m_tokens: 100,
            cache_write_1h_tokens: 200,
            cache_read_tokens: 50
        }
    );
    assert_eq!(usage.prompt_tokens(), 762 + 300 + 50);
    // Without the split, every write is taken at the 5-minute lifetime.
    let body = recorded_with(IMAGE, |v| v["usage"]["cache_creation_input_tokens"] = json!(40));
    let usage = parse_response(&body, &frames_job(Task::Describe), "anthropic").unwrap().usage.unwrap();
    assert_eq!((usage.cache_write_5m_tokens, usage.cache_write_1h_tokens), (40, 0));
    // An odd count costs the usage, not the answer.
    let body = recorded_with(IMAGE, |v| v["usage"]["input_tokens"] = json!(-5));
    let answer = parse_response(&body, &frames_job(Task::Describe), "anthropic").unwrap();
    assert_eq!((answer.usage, answer.unusable_usage.as_deref()), (None, Some("input_tokens = -5")));
}

/// A failed answer through the one classification, with this protocol's error reader.
fn http_error(provider: &str, status: u16, body: &str, retry_after: Option<Duration>, cap: Duration) -> ProviderError {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(wait) = retry_after {
        headers.insert("retry-after", wait.as_secs().to_string().parse().unwrap());
    }
    crate::provider::classify(provider, status, body, error_facts(body.as_bytes()).as_ref(), &headers, cap)
}

#[test]
fn error_bodies_are_read_and_classified_by_the_one_rule() {
    let cap = Duration::from_secs(30);
    let api = parse_error_body(ERROR_SHAPE.as_bytes()).unwrap();
    assert_eq!(api.summary(), "The requested resource could not be found. (not_found_error)");
    let overloaded = http_error("anthropic", 529, OVERLOADED, None, cap);
    assert!(overloaded.is_retryable(), "529 is transient: {overloaded}");
    assert_eq!(overloaded.message, "HTTP 529: Overloaded (overloaded_error)");
    let limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#;
    let err = http_error("anthropic", 429, limited, Some(Duration::from_secs(2)), cap);
    assert!(err.is_retryable() && err.retry_after == Some(Duration::from_secs(2)), "{err}");
    let err = http_error("anthropic", 429, limited, Some(Duration::from_secs(3600)), cap);
    assert!(err.should_fall_back(), "a wait over the cap is handed on: {err}");
    let auth = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
    let err = http_error("anthropic", 401, auth, None, cap);
    assert!(err.disables_provider && err.should_fall_back(), "{err}");
    assert_eq!(err.message, "HTTP 401: invalid x-api-key (authentication_error)");
    // An error body under a 200 is an error, not a garbled answer.
    let err = parse_response(OVERLOADED.as_bytes(), &frames_job(Task::Describe), "anthropic").unwrap_err();
    assert!(err.should_fall_back() && err.message.contains("overloaded_error"), "{err}");
    let err = parse_response(b"<html>", &frames_job(Task::Describe), "anthropic").unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn limits_are_refused_before_sending() {
    let limits = Limits { images_per_request: 1, request_bytes: 1 << 20 };
    let err = check_limits(&frames_job(Task::Describe), limits, "anthropic").unwrap_err();
    assert!(err.not_sent && err.should_fall_back(), "{err}");
    assert_eq!(err.message, "2 images in one request is over the model's limit of 1");
    let limits = Limits { images_per_request: 100, request_bytes: 100 };
    let err = check_limits(&frames_job(Task::Describe), limits, "anthropic").unwrap_err();
    assert!(err.message.contains("over the API's limit of 100 bytes"), "{err}");
    let limits = Limits { images_per_request: 100, request_bytes: 32_000_000 };
    assert!(check_limits(&frames_job(Task::Describe), limits, "anthropic").is_ok());
    // Over 20 images, each may be at most 2000 px a side.
    let big: Vec<Frame> = (0..21)
        .map(|i| Frame { index: i, pts_ms: 0, width: 2048, height: 1152, data: FrameData::Jpeg(vec![0xFF].into()) })
        .collect();
    let err = check_limits(&job(Task::Describe, JobInput::Frames(Arc::from(big))), limits, "anthropic").unwrap_err();
    assert!(err.message.contains("2048x1152 px, over the API's 2000x2000 px for 21 images"), "{err}");
    // The size reckoned covers what is sent.
    let job = frames_job(Task::Describe);
    let sent = serde_json::to_vec(&build_request(&job, "claude-haiku-4-5", &options(true), "a").unwrap()).unwrap();
    assert!(request_bytes(&job) >= sent.len() as u64, "{} < {}", request_bytes(&job), sent.len());
}

#[test]
fn rate_limit_headers_pause_until_the_reset() {
    // 2027-01-15T08:00:00Z.
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let headers = [
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2027-01-15T08:00:30Z"),
        ("anthropic-ratelimit-tokens-remaining", "1000"),
    ];
    let lookup = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let q = quota(lookup, now);
    assert_eq!(q.requests, Some(0));
    assert_eq!(q.requests_reset, Some(Duration::from_secs(30)));
    assert_eq!(q.pause(), Some(Duration::from_millis(600)), "one request's refill of 50 in 30 s");
    let none = quota(|_| None, now);
    assert_eq!(none.pause(), None);
}

#[test]
fn rfc3339_times() {
    let epoch = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(epoch(0)));
    assert_eq!(parse_rfc3339("2027-01-15T08:00:00Z"), Some(epoch(1_800_000_000)));
    assert_eq!(parse_rfc3339("2027-01-15T09:00:00+01:00"), Some(epoch(1_800_000_000)));
    assert_eq!(parse_rfc3339("2027-01-15T08:00:00.250Z"), Some(epoch(1_800_000_000) + Duration::from_millis(250)));
    for bad in [
        "",
        "soon",
        "2027-13-01T00:00:00Z",
        "2027-01-15T08:00:00",
        "99999999999-01-01T00:00:00Z",
        "2027-01-15T08:00:00+9999999:00",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}
