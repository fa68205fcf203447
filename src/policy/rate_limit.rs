//! Requests per minute, tokens per minute and a concurrency cap, per provider.
//! Both limiters must pass; a request larger than the token allowance is
//! refused at once rather than waited on forever.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::config::RateLimits;
use crate::provider::{Capabilities, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

pub struct RateLimited {
    inner: Arc<dyn Provider>,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, u32)>,
    slots: Option<Arc<Semaphore>>,
}

impl RateLimited {
    pub fn new(inner: Arc<dyn Provider>, limits: &RateLimits) -> Self {
        let per_minute = |n: u64| NonZeroU32::new(n.min(u32::MAX as u64) as u32).map(Quota::per_minute);
        Self {
            inner,
            requests: limits.requests_per_minute.and_then(|n| per_minute(n as u64)).map(RateLimiter::direct),
            tokens: limits
                .tokens_per_minute
                .and_then(|n| per_minute(n).map(|q| (RateLimiter::direct(q), n.min(u32::MAX as u64) as u32))),
            slots: limits.max_concurrency.filter(|n| *n > 0).map(|n| Arc::new(Semaphore::new(n as usize))),
        }
    }

    fn check_size(&self, estimate: &Estimate) -> Result<u32, ProviderError> {
        let tokens = estimate.input_tokens.saturating_add(estimate.output_tokens);
        if let Some((_, per_minute)) = &self.tokens {
            if tokens > *per_minute as u64 {
                return Err(ProviderError::new(
                    self.inner.id(),
                    ErrorClass::FallBack,
                    format!("one call of ~{tokens} tokens is over the provider's limit of {per_minute} tokens per minute"),
                ));
            }
        }
        Ok(tokens.clamp(1, u32::MAX as u64) as u32)
    }
}

#[async_trait]
impl Provider for RateLimited {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn model(&self) -> &str {
        self.inner.model()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        let estimate = self.inner.estimate(job)?;
        self.check_size(&estimate)?;
        Ok(estimate)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let tokens = self.check_size(&self.inner.estimate(job)?)?;
        let _slot = match &self.slots {
            Some(slots) => Some(slots.clone().acquire_owned().await.map_err(|_| {
                ProviderError::new(self.inner.id(), ErrorClass::Fatal, "the concurrency limiter was closed")
            })?),
            None => None,
        };
        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let Some((limiter, _)) = &self.tokens {
            let n = NonZeroU32::new(tokens).unwrap_or(NonZeroU32::MIN);
            limiter.until_n_ready(n).await.map_err(|e| {
                ProviderError::new(self.inner.id(), ErrorClass::FallBack, format!("token limiter: {e}"))
            })?;
        }
        self.inner.run(job).await
    }
}
