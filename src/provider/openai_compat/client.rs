//! The one place the OpenAI-compatible backend does I/O: one HTTP call per
//! `run` (two when a structured answer needs its repair, by the rule of
//! [`crate::provider::structured`]).

use async_trait::async_trait;
use reqwest::Method;

use super::cost;
use super::translate::{self, ParsedAnswer, RequestOptions, ResponseSchema, TokenLimitField};
use super::video::{self, LoadError, VideoOptions};
use crate::config::{Config, ImageDetail, ModelProfile, OutputCapField, Price, Protocol, ProviderProfile};
use crate::provider::auth::Auth;
use crate::provider::executor::Executor;
use crate::provider::setup::Basics;
use crate::provider::structured::{self, Constraint, RawAnswer};
use crate::provider::usage;
use crate::provider::{
    Capabilities, Cause, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::Usage;

/// A Chat Completions endpoint, built from a profile.
#[derive(Debug)]
pub struct OpenAiCompat {
    name: String,
    model: String,
    endpoint: String,
    http: Executor,
    detail: ImageDetail,
    /// The quality frames were encoded at (the extraction's, or the RGB
    /// conversion's): part of what is sent.
    jpeg_quality: u8,
    token_limit: TokenLimitField,
    model_profile: ModelProfile,
    price: Price,
    frames_per_call: u32,
    /// How the model takes a whole video, when its profile says it does.
    video: Option<VideoOptions>,
}

impl OpenAiCompat {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, or key variable, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let Basics { root, model, price, model_profile } = Basics::from_profile(name, profile, Protocol::Openai)?;
        let wait_cap = crate::timecode::seconds(config.retry.max_wait_s);
        let http = Executor::new(name, Auth::from_profile(name, profile)?, translate::error_facts, wait_cap)?;
        let video = VideoOptions::from_profile(&model_profile).map_err(|(key, why)| SetupError {
            provider: name.to_string(),
            message: format!("providers.{name}.models.\"{model}\".{key} {why}"),
        })?;
        let limit = model_profile.max_images_per_request.unwrap_or(u32::MAX).max(1);
        let mut endpoint = format!("{root}/chat/completions");
        if let Some(version) = &profile.api_version {
            endpoint.push_str("?api-version=");
            endpoint.push_str(version);
        }
        Ok(Self {
            name: name.to_string(),
            model,
            endpoint,
            http,
            detail: profile.detail.unwrap_or(ImageDetail::Auto),
            jpeg_quality: config.sampling.jpeg_quality,
            token_limit: match profile.output_cap_field {
                Some(OutputCapField::MaxCompletionTokens) => TokenLimitField::MaxCompletionTokens,
                _ => TokenLimitField::MaxTokens,
            },
            model_profile,
            price,
            frames_per_call: profile.frames_per_call.unwrap_or(1).clamp(1, limit),
            video,
        })
    }

    fn options(&self, job: &Job) -> RequestOptions {
        let schema = (job.structured() && self.model_profile.json_schema.unwrap_or(false))
            .then(|| ResponseSchema { name: "timeline".into(), schema: crate::timeline::json_schema() });
        RequestOptions { detail: self.detail, token_limit: self.token_limit, response_schema: schema }
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        self.http.error(class, message)
    }

    /// One HTTP exchange: the answer, or a classified error.
    async fn call(&self, job: &Job) -> Result<ParsedAnswer, ProviderError> {
        let request = match (&job.input, &self.video) {
            (JobInput::Video { path, .. }, Some(options)) => {
                let data = video::load(path, self.max_request_bytes()).await.map_err(|e| {
                    let mut err = match e {
                        LoadError::TooLarge(why) => self.error(ErrorClass::FallBack, why),
                        LoadError::Read(why) => {
                            self.error(ErrorClass::FallBack, format!("cannot read the video: {why}"))
                        }
                    };
                    err.video_unusable = true;
                    err
                })?;
                translate::build_video_request(job, &data, options, &self.model, &self.options(job), &self.name)?
            }
            _ => translate::build_request(job, &self.model, &self.options(job), &self.name)?,
        };
        let body =
            request.to_json().map_err(|e| self.error(ErrorClass::Fatal, format!("cannot write the request: {e}")))?;
        let answer =
            self.http.request(Method::POST, &self.endpoint).json_bytes(body).send().await.map_err(|mut e| {
                // A server that refuses the video (not supported, malformed, too
                // large) may still take its frames.
                let refused = matches!(e.cause, Cause::Unsupported | Cause::InvalidRequest) || e.status == Some(413);
                if matches!(job.input, JobInput::Video { .. }) && refused && !e.disables_provider {
                    e.video_unusable = true;
                }
                e
            })?;
        translate::parse_response(&answer.body, job, &self.name)
    }

    /// The largest request body the service takes.
    fn max_request_bytes(&self) -> u64 {
        self.model_profile.max_request_bytes.unwrap_or(20 << 20)
    }

    fn redact(&self, text: &str) -> String {
        self.http.redact(text)
    }

    /// What the answer cost, and what is doubtful about it: usage that
    /// cannot be read is billed at the estimate; a cut answer is kept.
    fn usage(&self, answer: &ParsedAnswer, job: &Job, fallback: &Estimate, warnings: &mut Vec<String>) -> Usage {
        let reported = answer.usage.as_ref().map(|t| Usage {
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_usd: cost::actual_cost(t, &self.price),
        });
        let cut = answer.truncated.then_some("finish_reason \"length\"");
        let unusable = answer.unusable_usage.as_deref();
        usage::settle(&self.name, reported, unusable, cut, job.max_output_tokens, fallback, warnings)
    }

    /// How answers are held to the timeline JSON: by the schema, where the model takes one.
    fn constraint(&self) -> Constraint {
        Constraint::schema_if(self.model_profile.json_schema.unwrap_or(false))
    }
}

#[async_trait]
impl Provider for OpenAiCompat {
    fn id(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// Everything besides the job that changes what is sent: the images'
    /// detail and JPEG quality, and whether answers are held to a schema.
    fn settings_key(&self) -> String {
        let key = format!(
            "detail={:?};jpeg_quality={};json_schema={}",
            self.detail,
            self.jpeg_quality,
            self.model_profile.json_schema.unwrap_or(false)
        );
        match &self.video {
            // How the video is sent and sampled changes what the model sees.
            Some(v) => format!("{key};video={:?},{:?},{},{:?}", v.part, v.sampling, v.fps, v.max_frames),
            None => key,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_video: self.video.is_some(),
            // The server samples the whole file: a range must arrive cut.
            video_offsets: false,
            max_images_per_call: self.frames_per_call,
            max_inline_bytes: self.max_request_bytes(),
            json_schema: self.model_profile.json_schema.unwrap_or(false),
            audio: false,
            offline: false,
            rgb_frames: false,
            context_tokens: self.model_profile.context_tokens,
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        // A range's cut is smaller; its size is checked when it is read.
        if let (JobInput::Video { range: None, size_bytes, .. }, Some(_)) = (&job.input, &self.video) {
            if let Some(why) = video::over_limit(*size_bytes, self.max_request_bytes()) {
                let mut err = self.error(ErrorClass::FallBack, why);
                err.video_unusable = true;
                return Err(err);
            }
        }
        if let JobInput::Frames(frames) = &job.input {
            let limit = self.model_profile.max_images_per_request.unwrap_or(u32::MAX);
            if frames.len() as u64 > limit as u64 {
                return Err(self.error(
                    ErrorClass::FallBack,
                    format!("{} images in one call is over the model's limit of {limit}", frames.len()),
                ));
            }
            if let Some(cap) = self.model_profile.max_request_bytes {
                // Base64 grows the JPEG bytes by a third.
                let bytes: u64 = frames.iter().map(|f| (f.data.bytes().len() as u64).div_ceil(3) * 4 + 64).sum();
                if bytes > cap {
                    return Err(self.error(
                        ErrorClass::FallBack,
                        format!("{bytes} bytes of images in one call is over the provider's limit of {cap} bytes"),
                    ));
                }
            }
        }
        structured::estimate(job, self.constraint(), |job| {
            Ok(cost::estimate(job, &self.model_profile, &self.price, self.detail))
        })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.answer(job).await.map_err(|e| e.redacted(|text| self.redact(text)))
    }
}

impl OpenAiCompat {
    async fn answer(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        structured::answer(&self.name, job, self.constraint(), |job| async move {
            let estimate = cost::estimate(&job, &self.model_profile, &self.price, self.detail);
            let answer = self.call(&job).await?;
            let mut warnings = Vec::new();
            let usage = self.usage(&answer, &job, &estimate, &mut warnings);
            let model = answer.model.unwrap_or_else(|| self.model.clone());
            Ok(RawAnswer { text: answer.text, usage, model, warnings })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(edit: impl FnOnce(&mut ProviderProfile, &mut Config)) -> String {
        let mut profile = crate::provider::test_profile(Protocol::Openai, "vision-test");
        let mut config = Config::default();
        edit(&mut profile, &mut config);
        OpenAiCompat::from_profile("openai", &profile, &config).unwrap().settings_key()
    }

    #[test]
    fn every_setting_that_changes_the_request_changes_the_journal_key() {
        let base = key(|_, _| {});
        assert_eq!(base, key(|_, _| {}));
        assert_ne!(base, key(|p, _| p.detail = Some(ImageDetail::Low)), "detail");
        assert_ne!(key(|p, _| p.detail = Some(ImageDetail::Low)), key(|p, _| p.detail = Some(ImageDetail::High)));
        assert_ne!(base, key(|_, c| c.sampling.jpeg_quality = 50), "JPEG quality");
        let video = |fps: f64| {
            move |p: &mut ProviderProfile, _: &mut Config| {
                let model = ModelProfile { video_fps: Some(fps), ..super::super::video::qwen_on_vllm() };
                p.models.insert("vision-test".into(), model);
            }
        };
        assert_ne!(base, key(video(2.0)), "native video");
        assert_ne!(key(video(2.0)), key(video(1.0)), "the video's rate");
    }

    #[test]
    fn a_native_video_profile_missing_a_key_is_named() {
        let mut profile = crate::provider::test_profile(Protocol::Openai, "vision-test");
        let model = ModelProfile { video_tokens_per_frame: None, ..super::super::video::qwen_on_vllm() };
        profile.models.insert("vision-test".into(), model);
        let err = OpenAiCompat::from_profile("vllm", &profile, &Config::default()).unwrap_err();
        assert!(err.message.contains("providers.vllm.models.\"vision-test\".video_tokens_per_frame"), "{err}");
    }
}
