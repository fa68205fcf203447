//! `vidgate describe VIDEO --provider NAME`: frames to one provider, observations back.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use vidgate::config::{Config, Protocol};
use vidgate::media::{self, Extraction, FrameFormat, MediaInfo};
use vidgate::merge::{ObservationSink, TimelineBuilder};
use vidgate::observe::{observe_frames, ObserveSettings, Observed};
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::prompts;
use vidgate::provider::gemini::Gemini;
use vidgate::provider::openai_compat::OpenAiCompat;
use vidgate::provider::Provider;
use vidgate::provider::{Job, JobInput};
use vidgate::schema::{SamplingMode, SamplingPlan, Task, TimeRange, Usage, VideoReport};
use vidgate::{render, timecode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Srt,
    Vtt,
    Json,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub video: PathBuf,
    /// The provider profile to use (a name from providers/ or your config);
    /// the first of `router.chain` when absent.
    #[arg(long)]
    pub provider: Option<String>,
    /// Download the local model if it is missing, without asking.
    #[arg(long)]
    pub yes: bool,
    /// Print the whole report as JSON (the same as `--format json`).
    #[arg(long)]
    pub json: bool,
    /// How to print the result: text (the observations), markdown, srt, vtt or json.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub async fn run(args: DescribeArgs, config: &Config) -> anyhow::Result<()> {
    let name = match &args.provider {
        Some(name) => name.as_str(),
        None => config
            .router
            .chain
            .first()
            .map(String::as_str)
            .context("router.chain is empty: name a provider with --provider")?,
    };
    let Some(profile) = config.provider(name) else {
        let known: Vec<&str> = config.providers.keys().map(String::as_str).collect();
        bail!("no provider called `{name}`; known: {}", known.join(", "));
    };
    let backend: Arc<dyn Provider> = match profile.protocol {
        Some(Protocol::Openai) => Arc::new(OpenAiCompat::from_profile(name, profile, config)?),
        Some(Protocol::Gemini) => Arc::new(Gemini::from_profile(name, profile, config)?),
        Some(Protocol::LlamaLocal) => super::local::backend(name, profile, config, args.yes).await?,
        None => bail!("providers.{name}.protocol is not set"),
    };
    let info = media::probe(&args.video, &config.limits).await?;
    let s = &config.sampling;
    let plan =
        SamplingPlan { mode: SamplingMode::Fps { fps: s.fps }, range: None, max_frames: s.max_frames, width: s.width };
    let extraction = Extraction::new(
        &info,
        &plan,
        s,
        if profile.protocol == Some(Protocol::LlamaLocal) {
            FrameFormat::Rgb
        } else {
            FrameFormat::Jpeg { quality: s.jpeg_quality }
        },
        Duration::from_secs_f64(config.limits.extract_timeout_s),
    )?;
    let budget = Budget::new(config.budget.max_usd_per_request);
    let log = AttemptLog::default();
    let stack = policy::standard_stack(backend, profile, config, budget.clone(), log.clone());
    let mut warnings = Vec::new();
    let observed = if stack.capabilities().native_video {
        native(stack, &info, config).await?
    } else {
        let frames = media::extract(extraction)?;
        warnings = frames.warnings();
        let settings = ObserveSettings {
            task: Task::Describe,
            frames_per_call: stack.capabilities().max_images_per_call,
            concurrency: profile.limits.max_concurrency.unwrap_or(4).max(1) as usize,
            max_output_tokens: 300,
            duration_ms: info.duration_ms,
        };
        observe_frames(stack, frames, &settings, config.prompts_dir.as_deref()).await?
    };

    let attempts = log.snapshot();
    let mut usage = Usage::default();
    for a in &attempts {
        usage.add(&a.usage);
    }
    let unknown = budget.spent() - usage.cost_usd;
    if unknown > 1e-9 {
        warnings.push(format!(
            "calls that failed without an answer may have been billed up to ${unknown:.4}; counted against the budget"
        ));
    }
    for (span, e) in &observed.failures {
        warnings.push(format!("{}–{}: {e}", timecode::format(span.start_ms), timecode::format(span.end_ms)));
    }
    if observed.observations.is_empty() {
        match observed.failures.last() {
            Some((_, e)) => bail!("every call to `{name}` failed; the last: {e}"),
            None => bail!("{}: no frames could be sampled", args.video.display()),
        }
    }
    let mut timeline = TimelineBuilder::default();
    for o in &observed.observations {
        timeline.observe(o.clone());
    }
    let report = VideoReport {
        events: timeline.events(),
        observations: observed.observations,
        usage,
        attempts,
        warnings,
        prompt_versions: observed.prompt_versions,
        ..VideoReport::default()
    };
    let mut out = std::io::stdout().lock();
    let format = if args.json { Format::Json } else { args.format };
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        match format {
            Format::Markdown => out.write_all(render::markdown(&report).as_bytes())?,
            Format::Srt => out.write_all(render::srt(&report.events).as_bytes())?,
            Format::Vtt => out.write_all(render::vtt(&report.events).as_bytes())?,
            _ => {
                for o in &report.observations {
                    writeln!(out, "{}  {}", timecode::format(o.range.start_ms), o.text.replace('\n', " "))?;
                }
            }
        }
        for w in &report.warnings {
            eprintln!("vidgate: warning: {w}");
        }
        eprintln!(
            "{} frames, {} calls to {name}, {} input + {} output tokens, ${:.4}",
            observed.frames,
            report.attempts.len(),
            report.usage.input_tokens,
            report.usage.output_tokens,
            report.usage.cost_usd
        );
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// The whole video in one call, to a provider that understands video itself.
async fn native(stack: Arc<dyn Provider>, info: &MediaInfo, config: &Config) -> anyhow::Result<Observed> {
    let template = prompts::load("chunk", config.prompts_dir.as_deref())?;
    let (start, end) = (timecode::format(0), timecode::format(info.duration_ms));
    let span = TimeRange { start_ms: 0, end_ms: info.duration_ms.max(1) };
    let job = Job {
        task: Task::Describe,
        input: JobInput::Video {
            path: info.path.clone(),
            range: None,
            duration_ms: info.duration_ms,
            size_bytes: info.size_bytes,
        },
        prompt: template.render(&[("start", &start), ("end", &end)])?.into(),
        prompt_version: template.id().into(),
        max_output_tokens: 2048,
        span: Some(span),
    };
    let mut observed = Observed { frames: 0, prompt_versions: vec![template.id()], ..Observed::default() };
    match stack.run(&job).await {
        Ok(out) => observed.observations = out.observations,
        Err(e) => observed.failures.push((span, e)),
    }
    Ok(observed)
}
