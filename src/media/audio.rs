//! The sound of a video as 16 kHz mono PCM, streamed out of one ffmpeg
//! process in small chunks (never the whole track in memory): what speech
//! detection and transcription read.
//!
//! ffmpeg reads the file with the same allow-lists as frame extraction, and
//! is killed when the stream is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{ffmpeg_input_args, input_url, MediaError, MediaInfo};
use crate::schema::TimeRange;

/// Samples a second of the PCM this module hands out.
pub const SAMPLE_RATE: u32 = 16_000;

/// Bytes read from ffmpeg at a time: a quarter of a second of s16le.
const CHUNK_BYTES: usize = SAMPLE_RATE as usize / 2;

/// The audio of one video (or one range of it), as it is decoded.
pub struct PcmStream {
    path: PathBuf,
    child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    stderr: Option<tokio::task::JoinHandle<String>>,
    /// An odd byte left over from the last read.
    carry: Option<u8>,
    /// The longest wait for the next chunk.
    stall: Duration,
    /// Where sample 0 lies in the video, ms from its start.
    start_ms: u64,
    done: bool,
}

impl std::fmt::Debug for PcmStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmStream").field("path", &self.path).field("start_ms", &self.start_ms).finish()
    }
}

impl PcmStream {
    /// Where the stream's first sample lies in the video, in ms.
    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    /// The next samples (mono, 16 kHz, signed 16 bit), `None` at the end.
    ///
    /// # Errors
    /// ffmpeg failed, or gave nothing for longer than the stall limit.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<i16>, MediaError>> {
        if self.done {
            return None;
        }
        let mut bytes = Vec::with_capacity(CHUNK_BYTES + 1);
        bytes.extend(self.carry.take());
        let mut buf = vec![0u8; CHUNK_BYTES];
        let read = match tokio::time::timeout(self.stall, self.stdout.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Some(Err(self.fail(MediaError::io(&self.path, e)))),
            Err(_) => {
                let e = MediaError::Timeout { path: self.path.clone(), what: "audio extraction", after: self.stall };
                return Some(Err(self.fail(e)));
            }
        };
        if read == 0 {
            self.done = true;
            return self.finish().await.err().map(Err);
        }
        bytes.extend_from_slice(&buf[..read]);
        if bytes.len() % 2 == 1 {
            self.carry = bytes.pop();
        }
        Some(Ok(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()))
    }

    fn fail(&mut self, e: MediaError) -> MediaError {
        self.done = true;
        let _ = self.child.start_kill();
        e
    }

    /// Reap ffmpeg: an error when it failed.
    async fn finish(&mut self) -> Result<(), MediaError> {
        let status = self.child.wait().await.map_err(|e| MediaError::io(&self.path, e))?;
        let log = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        if status.success() {
            return Ok(());
        }
        let reason = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").to_string();
        Err(MediaError::ToolFailed { path: self.path.clone(), program: "ffmpeg", reason })
    }
}

/// Start decoding the first audio stream of `info` (within `range`, when
/// given) to 16 kHz mono PCM. `None` when the file has no audio stream:
/// nothing is started.
///
/// # Errors
/// ffmpeg cannot be started.
pub fn pcm(info: &MediaInfo, range: Option<TimeRange>, stall: Duration) -> Result<Option<PcmStream>, MediaError> {
    let Some(audio) = &info.audio else {
        return Ok(None);
    };
    let path = &info.path;
    let mut cmd = tokio::process::Command::new(ffmpeg_sidecar::paths::ffmpeg_path());
    cmd.args(["-hide_banner", "-nostats", "-nostdin", "-loglevel", "error"]);
    let start_ms = range.map_or(0, |r| r.start_ms);
    if let Some(r) = range {
        cmd.args(["-ss", &seconds(r.start_ms), "-t", &seconds(r.duration_ms())]);
    }
    cmd.args(ffmpeg_input_args()).arg("-i").arg(input_url(path)?);
    cmd.args(["-map", &format!("0:{}", audio.index), "-vn", "-sn", "-dn"]);
    cmd.args(["-ac", "1", "-ar", &SAMPLE_RATE.to_string(), "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::ToolMissing { program: "ffmpeg" },
        _ => MediaError::io(path, e),
    })?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(MediaError::io(path, std::io::Error::other("ffmpeg's output is not piped")));
    };
    // Read the log as it comes, capped, so a chatty ffmpeg never blocks on it.
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if all.len() < 64 << 10 {
                all.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    Ok(Some(PcmStream {
        path: path.clone(),
        child,
        stdout,
        stderr: Some(log),
        carry: None,
        stall,
        start_ms,
        done: false,
    }))
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// `samples` as a WAV file (16 kHz mono, 16 bit), as a transcription API takes it.
pub fn wav(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    // Writing to memory fails only past WAV's 4 GiB: a segment is seconds long.
    if let Ok(mut w) = hound::WavWriter::new(&mut out, spec) {
        let mut ok = true;
        for s in samples {
            ok &= w.write_sample(*s).is_ok();
        }
        if ok {
            let _ = w.finalize();
        }
    }
    out.into_inner()
}

/// Milliseconds of `samples` at [`SAMPLE_RATE`].
pub fn samples_ms(samples: u64) -> u64 {
    samples * 1000 / u64::from(SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_holds_its_samples_at_16_khz_mono() {
        let samples: Vec<i16> = (0..1600).map(|i| (i * 7) as i16).collect();
        let bytes = wav(&samples);
        assert_eq!(bytes.len(), 44 + 3200);
        let mut reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16_000);
        assert_eq!(reader.spec().channels, 1);
        let back: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
        assert_eq!(samples_ms(16_000 * 3 + 8), 3000);
    }
}
