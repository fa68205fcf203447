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
fn cue_text(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.join("\n").replace("-->", "->")
}

/// An event's end, at least one millisecond after its start.
fn end(e: &Event) -> u64 {
    e.end_ms.max(e.start_ms + 1)
}

/// SubRip: numbered cues.
pub fn srt(events: &[Event]) -> String {
    let mut out = String::new();
    for (i, e) in events.iter().enumerate() {
        let _ =
            write!(out, "{}\n{} --> {}\n{}\n\n", i + 1, clock(e.start_ms, ','), clock(end(e), ','), cue_text(&e.text));
    }
    out
}

/// WebVTT: a header, then cues. `&`, `<` and `>` are escaped, as the format requires.
pub fn vtt(events: &[Event]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for e in events {
        let text = cue_text(&e.text).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
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

    /// A strict reader of SubRip, to check the rendering round-trips.
    fn parse_srt(text: &str) -> Vec<(u64, u64, String)> {
        let ms = |t: &str| {
            let (hms, milli) = t.split_once(',').unwrap();
            let p: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
            ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + milli.parse::<u64>().unwrap()
        };
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .enumerate()
            .map(|(i, block)| {
                let mut lines = block.lines();
                assert_eq!(lines.next().unwrap(), (i + 1).to_string());
                let (a, b) = lines.next().unwrap().split_once(" --> ").unwrap();
                (ms(a), ms(b), lines.collect::<Vec<_>>().join("\n"))
            })
            .collect()
    }

    #[test]
    fn srt_round_trips_through_a_strict_reader() {
        let cues = parse_srt(&srt(&events()));
        assert_eq!(cues[0], (0, 2_500, "A door opens.".into()));
        assert_eq!(cues[1].0, 3_723_004);
        assert_eq!(cues[1].1, 3_723_005, "an empty span still lasts a millisecond");
        assert_eq!(cues[1].2, "Text on screen: <b>SALE</b> & more\n-> here", "no blank line, no arrow inside a cue");
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
