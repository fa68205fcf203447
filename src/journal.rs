//! The durable record of work already paid for: an embedded SQLite file by
//! default, or a PostgreSQL database that several instances share
//! (`[journal] url`, see [`pg`]).
//!
//! Every finished unit (a batch of frames, a native-video call, a merge call)
//! is written here, keyed by what determines its answer: the video's content
//! hash, the provider and model with the settings that shape its requests,
//! the prompt and its version, the output cap and the frames' times and size.
//! The write is committed before the run moves on, so a retry, a fallback, a
//! rerun or a resumed run reads it back instead of paying again. Money spent
//! is recorded per call as it settles, which is what the per-day cap reads
//! across runs. Several processes may share one journal (SQLite's locking
//! with a busy timeout, or PostgreSQL); a run holds a lease that its process
//! renews, so a run that is still alive is never resumed by another.
//!
//! Database work (fsync, waits for another process's lock, round trips to
//! a server) runs on the journal's own threads, never on the async
//! runtime's: async callers await the answer, and settling a reservation
//! does not wait at all. The SQL is written once for both databases
//! ([`db`]).

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::policy::{BudgetError, SharedLedger};

mod accounts;
pub(crate) mod db;
mod exec;
mod flight;
mod kept;
mod keys;
mod pg;
mod rates;
mod tls;
pub(crate) use tls::wants_tls;
#[cfg(test)]
pub(crate) mod testing;

use crate::provider::{Job, JobInput};
use crate::schema::{Observation, Usage, VideoRequest, VideoSource};
pub use accounts::AccountLedger;
use db::{vals, Conn, DbError, DbResult, Row, Sql, SqlExt};
use exec::{Exec, Next, Op};
pub use flight::UnitHold;
pub use keys::{key_hash, ApiKey, CreatedKey, KeyError, NewKey};

/// See [`pg::create_database`]; the error names the server without credentials.
///
/// # Errors
/// As [`pg::create_database`].
pub fn create_database(server_url: &str, name: &str) -> Result<String, JournalError> {
    pg::create_database(server_url, name)
        .map_err(|e| JournalError { path: crate::secret::redact_urls(server_url), message: e.to_string() })
}

mod prune;
mod runs;
pub use prune::{JournalStats, Pruned, TABLES};
pub use runs::{FinishedRun, RunAccount, RunView};

/// A journal that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {message}")]
pub struct JournalError {
    pub path: String,
    pub message: String,
}

/// What a finished unit produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitRecord {
    pub provider: String,
    pub model: String,
    pub observations: Vec<Observation>,
    pub usage: Usage,
}

/// A run as the journal remembers it, for `resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub request: VideoRequest,
    pub started_unix_s: i64,
    /// The content hash of the video, once the run had read it.
    pub video_hash: Option<String>,
    /// The run's process holds it until then, and renews it while it lives.
    pub lease_until_unix_s: i64,
}

/// The unfinished runs of a journal, for `resume`.
#[derive(Debug, Clone, PartialEq)]
pub enum Unfinished {
    None,
    /// The newest run whose process stopped renewing its lease: it died.
    Abandoned(RunRecord),
    /// Only runs that are still alive (their lease is held).
    Live(RunRecord),
}

/// How long a run's lease lasts, and how often its process renews it: a
/// process must miss several renewals in a row before its run is taken over.
pub const RUN_LEASE_S: i64 = 60;
pub const RUN_LEASE_RENEW: Duration = Duration::from_secs(10);

/// How long a unit's claim in a shared database lasts unless renewed, and
/// how often its holder renews it.
pub const UNIT_CLAIM_S: i64 = 30;
pub const UNIT_CLAIM_RENEW: Duration = Duration::from_secs(10);

/// How many connections a PostgreSQL journal opens at most, by default.
pub const DEFAULT_POOL_SIZE: u32 = 4;

pub struct Journal {
    exec: Exec,
    /// The journal as errors and logs name it: its file, or its database's
    /// URL without credentials.
    path: String,
    /// The SQLite file, in its folder's canonical spelling (symbolic links
    /// and `..` resolved); none in memory or on PostgreSQL.
    file: Option<PathBuf>,
    /// The folder of the kept copies of videos given as bytes (see
    /// [`kept`]); none in memory.
    videos: Option<PathBuf>,
    in_flight: flight::InFlight,
    /// How far this process's clock runs ahead, as run leases see it: 0,
    /// but in a test of a clock that runs ahead.
    clock_skew_s: i64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish_non_exhaustive()
    }
}
/// Bumped with each change below; a journal of an older version is brought
/// up to date when opened.
const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY,
    video TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    record TEXT NOT NULL,
    created_unix_s INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS units_by_video ON units(video);
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    day INTEGER NOT NULL,
    at_unix_s INTEGER NOT NULL,
    provider TEXT NOT NULL,
    usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_day ON spend(day);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY,
    day INTEGER NOT NULL,
    usd REAL NOT NULL,
    expires_unix_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    request TEXT NOT NULL,
    started_unix_s INTEGER NOT NULL,
    finished_unix_s INTEGER,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    max_usd_per_day REAL,
    requests_per_minute INTEGER,
    created_unix_s INTEGER NOT NULL,
    revoked_unix_s INTEGER
);
CREATE TABLE IF NOT EXISTS rate_limits (
    key TEXT PRIMARY KEY,
    tat_ns INTEGER NOT NULL
);
";

/// Columns added to tables of version 0, as (table, column, type).
/// Version 1: the run's video hash and lease. Version 2 (`vidgate serve`):
/// the account (API key id) a run, a spend row and a reservation belong to,
/// and a run's outcome (its report or error) for readers after a restart.
/// Version 3: the kept copy of a video given as bytes (see [`kept`]), which
/// a run's request names instead of holding the bytes. Version 4 adds no
/// column: `kept_video` holds the copy's file name, no longer its path.
/// Version 5 adds the table `rate_limits` (see [`rates`]).
const ADDED_COLUMNS: [(&str, &str, &str); 8] = [
    ("runs", "video_hash", "TEXT"),
    ("runs", "lease_until_unix_s", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "account", "TEXT"),
    ("runs", "outcome", "TEXT"),
    ("runs", "owner", "TEXT"),
    ("spend", "account", "TEXT"),
    ("reservations", "account", "TEXT"),
    ("runs", "kept_video", "TEXT"),
];

const EMPTY_FILE: &str = "the file is empty (0 bytes): it was truncated or replaced, and the spend and \
finished work it held are gone. vidgate does not start a new journal over it, which would forget \
today's spend: move it away (or restore it), or name another journal.path";

impl Journal {
    /// Open the journal at `path`, or create it (and its directory) when
    /// there is no file there yet.
    ///
    /// # Errors
    /// An empty path (SQLite would open a throw-away database); an empty
    /// file (a journal truncated to nothing); a file that cannot be created
    /// or is not a vidgate journal.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let shown = path.display().to_string();
        let fail = |message: String| JournalError { path: shown.clone(), message };
        if path.as_os_str().is_empty() {
            return Err(fail("no file named: an empty path would open a throw-away database".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.len() == 0 => return Err(fail(EMPTY_FILE.into())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path).map_err(fail)?,
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        }
        // Never create here: a file that vanished since is an error, not a new journal.
        let flags = OpenFlags::default().difference(OpenFlags::SQLITE_OPEN_CREATE);
        let conn = Connection::open_with_flags(path, flags).map_err(|e| fail(e.to_string()))?;
        Self::start(conn, shown, Some(canonical(path)))
    }

    /// A journal that lives only as long as this value (tests, `journal.enabled = false`).
    ///
    /// # Errors
    /// Only when SQLite itself cannot start.
    pub fn in_memory() -> Result<Self, JournalError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| JournalError { path: ":memory:".into(), message: e.to_string() })?;
        Self::start(conn, ":memory:".into(), None)
    }

    /// The journal in the PostgreSQL database at `url` (`postgres://user@host:port/db`),
    /// its schema brought up to date, with at most `pool_size` connections;
    /// kept copies of videos given as bytes go to `videos`, a folder every
    /// instance sharing the database must read and write (none: not kept).
    ///
    /// # Errors
    /// A URL that does not parse, a server that cannot be reached (one
    /// try, of a few seconds), a failed migration. The error names the URL without its
    /// credentials.
    pub fn connect(url: &str, videos: Option<&Path>, pool_size: u32) -> Result<Self, JournalError> {
        Self::connect_with(url, None, videos, pool_size)
    }

    /// [`Journal::connect`] with the database's password apart from its URL.
    ///
    /// # Errors
    /// As [`Journal::connect`].
    pub fn connect_with(
        url: &str,
        password: Option<&str>,
        videos: Option<&Path>,
        pool_size: u32,
    ) -> Result<Self, JournalError> {
        let shown = crate::secret::redact_urls(url);
        let fail = |message: String| JournalError { path: shown.clone(), message };
        // The sync driver blocks on a runtime of its own: never on an async one's thread.
        let (url_owned, password_owned) = (url.to_string(), password.map(str::to_string));
        let size = pool_size.max(1);
        let pool = std::thread::spawn(move || pg::connect(&url_owned, password_owned.as_deref(), size))
            .join()
            .map_err(|_| fail("connecting failed".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let exec =
            Exec::postgres(pool, pool_size as usize).map_err(|e| fail(format!("cannot start its threads: {e}")))?;
        let videos = videos.map(|v| std::path::absolute(v).unwrap_or_else(|_| v.to_path_buf()));
        Ok(Self { exec, path: shown, file: None, videos, in_flight: flight::InFlight::default(), clock_skew_s: 0 })
    }

    fn start(mut conn: Connection, path: String, file: Option<PathBuf>) -> Result<Self, JournalError> {
        let fail = |message: String| JournalError { path: path.clone(), message };
        let videos = file.as_deref().map(kept::dir_of);
        prepare(&mut conn, videos.as_deref()).map_err(|e| fail(e.to_string()))?;
        let exec = Exec::sqlite(conn).map_err(|e| fail(format!("cannot start its thread: {e}")))?;
        Ok(Self { exec, path, file, videos, in_flight: flight::InFlight::default(), clock_skew_s: 0 })
    }

    /// Hold the unit `key` until the hold is dropped: a second caller waits
    /// here until the first has written its answer. On a shared database
    /// the unit is claimed there too, and callers of other instances wait
    /// as well (for at most [`UNIT_CLAIM_S`] after an instance died).
    pub async fn hold_unit(self: &Arc<Self>, key: String) -> UnitHold {
        let mut hold = self.in_flight.hold(key.clone()).await;
        if let Some(poster) = self.exec.poster() {
            hold.shared = self.claim_unit(key, poster).await;
        }
        hold
    }

    /// Claim `key` in the shared database, waiting while another holds it.
    /// None when the database cannot be asked (the call goes on: its
    /// budget's reservation still guards the money).
    async fn claim_unit(self: &Arc<Self>, key: String, poster: exec::Poster) -> Option<flight::SharedClaim> {
        const NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)";
        let holder = hex::encode(rand::random::<[u8; 8]>());
        loop {
            let args = vals![&key, &holder, UNIT_CLAIM_S];
            let claimed = self
                .with_async(move |c| {
                    c.one::<String>(
                        &format!(
                            "INSERT INTO unit_claims (key, holder, until_unix_s) VALUES (?1, ?2, {NOW} + ?3)
                             ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, until_unix_s = excluded.until_unix_s
                             WHERE unit_claims.until_unix_s <= {NOW}
                             RETURNING holder"
                        ),
                        &args,
                    )
                })
                .await;
            match claimed {
                Ok(Some(_)) => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a unit in the journal: other instances may buy it too");
                    return None;
                }
            }
        }
        let journal = Arc::downgrade(self);
        let (k, h) = (key.clone(), holder.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(UNIT_CLAIM_RENEW).await;
                let Some(journal) = journal.upgrade() else { return };
                let args = vals![&k, &h, UNIT_CLAIM_S];
                let renewed = journal
                    .with_async(move |c| {
                        c.exec(
                            &format!("UPDATE unit_claims SET until_unix_s = {NOW} + ?3 WHERE key = ?1 AND holder = ?2"),
                            &args,
                        )
                    })
                    .await;
                if let Err(e) = renewed {
                    tracing::warn!(error = %e, "cannot renew a unit's claim in the journal");
                }
            }
        });
        Some(flight::SharedClaim { key, holder, poster, renew, path: self.path.clone() })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The folder of the kept copies of videos given as bytes (see
    /// [`kept`]), one spelling whatever path the journal was opened by;
    /// none in memory.
    fn videos(&self) -> Option<PathBuf> {
        self.videos.clone()
    }

    /// Whether what is written here outlives the process.
    pub fn is_durable(&self) -> bool {
        self.path != ":memory:"
    }

    /// Whether this is a PostgreSQL journal.
    pub fn is_shared_database(&self) -> bool {
        matches!(self.exec, Exec::Pg(_))
    }

    fn error(&self, message: impl std::fmt::Display) -> JournalError {
        JournalError { path: self.path.clone(), message: message.to_string() }
    }

    /// Queue `f` on the journal's threads, in order after everything posted
    /// before; a failure is logged as `what` (on PostgreSQL, `f` is tried
    /// again while its connection is lost, for up to a minute).
    fn post(&self, what: &'static str, f: impl Fn(&mut Conn) -> DbResult<()> + Send + 'static) {
        // Fails only when the threads have stopped; `with` then reports it.
        self.exec.post(logged_op(self.path.clone(), what, f));
    }

    /// An operation that answers once, through `reply`.
    fn once<T: Send + 'static>(
        f: impl FnOnce(&mut Conn) -> DbResult<T> + Send + 'static,
        reply: impl FnOnce(DbResult<T>) + Send + 'static,
    ) -> Op {
        let mut job = Some((f, reply));
        Box::new(move |conn, _| {
            if let Some((f, reply)) = job.take() {
                reply(conn.and_then(f));
            }
            Next::Done
        })
    }

    /// Run `f` on the journal's threads and wait for it, blocking this one.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> DbResult<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.with_ordered(f, true)
    }

    /// [`Journal::with`] for work that needs not wait for money being
    /// settled (see [`Exec::run_now`]): a unit read or written.
    fn with_now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> DbResult<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.with_ordered(f, false)
    }

    fn with_ordered<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> DbResult<T> + Send + 'static,
        ordered: bool,
    ) -> Result<T, JournalError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let op = Self::once(f, move |r| {
            let _ = tx.send(r);
        });
        if ordered {
            self.exec.run(op);
        } else {
            self.exec.run_now(op);
        }
        match rx.recv() {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.error("its thread has stopped")),
        }
    }

    /// Run `f` on the journal's threads; the caller's thread stays free meanwhile.
    async fn with_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> DbResult<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.exec.run(Self::once(f, move |r| {
            let _ = tx.send(r);
        }));
        match rx.await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.error("its thread has stopped")),
        }
    }

    /// The unit recorded under `key`, if any.
    ///
    /// # Errors
    /// A read failure; a record that no longer parses counts as absent.
    pub fn get(&self, key: &str) -> Result<Option<UnitRecord>, JournalError> {
        let key = key.to_string();
        let text: Option<String> = self.with(move |c| c.one("SELECT record FROM units WHERE key = ?1", &vals![key]))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Record a finished unit; committed when this returns.
    ///
    /// # Errors
    /// A write failure.
    pub fn put(&self, key: &str, video: &str, prompt_version: &str, record: &UnitRecord) -> Result<(), JournalError> {
        let text = serde_json::to_string(record).map_err(|e| self.error(e))?;
        let args = vals![key, video, &record.provider, &record.model, prompt_version, text, now_s()];
        self.with_now(move |c| {
            c.exec(
                "INSERT INTO units (key, video, provider, model, prompt_version, record, created_unix_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (key) DO UPDATE SET video = excluded.video, provider = excluded.provider,
                    model = excluded.model, prompt_version = excluded.prompt_version, record = excluded.record,
                    created_unix_s = excluded.created_unix_s",
                &args,
            )
            .map(drop)
        })
    }

    /// How many units are recorded for the video with this content hash.
    ///
    /// # Errors
    /// A read failure.
    pub fn units_for_video(&self, video: &str) -> Result<u64, JournalError> {
        let video = video.to_string();
        let n: Option<i64> = self.with(move |c| c.one("SELECT COUNT(*) FROM units WHERE video = ?1", &vals![video]))?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Record money spent (or possibly spent) on one call, now.
    ///
    /// # Errors
    /// A write failure.
    pub fn record_spend(&self, provider: &str, usd: f64) -> Result<(), JournalError> {
        let provider = provider.to_string();
        self.with(move |c| insert_spend(c, &provider, usd, None))
    }

    /// [`Journal::record_spend`] without waiting: queued ahead of anything
    /// queued later (the reservation's release, say); a failure is logged.
    pub fn queue_spend(&self, provider: &str, usd: f64) {
        self.queue_spend_for(provider, usd, None);
    }

    /// Spent today plus what the gateway's live reservations hold, on `c`
    /// (an account's reservations double one of these: see [`AccountLedger`]).
    fn committed_today(c: &mut dyn Sql, now: i64) -> DbResult<f64> {
        let day = now.div_euclid(86_400);
        let committed: Option<f64> = c.one(
            "SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1)
                  + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations
                     WHERE day = ?1 AND expires_unix_s > ?2 AND account IS NULL)",
            &vals![day, now],
        )?;
        Ok(committed.unwrap_or(0.0))
    }

    /// Money recorded on the current UTC day.
    ///
    /// # Errors
    /// A read failure.
    pub fn spent_today(&self) -> Result<f64, JournalError> {
        let day = today();
        let spent: Option<f64> =
            self.with(move |c| c.one("SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1", &vals![day]))?;
        Ok(spent.unwrap_or(0.0))
    }

    /// Remember that a run started, leased to this process; returns its id.
    /// Keep the lease with [`Journal::renew_lease`] while the run lives.
    ///
    /// A video given as bytes is never stored in the row: the bytes are
    /// kept in a file in the journal's folder of videos and the row names
    /// that file and their hash (see [`kept`]), which is what a resume reads.
    ///
    /// # Errors
    /// A write failure; bytes that cannot be kept.
    pub fn start_run(&self, request: &VideoRequest) -> Result<i64, JournalError> {
        let kept_dir = self.videos();
        let (stored, staged) = match &request.source {
            // A URL's userinfo and query values may be credentials: never stored.
            VideoSource::Url { url } => {
                let source = VideoSource::Url { url: crate::secret::redact_urls(url) };
                (VideoRequest { source, ..request.clone() }, None)
            }
            VideoSource::Bytes { data, format } => {
                let staged = kept::stage(kept_dir.as_deref(), data, format.as_deref()).map_err(|e| self.error(e))?;
                (staged.request(request), Some(staged))
            }
            VideoSource::Path { .. } => (request.clone(), None),
        };
        // A resumed run of bytes reads their kept copy: it names it too,
        // by its file name, whatever spelling of the folder the path has.
        let kept = match (&staged, &stored.source, &kept_dir) {
            (Some(staged), _, Some(_)) => Some(staged.name.clone()),
            (None, VideoSource::Path { path }, Some(dir)) => kept::name_of(path, dir),
            _ => None,
        };
        let text = serde_json::to_string(&stored).map_err(|e| self.error(e))?;
        let skew = self.clock_skew_s;
        let placed = self.with(move |c| {
            let now = c.clock_s(skew)?;
            c.write(|tx| {
                let hash = staged.as_ref().map(|s| s.hash.clone());
                if let Some(staged) = staged {
                    if let Err(e) = staged.place() {
                        return Ok(Err(e));
                    }
                }
                let id: Option<i64> = tx.one(
                    "INSERT INTO runs (request, started_unix_s, status, lease_until_unix_s, video_hash, kept_video)
                     VALUES (?1, ?2, 'running', ?3, ?4, ?5) RETURNING id",
                    &vals![text, now, now + RUN_LEASE_S, hash, kept],
                )?;
                Ok(id.ok_or_else(|| "the new run has no id".to_string()))
            })
        })?;
        placed.map_err(|e| self.error(e))
    }

    /// Note the content hash of the run's video, which a resume checks.
    ///
    /// # Errors
    /// A write failure.
    pub fn set_run_video(&self, id: i64, video_hash: &str) -> Result<(), JournalError> {
        let args = vals![video_hash, id];
        self.with(move |c| c.exec("UPDATE runs SET video_hash = ?1 WHERE id = ?2", &args).map(drop))
    }

    /// Extend the run's lease: its process is alive.
    ///
    /// # Errors
    /// A write failure.
    pub fn renew_lease(&self, id: i64) -> Result<(), JournalError> {
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let now = c.clock_s(skew)?;
            c.exec(
                "UPDATE runs SET lease_until_unix_s = ?1 WHERE id = ?2 AND status = 'running'",
                &vals![now + RUN_LEASE_S, id],
            )
            .map(drop)
        })
    }

    /// Mark a run finished (`done` or `failed`); the kept copy of its
    /// video's bytes goes when no unfinished run names it.
    ///
    /// # Errors
    /// A write failure.
    pub fn finish_run(&self, id: i64, status: &str) -> Result<(), JournalError> {
        let (status, videos) = (status.to_string(), self.videos());
        self.with(move |c| {
            c.exec("UPDATE runs SET status = ?1, finished_unix_s = ?2 WHERE id = ?3", &vals![status, now_s(), id])?;
            kept::release_run(c, videos.as_deref(), id)
        })
    }

    /// The most recent run that never finished, whether its process lives or not.
    ///
    /// # Errors
    /// A read failure.
    pub fn last_unfinished_run(&self) -> Result<Option<RunRecord>, JournalError> {
        self.with(|c| newest_run(c, "status = 'running' AND lease_until_unix_s <= ?1", i64::MAX))
    }

    /// The newest run that never finished and whose process died (its lease
    /// ran out), else the newest run still alive.
    ///
    /// # Errors
    /// A read failure.
    pub fn unfinished(&self) -> Result<Unfinished, JournalError> {
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let now = c.clock_s(skew)?;
            if let Some(run) = newest_run(c, "status = 'running' AND lease_until_unix_s <= ?1", now)? {
                return Ok(Unfinished::Abandoned(run));
            }
            Ok(newest_run(c, "status = 'running' AND lease_until_unix_s > ?1", now)?
                .map_or(Unfinished::None, Unfinished::Live))
        })
    }

    /// Take over an abandoned run, if its lease is still out and no other
    /// process took it first: in one transaction, mark it `resumed` and
    /// enter its continuation as a new run leased to this process, with the
    /// same request, video hash and kept copy. A prune never finds the
    /// moment between the two, when no unfinished run would read its
    /// video's units or name its copy. The new run's id, if this process
    /// took it.
    ///
    /// # Errors
    /// A write failure (then neither happened).
    pub fn take_over(&self, id: i64) -> Result<Option<i64>, JournalError> {
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let now = c.clock_s(skew)?;
            c.write(|tx| {
                let changed = tx.exec(
                    "UPDATE runs SET status = 'resumed', finished_unix_s = ?1
                     WHERE id = ?2 AND status = 'running' AND lease_until_unix_s <= ?1",
                    &vals![now, id],
                )?;
                if changed != 1 {
                    return Ok(None);
                }
                tx.one(
                    "INSERT INTO runs (request, started_unix_s, status, lease_until_unix_s, video_hash, kept_video)
                     SELECT request, CAST(?1 AS BIGINT), 'running', CAST(?2 AS BIGINT), video_hash, kept_video
                     FROM runs WHERE id = ?3 RETURNING id",
                    &vals![now, now + RUN_LEASE_S, id],
                )
            })
        })
    }

    /// This handle's clock, as run leases see it, `s` seconds ahead of the
    /// machine's (where leases are read on the process's clock: SQLite).
    #[cfg(test)]
    pub(crate) fn with_clock_ahead(mut self, s: i64) -> Self {
        self.clock_skew_s = s;
        self
    }

    /// Run `f` on the journal's database, for tests that set a row's state
    /// by hand (a lease run out, an old time).
    #[cfg(test)]
    pub(crate) fn sql<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> DbResult<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.with(move |c| f(c))
    }
}

/// An operation whose failure is logged as `what`, tried again while its
/// connection is lost.
fn logged_op(path: String, what: &'static str, f: impl Fn(&mut Conn) -> DbResult<()> + Send + 'static) -> Op {
    Box::new(move |conn, last| match conn.and_then(&f) {
        Ok(()) => Next::Done,
        Err(e) if e.connection && !last => Next::Retry,
        Err(e) => {
            tracing::warn!(journal = %path, error = %e, "{what}");
            Next::Done
        }
    })
}

fn insert_spend(c: &mut dyn Sql, provider: &str, usd: f64, account: Option<&str>) -> DbResult<()> {
    let now = now_s();
    c.exec(
        "INSERT INTO spend (day, at_unix_s, provider, usd, account) VALUES (?1, ?2, ?3, ?4, ?5)",
        &vals![now.div_euclid(86_400), now, provider, usd, account],
    )
    .map(drop)
}

/// A run as its row holds it (`id, request, started_unix_s, video_hash,
/// lease_until_unix_s` first); none when its request no longer parses.
fn run_record(row: &Row) -> DbResult<Option<RunRecord>> {
    let text: String = row.get(1)?;
    let Ok(request) = stored_request(&text) else { return Ok(None) };
    Ok(Some(RunRecord {
        id: row.get(0)?,
        request,
        started_unix_s: row.get(2)?,
        video_hash: row.get(3)?,
        lease_until_unix_s: row.get(4)?,
    }))
}

/// The newest run matching `filter` (with `?1` bound to `now`); a request
/// that no longer parses is skipped.
fn newest_run(c: &mut dyn Sql, filter: &str, now: i64) -> DbResult<Option<RunRecord>> {
    let rows = c.rows(
        &format!(
            "SELECT id, request, started_unix_s, video_hash, lease_until_unix_s FROM runs WHERE {filter} ORDER BY id DESC"
        ),
        &vals![now],
    )?;
    for row in &rows {
        if let Some(run) = run_record(row)? {
            return Ok(Some(run));
        }
    }
    Ok(None)
}

/// A run's request as stored. Runs stored while requests still carried an
/// `output` form (which changed nothing) are read without it.
fn stored_request(text: &str) -> serde_json::Result<VideoRequest> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("output");
    }
    serde_json::from_value(value)
}

impl Drop for Journal {
    /// Everything queued is written before the journal goes.
    fn drop(&mut self) {
        self.exec.close();
    }
}
/// A new journal is made whole under a temporary name and then moved into
/// place, never over a file that appeared meanwhile: a file at `path` is
/// always a complete journal, so an empty one can only be a damaged one,
/// and processes starting together on a fresh path never race to create
/// its tables.
fn create(path: &Path) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".vidgate-journal-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    {
        let mut conn = Connection::open(temp.path()).map_err(|e| e.to_string())?;
        // A new journal has no runs whose videos would move.
        prepare(&mut conn, None).map_err(|e| e.to_string())?;
    }
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create it: {}", e.error)),
    }
}

/// `path` made canonical (symbolic links, to the file or to a folder above
/// it, and `..` resolved), as SQLite opens it: every process that opens one
/// journal, under any spelling, finds the copies beside it under one path.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(file) = std::fs::canonicalize(path) {
        return file;
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// Settings of each connection, and the tables, made or brought up to date;
/// `videos` is the folder of the kept copies of videos given as bytes.
fn prepare(conn: &mut Connection, videos: Option<&Path>) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    // A new journal gives the pages that a prune frees back to the disk
    // incrementally; SQLite takes this only before the first table.
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))?;
    if tables == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    // WAL with FULL sync: a committed unit survives a crash or a power cut.
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version = |c: &Connection| c.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0));
    if version(conn)? >= SCHEMA_VERSION {
        return Ok(());
    }
    // The write lock is taken first, with the busy timeout: a read that
    // turns into a write midway fails at once when another process wrote.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if version(&tx)? < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA)?;
        for (table, name, kind) in ADDED_COLUMNS {
            let columns: Vec<String> = tx
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !columns.iter().any(|c| c == name) {
                tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind};"))?;
            }
        }
        tx.execute_batch(
            "CREATE INDEX IF NOT EXISTS spend_by_account ON spend(account, day);
             CREATE INDEX IF NOT EXISTS runs_by_status ON runs(status);
             CREATE INDEX IF NOT EXISTS units_by_age ON units(created_unix_s);",
        )?;
        if version(&tx)? < 3 {
            kept::migrate(&tx, videos)?;
        }
        if version(&tx)? < 4 {
            kept::migrate_names(&tx)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()
}

/// How long a reservation counts when its process never lets it go (it
/// died mid-call): longer than any call is allowed to take.
const RESERVATION_TTL_S: i64 = 3600;

/// The expiry of a reservation kept as spent for the rest of its day.
const KEPT_UNIX_S: i64 = i64::MAX;

/// The journal as the daily cap's ledger shared by every process that uses
/// it: a reservation is checked and written in one transaction holding the
/// journal's write lock, so two processes cannot both take the last dollars.
#[async_trait]
impl SharedLedger for Journal {
    async fn hold(&self, amount: f64, cap: f64) -> Result<i64, BudgetError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut reply = Some(reply);
        // Money being settled counts as held until it is let go: no need
        // to wait for it.
        self.exec.run_now(Box::new(move |conn, _| {
            let Some(reply) = reply.take() else { return Next::Done };
            let mut conn = conn;
            let held = match &mut conn {
                Ok(c) if c.dialect() == db::Dialect::Postgres => pg::hold(&mut **c, amount, cap, None)
                    .map(|held| held.map_err(|left| BudgetError::Over { needed: amount, left, cap })),
                Ok(c) => c.write(|tx| {
                    let now = now_s();
                    let left = cap - Journal::committed_today(tx, now)?;
                    if amount > left + 1e-12 {
                        return Ok(Err(BudgetError::Over { needed: amount, left: left.max(0.0), cap }));
                    }
                    let id: Option<i64> = tx.one(
                        "INSERT INTO reservations (day, usd, expires_unix_s) VALUES (?1, ?2, ?3) RETURNING id",
                        &vals![now.div_euclid(86_400), amount, now + RESERVATION_TTL_S],
                    )?;
                    id.map(Ok).ok_or_else(|| DbError::new("the reservation has no id"))
                }),
                Err(e) => Err(e.clone()),
            };
            // The caller stopped waiting (its call was cancelled): nothing holds this money.
            if let (Err(Ok(Ok(id))), Ok(c)) = (reply.send(held), conn) {
                let _ = c.exec("DELETE FROM reservations WHERE id = ?1", &vals![id]);
            }
            Next::Done
        }));
        let held = match answer.await {
            Ok(held) => held.map_err(|e| self.error(e)),
            Err(_) => Err(self.error("its thread has stopped")),
        };
        held.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot hold money in the journal: the call is refused");
            Err(BudgetError::LedgerUnavailable(e.to_string()))
        })
    }

    /// Queued, not waited for, on an async runtime; elsewhere (a plain
    /// thread) it waits, so the release shows in the ledger at once.
    fn let_go(&self, id: i64, unrecorded: f64) {
        self.post("cannot release a reservation: it counts until it expires", move |c| {
            let now = now_s();
            c.write(|tx| {
                if unrecorded > 0.0 {
                    tx.exec(
                        "INSERT INTO spend (day, at_unix_s, provider, usd) VALUES (?1, ?2, '(abandoned call)', ?3)",
                        &vals![now.div_euclid(86_400), now, unrecorded],
                    )?;
                }
                tx.exec("DELETE FROM reservations WHERE id = ?1", &vals![id]).map(drop)
            })
        });
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = self.with(|_| Ok(()));
        }
    }

    async fn left(&self, cap: f64) -> Result<f64, BudgetError> {
        let committed = self.with_async(|c| Self::committed_today(c, now_s())).await;
        committed.map(|committed| (cap - committed).max(0.0)).map_err(|e| BudgetError::LedgerUnavailable(e.to_string()))
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub(crate) fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn today() -> i64 {
    now_s().div_euclid(86_400)
}

/// The default journal file: `journal.sqlite3` in the platform data directory.
pub fn default_path() -> PathBuf {
    directories::ProjectDirs::from("", "", "vidgate")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("vidgate"))
        .join("journal.sqlite3")
}

/// The key of a unit: everything that decides what the provider answers.
///
/// Frames are named by their times and size, not their bytes: within one
/// video (`video` is its content hash) and one frame width, a time names one
/// picture, whether it travels as JPEG or RGB.
pub fn unit_key(video: &str, provider: &str, model: &str, settings: &str, job: &Job) -> String {
    let mut h = Sha256::new();
    let mut field = |label: &str, value: &[u8]| {
        h.update(label.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field("v", b"1");
    field("video", video.as_bytes());
    field("provider", provider.as_bytes());
    field("model", model.as_bytes());
    // Absent when empty, so keys of providers without settings stay as they were.
    if !settings.is_empty() {
        field("settings", settings.as_bytes());
    }
    field("task", serde_json::to_string(&job.task).unwrap_or_default().as_bytes());
    field("prompt_version", job.prompt_version.as_bytes());
    field("prompt", job.prompt.as_bytes());
    field("max_output_tokens", &job.max_output_tokens.to_le_bytes());
    if let Some(span) = job.span {
        field("span", format!("{}-{}", span.start_ms, span.end_ms).as_bytes());
    }
    match &job.input {
        JobInput::Frames(frames) => {
            let times: Vec<String> = frames.iter().map(|f| format!("{}@{}x{}", f.pts_ms, f.width, f.height)).collect();
            field("frames", times.join(",").as_bytes());
        }
        JobInput::Video { range, duration_ms, size_bytes, fps, .. } => {
            field("video_input", format!("{range:?}/{duration_ms}/{size_bytes}").as_bytes());
            // The sampling asked of the provider changes what it sees.
            if let Some(fps) = fps {
                field("video_fps", &fps.to_le_bytes());
            }
        }
        JobInput::Text(text) => field("text", text.as_bytes()),
        // Within one video, a time range names one stretch of its sound.
        JobInput::Audio(clip) => field(
            "audio",
            format!(
                "{}-{}/{}-{}/{}",
                clip.range.start_ms,
                clip.range.end_ms,
                clip.owned.start_ms,
                clip.owned.end_ms,
                clip.wav.len()
            )
            .as_bytes(),
        ),
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rusqlite::params;

    use super::testing::on_both;
    use super::*;
    use crate::policy::Budget;
    use crate::schema::{Task, TimeRange};

    /// Two handles on one journal, as two processes would have.
    fn two_handles(place: &testing::Place) -> (Arc<Journal>, Arc<Journal>) {
        (Arc::new(place.open()), Arc::new(place.open()))
    }

    /// One awaited call from plain (not async) test code.
    fn wait<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    on_both! { fn processes_sharing_a_journal_share_the_daily_cap(place) {
        let (ja, jb) = two_handles(place);
        let (a, b) = (Budget::new(1.0).shared(ja.clone()), Budget::new(1.0).shared(jb.clone()));
        let held = wait(a.reserve(0.6)).unwrap();
        // The other process's own budget is untouched, the shared ledger is not.
        let refused = wait(b.reserve(0.6)).unwrap_err();
        assert!(matches!(refused, BudgetError::Over { left, .. } if (left - 0.4).abs() < 1e-9), "{refused}");
        assert!((wait(b.remaining()).unwrap() - 0.4).abs() < 1e-9);
        // The call cost 0.3: recorded, then let go; 0.7 is left for both.
        ja.record_spend("p", 0.3).unwrap();
        held.reconcile(0.3);
        let second = wait(b.reserve(0.6)).unwrap();
        let left = wait(a.remaining()).unwrap();
        assert!((left - 0.1).abs() < 1e-9, "{left}");
        second.release();
        assert!((wait(jb.left(1.0)).unwrap() - 0.7).abs() < 1e-9);
    }}

    on_both! { fn an_abandoned_call_counts_as_spent_in_the_shared_ledger(place) {
        let (ja, jb) = two_handles(place);
        let a = Budget::new(1.0).shared(ja.clone());
        drop(wait(a.reserve(0.25)).unwrap());
        assert!((jb.spent_today().unwrap() - 0.25).abs() < 1e-9);
        assert!((wait(jb.left(1.0)).unwrap() - 0.75).abs() < 1e-9, "the reservation is gone, the spend stays");
    }}

    on_both! { fn a_reservation_left_by_a_dead_process_expires(place) {
        let (ja, jb) = two_handles(place);
        wait(ja.hold(0.5, 1.0)).unwrap();
        assert!((wait(jb.left(1.0)).unwrap() - 0.5).abs() < 1e-9);
        ja.sql(|c| c.exec("UPDATE reservations SET expires_unix_s = ?1", &vals![now_s() - 1])).unwrap();
        assert!((wait(jb.left(1.0)).unwrap() - 1.0).abs() < 1e-9);
    }}

    on_both! { fn parallel_reservations_from_two_processes_never_pass_the_cap(place) {
        let (ja, jb) = two_handles(place);
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let journal = if i % 2 == 0 { ja.clone() } else { jb.clone() };
                    s.spawn(move || wait(Budget::new(1.0).shared(journal).reserve(0.25)).ok())
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 4, "four of eight $0.25 calls fit a $1 day");
        held.into_iter().for_each(|r| r.release());
        assert!((wait(ja.left(1.0)).unwrap() - 1.0).abs() < 1e-9);
    }}

    #[test]
    fn a_unit_held_by_one_instance_is_waited_for_by_another_and_a_dead_holders_claim_runs_out() {
        let Some(place) = testing::Place::new(testing::Kind::Postgres) else { return };
        let (a, b) = two_handles(&place);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let held = a.hold_unit("unit-1".into()).await;
            let other = b.clone();
            let waiting = tokio::spawn(async move { other.hold_unit("unit-1".into()).await });
            let free = tokio::time::timeout(Duration::from_secs(5), b.hold_unit("unit-2".into())).await;
            assert!(free.is_ok(), "another unit is not held up");
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert!(!waiting.is_finished(), "the other instance waits for the unit");
            drop(held);
            let second = tokio::time::timeout(Duration::from_secs(5), waiting).await;
            assert!(second.is_ok(), "let go, the unit is taken by the instance waiting");
            drop(second);
            // A holder that died leaves a claim that ran out: it is taken at once.
            a.sql(|c| c.exec("INSERT INTO unit_claims (key, holder, until_unix_s) VALUES ('unit-3', 'dead', 0)", &[]))
                .unwrap();
            let taken = tokio::time::timeout(Duration::from_secs(5), b.hold_unit("unit-3".into())).await;
            assert!(taken.is_ok(), "a dead holder's claim runs out");
        });
    }

    #[test]
    fn a_database_away_for_ten_seconds_makes_calls_wait_and_loses_no_spend() {
        let Some(server) = testing::OwnServer::start() else { return };
        let journal = Arc::new(Journal::connect(&server.url, None, 2).unwrap());
        journal.record_spend("p", 0.25).unwrap();
        server.stop();
        let started = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_secs(10));
                server.start_again();
            });
            // A reservation and a write wait for the server, then go through.
            let held = wait(journal.hold(0.1, 10.0));
            assert!(held.is_ok(), "{held:?}");
            journal.record_spend("p", 0.125).unwrap();
            // Queued while the server is away: tried again until it is back.
            server.stop();
            journal.queue_spend("p", 0.5);
            std::thread::sleep(Duration::from_secs(2));
            server.start_again();
            assert!(started.elapsed() >= Duration::from_secs(9), "the calls waited for the server");
            journal.let_go(held.unwrap(), 0.0);
        });
        assert!((journal.spent_today().unwrap() - 0.875).abs() < 1e-9, "{}", journal.spent_today().unwrap());
        assert!((wait(journal.left(10.0)).unwrap() - 9.125).abs() < 1e-9, "the reservation was let go");
    }

    #[test]
    fn a_database_that_stays_away_refuses_money_as_unreachable_not_as_spent() {
        let Some(server) = testing::OwnServer::start() else { return };
        let journal = Arc::new(Journal::connect(&server.url, None, 2).unwrap());
        journal.record_spend("p", 0.25).unwrap();
        server.stop();
        // Each waits for a connection as long as the pool allows, then says why.
        let (held, left, account) = std::thread::scope(|s| {
            let held = s.spawn(|| wait(journal.hold(0.1, 10.0)));
            let left = s.spawn(|| wait(journal.left(10.0)));
            let account = s.spawn(|| wait(journal.account_ledger("key_a").hold(0.1, 1.0)));
            (held.join().unwrap(), left.join().unwrap(), account.join().unwrap())
        });
        for refused in [held.map(drop), left.map(drop), account.map(drop)] {
            let Err(BudgetError::LedgerUnavailable(why)) = refused else {
                panic!("refused as if the money were spent: {refused:?}")
            };
            assert!(why.contains("journal postgres://"), "names the journal: {why}");
        }
        server.start_again();
        assert!((journal.spent_today().unwrap() - 0.25).abs() < 1e-9, "nothing was held or spent meanwhile");
    }

    #[test]
    fn an_empty_path_or_an_empty_file_is_refused_and_a_new_path_is_created() {
        let err = Journal::open(Path::new("")).unwrap_err().to_string();
        assert!(err.contains("empty path"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite3");
        {
            let j = Journal::open(&path).unwrap();
            j.record_spend("p", 0.25).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() > 0, "a new journal is a whole database file");
        // Truncated to nothing, today's $0.25 would be forgotten: refused.
        std::fs::File::create(&path).unwrap();
        let err = Journal::open(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("empty (0 bytes)"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("j.sqlite3")], "no temporary files stay behind");
    }

    #[test]
    fn a_journal_of_the_first_version_gains_the_lease_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA).unwrap();
            old.execute(
                "INSERT INTO runs (request, started_unix_s, status) VALUES (?1, 1, 'running')",
                params![serde_json::to_string(&VideoRequest::new("/v/old.mp4", Task::Describe)).unwrap()],
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let Unfinished::Abandoned(run) = j.unfinished().unwrap() else { panic!("the old run is resumable") };
        assert_eq!((run.video_hash, run.lease_until_unix_s), (None, 0));
    }

    on_both! { fn a_run_stored_with_an_output_form_is_still_resumable(place) {
        let j = place.open();
        let req = VideoRequest::new("/v/old.mp4", Task::Timeline);
        let mut stored = serde_json::to_value(&req).unwrap();
        stored["output"] = serde_json::json!("srt");
        let text = stored.to_string();
        j.sql(move |c| {
            c.exec("INSERT INTO runs (request, started_unix_s, status) VALUES (?1, 1, 'running')", &vals![text])
        })
        .unwrap();
        let Unfinished::Abandoned(run) = j.unfinished().unwrap() else { panic!("the old run is resumable") };
        assert_eq!(run.request, req);
    }}

    on_both! { fn a_run_is_leased_while_renewed_and_taken_over_once_when_its_lease_ran_out(place) {
        let (ja, jb) = two_handles(place);
        let req = VideoRequest::new("/v/clip.mp4", Task::Describe);
        let id = ja.start_run(&req).unwrap();
        ja.set_run_video(id, "abc").unwrap();
        let Unfinished::Live(live) = jb.unfinished().unwrap() else { panic!("a fresh run is alive") };
        assert_eq!((live.id, live.video_hash.as_deref()), (id, Some("abc")));
        assert_eq!(jb.take_over(id).unwrap(), None, "a live run is not taken over");
        // Its process stops renewing the lease (it died): the lease runs out.
        ja.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = ?1 WHERE id = ?2", &vals![now_s() - 1, id]))
            .unwrap();
        let Unfinished::Abandoned(dead) = jb.unfinished().unwrap() else { panic!("the run was abandoned") };
        assert_eq!(dead.request, req);
        let taken = jb.take_over(id).unwrap().expect("taken over");
        assert_eq!(ja.take_over(id).unwrap(), None, "only once");
        let Unfinished::Live(continued) = ja.unfinished().unwrap() else { panic!("its continuation is leased") };
        assert_eq!(
            (continued.id, continued.request, continued.video_hash.as_deref()),
            (taken, req.clone(), Some("abc"))
        );
        jb.finish_run(taken, "done").unwrap();
        assert_eq!(jb.unfinished().unwrap(), Unfinished::None);
        // A renewal pushes the lease forward.
        let next = ja.start_run(&req).unwrap();
        ja.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1", &vals![next])).unwrap();
        ja.renew_lease(next).unwrap();
        let Unfinished::Live(renewed) = jb.unfinished().unwrap() else { panic!("renewed") };
        assert!(renewed.lease_until_unix_s >= now_s() + RUN_LEASE_S - 5);
    }}

    on_both! { fn a_call_waiting_for_another_process_lock_leaves_the_runtime_free(place) {
        use crate::policy::Budgeted;
        use crate::provider::scripted::{text_job, ScriptedProvider};
        use crate::provider::Provider;

        let journal = Arc::new(place.open());
        let budgeted = Budgeted::new(Arc::new(ScriptedProvider::new("p")), Budget::new(1.0).shared(journal));
        // Another process holds the journal's write lock.
        let other = testing::Locker::take(place);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let call = tokio::spawn(async move { budgeted.run(&text_job()).await });
            // A timer on the runtime's one thread fires while the call waits
            // for the lock; were the wait on this thread, the timer would
            // fire only once SQLite gave up, and the call would have failed.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!call.is_finished(), "the call waits for the lock, off this thread");
            other.release();
            let output = call.await.unwrap().unwrap();
            assert_eq!(output.observations[0].text, "scripted");
        });
    }}

    fn record(text: &str) -> UnitRecord {
        UnitRecord {
            provider: "p".into(),
            model: "m".into(),
            observations: vec![Observation {
                range: TimeRange { start_ms: 0, end_ms: 1000 },
                text: text.into(),
                provider: "p".into(),
                model: Some("m".into()),
            }],
            usage: Usage { input_tokens: 10, output_tokens: 5, cost_usd: 0.01 },
        }
    }

    fn job(text: &str) -> Job {
        Job {
            task: Task::Describe,
            input: JobInput::Text(text.into()),
            prompt: "merge".into(),
            prompt_version: "story@1".into(),
            max_output_tokens: 64,
            span: None,
        }
    }

    on_both! { fn units_survive_reopening_the_journal(place) {
        let key = unit_key("abc", "p", "m", "", &job("x"));
        {
            let j = place.open();
            assert_eq!(j.get(&key).unwrap(), None);
            j.put(&key, "abc", "story@1", &record("a dog")).unwrap();
            j.record_spend("p", 0.25).unwrap();
        }
        let j = place.open();
        assert_eq!(j.get(&key).unwrap(), Some(record("a dog")));
        assert_eq!(j.units_for_video("abc").unwrap(), 1);
        assert!((j.spent_today().unwrap() - 0.25).abs() < 1e-12);
        j.put(&key, "abc", "story@1", &record("a cat")).unwrap();
        assert_eq!(j.get(&key).unwrap(), Some(record("a cat")), "written again, the newer answer stays");
        assert_eq!(j.units_for_video("abc").unwrap(), 1);
    }}

    #[test]
    fn a_journal_file_is_made_with_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.sqlite3");
        Journal::open(&path).unwrap().record_spend("p", 0.25).unwrap();
        assert!((Journal::open(&path).unwrap().spent_today().unwrap() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn the_key_changes_with_everything_that_changes_the_answer() {
        let base = unit_key("v", "p", "m", "", &job("x"));
        assert_eq!(base, unit_key("v", "p", "m", "", &job("x")));
        assert_ne!(base, unit_key("v2", "p", "m", "", &job("x")));
        assert_ne!(base, unit_key("v", "q", "m", "", &job("x")));
        assert_ne!(base, unit_key("v", "p", "m2", "", &job("x")));
        assert_ne!(base, unit_key("v", "p", "m", "temperature=0.7", &job("x")));
        assert_ne!(base, unit_key("v", "p", "m", "", &job("y")));
        let mut other = job("x");
        other.prompt_version = "story@2".into();
        assert_ne!(base, unit_key("v", "p", "m", "", &other));
        other = job("x");
        other.max_output_tokens = 65;
        assert_ne!(base, unit_key("v", "p", "m", "", &other));
    }

    on_both! { fn an_unfinished_run_is_found_for_resume(place) {
        let j = place.open();
        let req = VideoRequest::new("clip.mp4", Task::Describe);
        let first = j.start_run(&req).unwrap();
        j.finish_run(first, "done").unwrap();
        assert_eq!(j.last_unfinished_run().unwrap(), None);
        let second = j.start_run(&req).unwrap();
        let found = j.last_unfinished_run().unwrap().unwrap();
        assert_eq!((found.id, found.request), (second, req));
    }}

    fn bytes_request(data: &[u8]) -> VideoRequest {
        let mut req = VideoRequest::new("x", Task::Describe);
        req.source = VideoSource::Bytes { data: data.to_vec(), format: Some("webm".into()) };
        req
    }

    fn stored_requests(j: &Journal) -> Vec<String> {
        j.sql(|c| c.column("SELECT request FROM runs ORDER BY id", &[])).unwrap()
    }

    on_both! { fn a_video_given_as_bytes_is_stored_as_a_hash_and_a_path_kept_while_a_run_may_resume(place) {
        let j = place.open();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let hash = hex::encode(Sha256::digest(&data));
        let kept = place.videos().join(format!("{hash}.webm"));
        let first = j.start_run(&bytes_request(&data)).unwrap();
        let second = j.start_run(&bytes_request(&data)).unwrap();
        for text in stored_requests(&j) {
            assert!(text.len() < 1000, "no bytes in the row: {} chars", text.len());
            assert!(text.contains(&kept.display().to_string()), "{text}");
        }
        assert_eq!(std::fs::read(&kept).unwrap(), data, "the bytes are kept once, by their hash");
        let Unfinished::Live(run) = j.unfinished().unwrap() else { panic!("the run is alive") };
        assert_eq!(run.request.source, VideoSource::Path { path: kept.clone() });
        assert_eq!(run.video_hash.as_deref(), Some(hash.as_str()), "the hash a resume checks");
        j.finish_run(first, "done").unwrap();
        assert!(kept.exists(), "the other unfinished run still needs it");
        // A resume enters a new run on the kept copy: it names it too.
        let resumed = j.start_run(&run.request).unwrap();
        j.finish_run(second, "failed").unwrap();
        assert!(kept.exists(), "the resumed run still needs it");
        j.finish_run(resumed, "done").unwrap();
        assert!(!kept.exists(), "no run that may resume needs it any more");
        let leftovers: Vec<_> = std::fs::read_dir(kept.parent().unwrap()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }}

    #[test]
    fn a_kept_copy_is_found_under_any_spelling_of_the_journals_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let dotted = dir.path().join("real/../real/j.sqlite3");
        let linked = dir.path().join("link/j.sqlite3");
        let file_link = dir.path().join("j-link.sqlite3");
        let data = vec![9u8; 50_000];
        let hash = hex::encode(Sha256::digest(&data));
        // The run's process opened the journal through `..` and died.
        let first = Journal::open(&dotted).unwrap();
        let id = first.start_run(&bytes_request(&data)).unwrap();
        first.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1", &vals![id])).unwrap();
        let kept = dir.path().join("real/j.sqlite3.videos").join(format!("{hash}.webm"));
        assert!(kept.exists());
        // Other processes open it through symbolic links (to its folder,
        // to the file itself) and prune.
        std::os::unix::fs::symlink(dir.path().join("real/j.sqlite3"), &file_link).unwrap();
        let third = Journal::open(&file_link).unwrap();
        assert_eq!(third.prune(Duration::ZERO).unwrap().videos_removed, 0);
        let other = Journal::open(&linked).unwrap();
        assert_eq!(other.prune(Duration::ZERO).unwrap().videos_removed, 0);
        assert!(kept.exists(), "an unfinished run's only copy stays");
        let Unfinished::Abandoned(run) = other.unfinished().unwrap() else { panic!("the run is resumable") };
        let VideoSource::Path { path } = &run.request.source else { panic!("{:?}", run.request.source) };
        assert_eq!(std::fs::read(path).unwrap(), data, "the resume reads the copy");
        // A run on the copy, under yet another spelling, names it too.
        let mut again = run.request.clone();
        again.source =
            VideoSource::Path { path: linked.with_file_name("j.sqlite3.videos").join(format!("{hash}.webm")) };
        let resumed = other.start_run(&again).unwrap();
        first.finish_run(id, "resumed").unwrap();
        assert_eq!(other.prune(Duration::ZERO).unwrap().videos_removed, 0);
        assert!(kept.exists(), "the resumed run still needs it");
        third.finish_run(resumed, "done").unwrap();
        assert!(!kept.exists(), "no run that may resume needs it any more");
        assert!(!dir.path().join("j-link.sqlite3.videos").exists(), "one folder of copies, beside the file");
    }

    on_both! { fn a_run_taken_over_keeps_its_units_and_its_copy_through_a_prune(place) {
        let j = place.open();
        let data = vec![3u8; 20_000];
        let hash = hex::encode(Sha256::digest(&data));
        let kept = place.videos().join(format!("{hash}.webm"));
        let id = j.start_run(&bytes_request(&data)).unwrap();
        let key = unit_key(&hash, "p", "m", "", &job("x"));
        j.put(&key, &hash, "story@1", &record("a frame")).unwrap();
        j.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0, started_unix_s = 1 WHERE id = ?1", &vals![id]))
            .unwrap();
        j.sql(|c| c.exec("UPDATE units SET created_unix_s = 1", &[])).unwrap();
        let taken = j.take_over(id).unwrap().expect("taken over");
        // A prune right after the takeover, before the resumed run reads its video.
        let pruned = j.prune(Duration::ZERO).unwrap();
        assert_eq!((pruned.rows["units"], pruned.videos_removed), (0, 0), "{pruned:?}");
        assert!(j.get(&key).unwrap().is_some(), "the units a resume reuses stay");
        assert_eq!(std::fs::read(&kept).unwrap(), data, "the copy the resume reads stays");
        j.finish_run(taken, "done").unwrap();
        assert!(!kept.exists(), "the continuation names the copy");
    }}

    #[test]
    fn a_journal_of_version_3_names_its_kept_copies_by_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite3");
        let data = vec![5u8; 10_000];
        let name = format!("{}.webm", hex::encode(Sha256::digest(&data)));
        let kept = dir.path().join("j.sqlite3.videos").join(&name);
        {
            let j = Journal::open(&path).unwrap();
            j.start_run(&bytes_request(&data)).unwrap();
        }
        let old = Connection::open(&path).unwrap();
        let spelled = dir.path().join("x/../j.sqlite3.videos").join(&name).display().to_string();
        old.execute("UPDATE runs SET kept_video = ?1, lease_until_unix_s = 0", params![spelled]).unwrap();
        old.pragma_update(None, "user_version", 3).unwrap();
        drop(old);
        let j = Journal::open(&path).unwrap();
        let names: Vec<Option<String>> = j.sql(|c| c.column("SELECT kept_video FROM runs", &[])).unwrap();
        assert_eq!(names, [Some(name)]);
        assert_eq!(j.prune(Duration::ZERO).unwrap().videos_removed, 0);
        assert!(kept.exists(), "the unfinished run's copy stays");
    }

    #[test]
    fn a_journal_of_version_2_loses_its_video_bytes_and_keeps_its_unfinished_run_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        let data = vec![42u8; 100_000];
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(SCHEMA).unwrap();
            for (table, name, kind) in &ADDED_COLUMNS[..7] {
                old.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind};")).unwrap();
            }
            old.pragma_update(None, "user_version", 2).unwrap();
            let text = serde_json::to_string(&bytes_request(&data)).unwrap();
            for status in ["done", "running"] {
                old.execute(
                    "INSERT INTO runs (request, started_unix_s, status) VALUES (?1, 1, ?2)",
                    params![text, status],
                )
                .unwrap();
            }
        }
        let j = Journal::open(&path).unwrap();
        for text in stored_requests(&j) {
            assert!(text.len() < 1000 && !text.contains("\"kind\":\"bytes\""), "{text}");
        }
        let Unfinished::Abandoned(run) = j.unfinished().unwrap() else { panic!("the old run is resumable") };
        assert_eq!(run.id, 2);
        let VideoSource::Path { path: kept } = &run.request.source else { panic!("{:?}", run.request.source) };
        assert_eq!(std::fs::read(kept).unwrap(), data);
        assert_eq!(run.video_hash, Some(hex::encode(Sha256::digest(&data))));
        assert_eq!(std::fs::read_dir(kept.parent().unwrap()).unwrap().count(), 1, "only the unfinished run's copy");
        j.finish_run(run.id, "done").unwrap();
        assert!(!kept.exists());
    }

    #[test]
    fn an_in_memory_journal_stores_no_bytes_either() {
        let j = Journal::in_memory().unwrap();
        j.start_run(&bytes_request(&[7u8; 5000])).unwrap();
        let stored = &stored_requests(&j)[0];
        assert!(stored.len() < 1000 && stored.contains("not kept"), "{stored}");
    }

    on_both! { fn a_url_is_stored_without_its_credentials(place) {
        let j = place.open();
        let mut req = VideoRequest::new("x", Task::Describe);
        req.source = VideoSource::Url { url: "https://user:pw@host/v.mp4?X-Amz-Signature=abc&sig=def".into() };
        j.start_run(&req).unwrap();
        let stored = &stored_requests(&j)[0];
        assert!(stored.contains("https://***@host/v.mp4?X-Amz-Signature=***&sig=***"), "{stored}");
        assert!(!stored.contains("pw") && !stored.contains("abc") && !stored.contains("def"), "{stored}");
    }}
}
