//! `vidgate describe|timeline|ask|find VIDEO`, `vidgate plan` and
//! `vidgate resume`: the one call, through [`Gateway`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use vidgate::config::{Config, Protocol};
use vidgate::gateway::{Gateway, GatewayError, Plan};
use vidgate::progress::{Progress, ProgressSender};
use vidgate::schema::{Constraints, Task, VideoReport, VideoRequest, VideoSource};
use vidgate::{render, timecode};

use super::sampling::SamplingArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    #[value(alias = "markdown")]
    Md,
    Srt,
    Vtt,
}

/// Which providers may serve a request, and for how much.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Use only this provider profile (a name from providers/ or your config),
    /// instead of the configured chain.
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Spend at most this much on this request, in US dollars (never more
    /// than budget.max_usd_per_request).
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Only providers that need no network (the local model).
    #[arg(long)]
    pub offline: bool,
}

impl RouteArgs {
    fn constraints(&self) -> anyhow::Result<Constraints> {
        if let Some(usd) = self.max_cost {
            anyhow::ensure!(usd.is_finite() && usd >= 0.0, "--max-cost {usd} is not an amount of dollars ≥ 0");
        }
        Ok(Constraints {
            max_cost_usd: self.max_cost,
            deadline_ms: None,
            allowed_providers: self.provider.iter().cloned().collect(),
            offline_only: self.offline,
        })
    }
}

/// Flags every task command takes.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The video: a file, or an http(s) URL that vidgate downloads itself.
    pub video: PathBuf,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub deadline: Option<f64>,
    /// Download the local model if it is missing, without asking.
    #[arg(long)]
    pub yes: bool,
    /// Print the whole report as JSON (the same as `--format json`).
    #[arg(long)]
    pub json: bool,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

impl TaskArgs {
    pub fn config_overrides(&self) -> Vec<(String, String)> {
        self.sampling.config_overrides()
    }

    fn request(&self, task: Task, config: &Config) -> anyhow::Result<VideoRequest> {
        let mut request = VideoRequest::new(&self.video, task);
        request.source = source_of(&self.video);
        request.sampling = self.sampling.plan(config)?;
        if let Some(s) = self.deadline {
            anyhow::ensure!(s.is_finite() && s > 0.0, "--deadline {s} is not a number of seconds > 0");
        }
        request.constraints =
            Constraints { deadline_ms: self.deadline.map(|s| (s * 1000.0) as u64), ..self.route.constraints()? };
        Ok(request)
    }
}

pub async fn run(task: Task, args: TaskArgs, mut config: Config) -> anyhow::Result<()> {
    let request = args.request(task, &config)?;
    offer_local_model(&mut config, &request, args.yes).await?;
    let gateway = Gateway::from_config(config)?;
    let format = if args.json { Format::Json } else { args.format };
    let report = with_progress(|tx| gateway.run_with_progress(request, tx)).await;
    print_result(report, format, &gateway)
}

pub async fn resume(format: Format, config: Config) -> anyhow::Result<()> {
    let gateway = Gateway::from_config(config)?;
    let report = with_progress(|tx| gateway.resume(tx)).await;
    print_result(report, format, &gateway)
}

/// `http://` and `https://` arguments are URL sources; anything else is a file.
pub(super) fn source_of(video: &std::path::Path) -> VideoSource {
    match video.to_str().filter(|t| vidgate::fetch::is_url(t)) {
        Some(url) => VideoSource::Url { url: url.to_string() },
        None => VideoSource::Path { path: video.to_path_buf() },
    }
}

/// The local model is downloaded (after asking, or with `--yes`) when it
/// heads the chain; as a fallback further down, a missing model is only a
/// warning naming the command that fetches it.
async fn offer_local_model(config: &mut Config, request: &VideoRequest, yes: bool) -> anyhow::Result<()> {
    let chain = vidgate::router::chain(config, request.task.name(), &request.constraints)?;
    let Some(first) = chain.first().cloned() else { return Ok(()) };
    let Some(profile) = config.provider(&first).cloned() else { return Ok(()) };
    if profile.protocol == Some(Protocol::LlamaLocal) && cfg!(feature = "local") {
        let filled = super::local::with_model_files(&first, &profile, config, yes).await?;
        config.providers.insert(first, filled);
    }
    Ok(())
}

async fn with_progress<F, Fut>(run: F) -> Result<VideoReport, GatewayError>
where
    F: FnOnce(Option<ProgressSender>) -> Fut,
    Fut: std::future::Future<Output = Result<VideoReport, GatewayError>>,
{
    if !std::io::stderr().is_terminal() {
        return run(None).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let drawer = tokio::spawn(async move {
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            |template: &str| ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let frames = bars.add(ProgressBar::new(0));
        frames.set_style(style("{prefix:>8} {bar:30} {pos}/{len} {wide_msg}"));
        frames.set_prefix("frames");
        let calls = bars.add(ProgressBar::new(0));
        calls.set_style(style("{prefix:>8} {bar:30} {pos}/{len} {wide_msg} {elapsed_precise}"));
        calls.set_prefix("calls");
        calls.enable_steady_tick(std::time::Duration::from_millis(200));
        let mut spent = 0.0;
        while let Some(event) = rx.recv().await {
            match event {
                Progress::Downloading { bytes, total } => {
                    frames.set_message(match total {
                        Some(t) => format!("downloading {:.1} of {:.1} MB", bytes as f64 / 1e6, t as f64 / 1e6),
                        None => format!("downloading {:.1} MB", bytes as f64 / 1e6),
                    });
                }
                Progress::Probed { duration_ms } => frames.set_message(format!("of {}", timecode::format(duration_ms))),
                Progress::Planned { providers, frames: n, calls: c, estimated_usd } => {
                    frames.set_length(u64::from(n.unwrap_or(0)));
                    calls.set_length(u64::from(c));
                    calls.set_message(format!("{} · up to ${estimated_usd:.4}", providers.join(" → ")));
                }
                Progress::Sampled { frames: n } => frames.set_position(u64::from(n)),
                Progress::Uploading { provider, bytes } => {
                    frames.set_message(format!("sending the video ({:.1} MB) to {provider}", bytes as f64 / 1e6));
                }
                Progress::Unit { provider, reused, spent_usd } => {
                    spent = spent_usd;
                    calls.inc(1);
                    let how = if reused { "from the journal" } else { "answered" };
                    calls.set_message(format!("{provider}: {how} · spent ${spent:.4}"));
                }
                Progress::Merging { .. } => calls.set_message(format!("merging observations · spent ${spent:.4}")),
                Progress::Done { .. } => break,
            }
        }
        frames.finish_and_clear();
        calls.finish_and_clear();
    });
    let result = run(Some(tx)).await;
    let _ = drawer.await;
    result
}

fn print_result(result: Result<VideoReport, GatewayError>, format: Format, gateway: &Gateway) -> anyhow::Result<()> {
    let report = match result {
        Ok(report) => report,
        Err(GatewayError::Failed { summary, partial, .. }) => {
            if !partial.observations.is_empty() {
                eprintln!(
                    "vidgate: {} observations were made before the failure; {}",
                    partial.observations.len(),
                    gateway.kept_note(partial.unsaved_units)
                );
            }
            anyhow::bail!(summary);
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Md => out.write_all(render::markdown(&report).as_bytes())?,
        Format::Srt => out.write_all(render::srt(&report.events).as_bytes())?,
        Format::Vtt => out.write_all(render::vtt(&report.events).as_bytes())?,
        Format::Text => {
            if let Some(story) = &report.story {
                writeln!(out, "{}", story.trim())?;
            } else if let Some(answer) = &report.answer {
                writeln!(out, "{}", answer.trim())?;
            } else if report.events.is_empty() {
                writeln!(out, "(nothing found)")?;
            } else {
                for e in &report.events {
                    let text = e.text.split_whitespace().collect::<Vec<_>>().join(" ");
                    writeln!(out, "{}–{}  {text}", timecode::format(e.start_ms), timecode::format(e.end_ms))?;
                }
            }
        }
    }
    out.flush().context("writing to stdout")?;
    if format != Format::Json {
        for w in &report.warnings {
            eprintln!("vidgate: warning: {w}");
        }
        eprintln!("{}", summary_line(&report));
    }
    Ok(())
}

fn summary_line(report: &VideoReport) -> String {
    let reused = match report.reused_units {
        0 => String::new(),
        n => format!(", {n} units reused from the journal"),
    };
    format!(
        "{} observations by {}, {} calls, {} input + {} output tokens, ${:.4}{reused}",
        report.observations.len(),
        if report.providers.is_empty() { "-".to_string() } else { report.providers.join(", ") },
        report.attempts.len(),
        report.usage.input_tokens,
        report.usage.output_tokens,
        report.usage.cost_usd,
    )
}

/// `vidgate plan VIDEO [TASK]`: the candidates, spending nothing.
#[derive(Debug, Args)]
pub struct PlanArgs {
    pub video: PathBuf,
    /// describe, timeline, ask or find.
    #[arg(default_value = "describe", value_parser = ["describe", "timeline", "ask", "find"])]
    pub task: String,
    #[command(flatten)]
    pub route: RouteArgs,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub async fn plan(args: PlanArgs, config: Config) -> anyhow::Result<()> {
    let task = match args.task.as_str() {
        "timeline" => Task::Timeline,
        "ask" => Task::Ask { question: String::new() },
        "find" => Task::Find { what: String::new() },
        _ => Task::Describe,
    };
    let mut request = VideoRequest::new(&args.video, task);
    request.source = source_of(&args.video);
    request.sampling = args.sampling.plan(&config)?;
    request.constraints = args.route.constraints()?;
    let gateway = Gateway::from_config(config)?;
    let plan = gateway.plan(&request).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &plan)?;
        writeln!(out)?;
    } else {
        print_plan(&mut out, &plan)?;
    }
    Ok(())
}

fn print_plan(out: &mut impl Write, plan: &Plan) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} of a {} video; this request may spend ${:.4}",
        plan.task,
        timecode::format(plan.duration_ms),
        plan.budget_usd
    )?;
    writeln!(
        out,
        "{:<14} {:<28} {:<6} {:>6} {:>5} {:>6} {:>10} {:>8} {:>10}",
        "provider", "model", "shape", "frames", "width", "calls", "in tok", "out tok", "cost"
    )?;
    for c in &plan.candidates {
        let shape = match c.shape {
            vidgate::gateway::Shape::Video => "video",
            vidgate::gateway::Shape::Frames => "frames",
        };
        let frames = c.frames.map_or("-".to_string(), |n| n.to_string());
        writeln!(
            out,
            "{:<14} {:<28} {:<6} {:>6} {:>5} {:>6} {:>10} {:>8} {:>10}",
            c.provider,
            c.model,
            shape,
            frames,
            c.width,
            c.observe_calls + c.merge_calls,
            c.input_tokens,
            c.output_tokens,
            format!("${:.4}", c.estimated_usd)
        )?;
        if let Some(e) = &c.error {
            writeln!(out, "{:<14} cannot serve this: {e}", "")?;
        }
        if let Some(bytes) = c.download_bytes {
            writeln!(
                out,
                "{:<14} needs a download of {} first: `vidgate models pull {}`, or run with --yes",
                "",
                super::gigabytes(bytes),
                c.model
            )?;
        }
    }
    if let Some(s) = &plan.speech {
        writeln!(
            out,
            "speech: up to {} of sound on {} ({}) in {} calls, up to ${:.4}, counted in the budget{}",
            timecode::format(s.audio_ms),
            s.provider,
            s.model,
            s.calls,
            s.estimated_usd,
            s.error.as_ref().map_or(String::new(), |e| format!("; cannot serve this: {e}"))
        )?;
    }
    for s in &plan.skipped {
        writeln!(out, "skipped: {s}")?;
    }
    for d in &plan.downgrades {
        writeln!(out, "lowered to fit the budget: {d}")?;
    }
    let verdict = if plan.fits { "fits the budget" } else { "does NOT fit the budget: a run would refuse" };
    writeln!(out, "the first candidate {verdict}; nothing was spent").context("writing to stdout")?;
    Ok(())
}
