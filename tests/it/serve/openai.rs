//! The OpenAI-compatible endpoint over real HTTP: the official `openai`
//! Python client, then each video shape, each refusal and the stream's
//! exact form with plain requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use vidgate::config::{Config, RouteAlias};
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{ErrorClass, Provider, ProviderError};
use vidgate::schema::{SamplingMode, TimeRange, VideoReport, VideoSource};
use vidgate::serve::RunState;

use super::{client_with, config, scripted, Server};
use crate::util::block_on;

/// What the scripted provider reports for each call (tests/it/gateway.rs).
const INPUT_TOKENS: u64 = 100;
const OUTPUT_TOKENS: u64 = 20;

/// A 4 s clip of the lavfi pattern `source`: each test case its own video,
/// so no run reuses another's units from the journal.
fn clip(source: &str) -> PathBuf {
    crate::util::x264_clip(
        &format!("openai-{source}.mp4"),
        &format!("{source}=duration=4:size=160x120:rate=10"),
        &["-pix_fmt", "yuv420p"],
    )
}

fn data_url(path: &Path, mime: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The service with one scripted provider `fake`, loopback allowed for URL
/// sources (the clip server of the URL tests), and the alias `quick`.
fn start(fake: ScriptedProvider) -> (Server, Arc<ScriptedProvider>) {
    let fake = Arc::new(fake);
    let mut config: Config = config("fake");
    config.fetch.allow = vec!["127.0.0.1".into()];
    config.router.aliases.insert("quick".into(), RouteAlias { task: "ask".into(), chain: vec!["fake".into()] });
    (Server::start(config, vec![("fake", fake.clone() as Arc<dyn Provider>)]), fake)
}

fn post(server: &Server, key: &str, body: &Value) -> (StatusCode, String) {
    block_on(async {
        let r = client_with(key).post(server.url("/v1/chat/completions")).json(body).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    })
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A chat request for `model` with the question and this video part, and
/// the extra fields OpenAI clients send.
fn chat(model: &str, question: &str, video: Value) -> Value {
    json!({
        "model": model, "temperature": 0.1, "max_tokens": 300, "top_p": 1, "user": "u1", "seed": 7,
        "messages": [{ "role": "user", "content": [{ "type": "text", "text": question }, video] }],
    })
}

/// `vidgate/describe` of the clip of `source`, as a data URL.
fn describe(source: &str, stream: bool) -> Value {
    let video = json!({ "type": "video_url", "video_url": { "url": data_url(&clip(source), "video/mp4") } });
    let mut body = chat("vidgate/describe", "", video);
    body["stream"] = json!(stream);
    body
}

/// The report in a completion's `vidgate` field, and its run id.
fn report_of(body: &Value) -> (VideoReport, i64) {
    let report = serde_json::from_value(body["vidgate"]["report"].clone()).unwrap_or_else(|e| panic!("{e}: {body}"));
    (report, body["vidgate"]["run_id"].as_i64().unwrap_or_else(|| panic!("{body}")))
}

/// Usage equal to what the provider reported, once per call the run made.
fn assert_usage(usage: &Value, report: &VideoReport, context: &str) {
    let calls = report.attempts.len() as u64;
    assert!(calls > 0, "{context}: {report:?}");
    assert_eq!(usage["prompt_tokens"], INPUT_TOKENS * calls, "{context}: {usage}");
    assert_eq!(usage["completion_tokens"], OUTPUT_TOKENS * calls, "{context}: {usage}");
    assert_eq!(usage["total_tokens"], (INPUT_TOKENS + OUTPUT_TOKENS) * calls, "{context}: {usage}");
}

fn python_with_openai() -> Option<()> {
    let ok =
        std::process::Command::new("python3").args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success());
    if ok {
        Some(())
    } else {
        crate::util::require("python3 with the `openai` package (pip install openai)")
    }
}

#[test]
fn the_official_openai_client_gets_answers_streamed_or_not_from_data_and_http_urls() {
    let Some(()) = python_with_openai() else { return };
    let (server, fake) = start(scripted("fake"));
    let clips = [clip("testsrc"), clip("testsrc2"), clip("smptebars"), clip("rgbtestsrc")];
    let (url_clip, url_stream_clip) = (clips[2].clone(), clips[3].clone());
    let (a, b) = (block_on(crate::url_source::server(url_clip)), block_on(crate::url_source::server(url_stream_clip)));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .env("VIDGATE_BASE_URL", server.url("/v1"))
        .env("VIDGATE_KEY", &server.key)
        .env("VIDGATE_CLIP_DATA", &clips[0])
        .env("VIDGATE_CLIP_DATA_STREAM", &clips[1])
        .env("VIDGATE_URL", format!("http://{a}/clip.mp4"))
        .env("VIDGATE_URL_STREAM", format!("http://{b}/clip.mp4"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result = json(&stdout);
    assert_eq!(result["openai_version"], "3.63.0", "the pinned client");
    assert_eq!(
        result["models"],
        json!(["vidgate/describe", "vidgate/timeline", "vidgate/ask", "vidgate/find", "quick"])
    );
    let mut calls = 0;
    for (case, heading) in [("data_url", "## Answer"), ("http_url", "## Timeline")] {
        let got = &result[case];
        let (report, run_id) = report_of(got);
        assert_eq!((got["object"].clone(), got["role"].clone()), (json!("chat.completion"), json!("assistant")));
        assert_eq!(got["finish_reason"], "stop", "{case}");
        assert_eq!(got["content"], vidgate::render::markdown(&report), "{case}");
        assert!(got["content"].as_str().unwrap().contains(heading), "{case}: {got}");
        assert!(got["content"].as_str().unwrap().contains("a test pattern"), "{case}: {got}");
        assert_usage(&got["usage"], &report, case);
        assert_eq!(got["vidgate"]["cost_usd"], json!(report.usage.cost_usd), "{case}");
        let run = server.app.runs.get(run_id).unwrap_or_else(|| panic!("{case}: run {run_id}"));
        assert!(run.key.is_some(), "{case}: paid by the client's key");
        calls += report.attempts.len();
    }
    for (case, heading) in [("data_url_stream", "## Answer"), ("http_url_stream", "## Story")] {
        let got = &result[case];
        let (report, run_id) = report_of(got);
        assert_eq!(got["objects"], json!(["chat.completion.chunk"]), "{case}");
        assert_eq!(got["roles"], json!(["assistant"]), "{case}");
        assert_eq!(got["finish_reasons"], json!(["stop"]), "{case}");
        assert_eq!(got["content"], vidgate::render::markdown(&report), "{case}");
        assert!(got["content"].as_str().unwrap().contains(heading), "{case}: {got}");
        assert_usage(&got["usage"], &report, case);
        assert!(got["run_ids"].as_array().unwrap().iter().all(|id| id == run_id), "{case}: {got}");
        calls += report.attempts.len();
    }
    assert_eq!(calls, fake.calls(), "the usage counts every call the provider got");
    let url_run = server.app.runs.get(report_of(&result["http_url"]).1).unwrap();
    assert!(matches!(url_run.request.source, VideoSource::Url { .. }), "{:?}", url_run.request.source);
    let bad = &result["bad_request"];
    assert_eq!((bad["status"].clone(), bad["type"].clone()), (json!(400), json!("invalid_request_error")), "{result}");
    assert_eq!(bad["param"], "messages[1].content[1].video_url.url", "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("text/plain"), "{bad}");
    assert_eq!(result["not_found"], json!({ "status": 404, "code": "model_not_found", "param": "model" }));
}

/// An upload made as `POST /v1/videos` makes it: its id.
fn upload(server: &Server, path: &Path) -> String {
    let bytes = bytes::Bytes::from(std::fs::read(path).unwrap());
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    block_on(vidgate::serve::uploads::save(&server.app.server.uploads_dir(), "mp4", 1 << 30, body)).unwrap().id
}

#[test]
fn every_video_shape_is_run_with_the_task_its_model_names() {
    let (server, _) = start(scripted("fake"));
    let raw = |path: &Path| base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap());
    let uploaded = clip("pal100bars");
    let id = upload(&server, &uploaded);
    let cases = [
        (
            "file with file_data and video_metadata",
            chat(
                "vidgate/find",
                "a red bar",
                json!({ "type": "file", "file": {
                "file_data": data_url(&clip("testsrc"), "video/mp4"), "format": "video/mp4",
                "video_metadata": { "fps": 2, "start_offset": "1s", "end_offset": "3.5s" } } }),
            ),
        ),
        (
            "input_video with raw base64",
            chat(
                "vidgate/timeline",
                "",
                json!({ "type": "input_video", "input_video": {
                "data": raw(&clip("testsrc2")), "format": "mp4" } }),
            ),
        ),
        (
            "image_url with a data:video URL",
            chat(
                "vidgate/describe",
                "",
                json!({ "type": "image_url", "image_url": {
                "url": data_url(&clip("smptebars"), "video/mp4") } }),
            ),
        ),
        (
            "file with an upload's id",
            chat("quick", "What is shown?", json!({ "type": "file", "file": { "file_id": id } })),
        ),
    ];
    let mut tasks = Vec::new();
    for (case, body) in cases {
        let (status, text) = post(&server, &server.key, &body);
        assert_eq!(status, StatusCode::OK, "{case}: {text}");
        let body = json(&text);
        let (report, run_id) = report_of(&body);
        assert_eq!(body["choices"][0]["message"]["content"], vidgate::render::markdown(&report), "{case}");
        assert_usage(&body["usage"], &report, case);
        let run = server.app.runs.get(run_id).unwrap();
        let VideoSource::Path { path } = &run.request.source else { panic!("{case}: {:?}", run.request.source) };
        assert!(path.starts_with(server.app.server.uploads_dir()), "{case}: {}", path.display());
        tasks.push(run.request.task.clone());
        if case.contains("video_metadata") {
            assert_eq!(run.request.sampling.mode, SamplingMode::Fps { fps: 2.0 });
            assert_eq!(run.request.sampling.range, TimeRange::new(1000, 3500));
            let seen: Vec<u64> = report.observations.iter().map(|o| o.range.start_ms).collect();
            assert_eq!(seen, [1000, 1500, 2000, 2500, 3000], "frames at 2 fps within 1 s..3.5 s");
        }
        if case.contains("upload") {
            assert!(path.ends_with(format!("{id}.mp4")), "{}", path.display());
            assert_eq!(run.request.constraints.allowed_providers, ["fake"], "the alias's chain");
        }
    }
    use vidgate::schema::Task;
    assert_eq!(
        tasks,
        [
            Task::Find { what: "a red bar".into() },
            Task::Timeline,
            Task::Describe,
            Task::Ask { question: "What is shown?".into() },
        ]
    );
}

#[test]
fn a_video_that_cannot_be_used_is_a_400_naming_it_and_nothing_is_kept_or_spent() {
    let (server, fake) = start(scripted("fake"));
    let text = |t: &str| json!({ "type": "text", "text": t });
    let video_url = |u: String| json!({ "type": "video_url", "video_url": { "url": u } });
    let not_video =
        format!("data:video/mp4;base64,{}", base64::engine::general_purpose::STANDARD.encode("not a video"));
    let cases = [
        (
            chat("vidgate/ask", "q", video_url("data:text/plain;base64,aGk=".into())),
            "messages[0].content[1].video_url.url",
            "not a video",
        ),
        (
            chat("vidgate/ask", "q", video_url("data:video/mp4;base64,AAA*AAAA".into())),
            "messages[0].content[1]",
            "base64",
        ),
        (chat("vidgate/ask", "q", video_url(not_video)), "messages[0].content[1]", "not one vidgate can read"),
        (
            chat("vidgate/ask", "q", video_url("file:///etc/passwd".into())),
            "messages[0].content[1].video_url.url",
            "`file`",
        ),
        (chat("vidgate/ask", "q", video_url("0123456789abcdef".into())), "messages[0].content[1]", "no upload"),
        (chat("vidgate/ask", "q", text("no video here")), "messages", "no video"),
        (chat("vidgate/ask", "", video_url("https://example.com/a.mp4".into())), "messages", "needs a question"),
        (
            chat(
                "vidgate/ask",
                "q",
                json!({ "type": "input_audio", "input_audio": { "data": "AAAA", "format": "wav" } }),
            ),
            "messages[0].content[1]",
            "input_audio",
        ),
    ];
    for (body, param, needle) in cases {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let (status, answer) = post(&server, &server.key, &body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {answer}");
            let error = &json(&answer)["error"];
            assert_eq!(
                (error["type"].clone(), error["param"].clone()),
                (json!("invalid_request_error"), json!(param)),
                "{answer}"
            );
            assert!(error["message"].as_str().unwrap().contains(needle), "{needle}: {answer}");
        }
    }
    let (status, answer) =
        post(&server, &server.key, &chat("gpt-4o", "q", video_url("https://example.com/a.mp4".into())));
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let error = &json(&answer)["error"];
    assert_eq!((error["code"].clone(), error["param"].clone()), (json!("model_not_found"), json!("model")), "{answer}");
    assert_eq!(fake.calls(), 0, "nothing was sent to a provider");
    assert!(server.app.runs.list().is_empty(), "no run was started");
    let kept = std::fs::read_dir(server.app.server.uploads_dir()).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "a refused video is not kept");
}

#[test]
fn a_key_over_its_budget_gets_402_before_any_call_streamed_or_not() {
    let (server, fake) = start(scripted("fake"));
    let (status, text) = block_on(async {
        let r = client_with(&server.admin_key)
            .post(server.url("/v1/keys"))
            .json(&json!({ "name": "broke", "max_usd_per_day": 1.0 }))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    });
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let record = json(&text);
    let (key, id) = (record["key"].as_str().unwrap().to_string(), record["id"].as_str().unwrap().to_string());
    // It spent its dollar today already.
    vidgate::journal::Journal::open(&server.journal_path()).unwrap().queue_spend_for("elsewhere", 1.0, Some(&id));
    for (stream, source) in [(false, "testsrc"), (true, "testsrc2")] {
        let body = describe(source, stream);
        let (status, answer) = post(&server, &key, &body);
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "stream {stream}: {answer}");
        let error = &json(&answer)["error"];
        assert_eq!((error["type"].clone(), error["code"].clone()), (json!("insufficient_quota"), json!("over_budget")));
    }
    assert_eq!(fake.calls(), 0, "the provider got no call");
    // The server's own key, with no cap, is served.
    assert_eq!(post(&server, &server.key, &describe("smptebars", false)).0, StatusCode::OK);
}

/// The `data:` lines and the comment lines of an SSE body.
fn sse(body: &str) -> (Vec<String>, Vec<String>) {
    let data = body.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect();
    let comments = body.lines().filter_map(|l| l.strip_prefix(':')).map(|c| c.trim().to_string()).collect();
    (data, comments)
}

#[test]
fn the_stream_has_openais_chunks_with_progress_as_comments_and_ends_with_done() {
    let (server, _) = start(scripted("fake"));
    let mut body = chat(
        "vidgate/ask",
        "What is shown?",
        json!({ "type": "video_url", "video_url": {
        "url": data_url(&clip("yuvtestsrc"), "video/mp4") } }),
    );
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let (status, text) = post(&server, &server.key, &body);
    assert_eq!(status, StatusCode::OK, "{text}");
    let (data, comments) = sse(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json(d)).collect();
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(
            (chunk["object"].clone(), chunk["id"].clone()),
            (json!("chat.completion.chunk"), id.clone()),
            "{chunk}"
        );
        assert_eq!(chunk["model"], "vidgate/ask", "{chunk}");
        assert!(chunk.get("usage").is_some(), "with include_usage every chunk has `usage`: {chunk}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({ "role": "assistant", "content": "" }), "{text}");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]), "{text}");
    let last = &chunks[chunks.len() - 2];
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{text}");
    let (report, _) = report_of(last);
    assert_usage(&usage_chunk["usage"], &report, "stream");
    let content: String = chunks[1..chunks.len() - 2]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null, "{c}");
            c["choices"][0]["delta"]["content"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(content, vidgate::render::markdown(&report));
    let kinds: Vec<String> =
        comments.iter().filter_map(|c| serde_json::from_str::<Value>(c).ok()).map(|c| c["kind"].to_string()).collect();
    for kind in ["\"probed\"", "\"planned\"", "\"unit\"", "\"done\""] {
        assert!(kinds.iter().any(|k| k == kind), "progress {kind} in the comments: {comments:?}");
    }
    // Without include_usage: no usage field, no usage chunk.
    body["stream_options"] = json!({ "include_usage": false });
    body["messages"][0]["content"][1]["video_url"]["url"] = json!(data_url(&clip("rgbtestsrc"), "video/mp4"));
    let (_, text) = post(&server, &server.key, &body);
    let (data, _) = sse(&text);
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json(d)).collect();
    assert!(chunks.iter().all(|c| c.get("usage").is_none() && c["choices"].as_array().unwrap().len() == 1), "{text}");
}

#[test]
fn a_run_that_fails_after_the_stream_opened_ends_it_with_an_error_chunk() {
    let mut broken = ProviderError::new("fake", ErrorClass::Fatal, "HTTP 400: the model refuses this input");
    broken.status = Some(400);
    let (server, fake) = start(scripted("fake").with_fallback(Step::Fail(broken)));
    let (status, text) = post(&server, &server.key, &describe("testsrc", true));
    assert_eq!(status, StatusCode::OK, "the stream opened once the run was planned: {text}");
    assert!(fake.calls() > 0);
    let (data, _) = sse(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let error = json(&data[data.len() - 2]);
    assert!(error["error"]["message"].as_str().unwrap().contains("refuses this input"), "{text}");
    assert!(error["error"]["type"].is_string() && error["error"]["run_id"].is_i64(), "{error}");
    assert!(!text.contains("finish_reason\":\"stop"), "no answer: {text}");
    // Without streaming, the run's failure is the answer's status.
    let (status, text) = post(&server, &server.key, &describe("testsrc2", false));
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert!(json(&text)["error"]["message"].as_str().unwrap().contains("refuses this input"), "{text}");
}

#[test]
fn models_are_listed_and_read_one_by_one() {
    let (server, _) = start(ScriptedProvider::new("fake"));
    let get = |path: &str| {
        block_on(async {
            let r = server.client().get(server.url(path)).send().await.unwrap();
            (r.status(), json(&r.text().await.unwrap()))
        })
    };
    let (status, list) = get("/v1/models");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["vidgate/describe", "vidgate/timeline", "vidgate/ask", "vidgate/find", "quick"]);
    for model in list["data"].as_array().unwrap() {
        assert_eq!((model["object"].clone(), model["owned_by"].clone()), (json!("model"), json!("vidgate")), "{model}");
        assert!(model["created"].as_i64().unwrap() > 1_600_000_000, "{model}");
    }
    let (status, one) = get("/v1/models/vidgate/ask");
    assert_eq!((status, one["id"].clone()), (StatusCode::OK, json!("vidgate/ask")));
    let (status, missing) = get("/v1/models/vidgate/summarize");
    assert_eq!((status, missing["error"]["code"].clone()), (StatusCode::NOT_FOUND, json!("model_not_found")));
    let anonymous = block_on(async { reqwest::get(server.url("/v1/models")).await.unwrap().status() });
    assert_eq!(anonymous, StatusCode::UNAUTHORIZED, "a key is needed");
}

#[test]
fn a_client_that_goes_away_cancels_its_run() {
    let slow = Step::Delay(
        std::time::Duration::from_secs(600),
        Box::new(Step::Fail(ProviderError::new("fake", ErrorClass::Fatal, "unreached"))),
    );
    let (server, _) = start(ScriptedProvider::new("fake").with_fallback(slow));
    for (stream, source) in [(false, "testsrc"), (true, "testsrc2")] {
        let body = describe(source, stream);
        let before = server.app.runs.list().len();
        let client = client_with(&server.key);
        let request = client.post(server.url("/v1/chat/completions")).json(&body);
        block_on(async {
            // The client reads until the run has started working, then hangs up.
            let sent = tokio::spawn(request.send());
            let run = loop {
                if let Some(run) =
                    server.app.runs.list().into_iter().next().filter(|_| server.app.runs.list().len() > before)
                {
                    if run.state().name() == "running" {
                        break run;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            if stream {
                let response = sent.await.unwrap().unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                drop(response);
            } else {
                sent.abort();
            }
            // Bounded only so that a broken cancel fails instead of waiting out the provider.
            let state = tokio::time::timeout(std::time::Duration::from_secs(60), run.finished()).await;
            assert!(matches!(state, Ok(RunState::Cancelled)), "stream {stream}: the run goes on: {state:?}");
        });
    }
}

#[test]
fn a_url_the_address_guard_refuses_is_a_400_naming_the_part() {
    let (server, fake) = start(scripted("fake"));
    for stream in [false, true] {
        let video = json!({ "type": "video_url", "video_url": { "url": "http://169.254.169.254/latest/clip.mp4" } });
        let mut body = chat("vidgate/ask", "What is shown?", video);
        body["stream"] = json!(stream);
        let (status, answer) = post(&server, &server.key, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "stream {stream}: {answer}");
        let error = &json(&answer)["error"];
        assert_eq!(error["param"], "messages[0].content[1]", "{answer}");
        assert!(error["message"].as_str().unwrap().contains("metadata"), "{answer}");
    }
    assert_eq!(fake.calls(), 0);
}

#[test]
fn a_full_queue_is_a_429_and_the_decoded_video_is_not_kept() {
    let slow = Step::Delay(
        std::time::Duration::from_secs(600),
        Box::new(Step::Fail(ProviderError::new("fake", ErrorClass::Fatal, "unreached"))),
    );
    let fake = Arc::new(ScriptedProvider::new("fake").with_fallback(slow));
    let mut config = config("fake");
    (config.server.max_concurrent_runs, config.server.queue_length) = (1, 0);
    let server = Server::start(config, vec![("fake", fake as Arc<dyn Provider>)]);
    let request = vidgate::schema::VideoRequest::new(clip("testsrc"), vidgate::schema::Task::Describe);
    let busy = block_on(server.app.runs.submit(vidgate::serve::runs::Submission { request, account: None })).unwrap();
    let mut state = busy.watch();
    block_on(state.wait_for(|s| matches!(s, RunState::Running))).unwrap();
    let (status, answer) = post(&server, &server.key, &describe("testsrc2", false));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(json(&answer)["error"]["code"], "queue_full", "{answer}");
    let kept = std::fs::read_dir(server.app.server.uploads_dir()).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "the decoded video went with the refusal");
    server.app.runs.cancel(busy.id);
}

#[test]
fn an_inline_video_over_the_chat_cap_is_a_413_naming_the_setting_and_costs_nothing() {
    let fake = Arc::new(scripted("fake"));
    let mut config: Config = config("fake");
    config.server.max_inline_video_bytes = 1000;
    let server = Server::start(config, vec![("fake", fake.clone() as Arc<dyn Provider>)]);
    let video = clip("pal75bars");
    assert!(std::fs::metadata(&video).unwrap().len() > 1000, "the clip is larger than the cap");
    let part = json!({ "type": "video_url", "video_url": { "url": data_url(&video, "video/mp4") } });
    for stream in [false, true] {
        let mut body = chat("vidgate/describe", "", part.clone());
        body["stream"] = json!(stream);
        let (status, answer) = post(&server, &server.key, &body);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
        let error = &json(&answer)["error"];
        assert_eq!(error["code"], json!("upload_too_large"), "{answer}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("server.max_inline_video_bytes") && message.contains("1000"), "{answer}");
    }
    assert_eq!(fake.calls(), 0, "nothing was sent to a provider");
    let kept = std::fs::read_dir(server.app.server.uploads_dir()).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "nothing of the refused video is kept");
}

#[test]
fn chat_bodies_are_read_no_more_than_runs_work_at_once() {
    use tokio::io::AsyncWriteExt;
    let fake = Arc::new(scripted("fake"));
    let mut config: Config = config("fake");
    config.server.max_concurrent_runs = 1;
    let server = Server::start(config, vec![("fake", fake.clone() as Arc<dyn Provider>)]);
    let (addr, key) = (server.addr, server.key.clone());
    // A client that sends the start of a large body, then waits.
    let socket = block_on(async move {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: 50000000\r\n\r\n\
             {{\"model\": \"vidgate/describe\", \"messages\": [{{\"role\": \"user\", \"content\": \"AAAA"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&vec![b'A'; 1 << 20]).await.unwrap();
        socket.flush().await.unwrap();
        socket
    });
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.app.chat_bodies.available_permits() > 0 {
        assert!(std::time::Instant::now() < until, "the first body is never read");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A second body meanwhile is refused before it is read.
    let (status, answer) = post(&server, &server.key, &describe("gradients", false));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(json(&answer)["error"]["message"].as_str().unwrap().contains("server.max_concurrent_runs"), "{answer}");
    // Once the first client goes away, the next is served.
    drop(socket);
    while server.app.chat_bodies.available_permits() == 0 {
        assert!(std::time::Instant::now() < until, "the abandoned body is never let go");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, answer) = post(&server, &server.key, &describe("gradients", false));
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(fake.calls() > 0);
}

#[test]
fn an_upload_a_chat_run_reads_counts_as_used_for_retention() {
    let (server, _) = start(scripted("fake"));
    let dir = server.app.server.uploads_dir();
    let (used, idle) = (upload(&server, &clip("testsrc")), upload(&server, &clip("testsrc2")));
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    for id in [&used, &idle] {
        let path = vidgate::serve::uploads::find(&dir, id).unwrap().path;
        std::fs::File::options().append(true).open(path).unwrap().set_modified(day_ago).unwrap();
    }
    let part = json!({ "type": "file", "file": { "file_id": used } });
    let (status, answer) = post(&server, &server.key, &chat("vidgate/describe", "", part));
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Kept 24 h after their last use (the default): the idle one is old, the used one new.
    let swept = block_on(vidgate::serve::native::retention::sweep(&server.app, std::time::SystemTime::now())).unwrap();
    assert!(swept.uploads.iter().any(|p| p.to_string_lossy().contains(&idle)), "{swept:?}");
    assert!(vidgate::serve::uploads::find(&dir, &used).is_some(), "the used upload is kept: {swept:?}");
}
