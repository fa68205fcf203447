//! Whisper base in process (`whisper_local`, the `whisper` feature) on real
//! speech: espeak-ng speech of a known text, and LibriVox recordings with
//! their transcripts (PocketSphinx's test data), both muxed under testsrc.
//! Word error rates are printed and held under stated bounds; times are
//! checked against where the words are.
//!
//! Needs `fixtures/fetch.sh --model whisper-base` (the model and the
//! recordings); without them a test fails, unless VIDGATE_ALLOW_SKIP=1.

use std::path::PathBuf;

use vidgate::config::{Config, ModelProfile, Protocol, ProviderProfile, RateLimits};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::schema::{Observation, Task, VideoReport, VideoRequest};

use super::story::espeak_clip;
use super::{clip_with_sound, silent_clip};
use crate::util::*;

const PROFILE: &str = "whisper-local";

/// An American voice at 130 words a minute: espeak-ng's default voice and
/// speed come out too unclear for any recognizer to be judged on.
const VOICE: &[&str] = &["-v", "en-us", "-s", "130"];

const WEATHER: &str = "The weather was cold and grey this morning. \
    A small boat left the harbour before sunrise, and the fishermen sang as they rowed out to sea.";

/// About 45 s of speech at 130 words a minute, with no pause long enough
/// to end a speech segment.
const LONG: &str = "Every morning the baker opens his shop at six. He lights the oven and mixes flour, \
    water and salt in a large wooden bowl. While the dough rises, he sweeps the floor and washes the windows. \
    The first customers arrive at seven, and most of them buy bread for breakfast. \
    Children like the sweet rolls with raisins, and their parents prefer the dark loaves with seeds. \
    At noon the shop becomes quiet, so the baker sits outside and reads the newspaper in the sun. \
    In the afternoon he bakes cakes for the evening, when people come home from work and want something nice.";

/// Where fixtures/fetch.sh puts Whisper base; `None` (skipped) only under
/// VIDGATE_ALLOW_SKIP=1.
fn model_dir() -> Option<PathBuf> {
    let dir = fixtures_dir().join("whisper-base");
    if dir.join("model.bin").is_file() && dir.join("preprocessor_config.json").is_file() {
        Some(dir)
    } else {
        require(&format!("Whisper base in {} (run fixtures/fetch.sh --model whisper-base)", dir.display()))
    }
}

/// A config whose speech chain is Whisper base in process, in English.
fn config(model: PathBuf) -> Config {
    let mut c = Config::builtin().unwrap();
    c.providers.insert(
        PROFILE.into(),
        ProviderProfile {
            protocol: Some(Protocol::WhisperLocal),
            model: Some("whisper-base".into()),
            model_path: Some(model),
            models: [(
                "whisper-base".to_string(),
                ModelProfile { audio_usd_per_minute: Some(0.0), ..Default::default() },
            )]
            .into(),
            limits: RateLimits { max_concurrency: Some(1), ..RateLimits::default() },
            timeout_s: Some(600.0),
            ..ProviderProfile::default()
        },
    );
    c.speech.chain = vec![PROFILE.into()];
    c.speech.language = Some("en".into());
    c.budget.max_usd_per_request = 0.0;
    c
}

fn transcribe(config: Config, clip: PathBuf) -> VideoReport {
    let g = Gateway::with_journal(config, Journal::in_memory().unwrap());
    block_on(g.transcribe(&VideoRequest::new(clip, Task::Describe))).unwrap()
}

/// Lower case words, without punctuation; a few spellings made one.
fn words(text: &str) -> Vec<String> {
    let cleaned: String =
        text.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' }).collect();
    cleaned
        .split_whitespace()
        .map(|w| match w {
            "mr" => "mister".to_string(),
            "mrs" => "missus".to_string(),
            "harbor" => "harbour".to_string(),
            "gray" => "grey".to_string(),
            w => w.to_string(),
        })
        .collect()
}

/// Word error rate of `heard` against `said`, and the words of `said`
/// missing from `heard` (deletions), by word-level edit distance.
fn wer(said: &str, heard: &str) -> (f64, usize) {
    let (r, h) = (words(said), words(heard));
    // (edits, deletions) to turn r[..i] into h[..j].
    let mut prev: Vec<(usize, usize)> = (0..=h.len()).map(|j| (j, 0)).collect();
    for i in 1..=r.len() {
        let mut cur = vec![(i, i); h.len() + 1];
        for j in 1..=h.len() {
            let sub = (prev[j - 1].0 + usize::from(r[i - 1] != h[j - 1]), prev[j - 1].1);
            let del = (prev[j].0 + 1, prev[j].1 + 1);
            let ins = (cur[j - 1].0 + 1, cur[j - 1].1);
            cur[j] = [sub, del, ins].into_iter().min_by_key(|&(e, d)| (e, d)).unwrap_or(sub);
        }
        prev = cur;
    }
    let (edits, deletions) = prev[h.len()];
    (edits as f64 / r.len().max(1) as f64, deletions)
}

fn text_of(speech: &[Observation]) -> String {
    speech.iter().map(|o| o.text.as_str()).collect::<Vec<_>>().join(" ")
}

fn calls(report: &VideoReport) -> usize {
    report.attempts.iter().filter(|a| a.provider == PROFILE).count()
}

#[test]
fn espeak_speech_is_heard_word_for_word_where_it_is_said() {
    let Some(model) = model_dir() else { return };
    let Some((clip, speech_ms)) = espeak_clip("whisper-weather", WEATHER, VOICE, 2_000, 14) else { return };
    let report = transcribe(config(model), clip);
    let heard = text_of(&report.speech);
    let (rate, _) = wer(WEATHER, &heard);
    println!("whisper base, espeak-ng en-us 130 wpm: WER {rate:.3} ({heard:?})");
    assert!(rate <= 0.25, "WER {rate:.3} is over 0.25: heard {heard:?}");
    // Where the words are: from 2 s for the length of the speech (espeak's
    // own leading and trailing silence is a few hundred ms).
    let (first, last) = (report.speech.first().unwrap(), report.speech.last().unwrap());
    assert!(first.range.start_ms.abs_diff(2_000) <= 1_000, "{:?}", report.speech);
    assert!(last.range.end_ms.abs_diff(2_000 + speech_ms) <= 1_000, "{:?} ({speech_ms} ms)", report.speech);
    assert!(report.speech.iter().all(|o| o.provider == PROFILE && o.model.as_deref() == Some("whisper-base")));
    assert_eq!(report.usage.cost_usd, 0.0);
}

/// One LibriVox recording: its WAV, transcript and words with their times
/// (seconds from the recording's start), from fixtures/fetch.sh.
struct Recording {
    wav: PathBuf,
    text: String,
    words: Vec<(f64, f64)>,
    seconds: f64,
}

const RECORDINGS: [&str; 5] = ["0870", "0880", "0890", "0920", "0930"];

fn recordings() -> Option<Vec<Recording>> {
    let mut out = Vec::new();
    for id in RECORDINGS {
        let wav = real_clip(&format!("librivox-{id}.wav"))?;
        let text = std::fs::read_to_string(real_clip(&format!("librivox-{id}.txt"))?).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(real_clip(&format!("librivox-{id}.json"))?).unwrap())
                .unwrap();
        let words = json["w"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| !w["t"].as_str().unwrap_or("").starts_with('<'))
            .map(|w| {
                let b = w["b"].as_f64().unwrap();
                (b, b + w["d"].as_f64().unwrap())
            })
            .collect();
        let reader = hound::WavReader::open(&wav).unwrap();
        let seconds = f64::from(reader.duration()) / f64::from(reader.spec().sample_rate);
        out.push(Recording { wav, text: text.trim().to_string(), words, seconds });
    }
    Some(out)
}

/// The five recordings one after the other, from 2 s into testsrc; and each
/// word's (start, end) in video time, in ms.
fn librivox_clip(recs: &[Recording]) -> (PathBuf, Vec<(u64, u64)>) {
    let mut args: Vec<String> = Vec::new();
    for r in recs {
        args.extend(["-i".into(), r.wav.to_string_lossy().into_owned()]);
    }
    let inputs: String = (1..=recs.len()).map(|i| format!("[{i}:a]")).collect();
    args.extend([
        "-filter_complex".into(),
        format!("{inputs}concat=n={}:v=0:a=1,adelay=2000:all=1,apad[a]", recs.len()),
        "-map".into(),
        "0:v".into(),
        "-map".into(),
        "[a]".into(),
    ]);
    let total: f64 = recs.iter().map(|r| r.seconds).sum();
    let seconds = (total + 4.0).ceil() as u32;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let clip = clip_with_sound("whisper-librivox.mp4", seconds, &args);
    let mut at = 2.0;
    let mut times = Vec::new();
    for r in recs {
        times.extend(r.words.iter().map(|(b, e)| (((at + b) * 1000.0) as u64, ((at + e) * 1000.0) as u64)));
        at += r.seconds;
    }
    (clip, times)
}

#[test]
fn librivox_recordings_are_heard_within_the_bound_and_where_the_words_are() {
    let Some(model) = model_dir() else { return };
    let Some(recs) = recordings() else { return };
    let (clip, times) = librivox_clip(&recs);
    let report = transcribe(config(model), clip);
    let said = recs.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(" ");
    let heard = text_of(&report.speech);
    let (rate, _) = wer(&said, &heard);
    println!("whisper base, LibriVox (pocketsphinx test data, {} words): WER {rate:.3}", words(&said).len());
    println!("said:  {said}\nheard: {heard}");
    assert!(rate <= 0.10, "WER {rate:.3} is over 0.10: heard {heard:?}");
    // Each piece starts within 1 s of a word's start and ends within 1 s of
    // a word's end; the first starts within 1 s of the first word.
    for o in &report.speech {
        let starts = times.iter().any(|w| w.0.abs_diff(o.range.start_ms) <= 1_000);
        let ends = times.iter().any(|w| w.1.abs_diff(o.range.end_ms) <= 1_000);
        assert!(starts && ends, "{o:?} does not start and end where words do");
    }
    assert!(report.speech[0].range.start_ms.abs_diff(times[0].0) <= 1_000, "{:?} {:?}", report.speech[0], times[0]);
}

#[test]
fn speech_longer_than_whisper_s_window_loses_no_words() {
    let Some(model) = model_dir() else { return };
    let Some((clip, speech_ms)) = espeak_clip("whisper-long", LONG, VOICE, 1_000, 56) else { return };
    assert!(speech_ms > 35_000, "{speech_ms} ms: the text must outlast Whisper's 30 s window");
    let mut c = config(model);
    // One segment for the whole speech: Whisper hears it window by window.
    c.speech.vad.max_segment_ms = 120_000;
    c.speech.vad.hangover_ms = 2_000;
    let report = transcribe(c, clip);
    assert_eq!(calls(&report), 1, "one segment, one call: {:?}", report.attempts);
    let heard = text_of(&report.speech);
    let (rate, lost) = wer(LONG, &heard);
    println!("whisper base, {speech_ms} ms in one segment: WER {rate:.3}, {lost} words lost ({heard:?})");
    assert!(lost <= 3, "{lost} words lost: heard {heard:?}");
    assert!(rate <= 0.25, "WER {rate:.3} is over 0.25: heard {heard:?}");
    let end = report.speech.last().unwrap().range.end_ms;
    assert!(end.abs_diff(1_000 + speech_ms) <= 1_500, "{:?} ({speech_ms} ms)", report.speech);
}

#[test]
fn a_silent_video_makes_no_transcription_call() {
    let Some(model) = model_dir() else { return };
    let report = transcribe(config(model), silent_clip());
    assert_eq!(calls(&report), 0, "{:?}", report.attempts);
    assert!(report.speech.is_empty(), "{:?}", report.speech);
}

#[test]
fn vidgate_transcribe_writes_subtitles_with_the_local_profile() {
    let Some(model) = model_dir() else { return };
    let Some((clip, speech_ms)) = espeak_clip("whisper-weather", WEATHER, VOICE, 2_000, 14) else { return };
    let config = clip_dir().join("whisper-local-cli.toml");
    let path = model.to_string_lossy().replace('\\', "\\\\");
    std::fs::write(
        &config,
        format!("[speech]\nchain = [\"{PROFILE}\"]\n\n[providers.{PROFILE}]\nmodel_path = \"{path}\"\n"),
    )
    .unwrap();
    let out = vidgate()
        .arg("--config")
        .arg(&config)
        .args(["transcribe", "--language", "en", "--format", "srt"])
        .arg(&clip)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let srt = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = srt.lines().collect();
    assert_eq!(lines.first(), Some(&"1"), "{srt}");
    let (start, _) = lines[1].split_once(" --> ").unwrap_or_else(|| panic!("no cue times: {srt}"));
    let ms = |t: &str| vidgate::timecode::parse(&t.replace(',', ".")).unwrap();
    assert!(ms(start).abs_diff(2_000) <= 1_000, "{srt}");
    let text: String =
        srt.lines().filter(|l| !l.contains("-->") && l.parse::<u32>().is_err()).collect::<Vec<_>>().join(" ");
    let (rate, _) = wer(WEATHER, &text);
    assert!(rate <= 0.25, "WER {rate:.3}: {srt}");
    let last_end = srt.lines().filter_map(|l| l.split_once(" --> ")).next_back().map(|(_, e)| ms(e)).unwrap();
    assert!(last_end.abs_diff(2_000 + speech_ms) <= 1_000, "{srt}");
}

#[test]
fn word_error_rate_counts_substitutions_insertions_and_deletions() {
    assert_eq!(wer("the cat sat", "The cat sat."), (0.0, 0));
    assert_eq!(wer("the cat sat", "the sat"), (1.0 / 3.0, 1));
    assert_eq!(wer("the cat sat", "a cat sat down"), (2.0 / 3.0, 0));
    assert_eq!(wer("mister john dashwood", "Mr. John Dashwood"), (0.0, 0));
}
