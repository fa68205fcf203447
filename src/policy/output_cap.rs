//! The model's own output cap: a job that asks for more is lowered to it
//! before its estimate and before its call, so the budget reserves, and the
//! request asks for, no more than the model can write.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::ProviderProfile;
use crate::provider::{ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

pub struct OutputCap {
    inner: Arc<dyn Provider>,
    /// The model's `max_output_tokens`, when its profile states one.
    cap: Option<u64>,
}

impl OutputCap {
    /// The cap of the model `profile` calls, from its entry in `profile.models`.
    pub fn new(inner: Arc<dyn Provider>, profile: &ProviderProfile) -> Self {
        let model = profile.model.as_deref().unwrap_or_default();
        let cap = profile.model_profile(model).and_then(|m| m.max_output_tokens);
        Self { inner, cap }
    }

    fn capped<'a>(&self, job: &'a Job) -> Result<Cow<'a, Job>, ProviderError> {
        match self.cap {
            Some(0) => Err(ProviderError::new(
                self.inner.id(),
                ErrorClass::Fatal,
                format!(
                    "the profile gives the model {} max_output_tokens = 0: no answer fits; raise it or remove it",
                    self.inner.model()
                ),
            )),
            Some(cap) if u64::from(job.max_output_tokens) > cap => {
                // `cap` < the job's u32 cap, so it fits.
                Ok(Cow::Owned(Job { max_output_tokens: cap as u32, ..job.clone() }))
            }
            _ => Ok(Cow::Borrowed(job)),
        }
    }
}

#[async_trait]
impl Provider for OutputCap {
    forward_to_inner!("OutputCap");

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        self.inner.estimate(&*self.capped(job)?)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.inner.run(&*self.capped(job)?).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::ModelProfile;
    use crate::provider::scripted::text_job;
    use crate::provider::Capabilities;
    use crate::schema::Usage;

    /// Estimates what the job's output cap costs, and keeps each cap it is run with.
    #[derive(Default)]
    struct Recorder {
        ran_with: Mutex<Vec<u32>>,
    }

    #[async_trait]
    impl Provider for Recorder {
        fn id(&self) -> &str {
            "small"
        }

        fn model(&self) -> &str {
            "small-model"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }

        fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
            let output_tokens = u64::from(job.max_output_tokens);
            Ok(Estimate { input_tokens: 10, output_tokens, cost_usd: output_tokens as f64 * 1e-6 })
        }

        async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
            self.ran_with.lock().unwrap().push(job.max_output_tokens);
            Ok(ProviderOutput {
                observations: Vec::new(),
                usage: Usage::default(),
                model: "m".into(),
                warnings: vec![],
            })
        }
    }

    fn capped(cap: Option<u64>) -> (Arc<Recorder>, OutputCap) {
        let model = ModelProfile { max_output_tokens: cap, ..ModelProfile::default() };
        let profile = ProviderProfile {
            model: Some("small-model".into()),
            models: [("small-model".to_string(), model)].into(),
            ..ProviderProfile::default()
        };
        let inner = Arc::new(Recorder::default());
        (inner.clone(), OutputCap::new(inner, &profile))
    }

    fn asking(tokens: u32) -> Job {
        Job { max_output_tokens: tokens, ..text_job() }
    }

    #[tokio::test]
    async fn a_job_over_the_models_cap_is_lowered_to_it_for_the_estimate_and_the_call() {
        let (inner, layer) = capped(Some(100));
        assert_eq!(layer.estimate(&asking(5_000)).unwrap().output_tokens, 100);
        layer.run(&asking(5_000)).await.unwrap();
        assert_eq!(*inner.ran_with.lock().unwrap(), [100]);
    }

    #[tokio::test]
    async fn a_job_within_the_cap_or_a_model_without_one_is_passed_on_as_it_is() {
        for (cap, asked) in [(Some(100), 60), (Some(100), 100), (None, 5_000)] {
            let (inner, layer) = capped(cap);
            assert_eq!(layer.estimate(&asking(asked)).unwrap().output_tokens, u64::from(asked), "cap {cap:?}");
            layer.run(&asking(asked)).await.unwrap();
            assert_eq!(*inner.ran_with.lock().unwrap(), [asked], "cap {cap:?}");
        }
    }

    #[tokio::test]
    async fn a_cap_of_zero_is_refused_before_anything_is_sent() {
        let (inner, layer) = capped(Some(0));
        let err = layer.run(&asking(10)).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Fatal);
        assert!(err.message.contains("small-model max_output_tokens = 0"), "{err}");
        assert!(layer.estimate(&asking(10)).is_err());
        assert!(inner.ran_with.lock().unwrap().is_empty());
    }
}
