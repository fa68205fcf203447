//! Planning the speech track: whether a run transcribes the video's sound,
//! on which providers, and what that costs at most.

use std::sync::Arc;

use serde::Serialize;

use super::{Gateway, Member};
use crate::config::SpeechTrack;
use crate::media::MediaInfo;
use crate::provider::{AudioClip, Job, JobInput};
use crate::schema::{Task, TimeRange};

/// The speech track of a plan: the worst case, every moment of the sound
/// being speech.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeechPlan {
    /// The first speech provider of `speech.chain` that can be used.
    pub provider: String,
    pub model: String,
    /// The sound that may be transcribed: the video's (or the range's) length.
    pub audio_ms: u64,
    /// Transcription calls if all of it is speech.
    pub calls: u32,
    /// What those calls cost at most.
    pub estimated_usd: f64,
    /// Why the calls cannot be made as planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run does about speech.
#[derive(Clone, Default)]
pub(crate) struct SpeechTrackPlan {
    pub plan: Option<SpeechPlan>,
    /// The speech providers, in order.
    pub members: Vec<Member>,
    /// Why a speech provider is left out, or the track is.
    pub notes: Vec<String>,
    /// `auto` left the speech to the provider the video goes to whole: if
    /// that call fails and frames go instead, the track is made after all.
    pub left_to_video: bool,
}

/// Where an empty chain is named in errors and notes.
pub(crate) const NO_CHAIN: &str =
    "speech.chain names no speech provider (e.g. speech.chain = [\"groq-whisper\"] with GROQ_API_KEY set)";

impl Gateway {
    /// The speech track for a video whose frames (or the video itself) go to
    /// `vision` first: none when `speech.track` is `never`, the video has no
    /// sound, no speech provider is configured, or (`auto`) the video goes
    /// whole to a provider that hears it. `forced`: transcribe whatever the
    /// track says (`vidgate transcribe`).
    pub(crate) fn speech_track(
        &self,
        info: &MediaInfo,
        range: Option<TimeRange>,
        vision: &[Member],
        forced: bool,
    ) -> SpeechTrackPlan {
        let config = &self.config.speech;
        let mut track = SpeechTrackPlan::default();
        let heard = vision.first().is_some_and(|m| {
            let caps = m.shared.capabilities();
            caps.native_video && caps.audio
        });
        let wanted = forced
            || match config.track {
                SpeechTrack::Never => false,
                SpeechTrack::Always => true,
                SpeechTrack::Auto => !heard,
            };
        if !wanted || !info.has_audio() {
            track.left_to_video = !wanted && heard && config.track == SpeechTrack::Auto;
            return track;
        }
        if config.chain.is_empty() {
            if forced || config.track == SpeechTrack::Always {
                track.notes.push(format!("no speech track: {NO_CHAIN}"));
            }
            return track;
        }
        let (members, skipped) = self.members(&config.chain);
        track.notes.extend(skipped.into_iter().map(|s| format!("speech provider skipped: {s}")));
        let Some(first) = members.first() else {
            return track;
        };
        let span = range.unwrap_or(TimeRange { start_ms: 0, end_ms: info.duration_ms.max(1) });
        let (calls, clip_ms) = worst_case(span.duration_ms(), &config.vad);
        let estimate = first.shared.estimate(&audio_job(clip_ms));
        track.plan = Some(SpeechPlan {
            provider: first.name.clone(),
            model: first.shared.model().to_string(),
            audio_ms: span.duration_ms(),
            calls,
            estimated_usd: estimate.as_ref().map_or(0.0, |e| e.cost_usd * f64::from(calls)),
            error: estimate.err().map(|e| e.message),
        });
        track.members = members;
        track
    }
}

/// Calls, and the length of each, when `audio_ms` is all speech: windows of
/// `max_segment_ms`, each cut as early as the detector may cut it (the
/// start of its cut search), the next starting half an overlap before the cut.
pub(crate) fn worst_case(audio_ms: u64, vad: &crate::config::VadSettings) -> (u32, u64) {
    let max = vad.max_segment_ms;
    if audio_ms <= max {
        return (1, audio_ms.max(1));
    }
    let step = max.saturating_sub(vad.cut_search_ms + vad.overlap_ms / 2).max(1);
    let calls = 1 + (audio_ms - max).div_ceil(step);
    (u32::try_from(calls).unwrap_or(u32::MAX), max)
}

/// A transcription job of `ms` of sound, for an estimate.
fn audio_job(ms: u64) -> Job {
    let range = TimeRange { start_ms: 0, end_ms: ms.max(1) };
    // 16 kHz, 16 bit: 32 bytes a millisecond, and the WAV header.
    let bytes = usize::try_from(ms.saturating_mul(32) + 44).unwrap_or(usize::MAX);
    Job {
        task: Task::Describe,
        input: JobInput::Audio(AudioClip { wav: Arc::from(vec![0u8; bytes.min(64 << 20)]), range, owned: range }),
        prompt: "".into(),
        prompt_version: SPEECH_PROMPT_VERSION.into(),
        max_output_tokens: 0,
        span: Some(range),
    }
}

/// The journal's name for how speech jobs are made: a new version makes new
/// units rather than reading back old ones.
pub(crate) const SPEECH_PROMPT_VERSION: &str = "speech@1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_case_is_every_window_full() {
        let vad = crate::config::VadSettings::default();
        assert_eq!(worst_case(10_000, &vad), (1, 10_000));
        assert_eq!(worst_case(30_000, &vad), (1, 30_000));
        // Cut 5 s early, the next window half a second before: a window
        // more each 24.5 s.
        assert_eq!(worst_case(54_500, &vad), (2, 30_000));
        assert_eq!(worst_case(54_501, &vad), (3, 30_000));
        assert_eq!(worst_case(0, &vad), (1, 1));
    }
}
