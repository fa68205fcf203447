//! vidgate's local transcription (`whisper_local`: Whisper through ct2rs on
//! CTranslate2, int8) on one WAV file, timed: the vidgate side of
//! `scripts/bench-whisper.sh`, which runs faster-whisper on the same file,
//! weights and threads (`scripts/bench_whisper_fw.py`) and compares them.
//!
//! ```text
//! cargo bench --no-default-features --features whisper --bench whisper -- \
//!     --wav FILE --model DIR [--threads N] [--runs N]
//! ```
//!
//! (`--features whisper-ruy` for the build on CTranslate2's ruy back-end.)
//!
//! The WAV must be 16 kHz mono 16-bit (as the speech track cuts it). The
//! whole file is one transcription job through the provider's public
//! interface ([`Provider::run`]), so a file over 30 s is heard window by
//! window as in the product. The model is loaded first (timed apart), then
//! one run warms up and `--runs` runs are timed; the median is reported.
//! Prints one JSON line on stdout: seconds of audio, load time, median and
//! every run's time, the real-time factor (time / audio), peak RSS (VmHWM),
//! and the text heard.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::provider::whisper_local::WhisperLocal;
use vidgate::provider::{AudioClip, Job, JobInput, Provider};
use vidgate::schema::{Task, TimeRange};

struct Args {
    wav: PathBuf,
    model: PathBuf,
    threads: u32,
    runs: usize,
    language: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args { wav: PathBuf::new(), model: PathBuf::new(), threads: 2, runs: 3, language: "en".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--wav" => a.wav = value()?.into(),
            "--model" => a.model = value()?.into(),
            "--threads" => a.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--runs" => a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--language" => a.language = value()?,
            // What `cargo bench` adds.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.wav.as_os_str().is_empty() || a.model.as_os_str().is_empty() {
        return Err("give --wav FILE and --model DIR".into());
    }
    Ok(a)
}

/// The process's peak resident set, in MB (Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench whisper: {e}");
            std::process::exit(2);
        }
    };
    let wav = std::fs::read(&a.wav).unwrap_or_else(|e| panic!("{}: {e}", a.wav.display()));
    let samples = vidgate::provider::whisper_local::samples_of(&wav).unwrap_or_else(|e| panic!("{e}"));
    let audio_s = samples.len() as f64 / 16_000.0;
    let mut config = Config::default();
    config.speech.language = Some(a.language.clone());
    let profile = ProviderProfile {
        protocol: Some(Protocol::WhisperLocal),
        model: Some("whisper-base".into()),
        model_path: Some(a.model.clone()),
        threads: Some(a.threads),
        ..ProviderProfile::default()
    };
    let whisper = WhisperLocal::from_profile("whisper-local", &profile, &config).unwrap_or_else(|e| panic!("{e}"));
    let range = TimeRange { start_ms: 0, end_ms: (audio_s * 1000.0).round() as u64 };
    let job = Job {
        task: Task::Describe,
        input: JobInput::Audio(AudioClip { wav: Arc::from(wav), range, owned: range }),
        prompt: "".into(),
        prompt_version: "speech@1".into(),
        max_output_tokens: 0,
        span: Some(range),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let run = || {
        let started = Instant::now();
        let out = runtime.block_on(whisper.run(&job)).unwrap_or_else(|e| panic!("{e}"));
        (started.elapsed().as_secs_f64(), out)
    };
    let started = Instant::now();
    whisper.load_now().unwrap_or_else(|e| panic!("{e}"));
    let load_s = started.elapsed().as_secs_f64();
    let (_, out) = run();
    let mut times: Vec<f64> = (0..a.runs.max(1)).map(|_| run().0).collect();
    let runs = times.clone();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let text = out.observations.iter().map(|o| o.text.trim()).collect::<Vec<_>>().join(" ");
    let line = serde_json::json!({
        "engine": if cfg!(feature = "whisper") {
            "vidgate whisper_local (ct2rs 0.10.3, CTranslate2 4.8.4, MKL, int8)"
        } else {
            "vidgate whisper_local (ct2rs 0.10.3, CTranslate2 4.8.4, ruy, int8)"
        },
        "audio_s": audio_s,
        "threads": a.threads,
        "load_s": load_s,
        "transcribe_s": median,
        "runs_s": runs,
        "rtf": median / audio_s,
        "peak_rss_mb": peak_rss_mb(),
        "text": text,
    });
    println!("{line}");
}
