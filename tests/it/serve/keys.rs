//! API keys: every request needs one, admin routes need an admin key, a key
//! pays from its own daily cap and keeps to its rate, and no key is ever
//! echoed or logged.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use vidgate::gateway::Account;
use vidgate::journal::Journal;
use vidgate::schema::{Task, VideoRequest};
use vidgate::serve::runs::Submission;
use vidgate::serve::RunState;

use super::{client_with, with_fake, Server};
use crate::util::{block_on, vidgate};

/// Status and JSON body of a GET with `client`.
fn get(client: &reqwest::Client, url: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    block_on(async {
        let r = client.get(url).send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.text().await.unwrap())
    })
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A key made by the server's admin over HTTP: (key, its record).
fn make_key(server: &Server, body: Value) -> (String, Value) {
    let (status, text) = block_on(async {
        let r = client_with(&server.admin_key).post(server.url("/v1/keys")).json(&body).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    });
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let record = json(&text);
    (record["key"].as_str().unwrap().to_string(), record)
}

fn assert_auth_error(status: StatusCode, body: &str, code: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let body = json(body);
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[test]
fn every_request_needs_a_known_key_except_health_and_the_page() {
    let (server, _) = with_fake();
    let anonymous = reqwest::Client::new();
    let (status, _, body) = get(&anonymous, &server.url("/v1/runs/1"));
    assert_auth_error(status, &body, "missing_api_key");
    // An unknown route is no way around it.
    let (status, _, body) = get(&anonymous, &server.url("/v1/nothing-here"));
    assert_auth_error(status, &body, "missing_api_key");
    let wrong = format!("{}0", server.key);
    let (status, _, body) = get(&client_with(&wrong), &server.url("/v1/runs/1"));
    assert_auth_error(status, &body, "invalid_api_key");
    assert!(!body.contains(&wrong) && !body.contains(&server.key[3..20]), "the key is not echoed: {body}");
    // Health and the page are public.
    assert_eq!(get(&anonymous, &server.url("/healthz")).0, StatusCode::OK);
    assert_ne!(get(&anonymous, &server.url("/")).0, StatusCode::UNAUTHORIZED);
    assert_ne!(get(&anonymous, &server.url("/assets/app.js")).0, StatusCode::UNAUTHORIZED);
    // The right key passes, as a bearer token or in x-api-key: no such run.
    assert_eq!(get(&server.client(), &server.url("/v1/runs/999999")).0, StatusCode::NOT_FOUND);
    let by_header = block_on(async {
        reqwest::Client::new().get(server.url("/v1/runs/999999")).header("x-api-key", &server.key).send().await
    })
    .unwrap();
    assert_eq!(by_header.status(), StatusCode::NOT_FOUND);
}

#[test]
fn key_management_and_metrics_need_an_admin_key() {
    let (server, _) = with_fake();
    for path in ["/v1/keys", "/metrics"] {
        let (status, _, body) = get(&server.client(), &server.url(path));
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(json(&body)["error"]["code"], "admin_key_required", "{body}");
    }
    let refused = block_on(async {
        server.client().post(server.url("/v1/keys")).json(&json!({"name": "sneaky", "admin": true})).send().await
    })
    .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let (key, record) = make_key(&server, json!({"name": "app1", "max_usd_per_day": 5.0, "requests_per_minute": 60}));
    assert!(key.starts_with("vg-"), "{record}");
    assert_eq!((record["name"].clone(), record["max_usd_per_day"].clone()), (json!("app1"), json!(5.0)));
    assert_eq!(get(&client_with(&key), &server.url("/v1/runs/999999")).0, StatusCode::NOT_FOUND, "the new key works");
    let (status, _, listed) = get(&client_with(&server.admin_key), &server.url("/v1/keys"));
    assert_eq!(status, StatusCode::OK, "{listed}");
    let names: Vec<Value> = json(&listed)["data"].as_array().unwrap().iter().map(|k| k["name"].clone()).collect();
    assert_eq!(names, [json!("test-client"), json!("test-admin"), json!("app1")]);
    for secret in [&key, &server.key, &server.admin_key] {
        assert!(!listed.contains(&secret[3..]), "a listing never holds a key: {listed}");
    }
    // A second live key of the same name is refused.
    let again = block_on(async {
        client_with(&server.admin_key).post(server.url("/v1/keys")).json(&json!({"name": "app1"})).send().await
    })
    .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

#[test]
fn a_revoked_key_is_refused_at_its_next_request_over_http_and_from_the_command_line() {
    let (server, _) = with_fake();
    let (first, record) = make_key(&server, json!({"name": "first"}));
    let (second, _) = make_key(&server, json!({"name": "second"}));
    let url = server.url("/v1/runs/999999");
    assert_eq!(get(&client_with(&first), &url).0, StatusCode::NOT_FOUND);
    let revoked = block_on(async {
        let id = record["id"].as_str().unwrap();
        client_with(&server.admin_key).delete(server.url(&format!("/v1/keys/{id}"))).send().await
    })
    .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let (status, _, body) = get(&client_with(&first), &url);
    assert_auth_error(status, &body, "invalid_api_key");

    // Another process (the CLI) revokes the second key in the same journal.
    assert_eq!(get(&client_with(&second), &url).0, StatusCode::NOT_FOUND);
    let dir = tempfile::tempdir().unwrap();
    let out = vidgate()
        .args(["keys", "revoke", "second", "--config"])
        .arg(config_file(dir.path(), &server.journal_path()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _, body) = get(&client_with(&second), &url);
    assert_auth_error(status, &body, "invalid_api_key");
    // The others still pass.
    assert_eq!(get(&server.client(), &url).0, StatusCode::NOT_FOUND);
}

#[test]
fn a_keys_rate_is_counted_across_instances_of_a_shared_journal() {
    let Some(url) = crate::util::pg_database() else { return };
    let journal = || vidgate::journal::Journal::connect(&url, None, 2).unwrap();
    let one = super::Server::start_on(super::config("fake"), vec![], journal());
    let two = super::Server::start_on(super::config("fake"), vec![], journal());
    let (key, _) = make_key(&one, json!({"name": "shared-slow", "requests_per_minute": 2}));
    let client = client_with(&key);
    let (a, b) = (one.url("/v1/runs/999999"), two.url("/v1/runs/999999"));
    assert_eq!(get(&client, &a).0, StatusCode::NOT_FOUND);
    assert_eq!(get(&client, &b).0, StatusCode::NOT_FOUND);
    for url in [&a, &b] {
        let (status, headers, body) = get(&client, url);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "two a minute in all, whichever instance: {body}");
        assert!(headers.contains_key("retry-after"));
    }
}

#[test]
fn a_key_over_its_rate_is_answered_429_with_retry_after() {
    let (server, _) = with_fake();
    let (key, _) = make_key(&server, json!({"name": "slow", "requests_per_minute": 2}));
    let url = server.url("/v1/runs/999999");
    let client = client_with(&key);
    assert_eq!(get(&client, &url).0, StatusCode::NOT_FOUND);
    assert_eq!(get(&client, &url).0, StatusCode::NOT_FOUND);
    let (status, headers, body) = get(&client, &url);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let error = &json(&body)["error"];
    assert_eq!(
        (error["type"].clone(), error["code"].clone()),
        (json!("rate_limit_error"), json!("rate_limit_exceeded"))
    );
    assert!(!body.contains(&key[3..]), "{body}");
    // Another key is not held back by this one's rate.
    for _ in 0..3 {
        assert_eq!(get(&server.client(), &url).0, StatusCode::NOT_FOUND);
    }
}

/// The account of the key named `name`, as the service resolves it.
fn account(journal: &Path, name: &str) -> Account {
    let journal = Journal::open(journal).unwrap();
    let key = journal.list_keys().unwrap().into_iter().find(|k| k.name == name && k.revoked_unix_s.is_none()).unwrap();
    Account { id: key.id, max_usd_per_day: key.max_usd_per_day }
}

fn spent_today(journal: &Path, account: &str) -> f64 {
    Journal::open(journal).unwrap().account_spent_today(account).unwrap()
}

/// A 6 s clip of the lavfi pattern `source`: each its own video, so no run
/// reuses another's units from the journal.
fn clip(source: &str) -> std::path::PathBuf {
    crate::util::x264_clip(&format!("keys-{source}.mp4"), &format!("{source}=duration=6:size=160x120:rate=10"), &[])
}

fn run(server: &Server, account: &Account, video: &Path) -> (i64, RunState) {
    let request = VideoRequest::new(video, Task::Timeline);
    let run = block_on(server.app.runs.submit(Submission { request, account: Some(account.clone()) })).unwrap();
    (run.id, block_on(run.finished()))
}

#[test]
fn a_key_over_its_daily_budget_is_refused_before_any_call() {
    let (server, fake) = with_fake();
    let journal = server.journal_path();
    make_key(&server, json!({"name": "rich", "max_usd_per_day": 10.0}));
    let (broke_key, _) = make_key(&server, json!({"name": "broke", "max_usd_per_day": 1.0}));
    // A key with room runs, and its spend is counted on it.
    let rich = account(&journal, "rich");
    let (_, state) = run(&server, &rich, &clip("testsrc"));
    assert_eq!(state.name(), "done", "{state:?}");
    let calls = fake.calls();
    assert!(calls > 0);
    let spent = spent_today(&journal, &rich.id);
    assert!((spent - calls as f64 * super::UNIT_USD).abs() < 1e-9, "{spent} for {calls} calls");
    // The other key spent its dollar today already (in another run).
    let broke = account(&journal, "broke");
    Journal::open(&journal).unwrap().queue_spend_for("elsewhere", 1.0, Some(&broke.id));
    // Its plan says so, spending nothing; the gateway's own plan fits.
    let request = VideoRequest::new(clip("testsrc2"), Task::Timeline);
    assert!(block_on(server.app.gateway().plan(&request)).unwrap().fits);
    assert!(!block_on(server.app.gateway().plan_for(&request, Some(&broke))).unwrap().fits);
    let (id, state) = run(&server, &broke, &clip("testsrc2"));
    let RunState::Failed { http_status, error, .. } = &state else { panic!("refused: {state:?}") };
    assert_eq!(*http_status, 402, "{error}");
    assert_eq!(fake.calls(), calls, "the provider got no call");
    assert!((spent_today(&journal, &broke.id) - 1.0).abs() < 1e-9, "nothing more was spent");
    let (status, _, body) = get(&client_with(&broke_key), &server.url(&format!("/v1/runs/{id}")));
    assert_eq!(status, StatusCode::OK);
    assert_eq!((json(&body)["status"].clone(), json(&body)["http_status"].clone()), (json!("failed"), json!(402)));
}

#[test]
fn two_parallel_runs_of_one_key_cannot_pass_its_cap() {
    let (server, fake) = with_fake();
    let journal = server.journal_path();
    // What one run costs, measured on a key without a cap.
    make_key(&server, json!({"name": "free"}));
    let (_, state) = run(&server, &account(&journal, "free"), &clip("testsrc"));
    assert_eq!(state.name(), "done", "{state:?}");
    let one_run = fake.calls() as f64 * super::UNIT_USD;
    // Room for one and a half runs: both plans fit alone, not together.
    let cap = one_run * 1.5;
    make_key(&server, json!({"name": "capped", "max_usd_per_day": cap}));
    let capped = account(&journal, "capped");
    let states: Vec<RunState> = block_on(async {
        let submit = |a: &Account, video: std::path::PathBuf| {
            let request = VideoRequest::new(video, Task::Timeline);
            server.app.runs.submit(Submission { request, account: Some(a.clone()) })
        };
        let (a, b) =
            (submit(&capped, clip("testsrc2")).await.unwrap(), submit(&capped, clip("smptebars")).await.unwrap());
        let (a, b) = tokio::join!(a.finished(), b.finished());
        vec![a, b]
    });
    let spent = spent_today(&journal, &capped.id);
    assert!(spent <= cap + 1e-9, "spent {spent} of a {cap} cap: {states:?}");
    // The second got what was left: it failed, or was lowered or cut short, and says so.
    let whole = |s: &RunState| matches!(s, RunState::Done { report } if report.warnings.is_empty());
    assert!(!states.iter().all(whole), "two whole runs do not fit: {states:?}");
    assert!(spent > 0.0, "one of them worked");
}

/// A config file naming `journal`.
fn config_file(dir: &Path, journal: &Path) -> std::path::PathBuf {
    let path = dir.join("vidgate.toml");
    std::fs::write(&path, format!("[journal]\npath = {journal:?}\n")).unwrap();
    path
}

#[test]
fn keys_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    let config = config_file(dir.path(), &journal);
    let keys = |args: &[&str]| {
        let out = vidgate().arg("keys").args(args).arg("--config").arg(&config).output().unwrap();
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (ok, stdout, stderr) =
        keys(&["create", "--name", "app1", "--max-usd-per-day", "5", "--requests-per-minute", "60"]);
    assert!(ok, "{stderr}");
    let key = stdout.trim().to_string();
    assert!(
        key.starts_with("vg-") && key.len() == 67 && stdout.lines().count() == 1,
        "only the key on stdout: {stdout}"
    );
    assert!(stderr.contains("only time") && !stderr.contains(&key), "a hint, without the key: {stderr}");
    let (ok, _, stderr) = keys(&["create", "--name", "app1"]);
    assert!(!ok && stderr.contains("app1") && stderr.contains("exists already"), "{stderr}");
    let (ok, _, stderr) = keys(&["create", "--name", "x", "--max-usd-per-day=-1"]);
    assert!(!ok && stderr.contains("max_usd_per_day"), "{stderr}");
    let (ok, admin, _) = keys(&["create", "--name", "ops", "--admin"]);
    assert!(ok);

    // Money spent on app1's runs today shows in the listing.
    let record = account(&journal, "app1");
    Journal::open(&journal).unwrap().queue_spend_for("fake", 0.25, Some(&record.id));
    let (ok, listed, stderr) = keys(&["list", "--json"]);
    assert!(ok, "{stderr}");
    let listed = json(&listed);
    let app1 = &listed[0];
    assert_eq!(app1["name"], "app1");
    assert_eq!((app1["max_usd_per_day"].clone(), app1["requests_per_minute"].clone()), (json!(5.0), json!(60)));
    assert_eq!((app1["spent_today_usd"].clone(), app1["admin"].clone()), (json!(0.25), json!(false)));
    assert_eq!((listed[1]["name"].clone(), listed[1]["admin"].clone()), (json!("ops"), json!(true)));
    let (ok, text, _) = keys(&["list"]);
    assert!(ok && text.contains("app1") && text.contains("0.2500") && text.contains("ops"), "{text}");
    for shown in [listed.to_string(), text] {
        assert!(!shown.contains(&key[3..]) && !shown.contains(&admin.trim()[3..]), "never a key: {shown}");
    }

    let (ok, stdout, stderr) = keys(&["revoke", "app1"]);
    assert!(ok && stdout.contains(&record.id), "{stdout}{stderr}");
    let (_, listed, _) = keys(&["list", "--json"]);
    assert!(json(&listed)[0]["revoked_unix_s"].is_i64(), "{listed}");
    let (ok, _, stderr) = keys(&["revoke", "app1"]);
    assert!(!ok && stderr.contains("no key"), "{stderr}");
    // The journal keeps hashes only.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&key[3..]), "a key in a file");
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn keys_never_appear_in_the_served_binary_logs() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.sqlite3");
    let config = config_file(dir.path(), &journal);
    let client_key = {
        let out = vidgate().args(["keys", "create", "--name", "app1", "--config"]).arg(&config).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let admin_key = "vg-admin-from-env-0123456789abcdef";
    let port = free_port();
    let mut child = vidgate()
        .args(["serve", "-vvv", "--bind", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .env("VIDGATE_LOG", "trace")
        .env("VIDGATE_ADMIN_KEY", admin_key)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let answered = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        block_on(reqwest::Client::new().get(format!("{base}/healthz")).send()).is_ok()
    });
    let wrong = format!("{client_key}f");
    let made = answered.then(|| {
        assert_eq!(get(&client_with(&client_key), &format!("{base}/v1/runs/1")).0, StatusCode::NOT_FOUND);
        assert_eq!(get(&client_with(&wrong), &format!("{base}/v1/runs/1")).0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&client_with(&client_key), &format!("{base}/v1/keys")).0, StatusCode::FORBIDDEN);
        // The environment's admin key manages keys.
        let (status, _, listed) = get(&client_with(admin_key), &format!("{base}/v1/keys"));
        assert_eq!(status, StatusCode::OK, "{listed}");
        let made = block_on(async {
            client_with(admin_key)
                .post(format!("{base}/v1/keys"))
                .json(&json!({"name": "app2"}))
                .send()
                .await?
                .json::<Value>()
                .await
        })
        .unwrap();
        made["key"].as_str().unwrap().to_string()
    });
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);
    let made = made.unwrap_or_else(|| panic!("the server never answered: {logs}"));
    // The requests were logged, by key id and name.
    assert!(logs.contains("app1") && logs.contains("request refused"), "{logs}");
    for key in [client_key.as_str(), wrong.as_str(), admin_key, made.as_str()] {
        assert!(!logs.contains(&key[3..]), "a key in the logs: {logs}");
    }
}
