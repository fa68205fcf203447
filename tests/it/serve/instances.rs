//! Three `vidgate serve` processes on one PostgreSQL journal behave as one
//! service: 24 runs submitted round-robin, one instance `kill -9`ed
//! mid-run. Every run ends (done, or refused by the shared daily cap), the
//! dead instance's runs are taken over and finished by the others, nothing
//! is paid twice but the calls under way at the kill, the daily cap (half
//! of what all runs would cost) is never passed, and the provider, which
//! allows 60 requests a minute across all callers, never answers 429.
//!
//! The provider is a local HTTP fake in the recorded shape of OpenAI's chat
//! completions; the database is a real PostgreSQL (`scripts/with-postgres.sh`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::kill::{form, start};
use crate::util::{block_on, pg_database, testsrc_10s};

/// One call: 1000 input tokens at $1/M and 50 output tokens at $2/M.
const CALL_USD: f64 = 0.0011;
const RUNS: usize = 24;
/// What every run would cost: six calls each (five frames one by one, each
/// run's at a width of its own, and the answer), 144 calls in all; half of
/// that, what the cap lets through, is more than the provider's minute.
const ALL_RUNS_USD: f64 = RUNS as f64 * 6.0 * CALL_USD;

/// What the provider saw: the calls it billed per unit (what it was
/// asked, hashed), the times of the calls it took, and the 429s it gave.
#[derive(Default)]
struct Seen {
    billed: BTreeMap<String, usize>,
    taken: Vec<Instant>,
    refused: usize,
}

/// 60 requests in any minute, whoever sends them; each answered after `delay`.
struct SixtyPerMinute(Arc<Mutex<Seen>>, Duration);

impl Respond for SixtyPerMinute {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "not JSON"}}));
        };
        let now = Instant::now();
        let mut seen = self.0.lock().unwrap();
        seen.taken.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if seen.taken.len() >= 60 {
            seen.refused += 1;
            return ResponseTemplate::new(429).insert_header("retry-after", "2").set_body_json(json!({
                "error": {"message": "Rate limit reached for requests per minute: Limit 60", "type": "requests",
                          "param": null, "code": "rate_limit_exceeded"}
            }));
        }
        seen.taken.push(now);
        // A unit is what was asked: the messages, pictures included.
        let unit = hex::encode(&Sha256::digest(body["messages"].to_string().as_bytes())[..6]);
        *seen.billed.entry(unit.clone()).or_default() += 1;
        ResponseTemplate::new(200).set_body_json(crate::openai::completion(&unit)).set_delay(self.1)
    }
}

/// The fake provider, answering after `delay`, and what it sees.
fn provider(delay: Duration) -> (MockServer, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = block_on(async {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(SixtyPerMinute(seen.clone(), delay))
            .mount(&fake)
            .await;
        fake
    });
    (fake, seen)
}

fn write_config(dir: &Path, url: &str, fake: &MockServer, port: u16, cap: f64, slots: u32) -> std::path::PathBuf {
    let file = dir.join(format!("vidgate-{port}.toml"));
    let text = format!(
        "[journal]\nurl = {url:?}\npool_size = 4\nvideos_dir = {videos:?}\n\n\
         [budget]\nmax_usd_per_day = {cap}\n\n[router]\nchain = [\"fake\"]\n\n\
         [server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nshutdown_grace_s = 1\nmax_concurrent_runs = {slots}\n\n\
         [providers.fake]\nprotocol = \"openai\"\nbase_url = \"{base}/v1\"\napi_key_env = \"VIDGATE_KILL_PROVIDER_KEY\"\n\
         model = \"fake-vision\"\nframes_per_call = 1\n\
         [providers.fake.limits]\nmax_concurrency = 2\nrequests_per_minute = 60\n\
         [providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
        videos = dir.join("videos"),
        data = dir.join("uploads"),
        base = fake.uri(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// A new API key in the database at `url`: with keys there, every instance asks for one.
fn new_key(url: &str) -> String {
    let url = url.to_string();
    std::thread::spawn(move || {
        let journal = vidgate::journal::Journal::connect(&url, None, 1).unwrap();
        let new = vidgate::journal::NewKey { name: "instances-test".into(), ..Default::default() };
        journal.create_key(&new).unwrap().key.expose().to_string()
    })
    .join()
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The status of every run, read from `base`.
async fn statuses(client: &reqwest::Client, base: &str, ids: &[i64]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        let body = match client.get(format!("{base}/v1/runs/{id}")).send().await {
            Ok(r) => r.json().await.unwrap_or(json!({"status": "unreadable"})),
            Err(e) => json!({"status": "unreachable", "error": e.to_string()}),
        };
        out.push(body);
    }
    out
}

#[test]
fn three_instances_on_postgres_behave_as_one_through_a_kill_9() {
    let Some(url) = pg_database() else { return };
    let (fake, seen) = provider(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let cap = ALL_RUNS_USD / 2.0;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    let mut instances: Vec<Option<std::process::Child>> = ports
        .iter()
        .zip(&bases)
        .map(|(port, base)| Some(start(&write_config(dir.path(), &url, &fake, *port, cap, 3), base)))
        .collect();
    let client = super::client_with(&new_key(&url));

    // Round-robin: run i goes to instance i % 3, each on a video uploaded there.
    let ids: Vec<i64> = block_on(async {
        let video = std::fs::read(testsrc_10s()).unwrap();
        let mut uploads = Vec::new();
        for base in &bases {
            let (kind, body) = form("clip.mp4", &video);
            let r = client.post(format!("{base}/v1/videos")).header("content-type", kind).body(body).send().await?;
            uploads.push(r.json::<Value>().await?["id"].clone());
        }
        let mut ids = Vec::new();
        for i in 0..RUNS {
            let sampling = json!({"mode": {"kind": "fps", "fps": 0.5}, "max_frames": 64, "width": 128 + 8 * i});
            let question = format!("Question {i}: what moves?");
            let body = json!({"video": uploads[i % 3], "task": "ask", "question": question, "sampling": sampling});
            let r = client.post(format!("{}/v1/runs", bases[i % 3])).json(&body).send().await?;
            let submitted: Value = r.json().await?;
            ids.push(submitted["id"].as_i64().unwrap_or_else(|| panic!("run {i}: {submitted}")));
        }
        Ok::<_, reqwest::Error>(ids)
    })
    .unwrap();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), RUNS, "one id space across instances: {ids:?}");

    // Mid-run: a dozen calls answered, then instance 1 dies without a word.
    let waited = Instant::now();
    while seen.lock().unwrap().billed.values().sum::<usize>() < 12 {
        assert!(waited.elapsed() < Duration::from_secs(120), "the runs never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut victim = instances[1].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let at_kill: Vec<Value> = block_on(statuses(&client, &bases[0], &ids));
    let unfinished_of_victim: Vec<i64> = ids
        .iter()
        .zip(&at_kill)
        .enumerate()
        .filter(|(i, (_, s))| i % 3 == 1 && (s["status"] == "running" || s["status"] == "queued"))
        .map(|(_, (id, _))| *id)
        .collect();
    assert!(!unfinished_of_victim.is_empty(), "the killed instance had no run under way: {at_kill:?}");

    // Every run ends; the living instances serve each run's status, whoever held it.
    let finals = block_on(async {
        let started = Instant::now();
        loop {
            let now: Vec<Value> = statuses(&client, &bases[(started.elapsed().as_secs() % 2 * 2) as usize], &ids).await;
            if now.iter().all(|s| s["status"] == "done" || s["status"] == "failed") {
                return now;
            }
            if started.elapsed() > Duration::from_secs(300) {
                panic!("runs never ended: {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // Each living instance lists every run, whichever instance held it.
    for base in [&bases[0], &bases[2]] {
        let listed: Value =
            block_on(async { client.get(format!("{base}/v1/runs")).send().await?.json().await }).unwrap();
        let mut listed: Vec<(i64, String)> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["status"].as_str().unwrap().to_string()))
            .collect();
        listed.sort_unstable();
        let mut expected: Vec<(i64, String)> =
            ids.iter().zip(&finals).map(|(id, s)| (*id, s["status"].as_str().unwrap().to_string())).collect();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{base} lists another set of runs");
    }
    for child in instances.iter_mut().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let seen = seen.lock().unwrap();
    let done = finals.iter().filter(|s| s["status"] == "done").count();
    let summary = format!(
        "{done} done of {RUNS}; {} calls billed; taken over: {unfinished_of_victim:?}; finals: {finals:?}",
        seen.billed.values().sum::<usize>()
    );
    eprintln!("{summary}");
    assert!(done > 0, "{summary}");
    for s in finals.iter().filter(|s| s["status"] == "failed") {
        let error = s["error"].as_str().unwrap_or_default();
        assert!(error.contains("budget") || error.contains("cap"), "failed for another reason than the cap: {s}");
    }
    // The dead instance's unfinished runs were finished (or refused by the cap) by the others.
    for id in &unfinished_of_victim {
        let i = ids.iter().position(|x| x == id).unwrap();
        assert!(finals[i]["status"] == "done" || finals[i]["status"] == "failed", "{id}: {}", finals[i]);
    }
    assert_eq!(seen.refused, 0, "the provider's 60 requests a minute were passed: {summary}");
    // Nothing paid twice, but the calls under way at the kill (at most the
    // dead instance's two, each asked again once by its new instance).
    let twice: Vec<_> = seen.billed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 2 && twice.iter().all(|(_, n)| **n == 2), "paid twice: {twice:?}; {summary}");
    // The shared daily cap holds across the three: the provider's bill and the ledger.
    let billed_usd = seen.billed.values().sum::<usize>() as f64 * CALL_USD;
    assert!(billed_usd <= cap + 1e-9, "billed ${billed_usd} over the cap ${cap}: {summary}");
    let ledger =
        std::thread::spawn(move || vidgate::journal::Journal::connect(&url, None, 1).unwrap().spent_today().unwrap())
            .join()
            .unwrap();
    assert!(ledger <= cap + 1e-9, "the ledger says ${ledger}, over the cap ${cap}");
    assert!(ledger >= billed_usd - 2.0 * CALL_USD - 1e-9, "the ledger ${ledger} misses calls billed ${billed_usd}");
}

/// A full instance's queued runs go to an instance with room: instance A
/// (one slot) is given four runs, instance B (two slots) none. B takes the
/// runs A offers, each run is worked on by one instance, nothing is paid
/// twice, and A's readers of a run B took (its status, its event stream)
/// see it end.
#[test]
fn an_instance_with_room_takes_the_runs_a_full_one_queues() {
    let Some(url) = pg_database() else { return };
    let (fake, seen) = provider(Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port) = (free_port(), free_port());
    let (a, b) = (format!("http://127.0.0.1:{a_port}"), format!("http://127.0.0.1:{b_port}"));
    let mut children = [
        start(&write_config(dir.path(), &url, &fake, a_port, 10.0, 1), &a),
        start(&write_config(dir.path(), &url, &fake, b_port, 10.0, 2), &b),
    ];
    let client = super::client_with(&new_key(&url));
    let (ids, streams) = block_on(async {
        let video = std::fs::read(testsrc_10s()).unwrap();
        let (kind, body) = form("clip.mp4", &video);
        let r = client.post(format!("{a}/v1/videos")).header("content-type", kind).body(body).send().await?;
        let upload = r.json::<Value>().await?["id"].clone();
        let mut ids = Vec::new();
        for i in 0..4 {
            let sampling = json!({"mode": {"kind": "fps", "fps": 0.5}, "max_frames": 64, "width": 96 + 8 * i});
            let body =
                json!({"video": upload, "task": "ask", "question": format!("Question {i}?"), "sampling": sampling});
            let submitted: Value = client.post(format!("{a}/v1/runs")).json(&body).send().await?.json().await?;
            ids.push(submitted["id"].as_i64().unwrap_or_else(|| panic!("run {i}: {submitted}")));
        }
        // The runs waiting in A's queue: their event streams, opened on A.
        let mut streams = Vec::new();
        for id in &ids[1..] {
            streams.push(client.get(format!("{a}/v1/runs/{id}/events")).send().await?);
        }
        Ok::<_, reqwest::Error>((ids, streams))
    })
    .unwrap();
    let finals = block_on(async {
        let started = Instant::now();
        loop {
            let now = statuses(&client, &a, &ids).await;
            if now.iter().all(|s| s["status"] == "done" || s["status"] == "failed") {
                return now;
            }
            assert!(started.elapsed() < Duration::from_secs(240), "runs never ended: {now:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let events: Vec<String> = block_on(async {
        let mut texts = Vec::new();
        for stream in streams {
            let text = tokio::time::timeout(Duration::from_secs(60), stream.text()).await;
            texts.push(text.expect("an event stream on A never ended").unwrap());
        }
        texts
    });
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(finals.iter().all(|s| s["status"] == "done"), "{finals:?}");
    for text in &events {
        assert!(text.contains("event: end") && text.contains(r#""status":"done""#), "{text}");
    }
    let owners: Vec<(i64, String)> = std::thread::spawn(move || {
        let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let rows = db.query("SELECT id, owner FROM runs ORDER BY id", &[]).unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    })
    .join()
    .unwrap();
    let by_b = owners.iter().filter(|(_, owner)| owner.contains(&format!("127.0.0.1:{b_port}"))).count();
    assert!(by_b >= 1, "B, idle, took none of A's queued runs: {owners:?}");
    eprintln!("B took {by_b} of A's 4 runs");
    let seen = seen.lock().unwrap();
    let twice: Vec<_> = seen.billed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "paid twice: {twice:?}");
    assert_eq!(seen.billed.len(), 4 * 6, "six calls a run: {:?}", seen.billed);
}
