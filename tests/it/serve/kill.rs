//! `kill -9` of the real binary mid-run, then a start on the same journal:
//! the run finishes under its id and no unit finished before the kill is
//! paid again. The provider is a local HTTP fake in the recorded shape of
//! OpenAI's chat completions, which counts the calls it bills per unit.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::journal::{Journal, NewKey};

use crate::util::{block_on, testsrc_10s, vidgate};

/// The provider key the fake expects; never the service's API key.
pub(super) const PROVIDER_KEY: &str = "sk-vidgate-kill-test-2c9d";
/// One call: 1000 input tokens at $1/M and 50 output tokens at $2/M.
const CALL_USD: f64 = 0.0011;

/// Answers each call after `delay`, in the recorded shape (1000 input and
/// 50 output tokens), with the unit it was asked about (the
/// frame's time, or `merge` for a text call), and counts the calls per unit.
#[derive(Clone, Default)]
struct Billing {
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Billing {
    fn counts(&self) -> BTreeMap<String, usize> {
        self.calls.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.counts().values().sum()
    }
}

struct Slow(Billing, Duration);

impl Respond for Slow {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "not JSON"}}));
        };
        let parts = body["messages"].as_array().into_iter().flatten().flat_map(|m| match &m["content"] {
            Value::Array(parts) => parts.clone(),
            other => vec![json!({"type": "text", "text": other})],
        });
        let frames: Vec<String> = parts
            .filter_map(|p| p["text"].as_str().and_then(|t| t.strip_prefix("Frame at ")).map(str::to_string))
            .map(|t| t.trim_end_matches(':').to_string())
            .collect();
        let unit = if frames.is_empty() { "merge".to_string() } else { frames.join(",") };
        *self.0.calls.lock().unwrap().entry(unit.clone()).or_default() += 1;
        ResponseTemplate::new(200).set_body_json(crate::openai::completion(&unit)).set_delay(self.1)
    }
}

fn write_config(dir: &Path, fake: &MockServer, port: u16) -> std::path::PathBuf {
    let file = dir.join("vidgate.toml");
    let text = format!(
        "[journal]\npath = {journal:?}\n\n[router]\nchain = [\"fake\"]\n\n\
         [server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nshutdown_grace_s = 1\n\n\
         [providers.fake]\nprotocol = \"openai\"\nbase_url = \"{base}/v1\"\napi_key_env = \"VIDGATE_KILL_PROVIDER_KEY\"\n\
         model = \"fake-vision\"\nframes_per_call = 1\n\
         [providers.fake.limits]\nmax_concurrency = 1\n\
         [providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
        journal = dir.join("journal.sqlite3"),
        data = dir.join("uploads"),
        base = fake.uri(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// The binary serving `config`, once it answers `/healthz`.
pub(super) fn start(config: &Path, base: &str) -> Child {
    let mut child = vidgate()
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("VIDGATE_KILL_PROVIDER_KEY", PROVIDER_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = block_on(async {
        for _ in 0..600 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    if !up {
        let _ = child.kill();
        panic!("the service never answered on {base}");
    }
    child
}

/// A multipart form with the one field `file`, written by hand.
pub(super) fn form(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "vidgate-kill-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The units the journal holds, by the unit the fake was asked about (its answer's text).
fn units_in_journal(journal: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(journal).unwrap();
    let mut stmt = db.prepare("SELECT record FROM units").unwrap();
    let records: Vec<String> = stmt.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect();
    records
        .iter()
        .flat_map(|r| {
            let v: Value = serde_json::from_str(r).unwrap();
            v["observations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["text"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn spent(journal: &Path) -> f64 {
    Journal::open(journal).unwrap().spent_today().unwrap()
}

#[test]
fn kill_9_mid_run_then_a_restart_finishes_the_run_and_pays_no_finished_unit_twice() {
    let billing = Billing::default();
    let fake = block_on(async {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(Slow(billing.clone(), Duration::from_millis(300)))
            .mount(&fake)
            .await;
        fake
    });
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), &fake, port);
    let journal = dir.path().join("journal.sqlite3");
    let key = Journal::open(&journal)
        .unwrap()
        .create_key(&NewKey { name: "kill-test".into(), max_usd_per_day: Some(5.0), ..NewKey::default() })
        .unwrap()
        .key
        .expose()
        .to_string();
    let client = super::client_with(&key);

    let mut first = start(&config, &base);
    let run_id = block_on(async {
        let (kind, body) = form("clip.mp4", &std::fs::read(testsrc_10s()).unwrap());
        let r = client.post(format!("{base}/v1/videos")).header("content-type", kind).body(body).send().await?;
        let upload: Value = r.json().await?;
        let sampling = json!({"mode": {"kind": "fps", "fps": 1.0}, "max_frames": 64, "width": 256});
        let body = json!({"video": upload["id"], "task": "describe", "sampling": sampling});
        let r = client.post(format!("{base}/v1/runs")).json(&body).send().await?;
        let submitted: Value = r.json().await?;
        Ok::<_, reqwest::Error>(submitted["id"].as_i64().unwrap_or_else(|| panic!("{upload} {submitted}")))
    })
    .unwrap();
    // One call at a time, 300 ms each: with the fourth call asked, three
    // units are answered and the run is far from done.
    let waited = std::time::Instant::now();
    while billing.total() < 4 {
        assert!(waited.elapsed() < Duration::from_secs(60), "the run never got going: {:?}", billing.counts());
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().unwrap(); // SIGKILL: no chance to clean up
    first.wait().unwrap();
    let before = billing.counts();
    let kept = units_in_journal(&journal);
    let spent_before = spent(&journal);
    assert!(!kept.is_empty(), "no unit was finished before the kill: {before:?}");
    assert!(kept.len() < 10, "the run was over before the kill: {kept:?}");

    let mut second = start(&config, &base);
    let body = block_on(async {
        for _ in 0..1200 {
            let body: Value = client.get(format!("{base}/v1/runs/{run_id}")).send().await?.json().await?;
            if body["status"] != "running" && body["status"] != "queued" {
                return Ok(body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, reqwest::Error>(json!({"status": "never finished"}))
    });
    let _ = second.kill();
    second.wait().unwrap();
    let body = body.unwrap();
    assert_eq!(body["status"], "done", "{body}");
    assert_eq!(body["id"], run_id, "{body}");
    assert_eq!(body["report"]["observations"].as_array().map(Vec::len), Some(10), "{body}");
    assert!(body["report"]["reused_units"].as_u64().unwrap() >= kept.len() as u64, "{body}");

    let after = billing.counts();
    for unit in &kept {
        assert_eq!(after.get(unit), Some(&1), "unit {unit} was finished before the kill and paid again: {after:?}");
    }
    assert_eq!(after.keys().filter(|k| *k != "merge").count(), 10, "every frame was asked for: {after:?}");
    // At most the call under way at the kill is asked again.
    let again: usize = after.values().map(|n| n - 1).sum();
    assert!(again <= 1, "before the kill: {before:?}; in all: {after:?}");
    // The restarted service wrote down what it paid, and only that.
    let calls_after = billing.total() - before.values().sum::<usize>();
    let spent_after = spent(&journal);
    let paid = spent_after - spent_before;
    assert!((paid - calls_after as f64 * CALL_USD).abs() < 1e-9, "{paid} for {calls_after} calls");
    // Before the kill, each unit kept was paid once (and at most the one
    // whose answer came just before the kill is paid but not kept).
    let units_paid = spent_before / CALL_USD;
    assert!(
        units_paid > kept.len() as f64 - 1e-6 && units_paid < kept.len() as f64 + 1.0 + 1e-6,
        "${spent_before} spent before the kill for {} units kept",
        kept.len()
    );
    assert!(spent_after <= billing.total() as f64 * CALL_USD + 1e-9, "{spent_after} for {after:?}");
}
