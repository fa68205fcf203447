//! A bad-media corpus, made at test time: a container that claims 10 h, frames
//! declared 30,000 × 30,000, more frames than the metadata says, several video
//! streams, rotation, variable frame rate, 10-bit HDR, audio only, and odd
//! paths. Each file is handled (right frames, right times) or refused with an
//! error that names it, within a bounded time, and no ffmpeg outlives the case.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use vidgate::config::{MediaLimits, SamplingConfig};
use vidgate::media::{self, Extraction, Frame, FrameData, FrameFormat, MediaError, MediaInfo};
use vidgate::schema::{SamplingMode, SamplingPlan, TimeRange};

use crate::util::*;

// ---------------------------------------------------------------- helpers

/// Run one case's vidgate work (not the making of its files): it must finish
/// within `limit_s` and leave no ffmpeg or ffprobe reading any of `files`.
fn bounded<T>(case: &str, limit_s: u64, files: &[&Path], work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = work();
    let took = start.elapsed();
    eprintln!("bad_media: {case} took {took:.2?}");
    assert!(took < Duration::from_secs(limit_s), "{case} took {took:?}, over {limit_s} s");
    for file in files {
        assert_eq!(lingering(file), Vec::<String>::new(), "{case}: ffmpeg left running on {}", file.display());
    }
    out
}

/// ffmpeg or ffprobe processes, anywhere, whose command line names `file`.
/// Other tests of this binary run ffmpeg at the same time, so the check is by
/// file rather than by parent; orphans of the CLI are found as well.
fn lingering(file: &Path) -> Vec<String> {
    let absolute = std::path::absolute(file).unwrap();
    let needle = absolute.as_os_str().as_bytes();
    for _ in 0..100 {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
            if !matches!(comm.trim(), "ffmpeg" | "ffprobe") {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            // A zombie has an empty command line: it has ended, only not been reaped.
            if cmdline.windows(needle.len()).any(|w| w == needle) {
                found.push(format!("{} {}", comm.trim(), entry.file_name().to_string_lossy()));
            }
        }
        if found.is_empty() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    vec![format!("ffmpeg still running on {}", file.display())]
}

fn probe_with(path: &Path, limits: &MediaLimits) -> Result<MediaInfo, MediaError> {
    block_on(media::probe(path, limits))
}

fn refused(path: &Path, limits: &MediaLimits) -> String {
    match probe_with(path, limits) {
        Ok(info) => panic!("{} was accepted: {info:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

struct Sampled {
    frames: Vec<Frame>,
    warnings: Vec<String>,
}

fn sample_with(
    info: &MediaInfo,
    plan: &SamplingPlan,
    sampling: &SamplingConfig,
    format: FrameFormat,
) -> Result<Sampled, MediaError> {
    blocking(|| {
        let ex = Extraction::new(info, plan, sampling, format, Duration::from_secs(60))?;
        let mut stream = media::extract(ex)?;
        let mut frames = Vec::new();
        while let Some(frame) = stream.blocking_next() {
            frames.push(frame?);
        }
        Ok(Sampled { frames, warnings: stream.warnings() })
    })
}

fn sample(info: &MediaInfo, plan: &SamplingPlan) -> Sampled {
    sample_with(info, plan, &SamplingConfig::default(), FrameFormat::Rgb)
        .unwrap_or_else(|e| panic!("{}: {e}", info.path.display()))
}

/// Seek for every frame, however close together.
fn seeking() -> SamplingConfig {
    SamplingConfig { seek_min_interval_s: 0.05, ..Default::default() }
}

fn with_range(mut plan: SamplingPlan, start_ms: u64, end_ms: u64) -> SamplingPlan {
    plan.range = TimeRange::new(start_ms, end_ms);
    plan
}

fn with_max_frames(mut plan: SamplingPlan, max_frames: u32) -> SamplingPlan {
    plan.max_frames = max_frames;
    plan
}

/// A copy of `source` with bytes changed by `patch`, written once under `name`.
fn patched(name: &str, source: &Path, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    written_with(name, || {
        let mut bytes = std::fs::read(source).unwrap();
        patch(&mut bytes);
        bytes
    })
}

/// Bytes written once under `name`.
fn written(name: &str, bytes: &[u8]) -> PathBuf {
    written_with(name, || bytes.to_vec())
}

fn written_with(name: &str, bytes: impl FnOnce() -> Vec<u8>) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = clip_dir().join(name);
    if !path.exists() {
        let tmp = clip_dir().join(format!("tmp-{name}"));
        std::fs::write(&tmp, bytes()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

fn find(bytes: &[u8], what: &[u8]) -> usize {
    bytes.windows(what.len()).position(|w| w == what).unwrap_or_else(|| panic!("{what:?} not in the file"))
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Set the Matroska segment duration (EBML 0x4489, an 8-byte float of ms).
fn set_mkv_duration(bytes: &mut [u8], real_ms: f64, claimed_ms: f64) {
    let at = find(bytes, &[0x44, 0x89, 0x88]) + 3;
    assert_eq!(f64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()), real_ms, "the duration element");
    bytes[at..at + 8].copy_from_slice(&claimed_ms.to_be_bytes());
}

/// Set the movie, track and media durations of a one-track MP4 (version 0 boxes).
fn set_mp4_duration(bytes: &mut [u8], claimed_s: u32) {
    for (bx, timescale_at, duration_at) in [(&b"mvhd"[..], Some(16), 20), (b"mdhd", Some(16), 20), (b"tkhd", None, 24)]
    {
        let at = find(bytes, bx);
        assert_eq!(bytes[at + 4], 0, "{bx:?} is version 0");
        // tkhd counts in the movie's timescale.
        let timescale = match timescale_at {
            Some(t) => be32(bytes, at + t),
            None => be32(bytes, find(bytes, b"mvhd") + 16),
        };
        bytes[at + duration_at..at + duration_at + 4].copy_from_slice(&(claimed_s * timescale).to_be_bytes());
    }
}

/// RGB at (x, y) of an RGB frame.
fn rgb_at(frame: &Frame, x: u32, y: u32) -> [u8; 3] {
    let FrameData::Rgb(rgb) = &frame.data else { panic!("not RGB") };
    let i = ((y * frame.width + x) * 3) as usize;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

fn is_red([r, g, b]: [u8; 3]) -> bool {
    r > 150 && g < 90 && b < 90
}

fn is_dark([r, g, b]: [u8; 3]) -> bool {
    r < 60 && g < 60 && b < 60
}

fn mean_brightness(frame: &Frame) -> f64 {
    let bytes = frame.data.bytes();
    bytes.iter().map(|b| *b as f64).sum::<f64>() / bytes.len() as f64
}

fn assert_one_line_error(out: &Output, expected: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("vidgate: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for e in expected {
        assert!(err.contains(e), "{e:?} not in {err}");
    }
    err
}

/// A small H.264 clip of testsrc: `seconds` long, `size`, 10 fps, a keyframe each second.
fn testsrc(name: &str, seconds: u32, size: &str) -> PathBuf {
    x264_clip(
        name,
        &format!("testsrc=duration={seconds}:size={size}:rate=10"),
        &["-g", "10", "-keyint_min", "10", "-sc_threshold", "0", "-pix_fmt", "yuv420p"],
    )
}

// ---------------------------------------------------------------- 1. a 10 h claim

/// 2 s of H.264 in Matroska whose segment says 10 h.
fn claims_ten_hours_mkv() -> PathBuf {
    patched("bm-claims-10h.mkv", &testsrc("bm-2s.mkv", 2, "160x120"), |b| set_mkv_duration(b, 2000.0, 36_000_000.0))
}

/// 2 s of H.264 in MP4 whose movie, track and media headers say 10 h.
fn claims_ten_hours_mp4() -> PathBuf {
    patched("bm-claims-10h.mp4", &testsrc("bm-2s.mp4", 2, "160x120"), |b| set_mp4_duration(b, 36_000))
}

/// A container that claims 10 h and holds 2 s. The limits are checked against
/// what the file declares (nothing is decoded to check it), so the default
/// 4 h limit refuses it. Under a limit that admits it, sampling finds the real
/// 2 s and stops at their end instead of seeking through 10 h of nothing.
#[test]
fn a_container_claiming_ten_hours_holding_two_seconds() {
    let (mkv, mp4) = (claims_ten_hours_mkv(), claims_ten_hours_mp4());
    let roomy = MediaLimits { max_duration_s: 11.0 * 3600.0, ..limits() };
    for path in [&mkv, &mp4] {
        let name = path.file_name().unwrap().to_str().unwrap();
        bounded(name, 30, &[path], || {
            let msg = refused(path, &limits());
            assert!(msg.contains(name) && msg.contains("36000.0 s") && msg.contains("limits.max_duration_s"), "{msg}");

            let info = probe_with(path, &roomy).unwrap();
            assert_eq!(info.duration_ms, 36_000_000, "the claim, as declared");

            // 1 fps over 10 h is thinned to one frame per 36 s, by seeking: the
            // first seek past the real end ends the sampling.
            let got = sample(&info, &plan(SamplingMode::Fps { fps: 1.0 }, 160));
            assert_eq!(pts(&got.frames), [0], "{:?}", got.warnings);
            assert!(got.warnings.iter().any(|w| w.contains("no frame at 36000 ms")), "{:?}", got.warnings);

            // Evenly spread over the claim: every time is past the real end.
            let got = sample(&info, &plan(SamplingMode::Count { count: 5 }, 160));
            assert!(got.frames.is_empty(), "{:?}", got.frames);
            assert_eq!(got.warnings.len(), 1, "one warning, not one per time: {:?}", got.warnings);

            // A range within the real 2 s: every frame, at its time.
            let got = sample(&info, &with_range(plan(SamplingMode::Fps { fps: 5.0 }, 160), 0, 2000));
            assert_eq!(pts(&got.frames), (0..10).map(|k| k * 200).collect::<Vec<_>>());
            assert!(got.frames.iter().all(|f| (f.width, f.height) == (160, 120)));

            // Decoding "to the end" ends at the real end.
            let got = sample(&info, &plan(SamplingMode::Keyframes, 160));
            assert_eq!(pts(&got.frames), [0, 1000]);
            let got = sample(&info, &plan(SamplingMode::Scenes { threshold: 0.3, min_gap_ms: 500 }, 160));
            assert!(!got.frames.is_empty() && got.frames.iter().all(|f| f.pts_ms < 2000), "{:?}", got.frames);
        });
    }

    // The command line: refused by default, a few frames under a larger limit.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    bounded("ten hours, CLI", 30, &[&mkv], || {
        let out = vidgate().args(["frames", "--out"]).arg(&out_dir).arg(&mkv).output().unwrap();
        assert_one_line_error(&out, &["bm-claims-10h.mkv", "limits.max_duration_s"]);
        assert!(!out_dir.exists(), "nothing is written for a refused file");
        let out = vidgate()
            .env("VIDGATE__LIMITS__MAX_DURATION_S", "40000")
            .args(["frames", "--fps", "1", "--json", "--out"])
            .arg(&out_dir)
            .arg(&mkv)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("warning: no frame at"), "{stderr}");
    });
}

// ---------------------------------------------------------------- 2. 30,000 x 30,000

/// Y4M with a header and one (short) frame.
fn y4m(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = format!("YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\nFRAME\n").into_bytes();
    bytes.extend(std::iter::repeat_n(0x80u8, 4096));
    bytes
}

/// Rewrite the frame size of an AVI's main header and its first stream format.
fn set_avi_size(bytes: &mut [u8], (w, h): (u32, u32), (nw, nh): (u32, u32)) {
    let avih = find(bytes, b"avih") + 8 + 32;
    let strf = find(bytes, b"strf") + 8 + 4;
    for at in [avih, strf] {
        assert_eq!((le32(bytes, at), le32(bytes, at + 4)), (w, h));
        bytes[at..at + 4].copy_from_slice(&nw.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&nh.to_le_bytes());
    }
}

/// A 64x48 AVI in `codec` whose headers say 30,000 × 30,000.
fn avi_30000(codec: &str) -> PathBuf {
    let small = make_clip(
        &format!("bm-64x48-{codec}.avi"),
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=0.3:size=64x48:rate=10",
            "-c:v",
            codec,
            "-pix_fmt",
            "yuv420p",
            "-strict",
            "-1",
        ],
    );
    patched(&format!("bm-30000-{codec}.avi"), &small, |b| set_avi_size(b, (64, 48), (30_000, 30_000)))
}

/// 30,000 × 30,000 is past what ffmpeg itself accepts (it refuses any picture
/// over about 2^28 pixels), so ffprobe cannot report it as a size: it fails,
/// or reports a stream without one. Either way vidgate names the size and
/// `limits.max_pixels`, and decodes nothing. A size ffprobe does report is
/// refused the usual way; a container size the codec contradicts is the
/// codec's.
#[test]
fn frames_declared_thirty_thousand_pixels_square() {
    let raw_avi = avi_30000("rawvideo");
    let ffv1_avi = avi_30000("ffv1");
    let y4m_huge = written("bm-30000.y4m", &y4m(30_000, 30_000));
    for path in [&raw_avi, &ffv1_avi, &y4m_huge] {
        let name = path.file_name().unwrap().to_str().unwrap();
        bounded(name, 20, &[path], || {
            let msg = refused(path, &limits());
            assert!(msg.contains(name) && msg.contains("30000x30000") && msg.contains("limits.max_pixels"), "{msg}");
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        });
    }

    // 16,000 × 16,000 is within ffmpeg's bound: ffprobe reports it, the limit refuses it.
    let y4m_16k = written("bm-16000.y4m", &y4m(16_000, 16_000));
    bounded("16000x16000 y4m", 20, &[&y4m_16k], || {
        let msg = refused(&y4m_16k, &limits());
        assert!(msg.contains("bm-16000.y4m: 16000x16000 = 256000000 pixels") && msg.contains("limits.max_pixels"));
    });

    // The container says 30,000 × 30,000; the H.264 inside says 256 × 256: the frames are 256 × 256.
    let mkv = patched("bm-30000-mkv-256-h264.mkv", &testsrc("bm-256.mkv", 1, "256x256"), |b| {
        for id in [0xB0u8, 0xBA] {
            let at = find(b, &[id, 0x82, 0x01, 0x00]) + 2;
            b[at..at + 2].copy_from_slice(&30_000u16.to_be_bytes());
        }
    });
    bounded("30000x30000 container over 256x256 H.264", 20, &[&mkv], || {
        let info = probe(&mkv);
        assert_eq!((info.video.width, info.video.height), (256, 256));
        let got = sample(&info, &plan(SamplingMode::Fps { fps: 2.0 }, 512));
        assert_eq!(pts(&got.frames), [0, 500]);
        assert!(got.frames.iter().all(|f| (f.width, f.height) == (256, 256)));
    });

    // The command line: one line, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    bounded("30000x30000, CLI", 20, &[&raw_avi], || {
        let out = vidgate().args(["frames", "--out"]).arg(&out_dir).arg(&raw_avi).output().unwrap();
        assert_one_line_error(&out, &["bm-30000-rawvideo.avi", "30000x30000", "limits.max_pixels"]);
        assert!(!out_dir.exists());
    });
}

// ---------------------------------------------------------------- 3. more frames than declared

/// 3 s of 10 fps MPEG-4 in AVI whose headers count 5 frames (so 0.5 s).
fn understated_avi() -> PathBuf {
    let avi = make_clip(
        "bm-3s-mpeg4.avi",
        &["-f", "lavfi", "-i", "testsrc=duration=3:size=160x120:rate=10", "-c:v", "mpeg4", "-g", "10"],
    );
    patched("bm-3s-says-5-frames.avi", &avi, |b| {
        for (chunk, offset) in [(&b"avih"[..], 8 + 16), (b"strh", 8 + 32)] {
            let at = find(b, chunk) + offset;
            assert_eq!(le32(b, at), 30, "{chunk:?} frame count");
            b[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
        }
    })
}

/// 3 s of H.264 in Matroska whose segment says 0.5 s.
fn understated_mkv() -> PathBuf {
    patched("bm-3s-says-half-a-second.mkv", &testsrc("bm-3s.mkv", 3, "160x120"), |b| set_mkv_duration(b, 3000.0, 500.0))
}

/// A file whose metadata says 0.5 s and 5 frames but holds 3 s and 30. The
/// declared duration bounds the work (so a file cannot slip past
/// `max_duration_s` by understating it): frames come from the declared 0.5 s,
/// each at its true time, never more than `max_frames`.
#[test]
fn more_frames_than_the_metadata_declares() {
    let (short_avi, short_mkv) = (understated_avi(), understated_mkv());
    for path in [&short_avi, &short_mkv] {
        let name = path.file_name().unwrap().to_str().unwrap();
        bounded(name, 30, &[path], || {
            let info = probe(path);
            assert_eq!(info.duration_ms, 500, "as declared");
            if info.container == "avi" {
                assert_eq!(info.video.frame_count, Some(5));
            }
            // Every frame of the declared span, at its true time.
            let got = sample(&info, &plan(SamplingMode::Fps { fps: 30.0 }, 160));
            assert_eq!(pts(&got.frames), [0, 100, 200, 300, 400]);
            let got =
                sample_with(&info, &plan(SamplingMode::Fps { fps: 10.0 }, 160), &seeking(), FrameFormat::Rgb).unwrap();
            assert_eq!(pts(&got.frames), [0, 100, 200, 300, 400]);
            // max_frames bounds the count, whatever the decoder finds.
            let got = sample(&info, &with_max_frames(plan(SamplingMode::Fps { fps: 30.0 }, 160), 3));
            assert_eq!(pts(&got.frames), [0, 200, 400]);
            let got = sample(&info, &with_max_frames(plan(SamplingMode::Keyframes, 160), 1));
            assert_eq!(pts(&got.frames), [0]);
            // Past the declared end is outside the video.
            let err = sample_with(
                &info,
                &with_range(plan(SamplingMode::Fps { fps: 1.0 }, 160), 1000, 3000),
                &SamplingConfig::default(),
                FrameFormat::Rgb,
            )
            .err()
            .expect("refused");
            assert!(err.to_string().contains("outside the video's 500 ms"), "{err}");
        });
    }
}

// ---------------------------------------------------------------- 4. several video streams

/// Two video streams: testsrc 64x48 and plain red 128x96, `default` on the one named.
fn two_video_streams(name: &str, default_stream: u32) -> PathBuf {
    let other = 1 - default_stream;
    make_clip(
        name,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=1:size=64x48:rate=10",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=128x96:rate=10:duration=1",
            "-map",
            "0",
            "-map",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            &format!("-disposition:v:{default_stream}"),
            "default",
            &format!("-disposition:v:{other}"),
            "0",
        ],
    )
}

/// The stream read is the one marked default (the one a player shows), else
/// the first; its frames are the ones returned. Too many streams are refused.
#[test]
fn several_video_streams() {
    let cases = [
        (two_video_streams("bm-two-video-first-default.mkv", 0), 0, (64, 48)),
        (two_video_streams("bm-two-video-first-default.mp4", 0), 0, (64, 48)),
        (two_video_streams("bm-two-video-second-default.mkv", 1), 1, (128, 96)),
    ];
    for (path, stream, size) in &cases {
        let name = path.file_name().unwrap().to_str().unwrap();
        bounded(name, 20, &[path], || {
            let info = probe(path);
            assert_eq!(info.streams.iter().filter(|s| s.kind == "video").count(), 2);
            assert_eq!(info.video.index, *stream, "{info:?}");
            assert_eq!((info.video.width, info.video.height), *size);
            let got = sample(&info, &plan(SamplingMode::Fps { fps: 2.0 }, 512));
            assert_eq!(pts(&got.frames), [0, 500]);
            for f in &got.frames {
                assert_eq!((f.width, f.height), *size);
                let all_red =
                    (0..f.height).step_by(4).all(|y| (0..f.width).step_by(4).all(|x| is_red(rgb_at(f, x, y))));
                assert_eq!(all_red, *stream == 1, "frames from stream {stream}");
            }
        });
    }

    let (two, _, _) = &cases[0];
    bounded("max_streams", 20, &[two], || {
        let msg = refused(two, &MediaLimits { max_streams: 1, ..limits() });
        assert!(msg.contains("bm-two-video-first-default.mkv: 2 streams") && msg.contains("limits.max_streams"));
    });
    // 17 video streams against the default limit of 16.
    let base = testsrc("bm-1s-64.mp4", 1, "64x48");
    let mut args = vec!["-i".to_string(), base.display().to_string()];
    for _ in 0..17 {
        args.extend(["-map".into(), "0:v".into()]);
    }
    args.extend(["-c".into(), "copy".into()]);
    let many = make_clip("bm-17-video-streams.mkv", &args.iter().map(String::as_str).collect::<Vec<_>>());
    bounded("17 streams", 20, &[&many], || {
        let msg = refused(&many, &limits());
        assert!(msg.contains("bm-17-video-streams.mkv: 17 streams is over the limit of 16 (limits.max_streams)"));
    });
}

// ---------------------------------------------------------------- 5. rotation

/// Write an MP4 track's display matrix (ISO/IEC 14496-12 `tkhd`) for a
/// clockwise turn of `degrees`: 90 is the matrix of a phone held upright,
/// {0, 1, -1, 0}. Written by hand, so the test follows the standard rather
/// than whichever way a given ffmpeg writes its `rotate` tag.
fn set_mp4_rotation(bytes: &mut [u8], degrees: u32) {
    const ONE: i32 = 0x1_0000;
    let (a, b, c, d) = match degrees {
        0 => (ONE, 0, 0, ONE),
        90 => (0, ONE, -ONE, 0),
        180 => (-ONE, 0, 0, -ONE),
        270 => (0, -ONE, ONE, 0),
        _ => unreachable!(),
    };
    // tkhd v0: type, version and flags, 2 times, track id, reserved, duration, 8 reserved, 4 shorts.
    let at = find(bytes, b"tkhd") + 4 + 4 + 4 * 5 + 8 + 8;
    assert_eq!(be32(bytes, at), ONE as u32, "an identity matrix to start from");
    let matrix = [a, b, 0, c, d, 0, 0, 0, 0x4000_0000];
    for (k, v) in matrix.iter().enumerate() {
        bytes[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// 64x32 black with a red square in the top-left corner, turned by a display matrix.
fn rotated(rotation: u32) -> PathBuf {
    let plain = x264_clip(
        "bm-red-corner.mp4",
        "color=c=black:size=64x32:rate=10:duration=1,drawbox=x=0:y=0:w=16:h=16:color=red:t=fill",
        &["-pix_fmt", "yuv420p"],
    );
    patched(&format!("bm-rotate-{rotation}.mp4"), &plain, |b| set_mp4_rotation(b, rotation))
}

/// Frames come out as displayed: sizes swapped for 90 and 270, and the
/// picture turned the right way (the red square of the top-left corner lands
/// in the corner the rotation takes it to), streamed and seeked alike.
#[test]
fn rotation_gives_frames_in_display_orientation() {
    // (rotation, displayed size, corner of the red square: left?, top?)
    for (rotation, size, (left, top)) in [
        (0u32, (64, 32), (true, true)),
        (90, (32, 64), (false, true)),
        (180, (64, 32), (false, false)),
        (270, (32, 64), (true, false)),
    ] {
        let path = rotated(rotation);
        bounded(&format!("rotation {rotation}"), 20, &[&path], || {
            let info = probe(&path);
            assert_eq!(info.video.rotation, rotation);
            assert_eq!((info.video.width, info.video.height), (64, 32), "coded size");
            assert_eq!(info.video.display_size(), size);
            let streamed = sample(&info, &plan(SamplingMode::Fps { fps: 2.0 }, 512)).frames;
            let seeked =
                sample_with(&info, &plan(SamplingMode::Fps { fps: 2.0 }, 512), &seeking(), FrameFormat::Rgb).unwrap();
            for frames in [&streamed, &seeked.frames] {
                assert_eq!(pts(frames), [0, 500]);
                for f in frames {
                    assert_eq!((f.width, f.height), size);
                    let (w, h) = size;
                    let corners = [(4, 4), (w - 5, 4), (4, h - 5), (w - 5, h - 5)];
                    let expected = (if left { 4 } else { w - 5 }, if top { 4 } else { h - 5 });
                    for (x, y) in corners {
                        let px = rgb_at(f, x, y);
                        if (x, y) == expected {
                            assert!(is_red(px), "rotation {rotation}: ({x}, {y}) is {px:?}, not red");
                        } else {
                            assert!(is_dark(px), "rotation {rotation}: ({x}, {y}) is {px:?}, not black");
                        }
                    }
                }
            }
        });
    }
    // The command line reports it and writes upright JPEGs.
    let rotated = clip_dir().join("bm-rotate-270.mp4");
    let dir = tempfile::tempdir().unwrap();
    bounded("rotation, CLI", 20, &[&rotated], || {
        let out = vidgate().arg("probe").arg(&rotated).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("rotation   270° (shown as 32x64)"), "{text}");
        let out = vidgate().args(["frames", "--count", "1", "--out"]).arg(dir.path()).arg(&rotated).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let jpeg = std::fs::read(dir.path().join("frame-00000.jpg")).unwrap();
        assert_eq!(jpeg_size(&jpeg), Some((32, 64)));
    });
}

// ---------------------------------------------------------------- 6. variable frame rate

/// Time of frame `n` of the VFR clip, in ms: 10 fps for a second, then 30 fps.
fn vfr_time_ms(n: u64) -> f64 {
    if n < 10 {
        n as f64 * 100.0
    } else {
        1000.0 + (n - 10) as f64 * 1000.0 / 30.0
    }
}

/// 10 fps for a second, then 30 fps for a second.
fn vfr_clip() -> PathBuf {
    make_clip(
        "bm-vfr-10-then-30.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=30",
            "-vf",
            "setpts='if(lt(N,10),N*3,30+N-10)'",
            "-frames:v",
            "40",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

/// 10 fps for a second, then 30 fps for a second: every sampling mode gives
/// each frame its own presentation time, increasing: the first at or after
/// each requested time when streaming, the one on screen at it when seeking.
#[test]
fn variable_frame_rate_keeps_true_times() {
    let path = vfr_clip();
    let close = |got: &[u64], want: &[f64]| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (*g as f64 - w).abs() <= 1.0)
    };
    bounded("variable frame rate", 30, &[&path], || {
        let info = probe(&path);
        assert!((1966..=2100).contains(&info.duration_ms), "{}", info.duration_ms);

        // Every frame: 40, at their own times.
        let all = pts(&sample(&info, &plan(SamplingMode::Fps { fps: 30.0 }, 160)).frames);
        let want: Vec<f64> = (0..40).map(vfr_time_ms).collect();
        assert!(close(&all, &want), "got {all:?}");

        // 4 fps, streamed: the first frame of each quarter second.
        let quarters = || (0..8u64).map(|k| k as f64 * 250.0);
        let want: Vec<f64> = quarters().map(|q| (0..40).map(vfr_time_ms).find(|t| *t >= q - 0.5).unwrap()).collect();
        let streamed = pts(&sample(&info, &plan(SamplingMode::Fps { fps: 4.0 }, 160)).frames);
        // Seeked: the frame on screen at each quarter second.
        let on_screen: Vec<f64> =
            quarters().map(|q| (0..40).map(vfr_time_ms).rfind(|t| *t <= q + 0.5).unwrap()).collect();
        let seeked = pts(&sample_with(&info, &plan(SamplingMode::Fps { fps: 4.0 }, 160), &seeking(), FrameFormat::Rgb)
            .unwrap()
            .frames);
        for (got, want) in [(&streamed, &want), (&seeked, &on_screen)] {
            assert!(close(got, want), "got {got:?}, want {want:?}");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        }
    });
}

// ---------------------------------------------------------------- 7. 10-bit HDR

/// 1 s of testsrc2 in 10-bit 4:2:0, tagged BT.2020 with the PQ transfer.
fn hdr(name: &str, codec: &str) -> PathBuf {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=duration=1:size=160x120:rate=10",
        "-c:v",
        codec,
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p10le",
        "-color_primaries",
        "bt2020",
        "-color_trc",
        "smpte2084",
        "-colorspace",
        "bt2020nc",
    ];
    if codec == "libx265" {
        args.extend(["-x265-params", "log-level=error", "-tag:v", "hvc1"]);
    }
    make_clip(name, &args)
}

/// 10-bit BT.2020 / PQ, in HEVC and in H.264 High 10: frames come out as
/// 8-bit RGB and JPEG of the right size, at the right times, with a picture.
#[test]
fn ten_bit_hdr_extracts_as_eight_bit() {
    for (path, codec) in [(hdr("bm-hdr10-hevc.mp4", "libx265"), "hevc"), (hdr("bm-hdr10-h264.mkv", "libx264"), "h264")]
    {
        let name = path.file_name().unwrap().to_str().unwrap();
        bounded(name, 30, &[&path], || {
            let info = probe(&path);
            assert_eq!(info.video.codec, codec);
            assert_eq!(info.video.pix_fmt.as_deref(), Some("yuv420p10le"));
            let got = sample(&info, &plan(SamplingMode::Fps { fps: 2.0 }, 160));
            assert_eq!(pts(&got.frames), [0, 500]);
            for f in &got.frames {
                assert_eq!((f.width, f.height), (160, 120));
                assert_eq!(f.data.bytes().len(), 160 * 120 * 3);
                let mean = mean_brightness(f);
                assert!(mean > 40.0, "{name}: mean {mean}, nearly black");
                let distinct: std::collections::HashSet<[u8; 3]> = (0..120)
                    .step_by(8)
                    .flat_map(|y| (0..160).step_by(8).map(move |x| (x, y)))
                    .map(|(x, y)| rgb_at(f, x, y))
                    .collect();
                assert!(distinct.len() > 20, "{name}: {} colours", distinct.len());
            }
            let jpegs = sample_with(
                &info,
                &plan(SamplingMode::Count { count: 2 }, 128),
                &SamplingConfig::default(),
                FrameFormat::Jpeg { quality: 80 },
            )
            .unwrap();
            assert_eq!(jpegs.frames.len(), 2);
            for f in &jpegs.frames {
                assert_eq!(jpeg_size(f.data.bytes()), Some((128, 96)));
            }
        });
    }
}

// ---------------------------------------------------------------- 8. audio only

/// Audio in other shapes than the foundation's .m4a: WAV, and MP3 with a
/// cover picture (a "video" stream that is one still): refused, naming the
/// file and saying what it holds.
#[test]
fn audio_only_is_refused_clearly() {
    let wav = make_clip("bm-tone.wav", &["-f", "lavfi", "-i", "sine=duration=1"]);
    let mp3 = make_clip(
        "bm-tone-cover.mp3",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=64x64:duration=0.1",
            "-map",
            "0",
            "-map",
            "1",
            "-frames:v",
            "1",
            "-c:a",
            "libmp3lame",
            "-c:v",
            "mjpeg",
            "-disposition:v",
            "attached_pic",
            "-id3v2_version",
            "3",
        ],
    );
    bounded("audio only", 20, &[&wav, &mp3], || {
        let msg = refused(&wav, &limits());
        assert!(msg.starts_with(&format!("{}: has no video stream (streams: audio)", wav.display())), "{msg}");
        let msg = refused(&mp3, &limits());
        assert!(msg.contains("bm-tone-cover.mp3: has no video stream"), "{msg}");
        assert!(msg.contains("attached picture"), "the still is not called a video: {msg}");
        let out = vidgate().arg("probe").arg(&mp3).output().unwrap();
        assert_one_line_error(&out, &["bm-tone-cover.mp3", "no video stream"]);
    });
}

// ---------------------------------------------------------------- 9. paths

/// The odd names, each a copy of one small clip.
fn odd_names() -> Vec<OsString> {
    vec![
        OsString::from("new\nline.mp4"),
        OsString::from("it's \"q\".mp4"),
        OsString::from("-rf.mp4"),
        OsString::from("  spaces  and ünïcödé 日本.mp4"),
        OsString::from_vec(b"not-utf8-\xff\xfe.mp4".to_vec()),
        OsString::from("frame-00000.jpg"),
    ]
}

fn listing(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    names
}

/// Odd names, through the library: each probes and samples.
#[test]
fn odd_names_and_symlinks_through_the_library() {
    let source = testsrc("bm-paths.mp4", 2, "160x120");
    let dir = tempfile::Builder::new().prefix("vidgate-bm-paths-").tempdir().unwrap();
    let mut paths = Vec::new();
    for name in odd_names() {
        let path = dir.path().join(&name);
        std::fs::copy(&source, &path).unwrap();
        paths.push(path);
    }
    let link = dir.path().join("link.mp4");
    std::os::unix::fs::symlink(&source, &link).unwrap();
    let link_to_link = dir.path().join("link-to-link.mp4");
    std::os::unix::fs::symlink("link.mp4", &link_to_link).unwrap();
    paths.extend([link.clone(), link_to_link]);
    let all: Vec<&Path> = paths.iter().map(PathBuf::as_path).chain([source.as_path()]).collect();
    bounded("odd names and symlinks, library", 60, &all, || {
        for path in &paths {
            let info = probe(path);
            assert_eq!(info.path, *path, "the path as given, not resolved");
            assert_eq!(info.duration_ms, 2000);
            let got = sample(&info, &plan(SamplingMode::Count { count: 2 }, 64));
            assert_eq!(pts(&got.frames), [0, 1000], "{path:?}");
            // The JSON of a probe names the file, lossily where it is not UTF-8.
            let json = serde_json::to_value(&info).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(json["path"].as_str().unwrap(), path.to_string_lossy());
        }

        let dangling = dir.path().join("dangling.mp4");
        std::os::unix::fs::symlink("nowhere.mp4", &dangling).unwrap();
        let msg = refused(&dangling, &limits());
        assert_eq!(msg, format!("{}: no such file", dangling.display()));
        let to_dir = dir.path().join("link-to-dir.mp4");
        std::os::unix::fs::symlink(dir.path(), &to_dir).unwrap();
        let msg = refused(&to_dir, &limits());
        assert_eq!(msg, format!("{}: not a regular file", to_dir.display()));
        let looped = dir.path().join("loop.mp4");
        std::os::unix::fs::symlink("loop.mp4", &looped).unwrap();
        let msg = refused(&looped, &limits());
        assert!(msg.starts_with(&format!("{}: cannot read it", looped.display())), "{msg}");
    });
}

/// Odd names through the command line, run from the directory that holds
/// them with the name as given: `probe`, `probe --json` and `frames` work;
/// frames are written as `frame-NNNNN.jpg` into `--out` and nowhere else, and
/// nothing is named after the input. A leading dash needs `--` (or `./`);
/// without it the command stops at the argument and touches nothing.
#[test]
fn odd_names_and_symlinks_through_the_command_line() {
    let source = testsrc("bm-paths-cli.mp4", 2, "160x120");
    let dir = tempfile::Builder::new().prefix("vidgate-bm-cli-").tempdir().unwrap();
    let mut names = odd_names();
    for name in &names {
        std::fs::copy(&source, dir.path().join(name)).unwrap();
    }
    std::os::unix::fs::symlink(&source, dir.path().join("link.mp4")).unwrap();
    names.push("link.mp4".into());
    let before = listing(dir.path());
    let cli = |args: &[&OsStr]| vidgate().current_dir(dir.path()).args(args).output().unwrap();
    let files: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).chain([source.clone()]).collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();

    bounded("odd names and symlinks, CLI", 90, &files, || {
        for (i, name) in names.iter().enumerate() {
            let name = name.as_os_str();
            let out = cli(&["probe".as_ref(), "--".as_ref(), name]);
            assert!(out.status.success(), "{name:?}: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("duration   00:02.000"), "{name:?}: {text}");

            let out = cli(&["probe".as_ref(), "--json".as_ref(), "--".as_ref(), name]);
            assert!(out.status.success(), "{name:?}: {}", String::from_utf8_lossy(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["path"].as_str().unwrap(), Path::new(name).to_string_lossy(), "{name:?}");

            let out_dir = format!("out-{i}");
            let out = cli(&[
                "frames".as_ref(),
                "--count".as_ref(),
                "2".as_ref(),
                "--width".as_ref(),
                "64".as_ref(),
                "--json".as_ref(),
                "--out".as_ref(),
                out_dir.as_ref(),
                "--".as_ref(),
                name,
            ]);
            assert!(out.status.success(), "{name:?}: {}", String::from_utf8_lossy(&out.stderr));
            let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            let written: Vec<&str> = list.iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert_eq!(written, [format!("{out_dir}/frame-00000.jpg"), format!("{out_dir}/frame-00001.jpg")]);
            assert_eq!(listing(&dir.path().join(&out_dir)), ["frame-00000.jpg", "frame-00001.jpg"]);
            for f in &written {
                assert_eq!(jpeg_size(&std::fs::read(dir.path().join(f)).unwrap()), Some((64, 48)));
            }
        }

        // `./-rf.mp4` needs no `--`.
        let out = cli(&["probe".as_ref(), "./-rf.mp4".as_ref()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Without either, `-rf.mp4` is flags: a usage error that names it, and nothing done.
        for args in [&["probe", "-rf.mp4"][..], &["frames", "--out", "dash-out", "-rf.mp4"]] {
            let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            let out = cli(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains("unexpected argument '-r'") && err.contains("-- -r"), "{err}");
            assert!(out.stdout.is_empty());
        }
        // Dangling links and directories fail in one line.
        std::os::unix::fs::symlink("nowhere.mp4", dir.path().join("dangling.mp4")).unwrap();
        let out = cli(&["frames".as_ref(), "--out".as_ref(), "dangling-out".as_ref(), "dangling.mp4".as_ref()]);
        assert_one_line_error(&out, &["dangling.mp4: no such file"]);
        let out = cli(&["probe".as_ref(), "new\nline.mp4/".as_ref()]);
        assert_one_line_error(&out, &["new line.mp4/"]);
    });

    // Nothing appeared but the --out directories and the one dangling link.
    let after: Vec<OsString> = listing(dir.path())
        .into_iter()
        .filter(|n| !n.to_string_lossy().starts_with("out-") && n != "dangling.mp4")
        .collect();
    assert_eq!(after, before);
    assert!(!dir.path().join("dash-out").exists() && !dir.path().join("dangling-out").exists());
}

// ---------------------------------------------------------------- 11. extreme rates and shapes

/// 2 s of testsrc at a rate ffmpeg writes as `1k fps` or `10k fps` in its log.
fn high_rate(fps: u32) -> PathBuf {
    x264_clip(
        &format!("bm-{fps}fps.mp4"),
        &format!("testsrc=size=64x48:rate={fps}"),
        &["-frames:v", &(2 * fps).to_string(), "-pix_fmt", "yuv420p"],
    )
}

/// A declared 1000 or 10000 fps: every mode returns, with exact times.
#[test]
fn a_thousand_and_ten_thousand_fps_give_frames_at_their_times() {
    for fps in [1000u32, 10_000] {
        let path = high_rate(fps);
        bounded(&format!("{fps} fps"), 60, &[&path], || {
            let info = probe(&path);
            assert_eq!(info.duration_ms, 2000);
            let got = sample(&info, &plan(SamplingMode::Fps { fps: 10.0 }, 64));
            assert_eq!(pts(&got.frames), (0..20).map(|k| k * 100).collect::<Vec<_>>());
            assert!(got.frames.iter().all(|f| (f.width, f.height, f.data.bytes().len()) == (64, 48, 64 * 48 * 3)));
            let got =
                sample_with(&info, &plan(SamplingMode::Count { count: 4 }, 32), &seeking(), FrameFormat::Rgb).unwrap();
            assert_eq!(pts(&got.frames), [250, 750, 1250, 1750]);
        });
    }
    // The command line, on the clip as first reported: two frames at 1000 fps.
    let path =
        x264_clip("bm-1000fps-2.mp4", "testsrc=size=320x240:rate=1000", &["-frames:v", "2", "-pix_fmt", "yuv420p"]);
    let dir = tempfile::tempdir().unwrap();
    bounded("1000 fps, CLI", 30, &[&path], || {
        let out = vidgate()
            .env("VIDGATE__LIMITS__EXTRACT_TIMEOUT_S", "20")
            .args(["frames", "--json", "--out"])
            .arg(dir.path())
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["pts_ms"], 0);
    });
}

/// 4x100000: frames that tall can never be a JPEG (a side is at most 65535
/// pixels). Refused when the extraction is planned, naming the file and the
/// limit; nothing is decoded or written.
#[test]
fn frames_taller_than_a_jpeg_can_be_are_refused_before_decoding() {
    let path = make_clip(
        "bm-4x100000.mkv",
        &["-f", "lavfi", "-i", "color=c=red:size=4x100000:rate=5:duration=0.4", "-c:v", "ffv1"],
    );
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    bounded("4x100000", 30, &[&path], || {
        let info = probe(&path);
        assert_eq!((info.video.width, info.video.height), (4, 100_000));
        let p = plan(SamplingMode::Fps { fps: 5.0 }, 768);
        for format in [FrameFormat::Rgb, FrameFormat::Jpeg { quality: 80 }] {
            let Err(err) = Extraction::new(&info, &p, &SamplingConfig::default(), format, Duration::from_secs(60))
            else {
                panic!("refused")
            };
            let err = err.to_string();
            assert_eq!(
                err,
                format!(
                    "{}: frames of 4x100000 would be 4x100000; a frame side is at most 65535 pixels (JPEG's limit)",
                    path.display()
                )
            );
        }
        let out = vidgate().args(["frames", "--out"]).arg(&out_dir).arg(&path).output().unwrap();
        assert_one_line_error(&out, &["bm-4x100000.mkv", "4x100000", "65535"]);
        assert!(std::fs::read_dir(&out_dir).map_or(true, |d| d.count() == 0), "nothing written");
    });
}

/// `frames --out` creates each file new: a link named like a frame is not
/// followed, and an input named like a frame in the output directory is not
/// written over; either stops the command with the path named.
#[test]
fn frames_out_never_writes_through_a_link_or_over_a_file() {
    let source = testsrc("bm-out-clash.mp4", 2, "160x120");
    let dir = tempfile::Builder::new().prefix("vidgate-bm-out-").tempdir().unwrap();
    let frames_into = |out: &Path, input: &Path| {
        vidgate().args(["frames", "--count", "2", "--out"]).arg(out).arg(input).output().unwrap()
    };
    bounded("frames --out clashes", 30, &[&source], || {
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "keep me").unwrap();
        let linked = dir.path().join("linked");
        std::fs::create_dir(&linked).unwrap();
        let link = linked.join("frame-00000.jpg");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        let out = frames_into(&linked, &source);
        assert_one_line_error(&out, &[&format!("{} already exists", link.display()), "--out"]);
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        assert_eq!(listing(&linked), ["frame-00000.jpg"]);

        let own = dir.path().join("own");
        std::fs::create_dir(&own).unwrap();
        let input = own.join("frame-00001.jpg");
        std::fs::copy(&source, &input).unwrap();
        let out = frames_into(&own, &input);
        assert_one_line_error(&out, &[&format!("{} already exists", input.display())]);
        assert!(std::fs::read(&input).unwrap() == std::fs::read(&source).unwrap(), "the input is intact");
    });
}

// ---------------------------------------------------------------- memory

/// Peak resident memory, in KiB, of a command and of the processes it waited
/// for (its ffprobe and ffmpeg), from GNU time; `None` where that is missing.
fn with_peak_rss(cmd: &std::process::Command) -> Option<(Output, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return require("GNU time at /usr/bin/time (scripts/install-deps.sh installs it)");
    }
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut wrapped = std::process::Command::new(time);
    wrapped.args(["-f", "%M", "-o"]).arg(report.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let out = wrapped.output().unwrap();
    // GNU time puts "Command exited with non-zero status N" first when it does.
    let report = std::fs::read_to_string(report.path()).unwrap();
    let kib = report.lines().last().and_then(|l| l.trim().parse().ok());
    Some((out, kib.unwrap_or_else(|| panic!("GNU time reported no peak: {report:?}"))))
}

/// The corpus through `vidgate frames` at 5 fps and full size, with the
/// duration limit raised past the 10 h claim: each file is written out or
/// refused in one line, and no process of a run (vidgate, its ffprobe, its
/// ffmpeg) reaches 256 MiB.
#[test]
fn the_corpus_is_read_in_bounded_memory() {
    let files = [
        claims_ten_hours_mkv(),
        claims_ten_hours_mp4(),
        avi_30000("rawvideo"),
        avi_30000("ffv1"),
        written("bm-30000.y4m", &y4m(30_000, 30_000)),
        written("bm-16000.y4m", &y4m(16_000, 16_000)),
        understated_avi(),
        understated_mkv(),
        two_video_streams("bm-two-video-first-default.mkv", 0),
        rotated(90),
        vfr_clip(),
        hdr("bm-hdr10-hevc.mp4", "libx265"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_str().unwrap();
        let mut cmd = vidgate();
        cmd.env("VIDGATE__LIMITS__MAX_DURATION_S", "40000")
            .args(["frames", "--fps", "5", "--width", "4096", "--out"])
            .arg(dir.path().join(format!("out-{i}")))
            .arg(file);
        let Some((out, kib)) = bounded(&format!("{name}, CLI at 5 fps"), 30, &[file], || with_peak_rss(&cmd)) else {
            return;
        };
        eprintln!(
            "bad_media: {name}: peak {} MiB, {}",
            kib / 1024,
            if out.status.success() { "read" } else { "refused" }
        );
        assert!(kib < 256 * 1024, "{name}: {kib} KiB at the peak");
        if !out.status.success() {
            assert_one_line_error(&out, &[name]);
        }
    }
}

/// An MPEG-TS stream whose frame size changes mid-stream (two segments joined
/// byte for byte): ffmpeg rebuilds its filter graph, showinfo counts frames
/// from 0 again, and every frame still gets its own time.
#[test]
fn a_frame_size_that_changes_mid_stream_keeps_every_frames_time() {
    let dir = clip_dir().join("resize-mid-stream");
    std::fs::create_dir_all(&dir).unwrap();
    let part = |name: &str, size: &str, offset: &str| {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc=duration=1:size={size}:rate=10"))
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10", "-output_ts_offset", offset, "-f", "mpegts"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(path).unwrap()
    };
    let path = dir.join("joined.ts");
    std::fs::write(&path, [part("a.ts", "160x120", "0"), part("b.ts", "320x240", "1")].concat()).unwrap();
    let info = probe(&path);
    let got = bounded("resize mid-stream", 30, &[&path], || sample(&info, &plan(SamplingMode::Fps { fps: 10.0 }, 160)));
    let times: Vec<u64> = got.frames.iter().map(|f| f.pts_ms).collect();
    assert_eq!(times, (0..20).map(|k| k * 100).collect::<Vec<_>>());
}
