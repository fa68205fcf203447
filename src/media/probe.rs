//! What a file holds, from ffprobe, with the limits enforced before anything is decoded.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::{ffmpeg_input_args, input_url, MediaError};
use crate::config::MediaLimits;

/// One stream of a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub index: u32,
    /// `video`, `audio`, `subtitle`, `data` or `attachment`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
}

/// The video stream vidgate reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub index: u32,
    pub codec: String,
    /// Coded size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation to apply for display, in degrees (0, 90, 180, 270).
    pub rotation: u32,
    /// Average frame rate, frames per second.
    pub fps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pix_fmt: Option<String>,
}

impl VideoInfo {
    /// The size as displayed, after rotation.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioInfo {
    pub index: u32,
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
}

/// What ffprobe found in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// As given; written out lossily where it is not UTF-8.
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub size_bytes: u64,
    /// The container, as ffprobe names it (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub container: String,
    pub duration_ms: u64,
    pub video: VideoInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioInfo>,
    pub streams: Vec<StreamInfo>,
}

impl MediaInfo {
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }
}

fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Check the file, run ffprobe on it, and enforce `limits`.
///
/// # Errors
/// A [`MediaError`] naming the file and the limit it broke; nothing has been
/// decoded when it returns.
pub async fn probe(path: &Path, limits: &MediaLimits) -> Result<MediaInfo, MediaError> {
    let size_bytes = check_file(path, limits)?;
    let timeout = crate::timecode::seconds(limits.probe_timeout_s);
    let mut cmd = tokio::process::Command::new(ffprobe_program());
    cmd.args(["-v", "error", "-of", "json", "-show_format", "-show_streams"])
        .args(ffmpeg_input_args())
        .arg(input_url(path)?)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::ToolMissing { program: "ffprobe" },
        _ => MediaError::io(path, e),
    })?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| MediaError::Timeout { path: path.to_path_buf(), what: "ffprobe", after: timeout })?
        .map_err(|e| MediaError::io(path, e))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if let Some(e) = oversized(&stderr, path, limits) {
            return Err(e);
        }
        let reason = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("unknown error");
        return Err(MediaError::Unreadable { path: path.to_path_buf(), reason: clean_reason(reason, path) });
    }
    let parsed: Probe = serde_json::from_slice(&output.stdout).map_err(|e| MediaError::Unreadable {
        path: path.to_path_buf(),
        reason: format!("unexpected ffprobe output: {e}"),
    })?;
    let info = parsed.into_info(path, size_bytes).map_err(|e| match e {
        MediaError::Unreadable { .. } => oversized(&stderr, path, limits).unwrap_or(e),
        e => e,
    })?;
    check_limits(&info, limits)?;
    Ok(info)
}

fn ffprobe_program() -> PathBuf {
    ffmpeg_sidecar::ffprobe::ffprobe_path()
}

/// Refuse what is not a readable, non-empty regular file within the size limit.
pub(crate) fn check_file(path: &Path, limits: &MediaLimits) -> Result<u64, MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::NotFound { path: path.to_path_buf() },
        _ => MediaError::io(path, e),
    })?;
    if !meta.is_file() {
        return Err(MediaError::NotAFile { path: path.to_path_buf() });
    }
    if meta.len() == 0 {
        return Err(MediaError::Empty { path: path.to_path_buf() });
    }
    if meta.len() > limits.max_file_bytes {
        return Err(MediaError::FileTooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: limits.max_file_bytes,
        });
    }
    Ok(meta.len())
}

fn check_limits(info: &MediaInfo, limits: &MediaLimits) -> Result<(), MediaError> {
    let path = info.path.clone();
    let count = info.streams.len() as u32;
    if count > limits.max_streams {
        return Err(MediaError::TooManyStreams { path, count, limit: limits.max_streams });
    }
    let (w, h) = (info.video.width as u64, info.video.height as u64);
    if w * h > limits.max_pixels {
        return Err(MediaError::TooManyPixels { path, width: w, height: h, pixels: w * h, limit: limits.max_pixels });
    }
    let duration_s = info.duration_ms as f64 / 1000.0;
    if duration_s > limits.max_duration_s {
        return Err(MediaError::TooLong { path, duration_s, limit_s: limits.max_duration_s });
    }
    Ok(())
}

/// A frame size over about 2^28 pixels is refused by ffmpeg itself before
/// ffprobe can report it (the probe fails, or shows a stream with no size);
/// its log still names the size, and that is the reason to give.
fn oversized(stderr: &str, path: &Path, limits: &MediaLimits) -> Option<MediaError> {
    stderr
        .lines()
        .filter_map(|line| {
            let (w, rest) = line.split("Picture size ").nth(1)?.split_once('x')?;
            let h = rest.split_whitespace().next()?;
            Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?))
        })
        .map(|(w, h)| (w, h, w.saturating_mul(h)))
        .filter(|(_, _, pixels)| *pixels > limits.max_pixels)
        .max_by_key(|(_, _, pixels)| *pixels)
        .map(|(width, height, pixels)| MediaError::TooManyPixels {
            path: path.to_path_buf(),
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        })
}

/// ffprobe's messages repeat the `file:` URL we gave it; show the path instead.
fn clean_reason(reason: &str, path: &Path) -> String {
    let url = input_url(path).map(|u| u.to_string_lossy().into_owned()).unwrap_or_default();
    let reason = reason.replace(&format!("{url}: "), "").replace(&url, "the file");
    reason.trim().to_string()
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
    pix_fmt: Option<String>,
    channels: Option<u32>,
    sample_rate: Option<String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
}

impl ProbeStream {
    fn kind(&self) -> &str {
        self.codec_type.as_deref().unwrap_or("unknown")
    }

    fn is_attached_pic(&self) -> bool {
        self.disposition.get("attached_pic").copied().unwrap_or(0) != 0
    }

    fn is_picture(&self) -> bool {
        self.kind() == "video" && !self.is_attached_pic()
    }

    fn is_default(&self) -> bool {
        self.disposition.get("default").copied().unwrap_or(0) != 0
    }

    fn has_size(&self) -> bool {
        self.width.unwrap_or(0) > 0 && self.height.unwrap_or(0) > 0
    }

    fn rotation(&self) -> u32 {
        let from_side_data = self
            .side_data_list
            .iter()
            .find_map(|d| d.get("rotation").and_then(|r| r.as_f64().or_else(|| r.as_str()?.parse().ok())));
        let from_tag = self.tags.get("rotate").and_then(|r| r.parse::<f64>().ok());
        // The display matrix rotates counter-clockwise; the `rotate` tag clockwise.
        let clockwise = from_side_data.map(|r| -r).or(from_tag).unwrap_or(0.0);
        (((clockwise.round() as i64 % 360) + 360) % 360) as u32
    }
}

fn parse_rate(text: Option<&str>) -> Option<f64> {
    let text = text?;
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

fn parse_secs(text: Option<&str>) -> Option<f64> {
    text?.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)
}

impl Probe {
    fn into_info(self, path: &Path, size_bytes: u64) -> Result<MediaInfo, MediaError> {
        let streams: Vec<StreamInfo> = self
            .streams
            .iter()
            .map(|s| StreamInfo { index: s.index, kind: s.kind().to_string(), codec: s.codec_name.clone() })
            .collect();
        // The stream a player shows: the one marked default, else the first.
        let videos = || self.streams.iter().filter(|s| s.is_picture() && s.has_size());
        let video = videos().find(|s| s.is_default()).or_else(|| videos().next());
        let video = match video {
            Some(v) => v,
            None if self.streams.iter().any(|s| s.is_picture()) => {
                return Err(MediaError::Unreadable {
                    path: path.to_path_buf(),
                    reason: "its video stream has no frame size".into(),
                })
            }
            None => {
                let kinds: Vec<&str> = self
                    .streams
                    .iter()
                    .map(|s| if s.kind() == "video" && s.is_attached_pic() { "attached picture" } else { s.kind() })
                    .collect();
                return Err(MediaError::NoVideo {
                    path: path.to_path_buf(),
                    streams: if kinds.is_empty() { "none".into() } else { kinds.join(", ") },
                });
            }
        };
        let format = self.format.as_ref();
        let duration_s = parse_secs(format.and_then(|f| f.duration.as_deref()))
            .or_else(|| parse_secs(video.duration.as_deref()))
            .ok_or_else(|| MediaError::Unreadable {
                path: path.to_path_buf(),
                reason: "its duration is unknown".into(),
            })?;
        let fps = parse_rate(video.avg_frame_rate.as_deref())
            .or_else(|| parse_rate(video.r_frame_rate.as_deref()))
            .unwrap_or(0.0);
        let audio = self.streams.iter().find(|s| s.kind() == "audio").map(|s| AudioInfo {
            index: s.index,
            codec: s.codec_name.clone().unwrap_or_default(),
            channels: s.channels.unwrap_or(0),
            sample_rate: s.sample_rate.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0),
        });
        Ok(MediaInfo {
            path: path.to_path_buf(),
            size_bytes,
            container: format.and_then(|f| f.format_name.clone()).unwrap_or_default(),
            duration_ms: (duration_s * 1000.0).round() as u64,
            video: VideoInfo {
                index: video.index,
                codec: video.codec_name.clone().unwrap_or_default(),
                width: video.width.unwrap_or(0),
                height: video.height.unwrap_or(0),
                rotation: video.rotation(),
                fps,
                frame_count: video.nb_frames.as_deref().and_then(|n| n.parse().ok()),
                pix_fmt: video.pix_fmt.clone(),
            },
            audio,
            streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_rotation_parse() {
        assert_eq!(parse_rate(Some("30000/1001")).map(|r| (r * 1000.0).round()), Some(29970.0));
        assert_eq!(parse_rate(Some("0/0")), None);
        let mut s: ProbeStream = serde_json::from_str(r#"{"index":0,"codec_type":"video"}"#).unwrap();
        assert_eq!(s.rotation(), 0);
        s.side_data_list = vec![serde_json::json!({"side_data_type":"Display Matrix","rotation":-90})];
        assert_eq!(s.rotation(), 90);
        s.side_data_list = vec![serde_json::json!({"rotation":90})];
        assert_eq!(s.rotation(), 270);
    }

    fn probed(json: serde_json::Value) -> Result<MediaInfo, MediaError> {
        serde_json::from_value::<Probe>(json).unwrap().into_info(Path::new("v.mkv"), 1)
    }

    #[test]
    fn the_default_video_stream_is_read_else_the_first() {
        let stream = |index: u32, width: u32, default: i64| {
            serde_json::json!({"index": index, "codec_type": "video", "codec_name": "h264",
                "width": width, "height": 100, "disposition": {"default": default}})
        };
        let format = serde_json::json!({"duration": "1.0"});
        let info = probed(serde_json::json!({"streams": [stream(0, 100, 0), stream(1, 400, 0)], "format": format}));
        assert_eq!(info.unwrap().video.index, 0, "the first, not the largest");
        let info = probed(serde_json::json!({"streams": [stream(0, 400, 0), stream(1, 100, 1)], "format": format}));
        assert_eq!(info.unwrap().video.index, 1, "the default");
        let info = probed(serde_json::json!({"streams": [stream(0, 0, 1), stream(1, 100, 0)], "format": format}));
        assert_eq!(info.unwrap().video.index, 1, "a stream without a size is never read");
    }

    #[test]
    fn streams_that_are_not_a_video_are_named() {
        let cover = serde_json::json!({"index": 1, "codec_type": "video", "width": 64, "height": 64,
            "disposition": {"attached_pic": 1}});
        let audio = serde_json::json!({"index": 0, "codec_type": "audio"});
        let err = probed(serde_json::json!({"streams": [audio, cover]})).unwrap_err().to_string();
        assert_eq!(err, "v.mkv: has no video stream (streams: audio, attached picture)");
        let sizeless = serde_json::json!({"index": 0, "codec_type": "video", "width": 0, "height": 0});
        let err = probed(serde_json::json!({"streams": [sizeless]})).unwrap_err().to_string();
        assert!(err.contains("its video stream has no frame size"), "{err}");
    }

    #[test]
    fn a_size_ffmpeg_refuses_is_named_against_the_limit() {
        let stderr = "[rawvideo @ 0x55] [IMGUTILS @ 0x7ffd] Picture size 30000x30000 is invalid\n\
                      file:/v.avi: Device or resource busy\n";
        let limits = MediaLimits::default();
        let err = oversized(stderr, Path::new("v.avi"), &limits).unwrap().to_string();
        assert!(err.starts_with("v.avi: 30000x30000 = 900000000 pixels") && err.contains("limits.max_pixels"), "{err}");
        let roomy = MediaLimits { max_pixels: u64::MAX, ..limits };
        assert!(oversized(stderr, Path::new("v.avi"), &roomy).is_none(), "not over this limit");
        assert!(oversized("Invalid data found when processing input", Path::new("v.avi"), &limits).is_none());
    }
}
