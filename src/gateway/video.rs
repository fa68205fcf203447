//! The call that sends the video whole: the job, as the plan prices it and the
//! run makes it, and the step each native-video provider takes it through. A
//! time range goes as a stream-copied cut of its own to a provider that cannot
//! watch a range of a file, or when the file is over what the provider takes
//! inline; the answer's times are moved back to the source's. A provider that
//! says the video itself cannot be used is noted, so the run sends it frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::Member;
use crate::media::{self, Cut, MediaInfo};
use crate::policy::forward_to_inner;
use crate::prompts::{PromptError, Template};
use crate::provider::{ErrorClass, Estimate, Job, JobInput, Provider, ProviderError, ProviderOutput};
use crate::schema::{SamplingMode, SamplingPlan, Task, TimeRange};
use crate::timecode;

/// Output cap of the one call that sends a whole video.
pub(crate) const NATIVE_OUTPUT_TOKENS: u32 = 4096;

/// The fps a provider that samples the video itself is asked for: the
/// plan's, when it samples by rate; else the provider's own setting.
pub(crate) fn native_fps(sampling: &SamplingPlan) -> Option<f64> {
    match sampling.mode {
        SamplingMode::Fps { fps } => Some(fps),
        _ => None,
    }
}

/// The call that sends the video whole, as the plan prices it and the run
/// makes it: the plan's range and fps (lowered to fit the budget where it
/// had to be) and the timeline prompt. `sha256`: the file's content hash,
/// where the run has it.
pub(crate) fn video_job(
    info: &MediaInfo,
    sampling: &SamplingPlan,
    template: &Template,
    sha256: Option<Arc<str>>,
) -> Result<Job, PromptError> {
    let duration = timecode::format(info.duration_ms);
    Ok(Job {
        task: Task::Timeline,
        input: JobInput::Video {
            path: info.path.clone(),
            range: sampling.range,
            duration_ms: info.duration_ms,
            size_bytes: info.size_bytes,
            fps: native_fps(sampling),
            sha256,
        },
        prompt: template.render(&[("duration", &duration)])?.into(),
        prompt_version: template.id().into(),
        max_output_tokens: NATIVE_OUTPUT_TOKENS,
        span: Some(TimeRange { start_ms: 0, end_ms: info.duration_ms.max(1) }),
    })
}

/// One run's cut of its range, made once for whichever provider needs it
/// first, and deleted when the run's video call is over.
pub(super) struct RangeCut {
    info: MediaInfo,
    timeout: Duration,
    /// The prompt for the cut: the video it describes is the cut's length.
    prompt: Arc<str>,
    made: tokio::sync::OnceCell<Result<Arc<Cut>, String>>,
}

impl RangeCut {
    /// The cut of `range` out of `info`'s file, with the timeline `template`
    /// rendered for its length.
    pub(super) fn new(
        info: &MediaInfo,
        range: TimeRange,
        template: &Template,
        timeout: Duration,
    ) -> Result<Self, PromptError> {
        let length = range.end_ms.min(info.duration_ms).saturating_sub(range.start_ms);
        let prompt = template.render(&[("duration", &timecode::format(length))])?.into();
        Ok(Self { info: info.clone(), timeout, prompt, made: tokio::sync::OnceCell::new() })
    }

    async fn get(&self, range: TimeRange) -> Result<Arc<Cut>, String> {
        self.made
            .get_or_init(|| async {
                media::cut(&self.info, range, self.timeout).await.map(Arc::new).map_err(|e| e.to_string())
            })
            .await
            .clone()
    }
}

/// A native-video provider behind the video step.
pub(super) struct VideoStep {
    inner: Arc<dyn Provider>,
    cut: Option<Arc<RangeCut>>,
    refused: AtomicBool,
}

impl VideoStep {
    /// `members` behind the step, and the steps, to ask afterwards which of
    /// them refused the video. `cut` is the run's cut when it has a range.
    pub(super) fn wrap(members: &[Member], cut: Option<Arc<RangeCut>>) -> (Vec<Member>, Vec<Arc<VideoStep>>) {
        members
            .iter()
            .map(|m| {
                let step =
                    Arc::new(VideoStep { inner: m.shared.clone(), cut: cut.clone(), refused: AtomicBool::new(false) });
                (Member { shared: step.clone(), ..m.clone() }, step)
            })
            .unzip()
    }

    /// The provider said the video itself cannot be used: it may take frames.
    pub(super) fn refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }

    async fn send(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let (JobInput::Video { range: Some(range), size_bytes, duration_ms, fps, .. }, Some(cut)) =
            (&job.input, &self.cut)
        else {
            return self.inner.run(job).await;
        };
        let caps = self.inner.capabilities();
        let whole = range.start_ms == 0 && range.end_ms >= *duration_ms;
        if whole || (caps.video_offsets && *size_bytes <= caps.max_inline_bytes) {
            return self.inner.run(job).await;
        }
        let made = match cut.get(*range).await {
            Ok(made) => made,
            Err(reason) if caps.video_offsets => {
                tracing::warn!(provider = self.inner.id(), "{reason}: sending the whole file with the range");
                return self.inner.run(job).await;
            }
            Err(reason) => {
                let mut err = ProviderError::new(
                    self.inner.id(),
                    ErrorClass::FallBack,
                    format!("the range cannot be sent as a cut, and this provider watches whole files only: {reason}"),
                );
                err.video_unusable = true;
                err.not_sent = true;
                return Err(err);
            }
        };
        let length = made.range.duration_ms().max(1);
        let mut cut_job = job.clone();
        cut_job.input = JobInput::Video {
            path: made.path().to_path_buf(),
            range: None,
            duration_ms: length,
            size_bytes: made.size_bytes,
            fps: *fps,
            // Another file than the one the run hashed.
            sha256: None,
        };
        cut_job.prompt = cut.prompt.clone();
        cut_job.span = Some(TimeRange { start_ms: 0, end_ms: length });
        let mut output = self.inner.run(&cut_job).await?;
        for o in &mut output.observations {
            o.range.start_ms += made.range.start_ms;
            o.range.end_ms += made.range.start_ms;
        }
        Ok(output)
    }
}

#[async_trait]
impl Provider for VideoStep {
    // A range's cost is its cut's: the estimate passes straight on.
    forward_to_inner!("VideoStep", estimate);

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let result = self.send(job).await;
        if result.as_ref().is_err_and(|e| e.video_unusable) {
            self.refused.store(true, Ordering::SeqCst);
        }
        result
    }
}
