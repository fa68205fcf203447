//! Keys never leak: a failing and then succeeding workload on Gemini and an
//! OpenAI-compatible server, at trace level, with servers that echo the key
//! back in their error bodies. The key must appear nowhere: not on stdout or
//! stderr, not in the logs, the report, or the journal's files.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::util::*;

const OPENAI_KEY: &str = "fake-openai-key-VIDGATESECRET-not-real";
const GEMINI_KEY: &str = "fake-gemini-key-VIDGATESECRET-not-real";

/// Fails the first `failures` calls with a body that quotes the credentials
/// it was sent (as some proxies and misconfigured servers do), then answers.
struct Echoing {
    calls: Arc<AtomicUsize>,
    failures: usize,
}

impl Respond for Echoing {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let creds: Vec<String> = ["authorization", "x-goog-api-key", "api-key"]
            .iter()
            .filter_map(|h| request.headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| format!("{h}: {v}")))
            .collect();
        if creds.iter().any(|c| c.contains("wrongkey")) {
            return ResponseTemplate::new(400).set_body_json(json!({
                "error": {"code": 400, "message": format!("API key not valid: {}", creds.join(", ")), "status": "INVALID_ARGUMENT",
                          "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}
            }));
        }
        if n < self.failures {
            return ResponseTemplate::new(503).set_body_json(json!({
                "error": {"code": 503, "message": format!("overloaded; you sent {} (url {})", creds.join(", "), request.url), "status": "UNAVAILABLE"}
            }));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if request.url.path().contains(":generateContent") {
            let text = if body["generationConfig"]["responseSchema"].is_object() {
                r#"{"events":[{"start":"00:00.000","end":"00:10.000","text":"A test pattern."}]}"#.to_string()
            } else {
                "A test pattern runs for ten seconds.".to_string()
            };
            return ResponseTemplate::new(200).set_body_json(json!({
                "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}],
                "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 3000, "candidatesTokenCount": 40, "totalTokenCount": 3040}
            }));
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": "fake-vision",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "A test pattern."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

fn assert_clean(what: &str, text: &str) {
    for key in [OPENAI_KEY, GEMINI_KEY] {
        assert!(!text.contains(key), "{what} holds a key");
        // Nor a recognisable part of it.
        assert!(!text.contains("VIDGATESECRET"), "{what} holds part of a key");
    }
}

#[test]
fn keys_appear_nowhere_in_output_logs_reports_or_the_journal() {
    let rt = runtime();
    let (gemini, openai) = rt.block_on(async {
        let (g, o) = (MockServer::start().await, MockServer::start().await);
        Mock::given(wiremock::matchers::any())
            .respond_with(Echoing { calls: Arc::default(), failures: 2 })
            .mount(&g)
            .await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Echoing { calls: Arc::default(), failures: 3 })
            .mount(&o)
            .await;
        (g, o)
    });
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[retry]\nmax_attempts = 3\n\n[journal]\npath = {journal:?}\n\n[sampling]\nfps = 0.5\nwidth = 160\n\n\
             [providers.gemini]\nbase_url = \"{}\"\napi_key_env = \"VIDGATE_SECRET_GEMINI\"\nmodel = \"gemini-2.5-flash\"\n\n\
             [providers.fake]\nprotocol = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"VIDGATE_SECRET_OPENAI\"\nmodel = \"fake-vision\"\n\
             [providers.fake.limits]\nmax_concurrency = 1\n[providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            gemini.uri(),
            openai.uri()
        ),
    )
    .unwrap();
    let run = |args: &[&str], gemini_key: &str| {
        let out = vidgate()
            .args(["-vvv"])
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("VIDGATE_LOG", "trace")
            .env("VIDGATE_SECRET_GEMINI", gemini_key)
            .env("VIDGATE_SECRET_OPENAI", OPENAI_KEY)
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert_clean(&format!("stdout of {args:?}"), &stdout);
        assert_clean(&format!("stderr of {args:?}"), &stderr);
        (out.status.success(), stdout, stderr)
    };
    let clip = testsrc_10s();
    let clip = clip.to_str().unwrap();

    // Gemini fails twice (its error quoting the key), is retried, then answers.
    let (ok, stdout, stderr) = run(&["describe", clip, "--provider", "gemini", "--json"], GEMINI_KEY);
    assert!(ok, "{stderr}");
    assert!(stderr.lines().count() > 20, "trace logging is on");
    assert!(stderr.contains("503"), "the failures were logged");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["attempts"].as_array().unwrap().len() >= 3);

    // The OpenAI-compatible server fails three times: three failed calls in a
    // row bench the provider, the run fails clearly.
    let (ok, _, stderr) = run(&["describe", clip, "--provider", "fake"], GEMINI_KEY);
    assert!(!ok && stderr.contains("vidgate: error:"), "{stderr}");
    // Then it answers: ask and find go through, reusing what the journal kept.
    let (ok, _, stderr) = run(&["ask", clip, "What is shown?", "--provider", "fake", "--json"], GEMINI_KEY);
    assert!(ok, "{stderr}");

    // A wrong Gemini key, refused by the server with the key quoted: not echoed either.
    let other = testsrc_30s_audio();
    let (ok, _, stderr) =
        run(&["timeline", other.to_str().unwrap(), "--provider", "gemini"], "fake-gemini-wrongkey-VIDGATESECRET");
    assert!(!ok && stderr.contains("vidgate: error:"), "{stderr}");

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert_clean(&path.display().to_string(), &String::from_utf8_lossy(&bytes));
    }
    // The servers did get the keys, in headers (never in URLs).
    let gemini_seen = rt.block_on(gemini.received_requests()).unwrap();
    assert!(gemini_seen.iter().all(|r| !r.url.as_str().contains("VIDGATESECRET")));
    assert!(gemini_seen.iter().any(|r| r.headers.get("x-goog-api-key").is_some_and(|v| v == GEMINI_KEY)));
}

const PROJECT_KEY: &str = "sk-proj/VIDGATESECRET-9f8e7d";

/// An OpenAI-compatible server that refuses every call and quotes the key it
/// was sent, JSON-escaped as real servers write it: in a 200 (`\/`) and in a
/// 400 (`\u002f`).
struct Quoting {
    calls: Arc<AtomicUsize>,
}

impl Respond for Quoting {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let sent = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let body = if self.calls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            let quoted = sent.replace('/', "\\/");
            (200, format!(r#"{{"error":{{"message":"invalid key {quoted}","type":"invalid_request_error"}}}}"#))
        } else {
            let quoted = sent.replace('/', "\\u002f");
            (400, format!(r#"{{"error":{{"message":"bad request from {quoted}","type":"invalid_request_error"}}}}"#))
        };
        ResponseTemplate::new(body.0).set_body_raw(body.1, "application/json")
    }
}

#[test]
fn a_key_quoted_back_with_json_escapes_is_redacted_in_logs_errors_and_the_report() {
    let rt = runtime();
    let (quoting, good) = rt.block_on(async {
        let (q, g) = (MockServer::start().await, MockServer::start().await);
        Mock::given(wiremock::matchers::any()).respond_with(Quoting { calls: Arc::default() }).mount(&q).await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Echoing { calls: Arc::default(), failures: 0 })
            .mount(&g)
            .await;
        (q, g)
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vidgate.toml");
    let profile = |name: &str, server: &MockServer| {
        format!(
            "[providers.{name}]\nprotocol = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"VIDGATE_SECRET_PROJECT\"\n\
             model = \"fake-vision\"\n[providers.{name}.limits]\nmax_concurrency = 1\n\
             [providers.{name}.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n\n",
            server.uri()
        )
    };
    std::fs::write(
        &config,
        format!(
            "[router]\nchain = [\"quoting\", \"good\"]\n\n[retry]\nmax_attempts = 2\n\n[journal]\npath = {:?}\n\n[sampling]\nfps = 0.5\nwidth = 160\n\n{}{}",
            dir.path().join("journal.sqlite3"),
            profile("quoting", &quoting),
            profile("good", &good)
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = vidgate()
            .arg("-vv")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg(testsrc_10s())
            .env("VIDGATE_SECRET_PROJECT", PROJECT_KEY)
            .output()
            .unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        for text in [&stdout, &stderr] {
            assert!(!text.contains("VIDGATESECRET"), "{args:?} printed the key:\n{stdout}\n{stderr}");
        }
        (out.status.success(), stdout, stderr)
    };

    // Each unit is refused by the quoting server, then answered by the good one.
    let (ok, stdout, stderr) = run(&["describe", "--json"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("WARN") && stderr.contains("invalid key Bearer ***"), "the WARN line, redacted: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let reasons: Vec<&str> =
        report["attempts"].as_array().unwrap().iter().filter_map(|a| a["outcome"]["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("invalid key Bearer ***")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("bad request from Bearer ***")), "{reasons:?}");

    // Refused everywhere: the final error quotes the server, without the key.
    let (ok, _, stderr) = run(&["timeline", "--provider", "quoting"]);
    assert!(!ok, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("vidgate: error:") && last.contains("Bearer ***"), "{stderr}");
}
