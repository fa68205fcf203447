//! A model's timeline answer, checked against the part of the video it is
//! for: never a panic, and what is accepted keeps the promises of
//! `timeline::parse_events` (in the range, in order, start ≤ end, text trimmed
//! and not empty).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidgate::schema::TimeRange;
use vidgate::timeline;

/// The parts of a video an answer may be checked against, chosen by the
/// input's length so that a seed is a plain answer.
const RANGES: [(u64, u64); 6] =
    [(0, 60_000), (0, 1), (10_000, 20_000), (0, 4 * 3_600_000), (5_000, 5_001), (u64::MAX - 60_000, u64::MAX)];

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = std::str::from_utf8(data) else { return };
    let (start_ms, end_ms) = RANGES[data.len() % RANGES.len()];
    let within = TimeRange::new(start_ms, end_ms).expect("a range");
    let Ok(events) = timeline::parse_events(answer, within) else { return };
    for (i, e) in events.iter().enumerate() {
        assert!(e.start_ms <= e.end_ms, "event {i} ends before it starts: {e:?}");
        assert!(within.start_ms <= e.start_ms && e.end_ms <= within.end_ms, "event {i} outside {within:?}: {e:?}");
        assert!(!e.text.is_empty() && e.text.trim() == e.text, "event {i} text: {:?}", e.text);
    }
    assert!(events.windows(2).all(|w| (w[0].start_ms, w[0].end_ms) <= (w[1].start_ms, w[1].end_ms)), "not in order");
});
