//! The service's overhead, scripted providers, tiny clips made with ffmpeg,
//! everything over loopback:
//!
//! 1. a whole run through HTTP (`POST /v1/runs`, then its event stream to
//!    the end) against the same run through `Gateway::run`, with the same
//!    provider (no delay), at 1 and 50 at once, in turns so that both meet
//!    the same load on the machine: the latency the service adds (and, in
//!    between, the same run through the service's registry without HTTP);
//! 2. `GET /v1/runs/{id}` against reading the registry directly;
//! 3. a 2 GiB upload, generated as it is sent, to the real binary, with the
//!    server's RSS read from `/proc/PID/status` while it goes;
//! 4. requests per second of `GET /v1/runs/{id}` while 8 runs are busy.
//!
//! The in-process server works on its own 2-worker runtime and the HTTP
//! client on another, so the client's work is not done by the server's
//! threads (on a 2-core machine they still share the cores).
//!
//! `cargo bench --no-default-features --bench serve`

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::{Journal, NewKey};
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{Capabilities, Provider};
use vidgate::schema::{SamplingMode, SamplingPlan, Task, Usage, VideoRequest};
use vidgate::serve::runs::Submission;
use vidgate::serve::App;

fn main() {
    // Other work on the machine shows in every figure: say how much there was.
    println!("load average at the start: {}", load_average());
    let server = runtime("server");
    let client = runtime("client");
    let dir = tempfile::tempdir().unwrap();
    run_latency(&server, &client, dir.path());
    let (app, base, key) = server.block_on(start(&dir.path().join("busy"), Duration::from_secs(2)));
    let four = clip(dir.path(), "four.mp4", 4);
    let done = route_latency((&server, &client), (&app, &base, &key), &four);
    busy_rps((&server, &client), (&app, &base, &key), &four, done);
    upload_rss(&client, 2 << 30);
    println!("\nload average at the end: {}", load_average());
}

/// The 1, 5 and 15 minute load averages of the machine.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The server's runtime and the client's.
type Runtimes<'a> = (&'a tokio::runtime::Runtime, &'a tokio::runtime::Runtime);

/// A service in process: its app, base URL and a client key.
type Service<'a> = (&'a App, &'a str, &'a str);

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build().unwrap()
}

/// A service whose one provider answers after `delay`, served on a free
/// port of the current runtime; its base URL and a client key.
async fn start(dir: &Path, delay: Duration) -> (App, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let mut config = Config::builtin().unwrap();
    config.providers.insert("fake".into(), ProviderProfile { protocol: Some(Protocol::Openai), ..Default::default() });
    config.router.chain = vec!["fake".into()];
    config.server.data_dir = Some(dir.join("uploads"));
    config.server.max_concurrent_runs = 64;
    config.server.queue_length = 64;
    let answer = Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: 0.0 },
    };
    let fake = ScriptedProvider::new("fake")
        .with_capabilities(Capabilities { max_images_per_call: 1, max_inline_bytes: 1 << 30, ..Default::default() })
        .with_fallback(Step::Delay(delay, Box::new(answer)));
    let journal = Journal::open(&dir.join("journal.sqlite3")).unwrap();
    let new = NewKey { name: "bench".into(), ..NewKey::default() };
    let key = journal.create_key(&new).unwrap().key.expose().to_string();
    let app =
        App::new(Gateway::with_journal(config, journal).with_provider("fake", Arc::new(fake) as Arc<dyn Provider>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = vidgate::serve::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, base, key)
}

fn clip(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=duration={seconds}:size=160x120:rate=10"))
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success(), "ffmpeg made the clip");
    path
}

fn client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).pool_max_idle_per_host(64).build().unwrap()
}

/// A multipart form of the one field `file`: its head, and its tail after the bytes.
fn form_parts(name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let boundary = "vidgate-bench-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), head.into_bytes(), tail.into_bytes())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies of `n` calls of `call`, `concurrency` at a time, on the current runtime.
async fn timed<F, Fut>(n: usize, concurrency: usize, call: F) -> Vec<Duration>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..n / concurrency {
                let t = Instant::now();
                call().await;
                out.push(t.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// Part 1: a run through HTTP against the same run through `Gateway::run`.
fn run_latency(server: &tokio::runtime::Runtime, client_rt: &tokio::runtime::Runtime, dir: &Path) {
    let (app, base, key) = server.block_on(start(&dir.join("runs"), Duration::ZERO));
    let client = client(&key);
    let short = clip(dir, "one.mp4", 1);
    let upload: Value = client_rt.block_on(async {
        let (kind, mut body, tail) = form_parts("one.mp4");
        body.extend(std::fs::read(&short).unwrap());
        body.extend(tail);
        let r = client.post(format!("{base}/v1/videos")).header("content-type", kind).body(body).send().await;
        r.unwrap().json().await.unwrap()
    });
    let id = upload["id"].as_str().unwrap_or_else(|| panic!("{upload}")).to_string();
    let sampling = SamplingPlan { mode: SamplingMode::Count { count: 2 }, range: None, max_frames: 2, width: 160 };
    let body = json!({ "video": id, "task": "describe", "sampling": sampling });
    let path = vidgate::serve::uploads::find(&app.server.uploads_dir(), &id).unwrap().path;
    let mut request = VideoRequest::new(path, Task::Describe);
    request.sampling = sampling;

    let direct = {
        let (gateway, request) = (app.gateway().clone(), request.clone());
        move || {
            let (gateway, request) = (gateway.clone(), request.clone());
            async move {
                gateway.run(request).await.unwrap();
            }
        }
    };
    // The service's own path without HTTP: its registry of runs.
    let registry = {
        let (app, request) = (app.clone(), request.clone());
        move || {
            let (app, request) = (app.clone(), request.clone());
            async move {
                let run = app.runs.submit(Submission { request, account: None }).await.unwrap();
                assert_eq!(run.finished().await.name(), "done");
            }
        }
    };
    let http = {
        let (client, base, body) = (client.clone(), base.clone(), body.clone());
        move || {
            let (client, base, body) = (client.clone(), base.clone(), body.clone());
            async move { http_run(&client, &base, &body).await }
        }
    };
    server.block_on(timed(20, 4, direct.clone()));
    client_rt.block_on(timed(20, 4, http.clone()));
    println!(
        "\n{:<40}{:>12}{:>12}{:>12}{:>12}{:>8}",
        "a run of a 1 s clip (2 frames, 2 calls)", "direct", "Runs", "HTTP", "added", "runs"
    );
    for (concurrency, rounds) in [(1, 200), (50, 10)] {
        // In turns, a round of each at a time: both meet the same load on the machine.
        let (mut d, mut r, mut h) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            d.extend(server.block_on(timed(concurrency, concurrency, direct.clone())));
            r.extend(server.block_on(timed(concurrency, concurrency, registry.clone())));
            h.extend(client_rt.block_on(timed(concurrency, concurrency, http.clone())));
        }
        d.sort();
        r.sort();
        h.sort();
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let (dp, hp) = (pct(&d, p), pct(&h, p));
            println!(
                "{:<40}{:>12}{:>12}{:>12}{:>12}{:>8}",
                format!("{concurrency} at once, {name}"),
                ms(dp),
                ms(pct(&r, p)),
                ms(hp),
                ms_signed(hp.as_secs_f64() - dp.as_secs_f64()),
                d.len()
            );
        }
    }
}

/// `POST /v1/runs` with `body`, then its event stream until the end event.
async fn http_run(client: &reqwest::Client, base: &str, body: &Value) {
    let r = client.post(format!("{base}/v1/runs")).json(body).send().await.unwrap();
    let submitted: Value = r.json().await.unwrap();
    let id = submitted["id"].as_i64().unwrap_or_else(|| panic!("{submitted}"));
    let mut events = client.get(format!("{base}/v1/runs/{id}/events")).send().await.unwrap();
    let mut last = Vec::new();
    while let Some(chunk) = events.chunk().await.unwrap() {
        last = chunk.to_vec();
    }
    let last = String::from_utf8_lossy(&last);
    assert!(last.contains("event: end") && last.contains("\"done\""), "{last}");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ms_signed(s: f64) -> String {
    format!("{:+.2} ms", s * 1e3)
}

/// Part 2: `GET /v1/runs/{id}` of a done run against reading the registry; the run's id.
fn route_latency((server, client_rt): Runtimes, (app, base, key): Service, clip: &Path) -> i64 {
    let run = server.block_on(async {
        let mut request = VideoRequest::new(clip, Task::Timeline);
        request.sampling.mode = SamplingMode::Count { count: 4 };
        let run = app.runs.submit(Submission { request, account: None }).await.unwrap();
        run.finished().await;
        run
    });
    let direct = {
        let t = Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(serde_json::to_vec(&app.runs.get(run.id).unwrap().state()).unwrap());
        }
        t.elapsed() / 10_000
    };
    println!("\n{:<48}{:>10}{:>10}", "GET /v1/runs/{id} (done run, with report)", "p50", "p99");
    println!("{:<48}{:>10?}{:>10}", "direct: registry lookup + JSON", direct, "");
    let get = get_call(&client(key), &format!("{base}/v1/runs/{}", run.id));
    client_rt.block_on(timed(500, 50, get.clone()));
    for concurrency in [1, 50] {
        let l = client_rt.block_on(timed(5_000, concurrency, get.clone()));
        println!("{:<48}{:>10?}{:>10?}", format!("HTTP, {concurrency} concurrent"), pct(&l, 0.5), pct(&l, 0.99));
    }
    run.id
}

fn get_call(
    client: &reqwest::Client,
    url: &str,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Clone {
    let (client, url) = (client.clone(), url.to_string());
    move || {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            let r = client.get(&url).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.bytes().await.unwrap();
        })
    }
}

/// Part 4: requests per second of `GET /v1/runs/{done}` while 8 runs are
/// busy (40 frames each, 2 s a call, 4 calls at a time: 20 s of work;
/// their frames differ from the done run's, so none is read back).
fn busy_rps((server, client_rt): Runtimes, (app, base, key): Service, clip: &Path, done: i64) {
    let busy: Vec<_> = server.block_on(async {
        let mut busy = Vec::new();
        for _ in 0..8 {
            let mut request = VideoRequest::new(clip, Task::Describe);
            request.sampling =
                SamplingPlan { mode: SamplingMode::Count { count: 40 }, range: None, max_frames: 40, width: 320 };
            busy.push(app.runs.submit(Submission { request, account: None }).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        busy
    });
    let (running_before, _) = app.runs.load();
    let get = get_call(&client(key), &format!("{base}/v1/runs/{done}"));
    let t = Instant::now();
    let l = client_rt.block_on(timed(10_000, 50, get));
    let rps = l.len() as f64 / t.elapsed().as_secs_f64();
    let (running_after, _) = app.runs.load();
    println!(
        "\nGET /v1/runs/{{id}} while {running_before} runs are busy ({running_after} at the end): \
         {rps:.0} requests/s (50 concurrent; p50 {:?}, p99 {:?})",
        pct(&l, 0.5),
        pct(&l, 0.99)
    );
    for r in busy {
        app.runs.cancel(r.id);
    }
}

/// A line of `/proc/PID/status`, in bytes (`VmRSS`, `VmHWM`).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Part 3: `bytes` uploaded to the real binary, made up as they are sent;
/// the server's RSS before and during it.
fn upload_rss(client_rt: &tokio::runtime::Runtime, bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("vidgate.toml");
    let journal = dir.path().join("journal.sqlite3");
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = {journal:?}\n[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n\
             max_upload_bytes = {}\n",
            dir.path().join("uploads"),
            bytes + (1 << 20)
        ),
    )
    .unwrap();
    let key = Journal::open(&journal)
        .unwrap()
        .create_key(&NewKey { name: "bench".into(), ..NewKey::default() })
        .unwrap()
        .key
        .expose()
        .to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vidgate"))
        .env_remove("VIDGATE_CONFIG")
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let client = client(&key);
    client_rt.block_on(async {
        for _ in 0..600 {
            if client.get(format!("{base}/healthz")).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service never answered");
    });
    let baseline = proc_status(pid, "VmRSS");
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(proc_status(pid, "VmRSS"), Ordering::SeqCst);
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };
    let (kind, head, tail) = form_parts("big.mp4");
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1 << 20]);
    let chunks = bytes / chunk.len() as u64;
    let body = futures_util::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain((0..chunks).map(move |_| chunk.clone()))
            .chain(std::iter::once(bytes::Bytes::from(tail)))
            .map(Ok::<_, std::io::Error>),
    );
    let t = Instant::now();
    let (status, answer) = client_rt.block_on(async {
        let r = client
            .post(format!("{base}/v1/videos"))
            .header("content-type", kind)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap_or_default())
    });
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();
    let hwm = proc_status(pid, "VmHWM");
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let left = std::fs::read_dir(dir.path().join("uploads")).map_or(0, |d| d.count());
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    println!(
        "\nupload of {} GiB to the binary in {took:.1?} ({:.0} MB/s), answered {status} \
         ({}; {left} files left in the uploads dir)",
        bytes >> 30,
        bytes as f64 / 1e6 / took.as_secs_f64(),
        answer.chars().take(100).collect::<String>()
    );
    println!("{:<48}{:>12}", "server RSS before", mb(baseline));
    println!("{:<48}{:>12}", format!("server RSS, highest of {samples} samples"), mb(peak.load(Ordering::SeqCst)));
    println!("{:<48}{:>12}", "server RSS, peak of the process (VmHWM)", mb(hwm));
}
