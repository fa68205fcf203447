//! One frame per shot: after a hard cut, a fade or a dissolve, the picture the
//! new shot settles on.
//!
//! Each analysed frame is compared with the one before. A jump in content far
//! above the shot's recent motion is a cut; a steady slide of brightness is a
//! fade; a blank frame lies between shots; a palette that moved far within the
//! last second is a dissolve. Any of them opens a transition, which closes on
//! the first frame the picture holds on for [`HOLD_MS`] (a cut's own first frame
//! when the picture is still right after it). That frame is kept when it differs
//! from the picture before the transition: a flash or a fade back into the same
//! shot gives nothing. A shot that never holds still gives its stillest frame
//! after [`SETTLE_MS`], or when the next cut comes first. Motion inside a shot,
//! however long a handheld camera wanders, opens no transition. `min_gap_ms`
//! keeps a flickering or busy video from flooding the output.

mod signature;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use signature::Signature;

/// A transition closes once the picture has held still this long.
pub const HOLD_MS: u64 = 500;
/// A transition that never holds still closes after this long.
pub const SETTLE_MS: u64 = 2000;
/// A cut is a content change of at least `threshold × CUT_SCALE × SPIKE`
/// (17 of 255 at the default threshold 0.35) ...
const CUT_SCALE: f32 = 80.0;
const SPIKE: f32 = 0.6;
/// ... and `CUT_RATIO` times the median change of the frames before it, so a
/// fast-moving shot does not cut itself up.
const CUT_RATIO: f32 = 3.0;
/// Frames the median change and the dissolve check look back over.
const WINDOW: usize = 8;
/// A change of mean luma this large in 125 ms is part of a fade.
const FADE_STEP: f32 = 4.0;
/// The analysis step that `FADE_STEP` is for.
const STEP_MS: u64 = 125;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneSettings {
    /// How different a new shot must be, in (0, 1).
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

/// Pushes analysed frames in, gets kept frames out.
pub struct SceneDetector {
    settings: SceneSettings,
    /// The frame analysed last.
    previous: Option<(u64, Signature)>,
    /// Content changes of the last frames, for the median.
    recent: VecDeque<f32>,
    /// Frames since the picture last settled, for dissolves.
    settled: VecDeque<Signature>,
    transition: Option<Transition>,
    last_kept_ms: Option<u64>,
    kept: u32,
    first_blank: Option<KeptFrame>,
}

/// Between one settled picture and the next.
struct Transition {
    since_ms: u64,
    /// The picture before it; none at the start of the video.
    before: Option<Signature>,
    /// Opened by a cut: a smaller difference from `before` is a new shot.
    cut: bool,
    /// The frame the picture may settle on.
    candidate: Option<Pick>,
    /// The frame that changed least from its predecessor, and that change.
    stillest: Option<(Pick, f32)>,
}

#[derive(Clone)]
struct Pick {
    frame: KeptFrame,
    signature: Signature,
}

/// How one frame differs from the one before it.
struct Step {
    blank: bool,
    cut: bool,
    fade: bool,
    change: f32,
}

impl SceneDetector {
    pub fn new(settings: SceneSettings) -> Self {
        Self {
            settings,
            previous: None,
            recent: VecDeque::with_capacity(WINDOW + 1),
            settled: VecDeque::with_capacity(WINDOW + 1),
            transition: None,
            last_kept_ms: None,
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
        let step = self.step(pts_ms, &sig);
        let before = self.previous.replace((pts_ms, sig.clone())).map(|(_, s)| s);
        if before.is_none() {
            // The video's first picture may be fading in, like any other.
            self.open(pts_ms, None, false);
        }
        if step.blank && self.kept == 0 && self.first_blank.is_none() {
            self.first_blank = Some(frame.clone());
        }
        let moving = step.blank || step.cut || step.fade;
        let threshold = self.settings.threshold as f32;
        let dissolve = !step.blank && self.settled.front().is_some_and(|s| s.palette_change(&sig) >= threshold);
        let mut out = None;
        match &self.transition {
            None if moving || dissolve => {
                // A dissolve is measured from where it began.
                let start = if moving { self.settled.back() } else { self.settled.front() };
                self.open(pts_ms, start.cloned(), step.cut);
            }
            None => {
                self.remember_settled(sig);
                return None;
            }
            Some(t) if step.cut && t.stillest.is_some() => {
                // A new shot began before the last one held still.
                let (pick, _) = self.transition.as_mut()?.stillest.take()?;
                out = self.close(pick, before.clone());
                self.open(pts_ms, before, true);
            }
            Some(_) => {}
        }
        let gap_ok = self.gap_ok(pts_ms);
        let cut_level = self.cut_level();
        let t = self.transition.as_mut()?;
        if moving {
            // A cut's first frame is the new shot's, unless the picture moves on at once.
            t.candidate = (step.cut && !step.blank && gap_ok).then_some(Pick { frame, signature: sig });
            return out;
        }
        if !gap_ok {
            return out;
        }
        let drifted = t.candidate.as_ref().is_some_and(|c| {
            c.signature.content_change(&sig) >= cut_level || c.signature.palette_change(&sig) >= threshold / 2.0
        });
        if drifted {
            t.candidate = None;
        }
        let pick = Pick { frame, signature: sig.clone() };
        if t.stillest.as_ref().is_none_or(|(_, c)| step.change <= *c) {
            t.stillest = Some((pick.clone(), step.change));
        }
        let candidate = t.candidate.get_or_insert(pick);
        if pts_ms.saturating_sub(candidate.frame.pts_ms) >= HOLD_MS {
            let pick = t.candidate.take()?;
            return self.close(pick, Some(sig));
        }
        if pts_ms.saturating_sub(t.since_ms) >= SETTLE_MS {
            let (pick, _) = t.stillest.take()?;
            return self.close(pick, Some(sig));
        }
        out
    }

    /// At the end: a new shot too short to settle, or one frame for a video
    /// that never showed anything but blank frames.
    pub fn finish(&mut self) -> Option<KeptFrame> {
        if let Some(mut t) = self.transition.take() {
            let pick = t.candidate.take().or(t.stillest.take().map(|(p, _)| p));
            self.transition = Some(t);
            if let Some(kept) = pick.and_then(|p| self.close(p, None)) {
                return Some(kept);
            }
        }
        if self.kept == 0 {
            self.kept = self.first_blank.is_some() as u32;
            return self.first_blank.take();
        }
        None
    }

    pub fn is_full(&self) -> bool {
        self.kept >= self.settings.max_frames
    }

    fn cut_level(&self) -> f32 {
        self.settings.threshold as f32 * CUT_SCALE
    }

    fn gap_ok(&self, pts_ms: u64) -> bool {
        self.last_kept_ms.is_none_or(|t| pts_ms.saturating_sub(t) >= self.settings.min_gap_ms)
    }

    /// How `sig` differs from the frame analysed before it.
    fn step(&mut self, pts_ms: u64, sig: &Signature) -> Step {
        let blank = sig.is_blank();
        let Some((prev_ms, prev)) = &self.previous else {
            return Step { blank, cut: false, fade: false, change: 0.0 };
        };
        let both = !blank && !prev.is_blank();
        // Into or out of a blank frame is as far as pictures get.
        let change = if both { prev.content_change(sig) } else { 255.0 };
        let mut sorted: Vec<f32> = self.recent.iter().copied().collect();
        sorted.sort_by(f32::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let cut = change >= self.cut_level() * SPIKE && change >= CUT_RATIO * median;
        // Frames further apart may differ more without being a fade.
        let apart = pts_ms.saturating_sub(*prev_ms).max(STEP_MS) as f32 / STEP_MS as f32;
        let fade = (sig.mean - prev.mean).abs() >= FADE_STEP * apart;
        if both {
            self.recent.push_back(change);
            if self.recent.len() > WINDOW {
                self.recent.pop_front();
            }
        }
        Step { blank, cut, fade, change }
    }

    fn remember_settled(&mut self, sig: Signature) {
        self.settled.push_back(sig);
        if self.settled.len() > WINDOW {
            self.settled.pop_front();
        }
    }

    fn open(&mut self, since_ms: u64, before: Option<Signature>, cut: bool) {
        self.transition = Some(Transition { since_ms, before, cut, candidate: None, stillest: None });
    }

    /// End the transition on `pick`; it is kept if it differs from the picture
    /// before. `now` is the picture at this moment, where the next one is measured from.
    fn close(&mut self, pick: Pick, now: Option<Signature>) -> Option<KeptFrame> {
        let t = self.transition.take()?;
        self.settled.clear();
        self.settled.extend(now);
        let bar = self.cut_level() * if t.cut { SPIKE } else { 1.0 };
        let new = t.before.as_ref().is_none_or(|b| {
            b.content_change(&pick.signature) >= bar
                || b.palette_change(&pick.signature) >= self.settings.threshold as f32
        });
        if !new || !self.gap_ok(pick.frame.pts_ms) || self.is_full() {
            return None;
        }
        self.last_kept_ms = Some(pick.frame.pts_ms);
        self.kept += 1;
        Some(pick.frame)
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
    fn a_fade_in_at_the_start_gives_the_settled_picture() {
        let a = shot([200, 30, 30], [30, 30, 200]);
        let black = solid(0, 0, 0);
        let frames: Vec<_> = (0..40u64)
            .map(|i| (i * 125, if i < 10 { blend(&black, &a, i as f32 / 10.0) } else { a.clone() }))
            .collect();
        let kept = run(&frames);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0] >= 10 * 125, "kept a dark frame of the fade: {kept:?}");
    }

    #[test]
    fn a_cut_between_dark_shots_of_one_palette_is_found() {
        // Dark red and near black, the stripes swapped: nothing but the layout changes.
        let a = shot([60, 20, 20], [5, 5, 5]);
        let b = shot([5, 5, 5], [60, 20, 20]);
        let frames: Vec<_> = (0..40).map(|i| (i * 125, if i < 20 { a.clone() } else { b.clone() })).collect();
        assert_eq!(run(&frames), [0, 2500]);
    }

    #[test]
    fn a_camera_panning_over_one_scene_gives_one_frame() {
        // A band of hues scrolling sideways one pixel per frame: by the end
        // every place shows another colour, but the scene is the same.
        let pan = |offset: u32| -> Vec<u8> {
            let mut out = Vec::new();
            for y in 0..H {
                for x in 0..W {
                    let hue = ((x + offset) % W) as f32 / W as f32 * 6.0;
                    let level = |c: f32| {
                        ((1.0 - (hue - c).rem_euclid(6.0).min((c - hue).rem_euclid(6.0)) / 2.0).max(0.0) * 200.0 + 30.0
                            - (y % 2) as f32 * 20.0) as u8
                    };
                    out.extend_from_slice(&[level(0.0), level(2.0), level(4.0)]);
                }
            }
            out
        };
        let frames: Vec<_> = (0..64u64).map(|i| (i * 125, pan(i as u32))).collect();
        assert_eq!(run(&frames), [0]);
    }

    #[test]
    fn an_all_black_video_still_gives_one_frame() {
        let frames: Vec<_> = (0..10).map(|i| (i * 125, solid(0, 0, 0))).collect();
        assert_eq!(run(&frames), [0]);
    }
}
