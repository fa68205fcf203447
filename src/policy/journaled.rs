//! The journal in front of the chain: a unit already answered by any provider
//! of the chain is read back, not bought again; a new answer is committed to
//! the journal before it is handed on.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::FallbackChain;
use crate::journal::{unit_key, Journal, UnitRecord};
use crate::provider::{Capabilities, Estimate, Job, Provider, ProviderError, ProviderOutput};
use crate::schema::Usage;

pub struct Journaled {
    chain: FallbackChain,
    journal: Arc<Journal>,
    /// The content hash of the video the units belong to.
    video: Arc<str>,
    reused: Arc<AtomicU32>,
    /// Units answered (and paid for) that the journal could not keep.
    unsaved: Arc<AtomicU32>,
    on_unit: Option<UnitHook>,
}

/// Told of each finished unit: the provider that made it, and whether it was
/// read back from the journal.
pub type UnitHook = Arc<dyn Fn(&str, bool) + Send + Sync>;

impl Journaled {
    pub fn new(chain: FallbackChain, journal: Arc<Journal>, video: impl Into<Arc<str>>) -> Self {
        Self { chain, journal, video: video.into(), reused: Arc::default(), unsaved: Arc::default(), on_unit: None }
    }

    /// Count the units that could not be written to the journal in `counter`
    /// (shared by the chains of one run), so the run can say what was kept.
    pub fn counting_unsaved(mut self, counter: Arc<AtomicU32>) -> Self {
        self.unsaved = counter;
        self
    }

    pub fn on_unit(mut self, hook: UnitHook) -> Self {
        self.on_unit = Some(hook);
        self
    }

    fn unit_done(&self, provider: &str, reused: bool) {
        if let Some(hook) = &self.on_unit {
            hook(provider, reused);
        }
    }

    /// How many units were read back from the journal instead of being sent.
    pub fn reused(&self) -> u32 {
        self.reused.load(Ordering::SeqCst)
    }

    pub fn chain(&self) -> &FallbackChain {
        &self.chain
    }

    /// The journal's key of `job` answered by `member`.
    fn key(&self, member: &dyn Provider, job: &Job) -> String {
        unit_key(&self.video, member.id(), member.model(), &member.settings_key(), job)
    }

    async fn lookup(&self, job: &Job) -> Option<UnitRecord> {
        let keys: Vec<String> = self.chain.members().iter().map(|m| self.key(m.as_ref(), job)).collect();
        let journal = self.journal.clone();
        let found = tokio::task::spawn_blocking(move || {
            for key in keys {
                match journal.get(&key) {
                    Ok(Some(record)) => return Some(record),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read the journal; the unit is sent again"),
                }
            }
            None
        })
        .await;
        found.ok().flatten()
    }
}

#[async_trait]
impl Provider for Journaled {
    fn id(&self) -> &str {
        self.chain.id()
    }

    fn model(&self) -> &str {
        self.chain.model()
    }

    fn capabilities(&self) -> Capabilities {
        self.chain.capabilities()
    }

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        self.chain.estimate(job)
    }

    fn layers(&self) -> Vec<&'static str> {
        let mut layers = vec!["Journaled"];
        layers.extend(self.chain.layers());
        layers
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        // Another run of this process buying the same unit now is waited
        // for, and its answer read back below, instead of being bought twice.
        let _hold = match self.chain.members().first() {
            Some(m) => Some(self.journal.hold_unit(self.key(m.as_ref(), job)).await),
            None => None,
        };
        if let Some(record) = self.lookup(job).await {
            self.reused.fetch_add(1, Ordering::SeqCst);
            tracing::debug!(provider = %record.provider, "unit read back from the journal");
            self.unit_done(&record.provider, true);
            return Ok(ProviderOutput {
                observations: record.observations,
                usage: Usage::default(),
                model: record.model,
                warnings: Vec::new(),
            });
        }
        let (i, output) = self.chain.run_unit(job).await?;
        let member = &self.chain.members()[i];
        let key = self.key(member.as_ref(), job);
        let record = UnitRecord {
            provider: member.id().to_string(),
            model: member.model().to_string(),
            observations: output.observations.clone(),
            usage: output.usage,
        };
        let (journal, video, version) = (self.journal.clone(), self.video.clone(), job.prompt_version.clone());
        let written = tokio::task::spawn_blocking(move || journal.put(&key, &video, &version, &record)).await;
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failure {
            self.unsaved.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot write the journal; a rerun would pay for this unit again");
        }
        self.unit_done(member.id(), false);
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::{ScriptedProvider, Step};
    use crate::provider::JobInput;
    use crate::schema::Task;
    use std::time::Duration;

    fn job(text: &str) -> Job {
        Job {
            task: Task::Describe,
            input: JobInput::Text(text.into()),
            prompt: "merge".into(),
            prompt_version: "merge@1".into(),
            max_output_tokens: 100,
            span: None,
        }
    }

    #[tokio::test]
    async fn two_runs_needing_one_unit_at_once_buy_it_once() {
        let slow = Step::Delay(
            Duration::from_millis(100),
            Box::new(Step::Answer { text: "seen".into(), usage: Usage::default() }),
        );
        let provider = Arc::new(ScriptedProvider::new("p").with_fallback(slow));
        let journal = Arc::new(Journal::in_memory().unwrap());
        let run = || Journaled::new(FallbackChain::new(vec![provider.clone()]), journal.clone(), "video");
        let (a, b) = (run(), run());
        let (x, y) = (job("x"), job("y"));
        let (same_a, same_b, other) = tokio::join!(a.run(&x), b.run(&x), a.run(&y));
        assert_eq!(same_a.unwrap().observations, same_b.unwrap().observations);
        assert!(other.is_ok());
        assert_eq!(provider.calls(), 2, "x once, y once");
        assert_eq!(a.reused() + b.reused(), 1, "one of the two read x back");
    }
}
