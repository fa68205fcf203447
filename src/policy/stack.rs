//! The one builder of the policy stack, in the order the module docs list.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AttemptLog, Backoff, Breaker, Budget, Budgeted, FallbackChain, Journaled, JpegFrames, LimitState, OutputCap,
    RateLimited, Retry, SpendHook, Timeout,
};
use crate::config::{Config, ProviderProfile};
use crate::journal::Journal;
use crate::provider::Provider;

/// Builds the layers of one request over the providers' shared layers:
/// `Journaled > FallbackChain > JpegFrames > Retry > Budgeted`, then
/// [`Stack::shared`] below.
pub struct Stack {
    budgets: Vec<Budget>,
    log: AttemptLog,
    on_spend: Option<SpendHook>,
    backoff: Backoff,
    cooldown: Duration,
    jpeg_quality: u8,
}

impl Stack {
    /// The layers every request on one provider shares, built once per
    /// provider (they hold its rate limits): `RateLimited > Timeout >
    /// OutputCap > backend`, with the limits, timeout and model of `profile`.
    pub fn shared(backend: Arc<dyn Provider>, profile: &ProviderProfile) -> Arc<dyn Provider> {
        Self::shared_with(backend, profile, Arc::new(LimitState::new(&profile.limits)))
    }

    /// As [`Stack::shared`], the limits holding `limits` (kept from layers
    /// built before for the same provider and profile).
    pub fn shared_with(
        backend: Arc<dyn Provider>,
        profile: &ProviderProfile,
        limits: Arc<LimitState>,
    ) -> Arc<dyn Provider> {
        let timeout = crate::timecode::seconds(profile.timeout_s.unwrap_or(120.0)).max(Duration::from_millis(1));
        let capped: Arc<dyn Provider> = Arc::new(OutputCap::new(backend, profile));
        let timed: Arc<dyn Provider> = Arc::new(Timeout::new(capped, timeout));
        Arc::new(RateLimited::with_state(timed, limits))
    }

    /// The layers of one request, with `config`'s retry and cooldown settings:
    /// every call reserves against each of `budgets`, and every attempt is
    /// written to `log`.
    pub fn new(config: &Config, budgets: Vec<Budget>, log: AttemptLog) -> Self {
        Self {
            budgets,
            log,
            on_spend: None,
            backoff: Backoff {
                max_attempts: config.retry.max_attempts.max(1),
                wait_cap: crate::timecode::seconds(config.retry.max_wait_s),
                ..Backoff::default()
            },
            cooldown: crate::timecode::seconds(config.router.cooldown_s),
            jpeg_quality: config.sampling.jpeg_quality,
        }
    }

    /// Tell `hook` what each call cost, or may have cost.
    pub fn on_spend(mut self, hook: SpendHook) -> Self {
        self.on_spend = Some(hook);
        self
    }

    /// One provider of a chain: `shared` (from [`Stack::shared`]) under
    /// `JpegFrames > Retry > Budgeted`, each attempt passing `breaker`.
    pub fn member(&self, shared: Arc<dyn Provider>, breaker: Arc<Breaker>) -> Arc<dyn Provider> {
        let mut budgeted = Budgeted::with_budgets(shared, self.budgets.clone());
        if let Some(hook) = &self.on_spend {
            budgeted = budgeted.on_spend(hook.clone());
        }
        let retry = Retry::new(Arc::new(budgeted), self.backoff, self.log.clone()).with_breaker(breaker, self.cooldown);
        Arc::new(JpegFrames::new(Arc::new(retry), self.jpeg_quality))
    }

    /// The whole stack of a run: `members` (each its shared layers and its
    /// breaker), tried in order, behind the journal, which keeps the units of
    /// the video whose content hash is `video`.
    pub fn journaled(
        &self,
        members: impl IntoIterator<Item = (Arc<dyn Provider>, Arc<Breaker>)>,
        journal: Arc<Journal>,
        video: impl Into<Arc<str>>,
    ) -> Journaled {
        let (providers, breakers): (Vec<_>, Vec<_>) =
            members.into_iter().map(|(shared, breaker)| (self.member(shared, breaker.clone()), breaker)).unzip();
        Journaled::new(FallbackChain::with_breakers(providers, breakers), journal, video)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::ScriptedProvider;

    /// The order the module docs write, read from their source.
    fn documented() -> Vec<String> {
        let docs: String = include_str!("mod.rs")
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| l.trim_start_matches("//!").trim())
            .collect::<Vec<_>>()
            .join("\n");
        let lines: Vec<&str> =
            docs.lines().filter(|l| l.starts_with('`') && l.ends_with("backend`") && l.contains(" > ")).collect();
        assert_eq!(lines.len(), 1, "the module docs write the order once: {lines:?}");
        lines[0].trim_matches('`').split(" > ").map(str::to_string).collect()
    }

    #[test]
    fn the_stack_is_built_in_the_documented_order() {
        let config = Config::default();
        let stack = Stack::new(&config, vec![Budget::new(1.0)], AttemptLog::default());
        let members = ["a", "b"].map(|id| {
            let shared = Stack::shared(Arc::new(ScriptedProvider::new(id)), &ProviderProfile::default());
            (shared, Arc::new(Breaker::default()))
        });
        let built = stack.journaled(members, Arc::new(Journal::in_memory().unwrap()), "video");
        let documented = documented();
        assert_eq!(built.layers(), documented);
        // Every member, not only the first, has the layers below the chain.
        for member in built.chain().members() {
            assert_eq!(member.layers(), documented[2..]);
        }
    }
}
