//! Command-line flags and the commands behind them.

mod frames;
mod journal;
mod keys;
mod local;
mod models;
mod providers;
mod sampling;
mod serve;
mod task;
mod transcribe;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use vidgate::config::{Config, ConfigSources};
use vidgate::schema::Task;

#[derive(Debug, Parser)]
#[command(name = "vidgate", version, about = "Understand videos: stories, timelines, answers.")]
pub struct Args {
    /// Config file (default: $VIDGATE_CONFIG, ./vidgate.toml, then the platform config dir).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a video holds: duration, streams, codec, size, rotation, audio.
    Probe {
        video: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Extract sampled frames as JPEG files.
    Frames(frames::FramesArgs),
    /// Tell the story of the video: what happens, start to finish.
    Describe(task::TaskArgs),
    /// List the events of the video with their start and end times.
    Timeline(task::TaskArgs),
    /// Answer a question about the video, citing times.
    Ask(AskArgs),
    /// Find the stretches of the video where something happens.
    Find(FindArgs),
    /// What is said in the video, with times: the speech track alone
    /// (speech.chain), as text, SubRip, WebVTT or JSON.
    Transcribe(transcribe::TranscribeArgs),
    /// Show what a task would send to each provider and cost; spends nothing.
    Plan(task::PlanArgs),
    /// Finish the last run that was interrupted (its finished units are reused).
    Resume {
        #[arg(long, value_enum, default_value_t = task::Format::Text)]
        format: task::Format,
    },
    /// The provider profiles: whether each is ready here (key set, model
    /// downloaded), its model and price. Keys are never shown.
    Providers(providers::ProvidersArgs),
    /// Local models: list the catalogue, pull one into the cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Serve the gateway over HTTP: an OpenAI-compatible video endpoint, a
    /// jobs API and a web page.
    Serve(serve::ServeArgs),
    /// The API keys of `vidgate serve`: create, list, revoke.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The journal of paid work: what it holds (stats), and dropping what
    /// is older than some days (prune).
    #[command(subcommand)]
    Journal(journal::JournalCommand),
}

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    #[command(flatten)]
    pub task: task::TaskArgs,
    /// The question.
    pub question: String,
}

#[derive(Debug, clap::Args)]
pub struct FindArgs {
    #[command(flatten)]
    pub task: task::TaskArgs,
    /// What to look for, e.g. "a bird lands on the branch".
    pub what: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Probe { video, json } => {
            let config = load_config(args.config, Vec::new())?;
            let info = vidgate::media::probe(&video, &config.limits).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &info)?;
                writeln!(out)?;
            } else {
                print_probe(&mut out, &info)?;
            }
            Ok(())
        }
        Command::Frames(frames) => {
            let overrides = frames.sampling.config_overrides();
            let config = load_config(args.config, overrides)?;
            frames::run(frames, &config).await
        }
        Command::Providers(a) => providers::run(a, &load_config(args.config, Vec::new())?),
        Command::Models(command) => {
            let config = load_config(args.config, Vec::new())?;
            models::run(command, &config).await
        }
        Command::Describe(t) => {
            let config = load_config(args.config, t.config_overrides())?;
            task::run(Task::Describe, t, config).await
        }
        Command::Timeline(t) => {
            let config = load_config(args.config, t.config_overrides())?;
            task::run(Task::Timeline, t, config).await
        }
        Command::Ask(a) => {
            let config = load_config(args.config, a.task.config_overrides())?;
            task::run(Task::Ask { question: a.question }, a.task, config).await
        }
        Command::Find(f) => {
            let config = load_config(args.config, f.task.config_overrides())?;
            task::run(Task::Find { what: f.what }, f.task, config).await
        }
        Command::Transcribe(t) => {
            let config = load_config(args.config, t.config_overrides())?;
            transcribe::run(t, config).await
        }
        Command::Plan(p) => {
            let config = load_config(args.config, p.sampling.config_overrides())?;
            task::plan(p, config).await
        }
        Command::Keys(command) => keys::run(command, &load_config(args.config, Vec::new())?),
        Command::Journal(command) => journal::run(command, &load_config(args.config, Vec::new())?),
        Command::Serve(a) => {
            let file = args.config.clone();
            serve::run(a, load_config(args.config, Vec::new())?, move || load_config(file.clone(), Vec::new())).await
        }
        Command::Resume { format } => task::resume(format, load_config(args.config, Vec::new())?).await,
    }
}

fn load_config(file: Option<PathBuf>, overrides: Vec<(String, String)>) -> anyhow::Result<Config> {
    let mut sources = ConfigSources::standard(file);
    sources.overrides = overrides;
    Ok(Config::load(&sources)?)
}

fn print_probe(out: &mut impl Write, info: &vidgate::media::MediaInfo) -> anyhow::Result<()> {
    let v = &info.video;
    let (dw, dh) = v.display_size();
    // A control character in a name (a newline) is shown escaped, so each field stays on its line.
    let shown = info.path.display().to_string();
    let shown = if shown.chars().any(char::is_control) { format!("{shown:?}") } else { shown };
    writeln!(out, "file       {shown}")?;
    writeln!(out, "size       {} bytes", info.size_bytes)?;
    writeln!(out, "container  {}", info.container)?;
    writeln!(out, "duration   {}", vidgate::timecode::format(info.duration_ms))?;
    writeln!(out, "video      {} {}x{} at {:.3} fps (stream {})", v.codec, v.width, v.height, v.fps, v.index)?;
    if v.rotation != 0 {
        writeln!(out, "rotation   {}° (shown as {dw}x{dh})", v.rotation)?;
    }
    match &info.audio {
        Some(a) => writeln!(out, "audio      {} {} ch {} Hz (stream {})", a.codec, a.channels, a.sample_rate, a.index)?,
        None => writeln!(out, "audio      none")?,
    }
    let kinds: Vec<String> = info.streams.iter().map(|s| format!("{}:{}", s.index, s.kind)).collect();
    writeln!(out, "streams    {}", kinds.join(" ")).context("writing to stdout")?;
    Ok(())
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIDGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// One readable line on stderr and a non-zero exit.
pub fn fail(e: &anyhow::Error) -> ExitCode {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut line = chain.first().cloned().unwrap_or_default();
    for cause in &chain[1..] {
        if !line.contains(cause.as_str()) {
            line.push_str(": ");
            line.push_str(cause);
        }
    }
    let _ = writeln!(std::io::stderr(), "vidgate: error: {}", line.replace('\n', " "));
    ExitCode::from(1)
}

/// A size in gigabytes (10^9 bytes), as downloads are announced.
fn gigabytes(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
