//! Runs as a service keeps them across restarts: who paid for a run and how
//! it ended (its report, or its error), which process instance owns an
//! unfinished run, and the runs a restarted service serves again or resumes.

use super::db::{vals, DbResult, Dialect, Row, Sql, SqlExt};
use super::{now_s, run_record, stored_request, Journal, JournalError, RunRecord, RUN_LEASE_S};
use crate::schema::VideoRequest;

/// A finished run as the journal keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRun {
    pub id: i64,
    pub request: VideoRequest,
    pub started_unix_s: i64,
    pub finished_unix_s: i64,
    /// The account (API key id) that paid, if any.
    pub account: Option<String>,
    /// How it ended, as its service wrote it (report, or error and status).
    pub outcome: serde_json::Value,
}

/// A run as the journal holds it, for an instance that does not hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub id: i64,
    pub request: VideoRequest,
    pub started_unix_s: i64,
    /// `running`, or how it ended (`done`, `failed`, `cancelled`, `resumed`).
    pub status: String,
    pub account: Option<String>,
    /// How it ended, as its service wrote it.
    pub outcome: Option<serde_json::Value>,
    pub lease_until_unix_s: i64,
}

/// Who pays for an unfinished run: its API key's id, and that key's daily
/// cap as the key holds it now (none when the key is gone).
#[derive(Debug, Clone, PartialEq)]
pub struct RunAccount {
    pub id: String,
    pub max_usd_per_day: Option<f64>,
    /// The key was revoked (or is gone) since the run began: it pays for
    /// nothing more.
    pub revoked: bool,
}

impl Journal {
    /// Note who pays for the run `id` and which service instance works on it.
    ///
    /// # Errors
    /// A write failure.
    pub fn set_run_owner(&self, id: i64, account: Option<&str>, owner: &str) -> Result<(), JournalError> {
        let args = vals![account, owner, id];
        self.with(move |c| c.exec("UPDATE runs SET account = ?1, owner = ?2 WHERE id = ?3", &args).map(drop))
    }

    /// Mark the run `id` finished with `status`, keeping its `outcome`.
    ///
    /// # Errors
    /// A write failure.
    pub fn record_outcome(&self, id: i64, status: &str, outcome: &serde_json::Value) -> Result<(), JournalError> {
        let (status, outcome, videos) = (status.to_string(), outcome.to_string(), self.videos());
        self.with(move |c| {
            c.exec(
                "UPDATE runs SET status = ?1, outcome = ?2, finished_unix_s = COALESCE(finished_unix_s, ?3) WHERE id = ?4",
                &vals![status, outcome, now_s(), id],
            )?;
            super::kept::release_run(c, videos.as_deref(), id)
        })
    }

    /// The runs finished since `since_unix_s` with an outcome kept, oldest first.
    ///
    /// # Errors
    /// A read failure; a run whose request or outcome no longer parses is skipped.
    pub fn recent_runs(&self, since_unix_s: i64) -> Result<Vec<FinishedRun>, JournalError> {
        self.with(move |c| {
            let rows = c.rows(
                "SELECT id, request, started_unix_s, finished_unix_s, account, outcome FROM runs
                 WHERE outcome IS NOT NULL AND status != 'running' AND finished_unix_s >= ?1 ORDER BY id",
                &vals![since_unix_s],
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (request, outcome): (String, String) = (row.get(1)?, row.get(5)?);
                if let (Ok(request), Ok(outcome)) = (stored_request(&request), serde_json::from_str(&outcome)) {
                    out.push(FinishedRun {
                        id: row.get(0)?,
                        request,
                        started_unix_s: row.get(2)?,
                        finished_unix_s: row.get(3)?,
                        account: row.get(4)?,
                        outcome,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Drop the kept outcome (report or error) of every run finished before
    /// `before_unix_s`: a restarted service no longer serves it. Unfinished
    /// runs keep theirs. The ids of the runs whose outcome was dropped.
    ///
    /// # Errors
    /// A write failure.
    pub fn forget_outcomes(&self, before_unix_s: i64) -> Result<Vec<i64>, JournalError> {
        self.with(move |c| {
            let mut ids: Vec<i64> = c.column(
                "UPDATE runs SET outcome = NULL
                 WHERE outcome IS NOT NULL AND status != 'running' AND finished_unix_s < ?1 RETURNING id",
                &vals![before_unix_s],
            )?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    /// The unfinished runs this `owner` may resume, oldest first, each with
    /// its account and that account's daily cap: its own (a restart of the
    /// same instance), and any other service's whose lease ran out. A
    /// command line run (no owner) is left to `vidgate resume`.
    ///
    /// # Errors
    /// A read failure.
    pub fn resumable_runs(&self, owner: &str) -> Result<Vec<(RunRecord, Option<RunAccount>)>, JournalError> {
        let owner = owner.to_string();
        let skew = self.clock_skew_s;
        self.with(move |c| resumable(c, &owner, skew))
    }

    /// Extend the lease of the unfinished run `id` if `owner` still holds
    /// it; whether it does (false: another instance took it over, or it
    /// ended).
    ///
    /// # Errors
    /// A write failure.
    pub fn renew_lease_of(&self, id: i64, owner: &str) -> Result<bool, JournalError> {
        let owner = owner.to_string();
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let now = c.clock_s(skew)?;
            let changed = c.exec(
                "UPDATE runs SET lease_until_unix_s = ?1 WHERE id = ?2 AND status = 'running' AND owner = ?3",
                &vals![now + RUN_LEASE_S, id, owner],
            )?;
            Ok(changed == 1)
        })
    }

    /// Put the unfinished run `id` of `owner`, waiting there for a slot, up
    /// for any instance to take: its lease ends now, so the next
    /// [`Journal::claim_abandoned`] of an instance with room takes it,
    /// unless `owner` takes it back first ([`Journal::claim_run`]).
    /// Whether it was offered (false: not `owner`'s, or over).
    ///
    /// # Errors
    /// A write failure.
    pub fn offer_run(&self, id: i64, owner: &str) -> Result<bool, JournalError> {
        let owner = owner.to_string();
        self.with(move |c| {
            let changed = c.exec(
                "UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1 AND status = 'running' AND owner = ?2",
                &vals![id, owner],
            )?;
            Ok(changed == 1)
        })
    }

    /// Whether `owner` still holds the unfinished run `id`.
    ///
    /// # Errors
    /// A read failure.
    pub fn owns_run(&self, id: i64, owner: &str) -> Result<bool, JournalError> {
        let owner = owner.to_string();
        self.with(move |c| {
            let found: Option<i64> =
                c.one("SELECT id FROM runs WHERE id = ?1 AND status = 'running' AND owner = ?2", &vals![id, owner])?;
            Ok(found.is_some())
        })
    }

    /// Take the unfinished run `id` for `owner` under its own id: leased to
    /// it from now, if it is its own or its lease ran out. Whether it was.
    ///
    /// # Errors
    /// A write failure.
    pub fn claim_run(&self, id: i64, owner: &str) -> Result<bool, JournalError> {
        let owner = owner.to_string();
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let now = c.clock_s(skew)?;
            let changed = c.exec(
                "UPDATE runs SET owner = ?1, lease_until_unix_s = ?2
                 WHERE id = ?3 AND status = 'running' AND (owner = ?1 OR lease_until_unix_s <= ?4)",
                &vals![owner, now + RUN_LEASE_S, id, now],
            )?;
            Ok(changed == 1)
        })
    }
    /// Take, for `owner`, up to `limit` unfinished runs of other service
    /// instances whose lease ran out (their instance died), oldest first,
    /// each leased to `owner` from now, with its account as
    /// [`Journal::resumable_runs`] gives it. Instances asking at once share
    /// the runs out: on PostgreSQL the rows are locked `FOR UPDATE SKIP
    /// LOCKED`, so each goes to one instance and none waits for another's;
    /// on SQLite the write lock orders them.
    ///
    /// # Errors
    /// A write failure (then none was taken).
    pub fn claim_abandoned(
        &self,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<(RunRecord, Option<RunAccount>)>, JournalError> {
        let owner = owner.to_string();
        let skew = self.clock_skew_s;
        self.with(move |c| {
            let lock = match c.dialect() {
                Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
                Dialect::Sqlite => "",
            };
            let now = c.clock_s(skew)?;
            // One statement, not under the journal's write lock: the rows'
            // own locks share them out.
            let ids: Vec<i64> = {
                c.column(
                    &format!(
                        "UPDATE runs SET owner = ?1, lease_until_unix_s = ?2 WHERE id IN
                           (SELECT id FROM runs WHERE status = 'running' AND owner IS NOT NULL AND owner != ?1
                              AND lease_until_unix_s <= ?3 ORDER BY id LIMIT ?4 {lock})
                         RETURNING id"
                    ),
                    &vals![&owner, now + RUN_LEASE_S, now, i64::from(limit)],
                )?
            };
            Ok(resumable(c, &owner, skew)?.into_iter().filter(|(r, _)| ids.contains(&r.id)).collect())
        })
    }

    /// The files that unfinished runs read, whichever process or instance
    /// holds them (an upload in a folder instances share stays while one
    /// of them may still read it).
    ///
    /// # Errors
    /// A read failure.
    pub fn unfinished_videos(&self) -> Result<Vec<std::path::PathBuf>, JournalError> {
        self.with(|c| {
            let requests: Vec<String> = c.column("SELECT request FROM runs WHERE status = 'running'", &[])?;
            Ok(requests
                .iter()
                .filter_map(|r| stored_request(r).ok())
                .filter_map(|r| match r.source {
                    crate::schema::VideoSource::Path { path } => Some(path),
                    _ => None,
                })
                .collect())
        })
    }

    /// The run `id` of a service instance (a command line run is none) as
    /// any instance sees it: its request, when it started, its status
    /// (`running`, or how it ended) and its kept outcome, if any.
    ///
    /// # Errors
    /// A read failure.
    pub fn run_view(&self, id: i64) -> Result<Option<RunView>, JournalError> {
        self.with(move |c| {
            let rows = c.rows(&format!("SELECT {VIEW} FROM runs WHERE id = ?1 AND owner IS NOT NULL"), &vals![id])?;
            Ok(rows.first().map(view_of).transpose()?.flatten())
        })
    }

    /// Every run of any service instance not over, and those that ended
    /// since `since_unix_s` with their outcome kept, newest first: what
    /// any instance of a shared database lists.
    ///
    /// # Errors
    /// A read failure; a run whose request no longer parses is skipped.
    pub fn service_runs(&self, since_unix_s: i64) -> Result<Vec<RunView>, JournalError> {
        self.with(move |c| {
            let rows = c.rows(
                &format!(
                    "SELECT {VIEW} FROM runs WHERE owner IS NOT NULL
                     AND (status = 'running' OR (outcome IS NOT NULL AND finished_unix_s >= ?1)) ORDER BY id DESC"
                ),
                &vals![since_unix_s],
            )?;
            Ok(rows.iter().map(view_of).collect::<DbResult<Vec<_>>>()?.into_iter().flatten().collect())
        })
    }
}

/// The columns [`view_of`] reads.
const VIEW: &str = "id, request, started_unix_s, status, account, outcome, lease_until_unix_s";

/// A run as [`VIEW`] selects it; none when its request no longer parses.
fn view_of(row: &Row) -> DbResult<Option<RunView>> {
    let Ok(request) = stored_request(&row.get::<String>(1)?) else { return Ok(None) };
    let outcome: Option<String> = row.get(5)?;
    Ok(Some(RunView {
        id: row.get(0)?,
        request,
        started_unix_s: row.get(2)?,
        status: row.get(3)?,
        account: row.get(4)?,
        outcome: outcome.and_then(|o| serde_json::from_str(&o).ok()),
        lease_until_unix_s: row.get(6)?,
    }))
}

fn resumable(c: &mut dyn Sql, owner: &str, skew: i64) -> DbResult<Vec<(RunRecord, Option<RunAccount>)>> {
    let now = c.clock_s(skew)?;
    let rows = c.rows(
        "SELECT r.id, r.request, r.started_unix_s, r.video_hash, r.lease_until_unix_s, r.account, k.max_usd_per_day,
                k.id IS NULL OR k.revoked_unix_s IS NOT NULL
         FROM runs r LEFT JOIN api_keys k ON k.id = r.account
         WHERE r.status = 'running' AND r.owner IS NOT NULL AND (r.owner = ?1 OR r.lease_until_unix_s <= ?2)
         ORDER BY r.id",
        &vals![owner, now],
    )?;
    let mut out = Vec::new();
    for row in &rows {
        let Some(record) = run_record(row)? else { continue };
        let account = match row.get::<Option<String>>(5)? {
            Some(id) => Some(RunAccount { id, max_usd_per_day: row.get(6)?, revoked: row.get(7)? }),
            None => None,
        };
        out.push((record, account));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::testing::on_both;

    fn request() -> VideoRequest {
        VideoRequest::new("/v.mp4", crate::schema::Task::Describe)
    }

    on_both! { fn an_outcome_is_kept_and_listed_with_its_account(place) {
        let j = place.open();
        let id = j.start_run(&request()).unwrap();
        j.set_run_owner(id, Some("key1"), "me").unwrap();
        assert!(j.recent_runs(0).unwrap().is_empty(), "an unfinished run is not listed as finished");
        let outcome = serde_json::json!({"status": "failed", "error": "x", "http_status": 502});
        j.record_outcome(id, "failed", &outcome).unwrap();
        let runs = j.recent_runs(0).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].id, runs[0].account.as_deref(), &runs[0].outcome), (id, Some("key1"), &outcome));
        assert!(j.recent_runs(now_s() + 10).unwrap().is_empty(), "older runs are left out");
    }}

    on_both! { fn a_resumable_run_comes_with_its_keys_daily_cap(place) {
        let j = place.open();
        let new = crate::journal::NewKey { name: "k".into(), max_usd_per_day: Some(2.5), ..Default::default() };
        let key = j.create_key(&new).unwrap().record;
        let paid = j.start_run(&request()).unwrap();
        j.set_run_owner(paid, Some(&key.id), "me").unwrap();
        let gone = j.start_run(&request()).unwrap();
        j.set_run_owner(gone, Some("no-such-key"), "me").unwrap();
        let free = j.start_run(&request()).unwrap();
        j.set_run_owner(free, None, "me").unwrap();
        let revoked = j.create_key(&crate::journal::NewKey { name: "r".into(), ..Default::default() }).unwrap().record;
        let stopped = j.start_run(&request()).unwrap();
        j.set_run_owner(stopped, Some(&revoked.id), "me").unwrap();
        j.revoke_key("r").unwrap();
        let accounts: Vec<Option<RunAccount>> = j.resumable_runs("me").unwrap().into_iter().map(|(_, a)| a).collect();
        let account = |id: &str, cap, revoked| Some(RunAccount { id: id.into(), max_usd_per_day: cap, revoked });
        assert_eq!(
            accounts,
            vec![
                account(&key.id, Some(2.5), false),
                account("no-such-key", None, true),
                None,
                account(&revoked.id, None, true)
            ]
        );
    }}

    on_both! { fn old_outcomes_are_forgotten_and_unfinished_runs_kept(place) {
        let j = place.open();
        let done = j.start_run(&request()).unwrap();
        j.record_outcome(done, "done", &serde_json::json!({"status": "done"})).unwrap();
        let running = j.start_run(&request()).unwrap();
        assert_eq!(j.forget_outcomes(now_s() - 10).unwrap(), Vec::<i64>::new(), "nothing is old yet");
        assert_eq!(j.forget_outcomes(now_s() + 10).unwrap(), vec![done]);
        assert!(j.recent_runs(0).unwrap().is_empty());
        assert!(j.forget_outcomes(now_s() + 10).unwrap().is_empty(), "forgotten once");
        let ids: Vec<i64> = j.sql(|c| c.column("SELECT id FROM runs WHERE status = 'running'", &[])).unwrap();
        assert_eq!(ids, vec![running]);
    }}

    on_both! { fn an_instance_resumes_its_own_runs_at_once_and_never_a_live_one_of_another(place) {
        let j = place.open();
        let mine = j.start_run(&request()).unwrap();
        j.set_run_owner(mine, None, "me").unwrap();
        let theirs = j.start_run(&request()).unwrap();
        j.set_run_owner(theirs, None, "other").unwrap();
        let ids: Vec<i64> = j.resumable_runs("me").unwrap().into_iter().map(|(r, _)| r.id).collect();
        assert_eq!(ids, vec![mine]);
        assert!(!j.claim_run(theirs, "me").unwrap(), "a live run of another instance is never taken");
        assert!(j.claim_run(mine, "me").unwrap());
        j.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1", &vals![theirs])).unwrap();
        assert!(j.claim_run(theirs, "me").unwrap(), "a run whose lease ran out is taken");
        let cli = j.start_run(&request()).unwrap();
        j.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1", &vals![cli])).unwrap();
        let ids: Vec<i64> = j.resumable_runs("me").unwrap().into_iter().map(|(r, _)| r.id).collect();
        assert!(!ids.contains(&cli), "a command line run is left to `vidgate resume`: {ids:?}");
    }}

    /// Leases on PostgreSQL are read on the server's clock: an instance
    /// whose own clock runs two minutes ahead sees another's run as live,
    /// and takes it only once its lease has run out on the server. (On
    /// SQLite, one machine, the process's clock is the only one.)
    #[test]
    fn an_instance_whose_clock_runs_ahead_takes_no_live_run_on_postgres() {
        let Some(place) = crate::journal::testing::Place::new(crate::journal::testing::Kind::Postgres) else { return };
        let (other, ahead) = (place.open(), place.open().with_clock_ahead(120));
        let live = other.start_run(&request()).unwrap();
        other.set_run_owner(live, None, "other").unwrap();
        assert!(ahead.claim_abandoned("ahead", 10).unwrap().is_empty(), "a live run was taken");
        assert!(!ahead.claim_run(live, "ahead").unwrap(), "a live run was taken");
        assert!(ahead.resumable_runs("ahead").unwrap().is_empty());
        // Its lease renewed by the clock that runs ahead still ends on the server's.
        assert!(!ahead.renew_lease_of(live, "ahead").unwrap(), "not its run");
        other.sql(move |c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE id = ?1", &vals![live])).unwrap();
        let taken: Vec<i64> = ahead.claim_abandoned("ahead", 10).unwrap().into_iter().map(|(r, _)| r.id).collect();
        assert_eq!(taken, vec![live], "once run out on the server, it is taken");
    }

    on_both! { fn abandoned_runs_are_shared_out_among_instances_each_to_one(place) {
        let dead = place.open();
        let ids: Vec<i64> = (0..12)
            .map(|_| {
                let id = dead.start_run(&request()).unwrap();
                dead.set_run_owner(id, None, "dead").unwrap();
                id
            })
            .collect();
        let live = dead.start_run(&request()).unwrap();
        dead.set_run_owner(live, None, "alive").unwrap();
        assert!(place.open().claim_abandoned("b", 100).unwrap().is_empty(), "leases still held");
        dead.sql(|c| c.exec("UPDATE runs SET lease_until_unix_s = 0 WHERE owner = 'dead'", &[])).unwrap();
        let handles: Vec<Journal> = (0..3).map(|_| place.open()).collect();
        let taken: Vec<Vec<i64>> = std::thread::scope(|s| {
            let threads: Vec<_> = handles
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        loop {
                            let got = j.claim_abandoned(&format!("instance{i}"), 2).unwrap();
                            if got.is_empty() {
                                return mine;
                            }
                            assert!(got.len() <= 2);
                            mine.extend(got.into_iter().map(|(r, _)| r.id));
                        }
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut all: Vec<i64> = taken.concat();
        all.sort_unstable();
        assert_eq!(all, ids, "each abandoned run to exactly one instance: {taken:?}");
        assert!(!all.contains(&live));
        let view = dead.run_view(ids[0]).unwrap().unwrap();
        assert_eq!((view.status.as_str(), view.request), ("running", request()));
        assert!(view.lease_until_unix_s > now_s(), "leased to its new instance");
        let (first, holder) = (ids[0], taken.iter().position(|t| t.contains(&ids[0])).unwrap());
        assert!(dead.renew_lease_of(first, &format!("instance{holder}")).unwrap(), "its holder renews it");
        assert!(!dead.renew_lease_of(first, "dead").unwrap(), "the old owner learns it lost the run");
        assert_eq!(dead.run_view(9999).unwrap(), None);
    }}
}
