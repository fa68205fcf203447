//! The outermost policy: try providers in order, hand a unit to the next one
//! when a provider says "fall back", and skip a provider its breaker has
//! benched instead of paying for its failures. The breakers count each call
//! (in [`super::Retry`]); the chain only reads them.

use std::sync::Arc;

use async_trait::async_trait;

use super::Breaker;
use crate::provider::{Capabilities, Cause, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

pub struct FallbackChain {
    providers: Vec<Arc<dyn Provider>>,
    breakers: Vec<Arc<Breaker>>,
}

impl FallbackChain {
    /// A chain whose providers are never skipped.
    pub fn new(providers: Vec<Arc<dyn Provider>>) -> Self {
        let breakers = providers.iter().map(|_| Arc::default()).collect();
        Self { providers, breakers }
    }

    /// A chain that skips a provider while its breaker (one per provider, in
    /// order, the one its retry loop counts in) has it benched.
    pub fn with_breakers(providers: Vec<Arc<dyn Provider>>, breakers: Vec<Arc<Breaker>>) -> Self {
        assert_eq!(providers.len(), breakers.len(), "one breaker per provider");
        Self { providers, breakers }
    }

    fn benched(&self, i: usize) -> bool {
        self.breakers[i].is_benched()
    }

    /// The providers, in the order they are tried.
    pub fn members(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// Whether provider `i` is sitting out a cooldown now.
    pub fn is_benched(&self, i: usize) -> bool {
        self.benched(i)
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

    /// The first member's layers below the chain: every member is built alike.
    fn layers(&self) -> Vec<&'static str> {
        let mut layers = vec!["FallbackChain"];
        layers.extend(self.providers.first().map(|p| p.layers()).unwrap_or_default());
        layers
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
        let mut all_over_budget = !self.providers.is_empty();
        for (i, provider) in self.providers.iter().enumerate() {
            if self.benched(i) {
                reasons.push(format!("{}: benched for a cooldown after failing", provider.id()));
                (all_unreachable, all_over_budget) = (false, false);
                continue;
            }
            match provider.run(job).await {
                Ok(output) => return Ok((i, output)),
                Err(e) if e.class == ErrorClass::Fatal => return Err(e),
                Err(e) => {
                    all_unreachable &= e.unreachable;
                    all_over_budget &= e.cause == Cause::Budget;
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
        if all_over_budget {
            err.cause = Cause::Budget;
        }
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::{AttemptLog, Backoff, Retry};
    use crate::provider::scripted::{ScriptedProvider, Step};
    use crate::schema::Usage;

    use crate::provider::scripted::text_job as job;

    const COOLDOWN: Duration = Duration::from_secs(60);

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

    /// `p` behind a retry loop that counts each attempt in `breaker`, as a request builds it.
    fn guarded(p: Arc<ScriptedProvider>, breaker: &Arc<Breaker>) -> Arc<dyn Provider> {
        let backoff = Backoff { base: Duration::from_millis(100), ..Backoff::default() };
        Arc::new(Retry::new(p, backoff, AttemptLog::default()).with_breaker(breaker.clone(), COOLDOWN))
    }

    /// A chain of `a` (behind its breaker) then `b`.
    fn chain_of(a: &Arc<ScriptedProvider>, b: &Arc<ScriptedProvider>) -> (Arc<FallbackChain>, Arc<Breaker>) {
        let breaker = Arc::new(Breaker::default());
        let providers = vec![guarded(a.clone(), &breaker), b.clone()];
        (Arc::new(FallbackChain::with_breakers(providers, vec![breaker.clone(), Arc::default()])), breaker)
    }

    /// `n` units at once; who answered each.
    async fn units_at_once(chain: &Arc<FallbackChain>, n: usize) -> Vec<String> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let chain = chain.clone();
            set.spawn(async move { chain.run(&job()).await.map(|o| o.observations[0].provider.clone()) });
        }
        let mut by = Vec::new();
        while let Some(done) = set.join_next().await {
            by.push(done.unwrap().unwrap());
        }
        by.sort();
        by
    }

    #[tokio::test]
    async fn a_failing_provider_hands_over_to_the_next() {
        let (a, b) = (fails("a", 1), answers("b"));
        let chain = FallbackChain::new(vec![a.clone(), b.clone()]);
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
        let chain = FallbackChain::new(vec![a, b.clone()]);
        assert_eq!(chain.run(&job()).await.unwrap_err().message, "bad input");
        assert_eq!(b.calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_keeps_failing_is_benched_for_the_cooldown() {
        let a = fails("a", 10);
        let b = Arc::new(ScriptedProvider::new("b"));
        let (chain, _) = chain_of(&a, &b);
        for _ in 0..5 {
            chain.run(&job()).await.unwrap();
        }
        assert_eq!(a.calls(), 3, "benched after three failures in a row");
        tokio::time::advance(Duration::from_secs(61)).await;
        chain.run(&job()).await.unwrap();
        assert_eq!(a.calls(), 4, "tried again after the cooldown");
        chain.run(&job()).await.unwrap();
        assert_eq!(a.calls(), 4, "the failed probe benches it again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_provider_gets_a_handful_of_calls_whatever_the_concurrency() {
        for units in [4, 16] {
            // Each 503 takes a moment, so all units are out before the first comes back.
            let slow_503 = Step::Delay(Duration::from_millis(50), Box::new(ScriptedProvider::new("a").transient(None)));
            let a = Arc::new(ScriptedProvider::new("a").with_fallback(slow_503));
            let b = Arc::new(ScriptedProvider::new("b"));
            let (chain, breaker) = chain_of(&a, &b);
            let by = units_at_once(&chain, units).await;
            assert_eq!(by, vec!["b".to_string(); units], "every unit fell back to b");
            // Each unit alone would have tried four times.
            assert!(a.calls() <= 4, "{units} units: {} calls to a dead provider", a.calls());
            assert!(breaker.is_benched());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cooldown_one_probe_goes_out_and_the_rest_fall_back() {
        let a = fails("a", 3);
        let b = Arc::new(ScriptedProvider::new("b"));
        let (chain, breaker) = chain_of(&a, &b);
        for _ in 0..3 {
            chain.run(&job()).await.unwrap();
        }
        assert!(breaker.is_benched());
        tokio::time::advance(COOLDOWN).await;
        // The probe takes a while to answer; four units come meanwhile.
        let answer = Step::Answer { text: "from a".into(), usage: Usage::default() };
        let a =
            Arc::new(ScriptedProvider::new("a").with_steps([Step::Delay(Duration::from_secs(5), Box::new(answer))]));
        let (b2, fresh) = (Arc::new(ScriptedProvider::new("b")), breaker.clone());
        let providers = vec![guarded(a.clone(), &fresh), b2.clone()];
        let chain = Arc::new(FallbackChain::with_breakers(providers, vec![fresh, Arc::default()]));
        let by = units_at_once(&chain, 5).await;
        assert_eq!(a.calls(), 1, "one probe");
        assert_eq!(by, ["a", "b", "b", "b", "b"]);
        assert!(!breaker.is_benched(), "the probe was answered");
        assert_eq!(units_at_once(&chain, 3).await, ["a", "a", "a"]);
    }

    #[tokio::test]
    async fn when_all_fail_the_error_lists_each() {
        let chain = FallbackChain::new(vec![fails("a", 1), fails("b", 1)]);
        let err = chain.run(&job()).await.unwrap_err();
        assert_eq!(err.message, "every provider failed: a: down; b: down");
    }
}
