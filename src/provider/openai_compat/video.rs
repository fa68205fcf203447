//! Native video over Chat Completions: the part the video travels in, the
//! rate the server samples it at, and so the frames it counts.
//!
//! Shapes followed (checked 2026-12-04): vLLM's `video_url` part and
//! `mm_processor_kwargs` (<https://docs.vllm.ai/en/latest/features/multimodal_inputs.html>),
//! OpenRouter's `video_url` with a base64 data URL
//! (<https://openrouter.ai/docs/guides/overview/multimodal/videos>), llama.cpp's
//! `input_video` (tools/server/README.md at b11434, the build vidgate pins), and
//! LiteLLM's `file` part with `file_data` and `format`
//! (<https://docs.litellm.ai/docs/completion/video>).

use std::path::Path;
use std::sync::Arc;

use base64::Engine;

use crate::config::{ModelProfile, VideoPart, VideoSampling};
use crate::provider::{Job, JobInput};

/// Request bytes besides the video's base64: the prompt, the model's name,
/// the JSON around them. Generous, so the check errs towards refusing.
const REQUEST_OVERHEAD_BYTES: u64 = 64 << 10;

/// How a model takes video, settled once from its profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct VideoOptions {
    pub part: VideoPart,
    pub sampling: VideoSampling,
    /// Frames a second: the server's own rate, or the one sent when the plan
    /// sets none.
    pub fps: f64,
    pub max_frames: Option<u32>,
    pub tokens_per_frame: u32,
}

/// The sampling knob a request carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Knob {
    /// The server samples at its own rate.
    None,
    Fps(f64),
    NumFrames(u32),
}

/// What the server takes from one video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sampled {
    pub frames: u64,
    pub knob: Knob,
}

/// A video file in base64, ready for the wire.
#[derive(Clone)]
pub(super) struct VideoData {
    pub mime: &'static str,
    pub base64: Arc<str>,
}

impl std::fmt::Debug for VideoData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{} base64 characters>", self.mime, self.base64.len())
    }
}

impl VideoOptions {
    /// The options of a model whose profile says `native_video = true`;
    /// `None` for one that takes frames.
    ///
    /// # Errors
    /// The profile key that is missing or out of range, and why.
    pub fn from_profile(model: &ModelProfile) -> Result<Option<Self>, (&'static str, String)> {
        if model.native_video != Some(true) {
            return Ok(None);
        }
        let fps = match model.video_fps {
            Some(fps) if fps.is_finite() && fps > 0.0 => fps,
            Some(fps) => return Err(("video_fps", format!("{fps} is not a rate above 0"))),
            None => return Err(("video_fps", "is not set: the frames a second the server samples".into())),
        };
        let Some(tokens_per_frame) = model.video_tokens_per_frame else {
            return Err(("video_tokens_per_frame", "is not set: needed to estimate a video's cost".into()));
        };
        if model.video_max_frames == Some(0) {
            return Err(("video_max_frames", "0 leaves no frame to send".into()));
        }
        Ok(Some(Self {
            part: model.video_part.unwrap_or(VideoPart::VideoUrl),
            sampling: model.video_sampling.unwrap_or(VideoSampling::None),
            fps,
            max_frames: model.video_max_frames,
            tokens_per_frame,
        }))
    }

    /// The frames the server takes from `job`'s video: its sampled duration
    /// (the range, when it has one) times the rate, at least one, at most
    /// `max_frames`; and the knob that asks for that. A rate the plan chose is
    /// sent where the server takes one; where it does not, the server's own
    /// counts. `None` for a job that is not a video.
    pub fn sample(&self, job: &Job) -> Option<Sampled> {
        let JobInput::Video { range, duration_ms, fps, .. } = &job.input else { return None };
        let duration_ms = range.map_or(*duration_ms, |r| r.duration_ms()).max(1);
        let rate = match (self.sampling, fps) {
            (VideoSampling::None, _) => self.fps,
            (_, Some(fps)) if fps.is_finite() && *fps > 0.0 => *fps,
            _ => self.fps,
        };
        let wanted = (duration_ms as f64 * rate / 1000.0).ceil().max(1.0);
        let cap = self.max_frames.map(u64::from);
        Some(match cap {
            Some(cap) if wanted > cap as f64 => Sampled {
                frames: cap,
                knob: match self.sampling {
                    VideoSampling::None => Knob::None,
                    // The rate that lands on the cap.
                    VideoSampling::Fps => Knob::Fps(cap as f64 * 1000.0 / duration_ms as f64),
                    // Video processors refuse `fps` and `num_frames` together.
                    VideoSampling::MmProcessorKwargs => Knob::NumFrames(cap as u32),
                },
            },
            _ => Sampled {
                frames: wanted as u64,
                knob: if self.sampling == VideoSampling::None { Knob::None } else { Knob::Fps(rate) },
            },
        })
    }
}

/// The request bytes a video of `size_bytes` makes: its base64 (4 bytes for
/// every 3) and the rest of the request.
pub(super) fn request_bytes(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(3).saturating_mul(4).saturating_add(REQUEST_OVERHEAD_BYTES)
}

/// Why a video of `size_bytes` cannot go in one request of at most `limit`
/// bytes, if it cannot.
pub(super) fn over_limit(size_bytes: u64, limit: u64) -> Option<String> {
    let bytes = request_bytes(size_bytes);
    (bytes > limit).then(|| {
        format!(
            "the video is {size_bytes} bytes, a request of about {bytes} bytes once in base64, \
             over the provider's limit of {limit} bytes (max_request_bytes)"
        )
    })
}

/// The MIME type a video is sent as, by its file name; MP4 unless it says otherwise.
pub(super) fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("mpg" | "mpeg") => "video/mpeg",
        Some("mkv") => "video/x-matroska",
        _ => "video/mp4",
    }
}

/// Read the video at `path` and encode it, refusing one whose request would
/// be over `limit` bytes before reading it.
///
/// # Errors
/// Over the limit (the message of [`over_limit`]), or the file cannot be read.
pub(super) async fn load(path: &Path, limit: u64) -> Result<VideoData, LoadError> {
    let size = tokio::fs::metadata(path).await.map_err(|e| LoadError::Read(e.to_string()))?.len();
    if let Some(why) = over_limit(size, limit) {
        return Err(LoadError::TooLarge(why));
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| LoadError::Read(e.to_string()))?;
    let base64 = tokio::task::spawn_blocking(move || base64::engine::general_purpose::STANDARD.encode(bytes))
        .await
        .map_err(|e| LoadError::Read(e.to_string()))?;
    Ok(VideoData { mime: mime_type(path), base64: base64.into() })
}

/// Why a video could not be made ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LoadError {
    TooLarge(String),
    Read(String),
}

/// Qwen2.5-VL on vLLM as `providers/vllm.toml` describes it, for tests.
#[cfg(test)]
pub(super) fn qwen_on_vllm() -> ModelProfile {
    ModelProfile {
        native_video: Some(true),
        video_sampling: Some(VideoSampling::MmProcessorKwargs),
        video_fps: Some(2.0),
        video_max_frames: Some(768),
        video_tokens_per_frame: Some(384),
        ..ModelProfile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Task, TimeRange};

    fn video(duration_ms: u64, range: Option<TimeRange>, fps: Option<f64>) -> Job {
        Job {
            task: Task::Timeline,
            input: JobInput::Video { path: "v.mp4".into(), range, duration_ms, size_bytes: 1, fps, sha256: None },
            prompt: "p".into(),
            prompt_version: "timeline@1".into(),
            max_output_tokens: 10,
            span: None,
        }
    }

    fn options(edit: impl FnOnce(&mut ModelProfile)) -> VideoOptions {
        let mut model = qwen_on_vllm();
        edit(&mut model);
        VideoOptions::from_profile(&model).expect("valid").expect("native video")
    }

    #[test]
    fn frames_are_the_sampled_duration_times_the_rate() {
        let o = options(|_| {});
        // The plan's rate is sent and counted: 10 s at 1 fps.
        assert_eq!(o.sample(&video(10_000, None, Some(1.0))), Some(Sampled { frames: 10, knob: Knob::Fps(1.0) }));
        // No rate in the plan: the profile's, 2 fps, sent too.
        assert_eq!(o.sample(&video(10_000, None, None)), Some(Sampled { frames: 20, knob: Knob::Fps(2.0) }));
        // Only the range is sampled; a part of a frame counts whole.
        let range = TimeRange::new(4_000, 5_250);
        assert_eq!(o.sample(&video(60_000, range, Some(2.0))).map(|s| s.frames), Some(3));
        // A server that takes no knob samples at its own rate, whatever the plan says.
        let own = options(|m| m.video_sampling = None);
        assert_eq!(own.sample(&video(10_000, None, Some(8.0))), Some(Sampled { frames: 20, knob: Knob::None }));
        assert_eq!(o.sample(&Job { input: JobInput::Text("t".into()), ..video(1, None, None) }), None);
    }

    #[test]
    fn the_frame_cap_limits_what_is_counted_and_asked() {
        // 12 min 48 s at 2 fps is 1536 frames: vLLM is asked for the cap, as
        // num_frames alone.
        let long = video(768_000, None, None);
        let o = options(|_| {});
        assert_eq!(o.sample(&long), Some(Sampled { frames: 768, knob: Knob::NumFrames(768) }));
        // A top-level fps is lowered to land on the cap.
        let fps = options(|m| m.video_sampling = Some(VideoSampling::Fps));
        assert_eq!(fps.sample(&long), Some(Sampled { frames: 768, knob: Knob::Fps(1.0) }));
        let own = options(|m| m.video_sampling = Some(VideoSampling::None));
        assert_eq!(own.sample(&long), Some(Sampled { frames: 768, knob: Knob::None }));
        let uncapped = options(|m| m.video_max_frames = None);
        assert_eq!(uncapped.sample(&long).map(|s| s.frames), Some(1536));
    }

    #[test]
    fn a_native_video_profile_names_what_it_lacks() {
        assert_eq!(VideoOptions::from_profile(&ModelProfile::default()), Ok(None));
        assert_eq!(VideoOptions::from_profile(&ModelProfile { native_video: Some(false), ..qwen_on_vllm() }), Ok(None));
        let key = |edit: fn(&mut ModelProfile)| {
            let mut model = qwen_on_vllm();
            edit(&mut model);
            VideoOptions::from_profile(&model).map(|_| ()).unwrap_err().0
        };
        assert_eq!(key(|m| m.video_fps = None), "video_fps");
        assert_eq!(key(|m| m.video_fps = Some(0.0)), "video_fps");
        assert_eq!(key(|m| m.video_fps = Some(f64::NAN)), "video_fps");
        assert_eq!(key(|m| m.video_tokens_per_frame = None), "video_tokens_per_frame");
        assert_eq!(key(|m| m.video_max_frames = Some(0)), "video_max_frames");
        let o = options(|m| m.video_part = None);
        assert_eq!(o.part, VideoPart::VideoUrl, "video_url unless the profile says otherwise");
    }

    #[test]
    fn the_size_limit_counts_the_base64() {
        // 3 MB of video is 4 MB of base64.
        assert_eq!(request_bytes(3_000_000), 4_000_000 + REQUEST_OVERHEAD_BYTES);
        let limit = 4_000_000 + REQUEST_OVERHEAD_BYTES;
        assert_eq!(over_limit(3_000_000, limit), None);
        let why = over_limit(3_000_003, limit).expect("over");
        assert!(why.contains("3000003 bytes") && why.contains(&format!("limit of {limit} bytes")), "{why}");
        assert_eq!(request_bytes(u64::MAX), u64::MAX, "no overflow");
    }

    #[tokio::test]
    async fn a_video_over_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.webm");
        std::fs::write(&path, [7u8; 3000]).unwrap();
        let data = load(&path, 1 << 20).await.expect("loads");
        assert_eq!(data.mime, "video/webm");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(data.base64.as_bytes()).unwrap(), [7u8; 3000]);
        assert!(matches!(load(&path, 4000).await, Err(LoadError::TooLarge(_))));
        assert!(matches!(load(&dir.path().join("none.mp4"), 1 << 20).await, Err(LoadError::Read(_))));
    }
}
