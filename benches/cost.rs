//! Cost per video minute, from the ledger, for each shipped cloud profile.
//!
//! ```text
//! cargo bench --no-default-features --bench cost [-- VIDEO]
//! ```
//!
//! The whole gateway describes `trailer_bbb.mp4` (fixtures/fetch.sh) twice per
//! profile, against a local fake that answers in the API's shape and bills
//! like it (usage computed from what it was sent, by the profile's published
//! token rules and a words-based text count, with answers of realistic
//! length):
//!
//! - the auto plan: what vidgate does by default (the video itself to a
//!   native-video model; else one frame per shot, 512 px, in batches), and
//! - a naive plan at equal coverage: one frame per second of the whole video,
//!   at the source's 1280 px, high detail, one frame per call.
//!
//! It prints the cost per minute of each from the journal's spend ledger, the
//! ratio (goal: auto ≥ 3× cheaper), and vidgate's estimates against what the
//! fake billed: input tokens (goal ±10 %) and the worst-case cost reserved.

#[path = "support/fake_api.rs"]
mod fake_api;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fake_api::{Billed, Billing, Fake};
use vidgate::config::{Config, ImageDetail, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::schema::{SamplingMode, SamplingPlan, Task, VideoReport, VideoRequest};

const PROFILES: [&str; 6] = ["gemini", "vertex", "openai", "azure-openai", "openrouter", "groq"];
const KEY_VAR: &str = "VIDGATE_BENCH_KEY";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let video = args.first().map(PathBuf::from).unwrap_or_else(default_video);
    if !video.is_file() {
        eprintln!("{}: not found; fetch it with `fixtures/fetch.sh trailer_bbb`", video.display());
        std::process::exit(2);
    }
    std::env::set_var(KEY_VAR, "bench-key-not-secret");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    rt.block_on(bench(video));
}

fn default_video() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("vidgate/fixtures/trailer_bbb.mp4")
}

struct Outcome {
    report: VideoReport,
    ledger_usd: f64,
    billed: Billed,
}

async fn run_once(
    profile_name: &str,
    profile: ProviderProfile,
    billing: Billing,
    sampling: SamplingPlan,
    video: &PathBuf,
) -> Result<Outcome, String> {
    let billed = Arc::new(Mutex::new(Billed::default()));
    let fake = Fake { billing, billed: billed.clone() };
    let server = fake_api::serve(Arc::new(move |path: &str, body: &[u8]| fake.answer(path, body)));
    let mut config = Config::builtin().map_err(|e| e.to_string())?;
    let mut profile = profile;
    let openai_like = profile.protocol == Some(vidgate::config::Protocol::Openai);
    profile.base_url =
        Some(if openai_like && profile_name != "azure-openai" { format!("{server}/v1") } else { server.clone() });
    if profile.token_env.is_some() || profile_name == "vertex" {
        profile.token_env = Some(KEY_VAR.into());
        profile.token_command = None;
        profile.project = Some("bench-project".into());
    } else {
        profile.api_key_env = Some(KEY_VAR.into());
    }
    profile.limits.requests_per_minute = None;
    profile.limits.tokens_per_minute = None;
    config.providers.insert(profile_name.to_string(), profile);
    config.router.chain = vec![profile_name.to_string()];
    config.budget.max_usd_per_request = 100.0;
    config.budget.downgrade = Vec::new();
    let gateway = Gateway::with_journal(config, Journal::in_memory().map_err(|e| e.to_string())?);
    let mut request = VideoRequest::new(video, Task::Describe);
    request.sampling = sampling;
    let report = gateway.run(request).await.map_err(|e| e.to_string())?;
    let ledger_usd = gateway.journal().spent_today().map_err(|e| e.to_string())?;
    let billed = std::mem::take(&mut *billed.lock().unwrap());
    Ok(Outcome { report, ledger_usd, billed })
}

async fn bench(video: PathBuf) {
    let info = vidgate::media::probe(&video, &vidgate::config::MediaLimits::default()).await.expect("the video probes");
    let duration_s = info.duration_ms as f64 / 1000.0;
    let minutes = duration_s / 60.0;
    let builtin = Config::builtin().expect("the built-in config");
    println!(
        "{} ({:.1} s, {}x{}), describe; cost per video minute from the journal's spend ledger\n",
        video.file_name().and_then(|n| n.to_str()).unwrap_or("video"),
        duration_s,
        info.video.width,
        info.video.height
    );
    println!("| profile (model) | auto plan | $/min | 1 fps, 512 px, batched | naive 1 fps | $/min | naive ÷ auto | est. input ÷ billed (auto, naive) | reserved ÷ spent (auto) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for name in PROFILES {
        let shipped = builtin.provider(name).expect("a shipped profile").clone();
        let model = shipped.model.clone().unwrap_or_default();
        let billing = Billing::for_profile(&builtin, name, duration_s);
        let native = shipped.models.get(&model).and_then(|m| m.native_video).unwrap_or(false);

        // Auto: the default plan. Native video as is; frames one per shot, batched.
        let mut auto_profile = shipped.clone();
        if !native {
            let limit = shipped.models.get(&model).and_then(|m| m.max_images_per_request).unwrap_or(8);
            auto_profile.frames_per_call = Some(auto_profile.frames_per_call.unwrap_or(8).min(limit).max(1));
        }
        let auto_sampling = SamplingPlan {
            mode: SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 },
            range: None,
            max_frames: 64,
            width: 512,
        };
        // Naive: every second, full size, high detail, one frame per call; no native video.
        let mut naive_profile = shipped.clone();
        naive_profile.frames_per_call = Some(1);
        naive_profile.detail = Some(ImageDetail::High);
        for m in naive_profile.models.values_mut() {
            m.native_video = Some(false);
        }
        let naive_sampling = SamplingPlan {
            mode: SamplingMode::Fps { fps: 1.0 },
            range: None,
            max_frames: duration_s.ceil() as u32,
            width: info.video.width,
        };
        // Batched at equal frame coverage: every second, but 512 px and in batches.
        let batched_sampling = SamplingPlan { width: 512, ..naive_sampling.clone() };
        let auto = run_once(name, auto_profile.clone(), billing.clone(), auto_sampling, &video).await;
        let naive = run_once(name, naive_profile, billing.clone(), naive_sampling, &video).await;
        let batched =
            if native { None } else { run_once(name, auto_profile, billing, batched_sampling, &video).await.ok() };
        let batched_cell = batched.as_ref().map_or("(native video)".to_string(), |b| {
            format!("{} calls ${:.4}/min", b.report.attempts.len(), b.ledger_usd / minutes)
        });
        match (auto, naive) {
            (Ok(a), Ok(n)) => {
                let describe = |o: &Outcome| format!("{} calls", o.report.attempts.len());
                let est_in =
                    |o: &Outcome| o.report.attempts.iter().map(|a| a.estimated_input_tokens).sum::<u64>() as f64;
                let reserved: f64 = a.report.attempts.iter().map(|x| x.estimated_cost_usd).sum();
                println!(
                    "| {name} ({model}) | {} ${:.4} | ${:.4} | {batched_cell} | {} ${:.4} | ${:.4} | {:.1}× | {:.2}, {:.2} | {:.2} |",
                    describe(&a),
                    a.ledger_usd,
                    a.ledger_usd / minutes,
                    describe(&n),
                    n.ledger_usd,
                    n.ledger_usd / minutes,
                    n.ledger_usd / a.ledger_usd.max(1e-12),
                    est_in(&a) / a.billed.input_tokens.max(1) as f64,
                    est_in(&n) / n.billed.input_tokens.max(1) as f64,
                    reserved / a.ledger_usd.max(1e-12),
                );
                for (label, o) in [("auto", &a), ("naive", &n)] {
                    let report_usd = o.report.usage.cost_usd;
                    if (report_usd - o.ledger_usd).abs() > 1e-9 {
                        println!("  ({label}: the report says ${report_usd:.6}, the ledger ${:.6})", o.ledger_usd);
                    }
                    if o.report.usage.output_tokens != o.billed.output_tokens {
                        println!(
                            "  ({label}: the report counts {} output tokens, the fake billed {})",
                            o.report.usage.output_tokens, o.billed.output_tokens
                        );
                    }
                }
            }
            (a, n) => {
                let err = |r: &Result<Outcome, String>| r.as_ref().err().cloned().unwrap_or_else(|| "ok".into());
                println!("| {name} ({model}) | failed: {} | | | failed: {} | | | | |", err(&a), err(&n));
            }
        }
    }
    println!("\nGoals: naive ÷ auto ≥ 3×; estimated input within ±10 % of billed. The reservation is the worst case (every answer at its output cap), so it is above what is spent by design. Groq does not publish its image token count: the fake assumes 560 per image, so its input ratio only shows that vidgate's guess differs.");
}
