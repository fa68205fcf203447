//! The Anthropic backend's calls: the shared executor does the HTTP (the
//! `x-api-key` header, `anthropic-version`, the `anthropic-ratelimit-*`
//! pauses, error bodies through the one classification), and the
//! structured-output layer the timeline and find rules.

use std::time::SystemTime;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::Method;

use super::cost;
use super::translate::{self, Limits, ParsedAnswer, RequestOptions};
use crate::config::{Config, ModelProfile, Price, Protocol, ProviderProfile};
use crate::provider::auth::{self, Auth};
use crate::provider::executor::Executor;
use crate::provider::setup::Basics;
use crate::provider::structured::{self, Constraint, RawAnswer};
use crate::provider::usage;
use crate::provider::{Capabilities, Estimate, Job, Provider, ProviderError, ProviderOutput, SetupError};
use crate::schema::Usage;

/// The API version every request names.
const API_VERSION: &str = "2023-06-01";
/// Images in one request when the profile does not say: the API's limit for
/// models with a 200k-token context (600 for the others).
const DEFAULT_IMAGES_PER_REQUEST: u32 = 100;
/// The Messages API's request size limit, 32 MB.
const DEFAULT_REQUEST_BYTES: u64 = 32_000_000;

/// The Messages API, built from a profile.
#[derive(Debug)]
pub struct Anthropic {
    name: String,
    model: String,
    endpoint: String,
    http: Executor,
    /// The quality frames were encoded at: part of what is sent.
    jpeg_quality: u8,
    model_profile: ModelProfile,
    price: Price,
    limits: Limits,
    options: RequestOptions,
    frames_per_call: u32,
}

/// How long the `anthropic-ratelimit-*` headers say to hold off.
fn ratelimit_pause(headers: &HeaderMap) -> Option<std::time::Duration> {
    translate::quota(|name| headers.get(name).and_then(|v| v.to_str().ok()), SystemTime::now()).pause()
}

impl Anthropic {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, or key variable, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let Basics { root, model, price, model_profile } = Basics::from_profile(name, profile, Protocol::Anthropic)?;
        let key = Auth::Header(HeaderName::from_static("x-api-key"), auth::api_key(name, profile)?);
        let wait_cap = crate::timecode::seconds(config.retry.max_wait_s);
        let http = Executor::new(name, key, translate::error_facts, wait_cap)?
            .with_header("anthropic-version", API_VERSION)
            .with_quota_reader(ratelimit_pause);
        let limits = Limits {
            images_per_request: model_profile.max_images_per_request.unwrap_or(DEFAULT_IMAGES_PER_REQUEST).max(1),
            request_bytes: model_profile.max_request_bytes.unwrap_or(DEFAULT_REQUEST_BYTES),
        };
        Ok(Self {
            name: name.to_string(),
            endpoint: format!("{root}/v1/messages"),
            http,
            jpeg_quality: config.sampling.jpeg_quality,
            options: RequestOptions {
                schema: crate::timeline::json_schema(),
                // Models that refuse a forced tool say so in their profile.
                force_tool: model_profile.json_schema != Some(false),
            },
            frames_per_call: profile.frames_per_call.unwrap_or(1).clamp(1, limits.images_per_request),
            limits,
            model_profile,
            price,
            model,
        })
    }

    /// One HTTP exchange: the answer, or a classified error.
    async fn call(&self, job: &Job) -> Result<ParsedAnswer, ProviderError> {
        let request = translate::build_request(job, &self.model, &self.options, &self.name)?;
        let answer = self.http.request(Method::POST, &self.endpoint).json(&request)?.send().await?;
        translate::parse_response(&answer.body, job, &self.name)
    }

    /// What the answer cost, and what is doubtful about it: usage that
    /// cannot be read is billed at the estimate; a cut answer is kept.
    fn usage(&self, answer: &ParsedAnswer, job: &Job, fallback: &Estimate, warnings: &mut Vec<String>) -> Usage {
        let reported = answer.usage.as_ref().map(|t| Usage {
            input_tokens: t.prompt_tokens(),
            output_tokens: t.output_tokens,
            cost_usd: cost::actual_cost(t, &self.price),
        });
        let cut = answer.truncated.then_some("stop_reason \"max_tokens\"");
        let unusable = answer.unusable_usage.as_deref();
        usage::settle(&self.name, reported, unusable, cut, job.max_output_tokens, fallback, warnings)
    }

    fn estimate_once(&self, job: &Job) -> Estimate {
        cost::estimate(job, &self.price, Some(&self.options.schema))
    }

    /// A tool's input is not held to its schema unless the tool is strict, so
    /// a bad timeline gets its one repair.
    fn constraint(&self) -> Constraint {
        Constraint::Free
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn id(&self) -> &str {
        &self.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    /// Everything besides the job that changes what is sent: the JPEG
    /// quality, and whether the timeline tool is forced.
    fn settings_key(&self) -> String {
        format!("jpeg_quality={};force_tool={}", self.jpeg_quality, self.options.force_tool)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_video: false,
            video_offsets: false,
            max_images_per_call: self.frames_per_call,
            max_inline_bytes: self.limits.request_bytes,
            json_schema: self.options.force_tool,
            audio: false,
            offline: false,
            rgb_frames: false,
            context_tokens: self.model_profile.context_tokens,
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        translate::check_limits(job, self.limits, &self.name)?;
        structured::estimate(job, self.constraint(), |job| Ok(self.estimate_once(job)))
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        translate::check_limits(job, self.limits, &self.name)?;
        let answer = structured::answer(&self.name, job, self.constraint(), |job| async move {
            let estimate = self.estimate_once(&job);
            let answer = self.call(&job).await?;
            let mut warnings = Vec::new();
            let usage = self.usage(&answer, &job, &estimate, &mut warnings);
            if let Some(why) = &answer.refusal {
                let mut err = translate::refusal_error(&self.name, why);
                err.billed = Some(Box::new(usage));
                return Err(err);
            }
            let model = answer.model.unwrap_or_else(|| self.model.clone());
            Ok(RawAnswer { text: answer.text, usage, model, warnings })
        })
        .await;
        answer.map_err(|e| self.http.redacted(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(edit: impl FnOnce(&mut ProviderProfile, &mut Config)) -> Result<Anthropic, SetupError> {
        std::env::set_var("VIDGATE_TEST_ANTHROPIC_UNIT_KEY", "sk-ant-unit");
        let mut profile = crate::provider::test_profile(Protocol::Anthropic, "claude-test");
        profile.api_key_env = Some("VIDGATE_TEST_ANTHROPIC_UNIT_KEY".into());
        let mut config = Config::default();
        edit(&mut profile, &mut config);
        Anthropic::from_profile("anthropic", &profile, &config)
    }

    #[test]
    fn every_setting_that_changes_the_request_changes_the_journal_key() {
        let base = provider(|_, _| {}).unwrap().settings_key();
        assert_ne!(base, provider(|_, c| c.sampling.jpeg_quality = 50).unwrap().settings_key(), "JPEG quality");
        let offered = provider(|p, _| {
            p.models.insert("claude-test".into(), ModelProfile { json_schema: Some(false), ..ModelProfile::default() });
        })
        .unwrap();
        assert_ne!(base, offered.settings_key(), "a forced tool or an offered one");
        assert!(!offered.capabilities().json_schema);
    }

    #[test]
    fn a_profile_missing_what_the_api_needs_is_named() {
        let err = provider(|p, _| p.api_key_env = None).unwrap_err();
        assert_eq!(err.message, "providers.anthropic.api_key_env is not set");
        let err = provider(|p, _| p.protocol = Some(Protocol::Openai)).unwrap_err();
        assert!(err.message.contains("is not \"anthropic\""), "{}", err.message);
        let err = provider(|p, _| p.api_key_env = Some("VIDGATE_TEST_ANTHROPIC_UNSET".into())).unwrap_err();
        assert!(err.message.contains("VIDGATE_TEST_ANTHROPIC_UNSET"), "{}", err.message);
        let p = provider(|p, _| p.base_url = Some("https://api.anthropic.com/".into())).unwrap();
        assert_eq!(p.endpoint, "https://api.anthropic.com/v1/messages");
        assert_eq!(p.frames_per_call, 1);
        assert_eq!(p.capabilities().max_inline_bytes, DEFAULT_REQUEST_BYTES);
    }
}
