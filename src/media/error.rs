use std::path::PathBuf;
use std::time::Duration;

/// Why a video could not be read. Each names the input and, where one applies, the limit.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{path}: no such file")]
    NotFound { path: PathBuf },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: {size} bytes is over the limit of {limit} bytes (limits.max_file_bytes)")]
    FileTooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("{path}: cannot read it: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a video ffprobe can read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: has no video stream (streams: {streams})")]
    NoVideo { path: PathBuf, streams: String },
    #[error("{path}: duration {duration_s:.1} s is over the limit of {limit_s:.1} s (limits.max_duration_s)")]
    TooLong { path: PathBuf, duration_s: f64, limit_s: f64 },
    #[error("{path}: {width}x{height} = {pixels} pixels per frame is over the limit of {limit} (limits.max_pixels)")]
    TooManyPixels { path: PathBuf, width: u64, height: u64, pixels: u64, limit: u64 },
    #[error(
        "{path}: frames of {}x{} would be {width}x{height}; a frame side is at most {limit} pixels (JPEG's limit)",
        shown.0, shown.1
    )]
    FrameTooTall { path: PathBuf, width: u64, height: u64, shown: (u32, u32), limit: u32 },
    #[error("{path}: {count} streams is over the limit of {limit} (limits.max_streams)")]
    TooManyStreams { path: PathBuf, count: u32, limit: u32 },
    #[error("{path}: the time range {start_ms}..{end_ms} ms is outside the video's {duration_ms} ms")]
    RangeOutside { path: PathBuf, start_ms: u64, end_ms: u64, duration_ms: u64 },
    #[error("bad sampling plan: {0}")]
    BadPlan(String),
    #[error("{program} was not found on PATH; install ffmpeg (it provides ffmpeg and ffprobe)")]
    ToolMissing { program: &'static str },
    #[error("{path}: {program} failed: {reason}")]
    ToolFailed { path: PathBuf, program: &'static str, reason: String },
    #[error("{path}: {what} did not finish within {after:?}")]
    Timeout { path: PathBuf, what: &'static str, after: Duration },
}

impl MediaError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        MediaError::Io { path: path.to_path_buf(), source }
    }
}
