//! The outermost policy: try providers in order, hand a unit to the next one
//! when a provider says "fall back", and bench a provider that keeps failing
//! for a cooldown (a circuit breaker) instead of paying for its failures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::provider::{Capabilities, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

/// Failures in a row that bench a provider.
const TRIP_AFTER: u32 = 3;

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

/// One provider's failures in a row, and until when it is benched. Shared by
/// every chain the provider is in, so a provider benched in one request is
/// benched in the next.
#[derive(Debug, Default)]
pub struct Breaker(Mutex<BreakerState>);

pub struct FallbackChain {
    providers: Vec<Arc<dyn Provider>>,
    breakers: Vec<Arc<Breaker>>,
    cooldown: Duration,
}

impl FallbackChain {
    pub fn new(providers: Vec<Arc<dyn Provider>>, cooldown: Duration) -> Self {
        let breakers = providers.iter().map(|_| Arc::default()).collect();
        Self { providers, breakers, cooldown }
    }

    /// A chain whose providers use these breakers (one per provider, in order).
    pub fn with_breakers(providers: Vec<Arc<dyn Provider>>, breakers: Vec<Arc<Breaker>>, cooldown: Duration) -> Self {
        assert_eq!(providers.len(), breakers.len(), "one breaker per provider");
        Self { providers, breakers, cooldown }
    }

    fn benched(&self, i: usize) -> bool {
        let breaker = self.breakers[i].0.lock().unwrap_or_else(|e| e.into_inner());
        breaker.open_until.is_some_and(|until| Instant::now() < until)
    }

    /// The providers, in the order they are tried.
    pub fn members(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// Whether provider `i` is sitting out a cooldown now.
    pub fn is_benched(&self, i: usize) -> bool {
        self.benched(i)
    }

    fn record(&self, i: usize, failure: Option<&ProviderError>) {
        let mut breaker = self.breakers[i].0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(err) = failure else {
            *breaker = BreakerState::default();
            return;
        };
        if err.not_sent {
            return;
        }
        breaker.failures += 1;
        // Unreachable or refusing our key: the next unit would fail the same way.
        if err.unreachable || err.disables_provider {
            breaker.failures = TRIP_AFTER;
        }
        if breaker.failures >= TRIP_AFTER {
            breaker.open_until = Some(Instant::now() + self.cooldown);
            // Half-open after the cooldown: one more failure benches it again.
            breaker.failures = TRIP_AFTER - 1;
        }
    }
}

#[async_trait]
impl Provider for FallbackChain {
    fn id(&self) -> &str {
        self.providers.first().map_or("chain", |p| p.id())
    }

    fn capabilities(&self) -> Capabilities {
        self.providers.first().map(|p| p.capabilities()).unwrap_or_default()
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        let mut last = None;
        for p in &self.providers {
            match p.estimate(job) {
                Ok(e) => return Ok(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::new("chain", ErrorClass::Fatal, "no provider is configured")))
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.run_unit(job).await.map(|(_, output)| output)
    }
}

impl FallbackChain {
    /// Serve `job` on the first provider that can, skipping benched ones;
    /// returns which provider (its index in [`FallbackChain::members`]) answered.
    ///
    /// # Errors
    /// A fatal error at once; otherwise, when every provider failed, one error
    /// listing each provider's reason (and `unreachable` when none could be reached).
    pub async fn run_unit(&self, job: &Job) -> Result<(usize, ProviderOutput), ProviderError> {
        let mut reasons = Vec::new();
        let mut all_unreachable = !self.providers.is_empty();
        for (i, provider) in self.providers.iter().enumerate() {
            if self.benched(i) {
                reasons.push(format!("{}: benched for a cooldown after failing", provider.id()));
                all_unreachable = false;
                continue;
            }
            match provider.run(job).await {
                Ok(output) => {
                    self.record(i, None);
                    return Ok((i, output));
                }
                Err(e) if e.class == ErrorClass::Fatal => return Err(e),
                Err(e) => {
                    self.record(i, Some(&e));
                    all_unreachable &= e.unreachable;
                    tracing::warn!(provider = provider.id(), error = %e, "falling back to the next provider");
                    reasons.push(e.to_string());
                }
            }
        }
        let mut err = ProviderError::new(
            "chain",
            ErrorClass::FallBack,
            format!(
                "every provider failed: {}",
                if reasons.is_empty() { "none configured".into() } else { reasons.join("; ") }
            ),
        );
        err.unreachable = all_unreachable;
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::{ScriptedProvider, Step};
    use crate::schema::Usage;

    use crate::provider::scripted::text_job as job;

    fn fails(id: &str, n: usize) -> Arc<ScriptedProvider> {
        let steps: Vec<Step> =
            (0..n).map(|_| Step::Fail(ProviderError::new(id, ErrorClass::FallBack, "down"))).collect();
        Arc::new(ScriptedProvider::new(id).with_steps(steps))
    }

    fn answers(id: &str) -> Arc<ScriptedProvider> {
        Arc::new(
            ScriptedProvider::new(id)
                .with_steps([Step::Answer { text: format!("from {id}"), usage: Usage::default() }]),
        )
    }

    #[tokio::test]
    async fn a_failing_provider_hands_over_to_the_next() {
        let (a, b) = (fails("a", 1), answers("b"));
        let chain = FallbackChain::new(vec![a.clone(), b.clone()], Duration::from_secs(60));
        let out = chain.run(&job()).await.unwrap();
        assert_eq!(out.observations[0].text, "from b");
        assert_eq!((a.calls(), b.calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_fatal_error_stops_the_chain() {
        let a = Arc::new(ScriptedProvider::new("a").with_steps([Step::Fail(ProviderError::new(
            "a",
            ErrorClass::Fatal,
            "bad input",
        ))]));
        let b = answers("b");
        let chain = FallbackChain::new(vec![a, b.clone()], Duration::from_secs(60));
        assert_eq!(chain.run(&job()).await.unwrap_err().message, "bad input");
        assert_eq!(b.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_keeps_failing_is_benched_for_the_cooldown() {
        let a = fails("a", 10);
        let b = Arc::new(ScriptedProvider::new("b"));
        let chain = FallbackChain::new(vec![a.clone(), b.clone()], Duration::from_secs(60));
        for _ in 0..5 {
            chain.run(&job()).await.unwrap();
        }
        assert_eq!(a.calls(), 3, "benched after three failures in a row");
        tokio::time::advance(Duration::from_secs(61)).await;
        chain.run(&job()).await.unwrap();
        assert_eq!(a.calls(), 4, "tried again after the cooldown");
        chain.run(&job()).await.unwrap();
        assert_eq!(a.calls(), 4, "one more failure benches it again");
    }

    #[tokio::test]
    async fn when_all_fail_the_error_lists_each() {
        let chain = FallbackChain::new(vec![fails("a", 1), fails("b", 1)], Duration::from_secs(60));
        let err = chain.run(&job()).await.unwrap_err();
        assert_eq!(err.message, "every provider failed: a: down; b: down");
    }
}
