//! Policies wrap a provider as small decorators, each doing one thing.
//! [`Stack`] builds them, in this order, outermost first:
//!
//! `Journaled > FallbackChain > JpegFrames > Retry > Budgeted > RateLimited > Timeout > OutputCap > backend`
//!
//! - `Journaled` reads a unit back from the journal instead of buying it
//!   again, and journals each new answer before handing it on.
//! - `FallbackChain` tries the chain's providers in order, skipping one its
//!   breaker has benched.
//! - `JpegFrames` turns RGB frames into JPEG for a backend that does not take
//!   RGB, so one extraction feeds the local model and cloud APIs alike.
//! - `Retry` asks the provider's [`Breaker`] before each attempt, and is the
//!   only retry loop in vidgate; backends and HTTP clients never retry on
//!   their own.
//! - `Budgeted` sits inside `Retry` so that every attempt, a retry after a
//!   call that may have been billed included, reserves its own worst case:
//!   spend can never pass the cap, however many attempts a unit takes.
//! - `RateLimited` holds the provider's rate limits and every call to a
//!   provider that asked for a pause. It, and the layers inside it, are built
//!   once per provider and shared by every request ([`Stack::shared`]).
//! - `Timeout` bounds each call.
//! - `OutputCap` lowers a job's output cap to the model's own
//!   (`max_output_tokens` in its profile), so the estimate above and the
//!   request below use the cap the model can honour.

/// The parts of `Provider` that a decorator named `$layer` passes straight
/// to `self.inner`; `forward_to_inner!($layer, estimate)` passes `estimate`
/// on too.
macro_rules! forward_to_inner {
    ($layer:literal) => {
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

        fn layers(&self) -> Vec<&'static str> {
            let mut layers = vec![$layer];
            layers.extend(self.inner.layers());
            layers
        }
    };
    ($layer:literal, estimate) => {
        forward_to_inner!($layer);

        fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
            self.inner.estimate(job)
        }
    };
}
pub(crate) use forward_to_inner;

mod attempts;
mod breaker;
mod budget;
mod budgeted;
mod fallback;
mod journaled;
mod jpeg;
mod output_cap;
mod rate_limit;
mod retry;
mod stack;
mod timeout;

use std::sync::Arc;

pub use attempts::AttemptLog;
pub use breaker::{Breaker, TRIP_AFTER, UNPROVEN_CALLS};
pub use budget::{Budget, BudgetError, Reservation, SharedLedger};
pub use budgeted::{Budgeted, SpendHook};
pub use fallback::FallbackChain;
pub use journaled::{Journaled, UnitHook};
pub use jpeg::JpegFrames;
pub use output_cap::OutputCap;
pub use rate_limit::{LimitState, RateLimited, SharedRates};
pub use retry::{Backoff, Retry};
pub use stack::Stack;
pub use timeout::Timeout;

use crate::config::{Config, ProviderProfile};
use crate::provider::Provider;

/// Wrap `backend` in the standard policies for its profile, up to `JpegFrames`
/// (one provider, no chain, no journal, a breaker of its own).
pub fn standard_stack(
    backend: Arc<dyn Provider>,
    profile: &ProviderProfile,
    config: &Config,
    budget: Budget,
    log: AttemptLog,
) -> Arc<dyn Provider> {
    Stack::new(config, vec![budget], log).member(Stack::shared(backend, profile), Arc::default())
}
