//! The one place the OpenAI-compatible backend does I/O: one HTTP call per
//! `run` (two when a structured answer needs its one repair).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::cost;
use super::translate::{self, ParsedAnswer, RequestOptions, ResponseSchema, TokenLimitField};
use crate::config::{AuthScheme, Config, ImageDetail, ModelProfile, OutputCapField, Price, Protocol, ProviderProfile};
use crate::provider::http::{self, BodyError, QuotaLeft};
use crate::provider::usage;
use crate::provider::{
    Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput, SetupError,
};
use crate::schema::{Observation, TimeRange, Usage};
use crate::secret::Secret;

/// Answers larger than this are refused rather than held in memory.
const BODY_LIMIT: usize = 8 << 20;
/// Error bodies are read only this far.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// A Chat Completions endpoint, built from a profile.
#[derive(Debug)]
pub struct OpenAiCompat {
    name: String,
    model: String,
    endpoint: String,
    auth: AuthScheme,
    key: Option<Secret>,
    http: reqwest::Client,
    detail: ImageDetail,
    /// The quality frames were encoded at (the extraction's, or the RGB
    /// conversion's): part of what is sent.
    jpeg_quality: u8,
    token_limit: TokenLimitField,
    model_profile: ModelProfile,
    price: Price,
    frames_per_call: u32,
    wait_cap: Duration,
    /// Set by a 401 or 403: the provider is skipped for the rest of the run.
    disabled: AtomicBool,
    /// Quota headers said to hold off until then.
    pause_until: Mutex<Option<Instant>>,
}

impl OpenAiCompat {
    /// Build the provider called `name` from its profile.
    ///
    /// # Errors
    /// A missing base URL, model, price, or key variable, named with the config key.
    pub fn from_profile(name: &str, profile: &ProviderProfile, config: &Config) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError { provider: name.to_string(), message };
        if profile.protocol != Some(Protocol::Openai) {
            return Err(fail(format!("providers.{name}.protocol is not \"openai\"")));
        }
        let base = profile.base_url.as_deref().ok_or_else(|| fail(format!("providers.{name}.base_url is not set")))?;
        let model = profile.model.clone().ok_or_else(|| fail(format!("providers.{name}.model is not set")))?;
        let price = profile.price_for(&model).ok_or_else(|| {
            fail(format!("no price for model `{model}`: set [providers.{name}.price] or [providers.{name}.models.\"{model}\".price]"))
        })?;
        let auth = profile.auth_scheme();
        let key = match (&profile.api_key_env, auth) {
            (_, AuthScheme::None) => None,
            (None, _) => return Err(fail(format!("providers.{name}.api_key_env is not set"))),
            (Some(var), _) => Some(Secret::from_env(var).ok_or_else(|| {
                fail(format!("the environment variable {var} (providers.{name}.api_key_env) is not set"))
            })?),
        };
        let model_profile = profile.model_profile(&model).cloned().unwrap_or_default();
        let limit = model_profile.max_images_per_request.unwrap_or(u32::MAX).max(1);
        let mut endpoint = format!("{}/chat/completions", base.trim_end_matches('/'));
        if let Some(version) = &profile.api_version {
            endpoint.push_str("?api-version=");
            endpoint.push_str(version);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            model,
            endpoint,
            auth,
            key,
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
            wait_cap: crate::timecode::seconds(config.retry.max_wait_s),
            disabled: AtomicBool::new(false),
            pause_until: Mutex::new(None),
        })
    }

    fn options(&self, job: &Job) -> RequestOptions {
        let schema = (job.structured() && self.model_profile.json_schema.unwrap_or(false))
            .then(|| ResponseSchema { name: "timeline".into(), schema: crate::timeline::json_schema() });
        RequestOptions { detail: self.detail, token_limit: self.token_limit, response_schema: schema }
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
        let request = translate::build_request(job, &self.model, &self.options(job), &self.name)?;
        let body =
            request.to_json().map_err(|e| self.error(ErrorClass::Fatal, format!("cannot write the request: {e}")))?;
        let mut builder =
            self.http.post(&self.endpoint).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        builder = match (&self.key, self.auth) {
            (Some(key), AuthScheme::ApiKeyHeader) => builder.header("api-key", key.expose()),
            (Some(key), AuthScheme::GoogApiKey) => builder.header("x-goog-api-key", key.expose()),
            (Some(key), _) => builder.bearer_auth(key.expose()),
            (None, _) => builder,
        };
        let response = builder.send().await.map_err(|e| self.send_error(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(pause) = QuotaLeft::from_headers(&headers).pause() {
            *self.pause_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + pause.min(self.wait_cap));
        }
        if !response.status().is_success() {
            let body = http::read_capped(response, ERROR_BODY_LIMIT).await.unwrap_or_default();
            let body = self.redact(&String::from_utf8_lossy(&body));
            let mut err = translate::http_error(&self.name, status, &body, http::retry_after(&headers), self.wait_cap);
            match http::should_retry(&headers) {
                Some(false) => err.class = ErrorClass::FallBack,
                Some(true)
                    if err.class == ErrorClass::FallBack && err.retry_after.is_none_or(|w| w <= self.wait_cap) =>
                {
                    err.class = ErrorClass::Transient
                }
                _ => {}
            }
            if body.contains("not supported") {
                // e.g. llama-server's 500 "image input is not supported": asking again changes nothing.
                err.class = ErrorClass::FallBack;
            }
            if body.contains("insufficient_quota") {
                err.class = ErrorClass::FallBack;
                err.message = format!("HTTP {status}: the account has no quota left (insufficient_quota)");
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
        let detail = self.redact(&crate::secret::redact_urls(&http::error_chain(e)));
        let mut err = if e.is_timeout() {
            let mut err = self.error(ErrorClass::Transient, format!("timed out: {detail}"));
            err.maybe_billed = true;
            err
        } else if e.is_connect() {
            let mut err =
                self.error(ErrorClass::Transient, format!("cannot connect to {}: {detail}", self.endpoint_host()));
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

    fn endpoint_host(&self) -> String {
        reqwest::Url::parse(&self.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0))))
            .unwrap_or_else(|| self.endpoint.clone())
    }

    fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(key) => key.redact(text),
            None => text.to_string(),
        }
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
                format!("{} (finish_reason \"length\")", usage::cut_at_cap(&self.name, job.max_output_tokens));
            tracing::warn!("{warning}");
            warnings.push(warning);
        }
        match answer.usage {
            Some(ref t) => Usage {
                input_tokens: t.input_tokens,
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

    fn observations(&self, job: &Job, text: &str, model: &str) -> Vec<Observation> {
        let observation = |range: TimeRange, text: &str| Observation {
            range,
            text: text.trim().to_string(),
            provider: self.name.clone(),
            model: Some(model.to_string()),
        };
        let range = job.input.frames_span().unwrap_or(TimeRange { start_ms: 0, end_ms: 1 });
        vec![observation(range, text)]
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
        format!(
            "detail={:?};jpeg_quality={};json_schema={}",
            self.detail,
            self.jpeg_quality,
            self.model_profile.json_schema.unwrap_or(false)
        )
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_video: false,
            video_offsets: false,
            max_images_per_call: self.frames_per_call,
            max_inline_bytes: self.model_profile.max_request_bytes.unwrap_or(20 << 20),
            json_schema: self.model_profile.json_schema.unwrap_or(false),
            audio: false,
            offline: false,
            rgb_frames: false,
            context_tokens: self.model_profile.context_tokens,
        }
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
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
        let mut estimate = cost::estimate(job, &self.model_profile, &self.price, self.detail);
        if job.structured() {
            // One repair call may follow a malformed answer.
            estimate.input_tokens *= 2;
            estimate.output_tokens *= 2;
            estimate.cost_usd *= 2.0;
        }
        Ok(estimate)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.answer(job).await.map_err(|e| e.redacted(|text| self.redact(text)))
    }
}

impl OpenAiCompat {
    async fn answer(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(self.error(ErrorClass::FallBack, "disabled for this run: it refused our credentials"));
        }
        let estimate = cost::estimate(job, &self.model_profile, &self.price, self.detail);
        let answer = self.call(job).await?;
        let mut warnings = Vec::new();
        let mut usage = self.usage(&answer, job, &estimate, &mut warnings);
        let model = answer.model.clone().unwrap_or_else(|| self.model.clone());
        if !job.structured() {
            let observations = self.observations(job, &answer.text, &model);
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
        let second = self.call(&repair).await.map_err(|mut e| {
            e.maybe_billed = true;
            e
        })?;
        usage.add(&self.usage(&second, job, &estimate, &mut warnings));
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

    fn events(&self, events: Vec<crate::schema::Event>, model: &str) -> Vec<Observation> {
        events
            .into_iter()
            .map(|e| Observation {
                range: TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) },
                text: e.text,
                provider: self.name.clone(),
                model: Some(model.to_string()),
            })
            .collect()
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
    }
}
