//! The Gemini backend against a fake server that implements `generateContent`,
//! the resumable upload and the file state machine, in the shapes of the
//! recorded API.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{AuthScheme, Config, ModelProfile, Price, Protocol, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::provider::gemini::Gemini;
use vidgate::provider::{Job, JobInput, Provider, ProviderError, ProviderOutput};
use vidgate::schema::{Outcome, SamplingMode, SamplingPlan, Task, TimeRange, VideoRequest};

use crate::util::*;

const KEY: &str = "AIzaTestKey-vidgate-0123456789";

pub(crate) fn recorded(name: &str) -> Value {
    let path = format!("{}/fixtures/recorded/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// How the fake's uploaded files behave after the upload.
#[derive(Clone, Copy, PartialEq)]
enum Processing {
    ActiveAfter(u32),
    FailedAfter(u32),
    Stuck,
}

#[derive(Default)]
struct State {
    uploads_started: u32,
    received: u64,
    polls: u32,
    deleted: Vec<String>,
    generate: Vec<Value>,
    urls: Vec<String>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    processing: Processing,
    base: String,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn file(&self, state: &str) -> Value {
        json!({"name": "files/abc123", "displayName": "vidgate upload", "mimeType": "video/mp4", "sizeBytes": "1000",
               "uri": format!("{}/v1beta/files/abc123", self.base), "state": state,
               "expirationTime": "2026-11-28T08:00:00Z", "sha256Hash": "ZmFrZQ=="})
    }
}

impl Respond for Fake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let url = request.url.to_string();
        self.state().urls.push(url.clone());
        let key_ok = request.headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) == Some(KEY);
        let p = request.url.path().to_string();
        let command =
            request.headers.get("x-goog-upload-command").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if p == "/upload/v1beta/files" {
            if !key_ok {
                return ResponseTemplate::new(403);
            }
            let mut s = self.state();
            s.uploads_started += 1;
            // A new upload session: its offsets start again.
            s.received = 0;
            drop(s);
            return ResponseTemplate::new(200)
                .insert_header("x-goog-upload-url", format!("{}/upload-session/1", self.base).as_str());
        }
        if p == "/upload-session/1" {
            let offset: u64 = request
                .headers
                .get("x-goog-upload-offset")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(u64::MAX);
            let mut s = self.state();
            if offset != s.received {
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": {"code": 400, "message": "bad offset"}}));
            }
            s.received += request.body.len() as u64;
            drop(s);
            if command.contains("finalize") {
                return ResponseTemplate::new(200).set_body_json(json!({"file": self.file("PROCESSING")}));
            }
            return ResponseTemplate::new(200);
        }
        if !key_ok {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}));
        }
        if p == "/v1beta/files/abc123" && request.method.as_str() == "GET" {
            let mut s = self.state();
            s.polls += 1;
            let state = match self.processing {
                Processing::ActiveAfter(n) if s.polls >= n => "ACTIVE",
                Processing::FailedAfter(n) if s.polls >= n => "FAILED",
                _ => "PROCESSING",
            };
            drop(s);
            return ResponseTemplate::new(200).set_body_json(self.file(state));
        }
        if p == "/v1beta/files/abc123" && request.method.as_str() == "DELETE" {
            self.state().deleted.push("files/abc123".into());
            return ResponseTemplate::new(200).set_body_json(json!({}));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut answer = recorded("inline_video.response.json");
        // Held to the timeline schema: answer with a timeline, as the model would.
        if body["generationConfig"]["responseSchema"].is_object() {
            answer["candidates"][0]["content"]["parts"][0]["text"] = json!(TIMELINE_ANSWER);
        }
        self.state().generate.push(body);
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

const TIMELINE_ANSWER: &str = r#"{"events":[{"start":"00:00.000","end":"00:04.000","text":"A test pattern with a moving counter."},{"start":"00:04.000","end":"00:10.000","text":"The counter keeps running."}]}"#;

async fn fake(processing: Processing) -> (MockServer, Fake) {
    let server = MockServer::start().await;
    let fake = Fake { state: Arc::default(), processing, base: server.uri() };
    Mock::given(wiremock::matchers::any()).respond_with(fake.clone()).with_priority(10).mount(&server).await;
    (server, fake)
}

pub(crate) fn profile(server: &MockServer, test: &str) -> ProviderProfile {
    let var = format!("VIDGATE_GEMINI_KEY_{}", test.to_uppercase());
    std::env::set_var(&var, KEY);
    let mut models = std::collections::BTreeMap::new();
    models.insert(
        "gemini-test".to_string(),
        ModelProfile {
            video_tokens_per_second: Some(263.0),
            audio_tokens_per_second: Some(32.0),
            json_schema: Some(true),
            ..ModelProfile::default()
        },
    );
    ProviderProfile {
        protocol: Some(Protocol::Gemini),
        base_url: Some(server.uri()),
        api_key_env: Some(var),
        auth: Some(AuthScheme::GoogApiKey),
        model: Some("gemini-test".into()),
        price: Some(Price {
            input_per_mtok: 0.30,
            output_per_mtok: 2.50,
            cached_input_per_mtok: None,
            audio_input_per_mtok: Some(1.0),
        }),
        models,
        timeout_s: Some(20.0),
        ..ProviderProfile::default()
    }
}

/// The profile of a Vertex AI project `proj-1` on `server`, its bearer
/// token `token` read from a variable of its own.
fn vertex_profile(server: &MockServer, test: &str, token: &str) -> ProviderProfile {
    let var = format!("VIDGATE_VERTEX_TOKEN_{}", test.to_uppercase().replace('-', "_"));
    std::env::set_var(&var, token);
    let mut p = profile(server, test);
    p.auth = Some(AuthScheme::Bearer);
    p.api_key_env = None;
    p.project = Some("proj-1".into());
    p.token_env = Some(var);
    p
}

pub(crate) fn video_job(path: &std::path::Path) -> Job {
    let info = probe(path);
    Job {
        task: Task::Describe,
        input: JobInput::Video {
            path: path.to_path_buf(),
            range: None,
            duration_ms: info.duration_ms,
            size_bytes: info.size_bytes,
            fps: None,
            sha256: None,
        },
        prompt: "Describe the video.".into(),
        prompt_version: "chunk@1".into(),
        max_output_tokens: 500,
        span: TimeRange::new(0, info.duration_ms),
    }
}

pub(crate) struct Run {
    pub result: Result<ProviderOutput, ProviderError>,
    pub log: AttemptLog,
    pub elapsed: Duration,
}

pub(crate) async fn run_with(backend: Arc<Gemini>, profile: &ProviderProfile, job: &Job) -> Run {
    let mut config = Config::default();
    config.retry.max_attempts = 3;
    let log = AttemptLog::default();
    let stack = policy::standard_stack(backend, profile, &config, Budget::new(1.0), log.clone());
    let started = Instant::now();
    let result = stack.run(job).await;
    Run { result, log, elapsed: started.elapsed() }
}

pub(crate) fn backend(profile: &ProviderProfile) -> Arc<Gemini> {
    let cache = clip_dir().join(format!("uploads-{}.json", rand_suffix()));
    Arc::new(Gemini::from_profile("gemini", profile, &Config::default()).unwrap().with_upload_cache(cache))
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

pub(crate) fn parts(body: &Value) -> Vec<Value> {
    body["contents"][0]["parts"].as_array().cloned().unwrap_or_default()
}

/// The JPEG frames in a generateContent body.
fn jpeg_frames(body: &Value) -> usize {
    parts(body).iter().filter(|p| p["inlineData"]["mimeType"] == "image/jpeg").count()
}

#[test]
fn a_small_video_goes_inline_with_the_prompt_after_it() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let p = profile(&server, "inline");
        let clip = testsrc_10s();
        let r = run_with(backend(&p), &p, &video_job(&clip)).await;
        let out = r.result.unwrap();
        assert!(out.observations[0].text.starts_with("Okay! It looks like"), "the recorded answer");
        let state = fake.state();
        assert_eq!(state.uploads_started, 0);
        let parts = parts(&state.generate[0]);
        let data = parts[0]["inlineData"]["data"].as_str().unwrap();
        // Like the real API, accept either base64 alphabet.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data))
            .unwrap();
        assert_eq!(decoded, std::fs::read(&clip).unwrap(), "the whole file, inline");
        assert_eq!(parts[0]["inlineData"]["mimeType"], "video/mp4");
        assert_eq!(parts[0]["videoMetadata"]["fps"], 1.0);
        assert_eq!(parts[1]["text"], "Describe the video.", "the prompt after the video");
        // Cost from the recorded usage: 10 text + 258 video at $0.30/M, 162 output at $2.50/M.
        let expected = 268.0 * 0.30 / 1e6 + 162.0 * 2.50 / 1e6;
        assert!((out.usage.cost_usd - expected).abs() < 1e-12, "{} vs {expected}", out.usage.cost_usd);
        assert!(state.urls.iter().all(|u| !u.contains(KEY)), "the key is never in a URL");
    });
}

/// A video of many pieces, streamed into the body: it arrives whole, in a
/// body as long as its Content-Length, and again on a retry.
#[test]
fn an_inline_video_of_many_pieces_arrives_whole() {
    use sha2::{Digest, Sha256};
    runtime().block_on(async {
        let server = MockServer::start().await;
        // A 503 first: the retry sends the body again, read anew from the file.
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(503)
                    .set_body_json(json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(recorded("inline_video.response.json")))
            .mount(&server)
            .await;
        let p = profile(&server, "pieces");
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("big.mp4");
        // Not a multiple of 3: the base64 ends in padding.
        let bytes: Vec<u8> = (0..2_000_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&video, &bytes).unwrap();
        let mut job = video_job(&testsrc_10s());
        if let JobInput::Video { path, size_bytes, .. } = &mut job.input {
            *path = video.clone();
            *size_bytes = bytes.len() as u64;
        }
        let r = run_with(backend(&p), &p, &job).await;
        r.result.unwrap();
        let received = server.received_requests().await.unwrap();
        assert_eq!(received.len(), 2, "the 503, then the retry");
        for request in &received {
            let length = request.headers.get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            assert_eq!(length, Some(request.body.len()), "announced before it was sent");
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let data = parts(&body)[0]["inlineData"]["data"].as_str().unwrap().to_string();
            let decoded = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&decoded)), hex::encode(Sha256::digest(&bytes)));
            assert_eq!(parts(&body)[1]["text"], "Describe the video.", "the JSON after the video");
        }
    });
}

/// A video cut short after it was measured, between a send and the resend
/// with a new token: the resend breaks off, naming the file, and is neither
/// sent again nor charged, since the server never had it whole.
#[test]
fn a_video_cut_short_while_it_is_sent_is_neither_retried_nor_charged() {
    use std::sync::atomic::{AtomicU32, Ordering};
    runtime().block_on(async {
        let server = MockServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("cut-short.mp4");
        std::fs::write(&video, vec![7u8; 300_000]).unwrap();
        // The first send is refused (401), and the file cut meanwhile; any later one is answered.
        let (cut, sends) = (video.clone(), AtomicU32::new(0));
        Mock::given(method("POST"))
            .respond_with(move |_: &Request| {
                if sends.fetch_add(1, Ordering::SeqCst) > 0 {
                    return ResponseTemplate::new(200).set_body_json(recorded("inline_video.response.json"));
                }
                std::fs::OpenOptions::new().write(true).open(&cut).unwrap().set_len(1000).unwrap();
                ResponseTemplate::new(401)
                    .set_body_json(json!({"error": {"code": 401, "message": "expired", "status": "UNAUTHENTICATED"}}))
            })
            .mount(&server)
            .await;
        let p = vertex_profile(&server, "cut-short", "ya29.cut-token");
        let mut job = video_job(&testsrc_10s());
        if let JobInput::Video { path, size_bytes, .. } = &mut job.input {
            *path = video.clone();
            *size_bytes = 300_000;
        }
        let mut config = Config::default();
        config.retry.max_attempts = 3;
        let budget = Budget::new(1.0);
        let log = AttemptLog::default();
        let stack = policy::standard_stack(backend(&p), &p, &config, budget.clone(), log.clone());
        let err = stack.run(&job).await.unwrap_err();
        assert!(err.message.contains("cut-short.mp4") && err.message.contains("shorter"), "{err}");
        assert!(err.not_sent && !err.maybe_billed && !err.is_retryable(), "{err:?}");
        assert_eq!(budget.spent(), 0.0, "nothing charged for a request the server never had whole");
        assert_eq!(log.snapshot().len(), 1, "not tried again");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "the 401 alone");
    });
}

#[test]
fn a_large_video_is_uploaded_once_and_reused() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(2)).await;
        let mut p = profile(&server, "upload");
        p.inline_max_bytes = Some(50_000);
        let clip = testsrc_10s();
        let size = std::fs::metadata(&clip).unwrap().len();
        let gemini = backend(&p);
        let r = run_with(gemini.clone(), &p, &video_job(&clip)).await;
        r.result.unwrap();
        {
            let state = fake.state();
            assert_eq!((state.uploads_started, state.received), (1, size), "every byte, once");
            assert_eq!(state.polls, 2, "polled until ACTIVE");
            let parts = parts(&state.generate[0]);
            assert_eq!(parts[0]["fileData"]["fileUri"], format!("{}/v1beta/files/abc123", server.uri()));
        }
        let r = run_with(gemini, &p, &video_job(&clip)).await;
        r.result.unwrap();
        let state = fake.state();
        assert_eq!(state.uploads_started, 1, "the second request reuses the upload");
        assert_eq!(state.generate.len(), 2);
        assert!(state.urls.iter().all(|u| !u.contains(KEY)));
    });
}

/// A video that grew past the inline limit after it was measured: the size
/// the body would announce is checked again, and the video is uploaded.
#[test]
fn a_video_grown_past_the_inline_limit_since_it_was_measured_is_uploaded() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let mut p = profile(&server, "grown");
        p.inline_max_bytes = Some(50_000);
        let clip = testsrc_10s();
        let size = std::fs::metadata(&clip).unwrap().len();
        let mut job = video_job(&clip);
        if let JobInput::Video { size_bytes, .. } = &mut job.input {
            *size_bytes = 10_000;
        }
        run_with(backend(&p), &p, &job).await.result.unwrap();
        let state = fake.state();
        assert_eq!((state.uploads_started, state.received), (1, size), "uploaded, not inline");
        assert!(parts(&state.generate[0])[0]["inlineData"].is_null());
    });
}

/// The upload record is keyed by the content hash the job carries (the
/// run's): the file is not read again for it.
#[test]
fn an_upload_is_found_by_the_hash_the_job_carries() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let mut p = profile(&server, "carried");
        p.inline_max_bytes = Some(50_000);
        let gemini = backend(&p);
        let clip = testsrc_10s();
        let with_hash = |hash: Option<&str>| {
            let mut job = video_job(&clip);
            if let JobInput::Video { sha256, .. } = &mut job.input {
                *sha256 = hash.map(Into::into);
            }
            job
        };
        let named = "5".repeat(64);
        run_with(gemini.clone(), &p, &with_hash(Some(&named))).await.result.unwrap();
        run_with(gemini.clone(), &p, &with_hash(Some(&named))).await.result.unwrap();
        assert_eq!(fake.state().uploads_started, 1, "found by the hash it carries");
        // Read for its hash, the file is another: its content's hash is not the one named.
        run_with(gemini.clone(), &p, &with_hash(None)).await.result.unwrap();
        assert_eq!(fake.state().uploads_started, 2);
        let real = vidgate::models::hash_file(&clip).await.unwrap();
        run_with(gemini, &p, &with_hash(Some(&real))).await.result.unwrap();
        assert_eq!(fake.state().uploads_started, 2, "the run's hash of it finds that upload");
    });
}

#[test]
fn a_file_stuck_in_processing_falls_back_to_frames_and_is_deleted() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::Stuck).await;
        let mut p = profile(&server, "stuck");
        // Under the file's 180 kB, over its ten frames.
        p.inline_max_bytes = Some(150_000);
        p.file_timeout_s = Some(1.0);
        let started = Instant::now();
        // The gateway sends the frames, by the request's plan: one a second.
        gemini_gateway(&p).run(one_a_second(Task::Describe)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        let state = fake.state();
        assert_eq!(state.deleted, ["files/abc123"], "the abandoned upload is cleaned up");
        let images = jpeg_frames(&state.generate[0]);
        let parts = parts(&state.generate[0]);
        assert!(images >= 10, "frames mode: {images} frames");
        assert!(parts[0]["text"].as_str().unwrap().contains("00:00"), "each frame after its time: {}", parts[0]);
    });
}

/// A request for ten frames of `testsrc_10s`, one a second, 160 px wide.
fn one_a_second(task: Task) -> VideoRequest {
    let mut request = VideoRequest::new(testsrc_10s(), task);
    request.sampling = SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 160 };
    request
}

/// A large video whose upload fails: the frames the gateway sends in its
/// place, by a plan of 32 frames, with the model's image limit `image_limit`.
fn frames_for_a_failed_file(test: &str, image_limit: Option<u32>) -> usize {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::FailedAfter(1)).await;
        let mut p = profile(&server, test);
        // Under the file's 180 kB, over its 32 frames: they go in one call.
        p.inline_max_bytes = Some(150_000);
        p.models.get_mut("gemini-test").unwrap().max_images_per_request = image_limit;
        let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
        request.sampling =
            SamplingPlan { mode: SamplingMode::Count { count: 32 }, range: None, max_frames: 32, width: 64 };
        gemini_gateway(&p).run(request).await.unwrap();
        let state = fake.state();
        jpeg_frames(&state.generate[0])
    })
}

#[test]
fn a_failed_file_falls_back_to_frames() {
    assert_eq!(frames_for_a_failed_file("failed", None), 32);
}

#[test]
fn frames_sent_instead_of_a_failed_file_stay_within_the_models_image_limit() {
    assert_eq!(frames_for_a_failed_file("failedlimit", Some(6)), 6);
}

async fn answering(template: ResponseTemplate, times: u64, server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/v1beta/models/.*:generateContent$"))
        .respond_with(template)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(server)
        .await;
}

#[test]
fn errors_are_classified_as_the_api_means_them() {
    runtime().block_on(async {
        let clip = testsrc_10s();
        let mut per_minute = recorded("429_retry_info.json");
        per_minute["error"]["details"][1]["retryDelay"] = json!("1s");
        let per_day = json!({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"}]}});
        let leaked = json!({"error": {"code": 403, "message": "Your API key was reported as leaked. Please use another API key.", "status": "PERMISSION_DENIED"}});
        let cases: Vec<(&str, ResponseTemplate, u64, usize, &str)> = vec![
            ("minute", ResponseTemplate::new(429).set_body_json(per_minute), 1, 2, "ok"),
            ("day", ResponseTemplate::new(429).set_body_json(per_day), 9, 1, "fall back"),
            ("s503", ResponseTemplate::new(503).set_body_json(json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})), 2, 3, "ok"),
            ("s504", ResponseTemplate::new(504), 1, 2, "ok"),
            // A refused video: the gateway, not the backend, sends its frames instead.
            ("s400", ResponseTemplate::new(400).set_body_json(recorded("400_invalid_argument.json")), 9, 1, "fall back"),
            ("s404", ResponseTemplate::new(404).set_body_json(json!({"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}})), 9, 1, "fall back"),
            ("blocked", ResponseTemplate::new(200).set_body_json(recorded("prompt_blocked.json")), 9, 1, "content policy"),
            ("leaked", ResponseTemplate::new(403).set_body_json(leaked), 9, 1, "disabled"),
        ];
        for (name, template, times, calls, expected) in cases {
            let (server, _fake) = fake(Processing::ActiveAfter(1)).await;
            answering(template, times, &server).await;
            let p = profile(&server, &format!("err_{name}"));
            let gemini = backend(&p);
            let r = run_with(gemini.clone(), &p, &video_job(&clip)).await;
            let generate_calls = server.received_requests().await.unwrap().len();
            assert_eq!(generate_calls, calls, "{name}: calls");
            let attempts = if name == "s400" { 1 } else { calls };
            assert_eq!(r.log.len(), attempts, "{name}: attempts");
            match expected {
                "ok" => assert!(r.result.is_ok(), "{name}: {:?}", r.result.err()),
                "fall back" => {
                    let err = r.result.unwrap_err();
                    assert!(err.should_fall_back(), "{name}");
                    assert_eq!(err.video_unusable, name == "s400", "{name}: only a refused video is the video's fault");
                }
                "content policy" => {
                    let err = r.result.unwrap_err();
                    assert!(err.should_fall_back() && err.to_string().contains("content policy"), "{name}: {err}");
                }
                _ => {
                    let err = r.result.unwrap_err();
                    assert!(err.disables_provider, "{name}: {err}");
                    let again = run_with(gemini, &p, &video_job(&clip)).await.result.unwrap_err();
                    assert!(again.to_string().contains("disabled for this run"), "{again}");
                    assert_eq!(server.received_requests().await.unwrap().len(), 1, "no call after the key was refused");
                }
            }
            if name == "minute" {
                assert!(r.elapsed >= Duration::from_secs(1), "waited the RetryInfo delay");
                assert!(matches!(r.log.snapshot()[0].outcome, Outcome::Transient { .. }));
            }
        }
    });
}

#[test]
fn vertex_uses_a_bearer_token_and_its_model_path() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(
                "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-test:generateContent",
            ))
            .and(wiremock::matchers::header("authorization", "Bearer ya29.vertex-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(recorded("inline_video.response.json")))
            .mount(&server)
            .await;
        let mut p = vertex_profile(&server, "vertex", "ya29.vertex-token");
        p.location = Some("europe-west4".into());
        let r = run_with(backend(&p), &p, &video_job(&testsrc_10s())).await;
        r.result.unwrap();
        let sent = &server.received_requests().await.unwrap()[0];
        assert!(sent.headers.get("x-goog-api-key").is_none());
    });
}

/// The token command runs once per provider, not once per call.
#[test]
fn vertex_takes_its_token_from_the_command_once() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(wiremock::matchers::header("authorization", "Bearer ya29.from-command"))
            .respond_with(ResponseTemplate::new(200).set_body_json(recorded("inline_video.response.json")))
            .expect(2)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("echo run >> '{}'; echo ya29.from-command", runs.display());
        let mut p = profile(&server, "vertex-command");
        p.auth = Some(AuthScheme::Bearer);
        p.api_key_env = None;
        p.project = Some("proj-1".into());
        p.token_command = Some(vec!["sh".into(), "-c".into(), script]);
        let gemini = backend(&p);
        let job = video_job(&testsrc_10s());
        run_with(gemini.clone(), &p, &job).await.result.unwrap();
        let mut second = job.clone();
        second.prompt = "Describe it again.".into();
        run_with(gemini, &p, &second).await.result.unwrap();
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1, "the command ran once");
    });
}

#[test]
fn describe_with_gemini_never_shows_the_key_even_at_trace_level() {
    let (server, fake) = runtime().block_on(fake(Processing::ActiveAfter(1)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.gemini]\nbase_url = \"{}\"\napi_key_env = \"VIDGATE_CLI_GEMINI_KEY\"\nmodel = \"gemini-2.5-flash\"\ninline_max_bytes = 50000\n",
            server.uri()
        ),
    )
    .unwrap();
    let out = vidgate()
        .args(["-vvv", "describe", "--provider", "gemini", "--json", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_CLI_GEMINI_KEY", KEY)
        .env("VIDGATE_LOG", "trace")
        .env("XDG_CACHE_HOME", dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    // The video went whole, was answered with a timeline, and the story was merged from it.
    assert_eq!(report["observations"][0]["text"], "A test pattern with a moving counter.");
    assert_eq!(report["observations"][1]["range"]["start_ms"], 4000);
    assert_eq!(report["prompt_versions"][0], "timeline@3");
    assert!(report["story"].as_str().unwrap().starts_with("Okay!"), "the merge call's answer");
    assert!(stderr.lines().count() > 5, "trace logging is on");
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "the key leaked");
    let state = fake.state.lock().unwrap();
    assert_eq!(state.uploads_started, 1);
    assert!(state.urls.iter().all(|u| !u.contains(KEY)));
}

#[test]
fn a_range_of_a_large_file_is_sent_as_a_trimmed_copy() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        // The model answers in the times of what it was sent: the 3 s cut.
        let mut answer = recorded("inline_video.response.json");
        answer["candidates"][0]["content"]["parts"][0]["text"] =
            json!(r#"{"events":[{"start":"00:00.000","end":"00:03.000","text":"The counter runs."}]}"#);
        answering(ResponseTemplate::new(200).set_body_json(answer), 9, &server).await;
        let mut p = profile(&server, "trim");
        p.inline_max_bytes = Some(120_000);
        let mut request = VideoRequest::new(testsrc_10s(), Task::Timeline);
        request.sampling.range = TimeRange::new(4_000, 7_000);
        let report = gemini_gateway(&p).run(request).await.unwrap();
        let out = &report.observations;
        assert_eq!((out[0].range.start_ms, out[0].range.end_ms), (4_000, 7_000), "times of the original");
        assert_eq!(fake.state().uploads_started, 0, "the cut fits inline");
        let sent = generate_bodies(&server).await;
        let data = parts(&sent[0])[0]["inlineData"]["data"].as_str().unwrap().to_string();
        let copy = clip_dir().join("trimmed-sent.mp4");
        std::fs::write(&copy, base64::engine::general_purpose::STANDARD.decode(data).unwrap()).unwrap();
        let info = probe(&copy);
        assert!((2_900..=3_100).contains(&info.duration_ms), "a 3 s cut, not the 10 s file: {}", info.duration_ms);
        assert!(
            parts(&sent[0])[0].get("videoMetadata").is_none_or(|m| m.get("startOffset").is_none()),
            "no offsets into the cut"
        );
    });
}

/// The bodies of the `generateContent` calls a server received, in order.
async fn generate_bodies(server: &MockServer) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.url.path().ends_with(":generateContent"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[test]
fn a_refused_video_is_sent_as_frames_by_the_request_plan() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        // The video call is refused; the frames and the merge are answered.
        answering(ResponseTemplate::new(400).set_body_json(recorded("400_invalid_argument.json")), 1, &server).await;
        let p = profile(&server, "refused");
        let report = gemini_gateway(&p).run(one_a_second(Task::Describe)).await.unwrap();
        let sent = generate_bodies(&server).await;
        assert_eq!(parts(&sent[0])[0]["inlineData"]["mimeType"], "video/mp4", "the video went first");
        let state = fake.state();
        assert_eq!(jpeg_frames(&state.generate[0]), 10, "then its frames, one a second");
        assert!(report.warnings.iter().any(|w| w.contains("cannot be used by gemini")), "{:?}", report.warnings);
        assert!(report.story.is_some());
    });
}

/// Five hours of a 64x64 colour at 1 fps: over Gemini's default duration
/// limit, small on disk.
fn five_hours() -> std::path::PathBuf {
    x264_clip("color-5h.mp4", "color=c=teal:size=64x64:rate=1:duration=18000", &["-pix_fmt", "yuv420p"])
}

#[test]
fn a_long_video_vertex_cannot_take_whole_is_sampled_by_the_users_limits() {
    runtime().block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/projects/proj-1/locations/us-central1/publishers/google/models/gemini-test:generateContent"))
            .respond_with(ResponseTemplate::new(200).set_body_json(recorded("inline_video.response.json")))
            .mount(&server)
            .await;
        std::env::set_var("VIDGATE_VERTEX_TOKEN_LONG", "ya29.vertex-token");
        let mut p = profile(&server, "vertex_long");
        p.auth = Some(AuthScheme::Bearer);
        p.api_key_env = None;
        p.project = Some("proj-1".into());
        p.token_env = Some("VIDGATE_VERTEX_TOKEN_LONG".into());
        // Under the file's 250 kB, so not inline, and Vertex has no Files
        // API; over eight frames.
        p.inline_max_bytes = Some(100_000);
        p.frames_per_call = Some(8);
        let mut config = Config::builtin().unwrap();
        config.providers.insert("gemini".into(), p.clone());
        config.router.chain = vec!["gemini".into()];
        config.budget.max_usd_per_request = 10.0;
        config.limits.max_duration_s = 6.0 * 3600.0;
        let g = Gateway::with_journal(config, Journal::in_memory().unwrap()).with_provider("gemini", backend(&p));
        let mut request = VideoRequest::new(five_hours(), Task::Describe);
        request.sampling =
            SamplingPlan { mode: SamplingMode::Count { count: 24 }, range: None, max_frames: 24, width: 48 };
        let report = g.run(request).await.unwrap();
        let sent = generate_bodies(&server).await;
        let frames: Vec<usize> = sent.iter().map(jpeg_frames).filter(|&n| n > 0).collect();
        assert_eq!(frames, [8, 8, 8], "24 frames, in calls of 8");
        assert!(!report.observations.is_empty());
        // Each frame follows its label, "Frame at H:MM:SS.mmm:".
        let times: Vec<u64> = sent
            .iter()
            .flat_map(parts)
            .filter_map(|p| p["text"].as_str()?.strip_prefix("Frame at ")?.strip_suffix(':').map(str::to_string))
            .map(|t| vidgate::timecode::parse(&t).unwrap())
            .collect();
        assert_eq!(times.len(), 24);
        assert!(times.last().is_some_and(|&t| t > 4 * 3600 * 1000), "spread over the five hours: {times:?}");
        for body in &sent {
            for part in parts(body).iter().filter(|p| p["inlineData"]["mimeType"] == "image/jpeg") {
                let jpeg =
                    base64::engine::general_purpose::STANDARD.decode(part["inlineData"]["data"].as_str().unwrap());
                assert_eq!(jpeg_size(&jpeg.unwrap()), Some((48, 48)), "the request's width");
            }
        }
    });
}

/// The frames per call a Gemini backend reports, for these `frames_per_call`
/// and model image limit.
fn images_per_call(frames_per_call: Option<u32>, image_limit: Option<u32>) -> u32 {
    let server = runtime().block_on(MockServer::start());
    let mut p = profile(&server, "per_call");
    p.frames_per_call = frames_per_call;
    p.models.get_mut("gemini-test").unwrap().max_images_per_request = image_limit;
    backend(&p).capabilities().max_images_per_call
}

#[test]
fn frames_per_call_is_the_profiles() {
    assert_eq!(images_per_call(Some(2), Some(16)), 2);
    assert_eq!(images_per_call(Some(16), Some(16)), 16);
}

#[test]
fn frames_per_call_is_clamped_to_the_models_image_limit() {
    assert_eq!(images_per_call(Some(40), Some(16)), 16);
    assert_eq!(images_per_call(Some(0), Some(16)), 1, "at least one");
}

#[test]
fn frames_per_call_defaults_to_the_models_image_limit() {
    assert_eq!(images_per_call(None, Some(16)), 16);
    assert_eq!(images_per_call(None, None), 3000, "Gemini's limit when the model names none");
}

/// A gateway whose chain is the Gemini profile `p` alone, at up to $1 a request.
fn gemini_gateway(p: &ProviderProfile) -> Gateway {
    let mut config = Config::builtin().unwrap();
    config.providers.insert("gemini".into(), p.clone());
    config.router.chain = vec!["gemini".into()];
    config.budget.max_usd_per_request = 1.0;
    Gateway::with_journal(config, Journal::in_memory().unwrap()).with_provider("gemini", backend(p))
}

#[test]
fn a_run_sends_frames_in_batches_of_frames_per_call() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let mut p = profile(&server, "batches");
        p.frames_per_call = Some(2);
        // Frames, not the video: the gateway batches them.
        p.models.get_mut("gemini-test").unwrap().native_video = Some(false);
        let g = gemini_gateway(&p);
        let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
        request.sampling =
            SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 160 };
        let report = g.run(request).await.unwrap();
        assert!(!report.observations.is_empty());
        let state = fake.state();
        let mut images: Vec<usize> = state.generate.iter().map(jpeg_frames).collect();
        images.sort_unstable();
        // Ten frames in calls of two, and the merge call with none.
        assert_eq!(images, [0, 2, 2, 2, 2, 2]);
    });
}

/// A budget too small for the video at the profile's fps: the plan lowers
/// the fps, and the request, its estimate and the journal key follow it.
#[test]
fn a_budget_that_lowers_the_fps_lowers_what_gemini_is_asked_and_charged() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let g = gemini_gateway(&profile(&server, "lowered"));
        let clip = testsrc_10s();
        let seconds = probe(&clip).duration_ms as f64 / 1000.0;
        let request = |cap: Option<f64>| {
            let mut r = VideoRequest::new(&clip, Task::Timeline);
            r.constraints.max_cost_usd = cap;
            r
        };
        // Gemini 2.5's counts: 258 tokens a frame and 5 more a second, at $0.30 a million.
        let video_tokens = |fps: f64| (seconds * (258.0 * fps + 5.0)).ceil() as u64;
        let full = g.plan(&request(None)).await.unwrap();
        assert!(full.downgrades.is_empty());
        let full = full.first().unwrap().clone();
        // Room for the video at a quarter of the frames, not at half.
        let cap = full.estimated_usd - (video_tokens(1.0) - video_tokens(0.3)) as f64 * 0.30 / 1e6;
        let plan = g.plan(&request(Some(cap))).await.unwrap();
        assert!(plan.fits, "{plan:?}");
        // A narrower frame saves nothing on a video sent whole, so it is not claimed.
        assert_eq!(plan.downgrades, ["fps 1 → 0.5", "fps 0.5 → 0.25"]);
        let lowered = plan.first().unwrap();
        assert_eq!(full.input_tokens - lowered.input_tokens, video_tokens(1.0) - video_tokens(0.25));
        assert!(lowered.estimated_usd <= cap);

        let report = g.run(request(Some(cap))).await.unwrap();
        {
            let state = fake.state();
            assert_eq!(state.generate.len(), 1);
            assert_eq!(parts(&state.generate[0])[0]["videoMetadata"]["fps"], 0.25, "the plan's fps is sent");
        }
        let attempt = &report.attempts[0];
        assert_eq!(attempt.estimated_input_tokens, lowered.input_tokens, "the call is estimated as planned");
        assert!((attempt.estimated_cost_usd - lowered.estimated_usd).abs() < 1e-12, "{attempt:?}");
        assert!(report.usage.cost_usd <= cap);

        // At the full rate the same video is a new question, not the lowered answer read back.
        let report = g.run(request(None)).await.unwrap();
        assert_eq!(report.reused_units, 0);
        assert_eq!(report.attempts[0].estimated_input_tokens, full.input_tokens);
        let state = fake.state();
        assert_eq!(state.generate.len(), 2);
        assert_eq!(parts(&state.generate[1])[0]["videoMetadata"]["fps"], 1.0);
    });
}

/// Nothing fits: the refusal names the fps it lowered, and not the frame
/// width, which changes nothing for a video sent whole.
#[test]
fn a_plan_for_a_whole_video_claims_only_the_downgrades_that_save() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let g = gemini_gateway(&profile(&server, "no_saving"));
        let mut request = VideoRequest::new(testsrc_10s(), Task::Timeline);
        request.constraints.max_cost_usd = Some(0.000_001);
        let plan = g.plan(&request).await.unwrap();
        assert!(!plan.fits);
        let fps = ["fps 1 → 0.5", "fps 0.5 → 0.25", "fps 0.25 → 0.125", "fps 0.125 → 0.0625"];
        assert_eq!(plan.downgrades, fps, "down to budget.min_fps 0.05, and no width");
        assert_eq!(plan.sampling.width, 512);
        let err = g.run(request).await.unwrap_err().to_string();
        assert!(err.contains(&format!("even after lowering {}. Nothing was spent", fps.join(", "))), "{err}");
        assert!(fake.state().generate.is_empty());
    });
}

#[test]
fn a_rerun_at_another_fps_is_sent_again_not_read_from_the_journal() {
    runtime().block_on(async {
        let (server, fake) = fake(Processing::ActiveAfter(1)).await;
        let p = profile(&server, "fps_key");
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.sqlite3");
        let run_at = |fps: f64| {
            let mut config = Config::builtin().unwrap();
            config.providers.insert("gemini".into(), p.clone());
            config.router.chain = vec!["gemini".into()];
            config.budget.max_usd_per_request = 1.0;
            config.sampling.fps = fps;
            let cache = clip_dir().join(format!("uploads-{}.json", rand_suffix()));
            let backend = Gemini::from_profile("gemini", &p, &config).unwrap().with_upload_cache(cache);
            let g = Gateway::with_journal(config, Journal::open(&journal).unwrap())
                .with_provider("gemini", Arc::new(backend));
            // As `--fps` does: the setting and the request's sampling.
            let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
            request.sampling.mode = SamplingMode::Fps { fps };
            async move { g.run(request).await.unwrap() }
        };
        // The fps each video call asked for, in order.
        let video_fps = || -> Vec<Value> {
            let state = fake.state();
            let video = |b: &&Value| !b["contents"][0]["parts"][0]["inlineData"].is_null();
            state
                .generate
                .iter()
                .filter(video)
                .map(|b| b["contents"][0]["parts"][0]["videoMetadata"]["fps"].clone())
                .collect()
        };
        let first = run_at(1.0).await;
        assert_eq!((first.reused_units, video_fps()), (0, vec![json!(1.0)]));
        let again = run_at(1.0).await;
        assert_eq!((again.reused_units, video_fps().len()), (2, 1), "the same settings: read back, for $0");
        let faster = run_at(5.0).await;
        assert_eq!(faster.reused_units, 0, "fps 5 asks another question than fps 1");
        assert_eq!(video_fps(), [json!(1.0), json!(5.0)], "the video was sent again, at 5 fps");
        assert!(faster.usage.cost_usd > 0.0, "and paid for");
    });
}

/// An answer that stopped at the output cap is kept, and the report is told.
#[test]
fn an_answer_cut_at_the_output_cap_is_kept_with_a_warning() {
    runtime().block_on(async {
        let (server, _fake) = fake(Processing::ActiveAfter(1)).await;
        let mut cut = recorded("inline_video.response.json");
        cut["candidates"][0]["finishReason"] = json!("MAX_TOKENS");
        answering(ResponseTemplate::new(200).set_body_json(cut), 1, &server).await;
        let p = profile(&server, "cut");
        let r = run_with(backend(&p), &p, &video_job(&testsrc_10s())).await;
        let out = r.result.unwrap();
        assert!(out.observations[0].text.starts_with("Okay! It looks like"), "the answer is kept");
        assert_eq!(
            out.warnings,
            ["gemini: the answer stopped at the output cap of 500 tokens and may be cut short (finishReason \"MAX_TOKENS\")"]
        );
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "not asked again");
    });
}
