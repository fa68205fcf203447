//! Runs per minute of 1, 2 and 3 `vidgate serve` processes on one
//! PostgreSQL journal, against a provider of fixed latency: the same 24
//! runs each time (a question each about a 10 s clip, five frames one by
//! one at a width of its own, then the answer: six calls), submitted
//! round-robin. Each instance takes 2 runs at a time and makes 2 calls at a
//! time, so one instance is bound by the provider's latency, and
//! instances add up as long as the journal keeps up (issue 15's goal:
//! 3 instances at least 2.7 times 1).
//!
//! PostgreSQL: `VIDGATE_BENCH_PG_URL`, else a server of its own
//! (`scripts/with-postgres.sh --print`). The binary is the one this bench
//! is built with (`cargo bench` builds it in release).
//!
//! `cargo bench --no-default-features --bench instances [-- --latency-ms N --runs N]`

#[path = "support/pg_server.rs"]
mod pg_server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn arg(name: &str, default: u64) -> u64 {
    std::env::args().skip_while(|a| a != name).nth(1).map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let latency = Duration::from_millis(arg("--latency-ms", 1000));
    let runs = arg("--runs", 24) as usize;
    println!("load average at the start: {}", load_average());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = rt.block_on(async {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion()).set_delay(latency))
            .mount(&fake)
            .await;
        fake
    });
    let server = pg_server::PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", "testsrc=duration=10:size=320x240:rate=10", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success());
    println!(
        "provider latency {} ms, {runs} runs of 6 calls, 2 runs and 2 calls at a time per instance",
        latency.as_millis()
    );
    let mut per_minute = Vec::new();
    for n in 1..=3usize {
        let url = server.database(&format!("vidgate_bench_instances_{n}"));
        let work = dir.path().join(format!("n{n}"));
        let (rate, elapsed) = rt.block_on(measure(n, runs, &url, &work, &fake.uri(), &clip));
        println!("  {n} instance(s): {runs} runs in {:.1} s: {rate:.1} runs/min", elapsed.as_secs_f64());
        per_minute.push(rate);
    }
    println!(
        "speed-up: 2 instances {:.2}x, 3 instances {:.2}x (goal: 3 instances >= 2.7x)",
        per_minute[1] / per_minute[0],
        per_minute[2] / per_minute[0]
    );
    println!("load average at the end: {}", load_average());
}

/// `n` instances on the database at `url` do `runs` runs: runs per minute
/// from the first submission to the last run's end.
async fn measure(n: usize, runs: usize, url: &str, work: &Path, fake: &str, clip: &Path) -> (f64, Duration) {
    std::fs::create_dir_all(work).unwrap();
    let key = {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || {
            let journal = vidgate::journal::Journal::connect(&url, None, 1).unwrap();
            let new = vidgate::journal::NewKey { name: "bench".into(), ..Default::default() };
            journal.create_key(&new).unwrap().key.expose().to_string()
        })
        .await
        .unwrap()
    };
    let mut children: Vec<Child> = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..n {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = work.join(format!("vidgate-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "[journal]\nurl = {url:?}\nvideos_dir = {videos:?}\n\n[router]\nchain = [\"fake\"]\n\n\
                 [server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nmax_concurrent_runs = 2\n\n\
                 [providers.fake]\nprotocol = \"openai\"\nbase_url = \"{fake}/v1\"\napi_key_env = \"VIDGATE_BENCH_KEY\"\n\
                 model = \"fake-vision\"\nframes_per_call = 1\n[providers.fake.limits]\nmax_concurrency = 2\n\
                 [providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
                videos = work.join("videos"),
                data = work.join("uploads"),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vidgate"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("VIDGATE_BENCH_KEY", "sk-bench")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        children.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    let client = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    };
    for base in &bases {
        let started = Instant::now();
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "{base} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let video = std::fs::read(clip).unwrap();
    let mut uploads = Vec::new();
    for base in &bases {
        let part = reqwest::multipart::Part::bytes(video.clone()).file_name("clip.mp4").mime_str("video/mp4").unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let r: Value =
            client.post(format!("{base}/v1/videos")).multipart(form).send().await.unwrap().json().await.unwrap();
        uploads.push(r["id"].clone());
    }
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..runs {
        let sampling = json!({"mode": {"kind": "fps", "fps": 0.5}, "max_frames": 64, "width": 128 + 8 * i});
        let body =
            json!({"video": uploads[i % n], "task": "ask", "question": format!("Question {i}?"), "sampling": sampling});
        let r: Value =
            client.post(format!("{}/v1/runs", bases[i % n])).json(&body).send().await.unwrap().json().await.unwrap();
        ids.push((i % n, r["id"].as_i64().unwrap_or_else(|| panic!("{r}"))));
    }
    loop {
        let mut over = 0;
        for (at, id) in &ids {
            let r: Value =
                client.get(format!("{}/v1/runs/{id}", bases[*at])).send().await.unwrap().json().await.unwrap();
            match r["status"].as_str() {
                Some("done") => over += 1,
                Some("failed") => panic!("run {id} failed: {r}"),
                _ => {}
            }
        }
        if over == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    (runs as f64 / elapsed.as_secs_f64() * 60.0, elapsed)
}

/// A chat completion in the recorded shape.
fn completion() -> Value {
    json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_730_000_000, "model": "fake-vision-2026-01-01",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "a test pattern moves", "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
}
