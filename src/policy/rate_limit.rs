//! Requests per minute, tokens per minute and a concurrency cap, per provider.
//! Both limiters must pass; a request larger than the token allowance is
//! refused at once rather than waited on forever.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::config::RateLimits;
use crate::provider::{ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

/// The share of a stated limit that is used.
const SAFETY: f64 = 0.97;

pub struct RateLimited {
    inner: Arc<dyn Provider>,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, u32)>,
    slots: Option<Arc<Semaphore>>,
}

impl RateLimited {
    pub fn new(inner: Arc<dyn Provider>, limits: &RateLimits) -> Self {
        let per_minute = |n: u64| {
            let burst = NonZeroU32::new(n.min(u32::MAX as u64) as u32)?;
            // A minute's allowance as the bucket, refilled a little slower than
            // the limit, so clock skew and jitter never tip a request over it.
            let period = crate::timecode::seconds(60.0 / (burst.get() as f64 * SAFETY));
            Quota::with_period(period).map(|q| q.allow_burst(burst))
        };
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
                    format!(
                        "one call of ~{tokens} tokens is over the provider's limit of {per_minute} tokens per minute"
                    ),
                ));
            }
        }
        Ok(tokens.clamp(1, u32::MAX as u64) as u32)
    }
}

#[async_trait]
impl Provider for RateLimited {
    forward_to_inner!();

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::ScriptedProvider;
    use std::time::Duration;

    use crate::provider::scripted::text_job as job;

    #[tokio::test]
    async fn a_call_larger_than_the_token_allowance_is_refused_at_once() {
        // The scripted provider estimates 200 tokens a call.
        let limits = RateLimits { tokens_per_minute: Some(150), ..RateLimits::default() };
        let p = Arc::new(ScriptedProvider::new("s"));
        let limited = RateLimited::new(p.clone(), &limits);
        let err = limited.estimate(&job()).unwrap_err();
        assert!(err.to_string().contains("~200 tokens is over the provider's limit of 150 tokens per minute"), "{err}");
        let err =
            tokio::time::timeout(Duration::from_secs(1), limited.run(&job())).await.expect("no hang").unwrap_err();
        assert!(err.should_fall_back());
        assert_eq!(p.calls(), 0);
    }

    #[tokio::test]
    async fn requests_per_minute_space_calls_out_after_the_burst() {
        let limits = RateLimits { requests_per_minute: Some(600), ..RateLimits::default() };
        let limited = RateLimited::new(Arc::new(ScriptedProvider::new("s")), &limits);
        let started = std::time::Instant::now();
        for _ in 0..603 {
            limited.run(&job()).await.unwrap();
        }
        // 600 at once, then one every ~103 ms (600 per minute at 97 %).
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    /// On the runtime's paused clock, so the rounds are counted exactly.
    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_holds() {
        use crate::provider::scripted::Step;
        use crate::schema::Usage;
        let steps = (0..6).map(|_| {
            Step::Delay(Duration::from_millis(50), Box::new(Step::Answer { text: "x".into(), usage: Usage::default() }))
        });
        let p = Arc::new(ScriptedProvider::new("s").with_steps(steps));
        let limits = RateLimits { max_concurrency: Some(2), ..RateLimits::default() };
        let limited = Arc::new(RateLimited::new(p, &limits));
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let l = limited.clone();
                tokio::spawn(async move { l.run(&job()).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_millis(150), "six 50 ms calls two at a time take three rounds");
    }
}
