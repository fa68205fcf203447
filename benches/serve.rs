//! The service's overhead: latency of `GET /v1/runs/{id}` against reading
//! the registry directly, at 1 and 50 concurrent requests, and requests per
//! second of the same route while 8 runs are busy. Scripted providers, a
//! tiny clip made with ffmpeg, everything in process over loopback.
//!
//! `cargo bench --no-default-features --bench serve`

use std::sync::Arc;
use std::time::{Duration, Instant};

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{Capabilities, Provider};
use vidgate::schema::{Task, Usage, VideoRequest};
use vidgate::serve::runs::Submission;
use vidgate::serve::App;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

fn app(dir: &std::path::Path, delay: Duration) -> App {
    let mut config = Config::builtin().unwrap();
    config.providers.insert("fake".into(), ProviderProfile { protocol: Some(Protocol::Openai), ..Default::default() });
    config.router.chain = vec!["fake".into()];
    config.server.data_dir = Some(dir.join("uploads"));
    config.server.max_concurrent_runs = 8;
    let answer = Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: 0.0 },
    };
    let fake = ScriptedProvider::new("fake")
        .with_capabilities(Capabilities { max_images_per_call: 1, max_inline_bytes: 1 << 30, ..Default::default() })
        .with_fallback(Step::Delay(delay, Box::new(answer)));
    let journal = Journal::open(&dir.join("journal.sqlite3")).unwrap();
    App::new(Gateway::with_journal(config, journal).with_provider("fake", Arc::new(fake) as Arc<dyn Provider>))
}

fn clip(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=4:size=160x120:rate=10"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success(), "ffmpeg made the clip");
    path
}

async fn serve(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = vidgate::serve::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies of `n` GETs of `url`, `concurrency` at a time.
async fn latencies(client: &reqwest::Client, url: &str, n: usize, concurrency: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url) = (client.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..n / concurrency {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                let _ = r.bytes().await.unwrap();
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

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let clip = clip(dir.path());
    let app = app(dir.path(), Duration::from_millis(50));
    let base = serve(&app).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();

    let run =
        app.runs.submit(Submission { request: VideoRequest::new(&clip, Task::Timeline), account: None }).await.unwrap();
    let t = Instant::now();
    run.finished().await;
    println!("one run of the 4 s clip (40 frames, 50 ms a call), in process: {:?}", t.elapsed());
    let url = format!("{base}/v1/runs/{}", run.id);

    let direct = {
        let t = Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(serde_json::to_vec(&app.runs.get(run.id).unwrap().state()).unwrap());
        }
        t.elapsed() / 10_000
    };
    println!("\n{:<44}{:>12}{:>12}", "GET /v1/runs/{id} (done run, with report)", "p50", "p99");
    println!("{:<44}{:>12?}{:>12}", "direct: registry lookup + JSON", direct, "");
    let _ = latencies(&client, &url, 500, 50).await; // warm the pool
    for concurrency in [1, 50] {
        let l = latencies(&client, &url, 5_000, concurrency).await;
        println!("{:<44}{:>12?}{:>12?}", format!("HTTP, {concurrency} concurrent"), pct(&l, 0.5), pct(&l, 0.99));
    }

    let mut busy = Vec::new();
    for _ in 0..8 {
        busy.push(
            app.runs
                .submit(Submission { request: VideoRequest::new(&clip, Task::Describe), account: None })
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let l = latencies(&client, &url, 5_000, 50).await;
    let rps = l.len() as f64 / t.elapsed().as_secs_f64();
    let (running, _) = app.runs.load();
    println!(
        "\nGET /v1/runs/{{id}} while {running} runs are busy: {rps:.0} requests/s (50 concurrent; p99 {:?})",
        pct(&l, 0.99)
    );
    for r in busy {
        app.runs.cancel(r.id);
    }
}
