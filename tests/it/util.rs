use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use vidgate::config::{MediaLimits, SamplingConfig};
use vidgate::media::{self, Extraction, Frame, FrameFormat, MediaInfo};
use vidgate::schema::{SamplingMode, SamplingPlan, TimeRange};

/// A directory that lives as long as the test process: generated clips are shared.
pub fn clip_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::Builder::new().prefix("vidgate-it-").tempdir().unwrap()).path()
}

/// Run ffmpeg with these arguments, writing `name` in the clip dir once.
pub fn make_clip(name: &str, args: &[&str]) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = clip_dir().join(name);
    if !path.exists() {
        let tmp = clip_dir().join(format!("tmp-{name}"));
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y"])
            .args(args)
            .arg(&tmp)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg made {name}");
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// A clip of the lavfi `source`, H.264 encoded at ultrafast, with `extra`
/// output options.
pub fn x264_clip(name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let args: Vec<&str> = ["-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "ultrafast"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    make_clip(name, &args)
}

/// 10 s of testsrc, 320x240 at 25 fps, H.264 with a keyframe every 2 s.
pub fn testsrc_10s() -> PathBuf {
    x264_clip(
        "testsrc-10s.mp4",
        "testsrc=duration=10:size=320x240:rate=25",
        &["-g", "50", "-keyint_min", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p"],
    )
}

/// 30 s of testsrc2, 320x180 at 30 fps, with a sine tone.
pub fn testsrc_30s_audio() -> PathBuf {
    make_clip(
        "testsrc2-30s-audio.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=30:size=320x180:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=30",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    )
}

/// A slideshow: 11 pictures of testsrc (160x120) a minute apart, the last
/// at 10:00 and shown for a second, so 601 s in all.
pub fn slideshow() -> PathBuf {
    x264_clip(
        "slideshow-11.mp4",
        "testsrc=size=160x120:rate=1:duration=11",
        &["-vf", "setpts=N*60/TB", "-fps_mode", "vfr", "-pix_fmt", "yuv420p"],
    )
}

pub fn limits() -> MediaLimits {
    MediaLimits::default()
}

pub fn probe(path: &Path) -> MediaInfo {
    block_on(media::probe(path, &limits())).unwrap_or_else(|e| panic!("probe {}: {e}", path.display()))
}

/// Wait for a future, also from inside an async test.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => runtime().block_on(fut),
    }
}

/// Run blocking test code, also from inside an async test.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

pub fn plan(mode: SamplingMode, width: u32) -> SamplingPlan {
    SamplingPlan { mode, range: None, max_frames: 1000, width }
}

pub fn plan_range(mode: SamplingMode, start_ms: u64, end_ms: u64) -> SamplingPlan {
    SamplingPlan { range: TimeRange::new(start_ms, end_ms), ..plan(mode, 160) }
}

/// All frames of one extraction, as RGB.
pub fn frames(path: &Path, plan: &SamplingPlan) -> Vec<Frame> {
    frames_as(path, plan, FrameFormat::Rgb).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn frames_as(path: &Path, plan: &SamplingPlan, format: FrameFormat) -> Result<Vec<Frame>, media::MediaError> {
    blocking(|| frames_blocking(path, plan, format))
}

fn frames_blocking(path: &Path, plan: &SamplingPlan, format: FrameFormat) -> Result<Vec<Frame>, media::MediaError> {
    let info = probe(path);
    let ex = Extraction::new(&info, plan, &SamplingConfig::default(), format, Duration::from_secs(120))?;
    let mut stream = media::extract(ex)?;
    let mut out = Vec::new();
    while let Some(f) = stream.blocking_next() {
        out.push(f?);
    }
    Ok(out)
}

pub fn pts(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.pts_ms).collect()
}

/// Child processes of this test process named `ffmpeg` or `ffprobe`: none
/// as soon as they are gone, else those still there after 10 s. A dropped
/// reader's ffmpeg may be killed and reaped on another thread a moment later.
pub fn ffmpeg_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // pid (comm) state ppid ...
            let Some((head, tail)) = stat.rsplit_once(')') else { continue };
            let comm = head.split_once('(').map(|x| x.1).unwrap_or_default();
            let mut fields = tail.split_whitespace();
            let (state, ppid) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
            // A zombie (Z) has ended; the runtime reaps killed children when it next gets to it.
            if ppid == me && state != "Z" && (comm == "ffmpeg" || comm == "ffprobe") {
                found.push(format!("{comm} {}", entry.file_name().to_string_lossy()));
            }
        }
        if found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The size a JPEG declares in its SOF marker.
pub fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if (0xC0..=0xC3).contains(&marker) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u32;
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u32;
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// The `vidgate` binary with a clean environment for config, and a journal
/// of its own (a fresh data dir), so runs never reuse each other's work
/// unless a test names one journal for several.
pub fn vidgate() -> Command {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidgate"));
    cmd.env_remove("VIDGATE_CONFIG").current_dir(clip_dir());
    cmd.env("XDG_DATA_HOME", clip_dir().join(format!("data-{n}")));
    for (k, _) in std::env::vars() {
        if k.starts_with("VIDGATE__") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// vidgate's cache: `$XDG_CACHE_HOME/vidgate`, else `~/.cache/vidgate`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"))
        .join("vidgate")
}

/// Where fixtures/fetch.sh puts what it fetches (`VIDGATE_FIXTURES` moves it).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("VIDGATE_FIXTURES").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("fixtures"))
}

/// A test's missing prerequisite (a clip, a model, a server, a tool) fails
/// the test, so a green run means every test ran. `VIDGATE_ALLOW_SKIP=1` lets
/// such a test skip with a note instead, on a machine that cannot have it.
pub fn require<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("VIDGATE_ALLOW_SKIP").is_some_and(|v| v == "1"),
        "{what} is missing; set VIDGATE_ALLOW_SKIP=1 to skip the tests that need it"
    );
    eprintln!("skipping: {what} is missing (VIDGATE_ALLOW_SKIP=1)");
    None
}

/// The real Gemma 3 270M GGUF (`fixtures/fetch.sh --model gemma3-270m`).
pub fn gemma() -> Option<PathBuf> {
    let path = fixtures_dir().join("gemma-3-270m-q4_k_m.gguf");
    if path.is_file() {
        Some(path)
    } else {
        require(&format!("{} (run fixtures/fetch.sh --model gemma3-270m)", path.display()))
    }
}

/// The real clips fetched by fixtures/fetch.sh; a missing one is [`require`]d.
pub fn real_clip(name: &str) -> Option<PathBuf> {
    let path = fixtures_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    require(&format!("{} (run fixtures/fetch.sh)", path.display()))
}

/// Let the run leases in the journal at `path` run out now, as they do a
/// minute after their process died.
pub fn expire_run_leases(path: &Path) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute("UPDATE runs SET lease_until_unix_s = 0", []).unwrap();
}

/// A new, empty PostgreSQL database on the test server
/// (`scripts/with-postgres.sh` starts one and sets `VIDGATE_TEST_PG_URL`): its URL.
pub fn pg_database() -> Option<String> {
    let Some(server) = std::env::var("VIDGATE_TEST_PG_URL").ok().filter(|u| !u.is_empty()) else {
        return require("a PostgreSQL server (VIDGATE_TEST_PG_URL; run the tests under scripts/with-postgres.sh)");
    };
    let name = format!("it_{}", hex::encode(rand::random::<[u8; 8]>()));
    let made = vidgate::journal::create_database(&server, &name);
    Some(made.unwrap_or_else(|e| panic!("cannot make a test database: {e}")))
}
