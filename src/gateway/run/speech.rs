//! The speech track of a run: the sound streamed out of ffmpeg, cut where
//! someone speaks, each segment transcribed (and journaled) through the
//! speech chain; and `transcribe`, the track alone.

use std::collections::HashMap;

use tokio::task::{Id, JoinError, JoinSet};

use super::*;
use crate::gateway::speech::{SpeechTrackPlan, NO_CHAIN, SPEECH_PROMPT_VERSION};
use crate::provider::{AudioClip, ErrorClass};
use crate::speech::{Segment, Segmenter};

impl Ctx<'_> {
    /// Transcribe what is said within `range` (the whole video when absent)
    /// on the speech chain `members`. A segment no provider could transcribe
    /// is a warning, not a failure: the run still has what was seen.
    pub(super) async fn hear(&mut self, members: &[Member], range: Option<TimeRange>) -> Result<(), GatewayError> {
        let config = &self.gateway.config;
        let stall = timecode::seconds(config.limits.extract_timeout_s);
        let Some(mut pcm) = media::pcm(&self.info, range, stall)? else {
            return Ok(());
        };
        let chain = self.chain(members);
        let concurrency = members
            .iter()
            .map(|m| m.profile.limits.max_concurrency.unwrap_or(4).max(1))
            .min()
            .unwrap_or(1)
            .min(config.speech.max_concurrency) as usize;
        let start_ms = pcm.start_ms();
        let mut vad = Some(Segmenter::new(config.speech.vad));
        // Each call is its own task: it runs while the sound is still being
        // decoded, and a provider that panics fails only its segment.
        let mut inflight = JoinSet::new();
        let mut spans = HashMap::new();
        let mut done = Vec::new();
        while let Some(segmenter) = vad.as_mut() {
            let segments = match pcm.next_chunk().await {
                Some(Ok(samples)) => segmenter.push(&samples),
                Some(Err(e)) => {
                    self.report.warnings.push(format!("the sound could not be read to its end: {e}"));
                    vad.take().map(Segmenter::finish).unwrap_or_default()
                }
                None => vad.take().map(Segmenter::finish).unwrap_or_default(),
            };
            for segment in segments {
                while inflight.len() >= concurrency {
                    done.extend(joined(inflight.join_next_with_id().await, &mut spans));
                }
                let job = speech_job(&segment, start_ms);
                let chain = chain.clone();
                let covered = job.covered();
                let task = inflight.spawn(async move { chain.run(&job).await });
                spans.insert(task.id(), covered);
            }
        }
        while let Some(result) = joined(inflight.join_next_with_id().await, &mut spans) {
            done.push(result);
        }
        self.report.reused_units += chain.reused();
        self.note_speech_version();
        for (range, result) in done {
            match result {
                Ok(output) => self.add_speech(output.observations),
                Err(e) => self.report.warnings.push(format!(
                    "speech at {}–{} not transcribed: {e}",
                    timecode::format(range.start_ms),
                    timecode::format(range.end_ms)
                )),
            }
        }
        Ok(())
    }

    fn add_speech(&mut self, said: Vec<Observation>) {
        for o in said {
            if !self.report.providers.contains(&o.provider) {
                self.report.providers.push(o.provider.clone());
            }
            self.report.speech.push(o);
        }
        self.report.speech.sort_by_key(|o| (o.range.start_ms, o.range.end_ms));
    }

    fn note_speech_version(&mut self) {
        if !self.report.prompt_versions.iter().any(|v| v == SPEECH_PROMPT_VERSION) {
            self.report.prompt_versions.push(SPEECH_PROMPT_VERSION.into());
        }
    }

    /// What was said, as lines for a merge prompt beside what was seen,
    /// each at most `longest` characters.
    pub(super) fn speech_lines(&self, longest: usize) -> Vec<(TimeRange, String)> {
        self.report
            .speech
            .iter()
            .map(|o| {
                let mut line = merge::line(o.range, &format!("said: \"{}\"", o.text.trim()));
                if line.len() > longest {
                    let cut = (0..=longest).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
                    line.truncate(cut);
                    line.push('…');
                }
                (o.range, line)
            })
            .collect()
    }
}

/// The transcription job of one segment; `start_ms`: where the stream's
/// first sample lies in the video.
fn speech_job(segment: &Segment, start_ms: u64) -> Job {
    let at = |sample: u64| start_ms + media::samples_ms(sample);
    let range = TimeRange { start_ms: at(segment.start), end_ms: at(segment.end()).max(at(segment.start) + 1) };
    let owned = TimeRange { start_ms: at(segment.owned.0), end_ms: at(segment.owned.1).max(at(segment.owned.0) + 1) };
    Job {
        task: Task::Describe,
        input: JobInput::Audio(AudioClip { wav: media::wav(&segment.samples).into(), range, owned }),
        prompt: "".into(),
        prompt_version: SPEECH_PROMPT_VERSION.into(),
        max_output_tokens: 0,
        span: Some(range),
    }
}

impl Gateway {
    /// The speech track alone: what is said in the request's video, with
    /// times, in the report's `speech` (its task and sampling mode are not
    /// read; its range and budget are). Whatever
    /// `speech.track` says, the sound is transcribed.
    ///
    /// # Errors
    /// Bad input, no speech provider, or a plan over budget (nothing spent).
    pub async fn transcribe(&self, request: &VideoRequest) -> Result<VideoReport, GatewayError> {
        let source = self.source(&request.source, None).await?;
        let info = media::probe(&source.path, &self.config.limits).await?;
        let range = request.sampling.range;
        let track = self.speech_track(&info, range, &[], true);
        let budgets = self.budgets(request.constraints.max_cost_usd, None);
        let mut report = VideoReport::default();
        report.warnings.extend(track.notes.iter().cloned());
        let SpeechTrackPlan { plan, members, .. } = track;
        let Some(plan) = plan else {
            if !info.has_audio() {
                report.warnings.push(format!("{}: the video has no sound", info.path.display()));
                return Ok(report);
            }
            return Err(GatewayError::Setup(format!("{NO_CHAIN}; {}", report.warnings.join("; "))));
        };
        let left = least_left(&budgets).await?;
        if plan.estimated_usd > left + 1e-12 {
            return Err(GatewayError::OverBudget(format!(
                "over budget: transcribing up to {} of sound on {} ({}) takes up to {} calls, up to ${:.4}, \
                 but this request may spend ${left:.4}. Nothing was spent. Raise budget.max_usd_per_request \
                 or --max-cost, or name a cheaper speech provider in speech.chain",
                timecode::format(plan.audio_ms),
                plan.provider,
                plan.model,
                plan.calls,
                plan.estimated_usd,
            )));
        }
        let video_hash: Arc<str> = crate::models::hash_file(&source.path)
            .await
            .map_err(|e| GatewayError::Input(format!("{}: cannot read it: {e}", source.path.display())))?
            .into();
        let mut ctx = Ctx {
            gateway: self,
            merge: MergeLimits::for_members(&self.config.merge, &[]),
            info,
            video_hash,
            budgets,
            log: AttemptLog::default(),
            progress: None,
            report,
            unsaved: Arc::new(AtomicU32::new(0)),
            account: None,
        };
        ctx.hear(&members, range).await?;
        Ok(ctx.finish())
    }
}

/// What `JoinSet::join_next_with_id` gives for one speech call.
type Joined<T> = Result<(Id, Result<T, ProviderError>), JoinError>;

/// A finished speech call with the span it covered; a task that panicked
/// or was aborted is a failure of its segment. `None` once none is left.
fn joined<T>(
    next: Option<Joined<T>>,
    spans: &mut HashMap<Id, TimeRange>,
) -> Option<(TimeRange, Result<T, ProviderError>)> {
    let (id, result) = match next? {
        Ok((id, result)) => (id, result),
        Err(join) => (join.id(), Err(ProviderError::new("speech", ErrorClass::FallBack, crate::observe::why(join)))),
    };
    let span = spans.remove(&id).unwrap_or(TimeRange { start_ms: 0, end_ms: 0 });
    Some((span, result))
}
