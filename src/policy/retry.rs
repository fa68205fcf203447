//! The one retry loop: transient failures are tried again after a backoff
//! with jitter, or after exactly the wait the provider asked for. A wait longer
//! than the cap is not slept: the next provider takes over. Each attempt
//! asks the provider's breaker first; a benched provider ends the loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{AttemptLog, Breaker};
use crate::provider::{ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};
use crate::schema::{Attempt, Outcome};

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub max_attempts: u32,
    /// The first backoff; it doubles each attempt.
    pub base: Duration,
    pub max_backoff: Duration,
    /// A provider's requested wait above this is handed to the next provider.
    pub wait_cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            wait_cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt + 1`: doubling, capped, with full jitter
    /// over its upper half so parallel callers spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        capped / 2 + capped.mul_f64(rand::random::<f64>() / 2.0)
    }
}

pub struct Retry {
    inner: Arc<dyn Provider>,
    backoff: Backoff,
    log: AttemptLog,
    /// The provider's breaker, and how long it benches the provider.
    breaker: Option<(Arc<Breaker>, Duration)>,
}

impl Retry {
    pub fn new(inner: Arc<dyn Provider>, backoff: Backoff, log: AttemptLog) -> Self {
        Self { inner, backoff, log, breaker: None }
    }

    /// Every attempt passes `breaker` (shared by all requests on the provider)
    /// and counts in it; tripped, it benches the provider for `cooldown`.
    pub fn with_breaker(mut self, breaker: Arc<Breaker>, cooldown: Duration) -> Self {
        self.breaker = Some((breaker, cooldown));
        self
    }

    /// The error for an attempt the breaker refused: the last real failure
    /// when there was one, so the report says what went wrong.
    fn refused(&self, reason: String, last: Option<ProviderError>) -> ProviderError {
        let mut err = match last {
            Some(mut last) => {
                last.message = format!("stopped retrying, {reason}: {}", last.message);
                last
            }
            None => {
                let mut err = ProviderError::new(self.inner.id(), ErrorClass::FallBack, reason);
                err.not_sent = true;
                err
            }
        };
        err.class = ErrorClass::FallBack;
        err
    }

    fn record(&self, started: Instant, estimate: Estimate, result: &Result<ProviderOutput, ProviderError>) {
        let (usage, outcome, model, warnings) = match result {
            Ok(out) => (out.usage, Outcome::Ok, out.model.clone(), out.warnings.clone()),
            Err(e) => {
                let reason = e.to_string();
                let outcome = match e.class {
                    ErrorClass::Transient => Outcome::Transient { reason },
                    ErrorClass::FallBack => Outcome::FellBack { reason },
                    ErrorClass::Fatal => Outcome::Fatal { reason },
                };
                let billed = e.billed.as_deref().copied().unwrap_or_default();
                (billed, outcome, self.inner.model().to_string(), Vec::new())
            }
        };
        self.log.push(Attempt {
            provider: self.inner.id().to_string(),
            model,
            latency_ms: started.elapsed().as_millis() as u64,
            estimated_cost_usd: estimate.cost_usd,
            estimated_input_tokens: estimate.input_tokens,
            usage,
            outcome,
            warnings,
        });
    }
}

#[async_trait]
impl Provider for Retry {
    forward_to_inner!("Retry", estimate);

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let mut attempt = 0;
        let mut last = None;
        loop {
            attempt += 1;
            let ticket = match &self.breaker {
                Some((breaker, cooldown)) => match breaker.admit(*cooldown).await {
                    Ok(ticket) => Some(ticket),
                    Err(reason) => return Err(self.refused(reason, last)),
                },
                None => None,
            };
            let estimate = self.inner.estimate(job).unwrap_or_default();
            let started = Instant::now();
            let result = self.inner.run(job).await;
            if let Some(ticket) = ticket {
                ticket.finish(&result);
            }
            self.record(started, estimate, &result);
            let mut err = match result {
                Ok(output) => return Ok(output),
                Err(err) if !err.is_retryable() => return Err(err),
                Err(err) => err,
            };
            // Nothing answered twice in a row: the host is down or we are
            // offline; the next provider is the better bet than more waiting.
            let give_up = attempt >= self.backoff.max_attempts || (err.unreachable && attempt >= 2);
            if give_up {
                err.class = ErrorClass::FallBack;
                err.message = format!("gave up after {attempt} attempts: {}", err.message);
                return Err(err);
            }
            let wait = match err.retry_after {
                Some(asked) if asked > self.backoff.wait_cap => {
                    err.class = ErrorClass::FallBack;
                    err.message = format!(
                        "asked to wait {:.0} s, over the {:.0} s cap: {}",
                        asked.as_secs_f64(),
                        self.backoff.wait_cap.as_secs_f64(),
                        err.message
                    );
                    return Err(err);
                }
                // Exactly what was asked, plus a little so we land after the reset.
                Some(asked) => asked + Duration::from_millis(rand::random::<u64>() % 50),
                None => self.backoff.delay(attempt),
            };
            tracing::info!(provider = self.inner.id(), attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
            match &self.breaker {
                Some((breaker, _)) => breaker.sleep_unless_benched(wait).await,
                None => tokio::time::sleep(wait).await,
            }
            last = Some(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::{ScriptedProvider, Step};

    use crate::provider::scripted::text_job as job;

    fn fast() -> Backoff {
        Backoff { base: Duration::from_millis(1), max_backoff: Duration::from_millis(4), ..Backoff::default() }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_logged() {
        let p = ScriptedProvider::new("s");
        let steps = [p.transient(None), p.transient(Some(Duration::from_millis(20)))];
        let p = Arc::new(p.with_steps(steps));
        let log = AttemptLog::default();
        let retry = Retry::new(p.clone(), fast(), log.clone());
        let started = Instant::now();
        retry.run(&job()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20), "honours the asked wait");
        assert_eq!(p.calls(), 3);
        let outcomes: Vec<_> = log.snapshot().into_iter().map(|a| a.outcome).collect();
        assert!(matches!(outcomes[..], [Outcome::Transient { .. }, Outcome::Transient { .. }, Outcome::Ok]));
    }

    #[tokio::test]
    async fn a_long_wait_falls_back_without_sleeping() {
        let p = ScriptedProvider::new("s");
        let step = p.transient(Some(Duration::from_secs(3600)));
        let retry = Retry::new(Arc::new(p.with_steps([step])), fast(), AttemptLog::default());
        let started = Instant::now();
        let err = retry.run(&job()).await.unwrap_err();
        assert!(err.should_fall_back() && err.message.contains("over the 30 s cap"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn attempts_run_out_into_a_fall_back() {
        let p = ScriptedProvider::new("s");
        let steps: Vec<Step> = (0..10).map(|_| p.transient(None)).collect();
        let p = Arc::new(p.with_steps(steps));
        let retry = Retry::new(p.clone(), Backoff { max_attempts: 3, ..fast() }, AttemptLog::default());
        let err = retry.run(&job()).await.unwrap_err();
        assert!(err.should_fall_back() && err.message.starts_with("gave up after 3 attempts"), "{err}");
        assert_eq!(p.calls(), 3);
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let b = Backoff::default();
        for attempt in 1..10 {
            let d = b.delay(attempt);
            let full = b.base.saturating_mul(1 << (attempt - 1)).min(b.max_backoff);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }
}
