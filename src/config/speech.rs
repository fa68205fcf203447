//! `[speech]`: the speech track, what is said in a video and when.

use serde::{Deserialize, Serialize};

use super::check::Invalid;

/// When a run transcribes the video's speech.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpeechTrack {
    /// When the video has sound and a speech provider is configured, unless
    /// the video goes whole to a provider that hears it (Gemini).
    #[default]
    Auto,
    /// Whenever the video has sound, also next to a provider that hears it.
    Always,
    /// Never.
    Never,
}

/// The speech track: which providers transcribe, when, and how speech is found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// Speech providers (profiles of protocol `openai_transcription` or `whisper_local`), tried
    /// in order: the second takes a segment the first fails on.
    pub chain: Vec<String>,
    pub track: SpeechTrack,
    /// The speech's language, ISO-639-1 (`en`); detected when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Words to expect (names, terms), sent as Whisper's `prompt`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt: String,
    /// Segments transcribed at once.
    pub max_concurrency: u32,
    pub vad: VadSettings,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            chain: Vec::new(),
            track: SpeechTrack::Auto,
            language: None,
            prompt: String::new(),
            max_concurrency: 4,
            vad: VadSettings::default(),
        }
    }
}

impl SpeechConfig {
    /// # Errors
    /// A value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(language) = &self.language {
            if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(Invalid::new("language", format!("`{language}` is not an ISO-639-1 code such as `en`")));
            }
        }
        if !(1..=64).contains(&self.max_concurrency) {
            return Err(Invalid::new("max_concurrency", format!("{} is outside 1..=64", self.max_concurrency)));
        }
        self.vad.validate().map_err(|e| e.within("vad"))
    }
}

/// The settings of the speech detector, [`crate::speech::vad`] (`[speech.vad]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadSettings {
    /// A voiced frame is louder than this, dBFS.
    pub threshold_db: f64,
    /// ... and louder than the noise floor by this much, dB.
    pub margin_db: f64,
    /// How fast the noise floor rises when frames are louder than it.
    pub floor_rise_db_per_s: f64,
    /// Silence that ends a segment.
    pub hangover_ms: u64,
    /// Audio kept before the first and after the last voiced frame.
    pub pad_ms: u64,
    /// Segments with less voiced time than this are dropped.
    pub min_voiced_ms: u64,
    /// The longest segment, overlap included.
    pub max_segment_ms: u64,
    /// Audio two segments cut apart share.
    pub overlap_ms: u64,
    /// Where, before the end of a segment too long, the cut is looked for.
    pub cut_search_ms: u64,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            threshold_db: -45.0,
            margin_db: 10.0,
            floor_rise_db_per_s: 2.0,
            hangover_ms: 700,
            pad_ms: 200,
            min_voiced_ms: 150,
            max_segment_ms: 30_000,
            overlap_ms: 1_000,
            cut_search_ms: 5_000,
        }
    }
}

impl VadSettings {
    /// Checks the values against each other.
    ///
    /// # Errors
    /// A value out of its range, named by its key within the section.
    pub fn validate(&self) -> Result<(), Invalid> {
        // Levels are measured down to -100 dBFS: a threshold below that would
        // call digital silence speech.
        if !(self.threshold_db >= -100.0 && self.threshold_db < 0.0) {
            return Err(Invalid::new("threshold_db", format!("{} is outside [-100, 0) dBFS", self.threshold_db)));
        }
        if !(self.margin_db >= 0.0 && self.margin_db <= 60.0) {
            return Err(Invalid::new("margin_db", format!("{} is outside [0, 60] dB", self.margin_db)));
        }
        if !(self.floor_rise_db_per_s.is_finite() && self.floor_rise_db_per_s >= 0.0) {
            return Err(Invalid::new(
                "floor_rise_db_per_s",
                format!("{} is not a finite number ≥ 0", self.floor_rise_db_per_s),
            ));
        }
        if !(1_000..=600_000).contains(&self.max_segment_ms) {
            return Err(Invalid::new("max_segment_ms", format!("{} is outside 1000..=600000", self.max_segment_ms)));
        }
        if self.min_voiced_ms > self.max_segment_ms {
            return Err(Invalid::new(
                "min_voiced_ms",
                format!(
                    "{} is more than max_segment_ms {}: no segment could pass",
                    self.min_voiced_ms, self.max_segment_ms
                ),
            ));
        }
        if self.overlap_ms.saturating_add(self.cut_search_ms) >= self.max_segment_ms {
            return Err(Invalid::new(
                "overlap_ms",
                format!(
                    "overlap_ms {} + cut_search_ms {} must stay below max_segment_ms {}",
                    self.overlap_ms, self.cut_search_ms, self.max_segment_ms
                ),
            ));
        }
        if self.hangover_ms > 10_000 || self.pad_ms > 5_000 {
            return Err(Invalid::new("hangover_ms", "hangover_ms is at most 10000 and pad_ms at most 5000"));
        }
        Ok(())
    }
}
