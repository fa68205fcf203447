//! `vidgate frames`: sampled frames to JPEG files.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use vidgate::config::Config;
use vidgate::media::{self, Extraction, FrameFormat};
use vidgate::schema::{SamplingMode, SamplingPlan, TimeRange};

#[derive(Debug, Args)]
pub struct FramesArgs {
    pub video: PathBuf,
    /// Directory to write the JPEGs into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Frames per second of video (0.1 = one every 10 s).
    #[arg(long, group = "mode")]
    pub fps: Option<f64>,
    /// This many frames, spread evenly.
    #[arg(long, group = "mode")]
    pub count: Option<u32>,
    /// Only the keyframes.
    #[arg(long, group = "mode")]
    pub keyframes: bool,
    /// One frame per shot (hard cuts and gradual transitions).
    #[arg(long, group = "mode")]
    pub scenes: bool,
    /// Scene change threshold, 0..1 (with --scenes).
    #[arg(long, requires = "scenes")]
    pub threshold: Option<f64>,
    /// Least time between two scene frames, in ms (with --scenes).
    #[arg(long, requires = "scenes", value_name = "MS")]
    pub min_gap: Option<u64>,
    /// Start time (seconds, MM:SS or H:MM:SS.mmm).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// End time (seconds, MM:SS or H:MM:SS.mmm).
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Frame width in pixels (height keeps the aspect ratio).
    #[arg(long)]
    pub width: Option<u32>,
    /// Never more frames than this.
    #[arg(long)]
    pub max_frames: Option<u32>,
    /// Print a JSON list of {index, pts_ms, path}.
    #[arg(long)]
    pub json: bool,
}

impl FramesArgs {
    /// Flags that are config keys, so they are checked and layered like config.
    pub fn config_overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(fps) = self.fps {
            out.push(("sampling.fps".into(), format!("{fps:?}")));
        }
        if let Some(w) = self.width {
            out.push(("sampling.width".into(), w.to_string()));
        }
        if let Some(n) = self.max_frames {
            out.push(("sampling.max_frames".into(), n.to_string()));
        }
        if let Some(t) = self.threshold {
            out.push(("sampling.scene_threshold".into(), format!("{t:?}")));
        }
        if let Some(g) = self.min_gap {
            out.push(("sampling.scene_min_gap_ms".into(), g.to_string()));
        }
        out
    }

    fn plan(&self, config: &Config) -> anyhow::Result<SamplingPlan> {
        let s = &config.sampling;
        let mode = if let Some(count) = self.count {
            SamplingMode::Count { count }
        } else if self.keyframes {
            SamplingMode::Keyframes
        } else if self.scenes {
            SamplingMode::Scenes { threshold: s.scene_threshold, min_gap_ms: s.scene_min_gap_ms }
        } else {
            SamplingMode::Fps { fps: s.fps }
        };
        let time = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<u64>> {
            text.as_deref()
                .map(|t| {
                    vidgate::timecode::parse(t)
                        .with_context(|| format!("--{flag} `{t}` is not a time (seconds, MM:SS or H:MM:SS.mmm)"))
                })
                .transpose()
        };
        let (start, end) = (time("start", &self.start)?, time("end", &self.end)?);
        let range = match (start, end) {
            (None, None) => None,
            (s, e) => {
                let (s, e) = (s.unwrap_or(0), e.unwrap_or(u64::MAX));
                Some(TimeRange::new(s, e).with_context(|| "--end must be after --start".to_string())?)
            }
        };
        Ok(SamplingPlan { mode, range, max_frames: s.max_frames, width: s.width })
    }
}

#[derive(Serialize)]
struct Written {
    index: u32,
    pts_ms: u64,
    path: PathBuf,
}

pub async fn run(args: FramesArgs, config: &Config) -> anyhow::Result<()> {
    let plan = args.plan(config)?;
    let info = media::probe(&args.video, &config.limits).await?;
    let format = FrameFormat::Jpeg { quality: config.sampling.jpeg_quality };
    let timeout = Duration::from_secs_f64(config.limits.extract_timeout_s);
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
        std::fs::write(&path, frame.data.bytes()).with_context(|| format!("cannot write {}", path.display()))?;
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
