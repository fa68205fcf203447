//! Reserve the worst case before each call; settle to what it really cost.

use std::sync::Arc;

use async_trait::async_trait;

use super::Budget;
use crate::provider::{ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

pub struct Budgeted {
    inner: Arc<dyn Provider>,
    budget: Budget,
}

impl Budgeted {
    pub fn new(inner: Arc<dyn Provider>, budget: Budget) -> Self {
        Self { inner, budget }
    }
}

#[async_trait]
impl Provider for Budgeted {
    forward_to_inner!(estimate);

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let estimate = self.inner.estimate(job)?;
        let reservation = self
            .budget
            .reserve(estimate.cost_usd)
            .map_err(|e| ProviderError::new(self.inner.id(), ErrorClass::FallBack, e.to_string()))?;
        match self.inner.run(job).await {
            Ok(output) => {
                reservation.reconcile(output.usage.cost_usd);
                Ok(output)
            }
            Err(err) => {
                match (&err.billed, err.maybe_billed) {
                    (Some(usage), _) => reservation.reconcile(usage.cost_usd.max(0.0)),
                    // Unknown outcome: the whole reservation counts as spent.
                    (None, true) => drop(reservation),
                    (None, false) => reservation.release(),
                }
                Err(err)
            }
        }
    }
}
