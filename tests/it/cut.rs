//! Stream-copied cuts of a time range, on generated clips: the length and
//! streams of the copy, its deletion, ranges outside the video and the time limit.

use std::time::Duration;

use vidgate::media::{self, MediaError};
use vidgate::schema::TimeRange;

use crate::util::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn range(start_ms: u64, end_ms: u64) -> TimeRange {
    TimeRange::new(start_ms, end_ms).unwrap()
}

#[test]
fn a_cut_holds_the_range_and_nothing_else() {
    let clip = testsrc_10s();
    let info = probe(&clip);
    let cut = block_on(media::cut(&info, range(4_000, 7_000), TIMEOUT)).unwrap();
    let copy = probe(cut.path());
    // Keyframes every 2 s: the copy starts on the one at 4 s.
    assert!((2_900..=3_100).contains(&copy.duration_ms), "a 3 s copy: {} ms", copy.duration_ms);
    assert_eq!((copy.video.codec.as_str(), copy.video.width), ("h264", 320), "copied, not re-encoded");
    assert_eq!(cut.range, range(4_000, 7_000));
    assert_eq!(cut.size_bytes, std::fs::metadata(cut.path()).unwrap().len());
    assert!(cut.size_bytes < info.size_bytes / 2, "{} of {} bytes", cut.size_bytes, info.size_bytes);
}

#[test]
fn a_cut_keeps_the_audio_and_ends_at_the_videos_end() {
    let clip = testsrc_30s_audio();
    let info = probe(&clip);
    let cut = block_on(media::cut(&info, range(20_000, 90_000), TIMEOUT)).unwrap();
    assert_eq!(cut.range, range(20_000, info.duration_ms), "the range ends where the video does");
    let copy = probe(cut.path());
    assert!(copy.has_audio(), "the audio track is copied too");
    assert!((9_500..=10_500).contains(&copy.duration_ms), "the last 10 s: {} ms", copy.duration_ms);
}

#[test]
fn a_cut_is_deleted_when_dropped() {
    let info = probe(&testsrc_10s());
    let cut = block_on(media::cut(&info, range(0, 2_000), TIMEOUT)).unwrap();
    let path = cut.path().to_path_buf();
    assert!(path.exists());
    drop(cut);
    assert!(!path.exists(), "{} is left behind", path.display());
}

#[test]
fn a_range_past_the_end_is_refused_with_the_file_and_the_times() {
    let clip = testsrc_10s();
    let info = probe(&clip);
    let err = block_on(media::cut(&info, range(12_000, 15_000), TIMEOUT)).unwrap_err();
    assert!(matches!(err, MediaError::RangeOutside { start_ms: 12_000, .. }), "{err}");
    let line = err.to_string();
    assert!(line.contains(&clip.display().to_string()) && line.contains("12000"), "{line}");
}

#[test]
fn a_cut_over_its_time_limit_is_stopped() {
    let info = probe(&testsrc_30s_audio());
    let err = block_on(media::cut(&info, range(0, 30_000), Duration::ZERO)).unwrap_err();
    assert!(matches!(err, MediaError::Timeout { .. }), "{err}");
}
