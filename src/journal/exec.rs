//! Where the journal's database work runs: never on the async runtime's
//! threads (an fsync, a wait for another process's lock, a round trip to a
//! PostgreSQL server), but on the journal's own.
//!
//! - SQLite: one thread owns the one connection; every operation runs
//!   there, in the order it was queued.
//! - PostgreSQL: a pool of connections ([`r2d2`]) and threads of its own.
//!   Operations queued with [`Exec::post`] (settling money) run one after
//!   another on one thread, in order; the others run on any thread, each
//!   after every `post` queued before it, so a read sees what was queued
//!   ahead of it, as on SQLite. While the server is away an operation waits
//!   for a connection before it starts (30 s; a posted one [`RETRY_FOR`],
//!   an hour); a posted operation that lost its connection midway is tried
//!   again on a new one for as long.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::db::{Conn, DbError};
use super::pg::PgPool;

/// What an operation asks after an attempt.
pub(crate) enum Next {
    Done,
    /// Its connection failed: try again on another (only when not `last`).
    Retry,
}

/// One attempt of an operation: its connection (or why none could be had)
/// and whether this is its last attempt.
pub(crate) type Op = Box<dyn FnMut(Result<&mut Conn<'_>, DbError>, bool) -> Next + Send>;

/// How long a posted operation (money settled) is tried again while the
/// database is away: as long as a call's reservation counts when nothing
/// lets it go, so a spend that comes late was counted meanwhile.
pub(crate) const RETRY_FOR: Duration = Duration::from_secs(3600);

pub(crate) enum Exec {
    Lite { ops: Option<mpsc::Sender<Op>>, worker: Option<JoinHandle<()>> },
    Pg(PgWorkers),
}

impl Exec {
    /// The SQLite connection's thread.
    pub fn sqlite(mut conn: rusqlite::Connection) -> std::io::Result<Self> {
        let (ops, queue) = mpsc::channel::<Op>();
        let worker = std::thread::Builder::new().name("vidgate-journal".into()).spawn(move || {
            for mut op in queue {
                op(Ok(&mut Conn::Lite(&mut conn)), true);
            }
        })?;
        Ok(Exec::Lite { ops: Some(ops), worker: Some(worker) })
    }

    /// `threads` threads on `pool`, plus the one of posted operations.
    pub fn postgres(pool: PgPool, threads: usize) -> std::io::Result<Self> {
        let progress = Arc::new(Progress::default());
        let (ordered, ordered_queue) = mpsc::channel::<(u64, Op)>();
        let (shared, shared_queue) = mpsc::channel::<(u64, Op)>();
        let shared_queue = Arc::new(Mutex::new(shared_queue));
        let mut handles = Vec::new();
        {
            let (pool, progress) = (pool.clone(), progress.clone());
            handles.push(std::thread::Builder::new().name("vidgate-journal-post".into()).spawn(move || {
                for (seq, op) in ordered_queue {
                    attempt(&pool, op, RETRY_FOR);
                    progress.finished(seq);
                }
            })?);
        }
        for i in 0..threads.max(1) {
            let (pool, progress, queue) = (pool.clone(), progress.clone(), shared_queue.clone());
            handles.push(std::thread::Builder::new().name(format!("vidgate-journal-{i}")).spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((after, op)) = next else { break };
                progress.wait_for(after);
                attempt(&pool, op, super::pg::CONNECT_WAIT);
            })?);
        }
        Ok(Exec::Pg(PgWorkers { ordered: Some(ordered), shared: Some(shared), progress, threads: handles }))
    }

    /// Queue `op` after everything posted before it. Fails only when the
    /// journal's threads have stopped.
    pub fn post(&self, op: Op) -> bool {
        match self {
            Exec::Lite { ops, .. } => ops.as_ref().is_some_and(|ops| ops.send(op).is_ok()),
            Exec::Pg(w) => {
                let seq = w.progress.posted.fetch_add(1, Ordering::SeqCst) + 1;
                w.ordered.as_ref().is_some_and(|q| q.send((seq, op)).is_ok())
            }
        }
    }

    /// A handle that posts operations after the journal's value is out of
    /// reach (a hold dropped later); none on SQLite, which needs none.
    pub fn poster(&self) -> Option<Poster> {
        match self {
            Exec::Lite { .. } => None,
            Exec::Pg(w) => w.ordered.clone().map(|queue| Poster { queue, progress: w.progress.clone() }),
        }
    }

    /// Run `op` once everything posted before it is done.
    pub fn run(&self, op: Op) -> bool {
        self.run_after(op, true)
    }

    /// Run `op` without waiting for what was posted before it (on
    /// PostgreSQL): for work that reads nothing posted, or reads money
    /// being settled, which counts a call's reservation until its release
    /// lands after its spend, so an early read only counts more.
    pub fn run_now(&self, op: Op) -> bool {
        self.run_after(op, false)
    }

    fn run_after(&self, op: Op, ordered: bool) -> bool {
        match self {
            Exec::Lite { .. } => self.post(op),
            Exec::Pg(w) => {
                let after = if ordered { w.progress.posted.load(Ordering::SeqCst) } else { 0 };
                w.shared.as_ref().is_some_and(|q| q.send((after, op)).is_ok())
            }
        }
    }

    /// Stop taking work, and wait for what was queued.
    pub fn close(&mut self) {
        let threads = match self {
            Exec::Lite { ops, worker } => {
                *ops = None;
                worker.take().into_iter().collect()
            }
            Exec::Pg(w) => {
                w.ordered = None;
                w.shared = None;
                std::mem::take(&mut w.threads)
            }
        };
        for t in threads {
            // The last handle may be dropped on a journal thread itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Posts to a PostgreSQL journal's ordered thread (see [`Exec::poster`]).
#[derive(Clone)]
pub(crate) struct Poster {
    queue: mpsc::Sender<(u64, Op)>,
    progress: Arc<Progress>,
}

impl Poster {
    pub fn post(&self, op: Op) -> bool {
        let seq = self.progress.posted.fetch_add(1, Ordering::SeqCst) + 1;
        self.queue.send((seq, op)).is_ok()
    }
}

pub(crate) struct PgWorkers {
    ordered: Option<mpsc::Sender<(u64, Op)>>,
    shared: Option<mpsc::Sender<(u64, Op)>>,
    progress: Arc<Progress>,
    threads: Vec<JoinHandle<()>>,
}

/// Posted operations: how many were queued, how many are done.
#[derive(Default)]
struct Progress {
    posted: AtomicU64,
    done: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn finished(&self, seq: u64) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = seq;
        self.changed.notify_all();
    }

    /// Wait until the posted operation `seq` is done, or (the database
    /// away, posted work waiting for it) until the connection wait is
    /// over: the operation then goes on and fails or reads what is there.
    fn wait_for(&self, seq: u64) {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let waited = self.changed.wait_timeout_while(done, super::pg::CONNECT_WAIT, |done| *done < seq);
        drop(waited.unwrap_or_else(|e| e.into_inner()));
    }
}

/// Run `op` on a connection of `pool`: waiting up to `wait` for one while
/// the server is away (the operation has not started, so waiting is always
/// safe), then again while it asks and [`RETRY_FOR`] is not over.
fn attempt(pool: &PgPool, mut op: Op, wait: Duration) {
    let start = Instant::now();
    loop {
        match pool.get() {
            Ok(mut client) => {
                let last = start.elapsed() >= RETRY_FOR;
                match op(Ok(&mut Conn::Pg(&mut client)), last) {
                    Next::Retry if !last => std::thread::sleep(Duration::from_millis(250)),
                    _ => return,
                }
            }
            Err(_) if start.elapsed() < wait => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => {
                let error = DbError { message: format!("no connection to the database: {e}"), connection: true };
                op(Err(error), true);
                return;
            }
        }
    }
}
