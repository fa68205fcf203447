//! The real clips listed in shared/TEST_MATERIAL.md, fetched by fixtures/fetch.sh.

use vidgate::schema::SamplingMode;

use crate::util::*;

/// name, duration (ms), coded size, has audio.
const CLIPS: &[(&str, u64, (u32, u32), bool)] = &[
    ("bikes.mp4", 10_000, (640, 272), false),
    ("bigbuckbunny.mp4", 5_300, (1280, 720), true),
    ("carphone_distorted.mp4", 0, (176, 144), false),
    ("a.mp4", 7_000, (1920, 1080), false),
    ("b.mp4", 5_000, (480, 270), true),
    ("muted_b.mp4", 5_000, (480, 270), false),
    ("default.mp4", 10_000, (256, 256), true),
    ("jwpIntro.mp4", 5_800, (0, 0), true),
    ("testMovie.mp4", 7_800, (0, 0), true),
    ("trailer_bbb.mp4", 55_000, (1280, 720), true),
    ("Megamind.avi", 11_000, (0, 0), true),
    ("box.mp4", 15_000, (640, 480), false),
];

#[test]
fn every_clip_probes() {
    let mut report = String::new();
    for (name, duration, size, _audio) in CLIPS {
        let Some(path) = real_clip(name) else { return };
        let info = probe(&path);
        report.push_str(&format!(
            "{name}: {} ms {}x{} {} {:.3} fps audio={}\n",
            info.duration_ms,
            info.video.width,
            info.video.height,
            info.video.codec,
            info.video.fps,
            info.audio.as_ref().map(|a| a.codec.as_str()).unwrap_or("none")
        ));
        if *duration > 0 {
            assert!(info.duration_ms.abs_diff(*duration) <= 600, "{name}: {} ms", info.duration_ms);
        }
        if size.0 > 0 {
            assert_eq!((info.video.width, info.video.height), *size, "{name}");
        }
    }
    insta::assert_snapshot!(report);
}

/// A missing clip fails the test that needs it, so a green run means every
/// test ran; only `VIDGATE_ALLOW_SKIP=1` makes it a skip.
#[test]
fn a_missing_clip_fails_unless_skipping_is_allowed() {
    let allowed = std::env::var_os("VIDGATE_ALLOW_SKIP").is_some_and(|v| v == "1");
    match std::panic::catch_unwind(|| real_clip("no-such-clip.mp4")) {
        Ok(path) => assert!(allowed && path.is_none(), "skipped without VIDGATE_ALLOW_SKIP=1: {path:?}"),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(!allowed, "failed although VIDGATE_ALLOW_SKIP=1: {message}");
            assert!(message.contains("no-such-clip.mp4") && message.contains("VIDGATE_ALLOW_SKIP=1"), "{message}");
        }
    }
}

#[test]
fn one_fps_on_real_clips_is_exact() {
    let Some(path) = real_clip("bikes.mp4") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Fps { fps: 1.0 }, 320)));
    assert_eq!(got, (0..10).map(|s| s * 1000).collect::<Vec<_>>());
}

#[test]
fn scene_sampling_finds_the_cuts_of_bikes() {
    let Some(path) = real_clip("bikes.mp4") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 320)));
    insta::assert_debug_snapshot!(got);
}

#[test]
fn scene_sampling_on_the_trailer_stays_bounded() {
    let Some(path) = real_clip("trailer_bbb.mp4") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 256)));
    assert!(got.len() >= 10 && got.len() <= 55, "{} shots: {got:?}", got.len());
    insta::assert_debug_snapshot!(got);
}

/// The trailer's shots, as detect-content finds them (start ms), with the
/// dissolve into the sepia close-up at 47.25 s that it merges into the shot before.
const TRAILER_SHOTS: [u64; 12] =
    [0, 10_000, 14_083, 24_708, 32_000, 36_000, 37_500, 41_167, 43_708, 47_250, 51_833, 55_200];
/// Where the trailer's mean luma ramps between a shot's level and black
/// (ffmpeg's signalstats YAVG, frame by frame).
const TRAILER_FADES: [(u64, u64); 6] =
    [(0, 1_042), (9_000, 11_000), (13_000, 15_000), (31_000, 33_000), (45_750, 48_750), (50_167, 52_000)];

#[test]
fn scene_sampling_gives_each_trailer_shot_its_settled_picture() {
    let Some(path) = real_clip("trailer_bbb.mp4") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 256)));
    let in_fades: Vec<_> = got.iter().filter(|t| TRAILER_FADES.iter().any(|(a, b)| (a..b).contains(t))).collect();
    assert!(in_fades.is_empty(), "frames in the middle of a fade: {in_fades:?} of {got:?}");
    for shot in TRAILER_SHOTS.windows(2) {
        let n = got.iter().filter(|t| (shot[0]..shot[1]).contains(t)).count();
        assert_eq!(n, 1, "{n} frames in the shot at {} ms: {got:?}", shot[0]);
    }
}

#[test]
fn scene_sampling_finds_the_cuts_between_dark_shots_of_megamind() {
    let Some(path) = real_clip("Megamind.avi") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 320)));
    // The cuts detect-content and ffmpeg's scdet find, all between dim shots.
    for cut in [4_129, 6_465, 8_383] {
        assert!(got.iter().any(|t| (cut..cut + 500).contains(t)), "no frame just after the cut at {cut} ms: {got:?}");
    }
    assert_eq!(got.len(), 4, "one frame per shot: {got:?}");
}

#[test]
fn scene_sampling_gives_a_handheld_shot_one_frame() {
    let Some(path) = real_clip("cup.mp4") else { return };
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 320)));
    assert_eq!(got.len(), 1, "one continuous shot: {got:?}");
}

#[test]
fn broken_slices_and_truncated_audio_do_not_stop_extraction() {
    for (name, expected) in [("box.mp4", 15), ("Megamind.avi", 11)] {
        let Some(path) = real_clip(name) else { return };
        let got = frames(&path, &plan(SamplingMode::Fps { fps: 1.0 }, 160));
        assert!(got.len().abs_diff(expected) <= 1, "{name}: {} frames", got.len());
        // Megamind.avi's first video frame is presented at 42 ms.
        assert!(got[0].pts_ms < 100, "{name}: {}", got[0].pts_ms);
    }
}

#[test]
fn tiny_and_multi_stream_clips_extract() {
    for name in ["carphone_distorted.mp4", "testMovie.mp4", "bigbuckbunny.mp4", "a.mp4"] {
        let Some(path) = real_clip(name) else { return };
        let got = frames(&path, &plan(SamplingMode::Count { count: 3 }, 256));
        assert_eq!(got.len(), 3, "{name}");
        assert!(got.windows(2).all(|w| w[0].pts_ms < w[1].pts_ms), "{name}");
    }
}
