//! No ffmpeg outlives its reader. In a binary of its own, with its tests run one
//! at a time, so the only ffmpeg processes alive are the ones under test.

#[allow(dead_code)]
#[path = "it/util.rs"]
mod util;

use vidgate::media::{self, Extraction, FrameFormat};
use vidgate::schema::SamplingMode;

use util::*;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 120 s of testsrc2, 640x360 at 30 fps.
fn long_clip() -> std::path::PathBuf {
    x264_clip("long.mp4", "testsrc2=duration=120:size=640x360:rate=30", &[])
}

/// RGB frames of a 120 s clip at `fps` and `width`, stopped after `limit`.
fn long_clip_stream(fps: f64, width: u32, limit: std::time::Duration) -> media::FrameStream {
    let path = long_clip();
    let info = probe(&path);
    let ex =
        Extraction::new(&info, &plan(SamplingMode::Fps { fps }, width), &Default::default(), FrameFormat::Rgb, limit)
            .unwrap();
    media::extract(ex).unwrap()
}

#[test]
fn dropping_the_stream_kills_ffmpeg() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stream = long_clip_stream(2.0, 320, std::time::Duration::from_secs(120));
    let first = stream.blocking_next().unwrap().unwrap();
    assert_eq!(first.pts_ms, 0);
    drop(stream);
    assert_eq!(ffmpeg_children(), Vec::<String>::new());
}

#[test]
fn a_timeout_stops_ffmpeg_with_a_clear_error() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut stream = long_clip_stream(30.0, 640, std::time::Duration::from_millis(300));
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

// ------------------------------------------------------------ whole runs

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{ErrorClass, ProviderError};
use vidgate::schema::{Constraints, Task, Usage, VideoRequest, VideoSource};

/// vidgate's own temporary files in the system temp dir.
fn our_temp_files() -> BTreeSet<String> {
    std::fs::read_dir(std::env::temp_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("vidgate-") && !n.starts_with("vidgate-it-"))
                .collect()
        })
        .unwrap_or_default()
}

fn gateway(step: Step) -> (Gateway, Arc<ScriptedProvider>) {
    let mut config = Config::builtin().unwrap();
    config.providers.insert("a".into(), ProviderProfile { protocol: Some(Protocol::Openai), ..Default::default() });
    config.router.chain = vec!["a".into()];
    let a = Arc::new(ScriptedProvider::new("a").with_fallback(step));
    (Gateway::with_journal(config, Journal::in_memory().unwrap()).with_provider("a", a.clone()), a)
}

fn bytes_request(task: Task) -> VideoRequest {
    let mut r = VideoRequest::new("unused", task);
    r.source = VideoSource::Bytes { data: std::fs::read(testsrc_10s()).unwrap(), format: Some("mp4".into()) };
    r
}

/// After a run that succeeds, fails, or is cut off by its deadline, no
/// ffmpeg is left and the temporary copy of the video is gone.
#[test]
fn runs_leave_no_process_and_no_temporary_file() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = our_temp_files();
    let answer = Step::Answer { text: "a test pattern".into(), usage: Usage::default() };

    let (ok, _) = gateway(answer.clone());
    block_on(ok.run(bytes_request(Task::Describe))).unwrap();
    assert_eq!(ffmpeg_children(), Vec::<String>::new(), "after a run that succeeded");

    let (down, _) = gateway(Step::Fail(ProviderError::new("a", ErrorClass::FallBack, "down")));
    assert!(block_on(down.run(bytes_request(Task::Describe))).is_err());
    assert_eq!(ffmpeg_children(), Vec::<String>::new(), "after a run that failed");

    // Slow answers and a deadline: the run is dropped while ffmpeg still streams.
    let (slow, _) = gateway(Step::Delay(Duration::from_secs(30), Box::new(answer)));
    let long = long_clip();
    let mut request = VideoRequest::new("unused", Task::Describe);
    request.source = VideoSource::Bytes { data: std::fs::read(long).unwrap(), format: Some("mp4".into()) };
    request.sampling = plan(SamplingMode::Fps { fps: 2.0 }, 320);
    request.sampling.max_frames = 240;
    request.constraints = Constraints { deadline_ms: Some(700), ..Constraints::default() };
    let err = block_on(slow.run(request)).unwrap_err();
    assert!(err.to_string().contains("deadline of 700 ms"), "{err}");
    assert_eq!(ffmpeg_children(), Vec::<String>::new(), "after a run cut off by its deadline");

    assert_eq!(our_temp_files(), before, "no temporary file is left behind");
}
