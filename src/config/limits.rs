//! `[limits]`: what input media may be, enforced by the probe before anything is decoded.

use serde::{Deserialize, Serialize};

use super::check::{self, Invalid};

/// Limits on input media, enforced by the probe before anything is decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimits {
    pub max_duration_s: f64,
    /// Width × height of the video stream that is read (the default one, else the first).
    pub max_pixels: u64,
    pub max_streams: u32,
    pub max_file_bytes: u64,
    /// How long ffprobe may take.
    pub probe_timeout_s: f64,
    /// How long one extraction may take.
    pub extract_timeout_s: f64,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_duration_s: 4.0 * 3600.0,
            max_pixels: 7680 * 4320,
            max_streams: 16,
            max_file_bytes: 8 << 30,
            probe_timeout_s: 30.0,
            extract_timeout_s: 3600.0,
        }
    }
}

impl MediaLimits {
    /// # Errors
    /// The first value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        check::wait("probe_timeout_s", self.probe_timeout_s)?;
        check::wait("extract_timeout_s", self.extract_timeout_s)?;
        if !(self.max_duration_s > 0.0 && self.max_duration_s.is_finite()) {
            return Err(Invalid::new("max_duration_s", format!("{} must be a finite number > 0", self.max_duration_s)));
        }
        Ok(())
    }
}
