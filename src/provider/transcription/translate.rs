//! The wire of `/v1/audio/transcriptions`: a multipart request out, a
//! `verbose_json` (or `json`) answer in. Pure functions, tested without a
//! network.

use serde::Deserialize;

use crate::provider::{AudioClip, ErrorClass, ProviderError};
use crate::schema::{Observation, TimeRange};

/// What a request carries beside the audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fields<'a> {
    pub model: &'a str,
    /// `verbose_json` (segments with times) or `json` (one text).
    pub verbose: bool,
    /// ISO-639-1, when the speech's language is known.
    pub language: Option<&'a str>,
    /// Words to expect (names, terms), as Whisper's `prompt`.
    pub prompt: &'a str,
}

/// A `multipart/form-data` body: the fields, then the WAV as `file`. The
/// boundary is a fresh random token that the bytes of the WAV are checked
/// not to hold.
pub(super) fn multipart(fields: &Fields<'_>, wav: &[u8]) -> (String, Vec<u8>) {
    let boundary = loop {
        let b = format!("vidgate-{:032x}", rand::random::<u128>());
        if !wav.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
    };
    let mut body = Vec::with_capacity(wav.len() + 1024);
    let mut text = |name: &str, value: &str| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    };
    text("model", fields.model);
    text("response_format", if fields.verbose { "verbose_json" } else { "json" });
    if fields.verbose {
        text("timestamp_granularities[]", "segment");
    }
    text("temperature", "0");
    if let Some(language) = fields.language {
        text("language", language);
    }
    if !fields.prompt.is_empty() {
        text("prompt", fields.prompt);
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wav);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The answer, in either format: `segments` only in `verbose_json`.
#[derive(Debug, Deserialize)]
struct Answer {
    text: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Option<Vec<Segment>>,
    #[serde(default)]
    usage: Option<AnswerUsage>,
}

#[derive(Debug, Deserialize)]
struct Segment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    avg_logprob: Option<f64>,
    #[serde(default)]
    no_speech_prob: Option<f64>,
}

/// `{"type": "duration", "seconds": N}` (per-minute models), or token counts.
#[derive(Debug, Deserialize)]
struct AnswerUsage {
    #[serde(default)]
    seconds: Option<f64>,
}

/// What an answer says.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Transcript {
    /// The text heard, with its times in the video, each kept once.
    pub observations: Vec<Observation>,
    /// The audio the provider says it billed, in seconds.
    pub billed_s: Option<f64>,
}

/// Read an answer for `clip`. Segment times are the clip's own, from its
/// start: [`super::in_video_time`] puts them in the video. Segments Whisper itself marks as silence
/// (`no_speech_prob` > 0.8 with `avg_logprob` < -1) are dropped.
///
/// # Errors
/// A body that is not a transcription answer (may have been billed).
pub(super) fn parse(body: &[u8], clip: &AudioClip, provider: &str, model: &str) -> Result<Transcript, ProviderError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let mut err = ProviderError::new(provider, ErrorClass::Transient, format!("not a transcription answer: {e}"));
        err.body = Some(String::from_utf8_lossy(&body[..body.len().min(ProviderError::BODY_LIMIT)]).into_owned());
        err.maybe_billed = true;
        err
    })?;
    // What the server says it billed, but never more than the clip it was
    // sent (and a second for rounding): a server cannot charge the budget
    // for sound it never heard.
    let sent_s = clip.range.duration_ms() as f64 / 1000.0 + 1.0;
    let sane = |s: &f64| s.is_finite() && *s >= 0.0;
    let billed_s =
        answer.usage.and_then(|u| u.seconds).filter(sane).or(answer.duration.filter(sane)).map(|s| s.min(sent_s));
    let observations = match answer.segments {
        None => {
            let range =
                TimeRange { start_ms: clip.owned.start_ms, end_ms: clip.owned.end_ms.max(clip.owned.start_ms + 1) };
            vec![Observation {
                range,
                text: answer.text.trim().to_string(),
                provider: provider.to_string(),
                model: Some(model.to_string()),
            }]
        }
        Some(segments) => super::in_video_time(
            clip,
            segments
                .iter()
                .filter(|s| !(s.no_speech_prob.unwrap_or(0.0) > 0.8 && s.avg_logprob.unwrap_or(0.0) < -1.0))
                .map(|s| (s.start, s.end, s.text.as_str())),
            provider,
            model,
        ),
    };
    Ok(Transcript { observations: observations.into_iter().filter(|o| !o.text.is_empty()).collect(), billed_s })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// OpenAI's documented `verbose_json` example (its API reference),
    /// trimmed to two segments, the second split in two.
    const VERBOSE: &str = r#"{
      "task": "transcribe",
      "language": "english",
      "duration": 8.470000267028809,
      "text": "The beach was a popular spot on a hot summer day. People were swimming in the ocean.",
      "segments": [
        {"id": 0, "seek": 0, "start": 0.0, "end": 3.319999933242798,
         "text": " The beach was a popular spot on a hot summer day.",
         "tokens": [50364, 440, 7534], "temperature": 0.0, "avg_logprob": -0.2860786020755768,
         "compression_ratio": 1.2363636493682861, "no_speech_prob": 0.00985979475080967},
        {"id": 1, "seek": 0, "start": 3.319999933242798, "end": 6.5,
         "text": " People were swimming in the ocean.",
         "tokens": [50530], "temperature": 0.0, "avg_logprob": -0.3, "compression_ratio": 1.2, "no_speech_prob": 0.01},
        {"id": 2, "seek": 0, "start": 6.5, "end": 8.4,
         "text": " Thanks for watching!",
         "tokens": [50700], "temperature": 0.0, "avg_logprob": -1.4, "compression_ratio": 0.9, "no_speech_prob": 0.93}
      ],
      "usage": {"type": "duration", "seconds": 9}
    }"#;

    fn clip(start_ms: u64, end_ms: u64, owned: (u64, u64)) -> AudioClip {
        AudioClip {
            wav: Arc::from(vec![0u8; 8]),
            range: TimeRange { start_ms, end_ms },
            owned: TimeRange { start_ms: owned.0, end_ms: owned.1 },
        }
    }

    #[test]
    fn segment_times_are_shifted_to_video_time_and_silence_is_dropped() {
        let t = parse(VERBOSE.as_bytes(), &clip(60_000, 69_000, (60_000, 69_000)), "groq", "whisper").unwrap();
        let got: Vec<(u64, u64, &str)> =
            t.observations.iter().map(|o| (o.range.start_ms, o.range.end_ms, o.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (60_000, 63_320, "The beach was a popular spot on a hot summer day."),
                (63_320, 66_500, "People were swimming in the ocean."),
            ]
        );
        assert_eq!(t.billed_s, Some(9.0));
        assert_eq!(t.observations[0].provider, "groq");
    }

    #[test]
    fn the_billed_duration_is_never_more_than_the_clip_sent() {
        let huge = br#"{"text": "hi", "duration": 1e12}"#;
        assert_eq!(parse(huge, &clip(0, 3_000, (0, 3_000)), "p", "m").unwrap().billed_s, Some(4.0));
        // A bad `usage.seconds` does not hide a good `duration`.
        let both = br#"{"text": "hi", "duration": 2.5, "usage": {"type": "duration", "seconds": -7}}"#;
        assert_eq!(parse(both, &clip(0, 3_000, (0, 3_000)), "p", "m").unwrap().billed_s, Some(2.5));
    }

    #[test]
    fn text_in_the_overlap_is_kept_by_the_clip_that_owns_it() {
        // The clip owns 60.0–65.0 s; the second segment's middle (64.9 s) is
        // its, the first's too; a clip owning 65.0 s on would keep neither.
        let first = parse(VERBOSE.as_bytes(), &clip(60_000, 69_000, (60_000, 65_000)), "p", "m").unwrap();
        assert_eq!(first.observations.len(), 2);
        let later = parse(VERBOSE.as_bytes(), &clip(60_000, 69_000, (65_000, 69_000)), "p", "m").unwrap();
        assert!(later.observations.is_empty(), "{later:?}");
    }

    #[test]
    fn a_plain_json_answer_is_one_text_for_the_clip() {
        let body = br#"{"text": " Hello there. ", "usage": {"type": "tokens", "input_tokens": 14}}"#;
        let t = parse(body, &clip(2_000, 5_000, (2_000, 4_500)), "openai", "gpt-4o-transcribe").unwrap();
        assert_eq!(t.observations.len(), 1);
        assert_eq!(t.observations[0].text, "Hello there.");
        assert_eq!(t.observations[0].range, TimeRange { start_ms: 2_000, end_ms: 4_500 });
        assert_eq!(t.billed_s, None);
        // An empty transcript is no observation.
        let t = parse(br#"{"text": "  "}"#, &clip(0, 10, (0, 10)), "p", "m").unwrap();
        assert!(t.observations.is_empty());
    }

    #[test]
    fn a_body_that_is_no_answer_is_a_transient_error_that_may_be_billed() {
        let err = parse(b"<html>busy</html>", &clip(0, 10, (0, 10)), "p", "m").unwrap_err();
        assert_eq!(err.class, ErrorClass::Transient);
        assert!(err.maybe_billed);
        assert!(err.message.contains("not a transcription answer"), "{err}");
    }

    #[test]
    fn the_multipart_body_names_every_field_and_carries_the_wav() {
        let wav = b"RIFF....WAVEdata";
        let fields = Fields { model: "whisper-1", verbose: true, language: Some("en"), prompt: "" };
        let (content_type, body) = multipart(&fields, wav);
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        for part in [
            "name=\"model\"\r\n\r\nwhisper-1\r\n",
            "name=\"response_format\"\r\n\r\nverbose_json\r\n",
            "name=\"language\"\r\n\r\nen\r\n",
            "name=\"timestamp_granularities[]\"\r\n\r\nsegment\r\n",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        assert!(!text.contains("name=\"prompt\""), "an empty prompt is not sent");
        assert!(text.contains("filename=\"speech.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF....WAVEdata\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        let plain = Fields { verbose: false, language: None, prompt: "Kubernetes", ..fields };
        let text = String::from_utf8_lossy(&multipart(&plain, wav).1).into_owned();
        assert!(text.contains("\r\n\r\njson\r\n") && !text.contains("timestamp_granularities"));
        assert!(text.contains("name=\"prompt\"\r\n\r\nKubernetes\r\n") && !text.contains("name=\"language\""));
    }
}
