//! Speech to text over OpenAI's `/v1/audio/transcriptions`, as OpenAI
//! (`whisper-1`, `gpt-4o-transcribe`), Groq, a whisper.cpp server and vLLM
//! serve it: one multipart upload of a WAV clip per job, priced per minute
//! of audio. The wire types and their pure conversions are in `translate`.

mod translate;

use async_trait::async_trait;
use reqwest::Method;

use crate::config::{Config, Protocol, ProviderProfile};
use crate::provider::auth::Auth;
use crate::provider::executor::Executor;
use crate::provider::{
    AudioClip, Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::{Observation, TimeRange, Usage};

/// A transcription endpoint, built from a profile.
#[derive(Debug)]
pub struct Transcription {
    name: String,
    model: String,
    endpoint: String,
    http: Executor,
    usd_per_minute: f64,
    min_billed_s: f64,
    verbose: bool,
    max_request_bytes: u64,
    language: Option<String>,
    prompt: String,
}

impl Transcription {
    /// Build the provider called `name` from its profile; the language and
    /// prompt come from `[speech]`.
    ///
    /// # Errors
    /// Another protocol, no base URL, model or per-minute price, or a key
    /// variable that is not set, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::OpenaiTranscription) {
            return Err(fail(format!("providers.{name}.protocol is not \"openai_transcription\"")));
        }
        let root = profile.base_url.as_deref().ok_or_else(|| fail(format!("providers.{name}.base_url is not set")))?;
        let model = profile.model.clone().ok_or_else(|| fail(format!("providers.{name}.model is not set")))?;
        let model_profile = profile.model_profile(&model).cloned().unwrap_or_default();
        let usd_per_minute = model_profile.audio_usd_per_minute.ok_or_else(|| {
            fail(format!("no price for model `{model}`: set providers.{name}.models.\"{model}\".audio_usd_per_minute"))
        })?;
        for (key, value) in
            [("audio_usd_per_minute", Some(usd_per_minute)), ("audio_min_billed_s", model_profile.audio_min_billed_s)]
        {
            if let Some(v) = value.filter(|v| !(v.is_finite() && (0.0..=1e6).contains(v))) {
                return Err(fail(format!("providers.{name}.models.\"{model}\".{key} is {v}: give 0 to 1000000")));
            }
        }
        let wait_cap = crate::timecode::seconds(config.retry.max_wait_s);
        let error_facts = crate::provider::openai_compat::translate::error_facts;
        let http = Executor::new(name, Auth::from_profile(name, profile)?, error_facts, wait_cap)?;
        Ok(Self {
            name: name.to_string(),
            endpoint: format!("{}/audio/transcriptions", root.trim_end_matches('/')),
            model,
            http,
            usd_per_minute,
            min_billed_s: model_profile.audio_min_billed_s.unwrap_or(0.0),
            verbose: model_profile.verbose_json.unwrap_or(true),
            // OpenAI's and Groq's free tier's limit on an upload.
            max_request_bytes: model_profile.max_request_bytes.unwrap_or(25 << 20),
            language: config.speech.language.clone(),
            prompt: config.speech.prompt.clone(),
        })
    }

    fn clip<'a>(&self, job: &'a Job) -> Result<&'a AudioClip, ProviderError> {
        match &job.input {
            JobInput::Audio(clip) => Ok(clip),
            _ => Err(self.http.error(ErrorClass::FallBack, "a speech provider takes audio only")),
        }
    }

    /// What `seconds` of audio cost: at least the model's minimum, to the
    /// second above.
    fn cost(&self, seconds: f64) -> f64 {
        seconds.max(self.min_billed_s).ceil() / 60.0 * self.usd_per_minute
    }
}

#[async_trait]
impl Provider for Transcription {
    fn id(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// The language, the prompt and the answer's format change the transcript.
    fn settings_key(&self) -> String {
        format!("language={:?};prompt={:?};verbose_json={}", self.language, self.prompt, self.verbose)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_images_per_call: 1,
            max_inline_bytes: self.max_request_bytes,
            audio: true,
            ..Capabilities::default()
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        let clip = self.clip(job)?;
        let bytes = clip.wav.len() as u64 + 1024;
        if bytes > self.max_request_bytes {
            let mut err = self.http.error(
                ErrorClass::FallBack,
                format!(
                    "{bytes} bytes of audio in one call is over the provider's limit of {} bytes",
                    self.max_request_bytes
                ),
            );
            err.not_sent = true;
            return Err(err);
        }
        let seconds = clip.range.duration_ms() as f64 / 1000.0;
        Ok(Estimate { input_tokens: 0, output_tokens: 0, cost_usd: self.cost(seconds) })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let clip = self.clip(job)?;
        let estimate = self.estimate(job)?;
        let fields = translate::Fields {
            model: &self.model,
            verbose: self.verbose,
            language: self.language.as_deref(),
            prompt: &self.prompt,
        };
        let (content_type, body) = translate::multipart(&fields, &clip.wav);
        let answer = self
            .http
            .request(Method::POST, &self.endpoint)
            .header("content-type", content_type)
            .bytes(body)
            .send()
            .await?;
        let transcript =
            translate::parse(&answer.body, clip, &self.name, &self.model).map_err(|e| self.http.redacted(e))?;
        let mut warnings = Vec::new();
        let cost_usd = match transcript.billed_s {
            Some(seconds) => self.cost(seconds),
            None => {
                if !self.verbose {
                    // `json` answers carry no duration: billed as estimated.
                } else {
                    warnings.push(format!("{}: the answer says no duration; billed at the estimate", self.name));
                }
                estimate.cost_usd
            }
        };
        Ok(ProviderOutput {
            observations: transcript.observations,
            usage: Usage { input_tokens: 0, output_tokens: 0, cost_usd },
            model: self.model.clone(),
            warnings,
        })
    }
}

/// What was heard in `clip`, as `(start, end, text)` with times in seconds
/// from the clip's start, as observations in video time: shifted by the
/// clip's start and held within the clip; a piece whose middle lies outside
/// the part the clip owns is left to the neighbour that owns it, and empty
/// text is dropped. Every speech backend's times go through here.
pub(crate) fn in_video_time<'a>(
    clip: &AudioClip,
    heard: impl IntoIterator<Item = (f64, f64, &'a str)>,
    provider: &str,
    model: &str,
) -> Vec<Observation> {
    let at = |seconds: f64| -> u64 {
        let ms = (seconds.max(0.0) * 1000.0).round() as u64;
        clip.range.start_ms.saturating_add(ms).min(clip.range.end_ms)
    };
    heard
        .into_iter()
        .filter_map(|(start, end, text)| {
            let (start, end) = (at(start), at(end));
            let end = end.max(start + 1);
            let middle = start + (end - start) / 2;
            let owned = clip.owned.contains(middle) || (middle == clip.owned.end_ms && middle == clip.range.end_ms);
            let text = text.trim();
            (owned && !text.is_empty()).then(|| Observation {
                range: TimeRange { start_ms: start, end_ms: end },
                text: text.to_string(),
                provider: provider.to_string(),
                model: Some(model.to_string()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ModelProfile;
    use crate::schema::{Task, TimeRange};

    fn profile(minimum: Option<f64>) -> ProviderProfile {
        let mut p = crate::provider::test_profile(Protocol::OpenaiTranscription, "whisper-1");
        p.models.insert(
            "whisper-1".into(),
            ModelProfile {
                audio_usd_per_minute: Some(0.006),
                audio_min_billed_s: minimum,
                max_request_bytes: Some(10_000),
                ..ModelProfile::default()
            },
        );
        p
    }

    fn job(ms: u64, bytes: usize) -> Job {
        Job {
            task: Task::Describe,
            input: JobInput::Audio(AudioClip {
                wav: Arc::from(vec![0u8; bytes]),
                range: TimeRange { start_ms: 1_000, end_ms: 1_000 + ms },
                owned: TimeRange { start_ms: 1_000, end_ms: 1_000 + ms },
            }),
            prompt: "".into(),
            prompt_version: "speech@1".into(),
            max_output_tokens: 0,
            span: None,
        }
    }

    #[test]
    fn audio_is_priced_by_the_minute_to_the_second_above_with_the_minimum() {
        let t = Transcription::from_profile("openai-whisper", &profile(None), &Config::default()).unwrap();
        let cost = t.estimate(&job(30_000, 100)).unwrap().cost_usd;
        assert!((cost - 0.003).abs() < 1e-12, "{cost}");
        let cost = t.estimate(&job(2_100, 100)).unwrap().cost_usd;
        assert!((cost - 3.0 / 60.0 * 0.006).abs() < 1e-12, "{cost}");
        let groq = Transcription::from_profile("groq", &profile(Some(10.0)), &Config::default()).unwrap();
        let cost = groq.estimate(&job(2_100, 100)).unwrap().cost_usd;
        assert!((cost - 10.0 / 60.0 * 0.006).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn a_clip_over_the_upload_limit_is_refused_before_it_is_sent() {
        let t = Transcription::from_profile("p", &profile(None), &Config::default()).unwrap();
        let err = t.estimate(&job(1_000, 20_000)).unwrap_err();
        assert!(err.not_sent && err.message.contains("over the provider's limit of 10000 bytes"), "{err}");
        let err = t.estimate(&crate::provider::scripted::text_job()).unwrap_err();
        assert!(err.message.contains("audio only"), "{err}");
    }

    #[test]
    fn a_profile_without_a_per_minute_price_is_named() {
        let mut p = profile(None);
        p.models.clear();
        let err = Transcription::from_profile("groq-whisper", &p, &Config::default()).unwrap_err();
        assert!(err.message.contains("providers.groq-whisper.models.\"whisper-1\".audio_usd_per_minute"), "{err}");
    }

    #[test]
    fn a_price_that_is_not_a_sane_number_is_refused_with_its_key() {
        for (price, minimum, key) in [
            (f64::NAN, None, "audio_usd_per_minute is NaN"),
            (-0.5, None, "audio_usd_per_minute is -0.5"),
            (0.006, Some(f64::INFINITY), "audio_min_billed_s is inf"),
        ] {
            let mut p = profile(minimum);
            p.models.get_mut("whisper-1").unwrap().audio_usd_per_minute = Some(price);
            let err = Transcription::from_profile("p", &p, &Config::default()).unwrap_err();
            assert!(err.message.contains(key), "{err}");
        }
    }

    #[test]
    fn language_and_prompt_are_part_of_the_journal_key() {
        let mut config = Config::default();
        let base = Transcription::from_profile("p", &profile(None), &config).unwrap().settings_key();
        config.speech.language = Some("en".into());
        let en = Transcription::from_profile("p", &profile(None), &config).unwrap().settings_key();
        config.speech.prompt = "Kubernetes".into();
        let prompted = Transcription::from_profile("p", &profile(None), &config).unwrap().settings_key();
        assert!(base != en && en != prompted, "{base} {en} {prompted}");
    }
}
