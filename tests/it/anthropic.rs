//! The Anthropic backend against a fake Messages API that answers in the
//! recorded shapes (fixtures/recorded/anthropic) and checks what it is sent.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{Config, ModelProfile, Price, Protocol, ProviderProfile};
use vidgate::media::{Frame, FrameFormat};
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::provider::anthropic::Anthropic;
use vidgate::provider::{Job, JobInput, Provider, ProviderError, ProviderOutput};
use vidgate::schema::{Outcome, SamplingMode, Task};

use crate::util::*;

const KEY: &str = "sk-ant-api03-vidgate-test-4d2c9e";
const DESCRIBED: &str = include_str!("../../fixtures/recorded/anthropic/image_describe.response.json");
const TOOL_USE: &str = include_str!("../../fixtures/recorded/anthropic/tool_use.response.json");
const REFUSAL: &str = include_str!("../../fixtures/recorded/anthropic/refusal.response.json");
const OVERLOADED: &str = include_str!("../../fixtures/recorded/anthropic/529_overloaded.json");

/// A key variable unique to the test, so parallel tests never share one.
fn key_var(test: &str) -> String {
    let var = format!("VIDGATE_TEST_ANTHROPIC_KEY_{}", test.to_uppercase());
    std::env::set_var(&var, KEY);
    var
}

fn profile(server: &MockServer, test: &str) -> ProviderProfile {
    let mut models = std::collections::BTreeMap::new();
    models.insert(
        "claude-fake".to_string(),
        ModelProfile { max_images_per_request: Some(10), ..ModelProfile::default() },
    );
    ProviderProfile {
        protocol: Some(Protocol::Anthropic),
        base_url: Some(server.uri()),
        api_key_env: Some(key_var(test)),
        model: Some("claude-fake".into()),
        price: Some(Price {
            input_per_mtok: 1.0,
            output_per_mtok: 5.0,
            cached_input_per_mtok: Some(0.1),
            audio_input_per_mtok: None,
        }),
        models,
        timeout_s: Some(5.0),
        ..ProviderProfile::default()
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.retry.max_attempts = 3;
    c
}

fn jpeg_frames(count: u32) -> Vec<Frame> {
    frames_as(&testsrc_10s(), &plan(SamplingMode::Count { count }, 256), FrameFormat::Jpeg { quality: 80 }).unwrap()
}

fn job(task: Task, frames: Vec<Frame>) -> Job {
    Job {
        task,
        input: JobInput::Frames(frames.into()),
        prompt: "Describe.".into(),
        prompt_version: "frame@1".into(),
        max_output_tokens: 100,
        span: vidgate::schema::TimeRange::new(0, 10_000),
    }
}

struct Run {
    result: Result<ProviderOutput, ProviderError>,
    log: AttemptLog,
    budget: Budget,
    elapsed: Duration,
}

async fn run(profile: ProviderProfile, job: Job) -> Run {
    let config = config();
    let backend = Arc::new(Anthropic::from_profile("claude", &profile, &config).unwrap());
    let budget = Budget::new(1.0);
    let log = AttemptLog::default();
    let stack = policy::standard_stack(backend, &profile, &config, budget.clone(), log.clone());
    let started = Instant::now();
    let result = stack.run(&job).await;
    Run { result, log, budget, elapsed: started.elapsed() }
}

/// A recorded body with some fields replaced, the rest as recorded.
fn recorded(body: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut value: Value = serde_json::from_str(body).unwrap();
    edit(&mut value);
    value
}

fn described(text: &str) -> Value {
    recorded(DESCRIBED, |v| v["content"][0]["text"] = json!(text))
}

fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
}

fn bad_request(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(error("invalid_request_error", message))
}

/// Checks each request as the Messages API would, and answers with the frame
/// times it saw; a request offering the timeline tool gets a tool call.
struct Checking;

impl Respond for Checking {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(e) => return bad_request(&e.to_string()),
        };
        if body["max_tokens"].as_u64().is_none() || body["model"].as_str().is_none() {
            return bad_request("max_tokens: Field required");
        }
        if body["tool_choice"] == json!({"type": "tool", "name": "timeline"}) {
            if body["tools"][0]["input_schema"] != vidgate::timeline::json_schema() {
                return bad_request("tools.0.input_schema: not the timeline schema");
            }
            let events = json!({"events": [{"start": "00:02.000", "end": "00:04.500", "text": "The pattern moves."}]});
            return ResponseTemplate::new(200).set_body_json(recorded(TOOL_USE, |v| {
                v["content"][0]["name"] = json!("timeline");
                v["content"][0]["input"] = events;
            }));
        }
        let blocks = body["messages"][0]["content"].as_array().cloned().unwrap_or_default();
        let mut seen = Vec::new();
        let mut after_time = false;
        for block in &blocks {
            match block["type"].as_str() {
                Some("text") => {
                    let time = block["text"].as_str().and_then(|t| t.strip_prefix("Frame at "));
                    if let Some(t) = time {
                        seen.push(t.trim_end_matches(':').to_string());
                    }
                    after_time = time.is_some();
                }
                Some("image") => {
                    let source = &block["source"];
                    if !after_time || source["type"] != "base64" || source["media_type"] != "image/jpeg" {
                        return bad_request("each image must be a base64 JPEG after its time");
                    }
                    let data = source["data"].as_str().unwrap_or_default();
                    let jpeg = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                    if jpeg_size(&jpeg) != Some((256, 192)) {
                        return bad_request("Could not process image");
                    }
                    after_time = false;
                }
                _ => return bad_request("messages.0.content: unknown block type"),
            }
        }
        ResponseTemplate::new(200).set_body_json(described(&format!("A test pattern at {}.", seen.join(", "))))
    }
}

fn messages() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/messages"))
}

#[test]
fn anthropic_describes_frames_with_its_headers_and_the_recorded_usage_priced() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        messages()
            .and(header("x-api-key", KEY))
            .and(header("anthropic-version", "2023-06-01"))
            .and(header("content-type", "application/json"))
            .respond_with(Checking)
            .mount(&server)
            .await;
        let frames = jpeg_frames(3);
        let times: Vec<String> = frames.iter().map(|f| vidgate::timecode::format(f.pts_ms)).collect();
        let r = run(profile(&server, "describe"), job(Task::Describe, frames)).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations.len(), 1);
        assert_eq!(out.observations[0].text, format!("A test pattern at {}.", times.join(", ")));
        assert_eq!(out.model, "claude-3-5-sonnet-20241022", "the model that answered");
        // The recorded usage: 1586 input tokens at $1/M and 67 output at $5/M.
        assert_eq!((out.usage.input_tokens, out.usage.output_tokens), (1586, 67));
        assert!((out.usage.cost_usd - 0.001921).abs() < 1e-12, "{}", out.usage.cost_usd);
        assert!((r.budget.spent() - 0.001921).abs() < 1e-12);
        let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!((sent["model"].as_str(), sent["max_tokens"].as_u64()), (Some("claude-fake"), Some(100)));
        assert_eq!(sent["messages"][0]["content"][0], json!({"type": "text", "text": "Describe."}));
    });
}

#[test]
fn anthropic_timeline_comes_back_as_the_tool_call_input() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        messages().respond_with(Checking).mount(&server).await;
        let r = run(profile(&server, "timeline"), job(Task::Timeline, jpeg_frames(2))).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations.len(), 1);
        let o = &out.observations[0];
        assert_eq!((o.range.start_ms, o.range.end_ms, o.text.as_str()), (2_000, 4_500, "The pattern moves."));
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "a valid tool call needs no repair");
        assert_eq!(out.usage.output_tokens, 56);
    });
}

#[test]
fn anthropic_429_with_retry_after_waits_then_succeeds() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let limited = error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit");
        messages()
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1").set_body_json(limited))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        messages().respond_with(Checking).with_priority(2).mount(&server).await;
        let r = run(profile(&server, "r429"), job(Task::Describe, jpeg_frames(1))).await;
        r.result.unwrap();
        assert!(r.elapsed >= Duration::from_secs(1), "waited {:?}", r.elapsed);
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "no extra attempts");
        let outcomes: Vec<_> = r.log.snapshot().into_iter().map(|a| a.outcome).collect();
        assert!(matches!(outcomes[..], [Outcome::Transient { .. }, Outcome::Ok]), "{outcomes:?}");
    });
}

#[test]
fn anthropic_529_overloaded_is_retried_then_given_up_on() {
    runtime().block_on(async {
        let overloaded = || ResponseTemplate::new(529).set_body_string(OVERLOADED);
        let server = MockServer::start().await;
        messages().respond_with(overloaded()).up_to_n_times(1).with_priority(1).mount(&server).await;
        messages().respond_with(Checking).with_priority(2).mount(&server).await;
        let r = run(profile(&server, "r529"), job(Task::Describe, jpeg_frames(1))).await;
        r.result.unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 2);

        let server = MockServer::start().await;
        messages().respond_with(overloaded()).mount(&server).await;
        let r = run(profile(&server, "r529_always"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.to_string().contains("HTTP 529: Overloaded (overloaded_error)"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 3, "the configured attempts, no more");
        assert_eq!(r.budget.spent(), 0.0, "an overloaded answer is not billed");
    });
}

#[test]
fn anthropic_401_disables_the_provider_and_never_shows_the_key() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        // A server that quotes the key back, as some proxies in front of the API do.
        let echo = format!("invalid x-api-key: {KEY}");
        messages()
            .respond_with(ResponseTemplate::new(401).set_body_json(error("authentication_error", &echo)))
            .mount(&server)
            .await;
        let p = profile(&server, "r401");
        let config = config();
        let backend = Arc::new(Anthropic::from_profile("claude", &p, &config).unwrap());
        let log = AttemptLog::default();
        let stack = policy::standard_stack(backend.clone(), &p, &config, Budget::new(1.0), log.clone());
        let first = stack.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap_err();
        assert!(first.disables_provider && first.should_fall_back(), "{first}");
        // Straight to the backend, past the breaker: it refuses by itself now.
        let again = backend.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap_err();
        assert!(again.to_string().contains("disabled for this run"), "{again}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "no call after the 401");
        let everything = format!("{first} {first:?} {again:?} {backend:?} {:?}", log.snapshot());
        assert!(!everything.contains(KEY), "the key leaked: {everything}");
        assert!(everything.contains("invalid x-api-key: ***"), "{everything}");
    });
}

#[test]
fn anthropic_refusal_falls_back_billed_as_reported() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let refusal = recorded(REFUSAL, |v| {
            v["stop_details"]["category"] = json!("cyber");
            v["usage"] = json!({"input_tokens": 1200, "output_tokens": 3});
        });
        messages().respond_with(ResponseTemplate::new(200).set_body_json(refusal)).mount(&server).await;
        let r = run(profile(&server, "refusal"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.should_fall_back(), "another provider may take it: {err}");
        assert!(err.to_string().contains("the model refused (stop_reason \"refusal\"): cyber"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "not retried");
        // 1200 input at $1/M and 3 output at $5/M: what the API billed, not the estimate.
        assert!((r.budget.spent() - 0.001215).abs() < 1e-12, "{}", r.budget.spent());
    });
}

#[test]
fn anthropic_max_tokens_cut_is_kept_and_warned() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let cut = recorded(DESCRIBED, |v| {
            v["content"][0]["text"] = json!("A test pattern, and then");
            v["stop_reason"] = json!("max_tokens");
        });
        messages().respond_with(ResponseTemplate::new(200).set_body_json(cut)).mount(&server).await;
        let r = run(profile(&server, "cut"), job(Task::Describe, jpeg_frames(1))).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations[0].text, "A test pattern, and then");
        assert_eq!(
            out.warnings,
            ["claude: the answer stopped at the output cap of 100 tokens and may be cut short (stop_reason \"max_tokens\")"]
        );
        assert_eq!(r.log.snapshot()[0].warnings, out.warnings, "the report carries it");
    });
}

#[test]
fn anthropic_cache_reads_and_writes_are_priced_from_the_profile() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let cached = recorded(DESCRIBED, |v| {
            v["usage"] = json!({
                "input_tokens": 1000,
                "cache_creation_input_tokens": 400,
                "cache_read_input_tokens": 2000,
                "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 100
            });
        });
        messages().respond_with(ResponseTemplate::new(200).set_body_json(cached)).mount(&server).await;
        let r = run(profile(&server, "cache"), job(Task::Describe, jpeg_frames(1))).await;
        let out = r.result.unwrap();
        assert_eq!(out.usage.input_tokens, 3400, "every prompt token, however billed");
        // 1000 × $1 + 400 × $1.25 + 2000 × $0.10 + 100 × $5, per million.
        assert!((out.usage.cost_usd - 0.0022).abs() < 1e-12, "{}", out.usage.cost_usd);
    });
}

#[test]
fn anthropic_estimates_a_batch_of_frames_and_refuses_one_over_its_limits_unsent() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        messages().respond_with(Checking).mount(&server).await;
        let p = profile(&server, "estimate");
        let backend = Anthropic::from_profile("claude", &p, &config()).unwrap();
        let frames = jpeg_frames(8);
        let estimate = backend.estimate(&job(Task::Describe, frames.clone())).unwrap();
        // 8 frames of 256×192: 66 tokens each (w×h/750), and the text at 3 characters a token.
        let labels: usize =
            frames.iter().map(|f| format!("Frame at {}:", vidgate::timecode::format(f.pts_ms)).len()).sum();
        let text = (("Describe.".len() + labels) as u64).div_ceil(3);
        assert_eq!(estimate.input_tokens, 8 * 66 + text + 8);
        assert_eq!(estimate.output_tokens, 100);
        assert!((estimate.cost_usd - (estimate.input_tokens as f64 + 500.0) / 1e6).abs() < 1e-12);
        let timeline = backend.estimate(&job(Task::Timeline, frames)).unwrap();
        assert!(timeline.input_tokens > 2 * estimate.input_tokens, "the tool and one repair are reserved");

        let err = backend.estimate(&job(Task::Describe, jpeg_frames(11))).unwrap_err();
        assert_eq!(err.to_string(), "claude: 11 images in one request is over the model's limit of 10");
        let err = backend.run(&job(Task::Describe, jpeg_frames(11))).await.unwrap_err();
        assert!(err.not_sent && err.should_fall_back(), "{err}");
        assert!(server.received_requests().await.unwrap().is_empty(), "nothing was sent");
    });
}

#[test]
fn anthropic_spent_ratelimit_headers_hold_off_the_next_call() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        let reset = rfc3339(SystemTime::now() + Duration::from_secs(4));
        let spent = ResponseTemplate::new(200)
            .set_body_json(described("first"))
            .insert_header("anthropic-ratelimit-requests-limit", "2")
            .insert_header("anthropic-ratelimit-requests-remaining", "0")
            .insert_header("anthropic-ratelimit-requests-reset", reset.as_str());
        messages().respond_with(spent).up_to_n_times(1).with_priority(1).mount(&server).await;
        messages().respond_with(Checking).with_priority(2).mount(&server).await;
        let p = profile(&server, "quota");
        let config = config();
        let backend = Arc::new(Anthropic::from_profile("claude", &p, &config).unwrap());
        let stack = policy::standard_stack(backend, &p, &config, Budget::new(1.0), AttemptLog::default());
        let job = job(Task::Describe, jpeg_frames(1));
        stack.run(&job).await.unwrap();
        let started = Instant::now();
        stack.run(&job).await.unwrap();
        // A full bucket in 3 to 4 s at 2 requests: one request's refill is at least 1.5 s.
        assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?} for the reset", started.elapsed());
    });
}

/// `t` as RFC 3339 in UTC, to whole seconds.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}
