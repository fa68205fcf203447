//! A time range of a video as a file of its own, by stream copy: nothing is
//! re-encoded, so a cut of an hour takes about as long as copying its bytes.
//! It begins at the keyframe at or before the range's start.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::{ffmpeg_input_args, input_url, MediaError, MediaInfo};
use crate::schema::TimeRange;

/// A cut of a video, in a temporary file deleted when this is dropped.
#[derive(Debug)]
pub struct Cut {
    file: tempfile::TempPath,
    /// The part of the source it holds: its time 0 is `range.start_ms` there.
    pub range: TimeRange,
    pub size_bytes: u64,
}

impl Cut {
    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Copy `range` of the probed video `info` into an MP4 of its own: its video
/// stream and its audio, if any; no subtitles or data. ffmpeg reads only the
/// named file, as for extraction, and is killed after `timeout`.
///
/// # Errors
/// An empty range or one that starts past the video's end, a missing ffmpeg,
/// a source whose streams MP4 cannot hold, or a cut over `timeout`.
pub async fn cut(info: &MediaInfo, range: TimeRange, timeout: Duration) -> Result<Cut, MediaError> {
    let path = info.path.as_path();
    let end_ms = range.end_ms.min(info.duration_ms);
    if range.start_ms >= end_ms {
        return Err(MediaError::RangeOutside {
            path: path.to_path_buf(),
            start_ms: range.start_ms,
            end_ms: range.end_ms,
            duration_ms: info.duration_ms,
        });
    }
    let range = TimeRange { start_ms: range.start_ms, end_ms };
    let file = tempfile::Builder::new()
        .prefix("vidgate-cut-")
        .suffix(".mp4")
        .tempfile()
        .map_err(|e| MediaError::io(&std::env::temp_dir(), e))?
        .into_temp_path();
    let mut cmd = tokio::process::Command::new(ffmpeg_sidecar::paths::ffmpeg_path());
    cmd.args(["-hide_banner", "-nostats", "-nostdin", "-loglevel", "error", "-y"]);
    cmd.args(["-ss", &seconds(range.start_ms)]);
    cmd.args(ffmpeg_input_args()).arg("-i").arg(input_url(path)?);
    cmd.args(["-t", &seconds(range.duration_ms())]);
    cmd.args(["-map", &format!("0:{}", info.video.index)]);
    if let Some(audio) = &info.audio {
        cmd.args(["-map", &format!("0:{}", audio.index)]);
    }
    cmd.args(["-c", "copy", "-avoid_negative_ts", "make_zero", "-f", "mp4"]).arg(input_url(&file)?);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::ToolMissing { program: "ffmpeg" },
        _ => MediaError::io(path, e),
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| MediaError::Timeout { path: path.to_path_buf(), what: "the stream copy", after: timeout })?
        .map_err(|e| MediaError::io(path, e))?;
    let failed = |reason: String| MediaError::ToolFailed { path: path.to_path_buf(), program: "ffmpeg", reason };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(failed(format!("cannot copy {} out of it ({}): {last}", span(range), output.status)));
    }
    let size_bytes = std::fs::metadata(&file).map_err(|e| MediaError::io(&file, e))?.len();
    if size_bytes == 0 {
        return Err(failed(format!("copying {} out of it made an empty file", span(range))));
    }
    Ok(Cut { file, range, size_bytes })
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn span(range: TimeRange) -> String {
    format!("{}–{}", crate::timecode::format(range.start_ms), crate::timecode::format(range.end_ms))
}
