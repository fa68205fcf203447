//! The timeline is data; these are its renderings for people and players:
//! plain text, Markdown, SubRip (SRT) and WebVTT.

use std::fmt::Write;

use crate::schema::{Event, VideoReport};

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT).
fn clock(ms: u64, separator: char) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{milli:03}")
}

/// Cue text may not contain a blank line (it would end the cue), nor `-->`.
/// A lone CR ends a line too, as both formats read it.
fn cue_text(text: &str) -> String {
    let lines: Vec<&str> = text.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect();
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

/// Markdown: the story, the answer, then the timeline as a list.
pub fn markdown(report: &VideoReport) -> String {
    let mut out = String::new();
    if let Some(story) = &report.story {
        let _ = write!(out, "## Story\n\n{}\n\n", story.trim());
    }
    if let Some(answer) = &report.answer {
        let _ = write!(out, "## Answer\n\n{}\n\n", answer.trim());
    }
    if !report.events.is_empty() {
        out.push_str("## Timeline\n\n");
        for e in &report.events {
            let text = e.text.split_whitespace().collect::<Vec<_>>().join(" ");
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
    if !report.warnings.is_empty() {
        out.push_str("## Warnings\n\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- {w}");
        }
    }
    out
}

/// Plain text: one line per event, time first.
pub fn text(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{}  {}\n",
                crate::timecode::format(e.start_ms),
                e.text.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
        .collect()
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
