//! Policies wrap a provider as small decorators, each doing one thing. The
//! order, outermost first:
//!
//! `FallbackChain > Retry > Budgeted > RateLimited > Timeout > backend`
//!
//! `Retry` asks the provider's [`Breaker`] before each attempt, and
//! `RateLimited` holds every call to a provider that asked for a pause.
//!
//! `Budgeted` sits inside `Retry` so that every attempt, a retry after a call
//! that may have been billed included, reserves its own worst case: spend can
//! never pass the cap, however many attempts a unit takes. `Retry` is the only
//! retry loop in vidgate; backends and HTTP clients never retry on their own.

/// The parts of `Provider` that a decorator passes straight to `self.inner`;
/// `forward_to_inner!(estimate)` passes `estimate` on too.
macro_rules! forward_to_inner {
    () => {
        fn id(&self) -> &str {
            self.inner.id()
        }

        fn model(&self) -> &str {
            self.inner.model()
        }

        fn settings_key(&self) -> String {
            self.inner.settings_key()
        }

        fn capabilities(&self) -> crate::provider::Capabilities {
            self.inner.capabilities()
        }
    };
    (estimate) => {
        forward_to_inner!();

        fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
            self.inner.estimate(job)
        }
    };
}

mod attempts;
mod breaker;
mod budget;
mod budgeted;
mod fallback;
mod journaled;
mod jpeg;
mod rate_limit;
mod retry;
mod timeout;

use std::sync::Arc;
use std::time::Duration;

pub use attempts::AttemptLog;
pub use breaker::{Breaker, TRIP_AFTER, UNPROVEN_CALLS};
pub use budget::{Budget, BudgetError, Reservation, SharedLedger};
pub use budgeted::{Budgeted, SpendHook};
pub use fallback::FallbackChain;
pub use journaled::{Journaled, UnitHook};
pub use jpeg::JpegFrames;
pub use rate_limit::RateLimited;
pub use retry::{Backoff, Retry};
pub use timeout::Timeout;

use crate::config::{Config, ProviderProfile};
use crate::provider::Provider;

/// Wrap `backend` in the standard policies for its profile.
pub fn standard_stack(
    backend: Arc<dyn Provider>,
    profile: &ProviderProfile,
    config: &Config,
    budget: Budget,
    log: AttemptLog,
) -> Arc<dyn Provider> {
    request_layers(shared_layers(backend, profile), config, vec![budget], log, None, Arc::default())
}

/// The layers every request on one provider shares: its rate limits and its timeout.
pub fn shared_layers(backend: Arc<dyn Provider>, profile: &ProviderProfile) -> Arc<dyn Provider> {
    let timeout = crate::timecode::seconds(profile.timeout_s.unwrap_or(120.0)).max(Duration::from_millis(1));
    let timed: Arc<dyn Provider> = Arc::new(Timeout::new(backend, timeout));
    Arc::new(RateLimited::new(timed, &profile.limits))
}

/// The layers of one request: its budgets (every call reserves against each)
/// and the retry loop that logs each attempt and passes each through the
/// provider's `breaker`.
pub fn request_layers(
    shared: Arc<dyn Provider>,
    config: &Config,
    budgets: Vec<Budget>,
    log: AttemptLog,
    on_spend: Option<SpendHook>,
    breaker: Arc<Breaker>,
) -> Arc<dyn Provider> {
    let mut budgeted = Budgeted::with_budgets(shared, budgets);
    if let Some(hook) = on_spend {
        budgeted = budgeted.on_spend(hook);
    }
    let backoff = Backoff {
        max_attempts: config.retry.max_attempts.max(1),
        wait_cap: crate::timecode::seconds(config.retry.max_wait_s),
        ..Backoff::default()
    };
    let cooldown = crate::timecode::seconds(config.router.cooldown_s);
    Arc::new(Retry::new(Arc::new(budgeted), backoff, log).with_breaker(breaker, cooldown))
}
