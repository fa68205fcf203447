//! Frames out of ffmpeg, through a bounded channel, on a thread of their own.
//!
//! The ffmpeg child is owned by a [`Control`] that both the reader thread and
//! the [`FrameStream`] can reach, so dropping the stream or passing the timeout
//! kills it at once, even while the reader waits on a slow decode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use tokio::sync::mpsc;

use super::{
    ffmpeg_input_args, input_url, Extraction, Frame, FrameData, FrameFormat, MediaError, SceneDetector, Strategy,
    JPEG_MAX_SIDE,
};

/// Frames buffered between the reader thread and the consumer.
const CHANNEL_FRAMES: usize = 4;

/// A stream of frames from one extraction. Dropping it stops ffmpeg.
pub struct FrameStream {
    rx: Option<mpsc::Receiver<Result<Frame, MediaError>>>,
    control: Arc<Control>,
    reader: Option<JoinHandle<()>>,
    expected: Option<u32>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl FrameStream {
    /// The next frame, or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Frame, MediaError>> {
        self.rx.as_mut()?.recv().await
    }

    /// The next frame, for callers outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<Result<Frame, MediaError>> {
        self.rx.as_mut()?.blocking_recv()
    }

    /// How many frames to expect, when the strategy knows in advance.
    pub fn expected_frames(&self) -> Option<u32> {
        self.expected
    }

    /// What the extraction changed or skipped, so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings_handle().list()
    }

    /// The extraction's warnings, to read once the stream has been consumed
    /// (some are only known at its end).
    pub fn warnings_handle(&self) -> ExtractionWarnings {
        ExtractionWarnings(self.warnings.clone())
    }
}

/// What an extraction changed or skipped; outlives its [`FrameStream`].
#[derive(Clone)]
pub struct ExtractionWarnings(Arc<Mutex<Vec<String>>>);

impl ExtractionWarnings {
    pub fn list(&self) -> Vec<String> {
        lock(&self.0).clone()
    }
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        self.rx.take();
        self.control.kill();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Start extracting. Frames arrive in presentation order.
///
/// # Errors
/// Only when the reader thread cannot start; ffmpeg's own failures arrive as
/// an `Err` item in the stream.
pub fn extract(extraction: Extraction) -> Result<FrameStream, MediaError> {
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    let control = Arc::new(Control::default());
    let warnings = Arc::new(Mutex::new(extraction.warnings.clone()));
    let expected = extraction.expected_frames();

    let (done_tx, done_rx) = std_mpsc::channel::<()>();
    let watchdog_control = control.clone();
    let timeout = extraction.timeout;
    std::thread::Builder::new()
        .name("vidgate-ffmpeg-watchdog".into())
        .spawn(move || {
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                watchdog_control.timed_out.store(true, Ordering::SeqCst);
                watchdog_control.kill();
            }
        })
        .map_err(|e| MediaError::io(&extraction.path, e))?;

    let reader_control = control.clone();
    let reader_warnings = warnings.clone();
    let path = extraction.path.clone();
    let reader = std::thread::Builder::new()
        .name("vidgate-ffmpeg-reader".into())
        .spawn(move || {
            let mut sink = Sink { tx, next_index: 0, format: extraction.format };
            let result = read_all(&extraction, &reader_control, &mut sink, &reader_warnings);
            let result = if reader_control.timed_out.load(Ordering::SeqCst) {
                Err(MediaError::Timeout { path: extraction.path.clone(), what: "frame extraction", after: timeout })
            } else {
                result
            };
            if let Err(e) = result {
                let _ = sink.tx.blocking_send(Err(e));
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| MediaError::io(&path, e))?;

    Ok(FrameStream { rx: Some(rx), control, reader: Some(reader), expected, warnings })
}

/// The ffmpeg child now running, reachable from every thread.
#[derive(Default)]
struct Control {
    child: Mutex<Option<Child>>,
    cancelled: AtomicBool,
    timed_out: AtomicBool,
}

impl Control {
    /// Hold `child`; if the stream was already cancelled, kill it instead.
    fn install(&self, mut child: Child) -> bool {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if self.cancelled.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        *slot = Some(child);
        true
    }

    /// Reap the child; its exit status.
    fn finish(&self) -> Option<std::process::ExitStatus> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        child.and_then(|mut c| c.wait().ok())
    }

    /// Cancel the extraction: kill the child now running and start no other.
    fn kill(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// Kill the child now running, when its output is no longer wanted.
    fn stop(&self) {
        let mut slot = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(child) = slot.as_mut() {
            let _ = child.kill();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Where finished frames go.
struct Sink {
    tx: mpsc::Sender<Result<Frame, MediaError>>,
    next_index: u32,
    format: FrameFormat,
}

impl Sink {
    /// Send one frame; `false` when the consumer has gone.
    fn send(&mut self, pts_ms: u64, width: u32, height: u32, rgb: Vec<u8>) -> bool {
        let data = match self.format {
            FrameFormat::Rgb => FrameData::Rgb(rgb),
            FrameFormat::Jpeg { quality } => match encode_jpeg(&rgb, width, height, quality) {
                Ok(jpeg) => FrameData::Jpeg(jpeg.into()),
                Err(e) => {
                    let _ = self.tx.blocking_send(Err(MediaError::BadPlan(format!("JPEG encoding failed: {e}"))));
                    return false;
                }
            },
        };
        let frame = Frame { index: self.next_index, pts_ms, width, height, data };
        self.next_index += 1;
        self.tx.blocking_send(Ok(frame)).is_ok()
    }
}

pub fn encode_jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    let side = |v: u32| {
        u16::try_from(v)
            .map_err(|_| format!("a {width}x{height} frame is over JPEG's limit of {JPEG_MAX_SIDE} pixels a side"))
    };
    let (w, h) = (side(width)?, side(height)?);
    let mut out = Vec::with_capacity(rgb.len() / 8);
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn read_all(
    ex: &Extraction,
    control: &Control,
    sink: &mut Sink,
    warnings: &Mutex<Vec<String>>,
) -> Result<(), MediaError> {
    // An exact size: every frame is the same number of bytes, even when the
    // source changes size mid-stream.
    let scale = format!("scale={}:{}", ex.width, ex.height);
    let (width, height) = (ex.width, ex.height);
    match &ex.strategy {
        Strategy::Stream { interval_ms, keyframes_only } => {
            let mut filters = Vec::new();
            if let Some(i) = interval_ms {
                filters.push(bucket_select(*i));
            }
            filters.push(scale);
            let run = Run {
                ex,
                start_ms: ex.range.start_ms,
                span_ms: Some(ex.range.duration_ms()),
                keyframes_only: *keyframes_only,
                accurate_seek: true,
                limit: Some(ex.max_frames),
            };
            run.execute(&filters.join(","), control, |pts, rgb| sink.send(pts, width, height, rgb))?;
        }
        Strategy::Seek { times_ms } => seek_each(ex, times_ms, &scale, control, sink, warnings)?,
        Strategy::Scenes { analysis_interval_ms, settings } => {
            let filters = format!("{},{scale}", bucket_select(*analysis_interval_ms));
            let mut detector = SceneDetector::new(*settings);
            let run = Run {
                ex,
                start_ms: ex.range.start_ms,
                span_ms: Some(ex.range.duration_ms()),
                keyframes_only: false,
                accurate_seek: true,
                limit: None,
            };
            let mut open = true;
            run.execute(&filters, control, |pts, rgb| {
                if let Some(kept) = detector.push(pts, width, height, rgb) {
                    open = sink.send(kept.pts_ms, kept.width, kept.height, kept.rgb);
                }
                open && !detector.is_full()
            })?;
            if let (true, Some(kept)) = (open, detector.finish()) {
                sink.send(kept.pts_ms, kept.width, kept.height, kept.rgb);
            }
            if detector.is_full() {
                lock(warnings).push(format!(
                    "scene sampling stopped at max_frames {}; later shots have no frame",
                    settings.max_frames
                ));
            }
        }
    }
    Ok(())
}

/// What is on screen at one time.
enum OnScreen {
    /// The last frame at or before the time (or, where the file has none
    /// there, the first after it), and the time it gives way to the next
    /// frame, when that was seen.
    Frame { pts_ms: u64, rgb: Vec<u8>, until_ms: Option<u64> },
    /// The video ended before the time.
    PastEnd,
}

/// The picture on screen at each of `times_ms`, each distinct frame once: on
/// a still or sparse stretch several times fall on one frame, which is sent
/// (and paid for) once.
fn seek_each(
    ex: &Extraction,
    times_ms: &[u64],
    scale: &str,
    control: &Control,
    sink: &mut Sink,
    warnings: &Mutex<Vec<String>>,
) -> Result<(), MediaError> {
    // The frame last sent and when the next frame replaces it.
    let mut shown: Option<(u64, Option<u64>)> = None;
    let mut repeats = 0usize;
    for (k, &t) in times_ms.iter().enumerate() {
        if control.is_cancelled() {
            break;
        }
        if let Some((pts, Some(until))) = shown {
            if (pts..until).contains(&t) {
                repeats += 1;
                continue;
            }
        }
        match on_screen_at(ex, t, scale, control)? {
            None => break,
            Some(OnScreen::PastEnd) => {
                // The later times are past the last frame too (a header that
                // claims hours more than the file holds would otherwise cost
                // one ffmpeg run per time).
                let later = times_ms.len() - k - 1;
                lock(warnings).push(match later {
                    0 => format!("no frame at {t} ms (past the last frame)"),
                    n => format!("no frame at {t} ms or later (past the last frame); {n} later times skipped"),
                });
                break;
            }
            Some(OnScreen::Frame { pts_ms, rgb, until_ms }) => {
                if shown.is_some_and(|(sent, _)| pts_ms <= sent) {
                    repeats += 1;
                } else if !sink.send(pts_ms, ex.width, ex.height, rgb) {
                    break;
                }
                shown = Some((pts_ms, until_ms));
            }
        }
    }
    if repeats > 0 {
        lock(warnings).push(format!(
            "{repeats} of {} sampled times fell on a frame already taken (a still or sparse stretch); \
             each frame was taken once",
            times_ms.len()
        ));
    }
    Ok(())
}

/// Decode from the keyframe at or before `t` up to the first frame after it.
/// `None` when the extraction was cancelled.
fn on_screen_at(ex: &Extraction, t: u64, scale: &str, control: &Control) -> Result<Option<OnScreen>, MediaError> {
    // Not an accurate seek: that would drop the frames before `t`, among them
    // the one on screen at `t`. Frames before `t` come with negative times.
    let run = Run { ex, start_ms: t, span_ms: None, keyframes_only: false, accurate_seek: false, limit: None };
    let mut last: Option<(u64, Vec<u8>)> = None;
    let mut gap_ms: Option<u64> = None;
    let mut after: Option<(u64, Vec<u8>)> = None;
    run.execute(scale, control, |pts, rgb| {
        if pts > t {
            after = Some((pts, rgb));
            return false;
        }
        if let Some((prev, _)) = &last {
            gap_ms = Some(pts.saturating_sub(*prev));
        }
        last = Some((pts, rgb));
        true
    })?;
    if control.is_cancelled() && after.is_none() {
        return Ok(None);
    }
    Ok(Some(match (last, after) {
        (Some((pts_ms, rgb)), Some((next, _))) => OnScreen::Frame { pts_ms, rgb, until_ms: Some(next) },
        // The last frame of the file: on screen for about as long as the one
        // before it was; past that the video has ended.
        (Some((pts_ms, _)), None) if gap_ms.is_some_and(|g| t >= pts_ms + g.max(1)) => OnScreen::PastEnd,
        (Some((pts_ms, rgb)), None) => OnScreen::Frame { pts_ms, rgb, until_ms: None },
        // Nothing at or before `t` (it precedes the first frame, or the
        // seek overshot): the first frame after it.
        (None, Some((pts_ms, rgb))) => OnScreen::Frame { pts_ms, rgb, until_ms: None },
        (None, None) => OnScreen::PastEnd,
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keep the first frame of each `interval_ms` bucket of presentation time.
/// Unlike the `fps` filter it keeps real frames with their real timestamps.
/// A frame on a bucket's first instant belongs to it, though `t` is a float:
/// 0.6 / 0.2 is 2.9999999999999996, so a millionth of a bucket is added
/// before rounding down.
fn bucket_select(interval_ms: u64) -> String {
    let i = interval_ms as f64 / 1000.0;
    let bucket = |t: &str| format!("floor({t}/{i:.6}+0.000001)");
    format!("select='isnan(prev_selected_t)+gt({},{})'", bucket("t"), bucket("prev_selected_t"))
}

/// One ffmpeg process.
struct Run<'a> {
    ex: &'a Extraction,
    start_ms: u64,
    span_ms: Option<u64>,
    keyframes_only: bool,
    /// Drop the frames before `start_ms` (ffmpeg's default), or keep them,
    /// with negative times, from the keyframe the seek lands on.
    accurate_seek: bool,
    limit: Option<u32>,
}

impl Run<'_> {
    /// Run ffmpeg, calling `on_frame(pts_ms, rgb)` for each frame until it
    /// returns `false`. Frames are cut from ffmpeg's raw output by their known
    /// size; their times come from the `showinfo` filter's log, which ffmpeg
    /// writes before the frame itself. Nothing waits on the rest of ffmpeg's
    /// log, whatever it says about the streams.
    fn execute(
        &self,
        filters: &str,
        control: &Control,
        mut on_frame: impl FnMut(u64, Vec<u8>) -> bool,
    ) -> Result<(), MediaError> {
        let path = &self.ex.path;
        let mut cmd = Command::new(ffmpeg_sidecar::paths::ffmpeg_path());
        cmd.args(["-hide_banner", "-nostats", "-nostdin", "-loglevel", "level+info"]);
        if self.keyframes_only {
            cmd.args(["-skip_frame", "nokey"]);
        }
        if self.start_ms > 0 {
            cmd.args(["-ss", &ms_arg(self.start_ms)]);
            if !self.accurate_seek {
                cmd.arg("-noaccurate_seek");
            }
        }
        if let Some(span) = self.span_ms {
            cmd.args(["-t", &ms_arg(span)]);
        }
        cmd.args(ffmpeg_input_args()).arg("-i").arg(input_url(path)?);
        cmd.args(["-map", &format!("0:{}", self.ex.video_stream), "-an", "-sn", "-dn"]);
        cmd.args(["-vf", &format!("{filters},showinfo")]);
        cmd.args(["-fps_mode", "passthrough"]);
        if let Some(limit) = self.limit {
            cmd.args(["-frames:v", &limit.to_string()]);
        }
        cmd.args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());

        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MediaError::ToolMissing { program: "ffmpeg" },
            _ => MediaError::io(path, e),
        })?;
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MediaError::io(path, std::io::Error::other("ffmpeg's output is not piped")));
        };
        if !control.install(child) {
            return Ok(());
        }
        let (times_tx, times_rx) = std_mpsc::channel::<(u64, i64)>();
        let log = std::thread::Builder::new()
            .name("vidgate-ffmpeg-log".into())
            .spawn(move || read_log(stderr, &times_tx))
            .map_err(|e| {
                control.stop();
                control.finish();
                MediaError::io(path, e)
            })?;

        let frame_bytes = self.ex.rgb_frame_bytes();
        let mut n = 0u64;
        let mut open = true;
        let mut broken: Option<String> = None;
        while open {
            let mut rgb = vec![0u8; frame_bytes];
            match read_frame(&mut stdout, &mut rgb) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
            // Its showinfo line was written before the frame, in the same
            // order (showinfo is the last filter; no frame is dropped or
            // repeated after it). Not matched by showinfo's `n`, which starts
            // again when the graph is rebuilt for a new frame size.
            let rel_ms = times_rx.recv().ok().map(|(_, ms)| ms);
            let Some(rel_ms) = rel_ms else {
                broken = Some(format!("frame {n} came without a timestamp"));
                break;
            };
            n += 1;
            open = on_frame(self.start_ms.saturating_add_signed(rel_ms), rgb);
        }
        if !open || broken.is_some() {
            control.stop();
        }
        drop(stdout);
        let status = control.finish();
        let errors = log.join().unwrap_or_default();
        if open && !control.is_cancelled() {
            if let Some(status) = status.filter(|s| !s.success()) {
                let reason = errors.last().cloned().unwrap_or_else(|| status.to_string());
                return Err(MediaError::ToolFailed { path: path.clone(), program: "ffmpeg", reason });
            }
            if let Some(reason) = broken {
                return Err(MediaError::ToolFailed { path: path.clone(), program: "ffmpeg", reason });
            }
        }
        Ok(())
    }
}

/// Fill `buf` with one frame: `false` at the end of the output, an error
/// when it ends inside a frame.
fn read_frame(out: &mut impl Read, buf: &mut [u8]) -> Result<bool, String> {
    let mut filled = 0;
    while filled < buf.len() {
        match out.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading its output: {e}")),
        }
    }
    match filled {
        0 => Ok(false),
        k if k == buf.len() => Ok(true),
        k => Err(format!("its output ended inside a frame ({k} of {} bytes)", buf.len())),
    }
}

/// Read ffmpeg's log to its end: each frame's time goes to `times` as it is
/// read; the error lines are returned.
fn read_log(stderr: impl Read, times: &std_mpsc::Sender<(u64, i64)>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut timing = ShowInfo::default();
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        for part in text.split('\r').map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(frame) = timing.parse(part) {
                // The reader may have stopped; the rest of the log is still read.
                let _ = times.send(frame);
            } else if part.contains("[error]") || part.contains("[fatal]") {
                errors.push(part.to_string());
            }
        }
    }
    errors
}

/// Frame times from the `showinfo` filter's log: integer pts in its time base.
#[derive(Default)]
struct ShowInfo {
    time_base: Option<(u64, u64)>,
}

impl ShowInfo {
    /// A frame's number and time in ms (negative before a seek point), from
    /// one line of the log.
    fn parse(&mut self, line: &str) -> Option<(u64, i64)> {
        if !line.contains("Parsed_showinfo") {
            return None;
        }
        if let Some(rest) = line.split("config in time_base:").nth(1) {
            let tb = rest.split(',').next().unwrap_or_default().trim();
            if let Some((n, d)) = tb.split_once('/') {
                if let (Ok(n), Ok(d)) = (n.trim().parse(), d.trim().parse()) {
                    if d > 0 {
                        self.time_base = Some((n, d));
                    }
                }
            }
            return None;
        }
        let field = |name: &str| -> Option<i64> {
            let after = line.split(name).nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        };
        let (n, pts) = (field(" n:")?, field(" pts:")?);
        let (num, den) = self.time_base?;
        // Rounded to the nearest ms, halves away from zero.
        let scaled = i128::from(pts) * i128::from(num) * 1000;
        let den = i128::from(den);
        let ms = (scaled + scaled.signum() * (den / 2)) / den;
        Some((u64::try_from(n).ok()?, i64::try_from(ms).ok()?))
    }
}

fn ms_arg(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn showinfo_lines_give_exact_milliseconds() {
        let mut s = ShowInfo::default();
        let frame = "[Parsed_showinfo_2 @ 0x55] [info] n:   0 pts:      0 pts_time:0       pos: -1 fmt:rgb24";
        assert_eq!(s.parse(frame), None, "no time base yet");
        s.parse("[Parsed_showinfo_2 @ 0x55] [info] config in time_base: 1/12800, frame_rate: 25/1");
        assert_eq!(s.parse(frame), Some((0, 0)));
        let late = "frame= 1 fps=0.0 [Parsed_showinfo_2 @ 0x55] [info] n:   1 pts:  46080000 pts_time:3600 pos: 1";
        assert_eq!(s.parse(late), Some((1, 3_600_000)));
        assert_eq!(s.parse("[Parsed_showinfo_2 @ 0x55] [info] color_range:pc color_space:gbr"), None);
        // Before a seek point, and rounded to the nearest ms either side of 0.
        let before = "[Parsed_showinfo_1 @ 0x5] [info] n:10000 pts:-3276800 pts_time:-256 pos: 48";
        assert_eq!(s.parse(before), Some((10_000, -256_000)));
        assert_eq!(s.parse("[Parsed_showinfo_1 @ 0x5] [info] n: 2 pts:-19 pos: 4"), Some((2, -1)));
        assert_eq!(s.parse("[Parsed_showinfo_1 @ 0x5] [info] n: 3 pts:19 pos: 4"), Some((3, 1)));
    }

    #[test]
    fn a_frame_jpeg_cannot_hold_is_refused_by_its_size() {
        let err = encode_jpeg(&[0; 12], 1, 65_536, 80).unwrap_err();
        assert_eq!(err, "a 1x65536 frame is over JPEG's limit of 65535 pixels a side");
    }

    #[test]
    fn seek_arguments_are_exact() {
        assert_eq!(ms_arg(0), "0.000");
        assert_eq!(ms_arg(61_005), "61.005");
    }
}
