//! Soak: the whole pipeline, again and again, against the fake APIs.
//!
//! ```text
//! cargo bench --no-default-features --bench soak [-- --iterations N] [--minutes M] [--only openai|gemini]
//! cargo bench --no-default-features --bench soak -- --serve [--minutes 30] [--clients 2] [--expire-s 60] [--prune-every-s 60]
//! ```
//!
//! `--serve`: `vidgate serve` under steady load, its journal pruned and its
//! provider's token expiring on a schedule (see `support/soak_serve.rs`).
//!
//! Each iteration builds a gateway from config and describes a clip through it
//! (alternately on the OpenAI-compatible fake, frames in batches, and the
//! Gemini fake, the video itself), with a fresh journal so every unit is
//! really sent; every fourth iteration the provider fails once per unit
//! first (retried). After each, it records the resident memory, the open
//! file descriptors and ffmpeg processes, and the spend the journal's ledger
//! recorded against what the fake billed. Goal: flat memory and descriptors,
//! spend equal to the cent's millionth.

#[path = "support/fake_api.rs"]
mod fake_api;
#[path = "support/soak_serve.rs"]
mod soak_serve;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_api::{Billed, Billing, Fake, Handler, Reply};
use vidgate::config::Config;
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::schema::{SamplingMode, SamplingPlan, Task, VideoRequest};

const KEY_VAR: &str = "VIDGATE_SOAK_KEY";

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn ffmpeg_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                    stat.contains("(ffmpeg)") && fields.get(1) == Some(&me.as_str())
                })
                .count()
        })
        .unwrap_or(0)
}

fn clip() -> std::path::PathBuf {
    let path = std::env::temp_dir().join("vidgate-soak-clip.mp4");
    if !path.exists() {
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=duration=20:size=640x360:rate=25")
            .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=20", "-shortest"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success());
    }
    path
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)?.parse::<f64>().ok());
    let iterations = value("--iterations").map_or(40, |n| n as usize);
    let minutes = value("--minutes");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1).cloned());
    std::env::set_var(KEY_VAR, "soak-key-not-secret");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    if args.iter().any(|a| a == "--serve") {
        let settings = soak_serve::Settings {
            minutes: minutes.unwrap_or(30.0),
            clients: value("--clients").map_or(2, |n| n as usize),
            expire_s: value("--expire-s").unwrap_or(60.0),
            prune_every_s: value("--prune-every-s").unwrap_or(60.0),
        };
        return rt.block_on(soak_serve::soak(settings, clip()));
    }
    rt.block_on(soak(iterations, minutes, only));
}

async fn soak(iterations: usize, minutes: Option<f64>, only: Option<String>) {
    let clip = clip();
    let builtin = Config::builtin().expect("the built-in config");
    let info = vidgate::media::probe(&clip, &builtin.limits).await.expect("the clip probes");
    let duration_s = info.duration_ms as f64 / 1000.0;
    let flaky = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut servers = Vec::new();
    let names: Vec<&str> =
        ["openai", "gemini"].into_iter().filter(|n| only.as_deref().is_none_or(|o| o == *n)).collect();
    for name in names {
        let billed = Arc::new(Mutex::new(Billed::default()));
        let fake = Fake { billing: Billing::for_profile(&builtin, name, duration_s), billed: billed.clone() };
        // When flaky, every other call fails with a 503 first (and is retried).
        let (flaky, calls) = (flaky.clone(), AtomicUsize::new(0));
        let handler: Handler = Arc::new(move |path: &str, body: &[u8]| {
            if flaky.load(Ordering::SeqCst) && calls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                let mut reply = Reply::json(503, serde_json::json!({"error": {"code": 503, "message": "overloaded"}}));
                reply.headers.push(("retry-after", "0".into()));
                return reply;
            }
            fake.answer(path, body)
        });
        servers.push((name, fake_api::serve(handler), billed));
    }
    let started = Instant::now();
    let deadline = minutes.map(|m| started + Duration::from_secs_f64(m * 60.0));
    println!("| iteration | provider | calls | RSS MiB | peak RSS MiB | open fds | ffmpeg | ledger $ | billed $ |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let (mut ledger_total, mut rss) = (0.0, Vec::new());
    let mut fds = Vec::new();
    let mut i = 0;
    while i < iterations || deadline.is_some_and(|d| Instant::now() < d) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let (name, server, billed) = &servers[i % servers.len()];
        flaky.store(i % 4 == 3, Ordering::SeqCst);
        let billed_before = billed.lock().unwrap().usd;
        let mut config = builtin.clone();
        let profile = config.providers.get_mut(*name).expect("a shipped profile");
        profile.base_url = Some(if *name == "openai" { format!("{server}/v1") } else { server.clone() });
        profile.api_key_env = Some(KEY_VAR.into());
        profile.frames_per_call = Some(4);
        profile.limits.requests_per_minute = None;
        profile.limits.tokens_per_minute = None;
        config.router.chain = vec![name.to_string()];
        config.budget.max_usd_per_request = 10.0;
        config.retry.max_attempts = 3;
        let gateway = Gateway::with_journal(config, Journal::in_memory().expect("a journal"));
        let mut request = VideoRequest::new(&clip, Task::Describe);
        request.sampling =
            SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 320 };
        let report = gateway.run(request).await;
        let ledger = gateway.journal().spent_today().unwrap_or(f64::NAN);
        drop(gateway);
        let calls = match &report {
            Ok(r) => r.attempts.len(),
            Err(e) => {
                println!("iteration {i}: failed: {e}");
                0
            }
        };
        let billed_now = billed.lock().unwrap().usd - billed_before;
        ledger_total += ledger;
        let (now, peak) = (status_kib("VmRSS:") as f64 / 1024.0, status_kib("VmHWM:") as f64 / 1024.0);
        rss.push(now);
        fds.push(open_fds());
        println!(
            "| {i} | {name} | {calls} | {now:.1} | {peak:.1} | {} | {} | {ledger:.6} | {billed_now:.6} |",
            fds[fds.len() - 1],
            ffmpeg_children()
        );
        i += 1;
    }
    let billed_total: f64 = servers.iter().map(|(_, _, b)| b.lock().unwrap().usd).sum();
    // Warm-up fills caches and allocator pools; after it, memory must stay flat.
    let third = (rss.len() / 3).max(1);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (middle, last) =
        (max(&rss[third.min(rss.len())..(2 * third).min(rss.len())]), max(&rss[(2 * third).min(rss.len())..]));
    let fd_range = |v: &[usize]| (v.iter().min().copied().unwrap_or(0), v.iter().max().copied().unwrap_or(0));
    let (fd_first, fd_last) = (fd_range(&fds[..third.min(fds.len())]), fd_range(&fds[(2 * third).min(fds.len())..]));
    println!(
        "\n{i} iterations in {:.0} s. Peak RSS: middle third {middle:.1} MiB, last third {last:.1} MiB ({:+.1} %). \
         Open fds: {}–{} in the first third, {}–{} in the last. Spend: ledger ${ledger_total:.6}, fakes billed ${billed_total:.6} (difference {:.2e}).",
        started.elapsed().as_secs_f64(),
        (last / middle - 1.0) * 100.0,
        fd_first.0,
        fd_first.1,
        fd_last.0,
        fd_last.1,
        (ledger_total - billed_total).abs(),
    );
    println!("Goals: the last third's peak RSS within 10 % of the middle third's; the same range of open fds (pooled connections come and go); the difference under 1e-9.");
}
