//! Each bad input gets an error naming the input (and the limit), never a panic.

use std::path::Path;

use vidgate::config::MediaLimits;
use vidgate::media;

use crate::util::*;

fn probe_err(path: &Path, limits: &MediaLimits) -> String {
    match runtime().block_on(media::probe(path, limits)) {
        Ok(info) => panic!("{} was accepted: {info:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = clip_dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn missing_empty_and_directory_inputs() {
    let missing = clip_dir().join("nope.mp4");
    let msg = probe_err(&missing, &limits());
    assert!(msg.contains("nope.mp4") && msg.contains("no such file"), "{msg}");
    let empty = write("empty.mp4", b"");
    let msg = probe_err(&empty, &limits());
    assert!(msg.contains("empty.mp4") && msg.contains("empty"), "{msg}");
    let msg = probe_err(clip_dir(), &limits());
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn random_bytes_and_a_truncated_mp4() {
    let mut noise = Vec::with_capacity(64 * 1024);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..64 * 1024 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let path = write("noise.mp4", &noise);
    let msg = probe_err(&path, &limits());
    assert!(msg.contains("noise.mp4") && msg.contains("not a video"), "{msg}");

    let whole = std::fs::read(testsrc_10s()).unwrap();
    let path = write("truncated.mp4", &whole[..whole.len() / 2]);
    let msg = probe_err(&path, &limits());
    assert!(msg.contains("truncated.mp4"), "{msg}");
}

#[test]
fn audio_only_has_no_video() {
    let path = make_clip("tone.m4a", &["-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac"]);
    let msg = probe_err(&path, &limits());
    assert!(msg.contains("tone.m4a") && msg.contains("no video stream") && msg.contains("audio"), "{msg}");
}

#[test]
fn playlists_and_concat_lists_cannot_reach_other_files() {
    let target = testsrc_10s();
    let concat = write(
        "list.txt",
        format!("ffconcat version 1.0\nfile '/etc/passwd'\nfile '{}'\n", target.display()).as_bytes(),
    );
    let msg = probe_err(&concat, &limits());
    assert!(msg.contains("list.txt") && msg.contains("not a video"), "{msg}");
    let ffconcat = write("list.ffconcat", b"ffconcat version 1.0\nfile '/etc/passwd'\n");
    probe_err(&ffconcat, &limits());
    let hls =
        write("playlist.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n");
    let msg = probe_err(&hls, &limits());
    assert!(msg.contains("playlist.m3u8"), "{msg}");
    assert!(!msg.contains("root:"), "nothing of /etc/passwd leaks: {msg}");
}

#[test]
fn limits_are_enforced_with_numbers() {
    let path = testsrc_10s();
    let small = MediaLimits { max_pixels: 50_000, ..limits() };
    let msg = probe_err(&path, &small);
    assert!(msg.contains("320x240") && msg.contains("50000") && msg.contains("limits.max_pixels"), "{msg}");
    let short = MediaLimits { max_duration_s: 5.0, ..limits() };
    let msg = probe_err(&path, &short);
    assert!(msg.contains("10.0 s") && msg.contains("5.0 s") && msg.contains("testsrc-10s.mp4"), "{msg}");
    let tiny = MediaLimits { max_file_bytes: 1000, ..limits() };
    let msg = probe_err(&path, &tiny);
    assert!(msg.contains("1000 bytes") && msg.contains("limits.max_file_bytes"), "{msg}");
    let one = MediaLimits { max_streams: 1, ..limits() };
    let msg = probe_err(&testsrc_30s_audio(), &one);
    assert!(msg.contains("2 streams") && msg.contains("limits.max_streams"), "{msg}");
}

#[test]
fn a_large_resolution_is_refused_before_decoding() {
    let path = x264_clip("big.mp4", "color=size=4000x3000:rate=1:duration=1", &[]);
    let limits = MediaLimits { max_pixels: 3840 * 2160, ..limits() };
    let msg = probe_err(&path, &limits);
    assert!(msg.contains("4000x3000") && msg.contains("big.mp4"), "{msg}");
}

#[test]
fn odd_file_names_work() {
    for name in ["-starts-with-dash.mp4", "quote'and\"space .mp4", "new\nline.mp4", "colon:name.mp4"] {
        let path = clip_dir().join(name);
        std::fs::copy(testsrc_10s(), &path).unwrap();
        let frames = frames(&path, &plan(vidgate::schema::SamplingMode::Count { count: 2 }, 64));
        assert_eq!(frames.len(), 2, "{name:?}");
    }
}

#[test]
fn a_range_past_the_end_is_refused() {
    let info = probe(&testsrc_10s());
    let p = plan_range(vidgate::schema::SamplingMode::Fps { fps: 1.0 }, 20_000, 30_000);
    let err = media::Extraction::new(
        &info,
        &p,
        &Default::default(),
        media::FrameFormat::Rgb,
        std::time::Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(err.to_string().contains("outside the video's 10000 ms"), "{err}");
}

/// The library and the CLI are safe Rust throughout: no input can reach
/// undefined behaviour through code of ours.
#[test]
fn the_crate_forbids_unsafe_code() {
    for (file, text) in
        [("src/lib.rs", include_str!("../../src/lib.rs")), ("src/main.rs", include_str!("../../src/main.rs"))]
    {
        assert!(text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"), "{file} does not forbid unsafe code");
    }
}
