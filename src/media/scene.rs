//! One frame per distinct shot, for hard cuts and gradual transitions alike.
//!
//! Each analysed frame is compared with the last frame *kept*, not only with
//! its neighbour: a fade or a crossfade changes little from frame to frame but
//! a lot from the shot it left. A frame that differs from the last kept one by
//! `threshold` becomes a candidate; while the picture keeps moving away from
//! the candidate (the middle of a transition) the candidate is replaced, and
//! once the picture has held on it for [`HOLD_MS`] it is kept. A shot that
//! never holds still is kept after [`SETTLE_MS`] anyway. Near-uniform frames (black or white
//! between shots) are never kept. `min_gap_ms` keeps a flickering or busy shot
//! from flooding the output.

use serde::{Deserialize, Serialize};

/// A new shot is kept once the picture has held on it this long.
pub const HOLD_MS: u64 = 500;
/// Keep a changed frame after this long even if the picture never settles.
pub const SETTLE_MS: u64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneSettings {
    /// How different a frame must be from the last one kept, in (0, 1).
    pub threshold: f64,
    /// The least time between two kept frames.
    pub min_gap_ms: u64,
    /// Stop keeping frames past this many.
    pub max_frames: u32,
}

/// A frame the detector chose.
#[derive(Debug, Clone)]
pub struct KeptFrame {
    pub pts_ms: u64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// A compact summary of a frame: a coarse colour histogram and a luma grid.
#[derive(Debug, Clone)]
struct Signature {
    histogram: [f32; 64],
    grid: [f32; GRID_W * GRID_H],
    luma_spread: f32,
}

const GRID_W: usize = 16;
const GRID_H: usize = 9;

impl Signature {
    fn of(width: u32, height: u32, rgb: &[u8]) -> Option<Self> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || rgb.len() < w * h * 3 {
            return None;
        }
        let mut histogram = [0f32; 64];
        let mut grid = [0f32; GRID_W * GRID_H];
        let mut counts = [0u32; GRID_W * GRID_H];
        let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
        // Every second pixel of every second row is plenty for a summary.
        for y in (0..h).step_by(2) {
            let gy = y * GRID_H / h;
            for x in (0..w).step_by(2) {
                let i = (y * w + x) * 3;
                let (r, g, b) = (rgb[i], rgb[i + 1], rgb[i + 2]);
                histogram[((r >> 6) as usize) << 4 | ((g >> 6) as usize) << 2 | (b >> 6) as usize] += 1.0;
                let luma = 0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32;
                let cell = gy * GRID_W + x * GRID_W / w;
                grid[cell] += luma;
                counts[cell] += 1;
                sum += luma as f64;
                sum_sq += (luma as f64) * (luma as f64);
                n += 1.0;
            }
        }
        for v in &mut histogram {
            *v /= n as f32;
        }
        for (v, c) in grid.iter_mut().zip(counts) {
            *v /= c.max(1) as f32 * 255.0;
        }
        let mean = sum / n;
        let spread = ((sum_sq / n - mean * mean).max(0.0)).sqrt() as f32;
        Some(Self { histogram, grid, luma_spread: spread })
    }

    /// Near-uniform: a black, white or flat frame between shots.
    fn is_blank(&self) -> bool {
        self.luma_spread < 6.0
    }

    /// How different two frames look, in 0..1: colour distribution and layout.
    fn distance(&self, other: &Signature) -> f64 {
        let hist: f32 = self.histogram.iter().zip(&other.histogram).map(|(a, b)| (a - b).abs()).sum::<f32>() / 2.0;
        let grid: f32 =
            self.grid.iter().zip(&other.grid).map(|(a, b)| (a - b).abs()).sum::<f32>() / self.grid.len() as f32;
        // A mean luma change of 0.25 across the grid counts as a full change.
        (0.5 * hist as f64 + 0.5 * (grid as f64 * 4.0).min(1.0)).min(1.0)
    }
}

/// Pushes analysed frames in, gets kept frames out.
pub struct SceneDetector {
    settings: SceneSettings,
    reference: Option<Signature>,
    last_kept_ms: Option<u64>,
    /// When the picture first moved away from the last kept frame.
    changed_since_ms: Option<u64>,
    candidate: Option<Candidate>,
    kept: u32,
    first_blank: Option<KeptFrame>,
}

/// A frame that may start a new shot, kept once the picture holds on it.
struct Candidate {
    frame: KeptFrame,
    signature: Signature,
    /// Its distance from the last kept frame.
    away: f64,
}

impl SceneDetector {
    pub fn new(settings: SceneSettings) -> Self {
        Self {
            settings,
            reference: None,
            last_kept_ms: None,
            changed_since_ms: None,
            candidate: None,
            kept: 0,
            first_blank: None,
        }
    }

    /// Look at one frame; a kept frame when a new shot has settled.
    pub fn push(&mut self, pts_ms: u64, width: u32, height: u32, rgb: Vec<u8>) -> Option<KeptFrame> {
        if self.is_full() {
            return None;
        }
        let sig = Signature::of(width, height, &rgb)?;
        let frame = KeptFrame { pts_ms, width, height, rgb };
        if sig.is_blank() {
            if self.reference.is_none() && self.first_blank.is_none() {
                self.first_blank = Some(frame);
            }
            // Between shots: whatever comes next starts afresh.
            self.candidate = None;
            self.changed_since_ms = None;
            return None;
        }
        let Some(reference) = &self.reference else {
            return self.keep(frame, sig);
        };
        let threshold = self.settings.threshold;
        let away = reference.distance(&sig);
        if away < threshold {
            // Back to (or still in) the shot last kept.
            self.candidate = None;
            self.changed_since_ms = None;
            return None;
        }
        let since = *self.changed_since_ms.get_or_insert(pts_ms);
        // Still in transition: clearly further from the old shot than the
        // candidate is, or another shot altogether. Motion inside the new
        // shot is neither, so it does not delay the candidate.
        let moving = self
            .candidate
            .as_ref()
            .is_none_or(|c| away >= c.away + threshold / 8.0 || c.signature.distance(&sig) >= threshold);
        if moving {
            self.candidate = Some(Candidate { frame, signature: sig, away });
        }
        let held_from = self.candidate.as_ref().map_or(pts_ms, |c| c.frame.pts_ms);
        let held = pts_ms.saturating_sub(held_from) >= HOLD_MS;
        let forced = pts_ms.saturating_sub(since) >= SETTLE_MS;
        let gap_ok = self.last_kept_ms.is_none_or(|t| held_from.saturating_sub(t) >= self.settings.min_gap_ms);
        if (held || forced) && gap_ok {
            let c = self.candidate.take()?;
            return self.keep(c.frame, c.signature);
        }
        None
    }

    /// At the end: a new shot too short to settle, or one frame for a video
    /// that never showed anything but blank frames.
    pub fn finish(&mut self) -> Option<KeptFrame> {
        if self.kept == 0 {
            return self.first_blank.take();
        }
        let c = self.candidate.take()?;
        let gap_ok = self.last_kept_ms.is_none_or(|t| c.frame.pts_ms.saturating_sub(t) >= self.settings.min_gap_ms);
        if gap_ok && !self.is_full() {
            return self.keep(c.frame, c.signature);
        }
        None
    }

    pub fn is_full(&self) -> bool {
        self.kept >= self.settings.max_frames
    }

    fn keep(&mut self, frame: KeptFrame, sig: Signature) -> Option<KeptFrame> {
        self.reference = Some(sig);
        self.last_kept_ms = Some(frame.pts_ms);
        self.changed_since_ms = None;
        self.candidate = None;
        self.kept += 1;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 32;
    const H: u32 = 18;

    fn solid(r: u8, g: u8, b: u8) -> Vec<u8> {
        [r, g, b].repeat((W * H) as usize)
    }

    /// A frame with texture, so it is not blank: stripes of two colours.
    fn shot(a: [u8; 3], b: [u8; 3]) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..H {
            for _x in 0..W {
                out.extend_from_slice(if (y / 3) % 2 == 0 { &a } else { &b });
            }
        }
        out
    }

    fn blend(a: &[u8], b: &[u8], t: f32) -> Vec<u8> {
        a.iter().zip(b).map(|(x, y)| (*x as f32 * (1.0 - t) + *y as f32 * t).round() as u8).collect()
    }

    fn run(frames: &[(u64, Vec<u8>)]) -> Vec<u64> {
        let mut d = SceneDetector::new(SceneSettings { threshold: 0.35, min_gap_ms: 1000, max_frames: 100 });
        let mut kept: Vec<u64> =
            frames.iter().filter_map(|(t, f)| d.push(*t, W, H, f.clone())).map(|k| k.pts_ms).collect();
        kept.extend(d.finish().map(|k| k.pts_ms));
        kept
    }

    #[test]
    fn a_static_shot_gives_one_frame() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let frames: Vec<_> = (0..80).map(|i| (i * 125, a.clone())).collect();
        assert_eq!(run(&frames), [0]);
    }

    #[test]
    fn a_hard_cut_gives_the_settled_frame_after_it() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let b = shot([20, 220, 40], [240, 240, 240]);
        let frames: Vec<_> = (0..40).map(|i| (i * 125, if i < 20 { a.clone() } else { b.clone() })).collect();
        assert_eq!(run(&frames), [0, 2500]);
    }

    #[test]
    fn a_crossfade_gives_the_new_shot_not_the_blend() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let b = shot([20, 220, 40], [240, 240, 240]);
        let mut frames = Vec::new();
        for i in 0..60u64 {
            let f = match i {
                0..20 => a.clone(),
                20..36 => blend(&a, &b, (i - 19) as f32 / 17.0),
                _ => b.clone(),
            };
            frames.push((i * 125, f));
        }
        let kept = run(&frames);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[1] >= 32 * 125, "kept early in the fade at {kept:?}");
    }

    #[test]
    fn a_fade_through_black_gives_the_next_shot() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let b = shot([20, 220, 40], [240, 240, 240]);
        let black = solid(0, 0, 0);
        let mut frames = Vec::new();
        for i in 0..60u64 {
            let f = match i {
                0..20 => a.clone(),
                20..28 => blend(&a, &black, (i - 19) as f32 / 8.0),
                28..32 => black.clone(),
                32..40 => blend(&black, &b, (i - 31) as f32 / 8.0),
                _ => b.clone(),
            };
            frames.push((i * 125, f));
        }
        let kept = run(&frames);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[1] >= 38 * 125, "kept during the fade: {kept:?}");
    }

    #[test]
    fn cuts_closer_than_the_gap_are_not_flooded() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let b = shot([20, 220, 40], [240, 240, 240]);
        // Flicker between two shots every 125 ms for 4 s.
        let frames: Vec<_> = (0..32).map(|i| (i * 125, if i % 2 == 0 { a.clone() } else { b.clone() })).collect();
        let kept = run(&frames);
        assert!(kept.len() <= 5, "{kept:?}");
        assert!(kept.windows(2).all(|w| w[1] - w[0] >= 1000), "{kept:?}");
    }

    #[test]
    fn an_all_black_video_still_gives_one_frame() {
        let frames: Vec<_> = (0..10).map(|i| (i * 125, solid(0, 0, 0))).collect();
        assert_eq!(run(&frames), [0]);
    }
}
