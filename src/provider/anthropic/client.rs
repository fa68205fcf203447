//! The one place the Anthropic backend does I/O: one HTTP call per `run`
//! (two when a structured answer needs its one repair).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;

use super::cost;
use super::translate::{self, Limits, ParsedAnswer, RequestOptions};
use crate::config::{Config, ModelProfile, Price, Protocol, ProviderProfile};
use crate::provider::http::{self, BodyError};
use crate::provider::usage;
use crate::provider::{Capabilities, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput, SetupError};
use crate::schema::{Observation, TimeRange, Usage};
use crate::secret::Secret;

/// The API version every request names.
const API_VERSION: &str = "2023-06-01";
/// Answers larger than this are refused rather than held in memory.
const BODY_LIMIT: usize = 8 << 20;
/// Error bodies are read only this far.
const ERROR_BODY_LIMIT: usize = 64 << 10;
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
    key: Secret,
    http: reqwest::Client,
    /// The quality frames were encoded at: part of what is sent.
    jpeg_quality: u8,
    model_profile: ModelProfile,
    price: Price,
    limits: Limits,
    options: RequestOptions,
    frames_per_call: u32,
    wait_cap: Duration,
    /// Set by a 401 or 403: the provider is skipped for the rest of the run.
    disabled: AtomicBool,
    /// Rate-limit headers said to hold off until then.
    pause_until: Mutex<Option<Instant>>,
}

impl Anthropic {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, or key variable, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::Anthropic) {
            return Err(fail(format!("providers.{name}.protocol is not \"anthropic\"")));
        }
        let base = profile.base_url.as_deref().ok_or_else(|| fail(format!("providers.{name}.base_url is not set")))?;
        let model = profile.model.clone().ok_or_else(|| fail(format!("providers.{name}.model is not set")))?;
        let price = profile.price_for(&model).ok_or_else(|| {
            fail(format!("no price for model `{model}`: set [providers.{name}.price] or [providers.{name}.models.\"{model}\".price]"))
        })?;
        let var =
            profile.api_key_env.as_deref().ok_or_else(|| fail(format!("providers.{name}.api_key_env is not set")))?;
        let key = Secret::from_env(var)
            .ok_or_else(|| fail(format!("the environment variable {var} (providers.{name}.api_key_env) is not set")))?;
        let model_profile = profile.model_profile(&model).cloned().unwrap_or_default();
        let limits = Limits {
            images_per_request: model_profile.max_images_per_request.unwrap_or(DEFAULT_IMAGES_PER_REQUEST).max(1),
            request_bytes: model_profile.max_request_bytes.unwrap_or(DEFAULT_REQUEST_BYTES),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            endpoint: format!("{}/v1/messages", base.trim_end_matches('/')),
            key,
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
            wait_cap: crate::timecode::seconds(config.retry.max_wait_s),
            disabled: AtomicBool::new(false),
            pause_until: Mutex::new(None),
        })
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(self.name.clone(), class, message)
    }

    /// One HTTP exchange: the answer, or a classified error.
    async fn call(&self, job: &Job) -> Result<ParsedAnswer, ProviderError> {
        let pause = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = pause {
            tokio::time::sleep_until(until).await;
        }
        let request = translate::build_request(job, &self.model, &self.options, &self.name)?;
        let body = serde_json::to_vec(&request)
            .map_err(|e| self.error(ErrorClass::Fatal, format!("cannot write the request: {e}")))?;
        let response = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-api-key", self.key.expose())
            .header("anthropic-version", API_VERSION)
            .body(body)
            .send()
            .await
            .map_err(|e| self.send_error(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(pause) = translate::quota(header, SystemTime::now()).pause() {
            *self.pause_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + pause.min(self.wait_cap));
        }
        if !response.status().is_success() {
            let body = http::read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
            let body = self.key.redact(&String::from_utf8_lossy(&body));
            let mut err = translate::http_error(&self.name, status, &body, http::retry_after(&headers), self.wait_cap);
            if let Some(false) = http::should_retry(&headers) {
                err.class = ErrorClass::FallBack;
            }
            if err.disables_provider {
                self.disabled.store(true, Ordering::SeqCst);
            }
            return Err(err);
        }
        let body = http::read_capped(response, BODY_LIMIT).await.map_err(|e| {
            let class = match e {
                BodyError::TooLarge { .. } => ErrorClass::FallBack,
                BodyError::Broken(_) => ErrorClass::Transient,
            };
            let mut err = self.error(class, e.to_string());
            err.maybe_billed = true;
            err
        })?;
        translate::parse_response(&body, job, &self.name)
    }

    fn send_error(&self, e: &reqwest::Error) -> ProviderError {
        let detail = self.key.redact(&crate::secret::redact_urls(&http::error_chain(e)));
        let mut err = if e.is_timeout() {
            let mut err = self.error(ErrorClass::Transient, format!("timed out: {detail}"));
            err.maybe_billed = true;
            err
        } else if e.is_connect() {
            let mut err = self.error(ErrorClass::Transient, format!("cannot connect: {detail}"));
            err.unreachable = true;
            err
        } else {
            let mut err = self.error(ErrorClass::Transient, format!("the request failed: {detail}"));
            err.maybe_billed = true;
            err
        };
        err.status = e.status().map(|s| s.as_u16());
        err
    }

    /// What the answer cost, and what is doubtful about it: usage that
    /// cannot be read is billed at the estimate; a cut answer is kept.
    fn usage(&self, answer: &ParsedAnswer, job: &Job, fallback: &Estimate, warnings: &mut Vec<String>) -> Usage {
        if let Some(what) = &answer.unusable_usage {
            let warning = usage::unusable(&self.name, what, fallback.cost_usd);
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        if answer.truncated {
            let warning =
                format!("{} (stop_reason \"max_tokens\")", usage::cut_at_cap(&self.name, job.max_output_tokens));
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        match answer.usage {
            Some(ref t) => Usage {
                input_tokens: t.prompt_tokens(),
                output_tokens: t.output_tokens,
                cost_usd: cost::actual_cost(t, &self.price),
            },
            // No usage reported: count the worst case, never less.
            None => Usage {
                input_tokens: fallback.input_tokens,
                output_tokens: fallback.output_tokens,
                cost_usd: fallback.cost_usd,
            },
        }
    }

    fn estimate_once(&self, job: &Job) -> Estimate {
        cost::estimate(job, &self.price, Some(&self.options.schema))
    }

    /// One call, with a refusal turned into its error, billed as reported.
    async fn answer_once(
        &self,
        job: &Job,
        estimate: &Estimate,
        warnings: &mut Vec<String>,
    ) -> Result<(ParsedAnswer, Usage), ProviderError> {
        let answer = self.call(job).await?;
        let usage = self.usage(&answer, job, estimate, warnings);
        if let Some(why) = &answer.refusal {
            let mut err = translate::refusal_error(&self.name, why);
            err.billed = Some(Box::new(usage));
            return Err(err);
        }
        Ok((answer, usage))
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
        let mut estimate = self.estimate_once(job);
        if job.structured() {
            // One repair call may follow a malformed answer.
            estimate.input_tokens *= 2;
            estimate.output_tokens *= 2;
            estimate.cost_usd *= 2.0;
        }
        Ok(estimate)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.answer(job).await.map_err(|e| e.redacted(|text| self.key.redact(text)))
    }
}

impl Anthropic {
    async fn answer(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(self.error(ErrorClass::FallBack, "disabled for this run: it refused our credentials"));
        }
        translate::check_limits(job, self.limits, &self.name)?;
        let estimate = self.estimate_once(job);
        let mut warnings = Vec::new();
        let (answer, mut usage) = self.answer_once(job, &estimate, &mut warnings).await?;
        let model = answer.model.clone().unwrap_or_else(|| self.model.clone());
        if !job.structured() {
            let range = job.input.frames_span().unwrap_or(TimeRange { start_ms: 0, end_ms: 1 });
            let observations = vec![self.observation(range, answer.text.trim().to_string(), &model)];
            return Ok(ProviderOutput { observations, usage, model, warnings });
        }
        let span = job.covered();
        let reason = match crate::timeline::parse_events(&answer.text, span) {
            Ok(events) => {
                return Ok(ProviderOutput { observations: self.events(events, &model), usage, model, warnings })
            }
            Err(reason) => reason,
        };
        tracing::info!(provider = %self.name, %reason, "asking once for a repaired timeline");
        let mut repair = job.clone();
        repair.prompt = format!(
            "{}\n\nYour previous answer could not be used: {reason}. Answer again with only the JSON described above.",
            job.prompt
        )
        .into();
        let (second, more) = self.answer_once(&repair, &estimate, &mut warnings).await.map_err(|mut e| {
            e.maybe_billed = true;
            let mut billed = usage;
            billed.add(e.billed.as_deref().unwrap_or(&Usage::default()));
            e.billed = Some(Box::new(billed));
            e
        })?;
        usage.add(&more);
        match crate::timeline::parse_events(&second.text, span) {
            Ok(events) => Ok(ProviderOutput { observations: self.events(events, &model), usage, model, warnings }),
            Err(reason) => {
                let mut err = self.error(
                    ErrorClass::FallBack,
                    format!("unit failed: the answer stayed invalid after one repair: {reason}"),
                );
                err.maybe_billed = true;
                err.billed = Some(Box::new(usage));
                Err(err)
            }
        }
    }

    fn observation(&self, range: TimeRange, text: String, model: &str) -> Observation {
        Observation { range, text, provider: self.name.clone(), model: Some(model.to_string()) }
    }

    fn events(&self, events: Vec<crate::schema::Event>, model: &str) -> Vec<Observation> {
        events
            .into_iter()
            .map(|e| {
                let range = TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) };
                self.observation(range, e.text, model)
            })
            .collect()
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
        assert_eq!(p.capabilities().max_inline_bytes, DEFAULT_REQUEST_BYTES);
    }
}
