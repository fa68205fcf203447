//! The provider seam: one object-safe async trait that every backend implements.
//!
//! A backend is a translator between a [`Job`] and one wire protocol. Policies
//! (budget, retry, rate limit, timeout, fallback) wrap it from the outside; a
//! backend never retries on its own.

pub mod anthropic;
pub mod auth;
mod error;
pub mod executor;
pub mod gemini;
pub mod http;
#[cfg(feature = "local")]
pub mod llama_local;
pub mod openai_compat;
pub mod scripted;
pub mod setup;
pub mod structured;
pub mod transcription;
pub(crate) mod usage;
pub mod whisper_local;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::media::Frame;
use crate::schema::{Observation, Task, TimeRange, Usage};

pub use error::{classify, classify_status, Cause, ErrorClass, ErrorFacts, ProviderError};

/// What a backend can take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Accepts a whole video file (with its audio) instead of frames.
    pub native_video: bool,
    /// Watches only a video job's `range` of the file it is sent; without it,
    /// a range is sent as a cut of its own.
    #[serde(default)]
    pub video_offsets: bool,
    /// Images in one call; 1 means frame by frame.
    pub max_images_per_call: u32,
    /// Largest request body sent inline, in bytes.
    pub max_inline_bytes: u64,
    /// Can be held to a JSON schema in its answer.
    pub json_schema: bool,
    /// Hears the audio track.
    pub audio: bool,
    /// Runs without a network.
    pub offline: bool,
    /// Takes frames as raw RGB (the local model), not JPEG.
    #[serde(default)]
    pub rgb_frames: bool,
    /// The model's context in tokens, when the provider knows it (a local
    /// model as loaded; a cloud model as its profile says).
    #[serde(default)]
    pub context_tokens: Option<u64>,
}

/// What a job shows the model.
#[derive(Debug, Clone)]
pub enum JobInput {
    /// Frames with their presentation times, in order.
    Frames(Arc<[Frame]>),
    /// The video file itself (or a trimmed copy), for native-video backends.
    /// `fps` is the sampling the plan chose, for a backend that samples the
    /// video itself (Gemini's `videoMetadata.fps`); its own setting when absent.
    /// `sha256` is the file's content hash (hex) when the run has it already,
    /// so that a backend that needs it (to reuse an upload) does not read
    /// the file again for it.
    Video {
        path: PathBuf,
        range: Option<TimeRange>,
        duration_ms: u64,
        size_bytes: u64,
        fps: Option<f64>,
        sha256: Option<Arc<str>>,
    },
    /// Text only: merging observations into a story.
    Text(String),
    /// Speech to transcribe, for speech providers.
    Audio(AudioClip),
}

/// A stretch of the video's sound, as a WAV file (16 kHz mono), and where
/// it lies in the video.
#[derive(Clone)]
pub struct AudioClip {
    /// The WAV file's bytes, shared by every retry and fallback.
    pub wav: Arc<[u8]>,
    /// Where the clip lies in the video.
    pub range: TimeRange,
    /// The part of `range` this clip speaks for: text heard in its overlap
    /// with a neighbouring clip, outside this part, is the neighbour's.
    pub owned: TimeRange,
}

impl std::fmt::Debug for AudioClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioClip")
            .field("range", &self.range)
            .field("owned", &self.owned)
            .field("wav", &format_args!("{} bytes", self.wav.len()))
            .finish()
    }
}

/// The error of a backend that hears no audio, given an audio job.
pub(crate) fn no_audio(provider: &str) -> ProviderError {
    ProviderError::new(provider, ErrorClass::FallBack, "this provider takes no audio (it is not a speech provider)")
}

/// One unit of work for one provider. Cheap to clone, so a retry or a fallback
/// replays the same job instead of rebuilding it.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: Task,
    pub input: JobInput,
    /// The rendered prompt text sent with the input.
    pub prompt: Arc<str>,
    /// Which template made the prompt, as `name@version`.
    pub prompt_version: Arc<str>,
    /// Upper bound on generated tokens.
    pub max_output_tokens: u32,
    /// The part of the video the job speaks for; times in an answer must lie
    /// within it. The span of the frames when absent.
    pub span: Option<TimeRange>,
}

impl JobInput {
    /// From the first frame to just after the last, for a frames input.
    pub fn frames_span(&self) -> Option<TimeRange> {
        match self {
            JobInput::Frames(frames) => Some(TimeRange {
                start_ms: frames.first().map_or(0, |f| f.pts_ms),
                end_ms: frames.last().map_or(0, |f| f.pts_ms) + 1,
            }),
            _ => None,
        }
    }
}

impl Job {
    /// The part of the video this job speaks for: `span` when set, else what
    /// its input covers (the frames from first to last, the video's range, the
    /// audio clip's, or a token millisecond for text).
    pub fn covered(&self) -> TimeRange {
        if let Some(span) = self.span {
            return span;
        }
        match &self.input {
            JobInput::Frames(_) => self.input.frames_span().unwrap_or(TimeRange { start_ms: 0, end_ms: 1 }),
            JobInput::Video { range, duration_ms, .. } => {
                range.unwrap_or(TimeRange { start_ms: 0, end_ms: (*duration_ms).max(1) })
            }
            JobInput::Text(_) => TimeRange { start_ms: 0, end_ms: 1 },
            JobInput::Audio(clip) => clip.range,
        }
    }

    /// Whether the answer must be the timeline JSON of
    /// [`crate::timeline::json_schema`]: a timeline or find job, whatever its
    /// input (frames, text, or the video itself). [`structured`] holds every
    /// backend to it alike.
    pub fn structured(&self) -> bool {
        matches!(self.task, Task::Timeline | Task::Find { .. })
    }
}

/// The text before each frame a protocol sends: its time, as the model reads it.
pub(crate) fn frame_label(pts_ms: u64) -> String {
    format!("Frame at {}:", crate::timecode::format(pts_ms))
}

/// The JPEG of `frame`, for a protocol that sends JPEG; an RGB frame (meant
/// for the local model) hands the job on.
pub(crate) fn jpeg_of<'a>(frame: &'a Frame, provider: &str) -> Result<&'a crate::media::Jpeg, ProviderError> {
    match &frame.data {
        crate::media::FrameData::Jpeg(jpeg) => Ok(jpeg),
        crate::media::FrameData::Rgb(_) => Err(ProviderError::new(
            provider,
            ErrorClass::FallBack,
            format!(
                "frame {} at {} is RGB; this protocol sends JPEG",
                frame.index,
                crate::timecode::format(frame.pts_ms)
            ),
        )),
    }
}

/// A cost estimate made before a call, from the profile's prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub input_tokens: u64,
    /// The output cap: the worst case that gets reserved.
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// What a backend returns for a job.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOutput {
    pub observations: Vec<Observation>,
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// What is doubtful about an answer that was kept: cut at the output cap,
    /// usage that could not be read, a cost far off the estimate.
    pub warnings: Vec<String>,
}

/// A provider that cannot be built from its profile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("provider {provider}: {message}")]
pub struct SetupError {
    pub provider: String,
    pub message: String,
}

/// A backend. Object safe: the router holds `Arc<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The profile name this provider was built from.
    fn id(&self) -> &str;

    fn capabilities(&self) -> Capabilities;

    /// The model this provider calls, as configured.
    fn model(&self) -> &str {
        ""
    }

    /// What else, besides the model and the job, shapes this provider's
    /// answers (the local model's sampling settings, say). It is part of the
    /// journal's unit key, so changing it makes new answers rather than
    /// reading back old ones. Empty when nothing does.
    fn settings_key(&self) -> String {
        String::new()
    }

    /// The worst-case cost of `job`, without any network call.
    ///
    /// # Errors
    /// When the job cannot be served at all (too many images, too large), so
    /// nothing is spent on it.
    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError>;

    /// Serve `job` once. Retries belong to the policies around the provider.
    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError>;

    /// The policy layers around the backend, outermost first, ending in
    /// `backend`: what checks a built stack against its documented order.
    fn layers(&self) -> Vec<&'static str> {
        vec!["backend"]
    }
}

/// A keyless profile of `protocol` for `model`, priced, on an address that
/// nothing answers: for unit tests that build a backend without calling it.
#[cfg(test)]
pub(crate) fn test_profile(protocol: crate::config::Protocol, model: &str) -> crate::config::ProviderProfile {
    crate::config::ProviderProfile {
        protocol: Some(protocol),
        base_url: Some("http://127.0.0.1:9/v1".into()),
        model: Some(model.into()),
        price: Some(crate::config::Price {
            input_per_mtok: 0.3,
            output_per_mtok: 2.5,
            cached_input_per_mtok: None,
            audio_input_per_mtok: None,
        }),
        ..crate::config::ProviderProfile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_and_find_jobs_are_structured_whatever_their_input() {
        let job = |task: Task, input: JobInput| Job {
            task,
            input,
            prompt: "p".into(),
            prompt_version: "p@1".into(),
            max_output_tokens: 8,
            span: None,
        };
        let frames = || JobInput::Frames(Vec::new().into());
        let text = || JobInput::Text("t".into());
        let video = || JobInput::Video {
            path: "v.mp4".into(),
            range: None,
            duration_ms: 1000,
            size_bytes: 1,
            fps: None,
            sha256: None,
        };
        let find = || Task::Find { what: "a dog".into() };
        for input in [frames(), text()] {
            assert!(job(Task::Timeline, input.clone()).structured());
            assert!(job(find(), input.clone()).structured());
            assert!(!job(Task::Describe, input.clone()).structured());
            assert!(!job(Task::Ask { question: "why?".into() }, input).structured());
        }
        // A native video's timeline is held to the same rule as one from frames.
        assert!(job(Task::Timeline, video()).structured());
        assert!(job(find(), video()).structured());
        assert!(!job(Task::Describe, video()).structured());
    }
}
