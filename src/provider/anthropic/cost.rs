//! Tokens and dollars, before and after a call: Anthropic's image-token rule
//! as the vision guide states it, and the profile's prices per million tokens.

use crate::config::Price;
use crate::provider::{Estimate, Job, JobInput};

use super::translate::{frame_label, TokenUsage, TEXT_SEPARATOR};

/// An image whose long edge is over this is scaled down to it first.
const MAX_LONG_EDGE: u64 = 1568;
/// Nor is an image counted above 784×1568 px, the largest size the vision
/// guide's table lists as sent unscaled (about 1,640 tokens).
const MAX_PIXELS: u64 = 784 * 1568;
/// Pixels per token.
const PIXELS_PER_TOKEN: u64 = 750;

/// The system prompt the API adds when a tool is offered (the tool-use
/// guide lists 313 to 346 tokens by model and `tool_choice`; the larger).
const TOOL_SYSTEM_TOKENS: u64 = 346;
/// The message framing around our one user turn, rounded up.
const MESSAGE_OVERHEAD_TOKENS: u64 = 8;

/// Cache writes cost this many times the input price: 5-minute and 1-hour lifetimes.
const CACHE_WRITE_5M: f64 = 1.25;
const CACHE_WRITE_1H: f64 = 2.0;

/// The tokens of one `width`×`height` image: `w×h/750`, after scaling the long
/// edge down to 1568 px, and at most the tokens of 784×1568 px.
pub(super) fn image_tokens(width: u32, height: u32) -> u64 {
    let (mut w, mut h) = (u64::from(width), u64::from(height));
    let long = w.max(h);
    if long > MAX_LONG_EDGE {
        // Round up, so the estimate errs high.
        (w, h) = ((w * MAX_LONG_EDGE).div_ceil(long), (h * MAX_LONG_EDGE).div_ceil(long));
    }
    (w * h).min(MAX_PIXELS).div_ceil(PIXELS_PER_TOKEN)
}

/// The worst-case cost of `job` before the call: every image by the rule
/// above, text at three characters a token (Claude's newer tokenizer counts
/// about 30 % more tokens than four a token would), the tool's schema and
/// system prompt for a structured job, and the job's whole output cap.
pub(super) fn estimate(job: &Job, price: &Price, tool_schema: Option<&serde_json::Value>) -> Estimate {
    let mut image = 0u64;
    let mut chars = job.prompt.chars().count() as u64;
    match &job.input {
        JobInput::Frames(frames) => {
            for frame in frames.iter() {
                image += image_tokens(frame.width, frame.height);
                chars += frame_label(frame.pts_ms).chars().count() as u64;
            }
        }
        JobInput::Text(text) => chars += (TEXT_SEPARATOR.len() + text.chars().count()) as u64,
        JobInput::Video { .. } | JobInput::Audio(_) => {}
    }
    let mut tool = 0;
    if let Some(schema) = tool_schema.filter(|_| job.structured()) {
        chars += schema.to_string().len() as u64;
        tool = TOOL_SYSTEM_TOKENS;
    }
    let input_tokens = image + chars.div_ceil(3) + tool + MESSAGE_OVERHEAD_TOKENS;
    let output_tokens = u64::from(job.max_output_tokens);
    Estimate {
        input_tokens,
        output_tokens,
        cost_usd: dollars(input_tokens, price.input_per_mtok) + dollars(output_tokens, price.output_per_mtok),
    }
}

/// What a call cost by its reported usage: uncached input at the input price,
/// cache reads at the profile's cached price (the input price when it has
/// none), cache writes at 1.25 or 2 times the input price by lifetime, and
/// output at the output price.
pub(super) fn actual_cost(usage: &TokenUsage, price: &Price) -> f64 {
    let input = price.input_per_mtok;
    dollars(usage.input_tokens, input)
        + dollars(usage.cache_read_tokens, price.cached_input_per_mtok.unwrap_or(input))
        + dollars(usage.cache_write_5m_tokens, input * CACHE_WRITE_5M)
        + dollars(usage.cache_write_1h_tokens, input * CACHE_WRITE_1H)
        + dollars(usage.output_tokens, price.output_per_mtok)
}

fn dollars(tokens: u64, per_mtok: f64) -> f64 {
    tokens as f64 * per_mtok / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::media::{Frame, FrameData, Jpeg};
    use crate::schema::Task;

    const PRICE: Price = Price {
        input_per_mtok: 1.0,
        output_per_mtok: 5.0,
        cached_input_per_mtok: Some(0.1),
        audio_input_per_mtok: None,
    };

    #[test]
    fn images_count_as_the_vision_guide_says() {
        // The guide's worked examples: 200×200 ≈ 54, 1000×1000 ≈ 1334, 1092×1092 ≈ 1590.
        assert_eq!(image_tokens(200, 200), 54);
        assert_eq!(image_tokens(1000, 1000), 1334);
        assert_eq!(image_tokens(1092, 1092), 1590);
        // A 512-wide 16:9 frame, as vidgate samples by default.
        assert_eq!(image_tokens(512, 288), 197);
        // 1920×1080 is scaled to 1568×882 first, then capped at 784×1568 px.
        assert_eq!(image_tokens(1920, 1080), MAX_PIXELS.div_ceil(750));
        // 4000×1000: the long edge scales to 1568×392.
        assert_eq!(image_tokens(4000, 1000), (1568 * 392u64).div_ceil(750));
        assert_eq!(image_tokens(0, 0), 0);
        assert_eq!(image_tokens(u32::MAX, u32::MAX), MAX_PIXELS.div_ceil(750), "no overflow, no panic");
    }

    fn frames(count: u32, width: u32, height: u32) -> Job {
        let jpeg = Jpeg::from(vec![0xFF, 0xD8, 0xFF, 0xD9]);
        let frames: Vec<Frame> = (0..count)
            .map(|i| Frame {
                index: i,
                pts_ms: u64::from(i) * 1000,
                width,
                height,
                data: FrameData::Jpeg(jpeg.clone()),
            })
            .collect();
        Job {
            task: Task::Describe,
            input: JobInput::Frames(Arc::from(frames)),
            prompt: "Describe.".into(),
            prompt_version: "frame@1".into(),
            max_output_tokens: 200,
            span: None,
        }
    }

    #[test]
    fn a_batch_of_frames_is_estimated_image_by_image_with_the_whole_cap() {
        let job = frames(8, 512, 288);
        let e = estimate(&job, &PRICE, None);
        // 8 × 197 image tokens; "Describe." and 8 labels of "Frame at 00:0N.000:" (19 characters) at 3 a token.
        let text = (9 + 8 * 19u64).div_ceil(3);
        assert_eq!(e.input_tokens, 8 * 197 + text + MESSAGE_OVERHEAD_TOKENS);
        assert_eq!(e.output_tokens, 200);
        assert!((e.cost_usd - (e.input_tokens as f64 * 1.0 + 200.0 * 5.0) / 1e6).abs() < 1e-12);
        // A timeline over the same frames adds the tool's schema and system prompt.
        let mut timeline = job.clone();
        timeline.task = Task::Timeline;
        let schema = crate::timeline::json_schema();
        let t = estimate(&timeline, &PRICE, Some(&schema));
        let schema_tokens = (9 + 8 * 19 + schema.to_string().len() as u64).div_ceil(3) - text;
        assert_eq!(t.input_tokens, e.input_tokens + TOOL_SYSTEM_TOKENS + schema_tokens);
    }

    #[test]
    fn usage_is_priced_by_kind_of_token() {
        let usage = TokenUsage {
            input_tokens: 1000,
            output_tokens: 100,
            cache_write_5m_tokens: 400,
            cache_write_1h_tokens: 200,
            cache_read_tokens: 2000,
        };
        // 1000 × $1 + 2000 × $0.10 + 400 × $1.25 + 200 × $2 + 100 × $5, per million.
        let expected = (1000.0 + 200.0 + 500.0 + 400.0 + 500.0) / 1e6;
        assert!((actual_cost(&usage, &PRICE) - expected).abs() < 1e-12, "{}", actual_cost(&usage, &PRICE));
        // Without a cached price, reads cost full input: never less than billed.
        let plain = Price { cached_input_per_mtok: None, ..PRICE };
        assert!((actual_cost(&usage, &plain) - (expected + 1800.0 / 1e6)).abs() < 1e-12);
    }
}
