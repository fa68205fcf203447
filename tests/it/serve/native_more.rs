//! The rest of the native API over real HTTP: uploads by URL, stored videos
//! with Range, plans, providers, metrics, retention; and the service under
//! load: 20 clients at once, a client gone mid-upload, a full queue.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{ErrorClass, Provider, ProviderError};
use vidgate::schema::{Task, Usage};
use vidgate::serve::native::retention;

use super::{client_with, config, scripted, with_fake, Server, UNIT_USD};
use crate::util::{block_on, testsrc_10s};

/// Status, headers and body of a request.
fn send(request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    block_on(async {
        let r = request.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.bytes().await.unwrap().to_vec())
    })
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Upload `path` as multipart field `file`; its id.
fn upload(server: &Server, path: &std::path::Path) -> String {
    upload_as(server, path, "clip.mp4")
}

/// Upload the file at `path` under the file name `name`.
fn upload_as(server: &Server, path: &std::path::Path, name: &str) -> String {
    let boundary = "vidgate-test-boundary";
    let mut form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         content-type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    form.extend(std::fs::read(path).unwrap());
    form.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let request = server.client().post(server.url("/v1/videos"));
    let request = request.header("content-type", format!("multipart/form-data; boundary={boundary}"));
    let (status, _, body) = send(request.body(form));
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    json_of(&body)["id"].as_str().unwrap().to_string()
}

/// Files in the server's uploads dir.
fn uploads_in(server: &Server) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(server.app.server.uploads_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Wait (at most 20 s) for `done`.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run's JSON once it is over.
fn finished(server: &Server, id: i64) -> Value {
    finished_as(server, &server.client(), id)
}

/// [`finished`], read by `client`.
fn finished_as(server: &Server, client: &reqwest::Client, id: i64) -> Value {
    let run = server.app.runs.get(id).unwrap_or_else(|| panic!("no run {id}"));
    block_on(run.finished());
    let (status, _, body) = send(client.get(server.url(&format!("/v1/runs/{id}"))));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    json_of(&body)
}

/// Submit a run over HTTP with `client`; its id.
fn submit(server: &Server, client: &reqwest::Client, body: &Value) -> i64 {
    let (status, _, answer) = send(client.post(server.url("/v1/runs")).json(body));
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&answer));
    json_of(&answer)["id"].as_i64().unwrap()
}

fn answer(text: &str) -> Step {
    Step::Answer { text: text.into(), usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: UNIT_USD } }
}

/// A loopback HTTP server: `/clip.mp4` the 10 s clip, `/notes.txt` text.
fn origin() -> std::net::SocketAddr {
    use axum::routing::get;
    let clip = std::fs::read(testsrc_10s()).unwrap();
    let router = axum::Router::new()
        .route("/clip.mp4", get(move || async move { ([("content-type", "video/mp4")], clip) }))
        .route("/notes.txt", get(|| async { "not a video at all" }));
    let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    crate::util::runtime().spawn(async move { axum::serve(listener, router).await });
    addr
}

fn fake_server(config: Config) -> (Server, Arc<ScriptedProvider>) {
    let fake = Arc::new(scripted("fake"));
    (Server::start(config, vec![("fake", fake.clone() as Arc<dyn Provider>)]), fake)
}

#[test]
fn a_video_is_fetched_from_a_url_into_the_uploads_and_a_refused_url_is_a_400_on_url() {
    let origin = origin();
    let mut c = config("fake");
    c.fetch.allow = vec!["127.0.0.1".into()];
    let (server, _) = fake_server(c);
    let by_url = |server: &Server, url: String| {
        let (status, _, body) = send(server.client().post(server.url("/v1/videos")).json(&json!({ "url": url })));
        (status, json_of(&body))
    };
    let (status, body) = by_url(&server, format!("http://{origin}/clip.mp4"));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["probe"]["duration_ms"], 10_000, "{body}");
    let id = body["id"].as_str().unwrap();
    let stored = std::fs::metadata(server.app.server.uploads_dir().join(format!("{id}.mp4"))).unwrap();
    assert_eq!(body["bytes"], stored.len(), "{body}");
    assert_eq!(stored.len(), std::fs::metadata(testsrc_10s()).unwrap().len());
    // The upload serves a run like a multipart one.
    let run = submit(&server, &server.client(), &json!({ "video": id, "task": "timeline" }));
    assert_eq!(finished(&server, run)["status"], "done");

    // Text is no video: refused, and nothing of it stays.
    let (status, body) = by_url(&server, format!("http://{origin}/notes.txt"));
    assert_eq!((status, &body["error"]["param"]), (StatusCode::BAD_REQUEST, &json!("url")), "{body}");
    assert_eq!(uploads_in(&server).len(), 1, "only the clip is kept: {:?}", uploads_in(&server));

    // Over the size limit.
    let mut c = config("fake");
    c.fetch.allow = vec!["127.0.0.1".into()];
    c.server.max_upload_bytes = 1000;
    let (small, _) = fake_server(c);
    let (status, body) = by_url(&small, format!("http://{origin}/clip.mp4"));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "url", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 1000 bytes (server.max_upload_bytes)"),
        "{body}"
    );
    assert!(uploads_in(&small).is_empty(), "{:?}", uploads_in(&small));

    // A JSON body is small, and says `url`.
    let huge = json!({ "url": "x".repeat(1 << 20) });
    let (status, _, body) = send(server.client().post(server.url("/v1/videos")).json(&huge));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = send(server.client().post(server.url("/v1/videos")).json(&json!({ "link": "http://x" })));
    assert_eq!((status, json_of(&body)["error"]["param"].clone()), (StatusCode::BAD_REQUEST, json!("url")));

    // Loopback, and a cloud metadata address, without `fetch.allow`.
    let (guarded, _) = with_fake();
    for url in [format!("http://{origin}/clip.mp4"), "http://169.254.169.254/latest/meta-data/".to_string()] {
        let (status, body) = by_url(&guarded, url);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], "url", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("refused"), "{body}");
    }
    assert!(uploads_in(&guarded).is_empty());
}

#[test]
fn a_stored_video_is_served_with_range_requests_and_no_other_file_is() {
    let (server, _) = with_fake();
    let clip = testsrc_10s();
    let bytes = std::fs::read(&clip).unwrap();
    let id = upload(&server, &clip);
    let (status, headers, body) = send(server.client().get(server.url(&format!("/v1/videos/{id}"))));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(body, bytes);
    let (status, headers, body) =
        send(server.client().get(server.url(&format!("/v1/videos/{id}"))).header("range", "bytes=100-199"));
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers["content-range"], format!("bytes 100-199/{}", bytes.len()).as_str());
    assert_eq!(body, bytes[100..200]);
    // Unknown ids, and ids that try to leave the uploads dir.
    std::fs::write(server.journal_path().with_file_name("secret.txt"), "do not serve").unwrap();
    for id in ["0123abcd", "..%2Fsecret.txt", "..%2F..%2Fjournal.sqlite3", "%2Fetc%2Fpasswd", "abc.mp4"] {
        let (status, _, body) = send(server.client().get(server.url(&format!("/v1/videos/{id}"))));
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {}", String::from_utf8_lossy(&body));
        assert_eq!(json_of(&body)["error"]["type"], "not_found_error");
    }
    // A file in the uploads dir that is not an upload is not served either.
    std::fs::write(server.app.server.uploads_dir().join("notes.txt"), "not an upload").unwrap();
    let (status, _, _) = send(server.client().get(server.url("/v1/videos/notes")));
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A video uploaded as `.html` is served as bytes, never as a page.
    let page = upload_as(&server, &clip, "page.html");
    let (status, headers, body) = send(server.client().get(server.url(&format!("/v1/videos/{page}"))));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body, bytes);
    // A key is needed.
    let (status, _, _) = send(reqwest::Client::new().get(server.url(&format!("/v1/videos/{id}"))));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_plan_answers_cost_frames_and_chain_and_spends_nothing() {
    let (server, fake) = with_fake();
    let id = upload(&server, &testsrc_10s());
    // Something spent first, so that "unchanged" means something.
    let run = submit(&server, &server.client(), &json!({ "video": id, "task": "timeline" }));
    assert_eq!(finished(&server, run)["status"], "done");
    let calls = fake.calls();
    let spent = server.app.gateway().journal().spent_today().unwrap();
    assert!(calls > 0 && spent > 0.0);
    let body = json!({ "video": id, "task": "ask", "question": "what colour is it?",
                       "sampling": { "max_frames": 5, "width": 256 } });
    let (status, _, answer) = send(server.client().post(server.url("/v1/plan")).json(&body));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&answer));
    let plan = json_of(&answer);
    assert_eq!(plan["chain"], json!(["fake"]), "{plan}");
    assert_eq!(plan["provider"], "fake", "{plan}");
    assert_eq!(plan["frames"], 5, "{plan}");
    assert_eq!(plan["fits"], true, "{plan}");
    let calls_planned = plan["calls"].as_u64().unwrap();
    assert!(calls_planned >= 5, "{plan}");
    let usd = plan["estimated_usd"].as_f64().unwrap();
    assert!((usd - calls_planned as f64 * UNIT_USD).abs() < 1e-9, "{plan}");
    assert_eq!(plan["candidates"][0]["provider"], "fake", "{plan}");
    assert_eq!(fake.calls(), calls, "a plan calls no provider");
    assert_eq!(server.app.gateway().journal().spent_today().unwrap(), spent, "a plan spends nothing");
    // A bad body is the same 400 as for a run.
    let (status, _, answer) =
        send(server.client().post(server.url("/v1/plan")).json(&json!({ "video": id, "task": "ask" })));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&answer)["error"]["param"], "question");
}

const PROVIDER_KEY: &str = "sk-provider-key-value-7f3a9c";

#[test]
fn providers_show_protocol_models_price_and_breaker_never_a_key() {
    let mut c = config("fake");
    c.providers.insert(
        "cloud".into(),
        ProviderProfile {
            protocol: Some(Protocol::Openai),
            base_url: Some(format!("https://user:{PROVIDER_KEY}@api.example.com/v1?key={PROVIDER_KEY}")),
            api_key_env: Some("VIDGATE_TEST_PROVIDERS_KEY".into()),
            model: Some("gpt-4o-mini".into()),
            price: Some(serde_json::from_value(json!({ "input_per_mtok": 0.15, "output_per_mtok": 0.6 })).unwrap()),
            ..ProviderProfile::default()
        },
    );
    // The key is set, so a listing that showed it would show its value.
    std::env::set_var("VIDGATE_TEST_PROVIDERS_KEY", PROVIDER_KEY);
    let (server, _) = fake_server(c);
    let (status, _, body) = send(server.client().get(server.url("/v1/providers")));
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(!text.contains(PROVIDER_KEY), "a key in {text}");
    let list = json_of(&body);
    let find = |id: &str| list["data"].as_array().unwrap().iter().find(|p| p["id"] == id).cloned().unwrap();
    let cloud = find("cloud");
    assert_eq!(cloud["protocol"], "openai", "{cloud}");
    assert_eq!(cloud["model"], "gpt-4o-mini", "{cloud}");
    assert_eq!(cloud["price"]["input_per_mtok"], 0.15, "{cloud}");
    assert_eq!(cloud["in_chain"], false, "{cloud}");
    assert_eq!(cloud["breaker"]["state"], "closed", "{cloud}");
    assert!(cloud["base_url"].as_str().unwrap().contains("api.example.com"), "{cloud}");
    let fake = find("fake");
    assert_eq!((fake["in_chain"].clone(), fake["protocol"].clone()), (json!(true), json!("openai")), "{fake}");
    // Builtin profiles are listed too, with their catalogue of models.
    assert!(list["data"].as_array().unwrap().len() > 2, "{list}");
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(server: &Server) -> String {
    let (status, headers, body) = send(client_with(&server.admin_key).get(server.url("/metrics")));
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(headers["content-type"].to_str().unwrap().contains("openmetrics-text"));
    String::from_utf8(body).unwrap()
}

#[test]
fn metrics_count_calls_spend_latency_and_show_an_open_breaker() {
    let (server, fake) = with_fake();
    // Admin keys only.
    let (status, _, _) = send(server.client().get(server.url("/metrics")));
    assert_eq!(status, StatusCode::FORBIDDEN);
    let id = upload(&server, &testsrc_10s());
    let run = submit(&server, &server.client(), &json!({ "video": id, "task": "timeline" }));
    let report = &finished(&server, run)["report"];
    let calls = fake.calls();
    assert_eq!(report["attempts"].as_array().unwrap().len(), calls);
    let text = scrape(&server);
    assert_eq!(metric(&text, r#"vidgate_calls_total{provider="fake",outcome="ok"}"#), Some(calls as f64), "{text}");
    assert_eq!(metric(&text, r#"vidgate_call_latency_seconds_count{provider="fake"}"#), Some(calls as f64), "{text}");
    let spent = calls as f64 * UNIT_USD;
    let total = metric(&text, "vidgate_spend_usd_total").unwrap();
    let by_provider = metric(&text, r#"vidgate_provider_spend_usd_total{provider="fake"}"#).unwrap();
    assert!((total - spent).abs() < 1e-9 && (by_provider - spent).abs() < 1e-9, "{text}");
    assert_eq!(metric(&text, r#"vidgate_runs_finished_total{state="done"}"#), Some(1.0), "{text}");
    assert_eq!(metric(&text, "vidgate_queue_length"), Some(0.0), "{text}");
    assert_eq!(metric(&text, r#"vidgate_breaker_open{provider="fake"}"#), Some(0.0), "{text}");

    // A provider that fails every call: its breaker opens.
    let mut e = ProviderError::new("down", ErrorClass::FallBack, "HTTP 500: overloaded");
    e.status = Some(500);
    let down = Arc::new(scripted("down").with_fallback(Step::Fail(e)));
    let failing = Server::start(config("down"), vec![("down", down.clone() as Arc<dyn Provider>)]);
    let id = upload(&failing, &testsrc_10s());
    let run = submit(&failing, &failing.client(), &json!({ "video": id, "task": "timeline" }));
    assert_eq!(finished(&failing, run)["status"], "failed");
    let text = scrape(&failing);
    assert_eq!(metric(&text, r#"vidgate_breaker_open{provider="down"}"#), Some(1.0), "{text}");
    assert!(metric(&text, r#"vidgate_breaker_cooldown_seconds{provider="down"}"#).unwrap() > 0.0, "{text}");
    assert_eq!(metric(&text, r#"vidgate_runs_finished_total{state="failed"}"#), Some(1.0), "{text}");
    let failed = metric(&text, r#"vidgate_calls_total{provider="down",outcome="fell_back"}"#).unwrap_or(0.0)
        + metric(&text, r#"vidgate_calls_total{provider="down",outcome="transient"}"#).unwrap_or(0.0);
    assert_eq!(failed, down.calls() as f64, "{text}");
    let (_, _, body) = send(failing.client().get(failing.url("/v1/providers")));
    let list = json_of(&body);
    let listed = list["data"].as_array().unwrap().iter().find(|p| p["id"] == "down").unwrap();
    assert_eq!(listed["breaker"]["state"], "open", "{listed}");

    // A reload that removes the provider: its breaker's gauges go with it.
    failing.app.reload(config("other")).unwrap();
    let text = scrape(&failing);
    assert_eq!(metric(&text, r#"vidgate_breaker_open{provider="down"}"#), None, "{text}");
    assert_eq!(metric(&text, r#"vidgate_breaker_open{provider="other"}"#), Some(0.0), "{text}");
}

#[test]
fn retention_removes_old_uploads_and_forgets_old_reports_but_not_unfinished_runs() {
    let mut c = config("fake");
    c.server.keep_uploads_hours = 1.0;
    c.server.keep_reports_days = 1.0;
    c.server.max_concurrent_runs = 2;
    let fake = Arc::new(scripted("fake").with_fallback(Step::Delay(Duration::from_millis(300), Box::new(answer("x")))));
    let server = Server::start(c, vec![("fake", fake.clone() as Arc<dyn Provider>)]);
    let clip = testsrc_10s();
    let (old_video, idle_video, busy_video) = (upload(&server, &clip), upload(&server, &clip), upload(&server, &clip));
    let done = submit(&server, &server.client(), &json!({ "video": old_video, "task": "timeline" }));
    assert_eq!(finished(&server, done)["status"], "done");
    // Nothing is old yet.
    let swept = block_on(retention::sweep(&server.app, SystemTime::now())).unwrap();
    assert_eq!((swept.uploads.len(), swept.runs.len()), (0, 0), "{swept:?}");
    let busy = submit(&server, &server.client(), &json!({ "video": busy_video, "task": "timeline" }));
    // Two days on: the uploads and the finished run are gone; the running run and its video stay.
    let later = SystemTime::now() + Duration::from_secs(2 * 86_400);
    let swept = block_on(retention::sweep(&server.app, later)).unwrap();
    assert_eq!(swept.runs, vec![done], "{swept:?}");
    let left: Vec<String> =
        uploads_in(&server).iter().map(|p| p.file_stem().unwrap().to_string_lossy().to_string()).collect();
    assert_eq!(left, vec![busy_video.clone()], "{swept:?}");
    assert!(swept.uploads.iter().any(|p| p.to_string_lossy().contains(&idle_video)), "{swept:?}");
    let (status, _, _) = send(server.client().get(server.url(&format!("/v1/runs/{done}"))));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(server.app.runs.get(busy).is_some());
    let kept = server.app.gateway().journal().recent_runs(0).unwrap();
    assert!(kept.iter().all(|r| r.id != done), "the journal still serves run {done}: {kept:?}");
    assert_eq!(finished(&server, busy)["status"], "done");
    // The sweep interval follows the shortest retention.
    assert_eq!(retention::interval(&server.app), Duration::from_secs(1800));
}

#[test]
fn twenty_clients_at_once_each_get_their_own_report_and_each_unit_is_paid_once() {
    let (server, fake) = with_fake();
    let id = upload(&server, &testsrc_10s());
    let clients: Vec<reqwest::Client> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                server.client()
            } else {
                let made = server
                    .app
                    .gateway()
                    .journal()
                    .create_key(&vidgate::journal::NewKey { name: format!("client-{i}"), ..Default::default() })
                    .unwrap();
                client_with(made.key.expose())
            }
        })
        .collect();
    let submitted: Vec<(String, i64)> = block_on(async {
        let all = clients.iter().enumerate().map(|(i, client)| {
            let question = format!("what happens in clip {i}?");
            let body = json!({ "video": id, "task": "ask", "question": question,
                               "sampling": { "max_frames": 4, "width": 128 } });
            let request = client.post(server.url("/v1/runs")).json(&body);
            async move {
                let r = request.send().await.unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                (question, r.json::<Value>().await.unwrap()["id"].as_i64().unwrap())
            }
        });
        futures_util::future::join_all(all).await
    });
    // Each run needs the same units (frames of one video; the question only
    // in its last call): the first to need a unit pays, the others read it
    // back from the journal.
    for ((_, run), client) in submitted.iter().zip(&clients) {
        finished_as(&server, client, *run);
    }
    let jobs = fake.jobs();
    let mut total = 0;
    let mut units = None;
    for (i, ((question, run), client)) in submitted.iter().zip(&clients).enumerate() {
        let body = finished_as(&server, client, *run);
        // Another client's key neither reads nor lists it, nor its report,
        // events or cancelling; an admin key does.
        let other = &clients[(i + 1) % clients.len()];
        for path in ["", "/report.json", "/events"] {
            let (status, _, _) = send(other.get(server.url(&format!("/v1/runs/{run}{path}"))));
            assert_eq!(status, StatusCode::NOT_FOUND, "run {run}{path} read by another key");
        }
        let (status, _, _) = send(other.delete(server.url(&format!("/v1/runs/{run}"))));
        assert_eq!(status, StatusCode::NOT_FOUND, "run {run} cancelled by another key");
        let (_, _, listed) = send(other.get(server.url("/v1/runs")));
        let listed: Vec<i64> =
            json_of(&listed)["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert!(!listed.contains(run), "run {run} listed for another key: {listed:?}");
        let admin = client_with(&server.admin_key);
        assert_eq!(send(admin.get(server.url(&format!("/v1/runs/{run}")))).0, StatusCode::OK);
        assert_eq!((&body["status"], &body["id"]), (&json!("done"), &json!(run)), "{body}");
        let held = server.app.runs.get(*run).unwrap();
        assert!(matches!(&held.request.task, Task::Ask { question: q } if q == question), "{:?}", held.request);
        let report = &body["report"];
        assert!(report["answer"].as_str().is_some_and(|a| !a.is_empty()), "{report}");
        let attempts = report["attempts"].as_array().unwrap();
        assert!(attempts.iter().all(|a| a["outcome"]["kind"] == "ok"), "{report}");
        let cost = report["usage"]["cost_usd"].as_f64().unwrap();
        assert!((cost - attempts.len() as f64 * UNIT_USD).abs() < 1e-9, "{report}");
        let needed = attempts.len() as u64 + report["reused_units"].as_u64().unwrap();
        assert_eq!(*units.get_or_insert(needed), needed, "every run needs as many units: {report}");
        // This run's own question went to the provider once.
        let asked = jobs.iter().filter(|j| matches!(&j.task, Task::Ask { question: q } if q == question)).count();
        assert_eq!(asked, 1, "{question}: {report}");
        total += attempts.len();
    }
    assert!(units.unwrap() >= 5, "4 frames and the answer");
    // No unit was bought twice.
    let mut seen = std::collections::BTreeSet::new();
    for job in &jobs {
        let unit = format!("{}|{:?}", job.prompt, job.input.frames_span());
        assert!(seen.insert(unit.clone()), "paid twice: {unit}");
    }
    assert_eq!(fake.calls(), total);
    let ids: std::collections::BTreeSet<i64> = submitted.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 20);
}

#[test]
fn a_client_gone_mid_upload_leaves_no_file() {
    let (server, _) = with_fake();
    let dir = server.app.server.uploads_dir();
    let key = server.key.clone();
    let addr = server.addr;
    let mut socket = block_on(async move {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let boundary = "vidgate-test-boundary";
        let head = format!(
            "POST /v1/videos HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: 50000000\r\n\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\
             content-type: video/mp4\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        socket.flush().await.unwrap();
        socket
    });
    // The upload is being written ...
    eventually("the upload starts", || std::fs::read_dir(&dir).is_ok_and(|d| d.count() == 1));
    block_on(async { socket.write_all(&vec![7u8; 1 << 16]).await.unwrap() });
    // ... and the client goes away.
    drop(socket);
    eventually("the partial upload is removed", || std::fs::read_dir(&dir).is_ok_and(|d| d.count() == 0));
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let mut c = config("fake");
    c.server.max_concurrent_runs = 1;
    c.server.queue_length = 1;
    let slow = Step::Delay(Duration::from_secs(30), Box::new(answer("x")));
    let fake = Arc::new(scripted("fake").with_fallback(slow));
    let server = Server::start(c, vec![("fake", fake.clone() as Arc<dyn Provider>)]);
    let id = upload(&server, &testsrc_10s());
    let body = json!({ "video": id, "task": "timeline" });
    let first = submit(&server, &server.client(), &body);
    eventually("the first run works", || server.app.runs.get(first).is_some_and(|r| r.state().name() == "running"));
    let second = submit(&server, &server.client(), &body);
    let (status, headers, answer) = send(server.client().post(server.url("/v1/runs")).json(&body));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&answer));
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let error = json_of(&answer);
    assert_eq!(error["error"]["code"], "queue_full", "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("server.queue_length"), "{error}");
    assert_eq!(server.app.runs.get(second).unwrap().state().name(), "queued");
    for run in [second, first] {
        let (status, _, _) = send(server.client().delete(server.url(&format!("/v1/runs/{run}"))));
        assert_eq!(status, StatusCode::OK);
    }
}

/// Multipart `file` with `bytes`, to `/v1/videos`.
fn upload_bytes(server: &Server, bytes: Vec<u8>) -> (StatusCode, Value) {
    let boundary = "vidgate-test-boundary";
    let mut form =
        format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\r\n")
            .into_bytes();
    form.extend(bytes);
    form.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let request = server.client().post(server.url("/v1/videos"));
    let request = request.header("content-type", format!("multipart/form-data; boundary={boundary}"));
    let (status, _, body) = send(request.body(form));
    (status, json_of(&body))
}

#[test]
fn uploads_are_bounded_by_the_servers_cap_not_a_framework_default() {
    let mut c = config("fake");
    c.server.max_upload_bytes = 5 << 20;
    let (server, _) = fake_server(c);
    // 3 MB is taken whole (and refused for what it is, not for its size) ...
    let (status, body) = upload_bytes(&server, vec![7u8; 3 << 20]);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a video"), "{body}");
    // ... 6 MB passes the cap.
    let (status, body) = upload_bytes(&server, vec![7u8; 6 << 20]);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "upload_too_large", "{body}");
    assert!(uploads_in(&server).is_empty(), "{:?}", uploads_in(&server));
}

/// On a shared journal, an instance that finds its run taken over by
/// another (its lease ran out while it could not renew it) stops working on
/// it, forgets it and records nothing: the other instance ends it.
#[test]
fn a_run_another_instance_took_over_is_let_go_unrecorded() {
    let Some(url) = crate::util::pg_database() else { return };
    let slow = Step::Delay(Duration::from_secs(30), Box::new(answer("slow {time}")));
    let fake = Arc::new(scripted("fake").with_fallback(slow));
    let journal = vidgate::journal::Journal::connect(&url, None, 2).unwrap();
    let server = Server::start_on(config("fake"), vec![("fake", fake.clone() as Arc<dyn Provider>)], journal);
    let video = upload(&server, &testsrc_10s());
    let id = submit(&server, &server.client(), &json!({"video": video, "task": "describe"}));
    eventually("the run starts calling", || fake.calls() > 0);
    let other = vidgate::journal::Journal::connect(&url, None, 1).unwrap();
    other.set_run_owner(id, None, "another instance").unwrap();
    let until = Instant::now() + Duration::from_secs(25);
    while server.app.runs.get(id).is_some() {
        assert!(Instant::now() < until, "the instance never noticed it lost the run");
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = fake.calls();
    std::thread::sleep(Duration::from_secs(5));
    assert!(fake.calls() <= calls + 1, "it went on calling: {calls} then {}", fake.calls());
    let view = other.run_view(id).unwrap().unwrap();
    assert_eq!((view.status.as_str(), view.outcome), ("running", None), "nothing recorded by the old holder");
}

/// A run the service does not hold is served from the journal only on a
/// shared database, and only a service's: a command line run in the same
/// journal file is nobody's business over HTTP.
#[test]
fn a_command_line_run_in_the_journal_file_is_not_served() {
    let (server, _) = with_fake();
    let journal = vidgate::journal::Journal::open(&server.journal_path()).unwrap();
    let id = journal.start_run(&vidgate::schema::VideoRequest::new("/home/me/private.mp4", Task::Describe)).unwrap();
    let (status, _, body) = send(server.client().get(server.url(&format!("/v1/runs/{id}"))));
    assert_eq!(status, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&body));
}
