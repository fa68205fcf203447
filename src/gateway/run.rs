//! A run: probe, plan, observe, merge, report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::plan::over_budget_message;
use super::video::{video_job, RangeCut, VideoStep};
use super::{Gateway, GatewayError, Member, MergeLimits, Plan};
use crate::journal::{Journal, Unfinished, RUN_LEASE_RENEW};
use crate::media::{self, Extraction, FrameFormat, MediaInfo};
use crate::merge::{self, ObservationSink, TimelineBuilder};
use crate::observe::{observe_frames, ObserveSettings, Observed};
use crate::policy::{self, AttemptLog, Budget, FallbackChain, Journaled, JpegFrames, SpendHook};
use crate::progress::{emit, Progress, ProgressSender};
use crate::prompts::{self, Template};
use crate::provider::{Job, JobInput, Provider, ProviderError, ProviderOutput};
use crate::schema::{Event, Observation, SamplingPlan, Task, TimeRange, Usage, VideoReport, VideoRequest, VideoSource};
use crate::{router, timecode, timeline};

/// Map-reduce levels before the rest is joined without a model.
const MAX_MERGE_LEVELS: u32 = 4;

/// The video file a run reads; a temporary copy (bytes, a download) is
/// deleted when the run ends.
struct Source {
    path: PathBuf,
    _temp: Option<tempfile::NamedTempFile>,
    _download: Option<crate::fetch::Downloaded>,
}

/// A request made ready to run.
struct Prepared {
    source: Source,
    info: MediaInfo,
    names: Vec<String>,
    members: Vec<Member>,
    budgets: Vec<Budget>,
    plan: Plan,
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
}

/// A run's lease in the journal, renewed while this value lives (the run's
/// future is polled or not, the process is alive); dropped, renewal stops.
struct Lease(tokio::task::JoinHandle<()>);

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
        mut request: VideoRequest,
        progress: Option<ProgressSender>,
    ) -> Result<VideoReport, GatewayError> {
        self.run_expecting(&mut request, None, progress).await
    }

    /// A run whose video must have the content hash `expected` (a resumed run's).
    async fn run_expecting(
        &self,
        request: &mut VideoRequest,
        expected: Option<String>,
        progress: Option<ProgressSender>,
    ) -> Result<VideoReport, GatewayError> {
        // The journal keeps the file's absolute path: a resume from another
        // directory reads the same file.
        if let VideoSource::Path { path } = &mut request.source {
            *path = std::path::absolute(&*path)
                .map_err(|e| GatewayError::Input(format!("{}: cannot resolve the path: {e}", path.display())))?;
        }
        let stored = request.clone();
        let run_id = self.on_journal(move |j| j.start_run(&stored)).await?;
        let lease = self.lease(run_id);
        let unsaved = Arc::new(AtomicU32::new(0));
        let work = self.run_inner(request, run_id, expected, progress, unsaved.clone());
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

    /// Renew the run's lease in the journal every [`RUN_LEASE_RENEW`].
    fn lease(&self, run_id: i64) -> Lease {
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
        if let (VideoSource::Path { path }, Some(expected)) = (&run.request.source, &run.video_hash) {
            let now = crate::models::hash_file(path).await.map_err(|e| {
                GatewayError::Input(format!("cannot resume run {}: {}: cannot read it: {e}", run.id, path.display()))
            })?;
            if &now != expected {
                return Err(changed(run.id, path.display(), expected, &now));
            }
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
        let id = run.id;
        if !self.on_journal(move |j| j.take_over(id)).await? {
            return Err(GatewayError::Input(format!("run {id} was resumed by another process first")));
        }
        let mut request = run.request;
        self.run_expecting(&mut request, run.video_hash, progress).await
    }

    /// The plan for a request, without spending anything.
    ///
    /// # Errors
    /// Bad input, or no provider of the chain can be built.
    pub async fn plan(&self, request: &VideoRequest) -> Result<Plan, GatewayError> {
        Ok(self.prepare(request, None, true).await?.plan)
    }

    /// What a run and a plan share: the video as a file, probed; the chain,
    /// built; the budgets; and the plan fitted to them. Spends nothing.
    async fn prepare(
        &self,
        request: &VideoRequest,
        progress: Option<&ProgressSender>,
        planning: bool,
    ) -> Result<Prepared, GatewayError> {
        let source = self.source(&request.source, progress).await?;
        let info = media::probe(&source.path, &self.config.limits).await?;
        emit(progress, Progress::Probed { duration_ms: info.duration_ms });
        let names = router::chain(&self.config, request.task.name(), &request.constraints)?;
        let (mut members, skipped, downloads) = self.gather(&names, planning);
        if members.is_empty() {
            return Err(GatewayError::Setup(skipped.join("; ")));
        }
        let budgets = self.budgets(request.constraints.max_cost_usd);
        let mut left = f64::MAX;
        for budget in &budgets {
            left = left.min(budget.remaining().await);
        }
        let mut plan = self.fit_plan(&info, &request.task, &mut members, &request.sampling, left)?;
        plan.skipped = skipped;
        for c in &mut plan.candidates {
            c.download_bytes = downloads.get(&c.provider).copied();
        }
        Ok(Prepared { source, info, names, members, budgets, plan })
    }

    async fn run_inner(
        &self,
        request: &VideoRequest,
        run_id: i64,
        expected: Option<String>,
        progress: Option<ProgressSender>,
        unsaved: Arc<AtomicU32>,
    ) -> Result<VideoReport, GatewayError> {
        let Prepared { source, info, names, members, budgets, plan } =
            self.prepare(request, progress.as_ref(), false).await?;
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
        let video_hash: Arc<str> = crate::models::hash_file(&source.path)
            .await
            .map_err(|e| GatewayError::Input(format!("{}: cannot read it: {e}", source.path.display())))?
            .into();
        if let Some(expected) = expected.filter(|e| **e != *video_hash) {
            return Err(changed(run_id, source_name(&request.source), &expected, &video_hash));
        }
        let hash = video_hash.to_string();
        if let Err(e) = self.on_journal(move |j| j.set_run_video(run_id, &hash)).await {
            tracing::warn!(error = %e, "cannot note the run's video in the journal: a resume will not check it");
        }
        let mut report = VideoReport::default();
        report.warnings.extend(plan.skipped.iter().map(|s| format!("provider skipped: {s}")));
        report.warnings.extend(plan.downgrades.iter().map(|d| format!("lowered to fit the budget: {d}")));
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
        };

        let native_events = ctx.observe(&members, &plan).await?;
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

impl Gateway {
    /// The request's video as a local file.
    async fn source(&self, source: &VideoSource, progress: Option<&ProgressSender>) -> Result<Source, GatewayError> {
        match source {
            VideoSource::Path { path } => Ok(Source { path: path.clone(), _temp: None, _download: None }),
            VideoSource::Bytes { data, format } => {
                let suffix = format!(".{}", format.as_deref().unwrap_or("mp4").trim_start_matches('.'));
                let mut temp = tempfile::Builder::new().prefix("vidgate-").suffix(&suffix).tempfile().map_err(|e| {
                    GatewayError::Input(format!("cannot hold the video's bytes in a temporary file: {e}"))
                })?;
                std::io::Write::write_all(&mut temp, data)
                    .map_err(|e| GatewayError::Input(format!("cannot write the video's bytes: {e}")))?;
                Ok(Source { path: temp.path().to_path_buf(), _temp: Some(temp), _download: None })
            }
            VideoSource::Url { url } => {
                let downloaded = crate::fetch::fetch(url, &self.config.fetch, progress).await?;
                Ok(Source { path: downloaded.path().to_path_buf(), _temp: None, _download: Some(downloaded) })
            }
        }
    }
}

impl Ctx<'_> {
    /// One chain for this request: every member behind its request layers
    /// (budgets, retry), frames turned to JPEG for members that take JPEG,
    /// and the journal in front of the whole chain.
    fn chain(&self, members: &[Member], rgb: bool) -> Arc<Journaled> {
        let journal: Arc<Journal> = self.gateway.journal.clone();
        let ledger = journal.clone();
        // Queued on the journal's thread, ahead of the reservation's release.
        let on_spend: SpendHook = Arc::new(move |provider: &str, usd: f64| ledger.queue_spend(provider, usd));
        let config = &self.gateway.config;
        let breakers: Vec<_> = members.iter().map(|m| self.gateway.breaker(&m.name)).collect();
        let wrapped: Vec<Arc<dyn Provider>> = members
            .iter()
            .zip(&breakers)
            .map(|(m, breaker)| {
                let stack = policy::request_layers(
                    m.shared.clone(),
                    config,
                    self.budgets.clone(),
                    self.log.clone(),
                    Some(on_spend.clone()),
                    breaker.clone(),
                );
                if rgb && !m.shared.capabilities().rgb_frames {
                    Arc::new(JpegFrames::new(stack, config.sampling.jpeg_quality)) as Arc<dyn Provider>
                } else {
                    stack
                }
            })
            .collect();
        let chain = FallbackChain::with_breakers(wrapped, breakers);
        let progress = self.progress.clone();
        let budget = self.budgets[0].clone();
        Arc::new(
            Journaled::new(chain, journal, self.video_hash.clone()).counting_unsaved(self.unsaved.clone()).on_unit(
                Arc::new(move |provider: &str, reused: bool| {
                    emit(
                        progress.as_ref(),
                        Progress::Unit { provider: provider.to_string(), reused, spent_usd: budget.spent() },
                    );
                }),
            ),
        )
    }

    /// Gather observations: the video to the native-video providers at the
    /// head of the chain, else (or when they all fail) frames to the rest,
    /// and to those of them that said the video itself cannot be used.
    /// Returns whether the observations are already timeline events.
    async fn observe(&mut self, members: &[Member], plan: &Plan) -> Result<bool, GatewayError> {
        let native: Vec<Member> =
            members.iter().take_while(|m| m.shared.capabilities().native_video).cloned().collect();
        let mut refused = Vec::new();
        if !native.is_empty() {
            match self.observe_video(&native, &plan.sampling).await {
                Ok(()) => return Ok(true),
                Err((e, _)) if e.class == crate::provider::ErrorClass::Fatal => return Err(self.failed(e.to_string())),
                Err((e, names)) => {
                    self.report.warnings.push(format!("the video could not be sent whole: {e}"));
                    refused = names;
                }
            }
        }
        if !refused.is_empty() {
            self.report
                .warnings
                .push(format!("the video itself cannot be used by {}: sent frames", refused.join(", ")));
        }
        let frames_members: Vec<Member> = members
            .iter()
            .filter(|m| !m.shared.capabilities().native_video || refused.contains(&m.name))
            .cloned()
            .collect();
        if frames_members.is_empty() {
            return Err(self.failed("no provider of the chain takes frames, and the video call failed".into()));
        }
        self.observe_frames(&frames_members, plan).await?;
        Ok(false)
    }

    /// The video call. On failure, the error and the providers that said the
    /// video itself cannot be used.
    async fn observe_video(
        &mut self,
        members: &[Member],
        sampling: &SamplingPlan,
    ) -> Result<(), (ProviderError, Vec<String>)> {
        let template = prompts::load("timeline", self.gateway.config.prompts_dir.as_deref())
            .map_err(|e| (fatal(e.to_string()), Vec::new()))?;
        let job = video_job(&self.info, sampling, &template).map_err(|e| (fatal(e.to_string()), Vec::new()))?;
        let timeout = timecode::seconds(self.gateway.config.limits.extract_timeout_s);
        let cut = match sampling.range {
            Some(range) => Some(Arc::new(
                RangeCut::new(&self.info, range, &template, timeout).map_err(|e| (fatal(e.to_string()), Vec::new()))?,
            )),
            None => None,
        };
        let (stepped, steps) = VideoStep::wrap(members, cut);
        let span = job.covered();
        self.note_template(&template);
        let chain = self.chain(&stepped, false);
        emit(
            self.progress.as_ref(),
            Progress::Uploading { provider: members[0].name.clone(), bytes: self.info.size_bytes },
        );
        let result = chain.run(&job).await;
        self.report.reused_units += chain.reused();
        let output = result.map_err(|e| {
            let refused = members.iter().zip(&steps).filter(|(_, s)| s.refused()).map(|(m, _)| m.name.clone());
            (e, refused.collect())
        })?;
        let events = events_of(&output, span);
        self.add_observations(events.into_iter().map(|e| Observation {
            range: TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) },
            text: e.text,
            provider: output_provider(&output, &members[0].name),
            model: Some(output.model.clone()),
        }));
        Ok(())
    }

    async fn observe_frames(&mut self, members: &[Member], plan: &Plan) -> Result<(), GatewayError> {
        let config = &self.gateway.config;
        let rgb = members.iter().any(|m| m.shared.capabilities().rgb_frames);
        let format = if rgb { FrameFormat::Rgb } else { FrameFormat::Jpeg { quality: config.sampling.jpeg_quality } };
        let extraction = Extraction::new(
            &self.info,
            &plan.sampling,
            &config.sampling,
            format,
            crate::timecode::seconds(config.limits.extract_timeout_s),
        )?;
        let frames = media::extract(extraction)?;
        let per_call = members.iter().map(|m| m.shared.capabilities().max_images_per_call.max(1)).min().unwrap_or(1);
        let concurrency =
            members.iter().map(|m| m.profile.limits.max_concurrency.unwrap_or(4).max(1)).min().unwrap_or(1) as usize;
        let chain = self.chain(members, rgb);
        let settings = ObserveSettings {
            task: Task::Describe,
            frames_per_call: per_call,
            concurrency,
            max_output_tokens: config.merge.observation_tokens,
            duration_ms: self.info.duration_ms,
            progress: self.progress.clone(),
        };
        // Read once the frames are consumed: some are only known at the end.
        let warnings = frames.warnings_handle();
        let observed: Observed = observe_frames(chain.clone(), frames, &settings, config.prompts_dir.as_deref())
            .await
            .map_err(|e| match e {
                crate::observe::ObserveError::Media(m) => GatewayError::Media(m),
                crate::observe::ObserveError::Prompt(p) => GatewayError::Prompt(p),
            })?;
        self.report.reused_units += chain.reused();
        self.report.warnings.extend(warnings.list());
        self.report.prompt_versions.extend(observed.prompt_versions.iter().cloned());
        for (span, e) in &observed.failures {
            self.report.warnings.push(format!(
                "{}–{}: no observation: {e}",
                timecode::format(span.start_ms),
                timecode::format(span.end_ms)
            ));
        }
        // A story with holes is not the story of the video: the run fails,
        // and what was answered is kept (here and in the journal) for a rerun.
        let failed = observed.failures.len();
        let reason = match observed.failures.first() {
            Some((span, e)) => Some(format!(
                "{failed} units got no answer from any provider (the first at {}: {e}); {} observations were made",
                timecode::format(span.start_ms),
                observed.observations.len(),
            )),
            None if observed.observations.is_empty() => {
                Some(format!("{}: no frames could be sampled", self.info.path.display()))
            }
            None => None,
        };
        self.add_observations(observed.observations);
        match reason {
            Some(reason) => Err(self.failed(reason)),
            None => Ok(()),
        }
    }

    fn add_observations(&mut self, observations: impl IntoIterator<Item = Observation>) {
        for o in observations {
            if !self.report.providers.contains(&o.provider) {
                self.report.providers.push(o.provider.clone());
            }
            self.report.observations.push(o);
        }
        self.report.observations.sort_by_key(|o| (o.range.start_ms, o.range.end_ms));
    }

    fn note_template(&mut self, template: &Template) {
        let id = template.id();
        if !self.report.prompt_versions.contains(&id) {
            self.report.prompt_versions.push(id);
        }
    }

    /// The observations folded into events (near-duplicates merged). A
    /// frame's observation stands for the time until the next one.
    fn folded(&self) -> Vec<Event> {
        let mut t = TimelineBuilder::default();
        let obs = &self.report.observations;
        for (i, o) in obs.iter().enumerate() {
            let mut o = o.clone();
            let next = obs[i + 1..].iter().map(|n| n.range.start_ms).find(|&s| s > o.range.start_ms);
            let until = next.unwrap_or(self.info.duration_ms);
            if o.range.duration_ms() <= 1 && until > o.range.end_ms {
                o.range.end_ms = until;
            }
            t.observe(o);
        }
        t.events()
    }

    /// Turn the observations into what the task asks for.
    async fn answer(&mut self, task: &Task, members: &[Member], native_events: bool) -> Result<(), GatewayError> {
        let folded = self.folded();
        self.report.events = folded.clone();
        if members.is_empty() {
            return self.merge_unavailable(task, "no merge provider can be used".into());
        }
        let chain = self.chain(members, false);
        self.merge = MergeLimits::for_members(&self.gateway.config.merge, members);
        let span = TimeRange { start_ms: 0, end_ms: self.info.duration_ms.max(1) };
        // One observation may not take more than half a window.
        let longest = self.merge.window_chars / 2;
        let lines: Vec<(TimeRange, String)> = folded
            .iter()
            .map(|e| {
                let range = TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) };
                let mut line = merge::line(range, &e.text);
                if line.len() > longest {
                    let cut = (0..=longest).rev().find(|&i| line.is_char_boundary(i)).unwrap_or(0);
                    line.truncate(cut);
                    line.push('…');
                }
                (range, line)
            })
            .collect();
        let result = match task {
            Task::Describe => self.story(&chain, lines, span).await.map(|story| self.report.story = Some(story)),
            Task::Timeline if native_events => Ok(()),
            Task::Timeline => self.text_call(&chain, "timeline", task, &lines, span, &[]).await.map(|out| {
                let events = events_of(&out, span);
                if !events.is_empty() {
                    self.report.events = events;
                }
            }),
            Task::Ask { question } => self
                .text_call(&chain, "ask", task, &lines, span, &[("question", question)])
                .await
                .map(|out| self.report.answer = Some(joined_text(&out))),
            Task::Find { what } => self
                .text_call(&chain, "find", task, &lines, span, &[("what", what)])
                .await
                .map(|out| self.report.events = events_of(&out, span)),
        };
        self.report.reused_units += chain.reused();
        match result {
            Ok(()) => Ok(()),
            Err(e) => self.merge_unavailable(task, e.to_string()),
        }
    }

    /// The merge step failed: a story or a timeline falls back to the folded
    /// observations; an answer cannot, so the run fails with what it has.
    fn merge_unavailable(&mut self, task: &Task, reason: String) -> Result<(), GatewayError> {
        match task {
            Task::Describe | Task::Timeline => {
                self.report.warnings.push(format!(
                    "the observations could not be merged by a model: {reason}; the timeline lists them as they are"
                ));
                Ok(())
            }
            Task::Ask { .. } | Task::Find { .. } => Err(self
                .failed(format!("the observations were gathered, but no provider could answer from them: {reason}"))),
        }
    }

    /// One text call over `lines` with the template `name`. The lines go into
    /// the template's `{{observations}}` when it has one, else after the prompt.
    async fn text_call(
        &mut self,
        chain: &Arc<Journaled>,
        name: &str,
        task: &Task,
        lines: &[(TimeRange, String)],
        span: TimeRange,
        values: &[(&str, &str)],
    ) -> Result<ProviderOutput, ProviderError> {
        let template =
            prompts::load(name, self.gateway.config.prompts_dir.as_deref()).map_err(|e| fatal(e.to_string()))?;
        self.note_template(&template);
        let duration = timecode::format(self.info.duration_ms);
        let block = merge::data_block(lines.iter().map(|(_, l)| l.as_str()));
        let mut all: Vec<(&str, &str)> = vec![("duration", duration.as_str()), ("observations", block.as_str())];
        all.extend_from_slice(values);
        let prompt = template.render(&all).map_err(|e| fatal(e.to_string()))?;
        let input = if prompt.contains(&block) { String::new() } else { block };
        let job = Job {
            task: task.clone(),
            input: JobInput::Text(input),
            prompt: prompt.into(),
            prompt_version: template.id().into(),
            max_output_tokens: self.merge.max_output_tokens,
            span: Some(span),
        };
        emit(self.progress.as_ref(), Progress::Merging { calls: 1 });
        chain.run(&job).await
    }

    /// The story: one merge call when the observations fit one window, else
    /// a summary per window, then summaries of those, until one is left.
    async fn story(
        &mut self,
        chain: &Arc<Journaled>,
        mut lines: Vec<(TimeRange, String)>,
        span: TimeRange,
    ) -> Result<String, ProviderError> {
        let window = self.merge.window_chars;
        for level in 0.. {
            let windows: Vec<Vec<(TimeRange, String)>> =
                merge::windows(&lines, window).into_iter().map(<[_]>::to_vec).collect();
            if windows.len() <= 1 || level >= MAX_MERGE_LEVELS {
                if windows.len() > 1 {
                    self.report.warnings.push(format!(
                        "the observations are too long to merge in {MAX_MERGE_LEVELS} rounds; the story merges what fits"
                    ));
                }
                let last = windows.into_iter().next().unwrap_or_default();
                let out = self.text_call(chain, "story", &Task::Describe, &last, span, &[]).await?;
                return Ok(joined_text(&out));
            }
            let mut next = Vec::with_capacity(windows.len());
            for w in &windows {
                let range = TimeRange {
                    start_ms: w.first().map_or(0, |(r, _)| r.start_ms),
                    end_ms: w.last().map_or(1, |(r, _)| r.end_ms),
                };
                let out = self.text_call(chain, "story", &Task::Describe, w, range, &[]).await?;
                next.push((range, merge::line(range, &joined_text(&out))));
            }
            lines = next;
        }
        unreachable!("the loop returns")
    }

    /// A failure, with everything done so far.
    fn failed(&mut self, reason: String) -> GatewayError {
        let summary = attempt_summary(&self.log.snapshot(), &reason);
        let report = self.snapshot();
        GatewayError::Failed {
            summary: if summary.is_empty() { reason } else { format!("{reason} (attempts: {summary})") },
            partial: Box::new(report),
        }
    }

    fn snapshot(&self) -> VideoReport {
        let mut report = self.report.clone();
        report.attempts = self.log.snapshot();
        let mut usage = Usage::default();
        for a in &report.attempts {
            usage.add(&a.usage);
            for w in &a.warnings {
                if !report.warnings.contains(w) {
                    report.warnings.push(w.clone());
                }
            }
        }
        // What may have been billed without an answer counts too.
        let spent = self.budgets[0].spent();
        if spent > usage.cost_usd + 1e-9 {
            report.warnings.push(format!(
                "calls that failed without an answer may have been billed up to ${:.4}; counted against the budget",
                spent - usage.cost_usd
            ));
            usage.cost_usd = spent;
        }
        report.usage = usage;
        report.unsaved_units = self.unsaved.load(Ordering::SeqCst);
        if report.unsaved_units > 0 {
            report.warnings.push(self.gateway.kept_note(report.unsaved_units));
        }
        report
    }

    fn finish(self) -> VideoReport {
        let report = self.snapshot();
        emit(self.progress.as_ref(), Progress::Done { spent_usd: report.usage.cost_usd });
        report
    }
}

/// The request's video, as a person would name it (never a URL's query).
fn source_name(source: &VideoSource) -> String {
    match source {
        VideoSource::Path { path } => path.display().to_string(),
        VideoSource::Url { .. } => "a URL".into(),
        VideoSource::Bytes { data, .. } => format!("{} bytes given", data.len()),
    }
}

fn changed(run: i64, video: impl std::fmt::Display, expected: &str, now: &str) -> GatewayError {
    GatewayError::Input(format!(
        "cannot resume run {run}: {video} changed since the run began (content sha256 {} then, {} now): \
         start a new run on it instead",
        &expected[..expected.len().min(12)],
        &now[..now.len().min(12)]
    ))
}

fn fatal(message: String) -> ProviderError {
    ProviderError::new("vidgate", crate::provider::ErrorClass::Fatal, message)
}

/// Events from a timeline-shaped answer: the provider's parsed events, or a
/// JSON answer parsed here when the provider returned it as text.
fn events_of(output: &ProviderOutput, span: TimeRange) -> Vec<Event> {
    if let [only] = output.observations.as_slice() {
        if let Ok(events) = timeline::parse_events(&only.text, span) {
            return events;
        }
    }
    output
        .observations
        .iter()
        .map(|o| Event { start_ms: o.range.start_ms, end_ms: o.range.end_ms, text: o.text.clone() })
        .collect()
}

fn joined_text(output: &ProviderOutput) -> String {
    output.observations.iter().map(|o| o.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n\n")
}

fn output_provider(output: &ProviderOutput, default: &str) -> String {
    output.observations.first().map_or_else(|| default.to_string(), |o| o.provider.clone())
}

/// Per provider: attempts and how they ended, e.g. `openai: 3 failed (HTTP 503)`.
fn attempt_summary(attempts: &[crate::schema::Attempt], said: &str) -> String {
    use crate::schema::Outcome;
    let mut per: Vec<(String, u32, u32, String)> = Vec::new();
    for a in attempts {
        let i = match per.iter().position(|p| p.0 == a.provider) {
            Some(i) => i,
            None => {
                per.push((a.provider.clone(), 0, 0, String::new()));
                per.len() - 1
            }
        };
        match &a.outcome {
            Outcome::Ok => per[i].1 += 1,
            Outcome::Transient { reason } | Outcome::FellBack { reason } | Outcome::Fatal { reason } => {
                per[i].2 += 1;
                per[i].3 = reason.clone();
            }
        }
    }
    per.iter()
        .map(|(p, ok, failed, last)| {
            if *failed == 0 {
                format!("{p}: {ok} ok")
            } else if said.contains(last.as_str()) {
                // The error (and its body) once per line is enough.
                format!("{p}: {ok} ok, {failed} failed, the last as above")
            } else {
                format!("{p}: {ok} ok, {failed} failed, the last: {last}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
