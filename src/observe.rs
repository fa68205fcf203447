//! Frames to observations on one provider: frames are grouped into calls as
//! the provider allows, sent concurrently, and every answer is kept with its
//! time range. The router builds the fallback chain on top of this.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::task::{Id, JoinSet};

use crate::media::{Frame, FrameStream, MediaError};
use crate::progress::{self, Progress, ProgressSender};
use crate::prompts::{self, PromptError, Template};
use crate::provider::{ErrorClass, Job, JobInput, Provider, ProviderError};
use crate::schema::{Observation, Task, TimeRange};
use crate::timecode;

/// How to turn frames into jobs.
#[derive(Debug, Clone)]
pub struct ObserveSettings {
    pub task: Task,
    /// Frames per call; 1 is frame-by-frame.
    pub frames_per_call: u32,
    /// Calls in flight at once.
    pub concurrency: usize,
    pub max_output_tokens: u32,
    /// The whole video's length, for prompts that mention it.
    pub duration_ms: u64,
    /// Where to report frames as they are sampled.
    pub progress: Option<ProgressSender>,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Observed {
    pub observations: Vec<Observation>,
    /// Units that failed, with the span they covered.
    pub failures: Vec<(TimeRange, ProviderError)>,
    pub frames: u32,
    pub prompt_versions: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
}

/// Send every frame of `frames` to `provider`.
///
/// # Errors
/// Only when the frames cannot be read or a prompt cannot be built; failed
/// calls are collected in [`Observed::failures`] and the rest carries on.
pub async fn observe_frames(
    provider: Arc<dyn Provider>,
    mut frames: FrameStream,
    settings: &ObserveSettings,
    prompts_dir: Option<&Path>,
) -> Result<Observed, ObserveError> {
    let per_call = settings.frames_per_call.max(1) as usize;
    // Keep each call's images within the provider's payload cap (base64 grows bytes by a third).
    let byte_cap = provider.capabilities().max_inline_bytes;
    let wire_size = |f: &Frame| (f.data.bytes().len() as u64).div_ceil(3) * 4 + 64;
    let template = prompts::load(template_name(&settings.task, per_call), prompts_dir)?;
    let mut observed = Observed { prompt_versions: vec![template.id()], ..Observed::default() };
    let mut running = Running { tasks: JoinSet::new(), spans: HashMap::new(), provider: provider.id().to_string() };
    let mut batch: Vec<Frame> = Vec::with_capacity(per_call);
    let mut done = false;
    while !done {
        let mut carry = None;
        match frames.next().await {
            Some(frame) => {
                let frame = frame?;
                observed.frames += 1;
                progress::emit(settings.progress.as_ref(), Progress::Sampled { frames: observed.frames });
                let batch_bytes: u64 = batch.iter().map(wire_size).sum();
                if !batch.is_empty() && byte_cap > 0 && batch_bytes + wire_size(&frame) > byte_cap {
                    carry = Some(frame);
                } else {
                    batch.push(frame);
                }
            }
            None => done = true,
        }
        if batch.len() == per_call || carry.is_some() || (done && !batch.is_empty()) {
            let job = make_job(&template, settings, std::mem::take(&mut batch))?;
            let span = job.input.frames_span().unwrap_or(TimeRange { start_ms: 0, end_ms: 1 });
            let provider = provider.clone();
            while running.tasks.len() >= settings.concurrency.max(1) {
                running.collect_next(&mut observed).await;
            }
            let task = running.tasks.spawn(async move { provider.run(&job).await.map(|out| out.observations) });
            running.spans.insert(task.id(), span);
        }
        batch.extend(carry);
    }
    while running.collect_next(&mut observed).await {}
    observed.observations.sort_by_key(|o| (o.range.start_ms, o.range.end_ms));
    observed.failures.sort_by_key(|(span, _)| span.start_ms);
    Ok(observed)
}

/// The calls in flight, and the span each covers.
struct Running {
    tasks: JoinSet<Result<Vec<Observation>, ProviderError>>,
    spans: HashMap<Id, TimeRange>,
    provider: String,
}

impl Running {
    /// Wait for the next call to end and file its result; `false` when none is left.
    async fn collect_next(&mut self, observed: &mut Observed) -> bool {
        let Some(next) = self.tasks.join_next_with_id().await else { return false };
        let (id, result) = match next {
            Ok((id, result)) => (id, result),
            // A call that panicked answered nothing: its unit failed, like
            // any other, so the run cannot pass with a hole in it.
            Err(join) => (join.id(), Err(ProviderError::new(self.provider.clone(), ErrorClass::FallBack, why(join)))),
        };
        let span = self.spans.remove(&id).unwrap_or(TimeRange { start_ms: 0, end_ms: 1 });
        match result {
            Ok(observations) => observed.observations.extend(observations),
            Err(e) => observed.failures.push((span, e)),
        }
        true
    }
}

/// Why a call's task ended without an answer: its panic's message, or cancelled.
pub(crate) fn why(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("the call panicked: {message}")
        }
        Err(_) => "the call was cancelled".to_string(),
    }
}

fn template_name(task: &Task, per_call: usize) -> &'static str {
    match task {
        Task::Timeline => "timeline",
        Task::Find { .. } => "find",
        Task::Ask { .. } => "ask",
        Task::Describe if per_call == 1 => "frame",
        Task::Describe => "chunk",
    }
}

fn make_job(template: &Template, settings: &ObserveSettings, frames: Vec<Frame>) -> Result<Job, PromptError> {
    let start = frames.first().map_or(0, |f| f.pts_ms);
    let end = frames.last().map_or(0, |f| f.pts_ms);
    let (start, end, duration) =
        (timecode::format(start), timecode::format(end), timecode::format(settings.duration_ms));
    let prompt = match &settings.task {
        Task::Describe => template.render(&[("time", &start), ("start", &start), ("end", &end)])?,
        Task::Timeline => template.render(&[("duration", &duration)])?,
        Task::Ask { question } => template.render(&[("question", question)])?,
        Task::Find { what } => template.render(&[("what", what)])?,
    };
    Ok(Job {
        task: settings.task.clone(),
        input: JobInput::Frames(frames.into()),
        prompt: prompt.into(),
        prompt_version: template.id().into(),
        max_output_tokens: settings.max_output_tokens,
        span: Some(TimeRange { start_ms: 0, end_ms: settings.duration_ms.max(1) }),
    })
}
