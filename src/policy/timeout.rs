//! A deadline on each call. A call cut off may still be billed, unless it
//! was cut off before any request that may be billed went out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::provider::executor::SendWatch;
use crate::provider::{Cause, ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

pub struct Timeout {
    inner: Arc<dyn Provider>,
    limit: Duration,
}

impl Timeout {
    pub fn new(inner: Arc<dyn Provider>, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

#[async_trait]
impl Provider for Timeout {
    forward_to_inner!("Timeout", estimate);

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let watch = Arc::new(SendWatch::default());
        match tokio::time::timeout(self.limit, watch.clone().watch(self.inner.run(job))).await {
            Ok(result) => result,
            Err(_) if watch.nothing_billed_sent() => {
                // Cut off before any request went out (waiting for a token,
                // or uploading): nothing was billed.
                let mut err = ProviderError::new(
                    self.inner.id(),
                    ErrorClass::Transient,
                    format!("no answer within {:.1} s, before the request was sent", self.limit.as_secs_f64()),
                )
                .with_cause(Cause::Timeout);
                err.not_sent = true;
                Err(err)
            }
            Err(_) => {
                let mut err = ProviderError::new(
                    self.inner.id(),
                    ErrorClass::Transient,
                    format!("no answer within {:.1} s (the call may still be billed)", self.limit.as_secs_f64()),
                );
                err.maybe_billed = true;
                Err(err)
            }
        }
    }
}
