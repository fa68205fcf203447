//! Gateway benchmarks: what vidgate's provider stack adds to a plain HTTP call,
//! whether frame-by-frame fan-out reaches its concurrency, and whether the rate
//! limiter stays inside a real-API-like quota while still using it.
//!
//! ```text
//! cargo bench --no-default-features --bench gateway -- overhead|fanout|limiter|ledger [--quick]
//! ```
//!
//! Each mode runs its arms side by side in one process against a local fake
//! Chat Completions server and prints markdown tables, the goal next to each
//! measured figure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use vidgate::config::{Config, ImageDetail, MediaLimits, Price, Protocol, ProviderProfile, RateLimits, SamplingConfig};
use vidgate::journal::Journal;
use vidgate::media::{self, Extraction, Frame, FrameData, FrameFormat};
use vidgate::policy::{self, AttemptLog, Budget, SharedLedger};
use vidgate::provider::openai_compat::OpenAiCompat;
use vidgate::provider::{Job, JobInput, Provider, ProviderError};
use vidgate::schema::{SamplingMode, SamplingPlan, Task};

fn main() {
    // `cargo bench` appends `--bench`; the mode is the first other word.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match args.iter().find(|a| !a.starts_with("--")).map(String::as_str) {
        Some("overhead") => rt.block_on(overhead(quick)),
        Some("fanout") => rt.block_on(fanout(quick)),
        Some("limiter") => rt.block_on(limiter(quick)),
        Some("ledger") => ledger(quick),
        _ => {
            eprintln!(
                "usage: cargo bench --no-default-features --bench gateway -- overhead|fanout|limiter|ledger [--quick]"
            );
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- fake server

/// One answer of the fake: status, extra headers, JSON body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

type Handler = Arc<dyn Fn(&[u8]) -> Reply + Send + Sync>;

/// A fake Chat Completions server: bare hyper HTTP/1.1, any path, the whole
/// body read before answering (as a real server must), an optional fixed
/// latency. It runs on its own single-threaded runtime in its own thread, so
/// its work is never queued behind the client's tasks, equally for every arm.
/// Returns the base URL and a gauge of the most requests in flight at once.
fn start_fake(handler: Handler, latency: Duration) -> (String, Arc<AtomicUsize>) {
    let (peak, (tx, rx)) = (Arc::new(AtomicUsize::new(0)), std::sync::mpsc::channel());
    let gauge = peak.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the fake's runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("an address")).expect("the bench waits");
            let in_flight = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let _ = sock.set_nodelay(true);
                let (handler, in_flight, peak) = (handler.clone(), in_flight.clone(), gauge.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (handler, in_flight, peak) = (handler.clone(), in_flight.clone(), peak.clone());
                    async move {
                        peak.fetch_max(in_flight.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                        let body = req.into_body().collect().await?.to_bytes();
                        if !latency.is_zero() {
                            tokio::time::sleep(latency).await;
                        }
                        let reply = handler(&body);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let response =
                            hyper::Response::builder().status(reply.status).header("content-type", "application/json");
                        let response =
                            reply.headers.into_iter().fold(response, |r, (name, value)| r.header(name, value));
                        Ok::<_, hyper::Error>(response.body(Full::new(reply.body)).expect("a valid response"))
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
                tokio::spawn(async move { connection.await.ok() });
            }
        });
    });
    (format!("http://{}", rx.recv().expect("the fake started")), peak)
}

/// A chat completion in the shape the real API answers (as tests/it/openai.rs).
fn completion(prompt_tokens: u64, completion_tokens: u64) -> Bytes {
    let body = json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_730_000_000, "model": "fake-vision-2026-01-01",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "A test pattern with coloured bars and a moving square.",
                     "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_bench"
    });
    Bytes::from(body.to_string())
}

fn answer_always(body: Bytes) -> Handler {
    Arc::new(move |_: &[u8]| Reply { status: 200, headers: Vec::new(), body: body.clone() })
}

// ---------------------------------------------------------------- vidgate side

fn profile(base: &str, limits: RateLimits, detail: ImageDetail) -> ProviderProfile {
    let price = Some(Price {
        input_per_mtok: 2.5,
        output_per_mtok: 10.0,
        cached_input_per_mtok: None,
        audio_input_per_mtok: None,
    });
    let (protocol, base_url, model) = (Some(Protocol::Openai), Some(format!("{base}/v1")), Some("fake-vision".into()));
    ProviderProfile { protocol, base_url, model, price, detail: Some(detail), limits, ..ProviderProfile::default() }
}

/// The full standard stack (Retry > Budgeted > RateLimited > Timeout > backend)
/// with a budget that never binds, so only the policies' own cost shows.
fn stack(profile: &ProviderProfile) -> Arc<dyn Provider> {
    let config = Config::default();
    let backend = Arc::new(OpenAiCompat::from_profile("fake", profile, &config).expect("the profile builds"));
    policy::standard_stack(backend, profile, &config, Budget::new(1e9), AttemptLog::default())
}

fn job(frame: &Frame, pts_ms: u64, max_output_tokens: u32) -> Job {
    let input = JobInput::Frames(Arc::from(vec![Frame { pts_ms, ..frame.clone() }]));
    let prompt = "Describe this frame in one sentence.".into();
    Job { task: Task::Describe, input, prompt, prompt_version: "frame@1".into(), max_output_tokens, span: None }
}

/// A flat grey 512x288 JPEG frame, where the pixels do not matter.
fn grey_frame() -> Frame {
    let jpeg = encode_jpeg(&vec![128u8; 512 * 288 * 3], 512, 288, 85);
    Frame { index: 0, pts_ms: 0, width: 512, height: 288, data: FrameData::Jpeg(jpeg.into()) }
}

/// RGB frames 512 px wide, extracted by vidgate itself from a generated
/// 1280x720 clip with noise (so the JPEGs are not unrealistically small).
/// Without ffmpeg, a synthetic gradient with noise stands in.
async fn rgb_frames(count: u32) -> Vec<Frame> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let clip = dir.path().join("clip.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=4:size=1280x720:rate=30",
        ])
        .args(["-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        println!("(no ffmpeg here: synthetic frames)\n");
        // Gradients, a checkerboard and noise: a q85 JPEG of ~18 KiB, like the clip's frames.
        let pixel = |i: usize| {
            let (x, y, c, noise) = (i / 3 % 512, i / 1536, i % 3, (i.wrapping_mul(2_654_435_761) >> 7) % 44);
            ((x * (c + 1) + y * (3 - c)) / 3 + 40 * usize::from((x / 64 + y / 48) % 2 == 0) + noise).min(255) as u8
        };
        let rgb: Vec<u8> = (0..512 * 288 * 3).map(pixel).collect();
        return vec![Frame { data: FrameData::Rgb(rgb), ..grey_frame() }; count as usize];
    }
    let info = media::probe(&clip, &MediaLimits::default()).await.expect("probe");
    let plan = SamplingPlan { mode: SamplingMode::Count { count }, range: None, max_frames: count, width: 512 };
    let ex = Extraction::new(&info, &plan, &SamplingConfig::default(), FrameFormat::Rgb, Duration::from_secs(60))
        .expect("a plan");
    let (mut stream, mut frames) = (media::extract(ex).expect("extraction starts"), Vec::new());
    while let Some(frame) = stream.next().await {
        frames.push(frame.expect("a frame"));
    }
    frames
}

/// What `encode_jpeg` in src/media/extract.rs does (it is crate-private).
fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgb.len() / 8);
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(rgb, width as u16, height as u16, jpeg_encoder::ColorType::Rgb)
        .expect("the frame encodes");
    out
}

/// The request body for one frame around its base64, serialized from typed
/// structs as the backend's `translate::build_request` does (its structs are
/// crate-private): through serde's string escaping, which scans every byte of
/// the base64 (`escaped`, as each request once did), or with the base64
/// copied in unscanned, as the backend's body writer does (base64 needs no
/// escaping).
fn build_body(b64: &str, escaped: bool) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Part {
        Text { text: String },
        ImageUrl { image_url: ImageUrl },
    }
    #[derive(Serialize)]
    struct ImageUrl {
        url: String,
        detail: &'static str,
    }
    #[derive(Serialize)]
    struct Message {
        role: &'static str,
        content: Vec<Part>,
    }
    #[derive(Serialize)]
    struct Request {
        model: String,
        messages: Vec<Message>,
        max_tokens: u32,
    }
    const PREFIX: &str = "data:image/jpeg;base64,";
    let url = if escaped { format!("{PREFIX}{b64}") } else { String::new() };
    let content = vec![
        Part::Text { text: "Describe this frame in one sentence.".into() },
        Part::Text { text: "Frame at 00:00.000:".into() },
        Part::ImageUrl { image_url: ImageUrl { url, detail: "auto" } },
    ];
    let request =
        Request { model: "fake-vision".into(), messages: vec![Message { role: "user", content }], max_tokens: 300 };
    let body = serde_json::to_vec(&request).expect("serializes");
    if escaped {
        return body;
    }
    let at = body.windows(7).position(|w| w == b"\"url\":\"").expect("a url") + 7;
    let mut out = Vec::with_capacity(body.len() + PREFIX.len() + b64.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(PREFIX.as_bytes());
    out.extend_from_slice(b64.as_bytes());
    out.extend_from_slice(&body[at..]);
    out
}

// ---------------------------------------------------------------- ledger

/// What a call's budget bookkeeping costs with a daily cap: the reservation,
/// the spend recorded in the journal (as the spend hook does), the
/// settlement. One arm keeps the day's reservations in memory only (one
/// process), the other holds them in the journal file too (every process
/// that shares it), as the gateway does.
fn ledger(quick: bool) {
    let calls = if quick { 200 } else { 1000 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let journal = Arc::new(Journal::open(&dir.path().join("journal.sqlite3")).expect("a journal"));
    // The reservation is awaited, as the gateway does; settling it waits for
    // the journal off a runtime, so each call is measured whole.
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let arm = |budget: Budget| {
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let held = rt.block_on(budget.reserve(0.01)).expect("room");
            journal.record_spend("bench", 0.004).expect("recorded");
            held.reconcile(0.004);
            times.push(started.elapsed());
        }
        times.sort();
        times
    };
    let memory = arm(Budget::new(1e9));
    let ledger: Arc<dyn SharedLedger> = journal.clone();
    let shared = arm(Budget::new(1e9).shared(ledger));
    println!("## Budget bookkeeping per call ({calls} calls, journal on disk, synchronous=FULL)\n");
    println!("| arm | median ms | p99 ms |\n| --- | ---: | ---: |");
    for (name, t) in [("day held in memory (one process)", &memory), ("day held in the journal (shared)", &shared)] {
        println!("| {name} | {:.3} | {:.3} |", quantile_ms(t, 0.5), quantile_ms(t, 0.99));
    }
    let added = quantile_ms(&shared, 0.5) - quantile_ms(&memory, 0.5);
    println!("\nThe shared ledger adds {added:.3} ms a call (goal: under 5 ms, small beside any API call).");
}

// ---------------------------------------------------------------- statistics

/// The q-quantile of sorted samples, in milliseconds (nearest rank).
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    ms(sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time of every thread of this process so far (the fake's included), in
/// nanoseconds from the scheduler's accounting: what requests cost the machine.
fn cpu_time() -> Duration {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    let stats = tasks.filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok());
    Duration::from_nanos(stats.filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok()).sum())
}

fn verdict(ok: bool) -> &'static str {
    ["FAIL", "PASS"][usize::from(ok)]
}

// ---------------------------------------------------------------- 1. overhead

/// What the two arms use: the direct arm's client, URL and captured body; the stack and its job.
struct Arms {
    client: reqwest::Client,
    url: String,
    body: Bytes,
    stack: Arc<dyn Provider>,
    job: Job,
}

/// One request by one arm: a plain reqwest POST of the captured body whose
/// answer is parsed as JSON, or the same request through vidgate's stack.
async fn one(arms: &Arms, direct: bool) {
    if direct {
        let response = arms
            .client
            .post(&arms.url)
            .header("content-type", "application/json")
            .body(arms.body.clone())
            .send()
            .await
            .expect("sent")
            .error_for_status()
            .expect("a 200");
        let answer: Value = serde_json::from_slice(&response.bytes().await.expect("a body")).expect("JSON");
        std::hint::black_box(answer["choices"][0]["message"]["content"].as_str().map(str::len));
    } else {
        std::hint::black_box(arms.stack.run(&arms.job).await.expect("the stack answers"));
    }
}

/// `n` requests by `concurrency` workers; the latency of each.
async fn batch(arms: &Arc<Arms>, direct: bool, concurrency: usize, n: usize) -> Vec<Duration> {
    let (next, mut workers) = (Arc::new(AtomicUsize::new(0)), tokio::task::JoinSet::new());
    for _ in 0..concurrency {
        let (arms, next) = (arms.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let started = Instant::now();
                one(&arms, direct).await;
                latencies.push(started.elapsed());
            }
            latencies
        });
    }
    workers.join_all().await.concat()
}

async fn overhead(quick: bool) {
    let (rounds, per_round) = if quick { (4, 100) } else { (10, 200) };
    let rgb = rgb_frames(8).await;
    let (w, h, quality) = (rgb[0].width, rgb[0].height, SamplingConfig::default().jpeg_quality);

    // Per-frame preparation, timed apart from the gateway: JPEG encoding of
    // the RGB frames, then (separate loops, as the stack does it later, not
    // right after encoding) the base64 of each, made once per frame per run,
    // and the JSON build of a request around it, made for each request.
    let samples = if quick { 80 } else { 400 };
    let (mut encode, mut jpegs) = (Vec::new(), Vec::new());
    let (mut to_base64, mut texts, mut escaped, mut copied) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for frame in rgb.iter().cycle().take(samples) {
        let started = Instant::now();
        jpegs.push(encode_jpeg(frame.data.bytes(), w, h, quality));
        encode.push(started.elapsed());
    }
    for jpeg in &jpegs {
        let started = Instant::now();
        texts.push(base64::engine::general_purpose::STANDARD.encode(jpeg));
        to_base64.push(started.elapsed());
    }
    for b64 in &texts {
        for (escape, times) in [(true, &mut escaped), (false, &mut copied)] {
            let started = Instant::now();
            std::hint::black_box(build_body(b64, escape));
            times.push(started.elapsed());
        }
    }
    for samples in [&mut encode, &mut to_base64, &mut escaped, &mut copied] {
        samples.sort();
    }
    let jpeg = jpegs.swap_remove(0);
    let frame = Frame { data: FrameData::Jpeg(jpeg.into()), ..rgb[0].clone() };

    // The fake keeps the first body it gets: what vidgate sends, for the direct arm to replay.
    let captured: Arc<Mutex<Option<Bytes>>> = Arc::default();
    let (keep, answer) = (captured.clone(), answer_always(completion(1000, 50)));
    let handler: Handler = Arc::new(move |body: &[u8]| {
        keep.lock().expect("not poisoned").get_or_insert_with(|| Bytes::copy_from_slice(body));
        answer(body)
    });
    let (base, _) = start_fake(handler, Duration::ZERO);
    let stack = stack(&profile(&base, RateLimits::default(), ImageDetail::Auto));
    let job = job(&frame, 0, 300);
    stack.run(&job).await.expect("the stack answers");
    let body = captured.lock().expect("not poisoned").clone().expect("a captured body");
    // The direct arm's client has the backend's own settings.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let arms = Arc::new(Arms { client, url: format!("{base}/v1/chat/completions"), body, stack, job });

    println!(
        "## overhead: one {w}x{h} frame ({:.1} KiB JPEG, {} B request body) per request; the fake answers at once\n",
        frame.data.bytes().len() as f64 / 1024.0,
        arms.body.len()
    );
    println!("{rounds} rounds x {per_round} requests per arm, interleaved (the order flips each round), after a warm-up batch; {} CPUs.\n", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("| arm | concurrency | requests | p50 ms | p90 ms | p99 ms | CPU µs / request | goal |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for concurrency in [1usize, 50] {
        batch(&arms, true, concurrency, per_round).await;
        batch(&arms, false, concurrency, per_round).await;
        // Per arm: latencies, and the CPU the whole process spent in its batches.
        let mut arm = [(Vec::new(), Duration::ZERO), (Vec::new(), Duration::ZERO)];
        for round in 0..rounds {
            // Flip the order so neither arm always follows the other.
            for i in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let cpu = cpu_time();
                let latencies = batch(&arms, i == 0, concurrency, per_round).await;
                arm[i].1 += cpu_time() - cpu;
                arm[i].0.extend(latencies);
            }
        }
        let mut figures = [[0.0; 4]; 2];
        for (i, name) in ["direct reqwest", "vidgate stack"].into_iter().enumerate() {
            let ((latencies, cpu), n) = (&mut arm[i], per_round * rounds);
            latencies.sort();
            let f = [
                quantile_ms(latencies, 0.5),
                quantile_ms(latencies, 0.9),
                quantile_ms(latencies, 0.99),
                cpu.as_secs_f64() * 1e6 / n as f64,
            ];
            println!("| {name} | {concurrency} | {n} | {:.3} | {:.3} | {:.3} | {:.0} | |", f[0], f[1], f[2], f[3]);
            figures[i] = f;
        }
        let d: Vec<f64> = (0..4).map(|k| figures[1][k] - figures[0][k]).collect();
        println!(
            "| **added by vidgate** | {concurrency} | | {:+.3} | {:+.3} | **{:+.3}** | {:+.0} | p99 < 1 ms: {} |",
            d[0],
            d[1],
            d[2],
            d[3],
            verdict(d[2] < 1.0)
        );
    }
    println!("\nThe stack's latency includes its own JSON build of each request around the frame's base64, made once (below); the direct arm replays the captured bytes.");
    println!("CPU is the whole process's (client, fake server, runtime) per request of that arm.\n");
    println!("| per frame ({w}x{h}) | samples | p50 ms | p99 ms | note |");
    println!("|---|---:|---:|---:|---|");
    let row = |what: &str, s: &[Duration], note: &str| {
        println!("| {what} | {} | {:.3} | {:.3} | {note} |", s.len(), quantile_ms(s, 0.5), quantile_ms(s, 0.99))
    };
    row(&format!("JPEG encode (jpeg-encoder, q{quality})"), &encode, "not counted in the overhead goal");
    row("base64 of the JPEG", &to_base64, "once per frame per run: retries and fallbacks reuse it");
    row("JSON build, base64 copied in", &copied, "each request (inside the stack's latency above)");
    row("JSON build, base64 escaped by serde", &escaped, "what each request did before, with the base64 made again");
}

// ---------------------------------------------------------------- 2. fanout

async fn fanout(quick: bool) {
    let repeats = if quick { 1 } else { 5 };
    let frame = grey_frame();
    let cases: &[(usize, u64, usize)] =
        if quick { &[(64, 100, 8)] } else { &[(64, 100, 8), (64, 100, 16), (256, 50, 32)] };
    println!("## fanout: N single-frame calls (frames_per_call = 1), fake latency L, concurrency C\n");
    println!("Wall time: median of {repeats} run(s), worst in brackets; ideal = ceil(N/C) x L.\n");
    println!("| N | L ms | C | how C is held | ideal ms | wall ms | wall / ideal | peak in flight | goal |");
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---|");
    for &(n, latency_ms, c) in cases {
        let latency = Duration::from_millis(latency_ms);
        let ideal = latency * n.div_ceil(c) as u32;
        // C held either by the profile's `limits.max_concurrency` (all N calls
        // spawned at once, RateLimited's semaphore admits C), or by a window of
        // C tasks, the way `observe::observe_frames` fills its JoinSet.
        for by_semaphore in [true, false] {
            let (base, peak) = start_fake(answer_always(completion(300, 40)), latency);
            let limits = RateLimits { max_concurrency: by_semaphore.then_some(c as u32), ..RateLimits::default() };
            let stack = stack(&profile(&base, limits, ImageDetail::Auto));
            stack.run(&job(&frame, 0, 300)).await.expect("warm-up");
            let mut walls = Vec::new();
            for _ in 0..repeats {
                peak.store(0, Ordering::SeqCst);
                let started = Instant::now();
                let mut set: tokio::task::JoinSet<Result<(), ProviderError>> = tokio::task::JoinSet::new();
                for i in 0..n {
                    while !by_semaphore && set.len() >= c {
                        set.join_next().await.expect("a task").expect("joined").expect("answered");
                    }
                    let (stack, job) = (stack.clone(), job(&frame, i as u64 * 1000, 300));
                    set.spawn(async move { stack.run(&job).await.map(|_| ()) });
                }
                set.join_all().await.into_iter().for_each(|done| done.expect("answered"));
                walls.push(started.elapsed());
            }
            walls.sort();
            let (wall, worst) = (walls[walls.len() / 2], walls[walls.len() - 1]);
            let ratio = wall.as_secs_f64() / ideal.as_secs_f64();
            let how = if by_semaphore { "limits.max_concurrency" } else { "window (as observe_frames)" };
            let peak = peak.load(Ordering::SeqCst);
            println!(
                "| {n} | {latency_ms} | {c} | {how} | {:.0} | {:.1} ({:.1}) | {ratio:.3} | {peak} | <= 1.1: {} |",
                ms(ideal),
                ms(wall),
                ms(worst),
                verdict(ratio <= 1.1)
            );
        }
    }
}

// ---------------------------------------------------------------- 3. limiter

/// The real API's quota as two token buckets: capacity = the per-minute limit,
/// refilled continuously at limit/60 per second. A request is charged on
/// arrival for its prompt estimate plus its `max_tokens` (as OpenAI counts
/// toward TPM); past either bucket it gets a 429 with Retry-After.
/// `input_tokens` is the prompt-token charge per request: vidgate's own
/// estimate of it, so that both sides count the same tokens. `headers`: send
/// `x-ratelimit-*` headers on every answer, as the real API does.
struct Quota {
    rpm: f64,
    tpm: f64,
    input_tokens: u64,
    headers: bool,
    state: Mutex<Buckets>,
}

/// Bucket levels at `last` (the latest arrival), what the fake let through or
/// refused, and the longest silence between two arrivals, in seconds.
#[derive(Clone, Copy)]
struct Buckets {
    requests: f64,
    tokens: f64,
    last: Instant,
    accepted: u64,
    accepted_tokens: u64,
    rejected: u64,
    max_gap: f64,
}

impl Quota {
    fn answer(&self, body: &[u8]) -> Reply {
        let max_tokens = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["max_tokens"].as_u64()).unwrap_or(0);
        let cost = self.input_tokens + max_tokens;
        let (req_rate, tok_rate) = (self.rpm / 60.0, self.tpm / 60.0);
        let mut b = self.state.lock().expect("not poisoned");
        let (now, dt) = (Instant::now(), b.last.elapsed().as_secs_f64());
        (b.last, b.max_gap) = (now, b.max_gap.max(dt));
        b.requests = (b.requests + dt * req_rate).min(self.rpm);
        b.tokens = (b.tokens + dt * tok_rate).min(self.tpm);
        let ok = b.requests >= 1.0 && b.tokens >= cost as f64;
        let mut headers = Vec::new();
        let (status, body) = if ok {
            b.requests -= 1.0;
            b.tokens -= cost as f64;
            b.accepted += 1;
            b.accepted_tokens += cost;
            (200, completion(self.input_tokens, max_tokens.min(40)))
        } else {
            b.rejected += 1;
            let wait = ((1.0 - b.requests) / req_rate).max((cost as f64 - b.tokens) / tok_rate);
            headers.push(("retry-after", format!("{}", wait.ceil().max(1.0))));
            let error = json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
            (429, Bytes::from(error.to_string()))
        };
        if self.headers {
            // "reset": the time until the bucket is back to its initial (full)
            // state, as OpenAI's rate-limit guide defines it.
            let (req_reset, tok_reset) = ((self.rpm - b.requests) / req_rate, (self.tpm - b.tokens) / tok_rate);
            headers.push(("x-ratelimit-limit-requests", format!("{}", self.rpm)));
            headers.push(("x-ratelimit-remaining-requests", format!("{}", b.requests.floor())));
            headers.push(("x-ratelimit-reset-requests", format!("{req_reset:.3}s")));
            headers.push(("x-ratelimit-limit-tokens", format!("{}", self.tpm)));
            headers.push(("x-ratelimit-remaining-tokens", format!("{}", b.tokens.floor())));
            headers.push(("x-ratelimit-reset-tokens", format!("{tok_reset:.3}s")));
        }
        Reply { status, headers, body }
    }
}

/// A fake with its quota, a fresh stack, and `workers` loops sending `job`
/// through it as fast as it lets them; counts of vidgate's own outcomes.
fn start_limiter_run(
    rpm: u32,
    tpm: u64,
    job: &Job,
    input_tokens: u64,
    headers: bool,
    workers: usize,
) -> (Arc<Quota>, [Arc<AtomicUsize>; 2], Vec<tokio::task::JoinHandle<()>>) {
    let full = Buckets {
        requests: f64::from(rpm),
        tokens: tpm as f64,
        last: Instant::now(),
        accepted: 0,
        accepted_tokens: 0,
        rejected: 0,
        max_gap: 0.0,
    };
    let quota =
        Arc::new(Quota { rpm: f64::from(rpm), tpm: tpm as f64, input_tokens, headers, state: Mutex::new(full) });
    let q = quota.clone();
    let (base, _) = start_fake(Arc::new(move |body: &[u8]| q.answer(body)), Duration::ZERO);
    let limits = RateLimits { requests_per_minute: Some(rpm), tokens_per_minute: Some(tpm), ..RateLimits::default() };
    let stack = stack(&profile(&base, limits, ImageDetail::Low));
    let outcomes = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (stack, job, outcomes) = (stack.clone(), job.clone(), outcomes.clone());
            tokio::spawn(async move {
                loop {
                    let failed = stack.run(&job).await.is_err();
                    outcomes[usize::from(failed)].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (quota, outcomes, handles)
}

async fn limiter(quick: bool) {
    // --quick: limits scaled up 10x and 30 s instead of 5 min.
    let (scale, duration) = if quick { (10u32, Duration::from_secs(30)) } else { (1, Duration::from_secs(300)) };
    let (rpm, tpm, workers) = (60 * scale, 10_000 * u64::from(scale), 8);
    // Size the job so that both limits bind about equally: tpm / rpm = 166
    // tokens a call, of which vidgate's estimate of the prompt is the input.
    let frame = grey_frame();
    let unlimited = stack(&profile("http://127.0.0.1:9", RateLimits::default(), ImageDetail::Low)); // only asked to estimate
    let input_tokens = unlimited.estimate(&job(&frame, 0, 1)).expect("an estimate").input_tokens;
    let per_call = tpm / u64::from(rpm);
    let job = job(&frame, 0, (per_call - input_tokens) as u32);
    println!(
        "## limiter: vidgate at requests_per_minute = {rpm}, tokens_per_minute = {tpm}, {workers} workers, {} s\n",
        duration.as_secs()
    );
    if quick {
        println!("--quick: the limits are scaled up 10x (60 rpm / 10,000 tpm become {rpm} / {tpm}) and the run cut from 300 s to 30 s.\n");
    }
    println!("The fake holds two token buckets (capacity = the per-minute limit, refilled continuously at limit/60 per s) and answers 429 with Retry-After");
    println!("past either. It charges each request on arrival its prompt tokens as vidgate's `estimate()` counts them ({input_tokens}: one 512x288 frame at");
    println!("detail low + text) plus its max_tokens ({}) = {per_call} tokens, so tokens bind about as tightly as requests. Allowance = capacity + rate x", job.max_output_tokens);
    println!("duration; use = accepted / allowance. Two stacks run at once, against a fake without and one with the x-ratelimit-* headers the real API sends.\n");
    let runs = [false, true].map(|headers| start_limiter_run(rpm, tpm, &job, input_tokens, headers, workers));
    tokio::time::sleep(duration).await;
    // Snapshot every fake at the deadline first (a silence still going on counts), then stop the workers.
    let snapshots = runs.each_ref().map(|(quota, _, _)| {
        let s = *quota.state.lock().expect("not poisoned");
        Buckets { max_gap: s.max_gap.max(s.last.elapsed().as_secs_f64()), ..s }
    });
    let t = duration.as_secs_f64() / 60.0;
    let (allow_req, allow_tok) = (f64::from(rpm) * (1.0 + t), tpm as f64 * (1.0 + t));
    println!("| fake sends x-ratelimit-* | reached fake | accepted | 429s | request use (of {allow_req:.0}) | token use (of {allow_tok:.0}) | longest silence s | vidgate ok / failed | goal: 0 x 429 | goal: >= 90 % used |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for ((quota, outcomes, handles), s) in runs.iter().zip(snapshots) {
        handles.iter().for_each(|h| h.abort());
        let (use_req, use_tok) = (s.accepted as f64 / allow_req, s.accepted_tokens as f64 / allow_tok);
        let used = use_req.max(use_tok); // the binding limit is the one nearer to its allowance
        let [ok, failed] = outcomes.each_ref().map(|n| n.load(Ordering::Relaxed));
        let sends = if quota.headers { "yes" } else { "no" };
        print!(
            "| {sends} | {} | {} | {} | {:.1} % | {:.1} % ",
            s.accepted + s.rejected,
            s.accepted,
            s.rejected,
            100.0 * use_req,
            100.0 * use_tok
        );
        println!(
            "| {:.1} | {ok} / {failed} | {} | {} ({:.1} %) |",
            s.max_gap,
            verdict(s.rejected == 0),
            verdict(used >= 0.9),
            100.0 * used
        );
    }
}
