//! The local backend's speed, side by side with llama.cpp's own tools.
//!
//! ```text
//! cargo bench --bench local [-- --threads 2,1] [--runs 5] [--only vision|text]
//!     [--gpu-layers N] [--tools DIR] [--text-model GGUF] [--frames N]
//! ```
//!
//! `--gpu-layers N` offloads N layers (and the vision encoder) to the GPU on
//! both sides; `--tools DIR` takes llama.cpp's tools from DIR instead of
//! building them; `--text-model` replaces Gemma 3 270M; `--frames N` puts N
//! frames in each vision job (llama-mtmd-cli's encode figure is then its last
//! frame's, past the first-use costs of a fresh process). On a GPU machine,
//! `scripts/bench-local-cuda.sh` builds llama.cpp with CUDA and runs this
//! bench against it (docs/local-speed.md).
//!
//! Both sides run llama.cpp b11434 with the same CPU flags (AVX2, FMA, F16C,
//! BMI2; vidgate's through llama-cpp-sys-2 and `.cargo/config.toml`, the
//! tools through `scripts/build-llama-server.sh --with-bench`, from the full
//! sources of the same version; both at -O3, see docs/local-speed.md), on the
//! same GGUF files, with the same thread count, context, batch sizes, prompt
//! and number of generated tokens:
//!
//! - vision: a SmolVLM-256M-shaped model with random weights
//!   (`fixtures/tiny_vlm/generate.py --shape smolvlm-256m`, generated once into
//!   the fixtures cache), one 512x512 frame (the encoder's own size, so
//!   neither side resizes), vidgate's frame prompt against `llama-mtmd-cli`
//!   given the same text and the same pixels as a PPM file;
//! - text: Gemma 3 270M (`fixtures/fetch.sh --model gemma3-270m`), a text job
//!   of 512 prompt tokens and 128 generated against `llama-bench -p 512` and
//!   `llama-bench -n 128 -d 512` (generation after the same 512 tokens).
//!
//! Each measurement is repeated `--runs` times, the two sides taking turns
//! (so a busy machine slows both alike), and the median is reported with the
//! range. Each side warms up right before it measures: the tools in each
//! process (a one-token decode and the encoder's graph in llama-mtmd-cli, the
//! whole test in llama-bench), vidgate with the same job, not counted. vidgate's figures come from [`Timings`] (wall clock, sampling and
//! detokenizing included); llama.cpp's from its own reports (`llama_perf`,
//! mtmd's encode time, llama-bench's samples), which time the decoding only.
//! Prints a markdown table on stdout, progress on stderr. The tools are built
//! the first time (about 10 minutes on 2 cores).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::media::{Frame, FrameData};
use vidgate::provider::llama_local::{LlamaLocal, Timings};
use vidgate::provider::{Job, JobInput, Provider};
use vidgate::schema::Task;

const FRAME_SIZE: u32 = 512;
/// Context for one frame; each further frame adds `FRAME_CONTEXT`.
const VISION_CONTEXT: u32 = 2048;
/// A frame's 1024 image tokens and its label, rounded up.
const FRAME_CONTEXT: u32 = 1088;
const VISION_PROMPT: &str = "Describe what the frames show.";
const VISION_GEN: u32 = 64;
const TEXT_CONTEXT: u32 = 1024;
const TEXT_PROMPT_TOKENS: u64 = 512;
const TEXT_GEN: u32 = 128;
/// Lets the other side's spinning threads go to sleep between runs.
const PAUSE: Duration = Duration::from_secs(1);

struct Options {
    threads: Vec<u32>,
    runs: usize,
    vision: bool,
    text: bool,
    /// llama.cpp's tools already built (else built from the sdist).
    tools: Option<PathBuf>,
    /// Layers offloaded to the GPU, on both sides (0: CPU only).
    gpu_layers: u32,
    /// The text model (default: Gemma 3 270M from the fixtures cache).
    text_model: Option<PathBuf>,
    /// Frames per vision job (default 1). With more, llama-mtmd-cli's
    /// encode figure is its last frame's, past its first-use costs.
    frames: usize,
}

fn options() -> Options {
    let mut o = Options {
        threads: vec![2, 1],
        runs: 5,
        vision: true,
        text: true,
        tools: None,
        gpu_layers: 0,
        text_model: None,
        frames: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--threads" => {
                o.threads = value("--threads").split(',').map(|t| t.trim().parse().expect("--threads 2,1")).collect()
            }
            "--runs" => o.runs = value("--runs").parse().expect("--runs N"),
            "--only" => match value("--only").as_str() {
                "vision" => o.text = false,
                "text" => o.vision = false,
                other => panic!("--only vision|text, not {other}"),
            },
            "--tools" => o.tools = Some(PathBuf::from(value("--tools"))),
            "--gpu-layers" => o.gpu_layers = value("--gpu-layers").parse().expect("--gpu-layers N"),
            "--text-model" => o.text_model = Some(PathBuf::from(value("--text-model"))),
            "--frames" => o.frames = value("--frames").parse().expect("--frames N"),
            "--bench" => {} // cargo bench passes it
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(o.runs > 0 && !o.threads.is_empty() && o.threads.iter().all(|&t| t > 0));
    assert!((1..60).contains(&o.frames), "--frames 1 to 59");
    o
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os("VIDGATE_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"))
            .join("vidgate/fixtures")
    })
}

/// The repository: where cargo built the bench, unless `VIDGATE_REPO` says
/// otherwise (a binary carried to another machine).
fn repo() -> PathBuf {
    std::env::var_os("VIDGATE_REPO").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The SmolVLM-256M-shaped pair, generated on first use.
fn vision_model() -> (PathBuf, PathBuf) {
    let dir = fixtures_dir().join("smolvlm-shape");
    let model = dir.join("smolvlm-256m-shape-f16.gguf");
    let mmproj = dir.join("smolvlm-256m-shape-mmproj-f16.gguf");
    if !model.is_file() || !mmproj.is_file() {
        eprintln!("generating the SmolVLM-256M-shaped model into {}", dir.display());
        let status = Command::new("python3")
            .arg(repo().join("fixtures/tiny_vlm/generate.py"))
            .args(["--shape", "smolvlm-256m"])
            .arg(&dir)
            .status()
            .expect("python3");
        assert!(status.success(), "generate.py failed (needs numpy and gguf==0.19.0)");
    }
    (model, mmproj)
}

fn gemma() -> PathBuf {
    let path = fixtures_dir().join("gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} is missing: run fixtures/fetch.sh --model gemma3-270m", path.display());
    path
}

/// llama.cpp's tools of the same version; built if missing.
fn tools() -> PathBuf {
    let out = Command::new(repo().join("scripts/build-llama-server.sh"))
        .arg("--with-bench")
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/build-llama-server.sh");
    assert!(out.status.success(), "scripts/build-llama-server.sh --with-bench failed");
    let bin = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    PathBuf::from(bin)
}

/// One deterministic 512x512 frame: gradients and an XOR pattern.
fn frame_rgb() -> Vec<u8> {
    let n = FRAME_SIZE as usize;
    let mut rgb = Vec::with_capacity(n * n * 3);
    for y in 0..n {
        for x in 0..n {
            rgb.extend_from_slice(&[(x * 255 / (n - 1)) as u8, (y * 255 / (n - 1)) as u8, ((x ^ y) & 255) as u8]);
        }
    }
    rgb
}

/// The same pixels for llama-mtmd-cli: a binary PPM, which its image loader
/// (stb_image) reads without loss.
fn write_ppm(path: &Path, rgb: &[u8]) {
    let mut bytes = format!("P6\n{FRAME_SIZE} {FRAME_SIZE}\n255\n").into_bytes();
    bytes.extend_from_slice(rgb);
    std::fs::write(path, bytes).unwrap();
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
}

fn local(model: &Path, mmproj: Option<&Path>, context: u32, threads: u32, gpu_layers: u32) -> LlamaLocal {
    let profile = ProviderProfile {
        protocol: Some(Protocol::LlamaLocal),
        model_path: Some(model.to_path_buf()),
        mmproj_path: mmproj.map(Path::to_path_buf),
        context_tokens: Some(context),
        threads: Some(threads),
        gpu_layers: Some(gpu_layers),
        ..ProviderProfile::default()
    };
    let provider = LlamaLocal::from_profile("local", &profile, &Config::default()).unwrap();
    block_on(provider.load()).expect("the model loads");
    provider
}

fn job(input: JobInput, prompt: &str, max_output_tokens: u32) -> Job {
    Job {
        task: Task::Describe,
        input,
        prompt: prompt.into(),
        prompt_version: "bench@1".into(),
        max_output_tokens,
        span: None,
    }
}

fn run(provider: &LlamaLocal, job: &Job) -> Timings {
    block_on(provider.run(job)).expect("the job runs");
    provider.last_timings().unwrap()
}

/// Runs `tool`, returns its stdout and stderr.
fn tool(bin: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{} failed:\n{}", bin.display(), &stderr[stderr.len().saturating_sub(3000)..]);
    (stdout, stderr)
}

/// What llama-mtmd-cli reports for one image and one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MtmdReport {
    /// The last image's encoding.
    encode_ms: f64,
    /// All images' encoding.
    encode_total_ms: f64,
    prompt_ms: f64,
    prompt_tokens: u64,
    eval_ms: f64,
    eval_runs: u64,
}

/// The numbers of `... = 6849.11 ms /  1068 tokens (...)`.
fn ms_and_count(line: &str) -> Option<(f64, u64)> {
    let rest = line.split_once('=')?.1;
    let (ms, rest) = rest.split_once("ms")?;
    let count = rest.trim_start().strip_prefix('/')?.split_whitespace().next()?;
    Some((ms.trim().parse().ok()?, count.parse().ok()?))
}

/// Parses the lines llama-mtmd-cli writes with `--perf -lv 4`.
fn parse_mtmd(stderr: &str) -> Option<MtmdReport> {
    let mut encodes = Vec::new();
    let mut prompt = None;
    let mut eval = None;
    for line in stderr.lines() {
        if let Some((_, rest)) = line.split_once("mtmd batch encoding done in ") {
            encodes.extend(rest.trim().strip_suffix("ms").and_then(|ms| ms.trim().parse::<f64>().ok()));
        } else if let Some((_, perf)) = line.split_once("llama_perf_context_print:") {
            let perf = perf.trim_start();
            if perf.starts_with("prompt eval time") {
                prompt = ms_and_count(perf);
            } else if perf.starts_with("eval time") {
                eval = ms_and_count(perf);
            }
        }
    }
    let ((prompt_ms, prompt_tokens), (eval_ms, eval_runs)) = (prompt?, eval?);
    let encode_ms = *encodes.last()?;
    Some(MtmdReport { encode_ms, encode_total_ms: encodes.iter().sum(), prompt_ms, prompt_tokens, eval_ms, eval_runs })
}

/// llama-bench's tokens per second, from `-o json -r 1`.
fn parse_bench(stdout: &str) -> f64 {
    let tests: serde_json::Value = serde_json::from_str(stdout).expect("llama-bench JSON");
    tests[0]["avg_ts"].as_f64().expect("avg_ts")
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One figure measured on both sides, all runs kept.
struct Row {
    figure: String,
    vidgate: Vec<f64>,
    llama: Vec<f64>,
    /// Milliseconds (lower is better) rather than a rate.
    lower_is_better: bool,
}

impl Row {
    fn new(figure: String, lower_is_better: bool) -> Self {
        Self { figure, vidgate: Vec::new(), llama: Vec::new(), lower_is_better }
    }

    /// vidgate's speed as a multiple of llama.cpp's.
    fn ratio(&self) -> f64 {
        let (v, l) = (median(&self.vidgate), median(&self.llama));
        if self.lower_is_better {
            l / v
        } else {
            v / l
        }
    }
}

fn cell(values: &[f64]) -> String {
    let digits = if median(values) >= 100.0 { 0 } else { 1 };
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    format!("{:.*} ({:.*}–{:.*})", digits, median(values), digits, lo, digits, hi)
}

fn table(rows: &[Row]) -> String {
    let mut out =
        String::from("| figure | vidgate | llama.cpp | ratio | goal (≥ 0.9×) |\n| --- | ---: | ---: | ---: | --- |\n");
    for row in rows {
        let ratio = row.ratio();
        let verdict = if ratio >= 0.9 { "met" } else { "**missed**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio:.2}× | {verdict} |",
            row.figure,
            cell(&row.vidgate),
            cell(&row.llama)
        );
    }
    out
}

fn vision(o: &Options, bin: &Path, threads: u32, notes: &mut Vec<String>) -> Vec<Row> {
    let runs = o.runs;
    let (model, mmproj) = vision_model();
    let rgb = frame_rgb();
    let dir = tempfile::tempdir().unwrap();
    let ppm = dir.path().join("frame.ppm");
    write_ppm(&ppm, &rgb);
    let frames: Arc<[Frame]> = (0..o.frames)
        .map(|i| Frame {
            index: i as u32,
            pts_ms: i as u64 * 1000,
            width: FRAME_SIZE,
            height: FRAME_SIZE,
            data: FrameData::Rgb(rgb.clone()),
        })
        .collect();
    let job = job(JobInput::Frames(frames), VISION_PROMPT, VISION_GEN);
    // vidgate's user turn, as mtmd-cli's prompt (it adds the same chat
    // template around it): each frame's label and marker, then the prompt.
    let labels: String = (0..o.frames).map(|i| format!("Frame at 00:{i:02}.000:\n<__media__>\n")).collect();
    let prompt = format!("{labels}{VISION_PROMPT}");
    let context = VISION_CONTEXT + (o.frames as u32 - 1) * FRAME_CONTEXT;
    let (threads_s, n, ctx) = (threads.to_string(), VISION_GEN.to_string(), context.to_string());
    let ngl = o.gpu_layers.to_string();
    let mut args = vec![
        "-m",
        model.to_str().unwrap(),
        "--mmproj",
        mmproj.to_str().unwrap(),
        "-p",
        &prompt,
        "-n",
        &n,
        "--temp",
        "0",
        "-t",
        &threads_s,
        "-c",
        &ctx,
        "-ngl",
        &ngl,
        "--perf",
        "-lv",
        "4",
    ];
    for _ in 0..o.frames {
        args.extend(["--image", ppm.to_str().unwrap()]);
    }
    let mtmd = bin.join("llama-mtmd-cli");

    let provider = local(&model, Some(&mmproj), context, threads, o.gpu_layers);
    let tag = match o.frames {
        1 => format!("vision, {threads} thr"),
        n => format!("vision ({n} frames), {threads} thr"),
    };
    let mut encode = Row::new(format!("{tag}: image encode, ms per frame"), true);
    let mut prompt_rate = Row::new(format!("{tag}: prompt tok/s (text model)"), false);
    let mut gen_rate = Row::new(format!("{tag}: generation tok/s"), false);
    let mut counts = (0, 0, 0, 0);
    for i in 0..runs {
        std::thread::sleep(PAUSE);
        let (_, stderr) = tool(&mtmd, &args);
        let r = parse_mtmd(&stderr).unwrap_or_else(|| panic!("llama-mtmd-cli's report not found:\n{stderr}"));
        encode.llama.push(r.encode_ms);
        // llama_perf's prompt window opens at the first text decode, before
        // the image is encoded, so it holds the encoding too: take it out.
        prompt_rate.llama.push(r.prompt_tokens as f64 * 1000.0 / (r.prompt_ms - r.encode_total_ms));
        gen_rate.llama.push(r.eval_runs as f64 * 1000.0 / r.eval_ms);

        std::thread::sleep(PAUSE);
        run(&provider, &job); // warm-up, as the tools warm up before they measure
        let t = run(&provider, &job);
        encode.vidgate.push(t.encode_ms_per_frame().expect("the encoding is told apart"));
        prompt_rate.vidgate.push(t.prompt_eval_tokens_per_s().expect("the encoding is told apart"));
        gen_rate.vidgate.push(t.generated_tokens_per_s());
        counts = (t.prompt_tokens, r.prompt_tokens, t.generated_tokens, r.eval_runs);
        eprintln!(
            "  {tag} run {}: encode {:.0} / {:.0} ms, prompt {:.0} / {:.0} tok/s, generation {:.1} / {:.1} tok/s (vidgate / llama.cpp)",
            i + 1,
            encode.vidgate[i],
            encode.llama[i],
            prompt_rate.vidgate[i],
            prompt_rate.llama[i],
            gen_rate.vidgate[i],
            gen_rate.llama[i]
        );
    }
    notes.push(format!(
        "{tag}: prompt tokens vidgate {} / llama-mtmd-cli {}; generated tokens vidgate {} / llama-mtmd-cli {} decodes timed",
        counts.0, counts.1, counts.2, counts.3
    ));
    vec![encode, prompt_rate, gen_rate]
}

/// A text job of exactly `TEXT_PROMPT_TOKENS` prompt tokens, found by trying.
fn text_job(provider: &LlamaLocal) -> (Job, u64) {
    const WORDS: &[&str] = &[
        "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "near", "river", "bank", "while", "small",
        "birds", "sing", "in", "tall", "green", "trees",
    ];
    let make = |n: usize, max: u32| {
        let text: Vec<&str> = (0..n).map(|i| WORDS[i % WORDS.len()]).collect();
        job(JobInput::Text(text.join(" ")), "Continue this story at length:", max)
    };
    // Tokens grow about linearly with words, at a rate that depends on the
    // vocabulary: secant steps from a small first guess, keeping the closest.
    let target = TEXT_PROMPT_TOKENS as f64;
    let mut points: Vec<(usize, u64)> = Vec::new();
    let mut n = 100usize;
    for _ in 0..12 {
        let tokens = run(provider, &make(n, 1)).prompt_tokens;
        points.push((n, tokens));
        if tokens == TEXT_PROMPT_TOKENS {
            break;
        }
        let next = match points[..] {
            [.., (n0, t0), (n1, t1)] if t1 != t0 => {
                n1 as f64 + (target - t1 as f64) * (n1 as f64 - n0 as f64) / (t1 as f64 - t0 as f64)
            }
            _ => n as f64 * target / tokens.max(1) as f64,
        };
        let next = (next.round() as usize).max(1);
        n = if next == n {
            if tokens < TEXT_PROMPT_TOKENS {
                n + 1
            } else {
                n.saturating_sub(1).max(1)
            }
        } else {
            next
        };
    }
    let best = points.into_iter().min_by_key(|&(_, t)| t.abs_diff(TEXT_PROMPT_TOKENS)).expect("one try");
    (make(best.0, TEXT_GEN), best.1)
}

fn text(o: &Options, bin: &Path, threads: u32, notes: &mut Vec<String>) -> Vec<Row> {
    let runs = o.runs;
    let model = o.text_model.clone().unwrap_or_else(gemma);
    let provider = local(&model, None, TEXT_CONTEXT, threads, o.gpu_layers);
    let (job, prompt_tokens) = text_job(&provider);
    let bench = bin.join("llama-bench");
    let (m, t, ngl) = (model.to_str().unwrap(), threads.to_string(), o.gpu_layers.to_string());
    // llama-bench gets the count vidgate's job has, should no number of
    // words make exactly `TEXT_PROMPT_TOKENS`.
    let (p, n) = (prompt_tokens.to_string(), TEXT_GEN.to_string());
    let pp_args = ["-m", m, "-t", &t, "-ngl", &ngl, "-p", &p, "-n", "0", "-r", "1", "-o", "json"];
    let tg_args = ["-m", m, "-t", &t, "-ngl", &ngl, "-p", "0", "-n", &n, "-d", &p, "-r", "1", "-o", "json"];
    let tag = format!("text, {threads} thr");
    let mut prompt_rate = Row::new(format!("{tag}: prompt tok/s"), false);
    let mut gen_rate = Row::new(format!("{tag}: generation tok/s"), false);
    let mut generated = 0;
    for i in 0..runs {
        std::thread::sleep(PAUSE);
        prompt_rate.llama.push(parse_bench(&tool(&bench, &pp_args).0));
        std::thread::sleep(PAUSE);
        gen_rate.llama.push(parse_bench(&tool(&bench, &tg_args).0));
        std::thread::sleep(PAUSE);
        run(&provider, &job); // warm-up, as the tools warm up before they measure
        let t = run(&provider, &job);
        prompt_rate.vidgate.push(t.prompt_tokens_per_s());
        gen_rate.vidgate.push(t.generated_tokens_per_s());
        generated = t.generated_tokens;
        eprintln!(
            "  {tag} run {}: prompt {:.0} / {:.0} tok/s, generation {:.1} / {:.1} tok/s (vidgate / llama-bench)",
            i + 1,
            prompt_rate.vidgate[i],
            prompt_rate.llama[i],
            gen_rate.vidgate[i],
            gen_rate.llama[i]
        );
    }
    notes.push(format!(
        "{tag}: prompt tokens vidgate {prompt_tokens} / llama-bench {p}; generated tokens vidgate {generated} / llama-bench {n} (after {p})"
    ));
    vec![prompt_rate, gen_rate]
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The GPU's name and driver, as nvidia-smi tells them.
fn gpu() -> String {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().replace('\n', "; "))
        .unwrap_or_else(|| "unknown (no nvidia-smi)".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let o = options();
    let bin = o.tools.clone().unwrap_or_else(tools);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let load_before = load_average();
    for &threads in &o.threads {
        if o.vision {
            eprintln!("vision model, {threads} threads, {} runs", o.runs);
            rows.extend(vision(&o, &bin, threads, &mut notes));
        }
        if o.text {
            eprintln!("text model, {threads} threads, {} runs", o.runs);
            rows.extend(text(&o, &bin, threads, &mut notes));
        }
    }
    println!("{}", table(&rows));
    println!("Median of {} runs (range in brackets); ratio = vidgate's speed / llama.cpp's.", o.runs);
    println!("{}; load average {load_before} before, {} after.", machine(), load_average());
    if o.gpu_layers > 0 {
        println!("GPU: {}; {} layers offloaded on both sides.", gpu(), o.gpu_layers);
    }
    if o.text {
        let text_model = o.text_model.clone().unwrap_or_else(gemma);
        println!("Text model: {}.", text_model.file_name().unwrap_or_default().to_string_lossy());
    }
    for note in notes {
        println!("- {note}");
    }
}
