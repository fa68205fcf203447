//! `[sampling]`: how frames are taken when a request leaves it to config.

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingConfig {
    pub fps: f64,
    pub max_frames: u32,
    pub width: u32,
    /// Scene sampling: how different a shot must be from the last one kept, 0..1.
    pub scene_threshold: f64,
    /// Scene sampling: the least time between two kept frames.
    pub scene_min_gap_ms: u64,
    /// Sample by seeking instead of decoding everything when frames are at
    /// least this many seconds apart.
    pub seek_min_interval_s: f64,
    /// JPEG quality of frames sent over the wire, 1..=100.
    pub jpeg_quality: u8,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            fps: 1.0,
            max_frames: 64,
            width: 512,
            scene_threshold: 0.35,
            scene_min_gap_ms: 1000,
            seek_min_interval_s: 4.0,
            jpeg_quality: 85,
        }
    }
}

impl SamplingConfig {
    /// # Errors
    /// The first value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.fps > 0.0 && self.fps <= 60.0) {
            return Err(Invalid::new("fps", format!("{} is outside (0, 60]", self.fps)));
        }
        if self.max_frames == 0 || self.max_frames > 10_000 {
            return Err(Invalid::new("max_frames", format!("{} is outside 1..=10000", self.max_frames)));
        }
        if !(16..=8192).contains(&self.width) {
            return Err(Invalid::new("width", format!("{} is outside 16..=8192", self.width)));
        }
        if !(self.scene_threshold > 0.0 && self.scene_threshold < 1.0) {
            return Err(Invalid::new("scene_threshold", format!("{} is outside (0, 1)", self.scene_threshold)));
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return Err(Invalid::new("jpeg_quality", format!("{} is outside 1..=100", self.jpeg_quality)));
        }
        check::non_negative("seek_min_interval_s", self.seek_min_interval_s)
    }
}
