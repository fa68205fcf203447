use std::time::Duration;

use vidgate::config::SamplingConfig;
use vidgate::media::{self, Extraction, FrameData, FrameFormat, Strategy};
use vidgate::schema::{SamplingMode, SamplingPlan};

use crate::util::*;

#[test]
fn one_fps_gives_a_frame_on_each_second() {
    let frames = frames(&testsrc_10s(), &plan(SamplingMode::Fps { fps: 1.0 }, 160));
    assert_eq!(pts(&frames), (0..10).map(|s| s * 1000).collect::<Vec<_>>());
    assert!(frames.iter().enumerate().all(|(i, f)| f.index == i as u32));
    assert!(frames.iter().all(|f| (f.width, f.height) == (160, 120)));
    assert!(frames.iter().all(|f| f.data.bytes().len() == 160 * 120 * 3));
}

#[test]
fn timestamps_are_presentation_times_at_odd_rates() {
    // 29.97 fps: frame k is at k * 1001 / 30 ms; 2 fps keeps the first frame of each half second.
    let path = x264_clip("ntsc.mp4", "testsrc=duration=3:size=160x120:rate=30000/1001", &[]);
    let got = pts(&frames(&path, &plan(SamplingMode::Fps { fps: 2.0 }, 160)));
    let expected: Vec<u64> = (0..6u64)
        .map(|j| {
            let k = (j * 500 * 30).div_ceil(1001);
            (k * 1001 * 1000 + 15_000) / 30_000
        })
        .collect();
    let close = got.len() == expected.len() && got.iter().zip(&expected).all(|(a, b)| a.abs_diff(*b) <= 1);
    assert!(close, "got {got:?}, expected {expected:?}");
}

#[test]
fn a_time_range_is_honoured() {
    let frames = frames(&testsrc_10s(), &plan_range(SamplingMode::Fps { fps: 1.0 }, 2_000, 5_000));
    assert_eq!(pts(&frames), [2000, 3000, 4000]);
}

#[test]
fn keyframes_only_gives_the_keyframes() {
    let frames = frames(&testsrc_10s(), &plan(SamplingMode::Keyframes, 160));
    assert_eq!(pts(&frames), [0, 2000, 4000, 6000, 8000]);
}

#[test]
fn sparse_sampling_seeks_and_keeps_exact_times() {
    // One frame per 10 s is far sparser than the 4 s seek threshold.
    let info = probe(&testsrc_30s_audio());
    let p = plan(SamplingMode::Fps { fps: 0.1 }, 160);
    let ex =
        Extraction::new(&info, &p, &Default::default(), FrameFormat::Rgb, std::time::Duration::from_secs(60)).unwrap();
    assert!(matches!(ex.strategy, media::Strategy::Seek { .. }), "{:?}", ex.strategy);
    assert_eq!(pts(&frames(&testsrc_30s_audio(), &p)), [0, 10_000, 20_000]);

    // Two frames spread evenly over 10 s: the middles of the halves, 2.5 s
    // and 7.5 s, fall between frames (25 fps): the frame on screen then.
    let got = pts(&frames(&testsrc_10s(), &plan(SamplingMode::Count { count: 2 }, 160)));
    assert_eq!(got, [2480, 7480], "the last frames at or before 2.5 s and 7.5 s");
}

#[test]
fn count_spreads_frames_evenly_when_dense() {
    let got = pts(&frames(&testsrc_10s(), &plan(SamplingMode::Count { count: 5 }, 160)));
    assert_eq!(got, [0, 2000, 4000, 6000, 8000]);
}

#[test]
fn max_frames_thins_the_sampling() {
    let mut p = plan(SamplingMode::Fps { fps: 5.0 }, 160);
    p.max_frames = 4;
    let info = probe(&testsrc_10s());
    let ex =
        Extraction::new(&info, &p, &Default::default(), FrameFormat::Rgb, std::time::Duration::from_secs(60)).unwrap();
    assert!(ex.warnings[0].contains("max_frames 4"), "{:?}", ex.warnings);
    let got = pts(&frames(&testsrc_10s(), &p));
    assert_eq!(got, [0, 2520, 5000, 7520]);
}

#[test]
fn jpeg_frames_decode_to_the_requested_size_and_never_upscale() {
    let f = frames_as(&testsrc_10s(), &plan(SamplingMode::Count { count: 3 }, 200), FrameFormat::Jpeg { quality: 80 })
        .unwrap();
    assert_eq!(f.len(), 3);
    for frame in &f {
        let FrameData::Jpeg(bytes) = &frame.data else { panic!("jpeg") };
        assert_eq!(jpeg_size(bytes), Some((200, 150)));
    }
    let f = frames(&testsrc_10s(), &plan(SamplingMode::Count { count: 1 }, 1024));
    assert_eq!((f[0].width, f[0].height), (320, 240));
}

#[test]
fn scene_sampling_finds_cuts_fades_and_crossfades() {
    // 0-3 s bars, hard cut, 3-5 s testsrc, 5-6 s fade through black, 6-8 s
    // mandelbrot, 8-9 s crossfade into a cellular automaton until 11 s.
    let path = make_clip(
        "edited-seeded.mp4",
        &[
            "-f", "lavfi", "-i", "smptebars=size=320x180:rate=25:duration=3",
            "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=3",
            "-f", "lavfi", "-i", "mandelbrot=size=320x180:rate=25,trim=duration=4",
            "-f", "lavfi", "-i", "cellauto=size=320x180:rate=25:rule=110:random_seed=7,trim=duration=3",
            "-filter_complex",
            "[0:v]format=yuv420p,settb=1/25[a];[1:v]format=yuv420p,settb=1/25[b];[2:v]format=yuv420p,settb=1/25[c];[3:v]format=yuv420p,settb=1/25[d];\
             [a][b]concat=n=2:v=1,settb=1/25[ab];[ab][c]xfade=transition=fadeblack:duration=1:offset=5[abc];[abc][d]xfade=transition=fade:duration=1:offset=8[v]",
            "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast",
        ],
    );
    let p = plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 160);
    let got = pts(&frames(&path, &p));
    assert_eq!(got.len(), 4, "one frame per shot: {got:?}");
    assert_eq!(got[0], 0);
    assert!((3_000..=3_500).contains(&got[1]), "after the cut: {got:?}");
    assert!((6_000..=7_000).contains(&got[2]), "after the fade through black: {got:?}");
    // The automaton never holds still: its frame is one from late in the
    // crossfade (mostly the new shot) or from the shot itself.
    assert!((8_500..=11_000).contains(&got[3]), "after the crossfade: {got:?}");
}

#[test]
fn scene_sampling_finds_a_cut_between_similar_dark_shots() {
    // 3 s of dark testsrc2, then the same picture mirrored and upside down:
    // one palette, one brightness; only the layout changes at the cut.
    let path = x264_clip(
        "dark-cut.mp4",
        "testsrc2=size=320x180:rate=25:duration=6,lutrgb=r=val/5:g=val/5:b=val/5,split[a][b];\
         [a]trim=duration=3[a1];[b]trim=start=3,setpts=PTS-STARTPTS,hflip,vflip[b1];\
         [a1][b1]concat=n=2:v=1,format=yuv420p",
        &[],
    );
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 }, 160)));
    assert_eq!(got.len(), 2, "one frame per shot: {got:?}");
    assert!((3_000..=3_200).contains(&got[1]), "just after the cut at 3 s: {got:?}");
}

#[test]
fn a_static_video_gives_one_scene_frame() {
    let path = x264_clip("static.mp4", "smptebars=size=320x180:rate=25:duration=6", &[]);
    let got = pts(&frames(&path, &plan(SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 500 }, 160)));
    assert_eq!(got, [0]);
}

/// 1 fps over the 601 s slideshow is thinned to 64 times 9.391 s apart, by
/// seeking. Each picture is taken once, at its own time, as it is on screen:
/// 0:00 to 9:00 (no time falls in the last picture's one second), with a
/// warning for the 54 times that repeat one.
#[test]
fn a_slideshow_gives_each_picture_once_as_it_is_on_screen() {
    let path = slideshow();
    let info = probe(&path);
    assert_eq!(info.duration_ms, 601_000);
    let p = SamplingPlan { max_frames: 64, ..plan(SamplingMode::Fps { fps: 1.0 }, 160) };
    let ex =
        Extraction::new(&info, &p, &SamplingConfig::default(), FrameFormat::Rgb, Duration::from_secs(120)).unwrap();
    let Strategy::Seek { times_ms } = &ex.strategy else { panic!("{:?}", ex.strategy) };
    assert_eq!((times_ms.len(), times_ms[1], times_ms[63]), (64, 9391, 591_633));
    let (seeked, warnings) = blocking(|| {
        let mut stream = media::extract(ex).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = stream.blocking_next() {
            frames.push(f.unwrap());
        }
        (frames, stream.warnings())
    });
    assert_eq!(pts(&seeked), (0..10).map(|k| k * 60_000).collect::<Vec<_>>());
    assert!(seeked.iter().enumerate().all(|(i, f)| f.index == i as u32));
    assert_eq!(
        warnings[1..],
        ["54 of 64 sampled times fell on a frame already taken (a still or sparse stretch); each frame was taken once"],
        "after the thinning to 64 times: {warnings:?}"
    );

    // The same pictures as decoding every frame gives.
    let decoding = SamplingConfig { seek_min_interval_s: 0.0, ..Default::default() };
    let every = blocking(|| {
        let ex = Extraction::new(&info, &p, &decoding, FrameFormat::Rgb, Duration::from_secs(120)).unwrap();
        assert!(matches!(ex.strategy, Strategy::Stream { .. }), "{:?}", ex.strategy);
        let mut stream = media::extract(ex).unwrap();
        std::iter::from_fn(|| stream.blocking_next()).map(Result::unwrap).collect::<Vec<_>>()
    });
    assert_eq!(pts(&every), (0..11).map(|k| k * 60_000).collect::<Vec<_>>());
    for (s, e) in seeked.iter().zip(&every) {
        assert!(s.data == e.data, "the picture at {} ms", s.pts_ms);
    }
}
