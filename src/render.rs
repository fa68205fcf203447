//! The timeline is data; these are its renderings for people and players:
//! plain text, Markdown, SubRip (SRT) and WebVTT.

use std::fmt::Write;

use crate::schema::{Event, VideoReport};

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
fn clock(ms: u64, separator: char) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{milli:03}")
}

/// Characters that end a line somewhere: a player, a parser or a text
/// editor may break a cue there, so they become line breaks of our own.
fn breaks_line(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{1C}'..='\u{1E}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// The lines of `text` with no control character left: those that end a
/// line split it (CR LF is one break), a tab is a space, the rest (NUL,
/// ESC ...) are dropped, since players stop reading at a NUL and escapes
/// drive terminals.
fn clean_lines(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .split(breaks_line)
        .map(|line| {
            line.chars().filter_map(|c| if c == '\t' { Some(' ') } else { (!c.is_control()).then_some(c) }).collect()
        })
        .collect()
}

/// One line of plain text: controls removed, runs of whitespace one space.
fn flat(text: &str) -> String {
    clean_lines(text).join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text of many lines, controls removed, its lines kept.
fn paragraphs(text: &str) -> String {
    clean_lines(text).join("\n").trim().to_string()
}

/// Cue text may not contain a blank line (it would end the cue), nor `-->`,
/// nor control characters.
fn cue_text(text: &str) -> String {
    let lines: Vec<String> = clean_lines(text).iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let mut text = lines.join("\n");
    // Once is not enough: `--->` becomes `-->`.
    while text.contains("-->") {
        text = text.replace("-->", "->");
    }
    text
}

/// An event's end, at least one millisecond after its start.
fn end(e: &Event) -> u64 {
    e.end_ms.max(e.start_ms.saturating_add(1))
}

/// The events that have text to show, with their cue text: a cue without
/// text would have its blank line read as the end of the cue.
fn cues(events: &[Event]) -> impl Iterator<Item = (&Event, String)> {
    events.iter().map(|e| (e, cue_text(&e.text))).filter(|(_, text)| !text.is_empty())
}

/// SubRip: numbered cues.
pub fn srt(events: &[Event]) -> String {
    let mut out = String::new();
    for (i, (e, text)) in cues(events).enumerate() {
        let _ = write!(out, "{}\n{} --> {}\n{}\n\n", i + 1, clock(e.start_ms, ','), clock(end(e), ','), text);
    }
    out
}

/// WebVTT: a header, then cues. `&`, `<` and `>` are escaped, as the format requires.
pub fn vtt(events: &[Event]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (e, text) in cues(events) {
        let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let _ = write!(out, "{} --> {}\n{}\n\n", clock(e.start_ms, '.'), clock(end(e), '.'), text);
    }
    out
}

/// Markdown: the story, the answer, the timeline as a list, then what was
/// said (the speech track), each part when the report has it.
pub fn markdown(report: &VideoReport) -> String {
    let mut out = String::new();
    if let Some(story) = &report.story {
        let _ = write!(out, "## Story\n\n{}\n\n", paragraphs(story));
    }
    if let Some(answer) = &report.answer {
        let _ = write!(out, "## Answer\n\n{}\n\n", paragraphs(answer));
    }
    if !report.events.is_empty() {
        out.push_str("## Timeline\n\n");
        for e in &report.events {
            let text = flat(&e.text);
            let _ = writeln!(
                out,
                "- **{}–{}** {}",
                crate::timecode::format(e.start_ms),
                crate::timecode::format(e.end_ms),
                text
            );
        }
        out.push('\n');
    }
    if !report.speech.is_empty() {
        // What was heard, apart from what was seen: quoted, with its speaker's provider.
        out.push_str("## Speech\n\n");
        for o in &report.speech {
            let _ = writeln!(
                out,
                "- **{}–{}** “{}” ({})",
                crate::timecode::format(o.range.start_ms),
                crate::timecode::format(o.range.end_ms),
                flat(&o.text),
                flat(&o.provider)
            );
        }
        out.push('\n');
    }
    if !report.warnings.is_empty() {
        out.push_str("## Warnings\n\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- {}", flat(w));
        }
    }
    out
}

/// Plain text: one line per event, time first.
pub fn text(events: &[Event]) -> String {
    events.iter().map(|e| format!("{}  {}\n", crate::timecode::format(e.start_ms), flat(&e.text))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event { start_ms: 0, end_ms: 2_500, text: "A door opens.".into() },
            Event {
                start_ms: 3_723_004,
                end_ms: 3_723_004,
                text: "Text on screen: <b>SALE</b> & more\n\n--> here".into(),
            },
        ]
    }

    fn ms(h: u8, m: u8, s: u8, milli: u16) -> u64 {
        ((u64::from(h) * 60 + u64::from(m)) * 60 + u64::from(s)) * 1000 + u64::from(milli)
    }

    /// SubRip as an independent parser (the `subtp` crate) reads it back.
    fn parse_srt(text: &str) -> Vec<(u64, u64, String)> {
        let parsed = subtp::srt::SubRip::parse(text).unwrap_or_else(|e| panic!("not valid SRT: {e:?}\n{text}"));
        parsed
            .subtitles
            .iter()
            .enumerate()
            .map(|(i, cue)| {
                assert_eq!(cue.sequence as usize, i + 1, "cues are numbered from 1");
                let (a, b) = (&cue.start, &cue.end);
                (
                    ms(a.hours, a.minutes, a.seconds, a.milliseconds),
                    ms(b.hours, b.minutes, b.seconds, b.milliseconds),
                    cue.text.join("\n"),
                )
            })
            .collect()
    }

    /// WebVTT, read back by the same independent parser.
    fn parse_vtt(text: &str) -> Vec<(u64, u64, String)> {
        let parsed = subtp::vtt::WebVtt::parse(text).unwrap_or_else(|e| panic!("not valid WebVTT: {e:?}\n{text}"));
        parsed
            .blocks
            .iter()
            .filter_map(|b| match b {
                subtp::vtt::VttBlock::Que(cue) => Some(cue),
                _ => None,
            })
            .map(|cue| {
                let (a, b) = (&cue.timings.start, &cue.timings.end);
                (
                    ms(a.hours, a.minutes, a.seconds, a.milliseconds),
                    ms(b.hours, b.minutes, b.seconds, b.milliseconds),
                    cue.payload.join("\n"),
                )
            })
            .collect()
    }

    #[test]
    fn srt_round_trips_through_a_subtitle_parser() {
        let cues = parse_srt(&srt(&events()));
        assert_eq!(cues.len(), 2);
        assert_eq!(cues[0], (0, 2_500, "A door opens.".into()));
        assert_eq!(cues[1].0, 3_723_004);
        assert_eq!(cues[1].1, 3_723_005, "an empty span still lasts a millisecond");
        assert_eq!(cues[1].2, "Text on screen: <b>SALE</b> & more\n-> here", "no blank line, no arrow inside a cue");
    }

    #[test]
    fn vtt_round_trips_through_a_subtitle_parser() {
        let cues = parse_vtt(&vtt(&events()));
        assert_eq!(cues.len(), 2);
        assert_eq!(cues[0], (0, 2_500, "A door opens.".into()));
        assert_eq!((cues[1].0, cues[1].1), (3_723_004, 3_723_005));
        assert_eq!(cues[1].2, "Text on screen: &lt;b&gt;SALE&lt;/b&gt; &amp; more\n-&gt; here");
    }

    #[test]
    fn vtt_has_its_header_and_escapes_markup() {
        let v = vtt(&events());
        assert!(v.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nA door opens.\n\n"), "{v}");
        assert!(
            v.contains(
                "01:02:03.004 --> 01:02:03.005\nText on screen: &lt;b&gt;SALE&lt;/b&gt; &amp; more\n-&gt; here\n"
            ),
            "{v}"
        );
    }

    /// Every control character the formats or their readers trip on, and
    /// the Unicode line and paragraph separators.
    const CONTROLS: [char; 11] =
        ['\0', '\u{0B}', '\u{0C}', '\u{1B}', '\u{1C}', '\u{1D}', '\u{1E}', '\u{7F}', '\u{85}', '\u{2028}', '\u{2029}'];

    fn events_with_controls() -> Vec<Event> {
        let mut events: Vec<Event> = CONTROLS
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let start = i as u64 * 1000;
                Event { start_ms: start, end_ms: start + 500, text: format!("Sign {i}:{c}OPEN\tnow") }
            })
            .collect();
        events.push(Event { start_ms: 60_000, end_ms: 61_000, text: "The last cue.".into() });
        events
    }

    /// What ffmpeg reads out of a subtitle file, written back out in `format`.
    fn ffmpeg_reads(text: &str, suffix: &str, format: &str) -> String {
        let file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let out = std::process::Command::new(ffmpeg_sidecar::paths::ffmpeg_path())
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(file.path())
            .args(["-f", format, "-"])
            .output()
            .expect("ffmpeg runs");
        assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn control_characters_never_reach_a_subtitle_file() {
        let events = events_with_controls();
        for (name, rendered) in [("srt", srt(&events)), ("vtt", vtt(&events))] {
            let bad: Vec<char> = rendered.chars().filter(|c| CONTROLS.contains(c) || *c == '\t').collect();
            assert!(bad.is_empty(), "{name} has {bad:?}:\n{rendered:?}");
        }
        let cues = parse_srt(&srt(&events));
        assert_eq!(cues.len(), events.len());
        assert_eq!(cues[0].2, "Sign 0:OPEN now", "NUL is dropped, a tab is a space");
        assert_eq!(cues[1].2, "Sign 1:\nOPEN now", "VT ends a line");
        assert_eq!(cues[9].2, "Sign 9:\nOPEN now", "so does LINE SEPARATOR");
        assert_eq!(parse_vtt(&vtt(&events)).len(), events.len());
    }

    #[test]
    fn ffmpeg_reads_every_cue_back() {
        let events = events_with_controls();
        // ffmpeg stops at a NUL: every cue after it would be lost.
        let srt_back = parse_srt(&ffmpeg_reads(&srt(&events), ".srt", "srt"));
        assert_eq!(srt_back.len(), events.len());
        assert_eq!(srt_back.last().map(|c| (c.0, c.2.as_str())), Some((60_000, "The last cue.")));
        let vtt_back = parse_vtt(&ffmpeg_reads(&vtt(&events), ".vtt", "webvtt"));
        assert_eq!(vtt_back.len(), events.len());
        assert_eq!(vtt_back.last().map(|c| (c.0, c.2.as_str())), Some((60_000, "The last cue.")));
    }

    #[test]
    fn blank_lines_and_arrows_stay_inside_their_cue() {
        // A line of spaces and separators is blank too, and would end the cue.
        let events = vec![
            Event { start_ms: 0, end_ms: 1000, text: "one\r\n \u{2028}\t\n--->two".into() },
            Event { start_ms: 1000, end_ms: 2000, text: "three".into() },
        ];
        let cues = parse_srt(&srt(&events));
        assert_eq!(cues.iter().map(|c| c.2.as_str()).collect::<Vec<_>>(), ["one\n->two", "three"]);
        let cues = parse_vtt(&vtt(&events));
        assert_eq!(cues.iter().map(|c| c.2.as_str()).collect::<Vec<_>>(), ["one\n-&gt;two", "three"]);
        assert_eq!(parse_srt(&ffmpeg_reads(&srt(&events), ".srt", "srt")).len(), 2);
    }

    #[test]
    fn text_and_markdown_carry_no_control_characters() {
        let events = events_with_controls();
        let report = VideoReport {
            story: Some("A\u{1B}[2J story\r\nin two lines\0".into()),
            events: events.clone(),
            warnings: vec!["a\u{7}warning".into()],
            ..VideoReport::default()
        };
        for rendered in [text(&events), markdown(&report)] {
            assert!(!rendered.chars().any(|c| c.is_control() && c != '\n'), "{rendered:?}");
        }
        assert!(markdown(&report).starts_with("## Story\n\nA[2J story\nin two lines\n\n"));
        assert_eq!(text(&events).lines().nth(1), Some("00:01.000  Sign 1: OPEN now"));
    }

    #[test]
    fn markdown_lists_what_was_said_apart_from_what_was_seen() {
        let said = crate::schema::Observation {
            range: crate::schema::TimeRange { start_ms: 3_000, end_ms: 5_500 },
            text: " Hello\nthere. ".into(),
            provider: "groq-whisper".into(),
            model: None,
        };
        let report = VideoReport { events: events(), speech: vec![said], ..VideoReport::default() };
        let md = markdown(&report);
        let speech = md.split("## Speech\n\n").nth(1).expect("a speech section");
        assert!(speech.starts_with("- **00:03.000–00:05.500** “Hello there.” (groq-whisper)\n"), "{md}");
        assert!(md.find("## Timeline").unwrap() < md.find("## Speech").unwrap());
        assert!(!markdown(&VideoReport::default()).contains("## Speech"));
    }

    #[test]
    fn markdown_and_text_read_in_order() {
        let report = VideoReport { story: Some("A shop opens.".into()), events: events(), ..VideoReport::default() };
        let md = markdown(&report);
        assert!(
            md.starts_with("## Story\n\nA shop opens.\n\n## Timeline\n\n- **00:00.000–00:02.500** A door opens.\n"),
            "{md}"
        );
        assert_eq!(text(&events()).lines().next(), Some("00:00.000  A door opens."));
    }
}
