//! The runs a service works on: at most `max_concurrent_runs` at once, at
//! most `queue_length` waiting, each with its state, its progress events (for
//! late readers too) and a way to cancel it.
//!
//! A run's id is its id in the journal, entered when it is submitted: the
//! journal is what a restarted service resumes from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::config::ServerConfig;
use crate::gateway::{Account, Gateway, GatewayError, Live, RunOptions};
use crate::journal::{now_s, RunAccount, RunRecord};
use crate::progress::Progress;
use crate::schema::{VideoReport, VideoRequest};

/// Where a run is.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a free slot.
    Queued,
    Running,
    Done {
        report: Box<VideoReport>,
    },
    /// No report; `error` says why (its HTTP status in `http_status`), and
    /// what was done before it failed is in `partial`.
    Failed {
        error: String,
        http_status: u16,
        #[serde(skip_serializing_if = "Option::is_none")]
        partial: Option<Box<VideoReport>>,
    },
    Cancelled,
}

impl RunState {
    pub fn is_over(&self) -> bool {
        matches!(self, RunState::Done { .. } | RunState::Failed { .. } | RunState::Cancelled)
    }

    pub fn name(&self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Done { .. } => "done",
            RunState::Failed { .. } => "failed",
            RunState::Cancelled => "cancelled",
        }
    }
}

/// One run: its request, its state, its events.
#[derive(Debug)]
pub struct Run {
    pub id: i64,
    pub request: VideoRequest,
    /// The id of the API key that submitted it, if any.
    pub key: Option<String>,
    pub created_unix_s: i64,
    state: watch::Sender<RunState>,
    /// Every event so far, for a reader that comes late.
    history: Mutex<Vec<Progress>>,
    live: broadcast::Sender<Progress>,
    cancel: CancellationToken,
}

impl Run {
    pub fn state(&self) -> RunState {
        self.state.borrow().clone()
    }

    /// Changes of state, the current one first.
    pub fn watch(&self) -> watch::Receiver<RunState> {
        self.state.subscribe()
    }

    /// The events so far, and a receiver of those to come (none lost between the two).
    pub fn events(&self) -> (Vec<Progress>, broadcast::Receiver<Progress>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (history.clone(), self.live.subscribe())
    }

    fn push(&self, event: Progress) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.push(event.clone());
        let _ = self.live.send(event);
    }

    /// Wait until the run is over; its last state.
    pub async fn finished(&self) -> RunState {
        let mut rx = self.watch();
        loop {
            let state = rx.borrow_and_update().clone();
            if state.is_over() {
                return state;
            }
            if rx.changed().await.is_err() {
                return self.state();
            }
        }
    }
}

/// What to run, and for whom.
#[derive(Debug, Clone)]
pub struct Submission {
    pub request: VideoRequest,
    /// The paying key: its id and daily cap.
    pub account: Option<Account>,
}

/// The service's runs.
#[derive(Debug)]
pub struct Runs {
    /// The gateway new runs start on (a config reload replaces it).
    live: Arc<Live>,
    runs: Arc<Mutex<HashMap<i64, Arc<Run>>>>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue_length: usize,
    /// Closed when the service stops: no new run is taken or started.
    closing: CancellationToken,
    /// Closed when the stop's grace is over: running runs stop where they
    /// are, unfinished in the journal, for the next start to resume.
    stopping: CancellationToken,
    /// This service instance in the journal (see [`owner`]).
    owner: String,
    keep_reports_days: f64,
    /// Told of every run that ends (metrics).
    on_finish: OnFinish,
}

/// Called with each run as it ends, and its last state.
pub type FinishHook = Arc<dyn Fn(&Run, &RunState) + Send + Sync>;

#[derive(Clone, Default)]
struct OnFinish(Arc<Mutex<Vec<FinishHook>>>);

impl std::fmt::Debug for OnFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnFinish")
    }
}

impl Runs {
    pub fn new(live: Arc<Live>, server: &ServerConfig) -> Self {
        let journal = live.current().journal().path().to_string();
        Self {
            runs: Arc::default(),
            slots: Arc::new(Semaphore::new(server.max_concurrent_runs)),
            waiting: Arc::default(),
            queue_length: server.queue_length,
            closing: CancellationToken::new(),
            stopping: CancellationToken::new(),
            owner: owner(server, &live.current(), &journal),
            live,
            keep_reports_days: server.keep_reports_days,
            on_finish: OnFinish::default(),
        }
    }

    /// The gateway new runs start on.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.live.current()
    }

    /// Call `hook` with every run that ends from now on.
    pub fn on_finish(&self, hook: FinishHook) {
        self.on_finish.0.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
    }

    /// Forget the finished run `id` (its report is no longer served);
    /// whether it was held and over. A run not over is kept.
    pub fn forget_finished(&self, id: i64) -> bool {
        let mut held = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let over = held.get(&id).is_some_and(|r| r.state.borrow().is_over());
        if over {
            held.remove(&id);
        }
        over
    }

    /// Serve again the runs finished within `server.keep_reports_days`, in
    /// their final state, and resume this instance's unfinished runs (and
    /// any whose process died) under their own ids. How many were resumed.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub async fn restore(&self) -> Result<usize, GatewayError> {
        let since = now_s() - (self.keep_reports_days * 86_400.0) as i64;
        for done in self.gateway().on_journal(move |j| j.recent_runs(since)).await? {
            let Ok(state) = serde_json::from_value::<RunState>(done.outcome) else { continue };
            let run = self.new_run(done.id, done.request, done.account, done.started_unix_s, state);
            self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(run.id, run);
        }
        let owner = self.owner.clone();
        let mut resumed = 0;
        for (record, account) in self.gateway().on_journal(move |j| j.resumable_runs(&owner)).await? {
            let (id, owner) = (record.id, self.owner.clone());
            if self.get(id).is_some() || !self.gateway().on_journal(move |j| j.claim_run(id, &owner)).await? {
                continue;
            }
            resumed += usize::from(self.take_up(record, account).await);
        }
        Ok(resumed)
    }

    /// Take over the runs of other instances of a shared journal that died
    /// (their leases ran out), as many as this one has free slots for (one
    /// at least), each to exactly one instance. How many were taken.
    ///
    /// # Errors
    /// The journal cannot be read or written.
    pub async fn adopt(&self) -> Result<usize, GatewayError> {
        if self.closing.is_cancelled() {
            return Ok(0);
        }
        // Only as many as can start here now: a run taken only to wait in
        // this queue would be better left where it is.
        let (owner, room) = (self.owner.clone(), self.slots.available_permits() as u32);
        if room == 0 {
            return Ok(0);
        }
        let mut adopted = 0;
        for (record, account) in self.gateway().on_journal(move |j| j.claim_abandoned(&owner, room)).await? {
            tracing::info!(run = record.id, "taking over a run whose instance stopped renewing its lease");
            adopted += usize::from(self.take_up(record, account).await);
        }
        Ok(adopted)
    }

    /// Resume the unfinished run `record`, claimed by this instance; whether
    /// it goes on (a run whose key was revoked ends, failed).
    async fn take_up(&self, record: RunRecord, account: Option<RunAccount>) -> bool {
        let id = record.id;
        // A key revoked since the run began pays for nothing more: the
        // run ends, failed, with what the journal says of it.
        if let Some(a) = account.as_ref().filter(|a| a.revoked) {
            let key = Some(a.id.clone());
            let run = self.new_run(id, record.request.clone(), key, record.started_unix_s, RunState::Queued);
            self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(id, run.clone());
            let state = RunState::Failed {
                error: "the run's API key was revoked before the run could finish".into(),
                http_status: 403,
                partial: None,
            };
            finish(&self.gateway(), &run, state, &self.on_finish).await;
            return false;
        }
        // Its key's cap as the key holds it now: the day's spend of the
        // key, before the restart too, counts against it.
        let account = account.map(|a| Account { id: a.id, max_usd_per_day: a.max_usd_per_day });
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let submission = Submission { request: record.request.clone(), account };
        self.launch(id, submission, Some(record));
        true
    }

    /// The run `id`: held here, or else as the shared journal has it (a
    /// run of another instance, running or over), for reading only.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub async fn find(&self, id: i64) -> Result<Option<Arc<Run>>, GatewayError> {
        if let Some(run) = self.get(id) {
            return Ok(Some(run));
        }
        // Only instances of a shared database serve each other's runs; a
        // file journal's other runs (command line ones) are not served.
        if !self.gateway().journal().is_shared_database() {
            return Ok(None);
        }
        let view = self.gateway().on_journal(move |j| j.run_view(id)).await?;
        Ok(view.and_then(|v| self.seen(v)))
    }

    /// A run of another instance, for reading: none when it is over and its
    /// outcome forgotten (or a continuation took it on).
    fn seen(&self, view: crate::journal::RunView) -> Option<Arc<Run>> {
        let state = state_of(&view)?;
        Some(self.new_run(view.id, view.request, view.account, view.started_unix_s, state))
    }

    /// Every run this service serves, newest first: those held here, and on
    /// a shared database every instance's runs under way or finished within
    /// `server.keep_reports_days`, as the journal has them.
    ///
    /// # Errors
    /// The journal cannot be read.
    pub async fn list_all(&self) -> Result<Vec<Arc<Run>>, GatewayError> {
        let mut all = self.list();
        if !self.gateway().journal().is_shared_database() {
            return Ok(all);
        }
        let since = now_s() - (self.keep_reports_days * 86_400.0) as i64;
        let views = self.gateway().on_journal(move |j| j.service_runs(since)).await?;
        let held: std::collections::HashSet<i64> = all.iter().map(|r| r.id).collect();
        all.extend(views.into_iter().filter(|v| !held.contains(&v.id)).filter_map(|v| self.seen(v)));
        all.sort_by_key(|r| std::cmp::Reverse(r.id));
        Ok(all)
    }

    /// Whether this instance holds the run `id` (it can cancel it, stream its events).
    pub fn holds(&self, id: i64) -> bool {
        self.get(id).is_some()
    }

    /// Enter `submission` in the journal and start it (or queue it); its
    /// run, at once.
    ///
    /// # Errors
    /// 429 with `Retry-After` when the queue is full; 503 while the service
    /// stops; 500 when the journal cannot take it.
    pub async fn submit(&self, submission: Submission) -> Result<Arc<Run>, ApiError> {
        if self.closing.is_cancelled() {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the service is stopping and takes no new runs",
            )
            .retry_after(5));
        }
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        if self.slots.available_permits() == 0 && waiting >= self.queue_length {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!(
                    "the run queue is full: {} runs wait for a slot (server.queue_length = {}); try again later",
                    waiting, self.queue_length
                ),
            )
            .code("queue_full")
            .retry_after(5));
        }
        let stored = submission.request.clone();
        let id = match self.gateway().on_journal(move |j| j.start_run(&stored)).await {
            Ok(id) => id,
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(ApiError::from(GatewayError::from(e)));
            }
        };
        let (account, owner) = (submission.account.as_ref().map(|a| a.id.clone()), self.owner.clone());
        if let Err(e) = self.gateway().on_journal(move |j| j.set_run_owner(id, account.as_deref(), &owner)).await {
            tracing::warn!(run = id, error = %e, "cannot note the run's owner in the journal");
        }
        Ok(self.launch(id, submission, None))
    }

    fn new_run(
        &self,
        id: i64,
        request: VideoRequest,
        key: Option<String>,
        created_unix_s: i64,
        first: RunState,
    ) -> Arc<Run> {
        let (state, _) = watch::channel(first);
        let (live, _) = broadcast::channel(256);
        Arc::new(Run {
            id,
            request,
            key,
            created_unix_s,
            state,
            history: Mutex::default(),
            live,
            cancel: CancellationToken::new(),
        })
    }

    /// Start (or queue) the run `id`, already in the journal; `resumed`, the
    /// journal's record of an unfinished run taken over.
    fn launch(&self, id: i64, submission: Submission, resumed: Option<RunRecord>) -> Arc<Run> {
        let key = submission.account.as_ref().map(|a| a.id.clone());
        let created = resumed.as_ref().map_or_else(now_s, |r| r.started_unix_s);
        let run = self.new_run(id, submission.request.clone(), key, created, RunState::Queued);
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(id, run.clone());
        let (live, slots, waiting, task_run) =
            (self.live.clone(), self.slots.clone(), self.waiting.clone(), run.clone());
        let (closing, stopping, hooks) = (self.closing.clone(), self.stopping.clone(), self.on_finish.clone());
        // Leased from the start, queued too: no other instance takes it,
        // but on a shared database a run that must wait for a slot here is
        // offered to every instance (its lease ended), and the first with
        // room takes it. Should another have taken it (offered, or this one
        // could not renew its lease for a minute), this one lets it go
        // unrecorded and follows its end in the journal.
        let offered = Arc::new(AtomicBool::new(
            self.gateway().journal().is_shared_database() && self.slots.available_permits() == 0,
        ));
        let lost = CancellationToken::new();
        let owner = self.owner.clone();
        let lease = keep_leased(live.current(), id, owner.clone(), offered.clone(), lost.clone());
        let (held, closing_of_follow) = (self.runs.clone(), closing.clone());
        // The run, no longer this instance's: served from the journal.
        let handed_on = move |run: Arc<Run>, gateway: Arc<Gateway>| {
            held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            tokio::spawn(follow(gateway, run, closing_of_follow.clone()));
        };
        tokio::spawn(async move {
            let _lease = lease;
            let run = task_run;
            if offered.load(Ordering::SeqCst) {
                let owner = owner.clone();
                let put = live.current().on_journal(move |j| j.offer_run(id, &owner)).await;
                offered.store(put.unwrap_or(false), Ordering::SeqCst);
            }
            let permit = tokio::select! {
                p = slots.acquire_owned() => p.ok().map(Some),
                () = run.cancel.cancelled() => Some(None),
                // The service stops: a queued run stays unfinished in the journal.
                () = closing.cancelled() => None,
                () = lost.cancelled() => {
                    handed_on(run.clone(), live.current());
                    None
                }
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            let _permit = match permit {
                Some(Some(p)) => p,
                Some(None) => return finish(&live.current(), &run, RunState::Cancelled, &hooks).await,
                None => return,
            };
            // Offered meanwhile: taken back, unless another instance took it first.
            if offered.load(Ordering::SeqCst) {
                match take_back(&live.current(), id, &owner, &closing).await {
                    Some(true) => offered.store(false, Ordering::SeqCst),
                    Some(false) => return handed_on(run.clone(), live.current()),
                    None => return,
                }
            }
            // The config in force when the run starts serves it to its end.
            let gateway = live.current();
            run.state.send_replace(RunState::Running);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let forward = {
                let run = run.clone();
                tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        run.push(event);
                    }
                })
            };
            let options = RunOptions { progress: Some(tx), run_id: Some(run.id), account: submission.account };
            let work = async {
                match resumed {
                    Some(record) => gateway.resume_run(record, options).await,
                    None => gateway.run_with(submission.request, options).await,
                }
            };
            let result = tokio::select! {
                r = work => Some(Some(r)),
                () = run.cancel.cancelled() => Some(None),
                // The stop's grace is over: the run stays unfinished in the
                // journal (its finished units are there) for the next start.
                () = stopping.cancelled() => None,
                // Another instance holds it now and will record its end.
                () = lost.cancelled() => {
                    handed_on(run.clone(), live.current());
                    None
                }
            };
            let Some(result) = result else { return };
            let _ = forward.await;
            let state = match result {
                Some(Ok(report)) => RunState::Done { report: Box::new(report) },
                Some(Err(e)) => {
                    let api = ApiError::from(&e);
                    let partial = match e {
                        GatewayError::Failed { partial, .. } => Some(partial),
                        _ => None,
                    };
                    RunState::Failed { error: api.message, http_status: api.status.as_u16(), partial }
                }
                None => RunState::Cancelled,
            };
            finish(&gateway, &run, state, &hooks).await;
        });
        run
    }

    /// The run `id`, while the service holds it.
    pub fn get(&self, id: i64) -> Option<Arc<Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Every run held, newest first.
    pub fn list(&self) -> Vec<Arc<Run>> {
        let mut all: Vec<_> = self.runs.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.id));
        all
    }

    /// Cancel the run `id`: queued, it never starts; running, its work stops
    /// (finished units stay in the journal). Whether there was such a run.
    pub fn cancel(&self, id: i64) -> bool {
        match self.get(id) {
            Some(run) => {
                run.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Runs working now, and runs waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        let held = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let running = held.values().filter(|r| matches!(*r.state.borrow(), RunState::Running)).count();
        (running, self.waiting.load(Ordering::SeqCst))
    }

    /// Take no new runs from now on, and start no queued one: those stay
    /// unfinished in the journal. Running runs go on (see [`Runs::drain`]).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Close, let running runs finish for up to `grace`, then stop those
    /// still working: they stay unfinished in the journal (not cancelled),
    /// for the next start to resume.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.close();
        let deadline = tokio::time::Instant::now() + grace;
        while self.load().0 > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.stopping.cancel();
    }
}

/// This instance's name in the journal, which its unfinished runs carry: a
/// restart under the same name resumes them at once, another instance
/// only once their lease ran out. On a file journal: its uploads folder and
/// journal. On a shared database, where instances share those: the host
/// and the address it serves on too (and the process, for a port chosen
/// by the system, which a restart does not keep).
fn owner(server: &ServerConfig, gateway: &Gateway, journal: &str) -> String {
    let base = format!("{}|{journal}", server.uploads_dir().display());
    if !gateway.journal().is_shared_database() {
        return base;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let mut name = format!("{host}|{}|{base}", server.bind);
    if server.bind.ends_with(":0") {
        name.push_str(&format!("|pid {}", std::process::id()));
    }
    name
}

/// Renew the lease of the run `id` for `owner` every
/// [`crate::journal::RUN_LEASE_RENEW`] while the returned task lives;
/// cancel `lost` when another owner holds it. Aborted when dropped.
/// How often an instance of a shared database looks for runs offered by
/// the others (and an offered run's instance, whether it was taken).
pub const QUEUE_POLL: Duration = Duration::from_secs(2);

/// Renew the run's lease while this instance holds it; while the run is
/// `offered` to other instances, only watch whether one took it.
fn keep_leased(
    gateway: Arc<Gateway>,
    id: i64,
    owner: String,
    offered: Arc<AtomicBool>,
    lost: CancellationToken,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            if offered.load(Ordering::SeqCst) {
                tokio::time::sleep(QUEUE_POLL).await;
                let owner = owner.clone();
                if let Ok(false) = gateway.on_journal(move |j| j.owns_run(id, &owner)).await {
                    tracing::info!(run = id, "another instance took the queued run");
                    lost.cancel();
                    return;
                }
                continue;
            }
            tokio::time::sleep(crate::journal::RUN_LEASE_RENEW).await;
            if offered.load(Ordering::SeqCst) {
                continue;
            }
            let owner = owner.clone();
            match gateway.on_journal(move |j| j.renew_lease_of(id, &owner)).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(run = id, "another instance took the run over: this one stops working on it");
                    lost.cancel();
                    return;
                }
                Err(e) => tracing::warn!(run = id, error = %e, "cannot renew the run's lease in the journal"),
            }
        }
    }))
}

/// Take back the offered run `id` for `owner`: whether it is this
/// instance's again (false: another took it). While the journal cannot be
/// reached it tries again; none when the service stops meanwhile.
async fn take_back(gateway: &Gateway, id: i64, owner: &str, closing: &CancellationToken) -> Option<bool> {
    loop {
        let owner = owner.to_string();
        match gateway.on_journal(move |j| j.claim_run(id, &owner)).await {
            Ok(ours) => return Some(ours),
            Err(e) => tracing::warn!(run = id, error = %e, "cannot take the queued run back: trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(QUEUE_POLL) => {}
            () = closing.cancelled() => return None,
        }
    }
}

/// Another instance works on `run` now: its end, once the journal has it,
/// is this copy's too (for the readers still waiting on it here).
async fn follow(gateway: Arc<Gateway>, run: Arc<Run>, closing: CancellationToken) {
    let id = run.id;
    loop {
        tokio::select! {
            () = tokio::time::sleep(QUEUE_POLL) => {}
            () = closing.cancelled() => return,
        }
        match gateway.on_journal(move |j| j.run_view(id)).await {
            Ok(Some(view)) if view.status == "running" => {}
            Ok(Some(view)) => {
                if let Some(state) = state_of(&view) {
                    run.state.send_replace(state);
                }
                return;
            }
            Ok(None) => return,
            Err(e) => tracing::debug!(run = id, error = %e, "cannot read the run another instance took"),
        }
    }
}

/// A run's state as the journal has it: its kept outcome, or running;
/// none when it is over and its outcome forgotten (or a continuation took
/// it on).
fn state_of(view: &crate::journal::RunView) -> Option<RunState> {
    match view.outcome.clone().map(serde_json::from_value::<RunState>) {
        Some(Ok(state)) => Some(state),
        _ if view.status == "running" => Some(RunState::Running),
        _ => None,
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Take over the runs of instances that died, every
/// [`crate::journal::RUN_LEASE_RENEW`], and on a shared database those
/// other instances offer, every [`QUEUE_POLL`], as long as the service runs.
pub fn spawn_adoption(runs: Arc<Runs>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // On a shared database, runs other instances offer are looked for too.
        let shared = runs.gateway().journal().is_shared_database();
        let mut every = tokio::time::interval(if shared { QUEUE_POLL } else { crate::journal::RUN_LEASE_RENEW });
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if runs.closing.is_cancelled() {
                return;
            }
            if let Err(e) = runs.adopt().await {
                tracing::warn!(error = %e, "cannot look for runs of stopped instances in the journal");
            }
        }
    })
}

/// The run is over: its outcome goes to the journal, then to its readers.
async fn finish(gateway: &Gateway, run: &Run, state: RunState, hooks: &OnFinish) {
    let id = run.id;
    match serde_json::to_value(&state) {
        Ok(outcome) => {
            let status = state.name();
            if let Err(e) = gateway.on_journal(move |j| j.record_outcome(id, status, &outcome)).await {
                tracing::warn!(run = id, error = %e, "cannot keep the run's outcome in the journal");
            }
        }
        Err(e) => tracing::warn!(run = id, error = %e, "cannot write the run's outcome"),
    }
    let hooks = hooks.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for hook in hooks {
        hook(run, &state);
    }
    run.state.send_replace(state);
}
