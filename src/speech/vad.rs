//! Where someone speaks: an energy-based voice activity detector that cuts
//! 16 kHz mono PCM into segments worth transcribing.
//!
//! How it decides, frame by frame (30 ms each):
//!
//! - A frame is *voiced* when its RMS level, in dB below full scale, is above
//!   both `threshold_db` and the noise floor plus `margin_db`. The noise
//!   floor follows the quietest recent frames: it drops at once to a quieter
//!   frame and rises by `floor_rise_db_per_s` otherwise, so steady
//!   background noise stops counting as speech after a few seconds.
//! - A segment opens at the first voiced frame, `pad_ms` earlier (the soft
//!   start of a word), and closes once `hangover_ms` pass without a voiced
//!   frame (pauses between words and sentences are shorter), `pad_ms` after
//!   the last voiced one. Segments with less than `min_voiced_ms` of voiced
//!   frames (a click, a door) are dropped.
//! - A segment never grows past `max_segment_ms`. When it would, it is cut at
//!   the quietest frame of its last `cut_search_ms` (most likely a gap
//!   between words), and the next segment starts `overlap_ms / 2` before the
//!   cut while this one ends `overlap_ms / 2` after it: a word the cut crosses
//!   is heard whole in one of them. Each segment *owns* the time from its
//!   own cut to the next, so text heard twice in the overlap is kept once
//!   (see [`Segment::owned`]).
//!
//! Silence (or a track with no voiced frame) gives no segment at all, so it
//! costs nothing to transcribe.

pub use crate::config::VadSettings;
use crate::media::SAMPLE_RATE;

/// Samples in one analysis frame (30 ms at 16 kHz).
const FRAME: usize = SAMPLE_RATE as usize * 30 / 1000;

/// One stretch of speech: its samples and where it lies, in samples from the
/// start of the stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// The first sample.
    pub start: u64,
    pub samples: Vec<i16>,
    /// The part of the stream this segment speaks for, `[from, to)` in
    /// samples: overlapping text outside it belongs to the neighbour.
    pub owned: (u64, u64),
}

impl Segment {
    /// One past the last sample.
    pub fn end(&self) -> u64 {
        self.start + self.samples.len() as u64
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("start", &self.start)
            .field("end", &self.end())
            .field("owned", &self.owned)
            .finish()
    }
}

/// The segment now open.
struct Open {
    start: u64,
    owned_from: u64,
    /// One past the last voiced frame.
    last_voiced_end: u64,
    voiced_frames: u64,
}

/// Cuts a stream of samples into speech segments as they arrive; memory is
/// bounded by one segment.
pub struct Segmenter {
    settings: VadSettings,
    /// Samples from `buf_start` on; frame-aligned.
    buf: Vec<i16>,
    buf_start: u64,
    /// The level of each whole frame in `buf`, dBFS.
    levels: Vec<f64>,
    /// Samples short of a whole frame.
    partial: Vec<i16>,
    floor_db: f64,
    open: Option<Open>,
}

fn ms_to_samples(ms: u64) -> u64 {
    ms * u64::from(SAMPLE_RATE) / 1000
}

/// The RMS level of `frame` in dBFS; -100 for digital silence.
pub fn level_db(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return -100.0;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / frame.len() as f64;
    let rms = energy.sqrt() / 32768.0;
    if rms <= 1e-5 {
        -100.0
    } else {
        20.0 * rms.log10()
    }
}

impl Segmenter {
    pub fn new(settings: VadSettings) -> Self {
        Self {
            settings,
            buf: Vec::new(),
            buf_start: 0,
            levels: Vec::new(),
            partial: Vec::with_capacity(FRAME),
            // Where a quiet room starts; a quieter frame lowers it at once.
            floor_db: settings.threshold_db - settings.margin_db,
            open: None,
        }
    }

    /// Take more samples; the segments they finish.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == FRAME {
                let frame = std::mem::take(&mut self.partial);
                self.frame(&frame, &mut out);
                self.partial = frame;
                self.partial.clear();
            }
        }
        out
    }

    /// The end of the stream: the segment still open, if it holds speech.
    pub fn finish(mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        if let Some(open) = self.open.take() {
            let end = (open.last_voiced_end + ms_to_samples(self.settings.pad_ms)).min(self.end());
            self.emit(&open, end, end, &mut out);
        }
        out
    }

    /// One past the last whole frame taken.
    fn end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    fn frame(&mut self, frame: &[i16], out: &mut Vec<Segment>) {
        let s = self.settings;
        let level = level_db(frame);
        let voiced = level > s.threshold_db && level > self.floor_db + s.margin_db;
        if level < self.floor_db {
            self.floor_db = level;
        } else {
            self.floor_db += s.floor_rise_db_per_s * 0.03;
        }
        let start = self.end();
        self.buf.extend_from_slice(frame);
        self.levels.push(level);
        let end = self.end();
        let pad = ms_to_samples(s.pad_ms);
        let Some(open) = self.open.as_mut() else {
            if voiced {
                let from = start.saturating_sub(pad).max(self.buf_start);
                self.open = Some(Open { start: from, owned_from: from, last_voiced_end: end, voiced_frames: 1 });
            } else {
                self.keep_from(end.saturating_sub(pad));
            }
            return;
        };
        if voiced {
            open.last_voiced_end = end;
            open.voiced_frames += 1;
        }
        if end - open.last_voiced_end >= ms_to_samples(s.hangover_ms) {
            let open = self.open.take().expect("a segment is open");
            let stop = (open.last_voiced_end + pad).min(end);
            self.emit(&open, stop, stop, out);
            self.keep_from(end.saturating_sub(pad));
        } else if end - open.start >= ms_to_samples(s.max_segment_ms) {
            let open = self.open.take().expect("a segment is open");
            let half = ms_to_samples(s.overlap_ms) / 2;
            let from = end.saturating_sub(ms_to_samples(s.cut_search_ms)).max(open.start + 1);
            let cut = self.quietest_frame_start(from, end - half);
            let stop = (cut + half).min(end);
            self.emit(&open, stop, cut, out);
            let next = cut.saturating_sub(half).max(self.buf_start);
            self.keep_from(next);
            // The rest goes on as a segment of its own; whether it holds
            // speech is known as it closes.
            let voiced_after = self.voiced_frames_from(cut);
            self.open = Some(Open {
                start: next,
                owned_from: cut,
                last_voiced_end: open.last_voiced_end.max(next),
                voiced_frames: voiced_after,
            });
        }
    }

    /// The start of the quietest whole frame starting in `[from, to)`.
    fn quietest_frame_start(&self, from: u64, to: u64) -> u64 {
        let first = ((from.saturating_sub(self.buf_start)) as usize).div_ceil(FRAME);
        let last = (to.saturating_sub(self.buf_start) as usize).div_ceil(FRAME).min(self.levels.len());
        let mut best = (first, f64::INFINITY);
        for (i, &l) in self.levels.iter().enumerate().take(last).skip(first) {
            // The latest of equally quiet frames: the longest first segment.
            if l <= best.1 {
                best = (i, l);
            }
        }
        self.buf_start + (best.0 * FRAME) as u64
    }

    /// Frames from `from` on that count as voiced by the fixed threshold.
    fn voiced_frames_from(&self, from: u64) -> u64 {
        let first = ((from.saturating_sub(self.buf_start)) as usize) / FRAME;
        self.levels.iter().skip(first).filter(|&&l| l > self.settings.threshold_db).count() as u64
    }

    /// Forget the samples before `from` (frame-aligned down).
    fn keep_from(&mut self, from: u64) {
        let drop_frames = (from.saturating_sub(self.buf_start) as usize / FRAME).min(self.levels.len());
        if drop_frames > 0 {
            self.buf.drain(..drop_frames * FRAME);
            self.levels.drain(..drop_frames);
            self.buf_start += (drop_frames * FRAME) as u64;
        }
    }

    fn emit(&self, open: &Open, stop: u64, owned_to: u64, out: &mut Vec<Segment>) {
        let voiced_ms = open.voiced_frames * 30;
        if voiced_ms < self.settings.min_voiced_ms || stop <= open.start {
            return;
        }
        let from = (open.start - self.buf_start) as usize;
        let to = ((stop - self.buf_start) as usize).min(self.buf.len());
        out.push(Segment {
            start: open.start,
            samples: self.buf[from..to].to_vec(),
            owned: (open.owned_from, owned_to.max(open.owned_from)),
        });
    }
}

/// Every segment of `samples`, at once (tests, short clips).
pub fn segments(samples: &[i16], settings: VadSettings) -> Vec<Segment> {
    let mut s = Segmenter::new(settings);
    let mut out = s.push(samples);
    out.extend(s.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = SAMPLE_RATE as u64;

    /// `ms` of a 220 Hz tone at `amplitude`, or of silence at 0.
    fn tone(ms: u64, amplitude: f64) -> Vec<i16> {
        (0..ms * RATE / 1000)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * 220.0 * i as f64 / RATE as f64).sin()) as i16)
            .collect()
    }

    fn ms(samples: u64) -> u64 {
        samples * 1000 / RATE
    }

    #[test]
    fn silence_and_quiet_hiss_make_no_segment() {
        assert!(segments(&tone(10_000, 0.0), VadSettings::default()).is_empty());
        // -60 dBFS: below the threshold.
        assert!(segments(&tone(10_000, 30.0), VadSettings::default()).is_empty());
        assert!(segments(&[], VadSettings::default()).is_empty());
    }

    #[test]
    fn speech_is_found_where_it_is_with_its_padding() {
        let mut pcm = tone(2_000, 0.0);
        pcm.extend(tone(1_500, 8_000.0));
        pcm.extend(tone(3_000, 0.0));
        let found = segments(&pcm, VadSettings::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let s = &found[0];
        // The tone runs 2000..3500 ms; 200 ms of padding either side.
        assert!((1_770..=1_800).contains(&ms(s.start)), "{}", ms(s.start));
        assert!((3_690..=3_730).contains(&ms(s.end())), "{}", ms(s.end()));
        assert_eq!(s.owned, (s.start, s.end()));
        assert_eq!(s.samples.len() as u64, s.end() - s.start);
    }

    #[test]
    fn pauses_between_words_do_not_split_a_segment_but_long_silence_does() {
        let mut pcm = Vec::new();
        for _ in 0..3 {
            pcm.extend(tone(400, 8_000.0));
            pcm.extend(tone(300, 0.0)); // a pause between words
        }
        pcm.extend(tone(2_000, 0.0)); // the end of a sentence
        pcm.extend(tone(600, 8_000.0));
        let found = segments(&pcm, VadSettings::default());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(ms(found[0].end()) < 2_400 && ms(found[1].start) > 3_500, "{found:?}");
    }

    #[test]
    fn a_click_is_not_speech() {
        let mut pcm = tone(1_000, 0.0);
        pcm.extend(tone(60, 20_000.0));
        pcm.extend(tone(2_000, 0.0));
        assert!(segments(&pcm, VadSettings::default()).is_empty());
    }

    #[test]
    fn steady_noise_stops_counting_as_speech() {
        // Thirty seconds of an even hum: a voice is heard on it at first, then
        // the floor rises to the hum and the segment closes.
        let pcm = tone(30_000, 2_000.0);
        let found = segments(&pcm, VadSettings::default());
        let total: u64 = found.iter().map(|s| ms(s.end() - s.start)).sum();
        assert!(total < 20_000, "{found:?}");
    }

    #[test]
    fn long_speech_is_cut_at_a_quiet_moment_with_overlap_and_no_word_in_two() {
        // 70 s of "words" (450 ms loud, 150 ms quiet): longer than two windows.
        let mut pcm = Vec::new();
        while pcm.len() < (70 * RATE) as usize {
            pcm.extend(tone(450, 8_000.0));
            pcm.extend(tone(150, 300.0));
        }
        let settings = VadSettings::default();
        let found = segments(&pcm, settings);
        assert!(found.len() >= 3, "{found:?}");
        for s in &found {
            assert!(ms(s.end() - s.start) <= settings.max_segment_ms + settings.overlap_ms / 2, "{s:?}");
        }
        for pair in found.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            // They overlap, and own adjacent time.
            assert!(b.start < a.end(), "{pair:?}");
            assert_eq!(a.owned.1, b.owned.0, "{pair:?}");
            let cut = a.owned.1;
            // The cut lies in a quiet gap, not inside a word: 600 ms a word.
            let within = ms(cut) % 600;
            assert!(within >= 440, "cut at {} ms, {within} ms into a word", ms(cut));
            assert!(ms(a.end() - cut) >= 400 && ms(cut - b.start) >= 400, "{pair:?}");
        }
        // Everything from the first sound to the last is owned by one segment.
        assert_eq!(found[0].owned.0, found[0].start);
        assert!(ms(found.last().unwrap().owned.1) >= 69_000, "{found:?}");
    }

    #[test]
    fn settings_that_contradict_each_other_are_refused() {
        assert!(VadSettings::default().validate().is_ok());
        let bad = VadSettings { overlap_ms: 26_000, ..VadSettings::default() };
        assert_eq!(bad.validate().unwrap_err().key, "overlap_ms");
        let bad = VadSettings { threshold_db: 3.0, ..VadSettings::default() };
        assert_eq!(bad.validate().unwrap_err().key, "threshold_db");
    }
}
