//! `vidgate frames`: sampled frames to JPEG files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use vidgate::config::Config;
use vidgate::media::{self, Extraction, FrameFormat};
use vidgate::schema::TimeRange;

use super::sampling::SamplingArgs;

#[derive(Debug, Args)]
pub struct FramesArgs {
    pub video: PathBuf,
    /// Directory to write the JPEGs into (created if missing); a file already
    /// there under a frame's name is never overwritten: the command stops.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print a JSON list of {index, pts_ms, path}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Written {
    index: u32,
    pts_ms: u64,
    path: PathBuf,
}

pub async fn run(args: FramesArgs, config: &Config) -> anyhow::Result<()> {
    let plan = args.sampling.plan(config)?;
    let info = media::probe(&args.video, &config.limits).await?;
    let format = FrameFormat::Jpeg { quality: config.sampling.jpeg_quality };
    let timeout = vidgate::timecode::seconds(config.limits.extract_timeout_s);
    let extraction = Extraction::new(&info, &plan, &config.sampling, format, timeout)?;
    let range = extraction.range;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;

    let mut stream = media::extract(extraction)?;
    let bar = progress_bar(stream.expected_frames(), range);
    let mut written = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(frame) = stream.next().await {
        let frame = frame?;
        let path = args.out.join(format!("frame-{:05}.jpg", frame.index));
        write_new(&path, frame.data.bytes())?;
        match stream.expected_frames() {
            Some(_) => bar.inc(1),
            None => bar.set_position(frame.pts_ms.saturating_sub(range.start_ms)),
        }
        if !args.json {
            writeln!(out, "{:>5}  {}  {}", frame.index, vidgate::timecode::format(frame.pts_ms), path.display())?;
        }
        written.push(Written { index: frame.index, pts_ms: frame.pts_ms, path });
    }
    bar.finish_and_clear();
    for warning in stream.warnings() {
        tracing::warn!("{warning}");
        eprintln!("vidgate: warning: {warning}");
    }
    if args.json {
        serde_json::to_writer_pretty(&mut out, &written)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Write a file that did not exist. Never through a link, never over a file
/// (it may be the input itself, or a link planted to redirect the write).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists; frames are never written over a file or through a link: use an empty --out directory",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    };
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Frames counted when their number is known, else video time in ms. Drawn only on a terminal.
fn progress_bar(expected: Option<u32>, range: TimeRange) -> ProgressBar {
    let (len, template) = match expected {
        Some(n) => (n as u64, "{bar:30} {pos}/{len} frames {elapsed_precise}"),
        None => (range.duration_ms(), "{bar:30} {percent}% of the video scanned {elapsed_precise}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
