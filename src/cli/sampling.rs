//! Sampling flags, shared by `frames` and the task commands.

use anyhow::Context;
use clap::Args;

use vidgate::config::Config;
use vidgate::schema::{SamplingMode, SamplingPlan, TimeRange};

#[derive(Debug, Clone, Default, Args)]
pub struct SamplingArgs {
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
}

impl SamplingArgs {
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

    pub fn plan(&self, config: &Config) -> anyhow::Result<SamplingPlan> {
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
