//! The runs a service works on: at most `max_concurrent_runs` at once, at
//! most `queue_length` waiting, each with its state, its progress events (for
//! late readers too) and a way to cancel it.
//!
//! A run's id is its id in the journal, entered when it is submitted: the
//! journal is what a restarted service resumes from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::ApiError;
use crate::config::ServerConfig;
use crate::gateway::{Account, Gateway, GatewayError, RunOptions};
use crate::progress::Progress;
use crate::schema::{VideoReport, VideoRequest};

/// Where a run is.
#[derive(Debug, Clone, Serialize)]
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
    gateway: Arc<Gateway>,
    runs: Mutex<HashMap<i64, Arc<Run>>>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    queue_length: usize,
    /// Closed when the service stops: no new run is taken.
    closing: CancellationToken,
}

impl Runs {
    pub fn new(gateway: Arc<Gateway>, server: &ServerConfig) -> Self {
        Self {
            gateway,
            runs: Mutex::default(),
            slots: Arc::new(Semaphore::new(server.max_concurrent_runs)),
            waiting: Arc::default(),
            queue_length: server.queue_length,
            closing: CancellationToken::new(),
        }
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
        let id = match self.gateway.on_journal(move |j| j.start_run(&stored)).await {
            Ok(id) => id,
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(ApiError::from(GatewayError::from(e)));
            }
        };
        Ok(self.start(id, submission))
    }

    /// Start (or queue) the run `id`, already in the journal.
    fn start(&self, id: i64, submission: Submission) -> Arc<Run> {
        let (state, _) = watch::channel(RunState::Queued);
        let (live, _) = broadcast::channel(256);
        let run = Arc::new(Run {
            id,
            request: submission.request.clone(),
            key: submission.account.as_ref().map(|a| a.id.clone()),
            created_unix_s: now_s(),
            state,
            history: Mutex::default(),
            live,
            cancel: self.closing.child_token(),
        });
        self.runs.lock().unwrap_or_else(|e| e.into_inner()).insert(id, run.clone());
        let (gateway, slots, waiting, task_run) =
            (self.gateway.clone(), self.slots.clone(), self.waiting.clone(), run.clone());
        tokio::spawn(async move {
            let run = task_run;
            let permit = tokio::select! {
                p = slots.acquire_owned() => p.ok(),
                () = run.cancel.cancelled() => None,
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            let Some(_permit) = permit else {
                finish_cancelled(&gateway, &run).await;
                return;
            };
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
            let work = gateway.run_with(submission.request, options);
            let result = tokio::select! {
                r = work => Some(r),
                () = run.cancel.cancelled() => None,
            };
            let _ = forward.await;
            match result {
                Some(Ok(report)) => {
                    run.state.send_replace(RunState::Done { report: Box::new(report) });
                }
                Some(Err(e)) => {
                    let api = ApiError::from(&e);
                    let partial = match e {
                        GatewayError::Failed { partial, .. } => Some(partial),
                        _ => None,
                    };
                    run.state.send_replace(RunState::Failed {
                        error: api.message,
                        http_status: api.status.as_u16(),
                        partial,
                    });
                }
                None => finish_cancelled(&gateway, &run).await,
            }
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

    /// Take no new runs from now on.
    pub fn close(&self) {
        self.closing.cancel();
    }
}

async fn finish_cancelled(gateway: &Gateway, run: &Run) {
    let id = run.id;
    if let Err(e) = gateway.on_journal(move |j| j.finish_run(id, "cancelled")).await {
        tracing::warn!(run = id, error = %e, "cannot mark the run cancelled in the journal");
    }
    run.state.send_replace(RunState::Cancelled);
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
