//! Tokens and dollars, before and after a call: OpenAI's image-token rules as
//! the vision guide states them, and prices per million tokens.

use crate::config::{ImageDetail, ImageTokenRule, ModelProfile, Price};
use crate::provider::{Estimate, Job, JobInput};

use super::translate::{frame_label, TokenUsage, TEXT_SEPARATOR};
use super::video::VideoOptions;

/// The rule assumed for a model whose profile names none: GPT-4o's tiles,
/// the most common rule among OpenAI-compatible vision models.
pub(super) const FALLBACK_RULE: ImageTokenRule =
    ImageTokenRule::Tiles { base: 85, per_tile: 170, tile_px: 512, max_side: 2048, short_side: 768 };

/// Tokens of the chat framing around our one message (role markers and the
/// reply's start), as OpenAI's cookbook counts them, rounded up.
const MESSAGE_OVERHEAD_TOKENS: u64 = 8;

/// The tokens one `width`×`height` image counts as under `rule`.
pub(super) fn image_tokens(rule: &ImageTokenRule, width: u32, height: u32, detail: ImageDetail) -> u64 {
    let (w, h) = (u64::from(width), u64::from(height));
    match *rule {
        ImageTokenRule::Fixed { tokens } => u64::from(tokens),
        ImageTokenRule::Tiles { base, .. } if detail == ImageDetail::Low || w == 0 || h == 0 => u64::from(base),
        ImageTokenRule::Tiles { base, per_tile, tile_px, max_side, short_side } => {
            let (mut w, mut h) = (w, h);
            let long = w.max(h);
            if long > u64::from(max_side) {
                (w, h) = scale(w, h, u64::from(max_side), long);
            }
            let short = w.min(h);
            if short > u64::from(short_side) {
                (w, h) = scale(w, h, u64::from(short_side), short);
            }
            let tile = u64::from(tile_px.max(1));
            let tiles = w.div_ceil(tile) * h.div_ceil(tile);
            u64::from(base) + u64::from(per_tile) * tiles
        }
        ImageTokenRule::Patches { patch_px, max_patches, multiplier } => {
            let patches = patch_count(w, h, u64::from(patch_px.max(1)), u64::from(max_patches));
            let tokens = (patches as f64 * multiplier).ceil();
            // A negative or NaN multiplier in a profile counts as nothing, not a panic.
            if tokens.is_finite() && tokens > 0.0 {
                tokens as u64
            } else {
                0
            }
        }
    }
}

/// Scale so that `side` becomes `target`, keeping the aspect ratio; a side
/// that lands between pixels is rounded up, so the estimate errs high.
fn scale(w: u64, h: u64, target: u64, side: u64) -> (u64, u64) {
    let one = |d: u64| (d * target).div_ceil(side.max(1)).max(1);
    (one(w), one(h))
}

/// Patches covering the image; above `max`, the image is shrunk first the
/// way the vision guide describes, so that whole patches fit in `max`.
fn patch_count(w: u64, h: u64, patch: u64, max: u64) -> u64 {
    let raw = w.div_ceil(patch) * h.div_ceil(patch);
    if raw <= max {
        return raw;
    }
    let (wf, hf, pf) = (w as f64, h as f64, patch as f64);
    let shrink = ((max * patch * patch) as f64 / (wf * hf)).sqrt();
    let (cols, rows) = (wf * shrink / pf, hf * shrink / pf);
    let fit = (cols.floor() / cols).min(rows.floor() / rows);
    // Too thin for one whole patch across: keep the first shrink, the cap still holds.
    let shrink = if fit.is_finite() && fit > 0.0 { shrink * fit } else { shrink };
    // The shrink is chosen to land on whole patches; don't let float noise
    // (33.000000001) add a row.
    let cover = |side: f64| ((side * shrink / pf - 1e-6).ceil().max(1.0)) as u64;
    (cover(wf) * cover(hf)).min(max)
}

/// The worst-case cost of `job` on a model, before the call: every image by
/// the model's rule (or [`FALLBACK_RULE`]), text at four characters a token,
/// and the job's whole output cap.
///
/// A video input counts the frames the server samples from it times the
/// model's tokens per frame (see [`VideoOptions::sample`]); on a model that
/// takes no video, which refuses it, its prompt alone.
pub(super) fn estimate(job: &Job, model: &ModelProfile, price: &Price, detail: ImageDetail) -> Estimate {
    let rule = model.image_tokens.unwrap_or(FALLBACK_RULE);
    let mut image = 0u64;
    let mut chars = job.prompt.chars().count() as u64;
    match &job.input {
        JobInput::Frames(frames) => {
            for frame in frames.iter() {
                image += image_tokens(&rule, frame.width, frame.height, detail);
                chars += frame_label(frame.pts_ms).chars().count() as u64;
            }
        }
        JobInput::Text(text) => chars += (TEXT_SEPARATOR.len() + text.chars().count()) as u64,
        JobInput::Audio(_) => {}
        JobInput::Video { .. } => {
            let video = VideoOptions::from_profile(model).ok().flatten();
            if let Some((video, sampled)) = video.and_then(|v| Some((v, v.sample(job)?))) {
                image += sampled.frames * u64::from(video.tokens_per_frame);
            }
        }
    }
    let input_tokens = image + chars.div_ceil(4) + MESSAGE_OVERHEAD_TOKENS;
    let output_tokens = u64::from(job.max_output_tokens);
    Estimate {
        input_tokens,
        output_tokens,
        cost_usd: dollars(input_tokens, price.input_per_mtok) + dollars(output_tokens, price.output_per_mtok),
    }
}

/// What a call cost by its reported usage; cached prompt tokens at the cached
/// price where the profile has one.
pub(super) fn actual_cost(usage: &TokenUsage, price: &Price) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let cached_price = price.cached_input_per_mtok.unwrap_or(price.input_per_mtok);
    dollars(usage.input_tokens - cached, price.input_per_mtok)
        + dollars(cached, cached_price)
        + dollars(usage.output_tokens, price.output_per_mtok)
}

fn dollars(tokens: u64, per_mtok: f64) -> f64 {
    tokens as f64 * per_mtok / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::{Frame, FrameData};
    use crate::schema::Task;

    const GPT_4O: ImageTokenRule = FALLBACK_RULE;
    const GPT_41: ImageTokenRule = ImageTokenRule::Patches { patch_px: 32, max_patches: 1536, multiplier: 1.0 };

    #[test]
    fn tiles_match_openais_worked_examples() {
        // 1024² → 768² → 4 tiles; 2048×4096 → 1024×2048 → 768×1536 → 6 tiles.
        assert_eq!(image_tokens(&GPT_4O, 1024, 1024, ImageDetail::High), 765);
        assert_eq!(image_tokens(&GPT_4O, 2048, 4096, ImageDetail::High), 1105);
        assert_eq!(image_tokens(&GPT_4O, 4096, 8192, ImageDetail::Low), 85);
        assert_eq!(image_tokens(&GPT_4O, 2048, 4096, ImageDetail::Auto), 1105, "auto is high");
    }

    #[test]
    fn tiles_never_upscale() {
        assert_eq!(image_tokens(&GPT_4O, 512, 512, ImageDetail::High), 85 + 170);
        assert_eq!(image_tokens(&GPT_4O, 513, 500, ImageDetail::High), 85 + 170 * 2);
        // A 512-wide video frame, 16:9: one row of one tile.
        assert_eq!(image_tokens(&GPT_4O, 512, 288, ImageDetail::High), 255);
        // 1920×1080 → 1366×768 → 3×2 tiles.
        assert_eq!(image_tokens(&GPT_4O, 1920, 1080, ImageDetail::High), 85 + 170 * 6);
    }

    #[test]
    fn patches_match_openais_worked_examples() {
        // 32×32 patches of 1024²: 1024, under the cap.
        assert_eq!(image_tokens(&GPT_41, 1024, 1024, ImageDetail::High), 1024);
        // 1800×2400 is 57×75 = 4275 patches; shrunk to 1056×1408 it is 33×44 = 1452.
        assert_eq!(patch_count(1800, 2400, 32, 1536), 1452);
        assert_eq!(image_tokens(&GPT_41, 1800, 2400, ImageDetail::High), 1452);
        assert_eq!(image_tokens(&GPT_41, 2400, 1800, ImageDetail::Low), 1452);
    }

    #[test]
    fn patches_apply_the_multiplier_and_the_cap() {
        let mini = ImageTokenRule::Patches { patch_px: 32, max_patches: 1536, multiplier: 1.62 };
        // 1024 × 1.62 = 1658.88 → 1659.
        assert_eq!(image_tokens(&mini, 1024, 1024, ImageDetail::High), 1659);
        for (w, h) in [(4000, 3000), (7680, 4320), (100_000, 1), (1, 100_000), (2049, 769)] {
            assert!(patch_count(w, h, 32, 1536) <= 1536, "{w}x{h}");
        }
        assert_eq!(patch_count(2048, 768, 32, 1536), 1536, "exactly at the cap, unscaled");
    }

    #[test]
    fn fixed_is_fixed() {
        let rule = ImageTokenRule::Fixed { tokens: 258 };
        assert_eq!(image_tokens(&rule, 4000, 3000, ImageDetail::High), 258);
    }

    fn job(frames: usize, prompt: &str) -> Job {
        let frames: Vec<Frame> = (0..frames)
            .map(|i| Frame {
                index: i as u32,
                pts_ms: i as u64 * 1000,
                width: 1024,
                height: 1024,
                data: FrameData::Jpeg(vec![0xFF, 0xD8, 0xFF, 0xD9].into()),
            })
            .collect();
        Job {
            task: Task::Describe,
            input: JobInput::Frames(Arc::from(frames)),
            prompt: Arc::from(prompt),
            prompt_version: Arc::from("frame@1"),
            max_output_tokens: 500,
            span: None,
        }
    }

    #[test]
    fn estimate_counts_images_text_and_the_output_cap() {
        let model = ModelProfile { image_tokens: Some(GPT_4O), ..ModelProfile::default() };
        let price = Price {
            input_per_mtok: 2.5,
            output_per_mtok: 10.0,
            cached_input_per_mtok: None,
            audio_input_per_mtok: None,
        };
        let prompt = "x".repeat(40);
        let e = estimate(&job(2, &prompt), &model, &price, ImageDetail::High);
        let labels = 2 * frame_label(0).len() as u64;
        assert_eq!(e.input_tokens, 2 * 765 + (40 + labels).div_ceil(4) + MESSAGE_OVERHEAD_TOKENS);
        assert_eq!(e.output_tokens, 500);
        let want = e.input_tokens as f64 * 2.5e-6 + 500.0 * 10e-6;
        assert!((e.cost_usd - want).abs() < 1e-12, "{} vs {want}", e.cost_usd);

        let low = estimate(&job(2, &prompt), &model, &price, ImageDetail::Low);
        assert_eq!(e.input_tokens - low.input_tokens, 2 * (765 - 85));
        // No rule in the profile: GPT-4o's tiles.
        let bare = estimate(&job(2, &prompt), &ModelProfile::default(), &price, ImageDetail::High);
        assert_eq!(bare, e);
    }

    #[test]
    fn a_video_costs_its_frames_times_the_tokens_per_frame() {
        let model = super::super::video::qwen_on_vllm();
        let price = Price {
            input_per_mtok: 0.08,
            output_per_mtok: 0.5,
            cached_input_per_mtok: None,
            audio_input_per_mtok: None,
        };
        let video = |duration_ms: u64, fps: Option<f64>| Job {
            input: JobInput::Video { path: "v.mp4".into(), range: None, duration_ms, size_bytes: 1, fps, sha256: None },
            ..job(0, "x".repeat(40).as_str())
        };
        let text = 40u64.div_ceil(4) + MESSAGE_OVERHEAD_TOKENS;
        // 30 s at the plan's 1 fps: 30 frames of 384 tokens.
        let e = estimate(&video(30_000, Some(1.0)), &model, &price, ImageDetail::Auto);
        assert_eq!(e.input_tokens, 30 * 384 + text);
        assert_eq!(e.output_tokens, 500);
        let want = e.input_tokens as f64 * 0.08e-6 + 500.0 * 0.5e-6;
        assert!((e.cost_usd - want).abs() < 1e-12, "{} vs {want}", e.cost_usd);
        // An hour at 2 fps is capped at 768 frames.
        assert_eq!(estimate(&video(3_600_000, None), &model, &price, ImageDetail::Auto).input_tokens, 768 * 384 + text);
        // A model that takes no video counts the prompt alone.
        assert_eq!(
            estimate(&video(30_000, None), &ModelProfile::default(), &price, ImageDetail::Auto).input_tokens,
            text
        );
    }

    #[test]
    fn actual_cost_bills_cached_tokens_at_their_price() {
        let usage = TokenUsage { input_tokens: 1_000_000, output_tokens: 100_000, cached_input_tokens: 400_000 };
        let mut price = Price {
            input_per_mtok: 2.0,
            output_per_mtok: 8.0,
            cached_input_per_mtok: Some(0.5),
            audio_input_per_mtok: None,
        };
        assert!((actual_cost(&usage, &price) - (0.6 * 2.0 + 0.4 * 0.5 + 0.1 * 8.0)).abs() < 1e-12);
        price.cached_input_per_mtok = None;
        assert!((actual_cost(&usage, &price) - (2.0 + 0.8)).abs() < 1e-12);
        // A server reporting more cached than prompt tokens is billed for its
        // 10 prompt tokens, all as cached, never below zero.
        let odd = TokenUsage { input_tokens: 10, output_tokens: 0, cached_input_tokens: 99 };
        assert!((actual_cost(&odd, &price) - 10.0 * 2.0e-6).abs() < 1e-15, "{}", actual_cost(&odd, &price));
        price.cached_input_per_mtok = Some(0.5);
        assert!((actual_cost(&odd, &price) - 10.0 * 0.5e-6).abs() < 1e-15, "{}", actual_cost(&odd, &price));
    }
}
