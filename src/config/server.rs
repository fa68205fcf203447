//! `[server]`: how `vidgate serve` listens and how much it takes on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Invalid;

/// The most `max_inline_video_bytes` may be: 1 GiB.
pub const MAX_INLINE_VIDEO_BYTES: u64 = 1 << 30;

/// The HTTP service (`vidgate serve`, see [`crate::serve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on; `--bind` overrides it.
    pub bind: String,
    /// The largest video an upload (or a data URL) may carry, in bytes.
    pub max_upload_bytes: u64,
    /// The largest video a chat request may carry inline (a base64 data
    /// URL), in bytes. The JSON body is read whole, so this bounds the
    /// memory one request can take; larger videos go through
    /// `POST /v1/videos` or a URL.
    pub max_inline_video_bytes: u64,
    /// Runs that work at once; the others wait in the queue.
    pub max_concurrent_runs: usize,
    /// Runs that may wait for a free slot; one more is answered 429.
    pub queue_length: usize,
    /// Uploaded videos are removed this many hours after their last use.
    pub keep_uploads_hours: f64,
    /// Finished runs' reports are served (and kept) this many days.
    pub keep_reports_days: f64,
    /// On SIGTERM, running runs have this many seconds to finish; those
    /// still working then stay unfinished in the journal and are resumed by
    /// the next start.
    pub shutdown_grace_s: f64,
    /// Where uploads are written; `uploads` in the platform data dir when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The environment variable holding the admin key (key management, and
    /// any request when no client key exists yet).
    pub admin_key_env: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_upload_bytes: 4 << 30,
            max_inline_video_bytes: 100 << 20,
            max_concurrent_runs: 4,
            queue_length: 64,
            keep_uploads_hours: 24.0,
            keep_reports_days: 7.0,
            shutdown_grace_s: 30.0,
            data_dir: None,
            admin_key_env: "VIDGATE_ADMIN_KEY".into(),
        }
    }
}

impl ServerConfig {
    /// # Errors
    /// A value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(Invalid::new(
                "bind",
                format!("is {:?}: give an address and a port, e.g. 127.0.0.1:8080", self.bind),
            ));
        }
        if self.max_upload_bytes == 0 {
            return Err(Invalid::new("max_upload_bytes", "is 0: no video could be uploaded"));
        }
        if !(1..=MAX_INLINE_VIDEO_BYTES).contains(&self.max_inline_video_bytes) {
            return Err(Invalid::new(
                "max_inline_video_bytes",
                format!(
                    "is {}: give 1 to {MAX_INLINE_VIDEO_BYTES} bytes (a chat body is held in memory whole)",
                    self.max_inline_video_bytes
                ),
            ));
        }
        if !(1..=1024).contains(&self.max_concurrent_runs) {
            return Err(Invalid::new(
                "max_concurrent_runs",
                format!("is {}: give 1 to 1024", self.max_concurrent_runs),
            ));
        }
        if self.queue_length > 1_000_000 {
            return Err(Invalid::new("queue_length", format!("is {}: give 0 to 1000000", self.queue_length)));
        }
        for (key, value, max) in [
            ("keep_uploads_hours", self.keep_uploads_hours, 24.0 * 365.0),
            ("keep_reports_days", self.keep_reports_days, 3650.0),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= max) {
                return Err(Invalid::new(key, format!("is {value}: give more than 0 and at most {max}")));
            }
        }
        if !(self.shutdown_grace_s.is_finite() && (0.0..=3600.0).contains(&self.shutdown_grace_s)) {
            return Err(Invalid::new(
                "shutdown_grace_s",
                format!("is {}: give 0 to 3600 seconds", self.shutdown_grace_s),
            ));
        }
        if self.admin_key_env.trim().is_empty() {
            return Err(Invalid::new("admin_key_env", "is empty: name the environment variable holding the admin key"));
        }
        Ok(())
    }

    /// The largest video a chat request may carry inline: the smaller of
    /// `max_inline_video_bytes` and `max_upload_bytes`.
    pub fn inline_video_cap(&self) -> u64 {
        self.max_inline_video_bytes.min(self.max_upload_bytes)
    }

    /// The directory uploads are written to.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            crate::journal::default_path()
                .parent()
                .map(|p| p.join("uploads"))
                .unwrap_or_else(|| PathBuf::from("uploads"))
        })
    }
}
