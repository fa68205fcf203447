//! The speech track in a run: speech with a known text (espeak-ng) under a
//! clip at a known time, transcribed by a fake server, fed to the answer.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use vidgate::config::{Config, ModelProfile, Protocol, ProviderProfile, SpeechTrack};
use vidgate::gateway::{Gateway, GatewayError};
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{Capabilities, ErrorClass, JobInput, ProviderError};
use vidgate::schema::{SamplingMode, SamplingPlan, Task, VideoReport, VideoRequest};

use super::fake::FakeWhisper;
use super::{mute_clip, silent_clip};
use crate::gateway::{config, scripted};
use crate::util::*;

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";
const KEY: &str = "sk-vidgate-speech-5e1d7c";
/// Where the speech starts in the clip.
const SPEECH_AT_MS: u64 = 3_000;

/// `SENTENCE` spoken by espeak-ng, 3 s into 10 s of testsrc (muxed by ffmpeg); and the
/// length of the speech. `None` (skipped) only without espeak-ng under
/// VIDGATE_ALLOW_SKIP=1.
pub fn spoken_clip() -> Option<(PathBuf, u64)> {
    espeak_clip("speech-fox", SENTENCE, &[], SPEECH_AT_MS, 10)
}

/// `text` spoken by espeak-ng (with the `voice` arguments, e.g. `-v en-us
/// -s 130`), `at_ms` into `seconds` of testsrc, as `NAME.mp4`; and the length
/// of the speech in ms. `None` (skipped) only without espeak-ng under
/// VIDGATE_ALLOW_SKIP=1.
pub fn espeak_clip(name: &str, text: &str, voice: &[&str], at_ms: u64, seconds: u32) -> Option<(PathBuf, u64)> {
    let wav = clip_dir().join(format!("{name}.wav"));
    if !wav.exists() {
        let made = Command::new("espeak-ng").args(voice).arg("-w").arg(&wav).arg(text).status();
        match made {
            Ok(s) if s.success() => {}
            _ => return require("espeak-ng (apt-get install espeak-ng)"),
        }
    }
    let reader = hound::WavReader::open(&wav).unwrap();
    let speech_ms = u64::from(reader.duration()) * 1000 / u64::from(reader.spec().sample_rate);
    let wav_arg = wav.to_string_lossy().into_owned();
    let delay = format!("[1:a]adelay={at_ms}:all=1,apad[a]");
    let clip = super::clip_with_sound(
        &format!("{name}.mp4"),
        seconds,
        &["-i", &wav_arg, "-filter_complex", &delay, "-map", "0:v", "-map", "[a]"],
    );
    Some((clip, speech_ms))
}

/// A speech profile on `fake`, at `usd_per_minute`.
fn whisper(fake: &FakeWhisper, test: &str, usd_per_minute: f64) -> ProviderProfile {
    let var = format!("VIDGATE_TEST_WHISPER_{}", test.to_uppercase());
    std::env::set_var(&var, KEY);
    let model = ModelProfile { audio_usd_per_minute: Some(usd_per_minute), ..ModelProfile::default() };
    ProviderProfile {
        protocol: Some(Protocol::OpenaiTranscription),
        base_url: Some(fake.url.clone()),
        api_key_env: Some(var),
        model: Some("whisper-1".into()),
        models: [("whisper-1".to_string(), model)].into(),
        timeout_s: Some(10.0),
        ..ProviderProfile::default()
    }
}

/// The chain `["a"]` (scripted), with the speech chain `speech` on fakes.
fn speech_config(speech: &[(&str, ProviderProfile)]) -> Config {
    let mut c = config(&["a"]);
    for (name, profile) in speech {
        c.providers.insert(name.to_string(), profile.clone());
    }
    c.speech.chain = speech.iter().map(|(n, _)| n.to_string()).collect();
    c.speech.language = Some("en".into());
    c
}

fn request(video: PathBuf, task: Task) -> VideoRequest {
    let mut r = VideoRequest::new(video, task);
    r.sampling = SamplingPlan { mode: SamplingMode::Fps { fps: 0.5 }, range: None, max_frames: 8, width: 160 };
    r
}

fn run(g: &Gateway, r: VideoRequest) -> Result<VideoReport, GatewayError> {
    block_on(g.run(r))
}

/// The text of the calls `p` was given for `task`: prompt and input.
fn text_sent(p: &ScriptedProvider, task: &str) -> String {
    p.jobs()
        .iter()
        .filter(|j| j.task.name() == task)
        .map(|j| match &j.input {
            JobInput::Text(t) => format!("{}\n{t}", j.prompt),
            _ => j.prompt.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn known_speech_is_heard_at_its_time_and_reaches_the_answer() {
    let Some((clip, speech_ms)) = spoken_clip() else { return };
    let fake = FakeWhisper::start(SENTENCE);
    let a = Arc::new(scripted("a"));
    let g = crate::gateway::gateway(speech_config(&[("whisper", whisper(&fake, "heard", 0.006))]), &[("a", &a)]);
    let question = Task::Ask { question: "What does the narrator say?".into() };
    let report = run(&g, request(clip, question)).unwrap();

    // One segment, sent as 16 kHz WAV with the language and verbose_json.
    let heard = fake.heard();
    assert_eq!(heard.len(), 1, "{heard:?}");
    let h = &heard[0];
    assert_eq!((h.model.as_str(), h.format.as_str(), h.language.as_deref()), ("whisper-1", "verbose_json", Some("en")));
    assert_eq!(h.sample_rate, 16_000);
    assert_eq!(h.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    // The words, where they are in the video (within 1 s).
    assert_eq!(report.speech.len(), 1, "{:?}", report.speech);
    let said = &report.speech[0];
    assert_eq!(said.text, SENTENCE);
    assert_eq!(said.provider, "whisper");
    assert!(said.range.start_ms.abs_diff(SPEECH_AT_MS) <= 1_000, "{said:?}");
    assert!(said.range.end_ms.abs_diff(SPEECH_AT_MS + speech_ms) <= 1_000, "{said:?} ({speech_ms} ms of speech)");
    // The answer prompt hears it, with its time, marked as speech.
    let sent = text_sent(&a, "ask");
    let line = format!("said: \"{SENTENCE}\"");
    assert!(sent.contains(&line), "{sent}");
    assert!(sent.contains("Lines marked `said:` are words spoken"), "{sent}");
    assert!(report.prompt_versions.contains(&"speech@1".to_string()), "{:?}", report.prompt_versions);
    assert!(report.providers.contains(&"whisper".to_string()), "{:?}", report.providers);
    // Its cost counts: whole seconds of the clip at $0.006 a minute.
    let speech_usd: f64 = report.attempts.iter().filter(|a| a.provider == "whisper").map(|a| a.usage.cost_usd).sum();
    let billed_s = (h.wav_ms as f64 / 1000.0).ceil();
    assert!((speech_usd - billed_s / 60.0 * 0.006).abs() < 1e-9, "{speech_usd}");
    assert!(report.usage.cost_usd >= speech_usd);

    // A rerun pays nothing again for what was heard.
    let again = run(&g, request(spoken_clip().unwrap().0, Task::Ask { question: "What is said?".into() })).unwrap();
    assert_eq!(fake.heard().len(), 1, "the transcript was read back from the journal");
    assert_eq!(again.speech, report.speech);
    assert!(again.reused_units >= 1);
}

#[test]
fn a_silent_video_or_one_without_sound_makes_no_transcription_call() {
    let fake = FakeWhisper::start("should never be said");
    let a = Arc::new(scripted("a"));
    let mut cfg = speech_config(&[("whisper", whisper(&fake, "silent", 0.006))]);
    cfg.speech.track = SpeechTrack::Always;
    let g = crate::gateway::gateway(cfg, &[("a", &a)]);
    for clip in [silent_clip(), mute_clip()] {
        let report = run(&g, request(clip.clone(), Task::Describe)).unwrap();
        assert!(report.speech.is_empty(), "{}: {:?}", clip.display(), report.speech);
        assert!(report.attempts.iter().all(|a| a.provider != "whisper"), "{:?}", report.attempts);
    }
    assert!(fake.heard().is_empty(), "{:?}", fake.heard());
}

#[test]
fn a_refused_speech_provider_hands_the_segment_to_the_next() {
    let Some((clip, _)) = spoken_clip() else { return };
    let refusing = FakeWhisper::failing(401);
    let fake = FakeWhisper::start(SENTENCE);
    let a = Arc::new(scripted("a"));
    let cfg = speech_config(&[
        ("whisper-a", whisper(&refusing, "refused_a", 0.006)),
        ("whisper-b", whisper(&fake, "refused_b", 0.006)),
    ]);
    let g = crate::gateway::gateway(cfg, &[("a", &a)]);
    let report = run(&g, request(clip, Task::Describe)).unwrap();
    assert_eq!(refusing.heard().len(), 1, "a refused key is not tried again");
    assert_eq!(fake.heard().len(), 1);
    assert_eq!(report.speech.len(), 1);
    assert_eq!(report.speech[0].provider, "whisper-b");
    let story = text_sent(&a, "describe");
    assert!(story.contains(&format!("said: \"{SENTENCE}\"")), "{story}");
    // The key never shows, even quoted back in the error body.
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("Incorrect API key provided"), "the refusal is in the report: {json}");
    assert!(!json.contains(KEY), "{json}");
}

#[test]
fn the_plan_counts_the_speech_track_and_a_run_over_budget_spends_nothing() {
    let Some((clip, _)) = spoken_clip() else { return };
    let fake = FakeWhisper::start(SENTENCE);
    let a = Arc::new(scripted("a"));
    // $6 a minute: the 10 s clip may cost $1 to transcribe, over the $0.5 cap.
    let mut cfg = speech_config(&[("whisper", whisper(&fake, "budget", 6.0))]);
    cfg.budget.max_usd_per_request = 0.5;
    let g = crate::gateway::gateway(cfg, &[("a", &a)]);
    let plan = block_on(g.plan(&request(clip.clone(), Task::Describe))).unwrap();
    let speech = plan.speech.clone().expect("the plan has a speech track");
    assert_eq!((speech.provider.as_str(), speech.calls, speech.audio_ms), ("whisper", 1, 10_000));
    assert!((speech.estimated_usd - 1.0).abs() < 1e-9, "{speech:?}");
    assert!(!plan.fits);
    let err = run(&g, request(clip.clone(), Task::Describe)).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, GatewayError::OverBudget(_)), "{message}");
    assert!(message.contains("of speech on whisper in 1 calls (up to $1.0000)"), "{message}");
    assert!(fake.heard().is_empty() && a.jobs().is_empty(), "nothing was spent");

    // At $0.006 a minute it fits, and the plan says so.
    let cheap = speech_config(&[("whisper", whisper(&fake, "budget2", 0.006))]);
    let g = crate::gateway::gateway(cheap, &[("a", &a)]);
    let plan = block_on(g.plan(&request(clip, Task::Describe))).unwrap();
    assert!(plan.fits && (plan.speech.unwrap().estimated_usd - 0.001).abs() < 1e-9);
}

/// A provider that takes the video whole and hears its sound (as Gemini).
fn hears() -> Capabilities {
    Capabilities {
        native_video: true,
        audio: true,
        max_images_per_call: 1,
        max_inline_bytes: 1 << 30,
        ..Capabilities::default()
    }
}

#[test]
fn a_video_sent_whole_to_a_provider_that_hears_it_skips_the_track_unless_always() {
    let Some((clip, _)) = spoken_clip() else { return };
    let fake = FakeWhisper::start(SENTENCE);
    let native = || Arc::new(scripted("a").with_capabilities(hears()));
    let a = native();
    let g = crate::gateway::gateway(speech_config(&[("whisper", whisper(&fake, "native", 0.006))]), &[("a", &a)]);
    let report = run(&g, request(clip.clone(), Task::Describe)).unwrap();
    assert!(a.jobs().iter().any(|j| matches!(j.input, JobInput::Video { .. })), "the video went whole");
    assert!(report.speech.is_empty() && fake.heard().is_empty(), "auto: the provider hears the video itself");

    let mut always = speech_config(&[("whisper", whisper(&fake, "native2", 0.006))]);
    always.speech.track = SpeechTrack::Always;
    let a = native();
    let g = crate::gateway::gateway(always, &[("a", &a)]);
    let report = run(&g, request(clip, Task::Describe)).unwrap();
    assert_eq!(fake.heard().len(), 1);
    assert_eq!(report.speech.len(), 1);
}

#[test]
fn speech_left_to_a_video_call_that_failed_is_transcribed_for_the_frames_sent_instead() {
    let Some((clip, _)) = spoken_clip() else { return };
    let fake = FakeWhisper::start(SENTENCE);
    let down = ProviderError::new("a", ErrorClass::FallBack, "the model is down");
    let a = Arc::new(scripted("a").with_capabilities(hears()).with_fallback(Step::Fail(down)));
    let b = Arc::new(scripted("b"));
    let mut c = speech_config(&[("whisper", whisper(&fake, "late", 0.006))]);
    c.providers.insert("b".into(), c.providers["a"].clone());
    c.router.chain = vec!["a".into(), "b".into()];
    let g = crate::gateway::gateway(c, &[("a", &a), ("b", &b)]);
    let report = run(&g, request(clip, Task::Describe)).unwrap();
    assert!(a.jobs().iter().any(|j| matches!(j.input, JobInput::Video { .. })), "the video was tried whole");
    assert!(b.jobs().iter().any(|j| matches!(j.input, JobInput::Frames(_))), "then frames went to b");
    assert_eq!(fake.heard().len(), 1, "{report:?}");
    assert_eq!(report.speech.len(), 1);
    assert!(report.warnings.iter().any(|w| w.contains("speech was transcribed by whisper")), "{:?}", report.warnings);
}

#[test]
fn a_speech_chain_must_name_speech_providers() {
    let fake = FakeWhisper::start(SENTENCE);
    let mut cfg = speech_config(&[("whisper", whisper(&fake, "names", 0.006))]);
    cfg.speech.chain = vec!["a".into()];
    let text = toml::to_string(&cfg).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let sources = vidgate::config::ConfigSources { file: Some(file.path().to_path_buf()), ..Default::default() };
    let err = Config::load(&sources).unwrap_err().to_string();
    assert!(err.contains("speech.chain") && err.contains("`a` is not a speech provider"), "{err}");
}

#[test]
fn vidgate_transcribe_prints_the_transcript_as_subtitles() {
    let Some((clip, speech_ms)) = spoken_clip() else { return };
    let fake = FakeWhisper::start(SENTENCE);
    let var = "VIDGATE_TEST_WHISPER_CLI";
    let config = clip_dir().join("speech-cli.toml");
    std::fs::write(
        &config,
        format!(
            "[speech]\nchain = [\"fake-whisper\"]\n\n[providers.fake-whisper]\nprotocol = \"openai_transcription\"\n\
             base_url = \"{}\"\napi_key_env = \"{var}\"\nmodel = \"whisper-1\"\n\n\
             [providers.fake-whisper.models.\"whisper-1\"]\naudio_usd_per_minute = 0.006\n",
            fake.url
        ),
    )
    .unwrap();
    let transcribe = |format: &str| {
        let out = vidgate()
            .env(var, KEY)
            .arg("--config")
            .arg(&config)
            .args(["transcribe", "--language", "en", "--format", format])
            .arg(&clip)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    };
    let (srt, stderr) = transcribe("srt");
    let cue: Vec<&str> = srt.lines().collect();
    assert_eq!(cue.first(), Some(&"1"), "{srt}");
    assert_eq!(cue.get(2), Some(&SENTENCE), "{srt}");
    // 00:00:0S,mmm --> 00:00:0S,mmm, near 3 s and the speech's end.
    let (start, end) = cue[1].split_once(" --> ").unwrap();
    let ms = |t: &str| vidgate::timecode::parse(&t.replace(',', ".")).unwrap();
    assert!(ms(start).abs_diff(SPEECH_AT_MS) <= 1_000 && ms(end).abs_diff(SPEECH_AT_MS + speech_ms) <= 1_000, "{srt}");
    assert!(stderr.contains("1 segments of speech"), "{stderr}");
    assert_eq!(fake.heard()[0].language.as_deref(), Some("en"));
    let (vtt, _) = transcribe("vtt");
    assert!(vtt.starts_with("WEBVTT") && vtt.contains(SENTENCE), "{vtt}");
    let (json, _) = transcribe("json");
    let report: VideoReport = serde_json::from_str(&json).unwrap();
    assert_eq!(report.speech[0].text, SENTENCE);
    assert!(!json.contains(KEY));
}
