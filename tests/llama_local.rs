//! The in-process llama.cpp backend, end to end, on a tiny vision model the
//! tests generate (random weights: the text is gibberish, so only structure
//! is asserted) and on the real Gemma 3 270M for text.
//!
//! Needs Python with `gguf` and `numpy` (fixtures/tiny_vlm/generate.py) and
//! `fixtures/fetch.sh --model gemma3-270m`. Each test fails when one is
//! missing, unless `VIDGATE_ALLOW_SKIP=1`, where it skips with a message.
#![cfg(feature = "local")]

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::media::{Frame, FrameFormat};
use vidgate::provider::llama_local::LlamaLocal;
use vidgate::provider::{Job, JobInput, Provider, ProviderError};
use vidgate::schema::{SamplingMode, Task};

use util::*;

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tiny_vlm/generate.py")
}

/// The generated pair, made once per test process: (model, mmproj, a
/// projector 48 wide that belongs to no model here).
fn tiny() -> Option<&'static (PathBuf, PathBuf, PathBuf)> {
    static FILES: OnceLock<Option<(PathBuf, PathBuf, PathBuf)>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let dir = clip_dir().join("tiny-vlm");
            let made = Command::new("python3").arg(generator()).arg(&dir).status().is_ok_and(|s| s.success());
            // The same projector with mm.2 projecting to 48, not the model's 64.
            let mismatched = dir.join("mmproj-48.gguf");
            let script = "import importlib.util, sys\n\
                spec = importlib.util.spec_from_file_location('gen', sys.argv[1])\n\
                gen = importlib.util.module_from_spec(spec); spec.loader.exec_module(gen)\n\
                gen.N_EMBD = 48\n\
                gen.write_mmproj(sys.argv[2], gen.Init(gen.SEED + 1))\n";
            let made = made
                && Command::new("python3")
                    .args(["-c", script])
                    .arg(generator())
                    .arg(&mismatched)
                    .status()
                    .is_ok_and(|s| s.success());
            made.then(|| (dir.join("tiny-vlm.gguf"), dir.join("tiny-vlm-mmproj.gguf"), mismatched))
        })
        .as_ref()
        .or_else(|| require("the tiny vision model (fixtures/tiny_vlm/generate.py needs python3 with gguf and numpy)"))
}

fn profile(model: &Path, mmproj: Option<&Path>, context: Option<u32>) -> ProviderProfile {
    ProviderProfile {
        protocol: Some(Protocol::LlamaLocal),
        model_path: Some(model.to_path_buf()),
        mmproj_path: mmproj.map(Path::to_path_buf),
        context_tokens: context,
        // The tests run side by side on small machines.
        threads: Some(1),
        ..ProviderProfile::default()
    }
}

fn local(profile: &ProviderProfile) -> LlamaLocal {
    LlamaLocal::from_profile("local", profile, &Config::default()).unwrap()
}

/// RGB frames of the 10 s testsrc clip, `count` spread evenly, 64 px wide.
fn rgb_frames(count: u32) -> Arc<[Frame]> {
    frames(&testsrc_10s(), &plan(SamplingMode::Count { count }, 64)).into()
}

fn job(input: JobInput, max_output_tokens: u32) -> Job {
    Job {
        task: Task::Describe,
        input,
        prompt: "Describe what the frames show.".into(),
        prompt_version: "chunk@1".into(),
        max_output_tokens,
        span: None,
    }
}

#[allow(clippy::result_large_err)] // the trait's own error type
fn run(provider: &LlamaLocal, job: &Job) -> Result<vidgate::provider::ProviderOutput, ProviderError> {
    block_on(provider.run(job))
}

#[test]
fn several_frames_go_into_one_prompt_with_their_times() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), None));
    let facts = block_on(provider.load()).expect("the generated pair loads");
    assert_eq!((facts.image_tokens, facts.n_embd, facts.n_ctx), (Some(16), 64, 2048), "{facts:?}");
    let caps = provider.capabilities();
    assert!(caps.offline && !caps.native_video && caps.json_schema && caps.max_images_per_call > 10, "{caps:?}");
    // The context as loaded (the model's training context, under the default),
    // which merge calls are sized to.
    assert_eq!(caps.context_tokens, Some(2048));

    let frames = rgb_frames(3);
    let out = run(&provider, &job(JobInput::Frames(frames.clone()), 8)).expect("frames are described");
    assert_eq!(out.observations.len(), 1, "three frames fit one prompt: {:?}", out.observations);
    let o = &out.observations[0];
    assert_eq!((o.range.start_ms, o.range.end_ms), (frames[0].pts_ms, frames[2].pts_ms + 1));
    assert!(!o.text.is_empty(), "some text came back");
    assert_eq!((o.provider.as_str(), o.model.as_deref()), ("local", Some("tiny-vlm")));
    assert!(out.usage.output_tokens > 0 && out.usage.output_tokens <= 8, "{:?}", out.usage);
    assert_eq!(out.usage.cost_usd, 0.0);
    let timings = provider.last_timings().unwrap();
    assert_eq!((timings.frames, timings.prompt_tokens), (3, out.usage.input_tokens), "{timings:?}");

    // Each frame costs its 16 image tokens and its timestamp text.
    let two = run(&provider, &job(JobInput::Frames(frames[..2].to_vec().into()), 8)).unwrap();
    let per_frame = out.usage.input_tokens - two.usage.input_tokens;
    assert!(per_frame > 16 + 8, "16 image tokens and a label like \"Frame at 00:06.666:\": {per_frame}");

    // Greedy sampling: the same job gives the same answer; the estimate is free.
    let again = run(&provider, &job(JobInput::Frames(frames.clone()), 8)).unwrap();
    assert_eq!(again.observations[0].text, o.text);
    let estimate = provider.estimate(&job(JobInput::Frames(frames), 8)).unwrap();
    assert_eq!((estimate.output_tokens, estimate.cost_usd), (8, 0.0));
    assert!(estimate.input_tokens >= 3 * 16, "{estimate:?}");
}

#[test]
fn sampling_settings_come_from_the_profile_and_a_seed_repeats_the_answer() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let frames = job(JobInput::Frames(rgb_frames(2)), 16);
    let text = |profile: &ProviderProfile| {
        let provider = local(profile);
        let out = run(&provider, &frames).expect("the job runs");
        assert_eq!(out.observations.len(), 1);
        (out.observations[0].text.clone(), out.usage.output_tokens)
    };
    let base = profile(model, Some(mmproj), None);
    // A profile built in code is checked as a loaded config is.
    let bad = ProviderProfile { top_p: Some(1.5), ..base.clone() };
    let err = LlamaLocal::from_profile("local", &bad, &Config::default()).unwrap_err().to_string();
    assert!(err.contains("providers.local.top_p: 1.5 is outside [0, 1]"), "{err}");
    let with = |temperature: f64, seed: u32| ProviderProfile {
        temperature: Some(temperature),
        seed: Some(seed),
        // No filter: every token may be drawn.
        top_k: Some(0),
        top_p: Some(1.0),
        min_p: Some(0.0),
        ..base.clone()
    };

    // Greedy by default; a temperature of 0 is greedy whatever the seed, and
    // so is a draw from the one likeliest token.
    let greedy = text(&base);
    assert!(!greedy.0.is_empty(), "{greedy:?}");
    assert_eq!(text(&with(0.0, 5)), greedy);
    assert_eq!(text(&ProviderProfile { top_k: Some(1), ..with(1.0, 5) }), greedy);

    // With a temperature, the same seed gives the same answer through the
    // whole chain (penalty, top-k, top-p, min-p, temperature, draw), on the
    // same provider and on a new one.
    let chain = ProviderProfile {
        top_k: Some(40),
        top_p: Some(0.95),
        min_p: Some(0.05),
        repeat_penalty: Some(1.3),
        repeat_last_n: Some(8),
        ..with(1.5, 7)
    };
    let provider = local(&chain);
    let first = run(&provider, &frames).unwrap().observations[0].text.clone();
    assert_eq!(run(&provider, &frames).unwrap().observations[0].text, first, "the same provider, again");
    assert_eq!(text(&chain).0, first, "a new provider with the same seed");

    // And draws: over a few seeds, not every answer is the greedy one, and
    // not every seed gives the same answer.
    let drawn: Vec<_> = (1..=4).map(|seed| text(&with(1.5, seed))).collect();
    assert!(drawn.iter().any(|d| *d != greedy), "{greedy:?} {drawn:?}");
    assert!(drawn.iter().any(|d| *d != drawn[0]), "{drawn:?}");
}

/// `{` then `"events"`, with any whitespace around: how the timeline JSON
/// starts.
fn opens_a_timeline(text: &str) -> bool {
    text.trim_start().strip_prefix('{').is_some_and(|rest| rest.trim_start().starts_with("\"events\""))
}

/// A structured answer under the grammar is JSON of the timeline's shape, so
/// either its events, or a unit failure without a repair that names what is
/// wrong with the events; only an answer cut at `max` tokens is not JSON.
/// Whether the JSON was complete.
fn held_to_the_grammar(result: Result<vidgate::provider::ProviderOutput, ProviderError>, max: u32) -> bool {
    let err = match result {
        Ok(_) => return true,
        Err(err) => err,
    };
    assert!(err.message.contains("although its form was constrained, so it is not asked again"), "{err}");
    let billed = err.billed.as_deref().copied().unwrap_or_default();
    if err.message.contains("not the requested JSON") {
        assert_eq!(billed.output_tokens, u64::from(max), "only a cut answer is not JSON: {err}");
        return false;
    }
    true
}

#[test]
fn timeline_and_find_jobs_are_held_to_their_json_by_a_grammar() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), None));
    let max = 256;
    let timeline = Job {
        task: Task::Timeline,
        prompt: "List the events as JSON.".into(),
        ..job(JobInput::Text("00:01 a red car passes a bakery.\n00:04 a dog crosses the street.".into()), max)
    };
    let find = Job { task: Task::Find { what: "a dog".into() }, ..timeline.clone() };
    let frames = Job { input: JobInput::Frames(rgb_frames(2)), ..timeline.clone() };
    let mut complete = 0;
    for job in [&timeline, &find, &frames] {
        if held_to_the_grammar(run(&provider, job), max) {
            complete += 1;
        }
    }
    assert!(complete > 0, "the greedy answers of this model end within {max} tokens");

    // Drawn tokens too: a pick the grammar forbids is drawn again.
    let drawn = ProviderProfile {
        temperature: Some(1.5),
        seed: Some(7),
        top_k: Some(0),
        top_p: Some(1.0),
        min_p: Some(0.0),
        ..profile(model, None, None)
    };
    held_to_the_grammar(run(&local(&drawn), &Job { max_output_tokens: 64, ..timeline.clone() }), 64);

    // `json_grammar = false`: the same job is generated freely, and gets its one repair.
    let off = local(&ProviderProfile { json_grammar: Some(false), ..profile(model, None, None) });
    assert!(!off.capabilities().json_schema);
    let err = run(&off, &timeline).unwrap_err();
    assert!(err.message.contains("unit failed: the answer stayed invalid after one repair"), "{err}");
    assert!(err.billed.unwrap().output_tokens > u64::from(max), "two calls were made");

    // Without the grammar the random model writes no such thing.
    let free = run(&provider, &Job { task: Task::Describe, ..timeline.clone() }).unwrap();
    assert!(!opens_a_timeline(&free.observations[0].text), "{:?}", free.observations[0].text);

    // A cap that cuts the JSON leaves it cut, and the timeline parser refuses it.
    let cut = run(&provider, &Job { max_output_tokens: 4, ..timeline.clone() }).unwrap_err();
    assert!(!held_to_the_grammar(Err(cut.clone()), 4), "{cut}");
    assert_eq!(cut.billed.unwrap().output_tokens, 4);
}

#[test]
fn frames_that_do_not_fit_together_are_chunked() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), Some(160)));
    let frames = rgb_frames(5);
    let out = run(&provider, &job(JobInput::Frames(frames.clone()), 4)).expect("chunks are described");
    let ranges: Vec<(u64, u64)> = out.observations.iter().map(|o| (o.range.start_ms, o.range.end_ms)).collect();
    assert!(ranges.len() > 1 && ranges.len() < 5, "several chunks, some of several frames: {ranges:?}");
    assert_eq!(ranges[0].0, frames[0].pts_ms);
    assert_eq!(ranges.last().unwrap().1, frames[4].pts_ms + 1);
    let pts = pts(&frames);
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "in order, not overlapping: {ranges:?}");
        assert!(
            pts.contains(&pair[1].0) && pts.contains(&(pair[0].1 - 1)),
            "chunks start and end at frames: {ranges:?}"
        );
    }
    assert!(out.usage.output_tokens <= 4 * ranges.len() as u64);
    assert!(out.usage.input_tokens > 5 * 16, "{:?}", out.usage);
    assert_eq!(provider.last_timings().unwrap().frames, 5);
}

#[test]
fn generation_runs_to_the_requested_length_or_the_end_of_generation() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), None));
    let frames = rgb_frames(2);
    let out = run(&provider, &job(JobInput::Frames(frames.clone()), 64)).unwrap();
    let n = out.usage.output_tokens;
    assert!(n > 0 && n <= 64, "{n}");
    if n < 64 {
        // It stopped at an end-of-generation token: a larger cap changes nothing.
        let longer = run(&provider, &job(JobInput::Frames(frames), 128)).unwrap();
        assert_eq!(longer.usage.output_tokens, n);
    }
}

#[test]
fn a_dropped_job_stops_and_the_next_one_runs() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), None));
    block_on(provider.load()).unwrap();
    let long = job(JobInput::Frames(rgb_frames(8)), 1500);
    let started = Instant::now();
    let full = run(&provider, &long).unwrap();
    let whole = started.elapsed();
    assert!(provider.last_timings().is_some_and(|t| !t.cancelled));

    // About a tenth of the time goes to the prompt: this cuts into generation.
    let cut = block_on(async { tokio::time::timeout(whole / 3, provider.run(&long)).await });
    assert!(cut.is_err(), "the job was cut off after {:?} of {whole:?}", whole / 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        match provider.last_timings() {
            Some(t) if t.cancelled => break t,
            _ if Instant::now() > deadline => panic!("the worker did not stop the dropped job"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    assert!(stopped.generated_tokens < full.usage.output_tokens.max(1), "{stopped:?} vs {:?}", full.usage);

    let next = run(&provider, &job(JobInput::Text("a red car".into()), 4)).expect("the next job runs");
    assert!(next.usage.output_tokens > 0);
    assert!(!provider.last_timings().unwrap().cancelled);
}

#[test]
fn missing_and_foreign_files_are_named_before_llama_cpp_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.gguf");
    let err = LlamaLocal::from_profile("local", &profile(&absent, None, None), &Config::default()).unwrap_err();
    assert!(err.to_string().contains(&format!("model {} does not exist", absent.display())), "{err}");

    let random = dir.path().join("random.gguf");
    std::fs::write(&random, (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>())
        .unwrap();
    let err = LlamaLocal::from_profile("local", &profile(&random, None, None), &Config::default()).unwrap_err();
    assert!(err.to_string().contains("is not a GGUF file"), "{err}");

    let err =
        LlamaLocal::from_profile("local", &profile(&random, Some(&absent), None), &Config::default()).unwrap_err();
    assert!(err.to_string().contains("is not a GGUF file"), "the model is checked first: {err}");
    let no_path = ProviderProfile { model_path: None, model: Some("smolvlm2".into()), ..profile(&random, None, None) };
    let err = LlamaLocal::from_profile("local", &no_path, &Config::default()).unwrap_err();
    assert!(err.to_string().contains("providers.local.model_path is not set"), "{err}");
}

#[test]
fn a_corrupt_gguf_fails_to_load_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2246822519) >> 11) as u8));
    std::fs::write(&corrupt, bytes).unwrap();
    let provider = local(&profile(&corrupt, None, None));
    let err = block_on(provider.load()).unwrap_err();
    assert!(err.should_fall_back(), "{err:?}");
    assert!(err.to_string().contains(&format!("cannot load the model {}", corrupt.display())), "{err}");
    let again = run(&provider, &job(JobInput::Text("x".into()), 4)).unwrap_err();
    assert_eq!(again.message, err.message, "every job gets the load error");
}

#[test]
fn a_projector_made_for_another_model_is_refused() {
    let Some((model, _, mismatched)) = tiny() else { return };
    let provider = local(&profile(model, Some(mismatched), None));
    let err = run(&provider, &job(JobInput::Frames(rgb_frames(1)), 4)).unwrap_err();
    assert!(err.should_fall_back(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("does not load with the model") && text.contains("n_embd = 64") && text.contains("n_embd = 48"),
        "{text}"
    );
}

#[test]
fn frames_need_a_projector_and_rgb() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let text_only = local(&profile(model, None, None));
    let frames = job(JobInput::Frames(rgb_frames(1)), 4);
    for err in [text_only.estimate(&frames).unwrap_err(), run(&text_only, &frames).unwrap_err()] {
        assert!(err.should_fall_back(), "{err:?}");
        assert!(err.to_string().contains("model tiny-vlm has no vision projector (mmproj_path)"), "{err}");
    }
    assert!(run(&text_only, &job(JobInput::Text("a red car".into()), 4)).is_ok(), "text still works");

    let vision = local(&profile(model, Some(mmproj), None));
    let jpeg =
        frames_as(&testsrc_10s(), &plan(SamplingMode::Count { count: 1 }, 64), FrameFormat::Jpeg { quality: 80 })
            .unwrap();
    let err = run(&vision, &job(JobInput::Frames(jpeg.into()), 4)).unwrap_err();
    assert!(err.to_string().contains("is JPEG; the local model takes RGB frames"), "{err}");
}

#[test]
fn a_prompt_that_cannot_fit_the_context_is_refused_with_the_numbers() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let provider = local(&profile(model, Some(mmproj), Some(96)));
    let long = "the red car passes the street ".repeat(20);
    let err = run(&provider, &job(JobInput::Text(long), 8)).unwrap_err();
    assert!(err.should_fall_back(), "{err:?}");
    assert!(err.to_string().contains("tokens do not fit the context of 96"), "{err}");

    // One frame with the prompt cannot fit when the answer takes most of it.
    let err = run(&provider, &job(JobInput::Frames(rgb_frames(1)), 80)).unwrap_err();
    assert!(
        err.to_string().contains("do not fit the context of 96") && err.to_string().contains("80 reserved"),
        "{err}"
    );
}

#[test]
fn gemma_writes_text_and_refuses_frames() {
    let Some(model) = gemma() else { return };
    let provider = local(&profile(&model, None, Some(1024)));
    let merge = Job {
        prompt: "Summarise these observations in one sentence:".into(),
        ..job(JobInput::Text("00:01 a red car passes a bakery.\n00:04 a dog crosses the street.".into()), 16)
    };
    let out = run(&provider, &merge).expect("Gemma 3 270M writes text");
    let o = &out.observations[0];
    assert!(!o.text.is_empty() && o.model.as_deref() == Some("gemma-3-270m-q4_k_m"), "{o:?}");
    assert!(
        out.usage.input_tokens > 20 && out.usage.output_tokens > 0 && out.usage.output_tokens <= 16,
        "{:?}",
        out.usage
    );
    let t = provider.last_timings().unwrap();
    eprintln!(
        "gemma: {:?}; {:.0} prompt tok/s, {:.0} generated tok/s: {:?}",
        out.usage,
        t.prompt_tokens_per_s(),
        t.generated_tokens_per_s(),
        o.text
    );
    let err = run(&provider, &job(JobInput::Frames(rgb_frames(1)), 4)).unwrap_err();
    assert!(err.to_string().contains("has no vision projector (mmproj_path)"), "{err}");
}

/// Speed figures, run alone: `cargo test --test llama_local -- --ignored --nocapture speed`.
#[test]
#[ignore = "a benchmark: run alone"]
fn speed() {
    let threads = std::env::var("VIDGATE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    if let Some((model, mmproj, _)) = tiny() {
        let provider = local(&ProviderProfile { threads: Some(threads), ..profile(model, Some(mmproj), None) });
        block_on(provider.load()).unwrap();
        let frames = rgb_frames(8);
        for _ in 0..3 {
            run(&provider, &job(JobInput::Frames(frames.clone()), 128)).unwrap();
            let t = provider.last_timings().unwrap();
            eprintln!(
                "tiny-vlm, {threads} threads, 8 frames: {} prompt tokens at {:.0} tok/s, {:.2} ms per frame, {} generated at {:.0} tok/s",
                t.prompt_tokens, t.prompt_tokens_per_s(), t.ms_per_frame(), t.generated_tokens, t.generated_tokens_per_s()
            );
        }
    }
    if let Some(model) = gemma() {
        let provider = local(&ProviderProfile { threads: Some(threads), ..profile(&model, None, Some(1024)) });
        block_on(provider.load()).unwrap();
        let text = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(4);
        for _ in 0..3 {
            run(&provider, &Job { prompt: "Continue:".into(), ..job(JobInput::Text(text.clone()), 128) }).unwrap();
            let t = provider.last_timings().unwrap();
            eprintln!(
                "gemma-3-270m, {threads} threads: {} prompt tokens at {:.0} tok/s, {} generated at {:.0} tok/s",
                t.prompt_tokens,
                t.prompt_tokens_per_s(),
                t.generated_tokens,
                t.generated_tokens_per_s()
            );
        }
        // The same with the timeline JSON grammar checking each token.
        let timeline = Job {
            task: Task::Timeline,
            prompt: "List the events as JSON: {\"events\":[{\"start\":\"MM:SS.mmm\",\"end\":\"MM:SS.mmm\",\"text\":\"...\"}]}"
                .into(),
            ..job(JobInput::Text(text.clone()), 128)
        };
        for _ in 0..3 {
            // Timed whether or not this model's events are valid.
            let _ = run(&provider, &timeline);
            let t = provider.last_timings().unwrap();
            eprintln!(
                "gemma-3-270m, {threads} threads, timeline under the JSON grammar: {} generated at {:.0} tok/s",
                t.generated_tokens,
                t.generated_tokens_per_s()
            );
        }
    }
}

#[test]
fn describe_runs_offline_on_the_local_model() {
    let Some((model, mmproj, _)) = tiny() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[sampling]\nfps = 0.5\nwidth = 128\n\n[providers.local]\nmodel_path = {:?}\nmmproj_path = {:?}\nthreads = 1\ncontext_tokens = 4096\n",
            model.display().to_string(),
            mmproj.display().to_string()
        ),
    )
    .unwrap();
    let out = vidgate().args(["describe", "--json", "--config"]).arg(&config).arg(testsrc_10s()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let observations = report["observations"].as_array().unwrap();
    assert!(!observations.is_empty());
    assert_eq!(observations[0]["provider"], "local");
    assert_eq!(report["usage"]["cost_usd"], 0.0);
    assert!(report["usage"]["input_tokens"].as_u64().unwrap() > 5 * 16, "five frames of 16 image tokens");
    // The story was merged by the same local model, with text generation.
    assert_eq!(report["prompt_versions"], serde_json::json!(["chunk@1", "story@2"]));
    assert!(report["attempts"].as_array().unwrap().iter().all(|a| a["outcome"]["kind"] == "ok"), "{report}");
    assert!(report["story"].is_string(), "{report}");
}

#[test]
fn with_no_model_downloaded_the_error_names_the_command_that_fetches_one() {
    let cache = tempfile::tempdir().unwrap();
    let out =
        vidgate().arg("describe").arg(testsrc_10s()).env("VIDGATE__MODELS__CACHE_DIR", cache.path()).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(
        err.contains("`vidgate models pull smolvlm2-256m-video-instruct` fetches it (or run again with --yes)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
