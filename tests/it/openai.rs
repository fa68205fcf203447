//! The OpenAI-compatible backend against a fake server that answers in the
//! shapes of the recorded API, and checks what it is sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{AuthScheme, Config, ModelProfile, Price, Protocol, ProviderProfile};
use vidgate::media::{Frame, FrameFormat};
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::provider::openai_compat::OpenAiCompat;
use vidgate::provider::{Job, JobInput, ProviderError, ProviderOutput};
use vidgate::schema::{Outcome, SamplingMode, Task};

use crate::util::*;

// Native video over the same protocol.
mod video;

const KEY: &str = "sk-vidgate-test-7f3a9c1e5b";

/// A key variable unique to the test, so parallel tests never share one.
fn key_var(test: &str) -> String {
    let var = format!("VIDGATE_TEST_KEY_{}", test.to_uppercase());
    std::env::set_var(&var, KEY);
    var
}

fn profile(server: &MockServer, test: &str) -> ProviderProfile {
    let mut models = std::collections::BTreeMap::new();
    models.insert("fake-vision".to_string(), ModelProfile { json_schema: Some(true), ..ModelProfile::default() });
    ProviderProfile {
        protocol: Some(Protocol::Openai),
        base_url: Some(format!("{}/v1", server.uri())),
        api_key_env: Some(key_var(test)),
        model: Some("fake-vision".into()),
        price: Some(Price {
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
            cached_input_per_mtok: None,
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
    let backend = Arc::new(OpenAiCompat::from_profile("fake", &profile, &config).unwrap());
    let budget = Budget::new(1.0);
    let log = AttemptLog::default();
    let stack = policy::standard_stack(backend, &profile, &config, budget.clone(), log.clone());
    let started = Instant::now();
    let result = stack.run(&job).await;
    Run { result, log, budget, elapsed: started.elapsed() }
}

/// A chat completion in the recorded shape, saying which frames it saw.
pub(crate) fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_730_000_000,
        "model": "fake-vision-2026-01-01",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default",
        "system_fingerprint": "fp_test"
    })
}

/// Checks each request like the real API would, and answers with the frame times it saw.
struct Checking;

impl Respond for Checking {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(e) => return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": e.to_string()}})),
        };
        let parts = body["messages"][0]["content"].as_array().cloned().unwrap_or_default();
        // A timeline or find prompt asks for JSON: answer with events.
        let wants_json = |t: &str| t.contains("Return only JSON");
        if body["messages"][0]["content"].as_str().is_some_and(wants_json)
            || parts.iter().any(|p| p["text"].as_str().is_some_and(wants_json))
        {
            return ResponseTemplate::new(200).set_body_json(completion(
                r#"{"events":[{"start":"00:02.000","end":"00:04.500","text":"The pattern moves."}]}"#,
            ));
        }
        let mut seen = Vec::new();
        for part in &parts {
            match part["type"].as_str() {
                Some("text") => {
                    if let Some(t) = part["text"].as_str().and_then(|t| t.strip_prefix("Frame at ")) {
                        seen.push(t.trim_end_matches(':').to_string());
                    }
                }
                Some("image_url") => {
                    let url = part["image_url"]["url"].as_str().unwrap_or_default();
                    let Some(data) = url.strip_prefix("data:image/jpeg;base64,") else {
                        return ResponseTemplate::new(400)
                            .set_body_json(json!({"error": {"message": "not a JPEG data URL"}}));
                    };
                    let jpeg = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                    if jpeg_size(&jpeg) != Some((256, 192)) {
                        return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad image"}}));
                    }
                }
                _ => return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad part"}})),
            }
        }
        ResponseTemplate::new(200).set_body_json(completion(&format!("A test pattern at {}.", seen.join(", "))))
    }
}

async fn server() -> MockServer {
    MockServer::start().await
}

fn chat() -> wiremock::MockBuilder {
    Mock::given(method("POST")).and(path("/v1/chat/completions"))
}

#[test]
fn frames_batches_timestamps_auth_and_true_cost() {
    runtime().block_on(async {
        let server = server().await;
        chat()
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .respond_with(Checking)
            .mount(&server)
            .await;
        let frames = jpeg_frames(3);
        let times: Vec<u64> = frames.iter().map(|f| f.pts_ms).collect();
        let r = run(profile(&server, "ok"), job(Task::Describe, frames)).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations.len(), 1);
        let o = &out.observations[0];
        assert_eq!((o.range.start_ms, o.range.end_ms), (times[0], times[2] + 1));
        assert_eq!(
            o.text,
            format!(
                "A test pattern at {}, {}, {}.",
                vidgate::timecode::format(times[0]),
                vidgate::timecode::format(times[1]),
                vidgate::timecode::format(times[2])
            )
        );
        assert_eq!(o.model.as_deref(), Some("fake-vision-2026-01-01"));
        // 1000 input tokens at $1/M and 50 output at $2/M.
        assert!((out.usage.cost_usd - 0.0011).abs() < 1e-12, "{}", out.usage.cost_usd);
        assert!((r.budget.spent() - 0.0011).abs() < 1e-12);
        let attempts = r.log.snapshot();
        assert_eq!(attempts.len(), 1);
        assert!(attempts[0].estimated_cost_usd > 0.0);
        let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!(sent["model"], "fake-vision");
        assert_eq!(sent["max_tokens"], 100);
    });
}

#[test]
fn azure_and_keyless_auth_variants() {
    runtime().block_on(async {
        let server = server().await;
        chat()
            .and(query_param("api-version", "2024-10-21"))
            .and(header("api-key", KEY))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion("azure")))
            .mount(&server)
            .await;
        let mut p = profile(&server, "azure");
        p.auth = Some(AuthScheme::ApiKeyHeader);
        p.api_version = Some("2024-10-21".into());
        assert_eq!(run(p, job(Task::Describe, jpeg_frames(1))).await.result.unwrap().observations[0].text, "azure");

        let server = self::server().await;
        chat().respond_with(ResponseTemplate::new(200).set_body_json(completion("local"))).mount(&server).await;
        let mut p = profile(&server, "keyless");
        p.auth = Some(AuthScheme::None);
        p.api_key_env = None;
        run(p, job(Task::Describe, jpeg_frames(1))).await.result.unwrap();
        let sent = &server.received_requests().await.unwrap()[0];
        assert!(sent.headers.get("authorization").is_none());
    });
}

#[test]
fn a_429_with_retry_after_waits_then_succeeds() {
    runtime().block_on(async {
        let server = server().await;
        chat()
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "2").set_body_json(
                json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
            ))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        chat().respond_with(Checking).with_priority(2).mount(&server).await;
        let r = run(profile(&server, "r429"), job(Task::Describe, jpeg_frames(1))).await;
        r.result.unwrap();
        assert!(r.elapsed >= Duration::from_secs(2), "waited {:?}", r.elapsed);
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "no extra attempts");
    });
}

#[test]
fn a_long_retry_after_falls_back_without_sleeping() {
    runtime().block_on(async {
        let server = server().await;
        chat().respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600")).mount(&server).await;
        let r = run(profile(&server, "r3600"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.should_fall_back() && err.to_string().contains("over the 30 s cap"), "{err}");
        assert!(r.elapsed < Duration::from_secs(2));
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert_eq!(r.budget.spent(), 0.0, "a refused call is not billed");
    });
}

#[test]
fn server_errors_are_retried_then_succeed() {
    runtime().block_on(async {
        let server = server().await;
        chat().respond_with(ResponseTemplate::new(500)).up_to_n_times(1).with_priority(1).mount(&server).await;
        chat().respond_with(ResponseTemplate::new(503)).up_to_n_times(1).with_priority(2).mount(&server).await;
        chat().respond_with(Checking).with_priority(3).mount(&server).await;
        let r = run(profile(&server, "r5xx"), job(Task::Describe, jpeg_frames(1))).await;
        r.result.unwrap();
        let outcomes: Vec<_> = r.log.snapshot().into_iter().map(|a| a.outcome).collect();
        assert!(
            matches!(outcomes[..], [Outcome::Transient { .. }, Outcome::Transient { .. }, Outcome::Ok]),
            "{outcomes:?}"
        );
    });
}

#[test]
fn a_400_is_not_retried() {
    runtime().block_on(async {
        let server = server().await;
        chat()
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "Invalid image", "type": "invalid_request_error", "param": null, "code": "invalid_image"}})))
            .mount(&server)
            .await;
        let r = run(profile(&server, "r400"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert_eq!(err.to_string().lines().next().unwrap(), "fake: HTTP 400: Invalid image (invalid_image): {\"error\":{\"code\":\"invalid_image\",\"message\":\"Invalid image\",\"param\":null,\"type\":\"invalid_request_error\"}}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    });
}

#[test]
fn a_401_disables_the_provider_and_never_shows_the_key() {
    runtime().block_on(async {
        let server = server().await;
        let echo =
            format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com.");
        chat()
            .respond_with(ResponseTemplate::new(401).set_body_json(
                json!({"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"}}),
            ))
            .mount(&server)
            .await;
        let p = profile(&server, "r401");
        let config = config();
        let backend = Arc::new(OpenAiCompat::from_profile("fake", &p, &config).unwrap());
        let log = AttemptLog::default();
        let stack = policy::standard_stack(backend.clone(), &p, &config, Budget::new(1.0), log.clone());
        let first = stack.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap_err();
        let second = stack.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap_err();
        assert!(first.disables_provider && first.should_fall_back());
        // The refused key benches the provider at once: the second call is not made.
        assert!(second.to_string().contains("benched for"), "{second}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "no call after the 401");
        let everything = format!("{first} {first:?} {second:?} {backend:?} {:?}", log.snapshot());
        assert!(!everything.contains(KEY), "the key leaked: {everything}");
        assert!(everything.contains("Incorrect API key provided: ***"), "{everything}");
    });
}

#[test]
fn a_stalled_server_times_out_and_counts_as_maybe_billed() {
    runtime().block_on(async {
        let server = server().await;
        chat()
            .respond_with(
                ResponseTemplate::new(200).set_body_json(completion("late")).set_delay(Duration::from_secs(30)),
            )
            .mount(&server)
            .await;
        let mut p = profile(&server, "stall");
        p.timeout_s = Some(0.5);
        let r = run(p, job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.maybe_billed && err.to_string().contains("no answer within 0.5 s"), "{err}");
        assert_eq!(r.log.len(), 3, "each timed-out attempt is recorded");
        let estimate = r.log.snapshot()[0].estimated_cost_usd;
        assert!((r.budget.spent() - 3.0 * estimate).abs() < 1e-12, "each timed-out call counts at its worst case");
        assert!(r.elapsed < Duration::from_secs(10));
    });
}

#[test]
fn invalid_json_is_retried_then_fails_clearly() {
    runtime().block_on(async {
        let server = server().await;
        chat().respond_with(ResponseTemplate::new(200).set_body_string("{\"choices\": [tru")).mount(&server).await;
        let r = run(profile(&server, "badjson"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.to_string().contains("gave up after 3 attempts: the answer is not JSON"), "{err}");
    });
}

#[test]
fn a_huge_body_is_capped_not_held() {
    runtime().block_on(async {
        let server = server().await;
        let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(10 << 20));
        chat().respond_with(ResponseTemplate::new(200).set_body_string(huge)).mount(&server).await;
        let r = run(profile(&server, "huge"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(err.should_fall_back() && err.to_string().contains("over the 8388608-byte cap"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    });
}

#[test]
fn a_refusal_falls_back_without_retrying() {
    runtime().block_on(async {
        let server = server().await;
        let mut body = completion("");
        body["choices"][0]["message"]["content"] = Value::Null;
        body["choices"][0]["message"]["refusal"] = json!("I can't help with that.");
        chat().respond_with(ResponseTemplate::new(200).set_body_json(body)).mount(&server).await;
        let r = run(profile(&server, "refusal"), job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        assert!(
            err.should_fall_back() && err.to_string().contains("the model refused: I can't help with that."),
            "{err}"
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        let estimate = r.log.snapshot()[0].estimated_cost_usd;
        assert!(
            estimate > 0.0 && (r.budget.spent() - estimate).abs() < 1e-12,
            "a refusal may still be billed: counted at its estimate"
        );
    });
}

/// Answers with the next text of a list, one per call.
struct Sequence(Vec<String>, AtomicUsize);

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.1.fetch_add(1, Ordering::SeqCst).min(self.0.len() - 1);
        ResponseTemplate::new(200).set_body_json(completion(&self.0[i]))
    }
}

/// A model that cannot be held to a schema: its answers are free text.
fn free_text(mut profile: ProviderProfile) -> ProviderProfile {
    profile.models.values_mut().for_each(|m| m.json_schema = Some(false));
    profile
}

#[test]
fn a_schema_violating_timeline_gets_one_repair_then_fails() {
    runtime().block_on(async {
        let bad = r#"{"events":[{"start":"00:50","end":"00:02","text":"backwards"}]}"#.to_string();
        let good = r#"{"events":[{"start":"00:00","end":"00:04","text":"A test pattern."}]}"#.to_string();

        let server = server().await;
        chat().respond_with(Sequence(vec![bad.clone(), good], AtomicUsize::new(0))).mount(&server).await;
        let r = run(free_text(profile(&server, "repair_ok")), job(Task::Timeline, jpeg_frames(2))).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations[0].text, "A test pattern.");
        assert_eq!(out.usage.input_tokens, 2000, "both calls are billed");
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2);
        let second: Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert!(second.get("response_format").is_none(), "free text, as the first");
        assert!(second
            .to_string()
            .contains("could not be used: event 1 ends (00:02.000) before it starts (00:50.000)"));

        let server = self::server().await;
        chat().respond_with(Sequence(vec![bad.clone()], AtomicUsize::new(0))).mount(&server).await;
        let r = run(free_text(profile(&server, "repair_fail")), job(Task::Timeline, jpeg_frames(2))).await;
        let err = r.result.unwrap_err();
        assert!(err.to_string().contains("unit failed: the answer stayed invalid after one repair"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "one repair, no more");
        assert!((r.budget.spent() - 0.0022).abs() < 1e-12, "the two billed calls, exactly: {}", r.budget.spent());

        // Held to the schema, the model would answer alike again: no repair.
        let server = self::server().await;
        chat().respond_with(Sequence(vec![bad], AtomicUsize::new(0))).mount(&server).await;
        let r = run(profile(&server, "repair_schema"), job(Task::Timeline, jpeg_frames(2))).await;
        let err = r.result.unwrap_err();
        assert!(
            err.to_string().contains("unit failed: the answer is invalid although its form was constrained"),
            "{err}"
        );
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1, "no repair");
        let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(first["response_format"]["type"], "json_schema");
        assert!((r.budget.spent() - 0.0011).abs() < 1e-12, "the one billed call, exactly: {}", r.budget.spent());
    });
}

#[test]
fn a_connection_reset_mid_body_is_retried() {
    runtime().block_on(async {
        // A server that promises 1000 bytes, sends 20, and hangs up; then answers properly.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let good = completion("after the reset").to_string();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut sock, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 1 << 20];
                let mut got = Vec::new();
                // Read the head and the body the client announced.
                while let Ok(k) = sock.read(&mut buf).await {
                    if k == 0 { break; }
                    got.extend_from_slice(&buf[..k]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                        if got.len() >= end + 4 + len { break; }
                    }
                }
                if n == 0 {
                    let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"id\":\"chatcmpl-x\",").await;
                    let _ = sock.shutdown().await;
                } else {
                    let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{good}", good.len());
                    let _ = sock.write_all(reply.as_bytes()).await;
                }
            }
        });
        let mut p = profile(&MockServer::start().await, "reset");
        p.base_url = Some(format!("http://{addr}/v1"));
        let r = run(p, job(Task::Describe, jpeg_frames(1))).await;
        assert_eq!(r.result.unwrap().observations[0].text, "after the reset");
        let outcomes: Vec<_> = r.log.snapshot().into_iter().map(|a| a.outcome).collect();
        assert!(matches!(&outcomes[..], [Outcome::Transient { reason }, Outcome::Ok] if reason.contains("connection broke")), "{outcomes:?}");
    });
}

#[test]
fn describe_on_the_command_line() {
    let rt = runtime();
    let server = rt.block_on(async {
        let server = server().await;
        chat().respond_with(Checking).mount(&server).await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[sampling]\nfps = 0.5\nwidth = 256\n\n[providers.fake]\nprotocol = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"VIDGATE_CLI_KEY\"\nmodel = \"fake-vision\"\nframes_per_call = 2\n[providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            server.uri()
        ),
    )
    .unwrap();
    let out = vidgate()
        .args(["describe", "--provider", "fake", "--json", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let texts: Vec<&str> =
        report["observations"].as_array().unwrap().iter().map(|o| o["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "A test pattern at 00:00.000, 00:02.000.",
            "A test pattern at 00:04.000, 00:06.000.",
            "A test pattern at 00:08.000."
        ]
    );
    // Three frame calls, then one call that merges them into the story.
    assert_eq!(report["attempts"].as_array().unwrap().len(), 4);
    assert!((report["usage"]["cost_usd"].as_f64().unwrap() - 0.0044).abs() < 1e-9, "{}", report["usage"]);
    assert_eq!(report["prompt_versions"], json!(["chunk@1", "story@2"]));
    assert_eq!(report["story"], "A test pattern at .");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY) && !stderr.contains(KEY));

    // Subtitles from the same observations.
    let out = vidgate()
        .args(["describe", "--provider", "fake", "--format", "srt", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let srt = String::from_utf8(out.stdout).unwrap();
    assert!(
        srt.starts_with(
            "1\n00:00:00,000 --> 00:00:02,001\nA test pattern at 00:00.000, 00:02.000.\n\n2\n00:00:04,000 --> "
        ),
        "{srt}"
    );
    let out = vidgate()
        .args(["describe", "--provider", "fake", "--format", "vtt", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:02.001\n"));

    // Human output, and a missing key named by its variable.
    let out = vidgate()
        .args(["describe", "--provider", "fake", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "A test pattern at .\n", "the story, merged by the fake");
    let out = vidgate()
        .args(["describe", "--provider", "fake", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env_remove("VIDGATE_CLI_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("VIDGATE_CLI_KEY (providers.fake.api_key_env) is not set"), "{err}");
}

#[test]
fn spent_quota_headers_hold_off_the_next_call() {
    runtime().block_on(async {
        let server = server().await;
        let spent = ResponseTemplate::new(200)
            .set_body_json(completion("first"))
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", "1s")
            .insert_header("x-ratelimit-remaining-tokens", "9000")
            .insert_header("x-ratelimit-reset-tokens", "6ms");
        chat().respond_with(spent).up_to_n_times(1).with_priority(1).mount(&server).await;
        chat().respond_with(Checking).with_priority(2).mount(&server).await;
        let p = profile(&server, "quota");
        let config = config();
        let backend = Arc::new(OpenAiCompat::from_profile("fake", &p, &config).unwrap());
        let stack = policy::standard_stack(backend, &p, &config, Budget::new(1.0), AttemptLog::default());
        stack.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap();
        let started = Instant::now();
        stack.run(&job(Task::Describe, jpeg_frames(1))).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?} for the quota reset", started.elapsed());
    });
}

#[test]
fn batches_stay_within_the_payload_cap() {
    use vidgate::media::{self, Extraction};
    use vidgate::observe::{observe_frames, ObserveSettings};
    runtime().block_on(async {
        let server = server().await;
        chat().respond_with(Checking).mount(&server).await;
        let frames = jpeg_frames(5);
        let biggest = frames.iter().map(|f| f.data.bytes().len() as u64).max().unwrap();
        let mut p = profile(&server, "payload");
        p.frames_per_call = Some(5);
        // Room for two frames' base64 per call, not three.
        let cap = (biggest.div_ceil(3) * 4 + 64) * 5 / 2;
        p.models.get_mut("fake-vision").unwrap().max_request_bytes = Some(cap);
        let config = config();
        let backend = Arc::new(OpenAiCompat::from_profile("fake", &p, &config).unwrap());
        let stack = policy::standard_stack(backend, &p, &config, Budget::new(1.0), AttemptLog::default());
        let info = probe(&testsrc_10s());
        let ex = Extraction::new(
            &info,
            &plan(SamplingMode::Count { count: 5 }, 256),
            &Default::default(),
            FrameFormat::Jpeg { quality: 80 },
            Duration::from_secs(60),
        )
        .unwrap();
        let settings = ObserveSettings {
            task: Task::Describe,
            frames_per_call: 5,
            concurrency: 2,
            max_output_tokens: 50,
            duration_ms: info.duration_ms,
            progress: None,
        };
        let observed = observe_frames(stack, media::extract(ex).unwrap(), &settings, None).await.unwrap();
        assert!(observed.failures.is_empty(), "{:?}", observed.failures);
        assert_eq!(observed.frames, 5);
        let per_call: Vec<usize> = observed.observations.iter().map(|o| o.text.matches("00:").count()).collect();
        assert_eq!(per_call, [2, 2, 1], "{:?}", observed.observations);
        assert_eq!(observed.prompt_versions, ["chunk@1"]);
    });
}

/// [`Checking`], a little slowly, so a run can be killed between two calls,
/// with a signal when the `n`th request has arrived.
struct Slow {
    delay: Duration,
    n: usize,
    seen: AtomicUsize,
    arrived: std::sync::mpsc::Sender<()>,
}

impl Respond for Slow {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            self.arrived.send(()).ok();
        }
        Checking.respond(request).set_delay(self.delay)
    }
}

fn resume_config(dir: &std::path::Path, server: &MockServer, journal: &str) -> std::path::PathBuf {
    let config = dir.join(format!("{journal}.toml"));
    std::fs::write(
        &config,
        format!(
            "[sampling]\nfps = 1.0\nwidth = 256\n\n[journal]\npath = \"{}\"\n\n[providers.fake]\nprotocol = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"VIDGATE_CLI_KEY\"\nmodel = \"fake-vision\"\nframes_per_call = 1\n[providers.fake.limits]\nmax_concurrency = 1\n[providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            dir.join(format!("{journal}.sqlite3")).display(),
            server.uri()
        ),
    )
    .unwrap();
    config
}

fn report_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_run_killed_midway_resumes_without_paying_twice() {
    let rt = runtime();
    let (arrived, fourth) = std::sync::mpsc::channel();
    let server = rt.block_on(async {
        let server = server().await;
        let slow = Slow { delay: Duration::from_millis(250), n: 4, seen: AtomicUsize::new(0), arrived };
        chat().respond_with(slow).mount(&server).await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let config = resume_config(dir.path(), &server, "killed");
    let mut child = vidgate()
        .args(["describe", "--provider", "fake", "--json", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    fourth.recv_timeout(Duration::from_secs(60)).expect("the run never got going");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = rt.block_on(server.received_requests()).unwrap().len();
    // The dead process's lease runs out (a minute on; here, at once).
    expire_run_leases(&dir.path().join("killed.sqlite3"));

    let resumed = vidgate()
        .args(["resume", "--format", "json", "--config"])
        .arg(&config)
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let resumed = report_of(&resumed);
    let total = rt.block_on(server.received_requests()).unwrap().len();
    // 10 frames and one merge call; at most the unit in flight at the kill is paid again.
    assert!(total <= 12, "{before} requests before the kill, {total} in all");
    // Every unit answered before the kill, but the one in flight, was read back.
    assert!(resumed["reused_units"].as_u64().unwrap() + 2 >= before as u64, "{before} before the kill: {resumed}");

    // The same output as a run that was never interrupted.
    let fresh = resume_config(dir.path(), &server, "fresh");
    let whole = vidgate()
        .args(["describe", "--provider", "fake", "--json", "--config"])
        .arg(&fresh)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let whole = report_of(&whole);
    for key in ["story", "events", "observations"] {
        assert_eq!(resumed[key], whole[key], "{key}");
    }
    assert_eq!(whole["observations"].as_array().unwrap().len(), 10);

    // Nothing is left to resume.
    let again = vidgate().args(["resume", "--config"]).arg(&config).env("VIDGATE_CLI_KEY", KEY).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("no unfinished run"), "{again:?}");
}

#[test]
fn ask_find_timeline_and_plan_on_the_command_line() {
    let rt = runtime();
    let server = rt.block_on(async {
        let server = server().await;
        chat().respond_with(Checking).mount(&server).await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let config = resume_config(dir.path(), &server, "tasks");
    let cli = |args: &[&str]| {
        let out = vidgate()
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--provider")
            .arg("fake")
            .env("VIDGATE_CLI_KEY", KEY)
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "{args:?}: {stderr}");
        (stdout, stderr)
    };
    let clip = testsrc_10s();
    let clip = clip.to_str().unwrap();

    let (plan, _) = cli(&["plan", clip, "describe"]);
    assert!(plan.contains("fake") && plan.contains("fits the budget; nothing was spent"), "{plan}");
    assert!(rt.block_on(server.received_requests()).unwrap().is_empty(), "planning sends nothing");

    let (answer, stderr) = cli(&["ask", clip, "What is shown?"]);
    assert_eq!(answer, "A test pattern at .\n");
    assert!(stderr.contains("10 observations by fake, 11 calls"), "{stderr}");
    let (found, stderr) = cli(&["find", clip, "the pattern moving"]);
    assert_eq!(found, "00:02.000–00:04.500  The pattern moves.\n");
    assert!(stderr.contains("10 units reused from the journal"), "{stderr}");
    let (srt, _) = cli(&["timeline", clip, "--format", "srt"]);
    assert_eq!(srt, "1\n00:00:02,000 --> 00:00:04,500\nThe pattern moves.\n\n");
    // 10 frames once, then one merge call for each task.
    assert_eq!(rt.block_on(server.received_requests()).unwrap().len(), 13);

    let out = vidgate()
        .args(["plan", clip, "--max-cost", "0.000001", "--provider", "fake", "--config"])
        .arg(&config)
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("does NOT fit the budget") && plan.contains("lowered to fit the budget: fps 1 → 0.5"),
        "{plan}"
    );
    let out = vidgate()
        .args(["describe", clip, "--max-cost", "0.000001", "--provider", "fake", "--config"])
        .arg(&config)
        .env("VIDGATE_CLI_KEY", KEY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("over budget") && err.contains("Nothing was spent"), "{err}");
    assert_eq!(rt.block_on(server.received_requests()).unwrap().len(), 13, "a refused plan sends nothing");
}

/// `vidgate describe` of testsrc_10s on the fake provider at `server`, five
/// frames a call, with no journal (so nothing is reused), and these flags.
fn describe_without_journal(server: &MockServer, flags: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[sampling]\nfps = 0.5\nwidth = 256\n[journal]\nenabled = false\n\n[providers.fake]\nprotocol = \"openai\"\n\
             base_url = \"{}/v1\"\napi_key_env = \"VIDGATE_NO_JOURNAL_KEY\"\nmodel = \"fake-vision\"\nframes_per_call = 5\n\
             [providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            server.uri()
        ),
    )
    .unwrap();
    vidgate()
        .args(["describe", "--provider", "fake", "--config"])
        .arg(&config)
        .args(flags)
        .arg(testsrc_10s())
        .env("VIDGATE_NO_JOURNAL_KEY", KEY)
        .output()
        .unwrap()
}

/// [`Checking`]'s answers, with these headers.
struct CheckingWith(&'static [(&'static str, &'static str)]);

impl Respond for CheckingWith {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.iter().fold(Checking.respond(request), |r, (name, value)| r.insert_header(*name, *value))
    }
}

#[test]
fn an_unusable_usage_or_a_cut_answer_is_kept_billed_and_warned() {
    runtime().block_on(async {
        let server = server().await;
        // The spec types counts as integers, so a negative one is possible.
        let mut odd = completion("A test pattern.");
        odd["usage"]["prompt_tokens"] = json!(-5);
        chat().respond_with(ResponseTemplate::new(200).set_body_json(odd)).up_to_n_times(1).mount(&server).await;
        let r = run(profile(&server, "oddusage"), job(Task::Describe, jpeg_frames(1))).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations[0].text, "A test pattern.");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "one paid call, not four");
        let attempts = r.log.snapshot();
        let estimate = attempts[0].estimated_cost_usd;
        assert!(estimate > 0.0);
        assert!((r.budget.spent() - estimate).abs() < 1e-12, "billed at the estimate: {}", r.budget.spent());
        assert!((out.usage.cost_usd - estimate).abs() < 1e-12);
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].starts_with("fake: the answer's usage is unusable (prompt_tokens = -5)"), "{out:?}");
        assert_eq!(attempts[0].warnings, out.warnings, "the report carries it");

        let server = self::server().await;
        let mut cut = completion("A test pattern, and then");
        cut["choices"][0]["finish_reason"] = json!("length");
        chat().respond_with(ResponseTemplate::new(200).set_body_json(cut)).mount(&server).await;
        let r = run(profile(&server, "cutanswer"), job(Task::Describe, jpeg_frames(1))).await;
        let out = r.result.unwrap();
        assert_eq!(out.observations[0].text, "A test pattern, and then");
        assert_eq!(
            out.warnings,
            ["fake: the answer stopped at the output cap of 100 tokens and may be cut short (finish_reason \"length\")"]
        );
        assert!((out.usage.cost_usd - 0.0011).abs() < 1e-12, "its own usage stands");
    });
}

#[test]
fn a_dead_provider_gets_a_handful_of_calls_and_the_next_one_serves_the_run() {
    let rt = runtime();
    let (dead, good) = rt.block_on(async {
        let (dead, good) = (server().await, server().await);
        chat().respond_with(ResponseTemplate::new(503)).mount(&dead).await;
        chat().respond_with(Checking).mount(&good).await;
        (dead, good)
    });
    let report = describe_eight_frames(rt, &[("dead", &dead), ("good", &good)]);
    assert_eq!(report.observations.len(), 8);
    assert!(report.observations.iter().all(|o| o.provider == "good"));
    assert!(report.story.is_some(), "the merge went to the next provider too");
    // Four units at once, four attempts each, would have made 16 calls, and the merge a 17th.
    let calls = rt.block_on(dead.received_requests()).unwrap().len();
    assert!(calls <= 4, "{calls} calls to a provider that answers 503 to everything");
}

/// Records when each request arrived; the first is told to wait a second,
/// the others are answered after a while (so they are in flight when it is).
struct WaitOnce(std::sync::Mutex<Vec<Instant>>);

impl Respond for WaitOnce {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut arrived = self.0.lock().unwrap();
        arrived.push(Instant::now());
        if arrived.len() == 1 {
            return ResponseTemplate::new(429).insert_header("retry-after", "1");
        }
        Checking.respond(request).set_delay(Duration::from_millis(500))
    }
}

#[test]
fn huge_waits_in_headers_never_crash_the_command() {
    let rt = runtime();
    let (ok, refusing) = rt.block_on(async {
        let (ok, refusing) = (server().await, server().await);
        let huge = &[
            ("x-ratelimit-reset-requests", "1e30"),
            ("x-ratelimit-reset-tokens", "1e300"),
            ("x-ratelimit-remaining-tokens", "5"),
            ("retry-after-ms", "1e300"),
        ];
        chat().respond_with(CheckingWith(huge)).mount(&ok).await;
        let wait = ResponseTemplate::new(429).insert_header("retry-after", "1e30").set_body_json(
            json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
        );
        chat().respond_with(wait).mount(&refusing).await;
        (ok, refusing)
    });
    let describe = |server: &MockServer| {
        let out = describe_without_journal(server, &["--json"]);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
    };
    // Read on every successful answer: capped, and the run goes on.
    let (code, stderr, stdout) = describe(&ok);
    assert_eq!(code, Some(0), "{stderr}");
    let report: Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["observations"].as_array().unwrap().len(), 1, "{report}");
    // A wait of 10^30 s is a wait over the cap: a clear failure, not a crash.
    let (code, stderr, _) = describe(&refusing);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("asked to wait 604800 s, over the 30 s cap"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_final_error_line_shows_the_body_once_and_short() {
    let rt = runtime();
    let server = rt.block_on(async {
        let server = server().await;
        let filler = "x".repeat(1900);
        let body = json!({"error": {"message": "BODY-START the request is malformed", "param": filler}});
        chat().respond_with(ResponseTemplate::new(400).set_body_json(body)).mount(&server).await;
        server
    });
    let out = describe_without_journal(&server, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(!out.status.success() && last.starts_with("vidgate: error: "), "{stderr}");
    assert_eq!(last.matches("BODY-START").count(), 2, "the decoded message once, the body's start once: {last}");
    assert!(last.contains("xxx…"), "the body is cut, and says so: {last}");
    assert!(last.chars().count() < 900, "{} characters: {last}", last.chars().count());
}

#[test]
fn credentials_in_the_base_url_stay_out_of_errors() {
    runtime().block_on(async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let server = server().await;
        let mut p = profile(&server, "userinfo");
        p.base_url = Some(format!("http://proxyuser:PROXYSECRET@127.0.0.1:{port}/v1"));
        p.api_version = Some("2024-10-21&token=TOKENSECRET".into());
        let r = run(p, job(Task::Describe, jpeg_frames(1))).await;
        let err = r.result.unwrap_err();
        let reasons: Vec<String> = r.log.snapshot().iter().map(|a| format!("{:?}", a.outcome)).collect();
        for text in std::iter::once(err.to_string()).chain(reasons) {
            assert!(text.contains("cannot connect") || text.contains("request failed"), "{text}");
            assert!(!text.contains("PROXYSECRET") && !text.contains("TOKENSECRET"), "{text}");
        }
    });
}

#[test]
fn a_429_with_retry_after_holds_every_unit_not_only_the_one_told() {
    let rt = runtime();
    let arrivals = Arc::new(WaitOnce(std::sync::Mutex::default()));
    let server = rt.block_on(async {
        let server = server().await;
        chat().respond_with(ArcRespond(arrivals.clone())).mount(&server).await;
        server
    });
    let report = describe_eight_frames(rt, &[("waitonce", &server)]);
    assert_eq!(report.observations.len(), 8);
    let arrived = arrivals.0.lock().unwrap().clone();
    assert_eq!(arrived.len(), 8 + 1 + 1, "eight frames, the one retry, the merge");
    // The first four went out together; everything after them waited out the second.
    let told = arrived[0];
    for (i, t) in arrived.iter().enumerate().skip(4) {
        let after = t.duration_since(told);
        assert!(after >= Duration::from_secs(1), "request {i} arrived {after:?} after the 429");
    }
}

struct ArcRespond<R>(Arc<R>);

impl<R: Respond> Respond for ArcRespond<R> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.respond(request)
    }
}

/// Eight frames of testsrc_10s described through a gateway whose chain is
/// these fake providers, in order, each taking four calls at once.
fn describe_eight_frames(rt: &tokio::runtime::Runtime, chain: &[(&str, &MockServer)]) -> vidgate::schema::VideoReport {
    use vidgate::config::RateLimits;
    use vidgate::gateway::Gateway;
    use vidgate::journal::Journal;
    use vidgate::schema::{SamplingPlan, VideoRequest};
    let mut config = Config::builtin().unwrap();
    for (name, server) in chain {
        let mut p = profile(server, &format!("chain{name}"));
        p.limits = RateLimits { max_concurrency: Some(4), ..RateLimits::default() };
        config.providers.insert(name.to_string(), p);
    }
    config.router.chain = chain.iter().map(|(name, _)| name.to_string()).collect();
    config.budget.max_usd_per_request = 1.0;
    let gateway = Gateway::with_journal(config, Journal::in_memory().unwrap());
    let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
    request.sampling = SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 8, width: 256 };
    rt.block_on(gateway.run(request)).unwrap()
}

#[test]
fn a_jobs_output_cap_is_lowered_to_the_models_for_the_estimate_and_the_request() {
    runtime().block_on(async {
        let server = server().await;
        chat().respond_with(Checking).mount(&server).await;
        let mut p = profile(&server, "model_cap");
        p.models.get_mut("fake-vision").unwrap().max_output_tokens = Some(40);
        let config = config();
        let backend = Arc::new(OpenAiCompat::from_profile("fake", &p, &config).unwrap());
        let log = AttemptLog::default();
        let stack = policy::standard_stack(backend.clone(), &p, &config, Budget::new(1.0), log.clone());
        let asked = job(Task::Describe, jpeg_frames(1));
        assert_eq!(asked.max_output_tokens, 100);
        let at_cap = Job { max_output_tokens: 40, ..asked.clone() };

        let estimate = stack.estimate(&asked).unwrap();
        assert_eq!(estimate, vidgate::provider::Provider::estimate(&*backend, &at_cap).unwrap());
        assert_eq!(estimate.output_tokens, 40);
        assert!(estimate.cost_usd < vidgate::provider::Provider::estimate(&*backend, &asked).unwrap().cost_usd);

        stack.run(&asked).await.unwrap();
        let sent: Value = serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
        assert_eq!(sent["max_tokens"], 40);
        assert_eq!(log.snapshot()[0].estimated_cost_usd, estimate.cost_usd, "the reservation used the cap too");
    });
}
