//! The speech track: audio out of real ffmpeg, speech found where it is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vidgate::media::{self, samples_ms};
use vidgate::schema::TimeRange;
use vidgate::speech::{Segmenter, VadSettings};

use crate::util::{block_on, make_clip, probe};

/// `seconds` of small testsrc, H.264, with the sound the ffmpeg arguments
/// `audio` add (inputs, filters, maps) as its AAC track; none when empty.
pub fn clip_with_sound(name: &str, seconds: u32, audio: &[&str]) -> PathBuf {
    let video = format!("testsrc=duration={seconds}:size=160x120:rate=10");
    let length = seconds.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &video];
    args.extend_from_slice(audio);
    args.extend(["-t", &length, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    if !audio.is_empty() {
        args.extend(["-c:a", "aac"]);
    }
    make_clip(name, &args)
}

/// 6 s of small testsrc with the lavfi `audio` source as its sound (none when absent).
pub fn clip_with_audio(name: &str, audio: Option<&str>) -> PathBuf {
    match audio {
        Some(source) => clip_with_sound(name, 6, &["-f", "lavfi", "-i", source]),
        None => clip_with_sound(name, 6, &[]),
    }
}

/// A mono track that is silent but for a 220 Hz tone from 2.0 s to 3.5 s.
pub fn tone_clip() -> PathBuf {
    clip_with_audio("speech-tone.mp4", Some("aevalsrc='if(between(t,2,3.5),0.5*sin(2*PI*220*t),0)':s=44100:d=6"))
}

/// A silent audio track.
pub fn silent_clip() -> PathBuf {
    clip_with_audio("speech-silent.mp4", Some("anullsrc=r=44100:cl=stereo"))
}

/// No audio stream at all.
pub fn mute_clip() -> PathBuf {
    clip_with_audio("speech-mute.mp4", None)
}

/// The speech segments of `path` (within `range`), as video time in ms, and
/// the samples read; `None` when no ffmpeg was started.
fn speech(path: &Path, range: Option<TimeRange>) -> Option<(Vec<(u64, u64)>, u64)> {
    let info = probe(path);
    block_on(async {
        let mut pcm = media::pcm(&info, range, Duration::from_secs(60)).unwrap()?;
        let mut vad = Segmenter::new(VadSettings::default());
        let mut found = Vec::new();
        let mut read = 0u64;
        while let Some(chunk) = pcm.next_chunk().await {
            let chunk = chunk.unwrap();
            read += chunk.len() as u64;
            found.extend(vad.push(&chunk));
        }
        found.extend(vad.finish());
        let at = |s: u64| pcm.start_ms() + samples_ms(s);
        Some((found.iter().map(|s| (at(s.start), at(s.end()))).collect(), read))
    })
}

#[test]
fn a_tone_under_a_clip_is_found_at_its_time() {
    let (found, read) = speech(&tone_clip(), None).expect("the clip has audio");
    // The whole track, streamed: 6 s at 16 kHz (AAC may pad a little).
    assert!((95_000..=100_000).contains(&read), "{read} samples");
    assert_eq!(found.len(), 1, "{found:?}");
    let (start, end) = found[0];
    assert!(start.abs_diff(1_800) <= 100 && end.abs_diff(3_700) <= 100, "{found:?}");
}

#[test]
fn a_range_keeps_video_time() {
    let (found, read) = speech(&tone_clip(), TimeRange::new(1_000, 5_000)).expect("the clip has audio");
    assert!((63_000..=65_000).contains(&read), "{read} samples: only the range is decoded");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.abs_diff(1_800) <= 100 && found[0].1.abs_diff(3_700) <= 100, "{found:?}");
}

#[test]
fn a_silent_track_makes_no_segment_and_no_track_starts_no_ffmpeg() {
    let (found, read) = speech(&silent_clip(), None).expect("the clip has an audio stream");
    assert!(read > 90_000, "{read}");
    assert!(found.is_empty(), "{found:?}");
    assert!(speech(&mute_clip(), None).is_none(), "no audio stream: nothing to decode");
}

mod fake;
mod story;
#[cfg(feature = "whisper-engine")]
mod whisper_local;
