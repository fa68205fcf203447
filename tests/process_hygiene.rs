//! No ffmpeg outlives its reader. In a binary of its own, with its tests run one
//! at a time, so the only ffmpeg processes alive are the ones under test.

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use vidgate::media::{self, Extraction, FrameFormat};
use vidgate::schema::SamplingMode;

use util::*;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn dropping_the_stream_kills_ffmpeg() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = make_clip(
        "long.mp4",
        &["-f", "lavfi", "-i", "testsrc2=duration=120:size=640x360:rate=30", "-c:v", "libx264", "-preset", "ultrafast"],
    );
    let info = probe(&path);
    let ex = Extraction::new(
        &info,
        &plan(SamplingMode::Fps { fps: 2.0 }, 320),
        &Default::default(),
        FrameFormat::Rgb,
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    let mut stream = media::extract(ex).unwrap();
    let first = stream.blocking_next().unwrap().unwrap();
    assert_eq!(first.pts_ms, 0);
    drop(stream);
    assert_eq!(ffmpeg_children(), Vec::<String>::new());
}

#[test]
fn a_timeout_stops_ffmpeg_with_a_clear_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let path = make_clip(
        "long.mp4",
        &["-f", "lavfi", "-i", "testsrc2=duration=120:size=640x360:rate=30", "-c:v", "libx264", "-preset", "ultrafast"],
    );
    let info = probe(&path);
    let ex = Extraction::new(
        &info,
        &plan(SamplingMode::Fps { fps: 30.0 }, 640),
        &Default::default(),
        FrameFormat::Rgb,
        std::time::Duration::from_millis(300),
    )
    .unwrap();
    let mut stream = media::extract(ex).unwrap();
    let mut last = None;
    while let Some(item) = stream.blocking_next() {
        if let Err(e) = item {
            last = Some(e.to_string());
        }
    }
    let msg = last.expect("a timeout error");
    assert!(msg.contains("did not finish within") && msg.contains("long.mp4"), "{msg}");
    drop(stream);
    assert_eq!(ffmpeg_children(), Vec::<String>::new());
}
