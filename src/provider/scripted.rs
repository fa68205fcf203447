//! A provider that plays a script instead of calling a model: for tests of the
//! policies and the router. Each `run` takes the next step of the script.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{Capabilities, ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput};
use crate::schema::{Observation, TimeRange, Usage};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with one observation per frame (or one for the whole job), this
    /// text; `{time}` in it becomes the frame's time (the span's start for
    /// other jobs), so answers differ from frame to frame.
    Answer { text: String, usage: Usage },
    /// Fail with this error.
    Fail(ProviderError),
    /// Wait this long first, then take the next step.
    Delay(Duration, Box<Step>),
    /// Panic with this message, as a backend with a bug would.
    Panic(String),
}

/// A provider whose answers are a queue of [`Step`]s; when the queue is empty
/// it keeps repeating `fallback`.
pub struct ScriptedProvider {
    id: String,
    capabilities: Capabilities,
    cost_per_call: f64,
    steps: Mutex<VecDeque<Step>>,
    fallback: Step,
    calls: AtomicUsize,
    seen: Mutex<Vec<Job>>,
}

impl ScriptedProvider {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            capabilities: Capabilities { max_images_per_call: 8, ..Capabilities::default() },
            cost_per_call: 0.001,
            steps: Mutex::new(VecDeque::new()),
            fallback: Step::Answer { text: "scripted".into(), usage: Usage::default() },
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// What to do once the script is used up (by default, answer "scripted").
    pub fn with_fallback(mut self, step: Step) -> Self {
        self.fallback = step;
        self
    }

    /// Every job `run` was given, in order.
    pub fn jobs(&self) -> Vec<Job> {
        self.seen.lock().expect("script lock").clone()
    }

    pub fn with_steps(self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.steps.lock().expect("script lock").extend(steps);
        self
    }

    pub fn with_cost_per_call(mut self, usd: f64) -> Self {
        self.cost_per_call = usd;
        self
    }

    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// A transient failure with an optional retry-after, shaped like a 503.
    pub fn transient(&self, retry_after: Option<Duration>) -> Step {
        let mut e = ProviderError::new(self.id.clone(), ErrorClass::Transient, "HTTP 503");
        e.status = Some(503);
        e.retry_after = retry_after;
        Step::Fail(e)
    }

    /// How many times `run` was called.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn next_step(&self) -> Step {
        let mut steps = self.steps.lock().expect("script lock");
        steps.pop_front().unwrap_or_else(|| self.fallback.clone())
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn estimate(&self, _job: &Job) -> Result<Estimate, ProviderError> {
        Ok(Estimate { input_tokens: 100, output_tokens: 100, cost_usd: self.cost_per_call })
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().expect("script lock").push(job.clone());
        let mut step = self.next_step();
        loop {
            match step {
                Step::Delay(wait, next) => {
                    tokio::time::sleep(wait).await;
                    step = *next;
                }
                Step::Fail(e) => return Err(e),
                Step::Panic(message) => panic!("{message}"),
                Step::Answer { text, usage } => {
                    return Ok(ProviderOutput {
                        observations: observe(&self.id, job, &text),
                        usage,
                        model: "scripted".into(),
                        warnings: Vec::new(),
                    })
                }
            }
        }
    }
}

fn observe(provider: &str, job: &Job, text: &str) -> Vec<Observation> {
    let ranges: Vec<TimeRange> = match &job.input {
        JobInput::Frames(frames) => {
            frames.iter().map(|f| TimeRange { start_ms: f.pts_ms, end_ms: f.pts_ms + 1 }).collect()
        }
        JobInput::Video { range, duration_ms, .. } => {
            vec![range.unwrap_or(TimeRange { start_ms: 0, end_ms: (*duration_ms).max(1) })]
        }
        JobInput::Text(_) | JobInput::Audio(_) => vec![job.covered()],
    };
    ranges
        .into_iter()
        .map(|range| Observation {
            range,
            text: text.replace("{time}", &crate::timecode::format(range.start_ms)),
            provider: provider.to_string(),
            model: Some("scripted".into()),
        })
        .collect()
}

/// A small text job, for the policies' and the providers' unit tests.
#[cfg(test)]
pub(crate) fn text_job() -> Job {
    Job {
        task: crate::schema::Task::Describe,
        input: JobInput::Text("observations".into()),
        prompt: "merge".into(),
        prompt_version: "story@1".into(),
        max_output_tokens: 64,
        span: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plays_its_script_then_repeats_the_fallback() {
        let p = ScriptedProvider::new("fake");
        let fail = p.transient(Some(Duration::from_millis(5)));
        let p = p.with_steps([fail, Step::Answer { text: "a dog".into(), usage: Usage::default() }]);
        let dyn_p: &dyn Provider = &p;
        let err = dyn_p.run(&text_job()).await.unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_millis(5)));
        assert_eq!(dyn_p.run(&text_job()).await.unwrap().observations[0].text, "a dog");
        assert_eq!(dyn_p.run(&text_job()).await.unwrap().observations[0].text, "scripted");
        assert_eq!(p.calls(), 3);
    }
}
