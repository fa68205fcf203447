//! Retention: [`Journal::prune`] drops what is older than a cut and gives
//! the space back to the disk; [`Journal::stats`] says what the journal holds.
//!
//! What a prune drops, and what it never drops:
//!
//! - **units** created before the cut, except those of a video that an
//!   unfinished run (status `running`, alive or not) reads: such a run may
//!   still be resumed, and its finished units are what a resume reuses;
//! - **runs** that ended (any status but `running`) before the cut; an
//!   unfinished run stays whatever its age;
//! - **spend** rows older than the cut, but only those of a past UTC day:
//!   the daily caps (the gateway's `budget.max_usd_per_day` and each API
//!   key's own) read the current UTC day's rows, and nothing reads older ones;
//! - **reservations** that count no more: expired, or of a past day;
//! - kept copies of videos given as bytes that no unfinished run names, and
//!   copies left half-written for more than an hour (`.incoming-*`).
//!
//! API keys are never dropped. After the rows go, the freed pages are given
//! back to the file system: with `PRAGMA incremental_vacuum` in a journal
//! made with incremental auto-vacuum (every journal made since schema
//! version 3), else by one full `VACUUM` that also turns incremental
//! auto-vacuum on. That first `VACUUM` rewrites the whole file (it takes
//! time and, for a moment, as much free disk as the journal's size) and
//! waits for other processes to let go of the file.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use super::db::{vals, Conn, DbResult, Sql, SqlExt};
use super::{kept, now_s, Journal, JournalError};

/// The tables a journal holds, as [`JournalStats::rows`] lists them.
pub const TABLES: [&str; 5] = ["units", "runs", "spend", "reservations", "api_keys"];

/// What one prune dropped and gave back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    /// Rows older than this Unix time were dropped (those allowed to go).
    pub before_unix_s: i64,
    /// Rows dropped, by table (`units`, `runs`, `spend`, `reservations`).
    pub rows: BTreeMap<&'static str, u64>,
    /// Units older than the cut that stay, because an unfinished run reads their video.
    pub units_kept_for_unfinished_runs: u64,
    /// Kept copies of videos given as bytes that were removed.
    pub videos_removed: u64,
    /// How the space was given back: `incremental`, `full` (a `VACUUM`),
    /// `none` (a journal in memory), or why it could not be.
    pub vacuum: String,
    /// The journal's bytes on disk (file and write-ahead log) before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Pruned {
    /// Rows dropped, over every table.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// What a journal holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalStats {
    pub path: String,
    /// Rows per table (see [`TABLES`]).
    pub rows: BTreeMap<&'static str, u64>,
    /// Bytes on disk: the file and its write-ahead log (0 in memory).
    pub bytes: u64,
    /// Of those, bytes in free pages, which a vacuum gives back.
    pub free_bytes: u64,
    /// Kept copies of videos given as bytes, and their bytes (copies still
    /// being written left out).
    pub videos: u64,
    pub video_bytes: u64,
    /// The oldest entry of each table with a time (`units`, `runs`, `spend`), as a Unix time.
    pub oldest: BTreeMap<&'static str, i64>,
    /// The oldest of those.
    pub oldest_unix_s: Option<i64>,
    /// Money recorded on the current UTC day, every account included.
    pub spent_today_usd: f64,
    /// SQLite's `none`, `full` or `incremental`; `autovacuum` on
    /// PostgreSQL, whose own autovacuum gives space back.
    pub auto_vacuum: &'static str,
}

impl Journal {
    /// Drop what is older than `older_than` (see the module docs for what
    /// stays), then give the freed space back to the disk.
    ///
    /// # Errors
    /// A read or write failure; the rows are dropped in one transaction, so
    /// on failure none are. A vacuum that cannot be done is not an error:
    /// [`Pruned::vacuum`] says why.
    pub fn prune(&self, older_than: Duration) -> Result<Pruned, JournalError> {
        let now = now_s();
        let before = now.saturating_sub(i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX));
        let bytes_before = self.bytes_on_disk();
        let videos = self.videos();
        let durable = self.is_durable();
        let (rows, units_kept, videos_removed, vacuum, database_bytes) = self.with(move |c| {
            let database_before = database_bytes(c)?;
            let (rows, units_kept) = c.write(|tx| drop_old(tx, before, now))?;
            let removed = match &videos {
                Some(dir) => c.write(|tx| kept::sweep(tx, dir))?,
                None => 0,
            };
            let vacuum = match c.lite() {
                Some(lite) if durable => vacuum(lite),
                Some(_) => "none".to_string(),
                None => "autovacuum".to_string(),
            };
            Ok((rows, units_kept, removed, vacuum, database_before.zip(database_bytes(c)?)))
        })?;
        let (bytes_before, bytes_after) = database_bytes.unwrap_or((bytes_before, self.bytes_on_disk()));
        let pruned = Pruned {
            before_unix_s: before,
            rows,
            units_kept_for_unfinished_runs: units_kept,
            videos_removed,
            vacuum,
            bytes_before,
            bytes_after,
        };
        tracing::info!(
            journal = %self.path,
            rows = pruned.total_rows(),
            bytes_before = pruned.bytes_before,
            bytes_after = pruned.bytes_after,
            vacuum = %pruned.vacuum,
            "journal pruned"
        );
        Ok(pruned)
    }

    /// What the journal holds now.
    ///
    /// # Errors
    /// A read failure.
    pub fn stats(&self) -> Result<JournalStats, JournalError> {
        let (rows, oldest, spent_today_usd, free_bytes, auto_vacuum, database_bytes) = self.with(|c| {
            let mut rows = BTreeMap::new();
            for table in TABLES {
                let n: Option<i64> = c.one(&format!("SELECT COUNT(*) FROM {table}"), &[])?;
                rows.insert(table, n.unwrap_or(0).max(0) as u64);
            }
            let mut oldest = BTreeMap::new();
            for (table, column) in [("units", "created_unix_s"), ("runs", "started_unix_s"), ("spend", "at_unix_s")] {
                let at: Option<Option<i64>> = c.one(&format!("SELECT MIN({column}) FROM {table}"), &[])?;
                if let Some(at) = at.flatten() {
                    oldest.insert(table, at);
                }
            }
            let day = now_s().div_euclid(86_400);
            let spent: Option<f64> = c.one("SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1", &vals![day])?;
            let (free, mode) = match c.lite() {
                Some(lite) => {
                    let page: i64 = lite.pragma_query_value(None, "page_size", |r| r.get(0))?;
                    let free: i64 = lite.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                    ((page * free).max(0) as u64, auto_vacuum_mode(lite)?)
                }
                None => (0, "autovacuum"),
            };
            Ok((rows, oldest, spent.unwrap_or(0.0), free, mode, database_bytes(c)?))
        })?;
        let (videos, video_bytes) = self.videos().map_or((0, 0), |dir| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                // A copy still being written (or left half-way) is no video kept.
                .filter(|e| !e.file_name().to_string_lossy().starts_with(kept::INCOMING))
                .filter_map(|e| e.metadata().ok())
                .fold((0, 0), |(n, bytes), m| if m.is_file() { (n + 1, bytes + m.len()) } else { (n, bytes) })
        });
        Ok(JournalStats {
            path: self.path.clone(),
            rows,
            bytes: database_bytes.unwrap_or_else(|| self.bytes_on_disk()),
            free_bytes,
            videos,
            video_bytes,
            oldest_unix_s: oldest.values().min().copied(),
            oldest,
            spent_today_usd,
            auto_vacuum,
        })
    }

    /// The journal's bytes on disk: its file and its write-ahead log (0 in
    /// memory and on PostgreSQL). Reads file sizes only, never the database.
    pub fn bytes_on_disk(&self) -> u64 {
        let Some(file) = &self.file else { return 0 };
        let mut wal = file.clone().into_os_string();
        wal.push("-wal");
        [file.as_os_str(), wal.as_os_str()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }
}

/// The PostgreSQL database's size (none on SQLite, whose file is measured).
fn database_bytes(c: &mut Conn) -> DbResult<Option<u64>> {
    if c.lite().is_some() {
        return Ok(None);
    }
    let bytes: Option<i64> = c.one("SELECT pg_database_size(current_database())", &[])?;
    Ok(bytes.map(|b| b.max(0) as u64))
}

/// Drop the rows that may go, inside the caller's transaction: rows dropped
/// by table, and the old units kept for unfinished runs.
fn drop_old(tx: &mut dyn Sql, before: i64, now: i64) -> DbResult<(BTreeMap<&'static str, u64>, u64)> {
    let today = now.div_euclid(86_400);
    let mut rows = BTreeMap::new();
    let units = tx.exec(
        "DELETE FROM units WHERE created_unix_s < ?1 AND video NOT IN
           (SELECT video_hash FROM runs WHERE status = 'running' AND video_hash IS NOT NULL)",
        &vals![before],
    )?;
    rows.insert("units", units);
    let kept: Option<i64> = tx.one("SELECT COUNT(*) FROM units WHERE created_unix_s < ?1", &vals![before])?;
    let runs = tx.exec(
        "DELETE FROM runs WHERE status != 'running' AND COALESCE(finished_unix_s, started_unix_s) < ?1",
        &vals![before],
    )?;
    rows.insert("runs", runs);
    let spend = tx.exec("DELETE FROM spend WHERE at_unix_s < ?1 AND day < ?2", &vals![before, today])?;
    rows.insert("spend", spend);
    let reservations =
        tx.exec("DELETE FROM reservations WHERE day < ?1 OR expires_unix_s <= ?2", &vals![today, now])?;
    rows.insert("reservations", reservations);
    // Claims of units being bought, left by instances that died (a shared
    // database's); a live claim is renewed every few seconds.
    if tx.dialect() == super::db::Dialect::Postgres {
        let claims = tx.exec("DELETE FROM unit_claims WHERE until_unix_s < ?1", &vals![now - 3600])?;
        if claims > 0 {
            rows.insert("unit_claims", claims);
        }
    }
    Ok((rows, kept.unwrap_or(0).max(0) as u64))
}

fn auto_vacuum_mode(c: &Connection) -> rusqlite::Result<&'static str> {
    let mode: i64 = c.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    Ok(match mode {
        1 => "full",
        2 => "incremental",
        _ => "none",
    })
}

/// Give the free pages back: incrementally when the journal allows it, else
/// by one full `VACUUM` that turns incremental auto-vacuum on for next time.
/// Then the write-ahead log is checkpointed and truncated. How it went.
fn vacuum(c: &Connection) -> String {
    let done = (|| -> rusqlite::Result<&'static str> {
        let how = if auto_vacuum_mode(c)? == "incremental" {
            // Each step gives back one page: stepped to the end.
            let mut stmt = c.prepare("PRAGMA incremental_vacuum")?;
            let mut steps = stmt.query([])?;
            while steps.next()?.is_some() {}
            "incremental"
        } else {
            c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
            "full"
        };
        // Busy readers may keep part of the log: the next checkpoint takes it.
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(how)
    })();
    done.map_or_else(
        |e| {
            tracing::warn!(error = %e, "journal pruned, but its space could not be given back now");
            format!("not done: {e}")
        },
        str::to_string,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::testing::on_both;
    use crate::journal::{unit_key, Unfinished, UnitRecord};
    use crate::provider::{Job, JobInput};
    use crate::schema::{Task, Usage, VideoRequest};

    const DAY: i64 = 86_400;

    fn key(video: &str, n: usize) -> String {
        let job = Job {
            task: Task::Describe,
            input: JobInput::Text(n.to_string()),
            prompt: "p".into(),
            prompt_version: "v@1".into(),
            max_output_tokens: 8,
            span: None,
        };
        unit_key(video, "p", "m", "", &job)
    }

    fn unit(j: &Journal, video: &str, n: usize, age_days: i64) -> String {
        let k = key(video, n);
        let record =
            UnitRecord { provider: "p".into(), model: "m".into(), observations: vec![], usage: Usage::default() };
        j.put(&k, video, "v@1", &record).unwrap();
        let (k2, at) = (k.clone(), now_s() - age_days * DAY);
        j.sql(move |c| c.exec("UPDATE units SET created_unix_s = ?1 WHERE key = ?2", &vals![at, k2])).unwrap();
        k
    }

    /// A run on `video` started and (unless `running`) ended `age_days` ago.
    fn run(j: &Journal, video: &str, age_days: i64, running: bool) -> i64 {
        let id = j.start_run(&VideoRequest::new(format!("/v/{video}.mp4"), Task::Describe)).unwrap();
        j.set_run_video(id, video).unwrap();
        if !running {
            j.finish_run(id, "done").unwrap();
        }
        let at = now_s() - age_days * DAY;
        j.sql(move |c| {
            c.exec(
                "UPDATE runs SET started_unix_s = ?1, finished_unix_s = CASE WHEN finished_unix_s IS NULL THEN NULL ELSE CAST(?1 AS BIGINT) END,
                 lease_until_unix_s = 0 WHERE id = ?2",
                &vals![at, id],
            )
        })
        .unwrap();
        id
    }

    fn spend(j: &Journal, usd: f64, age_days: i64) {
        let at = now_s() - age_days * DAY;
        j.sql(move |c| {
            c.exec(
                "INSERT INTO spend (day, at_unix_s, provider, usd) VALUES (?1, ?2, 'p', ?3)",
                &vals![at.div_euclid(DAY), at, usd],
            )
        })
        .unwrap();
    }

    on_both! { fn old_units_and_runs_go_and_what_a_resume_or_a_budget_reads_stays(place) {
        let j = place.open();
        let done_old = run(&j, "old", 40, false);
        let done_new = run(&j, "new", 1, false);
        let unfinished = run(&j, "resumable", 40, true);
        let old_units: Vec<String> = (0..5).map(|n| unit(&j, "old", n, 40)).collect();
        let new_unit = unit(&j, "new", 0, 1);
        let resumable_units: Vec<String> = (0..3).map(|n| unit(&j, "resumable", n, 40)).collect();
        spend(&j, 1.0, 40);
        spend(&j, 0.5, 0);
        wait(crate::policy::SharedLedger::hold(&j, 0.1, 10.0)).unwrap();
        j.sql(|c| c.exec("UPDATE reservations SET expires_unix_s = 1", &[])).unwrap();

        let pruned = j.prune(Duration::from_secs(30 * DAY as u64)).unwrap();
        let expected: BTreeMap<&str, u64> = [("units", 5), ("runs", 1), ("spend", 1), ("reservations", 1)].into();
        assert_eq!(pruned.rows, expected, "{pruned:?}");
        assert_eq!(pruned.units_kept_for_unfinished_runs, 3);
        assert!(old_units.iter().all(|k| j.get(k).unwrap().is_none()));
        assert!(j.get(&new_unit).unwrap().is_some(), "a recent unit stays");
        assert!(resumable_units.iter().all(|k| j.get(k).unwrap().is_some()), "an unfinished run's units stay");
        let Unfinished::Abandoned(left) = j.unfinished().unwrap() else { panic!("the unfinished run stays") };
        assert_eq!(left.id, unfinished);
        let ids: Vec<i64> = j.sql(|c| c.column("SELECT id FROM runs ORDER BY id", &[])).unwrap();
        assert_eq!(ids, vec![done_new, unfinished], "run {done_old} went");
        assert!((j.spent_today().unwrap() - 0.5).abs() < 1e-12, "today's spend stays");

        // Everything older than now: today's spend still stays, as do the unfinished run and its units.
        let all = j.prune(Duration::ZERO).unwrap();
        assert_eq!((all.rows["units"], all.rows["runs"], all.rows["spend"]), (1, 1, 0), "{all:?}");
        assert!((j.spent_today().unwrap() - 0.5).abs() < 1e-12);
        assert!(resumable_units.iter().all(|k| j.get(k).unwrap().is_some()));
        // Once the run ends, its units may go.
        j.finish_run(unfinished, "done").unwrap();
        assert_eq!(j.prune(Duration::ZERO).unwrap().rows["units"], 3);
    }}

    on_both! { fn stats_count_rows_and_read_the_oldest_entry_and_todays_spend(place) {
        let j = place.open();
        run(&j, "a", 3, false);
        unit(&j, "a", 0, 2);
        unit(&j, "a", 1, 0);
        spend(&j, 0.25, 9);
        spend(&j, 0.75, 0);
        let stats = j.stats().unwrap();
        let rows: BTreeMap<&str, u64> =
            [("units", 2), ("runs", 1), ("spend", 2), ("reservations", 0), ("api_keys", 0)].into();
        assert_eq!(stats.rows, rows);
        assert!((stats.oldest_unix_s.unwrap() - (now_s() - 9 * DAY)).abs() <= 2, "{stats:?}");
        assert!((stats.oldest["units"] - (now_s() - 2 * DAY)).abs() <= 2, "{stats:?}");
        assert!((stats.spent_today_usd - 0.75).abs() < 1e-12);
        if place.kind == crate::journal::testing::Kind::Sqlite {
            assert_eq!(stats.auto_vacuum, "incremental", "a new journal");
            let on_disk = std::fs::metadata(place.dir.path().join("j.sqlite3")).unwrap().len();
            assert!(stats.bytes >= on_disk && on_disk > 0, "{stats:?}");
            let empty = Journal::in_memory().unwrap().stats().unwrap();
            assert_eq!((empty.bytes, empty.oldest_unix_s, empty.rows["units"]), (0, None, 0));
        } else {
            assert_eq!(stats.auto_vacuum, "autovacuum");
            assert!(stats.bytes > 1_000_000, "the database's size: {stats:?}");
        }
    }}

    #[test]
    fn an_old_journal_is_vacuumed_in_full_once_then_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        Connection::open(&path).unwrap().execute_batch(super::super::SCHEMA).unwrap();
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.stats().unwrap().auto_vacuum, "none", "made before version 3");
        for n in 0..200 {
            unit(&j, "old", n, 10);
        }
        let first = j.prune(Duration::from_secs(DAY as u64)).unwrap();
        assert_eq!((first.rows["units"], first.vacuum.as_str()), (200, "full"));
        assert!(first.bytes_after < first.bytes_before, "{first:?}");
        assert_eq!(j.stats().unwrap().auto_vacuum, "incremental");
        for n in 0..200 {
            unit(&j, "old", n, 10);
        }
        let second = j.prune(Duration::from_secs(DAY as u64)).unwrap();
        assert_eq!(second.vacuum, "incremental");
        assert!(second.bytes_after < second.bytes_before, "{second:?}");
        assert_eq!(j.stats().unwrap().free_bytes, 0, "every free page given back");
    }

    on_both! { fn copies_left_half_written_are_not_counted_and_go_after_an_hour(place) {
        let j = place.open();
        let videos = place.videos();
        std::fs::create_dir_all(&videos).unwrap();
        let (old, fresh) = (videos.join(".incoming-old"), videos.join(".incoming-fresh"));
        std::fs::write(&old, [1u8; 100]).unwrap();
        std::fs::write(&fresh, [2u8; 100]).unwrap();
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        let stats = j.stats().unwrap();
        assert_eq!((stats.videos, stats.video_bytes), (0, 0), "{stats:?}");
        let pruned = j.prune(Duration::from_secs(DAY as u64)).unwrap();
        assert_eq!(pruned.videos_removed, 1, "{pruned:?}");
        assert!(!old.exists(), "left by a process that died before its run was entered");
        assert!(fresh.exists(), "maybe still being written");
    }}

    fn wait<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }
}
