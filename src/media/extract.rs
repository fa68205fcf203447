//! Frames out of ffmpeg, through a bounded channel, on a thread of their own.
//!
//! The ffmpeg child is owned by a [`Control`] that both the reader thread and
//! the [`FrameStream`] can reach, so dropping the stream or passing the timeout
//! kills it at once, even while the reader waits on a slow decode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use ffmpeg_sidecar::child::FfmpegChild;
use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio::sync::mpsc;

use super::{
    ffmpeg_input_args, input_url, Extraction, Frame, FrameData, FrameFormat, MediaError, SceneDetector, Strategy,
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
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
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
    child: Mutex<Option<FfmpegChild>>,
    cancelled: AtomicBool,
    timed_out: AtomicBool,
}

impl Control {
    /// Hold `child`; if the stream was already cancelled, kill it instead.
    fn install(&self, mut child: FfmpegChild) -> bool {
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

    fn kill(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
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
    let (w, h) = (u16::try_from(width).map_err(|e| e.to_string())?, u16::try_from(height).map_err(|e| e.to_string())?);
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
    let scale = format!("scale=w='trunc(min(iw,{})/2)*2':h=-2", ex.width);
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
                limit: Some(ex.max_frames),
            };
            run.execute(&filters.join(","), control, |pts, w, h, rgb| sink.send(pts, w, h, rgb))?;
        }
        Strategy::Seek { times_ms } => {
            for (k, &t) in times_ms.iter().enumerate() {
                if control.is_cancelled() {
                    break;
                }
                let run = Run { ex, start_ms: t, span_ms: None, keyframes_only: false, limit: Some(1) };
                let mut got = false;
                let mut open = true;
                run.execute(&scale, control, |pts, w, h, rgb| {
                    got = true;
                    open = sink.send(pts, w, h, rgb);
                    open
                })?;
                if !open {
                    break;
                }
                if !got {
                    // No frame at or after `t`: the later times are past the last
                    // frame too (a header that claims hours more than the file
                    // holds would otherwise cost one ffmpeg run per time).
                    let later = times_ms.len() - k - 1;
                    lock(warnings).push(match later {
                        0 => format!("no frame at {t} ms (past the last frame)"),
                        n => format!("no frame at {t} ms or later (past the last frame); {n} later times skipped"),
                    });
                    break;
                }
            }
        }
        Strategy::Scenes { analysis_interval_ms, settings } => {
            let filters = format!("{},{scale}", bucket_select(*analysis_interval_ms));
            let mut detector = SceneDetector::new(*settings);
            let run = Run {
                ex,
                start_ms: ex.range.start_ms,
                span_ms: Some(ex.range.duration_ms()),
                keyframes_only: false,
                limit: None,
            };
            let mut open = true;
            run.execute(&filters, control, |pts, w, h, rgb| {
                if let Some(kept) = detector.push(pts, w, h, rgb) {
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
    limit: Option<u32>,
}

impl Run<'_> {
    /// Run ffmpeg, calling `on_frame(pts_ms, width, height, rgb)` for each frame
    /// until it returns `false`.
    fn execute(
        &self,
        filters: &str,
        control: &Control,
        mut on_frame: impl FnMut(u64, u32, u32, Vec<u8>) -> bool,
    ) -> Result<(), MediaError> {
        let path = &self.ex.path;
        let mut cmd = FfmpegCommand::new();
        cmd.hide_banner().args(["-nostats", "-nostdin"]);
        if self.keyframes_only {
            cmd.args(["-skip_frame", "nokey"]);
        }
        if self.start_ms > 0 {
            cmd.args(["-ss", &ms_arg(self.start_ms)]);
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

        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MediaError::ToolMissing { program: "ffmpeg" },
            _ => MediaError::io(path, e),
        })?;
        let events = child.iter();
        if !control.install(child) {
            return Ok(());
        }
        let mut errors: Vec<String> = Vec::new();
        let mut timing = ShowInfo::default();
        let mut pending: std::collections::VecDeque<(u32, u32, Vec<u8>)> = Default::default();
        let mut frames_seen = 0u64;
        let mut open = true;
        if let Ok(events) = events {
            for event in events {
                match event {
                    FfmpegEvent::Log(level, line) => {
                        timing.parse(&line);
                        if matches!(level, LogLevel::Error | LogLevel::Fatal) {
                            errors.push(line);
                        }
                    }
                    FfmpegEvent::Error(line) => errors.push(line),
                    FfmpegEvent::OutputFrame(f) => pending.push_back((f.width, f.height, f.data)),
                    _ => {}
                }
                while open && !pending.is_empty() && timing.known(frames_seen) {
                    let (w, h, rgb) = pending.pop_front().expect("checked non-empty");
                    let pts = timing.pts_ms(frames_seen).unwrap_or_default();
                    frames_seen += 1;
                    open = on_frame(self.start_ms + pts, w, h, rgb);
                }
                if !open {
                    break;
                }
            }
        }
        if !open {
            control.kill();
        }
        let status = control.finish();
        if open && !control.is_cancelled() {
            if let Some(status) = status.filter(|s| !s.success()) {
                let reason =
                    errors.iter().rev().find(|l| !l.trim().is_empty()).cloned().unwrap_or_else(|| status.to_string());
                return Err(MediaError::ToolFailed {
                    path: path.clone(),
                    program: "ffmpeg",
                    reason: reason.trim().to_string(),
                });
            }
            if !pending.is_empty() {
                return Err(MediaError::ToolFailed {
                    path: path.clone(),
                    program: "ffmpeg",
                    reason: format!("{} frames came without a timestamp", pending.len()),
                });
            }
        }
        Ok(())
    }
}

/// Frame times from the `showinfo` filter's log: integer pts in its time base.
#[derive(Default)]
struct ShowInfo {
    time_base: Option<(u64, u64)>,
    pts: std::collections::HashMap<u64, i64>,
}

impl ShowInfo {
    fn parse(&mut self, line: &str) {
        if !line.contains("Parsed_showinfo") {
            return;
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
            return;
        }
        let field = |name: &str| -> Option<i64> {
            let after = line.split(name).nth(1)?;
            after.split_whitespace().next()?.parse().ok()
        };
        if let (Some(n), Some(pts)) = (field(" n:"), field(" pts:")) {
            if n >= 0 {
                self.pts.insert(n as u64, pts);
            }
        }
    }

    fn known(&self, n: u64) -> bool {
        self.time_base.is_some() && self.pts.contains_key(&n)
    }

    fn pts_ms(&mut self, n: u64) -> Option<u64> {
        let (num, den) = self.time_base?;
        let pts = self.pts.remove(&n)?.max(0) as u128;
        Some(((pts * num as u128 * 1000 + den as u128 / 2) / den as u128) as u64)
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
        s.parse("[Parsed_showinfo_2 @ 0x55] [info] config in time_base: 1/12800, frame_rate: 25/1");
        s.parse("[Parsed_showinfo_2 @ 0x55] [info] n:   0 pts:      0 pts_time:0       pos: -1 fmt:rgb24");
        s.parse("frame= 1 fps=0.0 [Parsed_showinfo_2 @ 0x55] [info] n:   1 pts:  46080000 pts_time:3600 pos: 1");
        s.parse("[Parsed_showinfo_2 @ 0x55] [info] color_range:pc color_space:gbr");
        assert!(s.known(0) && s.known(1) && !s.known(2));
        assert_eq!(s.pts_ms(0), Some(0));
        assert_eq!(s.pts_ms(1), Some(3_600_000));
    }

    #[test]
    fn seek_arguments_are_exact() {
        assert_eq!(ms_arg(0), "0.000");
        assert_eq!(ms_arg(61_005), "61.005");
    }
}
