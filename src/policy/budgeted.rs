//! Reserve the worst case before each call; settle to what it really cost.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Budget, BudgetError, Reservation};
use crate::provider::{Cause, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

/// Every call reserves against each of its budgets (the request's and the
/// day's, say); it is made only when all of them have room.
pub struct Budgeted {
    inner: Arc<dyn Provider>,
    budgets: Vec<Budget>,
    on_spend: Option<SpendHook>,
}

/// A reported cost this many times the worst-case estimate is more likely a
/// wrong price or a wrong count than a real bill: it is charged, and said.
const FAR_ABOVE: f64 = 100.0;

/// The warning for a reported cost far above the estimate made before the call.
fn far_above(provider: &str, reported: f64, estimate: f64) -> Option<String> {
    (estimate > 0.0 && reported > estimate * FAR_ABOVE).then(|| {
        format!(
            "{provider}: the reported cost ${reported:.6} is {:.0} times the estimate of ${estimate:.6}; \
             check the profile's price and the provider's bill",
            reported / estimate
        )
    })
}

/// Told of what each call cost (or may have cost), with the provider's name:
/// the journal's spend ledger listens here.
pub type SpendHook = Arc<dyn Fn(&str, f64) + Send + Sync>;

impl Budgeted {
    pub fn new(inner: Arc<dyn Provider>, budget: Budget) -> Self {
        Self::with_budgets(inner, vec![budget])
    }

    pub fn with_budgets(inner: Arc<dyn Provider>, budgets: Vec<Budget>) -> Self {
        Self { inner, budgets, on_spend: None }
    }

    pub fn on_spend(mut self, hook: SpendHook) -> Self {
        self.on_spend = Some(hook);
        self
    }

    fn charged(&self, usd: f64) {
        if let Some(hook) = self.on_spend.as_ref().filter(|_| usd > 0.0) {
            hook(self.inner.id(), usd);
        }
    }

    async fn reserve(&self, usd: f64) -> Result<Vec<Reservation>, ProviderError> {
        let mut held = Vec::with_capacity(self.budgets.len());
        for budget in &self.budgets {
            match budget.reserve(usd).await {
                Ok(r) => held.push(r),
                Err(e) => {
                    held.into_iter().for_each(Reservation::release);
                    let mut err = match e {
                        // Another provider would be refused the same way.
                        BudgetError::LedgerUnavailable(_) => {
                            ProviderError::new(self.inner.id(), ErrorClass::Fatal, e.to_string())
                        }
                        BudgetError::Over { .. } => {
                            ProviderError::new(self.inner.id(), ErrorClass::FallBack, e.to_string())
                                .with_cause(Cause::Budget)
                        }
                    };
                    err.not_sent = true;
                    return Err(err);
                }
            }
        }
        Ok(held)
    }
}

#[async_trait]
impl Provider for Budgeted {
    forward_to_inner!("Budgeted", estimate);

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let estimate = self.inner.estimate(job).map_err(|mut e| {
            e.not_sent = true;
            e
        })?;
        let reservations = self.reserve(estimate.cost_usd).await?;
        match self.inner.run(job).await {
            Ok(mut output) => {
                if let Some(warning) = far_above(self.inner.id(), output.usage.cost_usd, estimate.cost_usd) {
                    tracing::warn!("{warning}");
                    output.warnings.push(warning);
                }
                // Spend first, then let the reservations go, so a ledger shared
                // with other processes always holds the money in one or the other.
                self.charged(output.usage.cost_usd);
                reservations.into_iter().for_each(|r| r.reconcile(output.usage.cost_usd));
                Ok(output)
            }
            Err(err) => {
                self.charged(match (&err.billed, err.maybe_billed) {
                    (Some(usage), _) => usage.cost_usd.max(0.0),
                    (None, true) => estimate.cost_usd,
                    (None, false) => 0.0,
                });
                for reservation in reservations {
                    match (&err.billed, err.maybe_billed) {
                        (Some(usage), _) => reservation.reconcile(usage.cost_usd.max(0.0)),
                        // Unknown outcome: the whole reservation counts as spent.
                        (None, true) => reservation.reconcile(estimate.cost_usd),
                        (None, false) => reservation.release(),
                    }
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::{text_job, ScriptedProvider, Step};
    use crate::schema::Usage;

    /// A call estimated at $0.001 that reports `usd`.
    async fn reported(usd: f64) -> (ProviderOutput, Budget) {
        let usage = Usage { input_tokens: 10, output_tokens: 10, cost_usd: usd };
        let p =
            ScriptedProvider::new("s").with_cost_per_call(0.001).with_steps([Step::Answer { text: "x".into(), usage }]);
        let budget = Budget::new(10.0);
        let output = Budgeted::new(Arc::new(p), budget.clone()).run(&text_job()).await.unwrap();
        (output, budget)
    }

    #[tokio::test]
    async fn a_reported_cost_far_above_the_estimate_is_charged_and_said() {
        let (output, budget) = reported(1.0).await;
        assert_eq!(budget.spent(), 1.0, "charged as reported");
        assert_eq!(
            output.warnings,
            ["s: the reported cost $1.000000 is 1000 times the estimate of $0.001000; \
              check the profile's price and the provider's bill"]
        );
        let (output, budget) = reported(0.05).await;
        assert_eq!(budget.spent(), 0.05);
        assert!(output.warnings.is_empty(), "50 times is within reason: {:?}", output.warnings);
    }

    /// A shared ledger whose database cannot be reached.
    #[derive(Debug)]
    struct Away;

    #[async_trait]
    impl crate::policy::SharedLedger for Away {
        async fn hold(&self, _: f64, _: f64) -> Result<i64, BudgetError> {
            Err(BudgetError::LedgerUnavailable("journal postgres://db/vidgate: connection refused".into()))
        }
        fn let_go(&self, _: i64, _: f64) {}
        async fn left(&self, _: f64) -> Result<f64, BudgetError> {
            Err(BudgetError::LedgerUnavailable("journal postgres://db/vidgate: connection refused".into()))
        }
    }

    #[tokio::test]
    async fn a_ledger_that_cannot_be_reached_stops_the_chain_unsent_and_is_not_called_over_budget() {
        let p = Arc::new(ScriptedProvider::new("s").with_cost_per_call(0.001));
        let (own, shared) = (Budget::new(10.0), Budget::new(10.0).shared(Arc::new(Away)));
        let err = Budgeted::with_budgets(p.clone(), vec![own.clone(), shared]).run(&text_job()).await.unwrap_err();
        assert_eq!(p.calls(), 0, "nothing is sent while no money can be held");
        assert!(err.not_sent, "{err:?}");
        assert_eq!(err.class, ErrorClass::Fatal, "every provider shares the ledger: none is tried");
        assert_ne!(err.cause, Cause::Budget, "the budget is not spent: {err:?}");
        assert!(err.to_string().contains("shared ledger cannot be reached"), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert_eq!(own.remaining().await, Ok(10.0), "the request's own hold was let go");
    }
}
