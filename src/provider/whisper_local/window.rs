//! Reading Whisper's output for one 30 s window, and where the next window
//! starts. Pure functions, tested without a model.
//!
//! Whisper hears at most 30 s at a time and writes what it heard between
//! timestamps: `<|0.00|> Hello there.<|1.80|><|1.80|> How are you?<|3.20|>`.
//! When the sound goes on past the window, the last sentence is often cut:
//! its text runs to the end without a closing timestamp, or Whisper stops
//! early and leaves the last words unwritten. Neither is skipped: the next
//! window starts where the last whole piece ended, so those words are heard
//! again, whole. (OpenAI's decoder, and faster-whisper, skip to the window's
//! end when the output ends on a single timestamp, and lose such words.)

/// Text between two timestamps, in seconds from the window's start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Piece {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

/// What one window gave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    /// The pieces it heard whole.
    pub pieces: Vec<Piece>,
    /// How much of the window's sound they account for, in seconds: where
    /// the next window starts.
    pub heard_s: f64,
}

/// A window that hears less than this much is taken as heard whole, so the
/// next one always moves on.
const MIN_STEP_S: f64 = 1.0;

/// A piece that ends this close to the window's end may have been cut by it.
const CUT_S: f64 = 0.5;

enum Item<'a> {
    Time(f64),
    Text(&'a str),
}

/// Timestamps and text, in order; other special tokens are left out.
fn items(decoded: &str) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    let mut rest = decoded;
    while let Some(open) = rest.find("<|") {
        if open > 0 {
            out.push(Item::Text(&rest[..open]));
        }
        let Some(close) = rest[open..].find("|>") else {
            out.push(Item::Text(&rest[open..]));
            return out;
        };
        let inner = &rest[open + 2..open + close];
        if let Ok(t) = inner.parse::<f64>() {
            if t.is_finite() {
                out.push(Item::Time(t));
            }
        }
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        out.push(Item::Text(rest));
    }
    out
}

/// Read `decoded`, Whisper's output (with timestamps) for a window holding
/// `audio_s` seconds of sound; `last`: no sound follows the window, so a
/// piece cut at its end is kept as it is.
pub(crate) fn read(decoded: &str, audio_s: f64, last: bool) -> Window {
    let clamp = |t: f64| t.clamp(0.0, audio_s);
    let mut pieces = Vec::new();
    let mut start: Option<f64> = None;
    let mut text = String::new();
    let mut closed_at: Option<f64> = None;
    for item in items(decoded) {
        match item {
            Item::Time(t) => match start {
                Some(s) if !text.trim().is_empty() => {
                    let end = clamp(t).max(s);
                    pieces.push(Piece { start_s: s, end_s: end, text: text.trim().to_string() });
                    text.clear();
                    start = None;
                    closed_at = Some(end);
                }
                // A first timestamp, or two in a row around nothing.
                _ => {
                    start = Some(clamp(t));
                    text.clear();
                }
            },
            Item::Text(t) => {
                start.get_or_insert(closed_at.unwrap_or(0.0));
                text.push_str(t);
            }
        }
    }
    let tail = text.trim();
    if last {
        if !tail.is_empty() {
            pieces.push(Piece { start_s: start.unwrap_or(0.0), end_s: audio_s, text: tail.to_string() });
        }
        return Window { pieces, heard_s: audio_s };
    }
    // More sound follows: never skip what was not heard whole. Text left
    // open at the end is heard again from where the last whole piece ended;
    // a last piece that runs into the window's end may be cut too, so it is
    // heard again from its start; and sound after the last piece (Whisper
    // often stops early, ending on one timestamp, with words still to come)
    // is heard again rather than skipped.
    if let Some(end) = closed_at.filter(|_| !tail.is_empty()) {
        if end >= MIN_STEP_S {
            return Window { pieces, heard_s: end };
        }
    }
    if tail.is_empty() {
        if let Some(cut) = pieces.last().filter(|p| p.end_s >= audio_s - CUT_S && p.start_s >= MIN_STEP_S) {
            let heard_s = cut.start_s;
            pieces.pop();
            return Window { pieces, heard_s };
        }
        if let Some(end) = closed_at.filter(|&end| end >= MIN_STEP_S) {
            return Window { pieces, heard_s: end };
        }
    } else {
        pieces.push(Piece { start_s: start.unwrap_or(0.0), end_s: audio_s, text: tail.to_string() });
    }
    Window { pieces, heard_s: audio_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(w: &Window) -> Vec<(f64, f64, &str)> {
        w.pieces.iter().map(|p| (p.start_s, p.end_s, p.text.as_str())).collect()
    }

    #[test]
    fn pieces_between_timestamps_are_read_and_the_next_window_starts_after_the_last() {
        let out = "<|0.00|> Hello there.<|1.80|><|1.80|> How are you?<|3.20|>";
        let w = read(out, 30.0, false);
        assert_eq!(texts(&w), [(0.0, 1.8, "Hello there."), (1.8, 3.2, "How are you?")]);
        // Whisper may stop early with words still to come: they are heard again.
        assert_eq!(w.heard_s, 3.2);
        // The last window is heard whole.
        let w = read(out, 5.0, true);
        assert_eq!((w.pieces.len(), w.heard_s), (2, 5.0));
    }

    #[test]
    fn text_cut_at_the_end_is_heard_again_from_where_the_last_whole_piece_ended() {
        let cut = "<|0.00|> One sentence.<|12.40|><|12.40|> Another one here.<|24.00|><|26.10|> And a cut sen";
        let w = read(cut, 30.0, false);
        assert_eq!(texts(&w), [(0.0, 12.4, "One sentence."), (12.4, 24.0, "Another one here.")]);
        assert_eq!(w.heard_s, 24.0);
        // The last window keeps what it has.
        let w = read(cut, 30.0, true);
        assert_eq!(w.pieces.len(), 3);
        assert_eq!(texts(&w)[2], (26.1, 30.0, "And a cut sen"));
        assert_eq!(w.heard_s, 30.0);
    }

    #[test]
    fn a_last_piece_closed_at_the_window_s_end_is_heard_again_from_its_start() {
        let w = read("<|0.00|> One.<|12.00|><|27.50|> At noon the sh<|30.00|>", 30.0, false);
        assert_eq!(texts(&w), [(0.0, 12.0, "One.")]);
        assert_eq!(w.heard_s, 27.5);
    }

    #[test]
    fn a_window_always_moves_on() {
        let w = read("<|0.00|> It goes on and on", 30.0, false);
        assert_eq!(texts(&w), [(0.0, 30.0, "It goes on and on")]);
        assert_eq!(w.heard_s, 30.0);
        // No timestamps at all.
        let w = read(" Plain text.", 30.0, false);
        assert_eq!((texts(&w), w.heard_s), (vec![(0.0, 30.0, "Plain text.")], 30.0));
        // A whole piece too short to move on from: the window is taken whole.
        let w = read("<|0.00|> Hm.<|0.40|><|0.40|> and then", 30.0, false);
        assert_eq!(w.heard_s, 30.0);
        assert_eq!(w.pieces.len(), 2);
        // One piece over the whole window.
        let w = read("<|0.00|> All of it.<|30.00|>", 30.0, false);
        assert_eq!((w.pieces.len(), w.heard_s), (1, 30.0));
        // Nothing heard.
        let w = read("", 30.0, false);
        assert!(w.pieces.is_empty());
        assert_eq!(w.heard_s, 30.0);
    }

    #[test]
    fn times_past_the_sound_are_held_to_it_and_other_tokens_are_left_out() {
        let w = read("<|en|><|0.00|> Hi.<|9.00|><|endoftext|>", 2.5, true);
        assert_eq!(texts(&w), [(0.0, 2.5, "Hi.")]);
        let w = read("<|0.00|> broken <|1.2", 3.0, true);
        assert_eq!(texts(&w), [(0.0, 3.0, "broken <|1.2")]);
    }
}
