//! The inputs the fuzz targets in `fuzz/` (run by `scripts/fuzz.sh`) crashed
//! on, and the nastiest ones tried, replayed on stable with every build.

use vidgate::fuzzing;
use vidgate::render;
use vidgate::schema::{Event, TimeRange};
use vidgate::{timecode, timeline};

/// `[[[…]]]`, nested deeper than any parser should follow.
fn deep_arrays(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Bytes that are not UTF-8, inside and outside strings.
const NOT_UTF8: &[&[u8]] = &[b"\xff\xfe\xfd", b"{\"choices\":\"\xc3\x28\"}", b"\"\xed\xa0\x80\"", b"\x00"];

/// Text no reader should take: empty, blank, cut off, deep, huge and odd.
fn nasty_text() -> Vec<String> {
    let mut texts: Vec<String> = [
        "",
        " ",
        "\n\r\t",
        "null",
        "[]",
        "{}",
        "\"\"",
        "{",
        "}",
        "{\"",
        "1e400",
        "-1",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "\u{feff}{}",
        "\0",
        "```",
        "```json",
        "```json```",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    texts.push(deep_arrays(100_000));
    texts.push("{\"a\":".repeat(10_000));
    texts.push("x".repeat(1 << 20));
    texts
}

#[test]
fn timestamps_refuse_nonsense_without_panicking() {
    for text in nasty_text() {
        assert_eq!(timecode::parse(&text), None, "{:.40}", text);
    }
    for text in ["99999999999:59:59.999", "9999999999:59:59.999999999", "999999999999.999s", "0:0:0", "٣", "1:٣"] {
        if let Some(ms) = timecode::parse(text) {
            assert_eq!(timecode::parse(&timecode::format(ms)), Some(ms), "{text}");
        }
    }
    for ms in [u64::MAX, u64::MAX - 1, 1 << 63] {
        assert!(!timecode::format(ms).is_empty());
    }
}

#[test]
fn timelines_refuse_nonsense_without_panicking() {
    let ranges = [(0, 60_000), (0, 1), (u64::MAX - 60_000, u64::MAX)];
    for (start_ms, end_ms) in ranges {
        let within = TimeRange::new(start_ms, end_ms).unwrap();
        for text in nasty_text() {
            assert!(timeline::parse_events(&text, within).is_err(), "{:.40}", text);
        }
        for answer in [
            r#"{"events":[{"start":1e400,"end":1,"text":"x"}]}"#,
            r#"{"events":[{"start":-0.0,"end":1e-400,"text":"x"}]}"#,
            r#"{"events":[{"start":18446744073709551615,"end":18446744073709551615,"text":"x"}]}"#,
            r#"{"events":[{"start":"9999999999:59:59.999","end":"9999999999:59:59.999","text":"x"}]}"#,
            r#"{"events":[{"start":[],"end":{},"text":"x"}]}"#,
            r#"{"events":[{"start":"0","end":"0","text":"x"}],"events":[]}"#,
        ] {
            if let Ok(events) = timeline::parse_events(answer, within) {
                assert!(events.iter().all(|e| within.start_ms <= e.start_ms && e.end_ms <= within.end_ms));
            }
        }
    }
}

#[test]
fn provider_answers_refuse_nonsense_without_panicking() {
    let mut bodies: Vec<Vec<u8>> = nasty_text().into_iter().map(String::into_bytes).collect();
    bodies.extend(NOT_UTF8.iter().map(|b| b.to_vec()));
    bodies.push(format!("{{\"choices\":{}}}", deep_arrays(200)).into_bytes());
    bodies.push(format!("{{\"candidates\":{}}}", deep_arrays(200)).into_bytes());
    bodies.push(format!("{{\"error\":{}}}", deep_arrays(200)).into_bytes());
    for body in &bodies {
        let shown = String::from_utf8_lossy(body);
        assert!(fuzzing::openai_response(body).is_err(), "openai: {:.40}", shown);
        assert!(fuzzing::gemini_response(body).is_err(), "gemini: {:.40}", shown);
    }
}

#[test]
fn recorded_answers_read_through_the_fuzzing_entry_points() {
    let openai = fuzzing::openai_response(include_bytes!("../fixtures/recorded/openai/chat_completions_image.json"))
        .expect("a recorded OpenAI answer");
    assert_eq!(openai.text, "The fruit in the image is a kiwi.");
    assert_eq!(openai.tokens, Some((1119, 10)));
    let gemini = fuzzing::gemini_response(include_bytes!("../fixtures/recorded/gemini/inline_video.response.json"))
        .expect("a recorded Gemini answer");
    assert_eq!(gemini.tokens, Some((268, 162)));
    let blocked = fuzzing::gemini_response(include_bytes!("../fixtures/recorded/gemini/prompt_blocked.json"));
    assert!(blocked.unwrap_err().contains("content policy"));
}

#[test]
fn provider_answers_with_absurd_token_counts_are_read() {
    let max = u64::MAX;
    let openai = format!(
        r#"{{"choices":[{{"message":{{"content":"x"}}}}],"usage":{{"prompt_tokens":{max},"completion_tokens":{max},"total_tokens":{max},"prompt_tokens_details":{{"cached_tokens":{max}}}}}}}"#
    );
    assert_eq!(fuzzing::openai_response(openai.as_bytes()).unwrap().tokens, Some((max, max)));
    let openai = r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":-1}}"#;
    // A negative count costs the usage (the estimate is billed), not the answer.
    let answer = fuzzing::openai_response(openai.as_bytes()).unwrap();
    assert_eq!((answer.text.as_str(), answer.tokens), ("x", None));
}

#[test]
fn config_files_refuse_nonsense_without_panicking() {
    let mut texts: Vec<Vec<u8>> = nasty_text().into_iter().map(String::into_bytes).collect();
    texts.extend(NOT_UTF8.iter().map(|b| b.to_vec()));
    for text in [
        "a = ".to_string() + &deep_arrays(100_000),
        "[".repeat(10_000),
        "x = {".repeat(10_000),
        "[sampling]\nfps = nan".into(),
        "[sampling]\nfps = inf".into(),
        "[sampling]\nmax_frames = -1".into(),
        "[sampling]\nmax_frames = 99999999999999999999".into(),
        "[budget]\nmax_usd_per_request = 1e400".into(),
        "[router]\nchain = [\"nowhere\"]".into(),
        "[router.tasks]\nsing = [\"local\"]".into(),
        "[providers.x]\nbase_url = \"ftp://x\"".into(),
        "router = 1".into(),
        "a.b.c.d.e.f.g.h = 1".into(),
    ] {
        texts.push(text.into_bytes());
    }
    for text in &texts {
        let shown = String::from_utf8_lossy(text);
        // The empty file and blank ones are the defaults; nothing else here loads.
        match fuzzing::config(text) {
            Ok(_) => assert!(shown.trim().is_empty(), "{:.60} loaded", shown),
            Err(e) => assert!(!e.is_empty()),
        }
    }
}

/// What an independent SubRip parser reads back: start, end and text of each cue.
fn read_srt(text: &str) -> Vec<(u64, u64, String)> {
    let ms = |t: &subtp::srt::SrtTimestamp| {
        ((u64::from(t.hours) * 60 + u64::from(t.minutes)) * 60 + u64::from(t.seconds)) * 1000
            + u64::from(t.milliseconds)
    };
    let parsed = subtp::srt::SubRip::parse(text).unwrap_or_else(|e| panic!("not valid SubRip: {e:?}\n{text:?}"));
    parsed.subtitles.iter().map(|c| (ms(&c.start), ms(&c.end), c.text.join("\n"))).collect()
}

/// The same for WebVTT.
fn read_vtt(text: &str) -> Vec<(u64, u64, String)> {
    let ms = |t: &subtp::vtt::VttTimestamp| {
        ((u64::from(t.hours) * 60 + u64::from(t.minutes)) * 60 + u64::from(t.seconds)) * 1000
            + u64::from(t.milliseconds)
    };
    let parsed = subtp::vtt::WebVtt::parse(text).unwrap_or_else(|e| panic!("not valid WebVTT: {e:?}\n{text:?}"));
    parsed
        .blocks
        .iter()
        .filter_map(|b| match b {
            subtp::vtt::VttBlock::Que(cue) => {
                Some((ms(&cue.timings.start), ms(&cue.timings.end), cue.payload.join("\n")))
            }
            _ => None,
        })
        .collect()
}

fn event(start_ms: u64, end_ms: u64, text: &str) -> Event {
    Event { start_ms, end_ms, text: text.into() }
}

/// Found by `fuzz/fuzz_targets/subtitles.rs`: an event without text became a
/// cue whose blank text line ended it, and SubRip readers stopped there.
#[test]
fn subtitles_leave_out_events_without_text() {
    let events =
        [event(0, 1_000, "A door opens."), event(50, 0, ""), event(60, 70, " \n\r\t "), event(2_000, 3_000, "Rain.")];
    let want = vec![(0, 1_000, "A door opens.".to_string()), (2_000, 3_000, "Rain.".to_string())];
    assert_eq!(read_srt(&render::srt(&events)), want);
    assert!(render::srt(&events).starts_with("1\n00:00:00,000 --> 00:00:01,000\nA door opens.\n\n2\n"));
    assert_eq!(read_vtt(&render::vtt(&events)), want);
}

/// Found by the subtitles target: an event starting at `u64::MAX` ms
/// overflowed when its end was put at least a millisecond after its start.
#[test]
fn subtitles_of_an_event_at_the_end_of_time_do_not_panic() {
    let events = [event(u64::MAX, 0, "x"), event(u64::MAX, u64::MAX, "y"), event(u64::MAX - 1, 3, "z")];
    assert!(render::srt(&events).contains("\n3\n"));
    assert!(render::vtt(&events).contains(" --> "));
    assert_eq!(render::text(&events).lines().count(), 3);
}

/// Found by the subtitles target: `--->` lost one arrow to the replacement
/// and kept another, which ends a SubRip cue's text early.
#[test]
fn subtitles_hold_no_arrow_however_it_is_spelled() {
    for text in ["\0--->", "---->", "-->-->", "<!--->", "a --->b"] {
        let events = [event(0, 1_000, text)];
        let srt = render::srt(&events);
        let cue = srt.split_once("\n00:00:00,000 --> 00:00:01,000\n").expect("a cue").1;
        assert!(!cue.contains("-->"), "{text:?}: {srt:?}");
        assert_eq!(read_srt(&srt).len(), 1, "{text:?}");
        assert!(!render::vtt(&events).split_once(" --> ").unwrap().1.contains("-->"), "{text:?}");
    }
}

/// Found by the subtitles target: a lone CR ends a line for SubRip and
/// WebVTT readers, so CRs in a row were a blank line inside the cue. (The
/// control characters the fuzzer put around them are dropped.)
#[test]
fn subtitles_treat_a_lone_carriage_return_as_a_line_break() {
    let events = [event(0, 1_000, "a\u{15}\r\r\rb\0"), event(1_000, 2_000, "one\r\rtwo\r\n\r\nthree")];
    let want = vec![(0, 1_000, "a\nb".to_string()), (1_000, 2_000, "one\ntwo\nthree".to_string())];
    assert_eq!(read_srt(&render::srt(&events)), want);
    assert_eq!(read_vtt(&render::vtt(&events)), want);
}

/// Found with the gemini_response target: token counts near the top of a
/// u64, summed over modalities or over candidates and thoughts, overflowed.
#[test]
fn gemini_token_counts_that_overflow_a_sum_saturate() {
    let max = u64::MAX;
    let body = format!(
        r#"{{"candidates":[{{"content":{{"parts":[{{"text":"x"}}]}}}}],"usageMetadata":{{"promptTokenCount":1,"candidatesTokenCount":{max},"thoughtsTokenCount":{max},"promptTokensDetails":[{{"modality":"VIDEO","tokenCount":{max}}},{{"modality":"VIDEO","tokenCount":{max}}},{{"modality":"TEXT","tokenCount":{max}}}]}}}}"#
    );
    assert_eq!(fuzzing::gemini_response(body.as_bytes()).unwrap().tokens, Some((max, max)));
    // The input the fuzzer wrote (fuzz/corpus/gemini_response/crash-a8a42489…).
    let found = br#"{"candidates":[{"content":{"parts":[{"text":"A door opens."}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9223372036854775807,"candidatesTokenCount":9223372036854775807,"thoughtsTokenCount":9223372036854775807,"promptTokensDetails":[{"modality":"VIDEO","tokenCount":9223376803254775807},{"modality":"AUDIO","tokenCount":9223372036854775807}]},"modelVersion":"gemini-2.5-flash"}"#;
    assert_eq!(fuzzing::gemini_response(found).unwrap().tokens, Some((max, max - 1)));
}
