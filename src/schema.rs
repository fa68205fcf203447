//! The provider-neutral request and report: vidgate's stable external form.
//!
//! Everything here serializes with serde; JSON is the form other programs rely on.
//! Times are integer milliseconds from the start of the video, never float seconds.
//! No provider wire type appears in this module.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Milliseconds from the start of the video.
pub type Millis = u64;

/// A half-open span of video time, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_ms: Millis,
    pub end_ms: Millis,
}

impl TimeRange {
    /// A range, or `None` when `end_ms` is not after `start_ms`.
    pub fn new(start_ms: Millis, end_ms: Millis) -> Option<Self> {
        (end_ms > start_ms).then_some(Self { start_ms, end_ms })
    }

    pub fn duration_ms(&self) -> Millis {
        self.end_ms - self.start_ms
    }

    pub fn contains(&self, t: Millis) -> bool {
        self.start_ms <= t && t < self.end_ms
    }
}

/// Where the video comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VideoSource {
    Path {
        path: PathBuf,
    },
    Url {
        url: String,
    },
    /// Bytes held by the caller (base64 in JSON).
    Bytes {
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// A hint for the container, e.g. "mp4".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
}

/// What the caller wants to know about the video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// A coherent story of the whole video.
    Describe,
    /// Events with start and end times (dense captioning).
    Timeline,
    /// Answer a question, citing times.
    Ask { question: String },
    /// The time ranges where something described happens.
    Find { what: String },
}

impl Task {
    /// The task's name in config (`router.tasks`) and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Describe => "describe",
            Task::Timeline => "timeline",
            Task::Ask { .. } => "ask",
            Task::Find { .. } => "find",
        }
    }
}

/// How frames are chosen from the video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SamplingMode {
    /// `fps` frames per second of video (0.1 = one every 10 s).
    Fps { fps: f64 },
    /// `count` frames spread evenly over the range.
    Count { count: u32 },
    /// Only the keyframes the encoder wrote (cheap: nothing else is decoded).
    Keyframes,
    /// One frame per distinct shot: hard cuts and gradual transitions.
    Scenes {
        /// How different a shot must be from the last one kept, 0..1.
        threshold: f64,
        /// The least time between two kept frames.
        min_gap_ms: Millis,
    },
}

impl Default for SamplingMode {
    fn default() -> Self {
        SamplingMode::Fps { fps: 1.0 }
    }
}

/// The sampling plan of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingPlan {
    #[serde(default)]
    pub mode: SamplingMode,
    /// Only this part of the video; the whole video when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<TimeRange>,
    /// Never more frames than this; sparser sampling is chosen when needed.
    pub max_frames: u32,
    /// Output frame width in pixels; height keeps the aspect ratio (even).
    pub width: u32,
}

impl Default for SamplingPlan {
    fn default() -> Self {
        Self { mode: SamplingMode::default(), range: None, max_frames: 64, width: 512 }
    }
}

/// Limits a request puts on how it may be served.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Hard cap on spend for this request, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Give up after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<Millis>,
    /// Only these providers (by profile name): those in the configured chain
    /// in its order, then the others in this order. The chain when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_providers: Vec<String>,
    /// Never send anything over the network.
    #[serde(default)]
    pub offline_only: bool,
}

/// One request: a video and a task.
///
/// How the answer is shown is not part of the request: the [`VideoReport`]
/// is data (its JSON form has everything), and [`crate::render`] writes it
/// as Markdown, SubRip or WebVTT. A key the request does not have is
/// refused, never ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    pub source: VideoSource,
    pub task: Task,
    #[serde(default)]
    pub sampling: SamplingPlan,
    #[serde(default)]
    pub constraints: Constraints,
}

impl VideoRequest {
    /// A request on a local file with default sampling and constraints.
    pub fn new(path: impl Into<PathBuf>, task: Task) -> Self {
        Self {
            source: VideoSource::Path { path: path.into() },
            task,
            sampling: SamplingPlan::default(),
            constraints: Constraints::default(),
        }
    }
}

/// What one provider saw in one span of the video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub range: TimeRange,
    pub text: String,
    /// The profile name of the provider that made it.
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// An event on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub text: String,
}

/// Tokens and money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

impl Usage {
    /// Add another call's usage; token counts a provider reports saturate
    /// rather than overflow.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost_usd += other.cost_usd;
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Failed in a way worth retrying on the same provider.
    Transient {
        reason: String,
    },
    /// Failed; the next provider should take over.
    FellBack {
        reason: String,
    },
    /// Failed; nothing else should be tried.
    Fatal {
        reason: String,
    },
}

/// One call to one provider, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    pub latency_ms: Millis,
    /// Cost estimated before the call: the worst case, output at its cap.
    pub estimated_cost_usd: f64,
    /// Input tokens estimated before the call.
    #[serde(default)]
    pub estimated_input_tokens: u64,
    /// What the provider reported, when it answered.
    pub usage: Usage,
    pub outcome: Outcome,
    /// What is doubtful about an answer that was kept (cut at the output
    /// cap, usage billed at the estimate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The answer to a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoReport {
    /// A narrative of the whole video (describe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story: Option<String>,
    /// Events with times (timeline, find).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// The answer to a question (ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// What the providers saw, before merging.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// What is said in the video, with times: the speech track's
    /// transcript, by the speech provider that heard it. These words came
    /// from the sound, not from the pictures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speech: Vec<Observation>,
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Which prompt templates (name@version) produced this report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_versions: Vec<String>,
    /// The providers that made it, in the order they were first used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
    /// Units read back from the journal instead of being paid for again.
    #[serde(default)]
    pub reused_units: u32,
    /// Units answered (and paid for) that the journal could not keep: a
    /// rerun pays for them again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsaved_units: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_json() {
        let mut req = VideoRequest::new("clip.mp4", Task::Ask { question: "Who waves?".into() });
        req.sampling.mode = SamplingMode::Scenes { threshold: 0.3, min_gap_ms: 500 };
        req.sampling.range = TimeRange::new(1_000, 5_000);
        req.constraints.max_cost_usd = Some(0.25);
        let json = serde_json::to_string(&req).unwrap();
        let back: VideoRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(req, back);
        assert!(json.contains(r#""kind":"ask""#), "{json}");
    }

    #[test]
    fn a_key_the_request_does_not_have_is_refused_by_name() {
        let mut json = serde_json::to_value(VideoRequest::new("clip.mp4", Task::Timeline)).unwrap();
        let parse = |json: &serde_json::Value| serde_json::from_value::<VideoRequest>(json.clone());
        assert!(parse(&json).is_ok());
        for (place, key) in [("", "output"), ("constraints", "max_cost"), ("sampling", "fsp")] {
            let mut bad = json.clone();
            let table = if place.is_empty() { &mut bad } else { &mut bad[place] };
            table[key] = serde_json::json!("srt");
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(&format!("unknown field `{key}`")), "{place}.{key}: {err}");
        }
        json["constraints"]["max_cost_usd"] = serde_json::json!(0.1);
        assert_eq!(parse(&json).unwrap().constraints.max_cost_usd, Some(0.1));
    }

    #[test]
    fn bytes_source_is_base64_in_json() {
        let src = VideoSource::Bytes { data: vec![0, 1, 2, 250], format: Some("mp4".into()) };
        let json = serde_json::to_value(&src).unwrap();
        assert_eq!(json["data"], "AAEC+g==");
        assert_eq!(serde_json::from_value::<VideoSource>(json).unwrap(), src);
    }

    #[test]
    fn usage_adds_without_overflowing() {
        let mut u = Usage { input_tokens: u64::MAX - 1, output_tokens: 5, cost_usd: 0.5 };
        u.add(&Usage { input_tokens: 10, output_tokens: u64::MAX, cost_usd: 0.25 });
        assert_eq!((u.input_tokens, u.output_tokens, u.cost_usd), (u64::MAX, u64::MAX, 0.75));
    }

    #[test]
    fn time_range_rejects_empty_spans() {
        assert!(TimeRange::new(5, 5).is_none());
        assert!(TimeRange::new(6, 5).is_none());
        let r = TimeRange::new(5, 9).unwrap();
        assert_eq!(r.duration_ms(), 4);
        assert!(r.contains(5) && !r.contains(9));
    }
}
