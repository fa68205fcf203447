use crate::util::*;

#[test]
fn a_generated_clip_probes_exactly() {
    let info = probe(&testsrc_10s());
    assert_eq!(info.duration_ms, 10_000);
    assert_eq!((info.video.width, info.video.height), (320, 240));
    assert_eq!(info.video.codec, "h264");
    assert_eq!(info.video.fps, 25.0);
    assert_eq!(info.video.rotation, 0);
    assert_eq!(info.video.frame_count, Some(250));
    assert!(!info.has_audio());
    assert!(info.container.contains("mp4"));
}

#[test]
fn audio_presence_is_reported() {
    let info = probe(&testsrc_30s_audio());
    let audio = info.audio.as_ref().expect("audio stream");
    assert_eq!(audio.codec, "aac");
    assert_eq!(audio.channels, 1);
    assert_eq!(info.streams.len(), 2);
    assert!((29_900..=30_100).contains(&info.duration_ms), "{}", info.duration_ms);
}

#[test]
fn rotation_is_read_and_frames_come_upright() {
    // A display rotation is written when the stream is copied, not re-encoded.
    let plain = x264_clip("unrotated.mp4", "testsrc=duration=2:size=320x240:rate=10", &[]);
    let path = make_clip("rotated.mp4", &["-i", plain.to_str().unwrap(), "-c", "copy", "-metadata:s:v:0", "rotate=90"]);
    let info = probe(&path);
    assert_eq!(info.video.rotation % 180, 90, "{}", info.video.rotation);
    assert_eq!(info.video.display_size(), (240, 320));
    let frames = frames(&path, &plan(vidgate::schema::SamplingMode::Count { count: 1 }, 512));
    assert_eq!((frames[0].width, frames[0].height), (240, 320), "rotated for display");
}
