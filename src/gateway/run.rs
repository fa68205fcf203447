//! A run: probe, plan, observe, merge, report. The driver is here; each
//! stage is a module of its own.

mod answer;
mod chain;
mod observe;
mod report;
mod source;
mod speech;

use report::{events_of, joined_text, output_provider};
use source::{source_name, Source};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::plan::over_budget_message;
use super::video::{video_job, RangeCut, VideoStep};
use super::{Gateway, GatewayError, Member, MergeLimits, Plan};
use crate::journal::{Journal, RunRecord, Unfinished, RUN_LEASE_RENEW};
use crate::media::{self, Extraction, FrameFormat, MediaInfo};
use crate::merge::{self, ObservationSink, TimelineBuilder};
use crate::observe::{observe_frames, ObserveSettings, Observed};
use crate::policy::{self, AttemptLog, Budget, Journaled, SpendHook};
use crate::progress::{emit, Progress, ProgressSender};
use crate::prompts::{self, Template};
use crate::provider::{Job, JobInput, Provider, ProviderError, ProviderOutput};
use crate::schema::{Event, Observation, SamplingPlan, Task, TimeRange, Usage, VideoReport, VideoRequest, VideoSource};
use crate::{router, timecode, timeline};

/// Map-reduce levels before the rest is joined without a model.
const MAX_MERGE_LEVELS: u32 = 4;

/// A request made ready to run.
struct Prepared {
    source: Source,
    info: MediaInfo,
    names: Vec<String>,
    members: Vec<Member>,
    budgets: Vec<Budget>,
    plan: Plan,
    speech: super::speech::SpeechTrackPlan,
}

/// Everything one run shares.
struct Ctx<'a> {
    gateway: &'a Gateway,
    info: MediaInfo,
    video_hash: Arc<str>,
    budgets: Vec<Budget>,
    log: AttemptLog,
    progress: Option<ProgressSender>,
    report: VideoReport,
    merge: MergeLimits,
    /// Finished units the journal could not keep, over every chain of the run.
    unsaved: Arc<AtomicU32>,
    /// The id of the account that pays, on each spend row.
    account: Option<Arc<str>>,
}

/// What a caller adds to a request: see [`Gateway::run_with`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where [`Progress`] events go.
    pub progress: Option<ProgressSender>,
    /// A run the caller entered in the journal already
    /// ([`Journal::start_run`]); a new one is entered when absent.
    pub run_id: Option<i64>,
    /// The account (a service's API key) whose daily cap this run's spend
    /// also counts against.
    pub account: Option<Account>,
}

/// Who pays for a run, beside the gateway's own caps.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// A stable id (never the key itself).
    pub id: String,
    /// This account's cap per UTC day, in US dollars.
    pub max_usd_per_day: Option<f64>,
}

/// A run's lease in the journal, renewed while this value lives (the run's
/// future is polled or not, the process is alive); dropped, renewal stops.
/// A run's lease, renewed until dropped.
pub struct Lease(tokio::task::JoinHandle<()>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Gateway {
    /// Serve one request.
    ///
    /// # Errors
    /// Bad input, a plan over budget (nothing spent), or every provider
    /// failing (what was done comes back in [`GatewayError::Failed`]).
    pub async fn run(&self, request: VideoRequest) -> Result<VideoReport, GatewayError> {
        self.run_with_progress(request, None).await
    }

    /// [`Gateway::run`], sending [`Progress`] events to `progress`.
    ///
    /// # Errors
    /// As [`Gateway::run`], and [`GatewayError::Deadline`] when the request's
    /// deadline passes first.
    pub async fn run_with_progress(
        &self,
        request: VideoRequest,
        progress: Option<ProgressSender>,
    ) -> Result<VideoReport, GatewayError> {
        self.run_with(request, RunOptions { progress, ..RunOptions::default() }).await
    }

    /// [`Gateway::run`] with everything a caller may add: progress events,
    /// a run already entered in the journal (a service gives out its id
    /// before the run starts), and the account that pays.
    ///
    /// # Errors
    /// As [`Gateway::run_with_progress`].
    pub async fn run_with(&self, mut request: VideoRequest, options: RunOptions) -> Result<VideoReport, GatewayError> {
        self.run_expecting(&mut request, KnownHash::None, options).await
    }

    /// A run whose video must have the content hash `expected` (a resumed run's).
    async fn run_expecting(
        &self,
        request: &mut VideoRequest,
        expected: KnownHash,
        options: RunOptions,
    ) -> Result<VideoReport, GatewayError> {
        let RunOptions { progress, run_id, account } = options;
        // The journal keeps the file's absolute path: a resume from another
        // directory reads the same file.
        if let VideoSource::Path { path } = &mut request.source {
            *path = std::path::absolute(&*path)
                .map_err(|e| GatewayError::Input(format!("{}: cannot resolve the path: {e}", path.display())))?;
        }
        let run_id = match run_id {
            Some(id) => id,
            None => {
                let stored = request.clone();
                self.on_journal(move |j| j.start_run(&stored)).await?
            }
        };
        let lease = self.lease(run_id);
        let unsaved = Arc::new(AtomicU32::new(0));
        let work = self.run_inner(request, run_id, expected, progress, unsaved.clone(), account.as_ref());
        let result = match request.constraints.deadline_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), work).await {
                Ok(result) => result,
                Err(_) => Err(GatewayError::Deadline { ms, kept: self.kept_note(unsaved.load(Ordering::SeqCst)) }),
            },
            None => work.await,
        };
        drop(lease);
        let status = if result.is_ok() { "done" } else { "failed" };
        if let Err(e) = self.on_journal(move |j| j.finish_run(run_id, status)).await {
            tracing::warn!(error = %e, "cannot mark the run finished in the journal");
        }
        result
    }

    /// Renew the run's lease in the journal every [`RUN_LEASE_RENEW`], until
    /// the lease is dropped.
    pub fn lease(&self, run_id: i64) -> Lease {
        let journal = self.journal.clone();
        Lease(tokio::spawn(async move {
            loop {
                tokio::time::sleep(RUN_LEASE_RENEW).await;
                let j = journal.clone();
                match tokio::task::spawn_blocking(move || j.renew_lease(run_id)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the run's lease in the journal"),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the run's lease in the journal"),
                }
            }
        }))
    }

    /// Resume the last run whose process died: its finished units are read
    /// back from the journal, the rest is done now. A run whose process is
    /// alive (it renews its lease) is never taken over, and a video that
    /// changed since is refused.
    ///
    /// # Errors
    /// [`GatewayError::Input`] when there is no such run, it is alive, or its
    /// video changed; else as [`Gateway::run`].
    pub async fn resume(&self, progress: Option<ProgressSender>) -> Result<VideoReport, GatewayError> {
        let journal = self.journal.path().to_string();
        let run = match self.on_journal(|j| j.unfinished()).await? {
            Unfinished::None => return Err(GatewayError::Input(format!("no unfinished run in the journal {journal}"))),
            Unfinished::Live(run) => {
                return Err(GatewayError::Input(format!(
                    "run {} ({}) is still running in another process, which holds its lease in the journal {journal}: \
                     it is not resumed while that process lives (a lease runs out {} s after the last renewal)",
                    run.id,
                    source_name(&run.request.source),
                    crate::journal::RUN_LEASE_S
                )))
            }
            Unfinished::Abandoned(run) => run,
        };
        let known = check_resumable(&run).await?;
        let id = run.id;
        // The continuation is entered with the takeover: no moment without
        // an unfinished run that protects the video's units and kept copy.
        let Some(run_id) = self.on_journal(move |j| j.take_over(id)).await? else {
            return Err(GatewayError::Input(format!("run {id} was resumed by another process first")));
        };
        let mut request = run.request;
        self.run_expecting(&mut request, known, RunOptions { progress, run_id: Some(run_id), ..RunOptions::default() })
            .await
    }

    /// Resume the unfinished run `run` under its own id (a restarted
    /// service's): its finished units are read back from the journal. The
    /// caller claimed it ([`crate::journal::Journal::claim_run`]); a video that changed since
    /// is refused.
    ///
    /// # Errors
    /// [`GatewayError::Input`] when its video changed or cannot be read;
    /// else as [`Gateway::run`].
    pub async fn resume_run(&self, run: RunRecord, options: RunOptions) -> Result<VideoReport, GatewayError> {
        let known = check_resumable(&run).await?;
        let mut request = run.request;
        self.run_expecting(&mut request, known, RunOptions { run_id: Some(run.id), ..options }).await
    }

    /// The plan for a request, without spending anything.
    ///
    /// # Errors
    /// Bad input, or no provider of the chain can be built.
    pub async fn plan(&self, request: &VideoRequest) -> Result<Plan, GatewayError> {
        self.plan_for(request, None).await
    }

    /// [`Gateway::plan`] for a run `account` pays: fitted to what it has left today too.
    ///
    /// # Errors
    /// As [`Gateway::plan`].
    pub async fn plan_for(&self, request: &VideoRequest, account: Option<&Account>) -> Result<Plan, GatewayError> {
        Ok(self.prepare(request, None, true, account).await?.plan)
    }

    /// What a run and a plan share: the video as a file, probed; the chain,
    /// built; the budgets; and the plan fitted to them. Spends nothing.
    async fn prepare(
        &self,
        request: &VideoRequest,
        progress: Option<&ProgressSender>,
        planning: bool,
        account: Option<&Account>,
    ) -> Result<Prepared, GatewayError> {
        let source = self.source(&request.source, progress).await?;
        let info = media::probe(&source.path, &self.config.limits).await?;
        emit(progress, Progress::Probed { duration_ms: info.duration_ms });
        let names = router::chain(&self.config, request.task.name(), &request.constraints)?;
        let (mut members, skipped, downloads) = self.gather(&names, planning);
        if members.is_empty() {
            return Err(GatewayError::Setup(skipped.join("; ")));
        }
        let budgets = self.budgets(request.constraints.max_cost_usd, account);
        let left = least_left(&budgets).await?;
        let speech = self.speech_track(&info, request.sampling.range, &members, false);
        let speech_usd = speech.plan.as_ref().map_or(0.0, |s| s.estimated_usd);
        let mut plan = self.fit_plan(&info, &request.task, &mut members, &request.sampling, left - speech_usd)?;
        plan.budget_usd = left;
        plan.speech = speech.plan.clone();
        plan.skipped = skipped;
        for c in &mut plan.candidates {
            c.download_bytes = downloads.get(&c.provider).copied();
        }
        Ok(Prepared { source, info, names, members, budgets, plan, speech })
    }

    async fn run_inner(
        &self,
        request: &VideoRequest,
        run_id: i64,
        expected: KnownHash,
        progress: Option<ProgressSender>,
        unsaved: Arc<AtomicU32>,
        account: Option<&Account>,
    ) -> Result<VideoReport, GatewayError> {
        let Prepared { source, info, names, members, budgets, plan, speech } =
            self.prepare(request, progress.as_ref(), false, account).await?;
        if !plan.fits {
            return Err(GatewayError::OverBudget(over_budget_message(&plan)));
        }
        let first = plan.first();
        emit(
            progress.as_ref(),
            Progress::Planned {
                providers: members.iter().map(|m| m.name.clone()).collect(),
                frames: first.and_then(|c| c.frames),
                calls: first.map_or(0, |c| c.observe_calls + c.merge_calls),
                estimated_usd: first.map_or(0.0, |c| c.estimated_usd),
            },
        );
        // Read once per run: the providers are handed this hash with the video.
        let video_hash: Arc<str> = match expected {
            KnownHash::Checked(hash) => hash.into(),
            expected => {
                let hash: Arc<str> = crate::models::hash_file(&source.path)
                    .await
                    .map_err(|e| GatewayError::Input(format!("{}: cannot read it: {e}", source.path.display())))?
                    .into();
                match expected {
                    KnownHash::Expected(expected) if *expected != *hash => {
                        return Err(changed(run_id, source_name(&request.source), &expected, &hash));
                    }
                    _ => {}
                }
                hash
            }
        };
        let hash = video_hash.to_string();
        if let Err(e) = self.on_journal(move |j| j.set_run_video(run_id, &hash)).await {
            tracing::warn!(error = %e, "cannot note the run's video in the journal: a resume will not check it");
        }
        let mut report = VideoReport::default();
        report.warnings.extend(plan.skipped.iter().map(|s| format!("provider skipped: {s}")));
        report.warnings.extend(plan.downgrades.iter().map(|d| format!("lowered to fit the budget: {d}")));
        report.warnings.extend(speech.notes.iter().cloned());
        let merge = MergeLimits::for_members(&self.config.merge, &[]);
        let mut ctx = Ctx {
            gateway: self,
            info,
            video_hash,
            budgets,
            log: AttemptLog::default(),
            progress,
            report,
            merge,
            unsaved,
            account: account.map(|a| a.id.as_str().into()),
        };

        let native_events = ctx.observe(&members, &plan).await?;
        let speech = if speech.left_to_video && !native_events {
            // The video call failed and frames went instead: nobody heard it.
            let late = self.speech_track(&ctx.info, request.sampling.range, &[], false);
            if let Some(p) = &late.plan {
                ctx.report.warnings.push(format!(
                    "the video went as frames after its call failed: its speech was transcribed by {} \
                     (about ${:.4}, which the plan had left to the video call)",
                    p.provider, p.estimated_usd
                ));
            }
            ctx.report.warnings.extend(late.notes.iter().cloned());
            late
        } else {
            speech
        };
        if speech.plan.is_some() {
            ctx.hear(&speech.members, request.sampling.range).await?;
        }
        let text_names = if self.config.router.text_chain.is_empty() {
            names.clone()
        } else {
            self.config.router.text_chain.clone()
        };
        let (text_members, text_skipped) = self.members(&text_names);
        ctx.report.warnings.extend(text_skipped.iter().map(|s| format!("merge provider skipped: {s}")));
        ctx.answer(&request.task, &text_members, native_events).await?;
        Ok(ctx.finish())
    }
}

pub(super) fn changed(run: i64, video: impl std::fmt::Display, expected: &str, now: &str) -> GatewayError {
    GatewayError::Input(format!(
        "cannot resume run {run}: {video} changed since the run began (content sha256 {} then, {} now): \
         start a new run on it instead",
        &expected[..expected.len().min(12)],
        &now[..now.len().min(12)]
    ))
}

/// What the tightest of `budgets` has left.
pub(super) async fn least_left(budgets: &[Budget]) -> Result<f64, GatewayError> {
    let mut left = f64::MAX;
    for budget in budgets {
        let remaining = budget.remaining().await.map_err(|e| GatewayError::LedgerUnavailable(e.to_string()))?;
        left = left.min(remaining);
    }
    Ok(left)
}

pub(super) fn fatal(message: String) -> ProviderError {
    ProviderError::new("vidgate", crate::provider::ErrorClass::Fatal, message)
}

/// What a run knows of its video's content hash before it reads the video.
enum KnownHash {
    /// Nothing: a new run.
    None,
    /// A resumed run's: the video must still have it.
    Expected(String),
    /// A resumed run's, just found again in the file itself: not read again.
    Checked(String),
}

/// A run may be resumed: its video is the one it read, and its URL still
/// whole. What it knows of the video's hash after the check.
async fn check_resumable(run: &RunRecord) -> Result<KnownHash, GatewayError> {
    let mut known = run.video_hash.clone().map_or(KnownHash::None, KnownHash::Expected);
    if let (VideoSource::Path { path }, Some(expected)) = (&run.request.source, &run.video_hash) {
        let now = crate::models::hash_file(path).await.map_err(|e| {
            GatewayError::Input(format!("cannot resume run {}: {}: cannot read it: {e}", run.id, path.display()))
        })?;
        if &now != expected {
            return Err(changed(run.id, path.display(), expected, &now));
        }
        known = KnownHash::Checked(now);
    }
    if let VideoSource::Url { url } = &run.request.source {
        // Its userinfo and query values were never stored (see `Journal::start_run`).
        if url.contains("***") {
            return Err(GatewayError::Input(format!(
                "cannot resume run {}: its URL carried credentials, which the journal does not keep ({url}); \
                 give the command again with the whole URL: the units already finished are read back \
                 from the journal",
                run.id
            )));
        }
    }
    Ok(known)
}
