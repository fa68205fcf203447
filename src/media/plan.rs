//! From a sampling plan and a probed file to the way ffmpeg will be run.

use std::path::PathBuf;
use std::time::Duration;

use super::{FrameFormat, MediaError, MediaInfo, SceneSettings};
use crate::config::SamplingConfig;
use crate::schema::{SamplingMode, SamplingPlan, TimeRange};

/// How frames are pulled out of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// One ffmpeg process decodes the range and keeps the first frame of each
    /// `interval_ms` bucket (every frame when `None`).
    Stream { interval_ms: Option<u64>, keyframes_only: bool },
    /// One short ffmpeg process per time: cheaper than decoding everything when
    /// frames are far apart.
    Seek { times_ms: Vec<u64> },
    /// One process analyses frames every `analysis_interval_ms` and keeps one
    /// per distinct shot.
    Scenes { analysis_interval_ms: u64, settings: SceneSettings },
}

/// A settled extraction: what to run, on what, for how long.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub path: PathBuf,
    pub video_stream: u32,
    pub range: TimeRange,
    pub strategy: Strategy,
    /// Never more frames than this.
    pub max_frames: u32,
    /// Output size, in display orientation: at most the plan's width, never
    /// upscaled, the aspect ratio kept, both even. Every frame has this size,
    /// so ffmpeg's raw output is cut into frames by size alone.
    pub width: u32,
    pub height: u32,
    pub format: FrameFormat,
    pub timeout: Duration,
    /// What was changed from the request to fit the limits.
    pub warnings: Vec<String>,
}

/// Scene analysis never looks at more than this many frames per second.
const SCENE_ANALYSIS_INTERVAL_MS: u64 = 125;

/// The longest side a JPEG can have (its header holds 16-bit sizes).
pub const JPEG_MAX_SIDE: u32 = 65_535;

/// The frame size for a picture displayed `dw`x`dh` at most `max_width` wide:
/// even sides (what the encoders want), the height rounded as ffmpeg's
/// `scale=w:-2` would.
fn output_size(dw: u32, dh: u32, max_width: u32) -> (u64, u64) {
    let (dw, dh) = (u64::from(dw.max(1)), u64::from(dh.max(1)));
    let w = (dw.min(u64::from(max_width)) & !1).max(2);
    let h = ((w * dh + dw) / (2 * dw) * 2).max(2);
    (w, h)
}

impl Extraction {
    /// Settle `plan` against the probed file.
    ///
    /// # Errors
    /// A range outside the video, or a plan that asks for nothing.
    pub fn new(
        info: &MediaInfo,
        plan: &SamplingPlan,
        sampling: &SamplingConfig,
        format: FrameFormat,
        timeout: Duration,
    ) -> Result<Self, MediaError> {
        let duration = info.duration_ms.max(1);
        let range = match plan.range {
            None => TimeRange { start_ms: 0, end_ms: duration },
            Some(r) if r.start_ms >= duration => {
                return Err(MediaError::RangeOutside {
                    path: info.path.clone(),
                    start_ms: r.start_ms,
                    end_ms: r.end_ms,
                    duration_ms: info.duration_ms,
                })
            }
            Some(r) => TimeRange { start_ms: r.start_ms, end_ms: r.end_ms.min(duration) },
        };
        if plan.max_frames == 0 {
            return Err(MediaError::BadPlan("max_frames is 0".into()));
        }
        if !(16..=8192).contains(&plan.width) {
            return Err(MediaError::BadPlan(format!("width {} is outside 16..=8192", plan.width)));
        }
        let (dw, dh) = info.video.display_size();
        let (width, height) = output_size(dw, dh, plan.width);
        // Refused here, before anything is decoded: a frame this tall could
        // never be sent (frames become JPEG for the wire).
        if height > u64::from(JPEG_MAX_SIDE) {
            return Err(MediaError::FrameTooTall {
                path: info.path.clone(),
                width,
                height,
                shown: (dw, dh),
                limit: JPEG_MAX_SIDE,
            });
        }
        let span = range.duration_ms();
        let seek_min_ms = (sampling.seek_min_interval_s * 1000.0) as u64;
        let mut warnings = Vec::new();
        let strategy = match plan.mode {
            SamplingMode::Fps { fps } => {
                if !(fps > 0.0 && fps <= 120.0) {
                    return Err(MediaError::BadPlan(format!("fps {fps} is outside (0, 120]")));
                }
                let mut interval = ((1000.0 / fps).round() as u64).max(1);
                let wanted = span.div_ceil(interval);
                if wanted > plan.max_frames as u64 {
                    interval = span.div_ceil(plan.max_frames as u64).max(1);
                    warnings.push(format!(
                        "{fps} fps would take {wanted} frames, over max_frames {}: one frame every {interval} ms instead",
                        plan.max_frames
                    ));
                }
                if interval >= seek_min_ms && seek_min_ms > 0 {
                    let times = (0..).map(|k| range.start_ms + k * interval).take_while(|t| *t < range.end_ms);
                    Strategy::Seek { times_ms: times.take(plan.max_frames as usize).collect() }
                } else {
                    Strategy::Stream { interval_ms: Some(interval), keyframes_only: false }
                }
            }
            SamplingMode::Count { count } => {
                if count == 0 {
                    return Err(MediaError::BadPlan("a count of 0 frames".into()));
                }
                let count = count.min(plan.max_frames) as u64;
                let interval = (span / count).max(1);
                if interval >= seek_min_ms && seek_min_ms > 0 {
                    // The middle of each of `count` equal parts.
                    let times = (0..count).map(|k| range.start_ms + (2 * k + 1) * span / (2 * count));
                    Strategy::Seek { times_ms: times.collect() }
                } else {
                    Strategy::Stream { interval_ms: Some(interval), keyframes_only: false }
                }
            }
            SamplingMode::Keyframes => Strategy::Stream { interval_ms: None, keyframes_only: true },
            SamplingMode::Scenes { threshold, min_gap_ms } => {
                if !(threshold > 0.0 && threshold < 1.0) {
                    return Err(MediaError::BadPlan(format!("scene threshold {threshold} is outside (0, 1)")));
                }
                Strategy::Scenes {
                    analysis_interval_ms: SCENE_ANALYSIS_INTERVAL_MS,
                    settings: SceneSettings { threshold, min_gap_ms, max_frames: plan.max_frames },
                }
            }
        };
        Ok(Self {
            path: info.path.clone(),
            video_stream: info.video.index,
            range,
            strategy,
            max_frames: plan.max_frames,
            width: width as u32,
            height: height as u32,
            format,
            timeout,
            warnings,
        })
    }

    /// The bytes of one frame of packed RGB at the output size.
    pub(crate) fn rgb_frame_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// How many frames this will give, when that is known in advance.
    pub fn expected_frames(&self) -> Option<u32> {
        match &self.strategy {
            Strategy::Seek { times_ms } => Some(times_ms.len() as u32),
            Strategy::Stream { interval_ms: Some(i), .. } => {
                Some((self.range.duration_ms().div_ceil(*i) as u32).min(self.max_frames))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_sizes_are_even_never_upscaled_and_keep_the_aspect() {
        assert_eq!(output_size(320, 240, 160), (160, 120));
        assert_eq!(output_size(320, 240, 200), (200, 150));
        assert_eq!(output_size(320, 240, 1024), (320, 240), "never upscaled");
        assert_eq!(output_size(32, 64, 512), (32, 64));
        assert_eq!(output_size(1920, 1080, 513), (512, 288), "even");
        assert_eq!(output_size(1, 1, 512), (2, 2), "never empty");
        assert_eq!(output_size(100_000, 4, 768), (768, 2));
        assert_eq!(output_size(4, 100_000, 768), (4, 100_000));
    }
}
