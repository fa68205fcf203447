//! The durable record of work already paid for, in an embedded SQLite database.
//!
//! Every finished unit (a batch of frames, a native-video call, a merge call)
//! is written here, keyed by what determines its answer: the video's content
//! hash, the provider and model, the prompt and its version, the output cap and
//! the frames' times and size. The write is committed before the run moves on,
//! so a retry, a fallback, a rerun or a resumed run reads it back instead of
//! paying again. Money spent is recorded per call as it settles, which is what
//! the per-day cap reads across runs. Several processes may share one file
//! (SQLite's locking, a busy timeout).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use crate::policy::{BudgetError, SharedLedger};
use crate::provider::{Job, JobInput};
use crate::schema::{Observation, Usage, VideoRequest, VideoSource};

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

/// A run as the journal remembers it, for `--resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub request: VideoRequest,
    pub started_unix_s: i64,
}

pub struct Journal {
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish_non_exhaustive()
    }
}

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
";

impl Journal {
    /// Open (or create) the journal at `path`, creating its directory.
    ///
    /// # Errors
    /// When the file cannot be created or is not a vidgate journal.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let shown = path.display().to_string();
        let fail = |message: String| JournalError { path: shown.clone(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(e.to_string()))?;
        Self::init(conn, shown)
    }

    /// A journal that lives only as long as this value (tests, `--no-journal` runs).
    ///
    /// # Errors
    /// Only when SQLite itself cannot start.
    pub fn in_memory() -> Result<Self, JournalError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| JournalError { path: ":memory:".into(), message: e.to_string() })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, path: String) -> Result<Self, JournalError> {
        let fail = |e: rusqlite::Error| JournalError { path: path.clone(), message: e.to_string() };
        conn.busy_timeout(Duration::from_secs(10)).map_err(fail)?;
        // WAL with FULL sync: a committed unit survives a crash or a power cut.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self { conn: Mutex::new(conn), path })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, JournalError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|e| JournalError { path: self.path.clone(), message: e.to_string() })
    }

    /// The unit recorded under `key`, if any.
    ///
    /// # Errors
    /// A read failure; a record that no longer parses counts as absent.
    pub fn get(&self, key: &str) -> Result<Option<UnitRecord>, JournalError> {
        let text: Option<String> = self.with(|c| {
            c.query_row("SELECT record FROM units WHERE key = ?1", params![key], |row| row.get(0)).optional()
        })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Record a finished unit; committed when this returns.
    ///
    /// # Errors
    /// A write failure.
    pub fn put(&self, key: &str, video: &str, prompt_version: &str, record: &UnitRecord) -> Result<(), JournalError> {
        let text = serde_json::to_string(record)
            .map_err(|e| JournalError { path: self.path.clone(), message: e.to_string() })?;
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO units (key, video, provider, model, prompt_version, record, created_unix_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![key, video, record.provider, record.model, prompt_version, text, now_s()],
            )
        })?;
        Ok(())
    }

    /// How many units are recorded for the video with this content hash.
    ///
    /// # Errors
    /// A read failure.
    pub fn units_for_video(&self, video: &str) -> Result<u64, JournalError> {
        let n: i64 = self
            .with(|c| c.query_row("SELECT COUNT(*) FROM units WHERE video = ?1", params![video], |row| row.get(0)))?;
        Ok(n.max(0) as u64)
    }

    /// Record money spent (or possibly spent) on one call, now.
    ///
    /// # Errors
    /// A write failure.
    pub fn record_spend(&self, provider: &str, usd: f64) -> Result<(), JournalError> {
        let now = now_s();
        self.with(|c| {
            c.execute(
                "INSERT INTO spend (day, at_unix_s, provider, usd) VALUES (?1, ?2, ?3, ?4)",
                params![now.div_euclid(86_400), now, provider, usd],
            )
        })?;
        Ok(())
    }

    /// Spent today plus what live reservations hold, on `c`.
    fn committed_today(c: &Connection, now: i64) -> rusqlite::Result<f64> {
        let day = now.div_euclid(86_400);
        c.query_row(
            "SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1)
                  + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations WHERE day = ?1 AND expires_unix_s > ?2)",
            params![day, now],
            |row| row.get(0),
        )
    }

    /// Money recorded on the current UTC day.
    ///
    /// # Errors
    /// A read failure.
    pub fn spent_today(&self) -> Result<f64, JournalError> {
        let day = today();
        self.with(|c| {
            c.query_row("SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1", params![day], |row| row.get(0))
        })
    }

    /// Remember that a run started; returns its id.
    ///
    /// # Errors
    /// A write failure.
    pub fn start_run(&self, request: &VideoRequest) -> Result<i64, JournalError> {
        // A URL's userinfo and query values may be credentials: never stored.
        let text = match &request.source {
            VideoSource::Url { url } => serde_json::to_string(&VideoRequest {
                source: VideoSource::Url { url: crate::secret::redact_urls(url) },
                ..request.clone()
            }),
            _ => serde_json::to_string(request),
        }
        .map_err(|e| JournalError { path: self.path.clone(), message: e.to_string() })?;
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (request, started_unix_s, status) VALUES (?1, ?2, 'running')",
                params![text, now_s()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Mark a run finished (`done` or `failed`).
    ///
    /// # Errors
    /// A write failure.
    pub fn finish_run(&self, id: i64, status: &str) -> Result<(), JournalError> {
        self.with(|c| {
            c.execute("UPDATE runs SET status = ?1, finished_unix_s = ?2 WHERE id = ?3", params![status, now_s(), id])
        })?;
        Ok(())
    }

    /// The most recent run that never finished (the process died or was killed).
    ///
    /// # Errors
    /// A read failure.
    pub fn last_unfinished_run(&self) -> Result<Option<RunRecord>, JournalError> {
        let row: Option<(i64, String, i64)> = self.with(|c| {
            c.query_row(
                "SELECT id, request, started_unix_s FROM runs WHERE status = 'running' ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
        })?;
        Ok(row.and_then(|(id, text, started_unix_s)| {
            serde_json::from_str(&text).ok().map(|request| RunRecord { id, request, started_unix_s })
        }))
    }
}

/// How long a reservation counts when its process never lets it go (it
/// died mid-call): longer than any call is allowed to take.
const RESERVATION_TTL_S: i64 = 3600;

/// The journal as the daily cap's ledger shared by every process that uses
/// the file: a reservation is checked and written in one `IMMEDIATE`
/// transaction, so two processes cannot both take the last dollars.
impl SharedLedger for Journal {
    fn hold(&self, amount: f64, cap: f64) -> Result<i64, BudgetError> {
        let now = now_s();
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let held = (|| -> rusqlite::Result<Result<i64, BudgetError>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let left = cap - Self::committed_today(&tx, now)?;
            if amount > left + 1e-12 {
                return Ok(Err(BudgetError { needed: amount, left: left.max(0.0), cap }));
            }
            tx.execute(
                "INSERT INTO reservations (day, usd, expires_unix_s) VALUES (?1, ?2, ?3)",
                params![now.div_euclid(86_400), amount, now + RESERVATION_TTL_S],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Ok(id))
        })();
        held.unwrap_or_else(|e| {
            tracing::warn!(journal = %self.path, error = %e, "cannot hold money in the journal: the call is refused");
            Err(BudgetError { needed: amount, left: 0.0, cap })
        })
    }

    fn let_go(&self, id: i64, unrecorded: f64) {
        let now = now_s();
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let done = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if unrecorded > 0.0 {
                tx.execute(
                    "INSERT INTO spend (day, at_unix_s, provider, usd) VALUES (?1, ?2, '(abandoned call)', ?3)",
                    params![now.div_euclid(86_400), now, unrecorded],
                )?;
            }
            tx.execute("DELETE FROM reservations WHERE id = ?1", params![id])?;
            tx.commit()
        })();
        if let Err(e) = done {
            tracing::warn!(journal = %self.path, error = %e, "cannot release a reservation: it counts until it expires");
        }
    }

    fn left(&self, cap: f64) -> f64 {
        let now = now_s();
        self.with(|c| Self::committed_today(c, now)).map_or(0.0, |committed| (cap - committed).max(0.0))
    }
}

fn now_s() -> i64 {
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
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::Budget;
    use crate::schema::{Task, TimeRange};

    /// Two handles on one file, as two processes would have.
    fn two_handles() -> (tempfile::TempDir, Arc<Journal>, Arc<Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite3");
        let a = Arc::new(Journal::open(&path).unwrap());
        let b = Arc::new(Journal::open(&path).unwrap());
        (dir, a, b)
    }

    #[test]
    fn processes_sharing_a_journal_share_the_daily_cap() {
        let (_dir, ja, jb) = two_handles();
        let (a, b) = (Budget::new(1.0).shared(ja.clone()), Budget::new(1.0).shared(jb.clone()));
        let held = a.reserve(0.6).unwrap();
        // The other process's own budget is untouched, the shared ledger is not.
        let refused = b.reserve(0.6).unwrap_err();
        assert!((refused.left - 0.4).abs() < 1e-9, "{refused}");
        assert!((b.remaining() - 0.4).abs() < 1e-9);
        // The call cost 0.3: recorded, then let go; 0.7 is left for both.
        ja.record_spend("p", 0.3).unwrap();
        held.reconcile(0.3);
        let second = b.reserve(0.6).unwrap();
        assert!((a.remaining() - 0.1).abs() < 1e-9, "{}", a.remaining());
        second.release();
        assert!((jb.left(1.0) - 0.7).abs() < 1e-9);
    }

    #[test]
    fn an_abandoned_call_counts_as_spent_in_the_shared_ledger() {
        let (_dir, ja, jb) = two_handles();
        let a = Budget::new(1.0).shared(ja.clone());
        drop(a.reserve(0.25).unwrap());
        assert!((jb.spent_today().unwrap() - 0.25).abs() < 1e-9);
        assert!((jb.left(1.0) - 0.75).abs() < 1e-9, "the reservation is gone, the spend stays");
    }

    #[test]
    fn a_reservation_left_by_a_dead_process_expires() {
        let (_dir, ja, jb) = two_handles();
        ja.hold(0.5, 1.0).unwrap();
        assert!((jb.left(1.0) - 0.5).abs() < 1e-9);
        ja.with(|c| c.execute("UPDATE reservations SET expires_unix_s = ?1", params![now_s() - 1])).unwrap();
        assert!((jb.left(1.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn parallel_reservations_from_two_processes_never_pass_the_cap() {
        let (_dir, ja, jb) = two_handles();
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let journal = if i % 2 == 0 { ja.clone() } else { jb.clone() };
                    s.spawn(move || Budget::new(1.0).shared(journal).reserve(0.25).ok())
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 4, "four of eight $0.25 calls fit a $1 day");
        held.into_iter().for_each(|r| r.release());
        assert!((ja.left(1.0) - 1.0).abs() < 1e-9);
    }

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

    #[test]
    fn units_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.sqlite3");
        let key = unit_key("abc", "p", "m", "", &job("x"));
        {
            let j = Journal::open(&path).unwrap();
            assert_eq!(j.get(&key).unwrap(), None);
            j.put(&key, "abc", "story@1", &record("a dog")).unwrap();
            j.record_spend("p", 0.25).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.get(&key).unwrap(), Some(record("a dog")));
        assert_eq!(j.units_for_video("abc").unwrap(), 1);
        assert!((j.spent_today().unwrap() - 0.25).abs() < 1e-12);
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

    #[test]
    fn an_unfinished_run_is_found_for_resume() {
        let j = Journal::in_memory().unwrap();
        let req = VideoRequest::new("clip.mp4", Task::Describe);
        let first = j.start_run(&req).unwrap();
        j.finish_run(first, "done").unwrap();
        assert_eq!(j.last_unfinished_run().unwrap(), None);
        let second = j.start_run(&req).unwrap();
        let found = j.last_unfinished_run().unwrap().unwrap();
        assert_eq!((found.id, found.request), (second, req));
    }

    #[test]
    fn a_url_is_stored_without_its_credentials() {
        let j = Journal::in_memory().unwrap();
        let mut req = VideoRequest::new("x", Task::Describe);
        req.source = VideoSource::Url { url: "https://user:pw@host/v.mp4?X-Amz-Signature=abc&sig=def".into() };
        j.start_run(&req).unwrap();
        let stored: String = j.with(|c| c.query_row("SELECT request FROM runs", [], |row| row.get(0))).unwrap();
        assert!(stored.contains("https://***@host/v.mp4?X-Amz-Signature=***&sig=***"), "{stored}");
        assert!(!stored.contains("pw") && !stored.contains("abc") && !stored.contains("def"), "{stored}");
    }
}
