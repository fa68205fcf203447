//! Tokens and dollars, before and after a call, by Gemini's counting rules:
//! a native video costs a fixed number of tokens per frame sampled plus a
//! few per second, its audio 32 a second; an image a fixed count.
//!
//! The recordings pin the Gemini 2.5 figures: a 60 s clip at 1 fps and the
//! default resolution was counted as 15,780 `VIDEO` tokens (263 a second:
//! 258 for the frame and 5 more) and 1,917 `AUDIO` tokens (32 a second), so
//! audio comes on top of `video_tokens_per_second`.

use crate::config::{ImageTokenRule, ModelProfile, Price};
use crate::provider::{Estimate, Job, JobInput};
use crate::schema::TimeRange;

use super::translate::{frame_label, MediaResolution, RequestOptions, TokenUsage, TEXT_SEPARATOR};

/// `video_tokens_per_second` when the profile gives none: Gemini 2.5 at 1 fps.
pub(super) const DEFAULT_VIDEO_TOKENS_PER_SECOND: f64 = 263.0;
/// `audio_tokens_per_second` when the profile gives none.
pub(super) const DEFAULT_AUDIO_TOKENS_PER_SECOND: f64 = 32.0;
/// An image's tokens when the profile has no fixed count: Gemini 3's budget at
/// its default resolution, the largest of the documented counts, so the
/// estimate errs high.
pub(super) const DEFAULT_IMAGE_TOKENS: u64 = 1120;

/// Tokens of one video frame at each media resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FrameTokens {
    pub low: f64,
    /// Also the API's default.
    pub medium: f64,
    pub high: f64,
}

/// Gemini 2.x: 66 a frame at low resolution, 258 otherwise.
pub(super) const GEMINI_2_FRAMES: FrameTokens = FrameTokens { low: 66.0, medium: 258.0, high: 258.0 };
/// Gemini 3: 70 a frame at low and medium resolution, 280 at high.
pub(super) const GEMINI_3_FRAMES: FrameTokens = FrameTokens { low: 70.0, medium: 70.0, high: 280.0 };

impl FrameTokens {
    /// The frame counts behind a profile's per-second rate. A profile has no
    /// field for them; its rate tells the two generations apart, since a 2.x
    /// rate holds one 258-token frame a second and a Gemini 3 rate is near 100.
    pub fn for_rate(video_tokens_per_second: f64) -> Self {
        if video_tokens_per_second >= GEMINI_2_FRAMES.medium {
            GEMINI_2_FRAMES
        } else {
            GEMINI_3_FRAMES
        }
    }

    pub fn at(&self, resolution: Option<MediaResolution>) -> f64 {
        match resolution {
            Some(MediaResolution::Low) => self.low,
            Some(MediaResolution::High) => self.high,
            Some(MediaResolution::Medium) | None => self.medium,
        }
    }
}

/// The tokens of a native video of `duration_ms`, split as the API bills them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VideoTokens {
    pub video: u64,
    pub audio: u64,
}

/// A native video's tokens: per second, the frames sampled (`fps` × the
/// frame's count at `resolution`) plus what the profile's 1-fps rate holds
/// beyond one default frame (5 for Gemini 2.5), plus the audio.
pub(super) fn video_tokens(
    model: &ModelProfile,
    duration_ms: u64,
    resolution: Option<MediaResolution>,
    fps: Option<f64>,
    has_audio: bool,
) -> VideoTokens {
    let rate = positive(model.video_tokens_per_second).unwrap_or(DEFAULT_VIDEO_TOKENS_PER_SECOND);
    let frames = FrameTokens::for_rate(rate);
    let fps = fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(1.0);
    let per_second = frames.at(resolution) * fps + (rate - frames.medium).max(0.0);
    let audio_rate = positive(model.audio_tokens_per_second).unwrap_or(DEFAULT_AUDIO_TOKENS_PER_SECOND);
    let seconds = duration_ms as f64 / 1000.0;
    VideoTokens {
        video: whole_tokens(seconds * per_second),
        audio: if has_audio { whole_tokens(seconds * audio_rate) } else { 0 },
    }
}

/// The tokens of one image: the profile's fixed count, else [`DEFAULT_IMAGE_TOKENS`].
pub(super) fn image_tokens(model: &ModelProfile) -> u64 {
    match model.image_tokens {
        Some(ImageTokenRule::Fixed { tokens }) => u64::from(tokens),
        _ => DEFAULT_IMAGE_TOKENS,
    }
}

/// The worst-case cost of `job` before the call: the video over the job's
/// span (its audio at the audio price where the profile has one), or each
/// frame at the fixed image count; text at four characters a token; and the
/// job's whole output cap, thinking included. `has_audio` is what the probe
/// found; assume `true` when unknown.
pub(super) fn estimate(
    job: &Job,
    model: &ModelProfile,
    price: &Price,
    options: &RequestOptions,
    has_audio: bool,
) -> Estimate {
    let mut chars = job.prompt.chars().count() as u64;
    let (mut media, mut audio) = (0u64, 0u64);
    match &job.input {
        JobInput::Video { range, duration_ms, .. } => {
            let whole = TimeRange { start_ms: 0, end_ms: *duration_ms };
            let span = range.or(job.span).unwrap_or(whole);
            // An end past a known length is cut there, as the API does.
            let end = if *duration_ms > 0 { span.end_ms.min(*duration_ms) } else { span.end_ms };
            let seconds_ms = end.saturating_sub(span.start_ms);
            let tokens = video_tokens(model, seconds_ms, options.media_resolution, options.fps, has_audio);
            (media, audio) = (tokens.video, tokens.audio);
        }
        JobInput::Frames(frames) => {
            media = image_tokens(model) * frames.len() as u64;
            chars += frames.iter().map(|f| frame_label(f.pts_ms).chars().count() as u64).sum::<u64>();
        }
        JobInput::Text(text) => chars += (TEXT_SEPARATOR.len() + text.chars().count()) as u64,
        JobInput::Audio(_) => {}
    }
    let other = media + chars.div_ceil(4);
    let output_tokens = u64::from(job.max_output_tokens);
    let audio_price = price.audio_input_per_mtok.unwrap_or(price.input_per_mtok);
    Estimate {
        input_tokens: other + audio,
        output_tokens,
        cost_usd: dollars(other, price.input_per_mtok)
            + dollars(audio, audio_price)
            + dollars(output_tokens, price.output_per_mtok),
    }
}

/// What a call cost by its reported usage: audio prompt tokens at the audio
/// price where the profile has one, the rest of the prompt at the input
/// price, cached tokens at the cached price, answer and thinking as output.
pub(super) fn actual_cost(usage: &TokenUsage, price: &Price) -> f64 {
    let prompt = usage.input_tokens();
    let cached = usage.cached.min(prompt);
    // Which modalities the cache served is not broken down here; count the
    // uncached audio first, so the larger price is never skipped.
    let audio = usage.prompt_by_modality.audio.min(prompt - cached);
    let rest = prompt - cached - audio;
    let audio_price = price.audio_input_per_mtok.unwrap_or(price.input_per_mtok);
    let cached_price = price.cached_input_per_mtok.unwrap_or(price.input_per_mtok);
    dollars(rest, price.input_per_mtok)
        + dollars(audio, audio_price)
        + dollars(cached, cached_price)
        + dollars(usage.output_tokens(), price.output_per_mtok)
}

fn positive(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v > 0.0)
}

/// Round up, and never trust a NaN or an overflow from a profile.
fn whole_tokens(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.ceil().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

fn dollars(tokens: u64, per_mtok: f64) -> f64 {
    tokens as f64 * per_mtok / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::translate::ModalityTokens;
    use super::*;
    use crate::config::ProviderProfile;
    use crate::media::{Frame, FrameData};
    use crate::schema::Task;

    const YOUTUBE: &str = include_str!("../../../fixtures/recorded/gemini/youtube.response.json");
    const OFFSETS: &str = include_str!("../../../fixtures/recorded/gemini/youtube_offsets.response.json");

    /// The shipped profile, so the figures tested are the ones vidgate uses.
    fn shipped(model: &str) -> (ModelProfile, Price) {
        let profile: ProviderProfile = toml::from_str(include_str!("../../../providers/gemini.toml")).expect("profile");
        let m = profile.model_profile(model).cloned().expect("model");
        let price = m.price.expect("price");
        (m, price)
    }

    fn video_job(range: Option<TimeRange>, duration_ms: u64) -> Job {
        Job {
            task: Task::Describe,
            input: JobInput::Video { path: "v.mp4".into(), range, duration_ms, size_bytes: 1, fps: None, sha256: None },
            prompt: Arc::from("x".repeat(40)),
            prompt_version: Arc::from("chunk@1"),
            max_output_tokens: 1000,
            span: None,
        }
    }

    fn recorded_usage(body: &str) -> TokenUsage {
        let job = video_job(None, 1);
        super::super::translate::parse_response(body.as_bytes(), &job, "gemini").expect("parses").usage.expect("usage")
    }

    #[test]
    fn gemini_25_rates_match_a_recorded_minute() {
        // The whole recorded video: 15,780 VIDEO and 1,917 AUDIO tokens, about 60 s.
        let recorded = recorded_usage(YOUTUBE).prompt_by_modality;
        let (model, _) = shipped("gemini-2.5-flash");
        let ours = video_tokens(&model, 60_000, None, None, true);
        assert_eq!(ours.video, recorded.video, "263 a second at 1 fps");
        assert!(ours.audio >= recorded.audio && ours.audio - recorded.audio < 10, "{ours:?} vs {recorded:?}");
        // "medium" is the default's 258 a frame on 2.5.
        assert_eq!(video_tokens(&model, 60_000, Some(MediaResolution::Medium), None, true), ours);
        assert_eq!(video_tokens(&model, 60_000, None, None, false).audio, 0);
    }

    #[test]
    fn fps_and_resolution_scale_the_frames_only() {
        let (g25, _) = shipped("gemini-2.5-flash");
        // 258 × 2 + 5 a second; low: 66 + 5 (the docs' "about 100 a second with audio").
        assert_eq!(video_tokens(&g25, 10_000, None, Some(2.0), false).video, 10 * (516 + 5));
        assert_eq!(video_tokens(&g25, 10_000, Some(MediaResolution::Low), None, false).video, 10 * 71);
        assert_eq!(video_tokens(&g25, 10_000, Some(MediaResolution::High), Some(0.5), false).video, 10 * (129 + 5));
        // Gemini 3: the profile's 70 a second is one 70-token frame; high is 280 a frame.
        let (g3, _) = shipped("gemini-3.5-flash-lite");
        assert_eq!(FrameTokens::for_rate(70.0), GEMINI_3_FRAMES);
        assert_eq!(video_tokens(&g3, 10_000, None, None, false).video, 700);
        assert_eq!(
            video_tokens(&g3, 10_000, Some(MediaResolution::High), None, true),
            VideoTokens { video: 2800, audio: 320 }
        );
        // No rates in the profile: Gemini 2.5's.
        assert_eq!(
            video_tokens(&ModelProfile::default(), 1_000, None, None, true),
            VideoTokens { video: 263, audio: 32 }
        );
    }

    #[test]
    fn estimate_covers_the_span_its_audio_and_the_output_cap() {
        let (model, price) = shipped("gemini-2.5-flash");
        let options = RequestOptions::default();
        let job = video_job(TimeRange::new(20_000, 30_000), 60_000);
        let e = estimate(&job, &model, &price, &options, true);
        // 10 s: 2,630 video + 320 audio + 10 for the 40-character prompt.
        assert_eq!((e.input_tokens, e.output_tokens), (2_630 + 320 + 10, 1_000));
        let want = 2_640.0 * 0.30e-6 + 320.0 * 1.00e-6 + 1_000.0 * 2.50e-6;
        assert!((e.cost_usd - want).abs() < 1e-12, "{} vs {want}", e.cost_usd);
        // The job's span stands in for a missing range; an end past the video is cut.
        let mut spanned = video_job(None, 60_000);
        spanned.span = TimeRange::new(50_000, 70_000);
        assert_eq!(estimate(&spanned, &model, &price, &options, false).input_tokens, 2_630 + 10);
        // No range at all: the whole file.
        assert_eq!(estimate(&video_job(None, 60_000), &model, &price, &options, false).input_tokens, 15_780 + 10);
    }

    #[test]
    fn frames_cost_the_profiles_fixed_count() {
        let frames: Vec<Frame> = (0..3)
            .map(|i| Frame {
                index: i,
                pts_ms: u64::from(i) * 1000,
                width: 512,
                height: 288,
                data: FrameData::Jpeg(vec![0xFF].into()),
            })
            .collect();
        let mut job = video_job(None, 1);
        job.input = JobInput::Frames(Arc::from(frames));
        let (model, price) = shipped("gemini-3.5-flash-lite");
        let e = estimate(&job, &model, &price, &RequestOptions::default(), true);
        let labels = 3 * frame_label(0).len() as u64;
        assert_eq!(e.input_tokens, 3 * 560 + (40 + labels).div_ceil(4));
        // No fixed rule: the largest documented count, so the estimate errs high.
        let bare = estimate(&job, &ModelProfile::default(), &price, &RequestOptions::default(), true);
        assert_eq!(bare.input_tokens - e.input_tokens, 3 * (DEFAULT_IMAGE_TOKENS - 560));
    }

    #[test]
    fn actual_cost_of_a_recorded_answer_by_hand() {
        // youtube_offsets.response.json, on gemini-2.5-flash's prices:
        //   prompt 5,918 = TEXT 21 + VIDEO 5,260 + AUDIO 637; candidates 31; thoughts 157.
        //   text and video: (21 + 5,260) × $0.30 / 1M = $0.0015843
        //   audio:                 637 × $1.00 / 1M = $0.0006370
        //   output:         (31 + 157) × $2.50 / 1M = $0.0004700
        //   total                                   = $0.0026913
        let usage = recorded_usage(OFFSETS);
        let (_, price) = shipped("gemini-2.5-flash");
        let cost = actual_cost(&usage, &price);
        assert!((cost - 0.002_691_3).abs() < 1e-12, "{cost}");
        // On a model with one input price, audio costs what video does.
        let (_, flat) = shipped("gemini-3.5-flash-lite");
        let want = 5_918.0 * 0.30e-6 + 188.0 * 2.50e-6;
        assert!((actual_cost(&usage, &flat) - want).abs() < 1e-12);
    }

    #[test]
    fn cached_tokens_are_billed_at_the_cached_price() {
        let (_, price) = shipped("gemini-2.5-flash");
        let usage = TokenUsage {
            prompt: 1_000_000,
            candidates: 0,
            thoughts: 0,
            cached: 600_000,
            prompt_by_modality: ModalityTokens { video: 900_000, audio: 100_000, ..ModalityTokens::default() },
        };
        // 300,000 video at $0.30, 100,000 audio at $1.00, 600,000 cached at $0.03.
        let want = 0.3 * 0.30 + 0.1 * 1.00 + 0.6 * 0.03;
        assert!((actual_cost(&usage, &price) - want).abs() < 1e-12);
        // More cached than prompt tokens: the 10 prompt tokens, all at the cached price.
        let odd = TokenUsage { prompt: 10, cached: 99, ..TokenUsage::default() };
        assert!((actual_cost(&odd, &price) - 10.0 * 0.03e-6).abs() < 1e-15, "{}", actual_cost(&odd, &price));
    }
}
