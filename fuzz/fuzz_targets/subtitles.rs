//! SubRip and WebVTT renderings of any events: never a panic, and an
//! independent parser (`subtp`) reads back a cue for every event with text,
//! at its times, with its text on non-blank lines that hold no `-->`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vidgate::render;
use vidgate::schema::Event;

#[derive(Arbitrary, Debug)]
struct Cue {
    start_ms: u64,
    end_ms: u64,
    text: String,
}

/// Two-digit hours: the formats' timestamps end at 99:59:59.999.
const LAST_MS: u64 = 100 * 3_600_000 - 1;

fuzz_target!(|cues: Vec<Cue>| {
    // Any times at all: every rendering returns.
    let raw: Vec<Event> =
        cues.iter().map(|c| Event { start_ms: c.start_ms, end_ms: c.end_ms, text: c.text.clone() }).collect();
    let _ = (render::srt(&raw), render::vtt(&raw), render::text(&raw));

    // Times the formats can write: every cue reads back.
    let events: Vec<Event> = cues
        .iter()
        .map(|c| Event { start_ms: c.start_ms % LAST_MS, end_ms: c.end_ms % LAST_MS, text: c.text.clone() })
        .collect();
    check(&events, &read_srt(&render::srt(&events)), |t| t.to_string());
    check(&events, &read_vtt(&render::vtt(&events)), |t| {
        t.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    });
});

/// A cue as read back: start, end and text lines.
type ReadCue = (u64, u64, Vec<String>);

/// Every event with text is a cue; one with none is left out.
fn check(events: &[Event], cues: &[ReadCue], unescape: impl Fn(&str) -> String) {
    let shown: Vec<&Event> = events.iter().filter(|e| !e.text.trim().is_empty()).collect();
    assert_eq!(cues.len(), shown.len(), "cues read back: {cues:?}");
    for (e, (start, end, lines)) in shown.into_iter().zip(cues) {
        assert_eq!((*start, *end), (e.start_ms, e.end_ms.max(e.start_ms + 1)), "times of {e:?}");
        for line in lines {
            assert!(!line.trim().is_empty(), "a blank line in the cue for {e:?}: {lines:?}");
            assert!(!line.contains("-->"), "an arrow in the cue for {e:?}: {lines:?}");
        }
        // The text survives, but for spacing and the arrows taken apart.
        let visible = |t: &str| t.chars().filter(|c| !c.is_whitespace() && *c != '-' && *c != '>').collect::<String>();
        assert_eq!(visible(&unescape(&lines.join("\n"))), visible(&e.text), "text of {e:?}: {lines:?}");
    }
}

fn ms(h: u8, m: u8, s: u8, milli: u16) -> u64 {
    ((u64::from(h) * 60 + u64::from(m)) * 60 + u64::from(s)) * 1000 + u64::from(milli)
}

fn read_srt(text: &str) -> Vec<ReadCue> {
    let parsed = subtp::srt::SubRip::parse(text).unwrap_or_else(|e| panic!("not valid SubRip: {e:?}\n{text:?}"));
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
                cue.text.clone(),
            )
        })
        .collect()
}

fn read_vtt(text: &str) -> Vec<ReadCue> {
    let parsed = subtp::vtt::WebVtt::parse(text).unwrap_or_else(|e| panic!("not valid WebVTT: {e:?}\n{text:?}"));
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
                cue.payload.clone(),
            )
        })
        .collect()
}
