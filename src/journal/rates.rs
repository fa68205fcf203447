//! Rate limits shared by every process of one journal: a GCRA (generic
//! cell rate algorithm) row per limit, keyed by the provider and what it
//! counts (`name@model/requests`, `.../tokens`, `.../day`).
//!
//! A row holds the limit's theoretical arrival time (TAT), in nanoseconds
//! since the Unix epoch. Taking `n` cells of a limit that emits one cell
//! every `T` with a burst of `b` moves the TAT to `max(TAT, now) + n·T`,
//! allowed when that is at most `now + b·T`; else nothing changes and the
//! caller waits the difference.
//!
//! On PostgreSQL the check and the move are one statement (an upsert whose
//! update has a `WHERE` on the TAT), so instances taking from one row at
//! once line up on its row lock and never both take the last cell; `now`
//! is the server's clock (`clock_timestamp()`), never an instance's, so
//! instances whose clocks disagree still share one limit. The statement
//! takes no other lock: not the journal's write lock, which money and runs
//! queue on. Its transaction commits without waiting for the server's disk
//! (`synchronous_commit = off`): a take is no money, and a server that
//! crashes forgets at most its last fraction of a second of takes, which
//! are then taken again; the row still reaches any replica. On SQLite (processes of one machine) it is a write
//! transaction on the process's clock; the gateway keeps its in-process
//! limiter there (see docs/journal.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::db::{vals, DbError, DbResult, Dialect, Sql, SqlExt};
use super::{Journal, JournalError};

/// One take of PostgreSQL, in one statement: `?1` the key, `?2` the cells'
/// time (`n·T`, ns), `?3` the burst's (`b·T`, ns). A row when the cells
/// were taken, none when not. The server's clock is read once the row is
/// locked, so a take that queued behind others reads the time it runs at.
/// `synchronous_commit` is turned off for this statement's transaction
/// alone (`set_config(.., true)`): one round trip, and no wait for the disk.
const TAKE_PG: &str = concat!(
    "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
    INSERT INTO rate_limits (key, tat_ns) SELECT ?1, ",
    now_ns_pg!(),
    " + CAST(?2 AS BIGINT) FROM quick
    ON CONFLICT (key) DO UPDATE SET tat_ns = GREATEST(rate_limits.tat_ns, ",
    now_ns_pg!(),
    ") + CAST(?2 AS BIGINT)
    WHERE GREATEST(rate_limits.tat_ns - ",
    now_ns_pg!(),
    ", 0) + CAST(?2 AS BIGINT) <= CAST(?3 AS BIGINT)
    RETURNING tat_ns"
);

/// The server's time, in nanoseconds since the Unix epoch (its clock
/// counts microseconds).
macro_rules! now_ns_pg {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)"
    };
}
use now_ns_pg;

/// The row's TAT and the server's time, read after a take was refused: the
/// take's own snapshot may predate the TAT that refused it.
const TAT_PG: &str = concat!("SELECT tat_ns, ", now_ns_pg!(), " FROM rate_limits WHERE key = ?1");

/// The shortest wait answered: cells may have come back between a refused
/// take and the read of the TAT that refused it.
const SHORTEST_WAIT: Duration = Duration::from_millis(1);

impl Journal {
    /// Take `cells` from the shared limit `key`, which emits one cell every
    /// `emission` and holds at most `burst`: [`Duration::ZERO`] when taken,
    /// else how long to wait before asking again (nothing was taken).
    ///
    /// # Errors
    /// More cells than the burst (they could never be taken), a limit too
    /// long to count in nanoseconds, a database failure.
    pub async fn take_rate(
        &self,
        key: &str,
        cells: u32,
        emission: Duration,
        burst: u32,
    ) -> Result<Duration, JournalError> {
        if cells == 0 || emission.is_zero() {
            return Ok(Duration::ZERO);
        }
        if cells > burst {
            return Err(self.error(format!(
                "rate limit {key}: {cells} at once is over its burst of {burst}, and could never be taken"
            )));
        }
        let span = |n: u32| i64::try_from(emission.as_nanos().saturating_mul(u128::from(n))).ok();
        let (Some(needed), Some(burst_ns)) = (span(cells), span(burst)) else {
            return Err(self.error(format!("rate limit {key}: {burst} cells of {emission:?} is too long to count")));
        };
        let key = key.to_string();
        let wait_ns = self.with_async(move |c| take(c, &key, needed, burst_ns)).await?;
        Ok(Duration::from_nanos(wait_ns))
    }
}

/// The journal as the rate limits every instance shares (on PostgreSQL;
/// the gateway keeps SQLite's in the process).
#[async_trait::async_trait]
impl crate::policy::SharedRates for Journal {
    async fn take(&self, key: &str, cells: u32, emission: Duration, burst: u32) -> Result<Duration, String> {
        self.take_rate(key, cells, emission, burst).await.map_err(|e| e.to_string())
    }

    async fn hold(&self, key: &str, wait: Duration, emission: Duration, burst: u32) -> Result<(), String> {
        self.hold_rate(key, wait, emission, burst).await.map_err(|e| e.to_string())
    }
}

/// Hold a limit on PostgreSQL: `?1` the key, `?2` how far past the server's
/// now its TAT goes at least (ns).
const HOLD_PG: &str = concat!(
    "INSERT INTO rate_limits (key, tat_ns) VALUES (?1, ",
    now_ns_pg!(),
    " + CAST(?2 AS BIGINT))
    ON CONFLICT (key) DO UPDATE SET tat_ns = GREATEST(rate_limits.tat_ns, ",
    now_ns_pg!(),
    " + CAST(?2 AS BIGINT))"
);

impl Journal {
    /// Give out no cell of the shared limit `key` (one cell every
    /// `emission`, `burst` at most) for `wait` from now, then one per
    /// emission: its TAT moves to at least `now + wait + (burst - 1)·T`,
    /// where the first take is allowed `wait` from now. A TAT already past
    /// that stays.
    ///
    /// # Errors
    /// A limit too long to count in nanoseconds, a database failure.
    pub async fn hold_rate(
        &self,
        key: &str,
        wait: Duration,
        emission: Duration,
        burst: u32,
    ) -> Result<(), JournalError> {
        let ahead =
            wait.as_nanos().saturating_add(emission.as_nanos().saturating_mul(u128::from(burst.saturating_sub(1))));
        let Ok(ahead) = i64::try_from(ahead) else {
            return Err(self.error(format!("rate limit {key}: a hold of {wait:?} is too long to count")));
        };
        let key = key.to_string();
        self.with_async(move |c| match c.dialect() {
            Dialect::Postgres => c.exec(HOLD_PG, &vals![key, ahead]).map(drop),
            Dialect::Sqlite => c
                .exec(
                    "INSERT INTO rate_limits (key, tat_ns) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET tat_ns = MAX(tat_ns, excluded.tat_ns)",
                    &vals![key, now_ns().saturating_add(ahead)],
                )
                .map(drop),
        })
        .await
    }
}

/// The wait after a take (0: taken), in nanoseconds.
fn take(c: &mut super::db::Conn, key: &str, needed: i64, burst: i64) -> DbResult<u64> {
    let wait = |tat: i64, now: i64| tat.max(now).saturating_add(needed).saturating_sub(now).saturating_sub(burst);
    match c.dialect() {
        Dialect::Postgres => {
            if !c.rows(TAKE_PG, &vals![key, needed, burst])?.is_empty() {
                return Ok(0);
            }
            let rows = c.rows(TAT_PG, &vals![key])?;
            let row = rows.first().ok_or_else(|| DbError::new(format!("the rate limit {key} has no row")))?;
            let wait = wait(row.get(0)?, row.get(1)?).max(SHORTEST_WAIT.as_nanos() as i64);
            Ok(wait as u64)
        }
        Dialect::Sqlite => c.write(|tx| {
            let now = now_ns();
            let tat: Option<i64> = tx.one("SELECT tat_ns FROM rate_limits WHERE key = ?1", &vals![key])?;
            let wait = wait(tat.unwrap_or(now), now);
            if wait > 0 {
                return Ok(wait as u64);
            }
            tx.exec(
                "INSERT INTO rate_limits (key, tat_ns) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET tat_ns = excluded.tat_ns",
                &vals![key, tat.unwrap_or(now).max(now).saturating_add(needed)],
            )?;
            Ok(0)
        }),
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::journal::testing::on_both;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    on_both! {
        /// 20 a minute with a burst of 20, asked 40 times at once through two
        /// instances: exactly 20 are taken, and each refusal waits for the
        /// cell that comes back one emission (3 s) after the first take.
        fn two_instances_take_no_more_than_the_burst_between_them(place) {
            let handles = [Arc::new(place.open()), Arc::new(place.open())];
            let emission = Duration::from_secs(3);
            let (waits, elapsed) = runtime().block_on(async {
                let started = Instant::now();
                let tasks: Vec<_> = (0..40)
                    .map(|i| {
                        let journal = handles[i % 2].clone();
                        tokio::spawn(async move { journal.take_rate("p@m/requests", 1, emission, 20).await.unwrap() })
                    })
                    .collect();
                let mut waits = Vec::new();
                for t in tasks {
                    waits.push(t.await.unwrap());
                }
                (waits, started.elapsed())
            });
            assert_eq!(waits.iter().filter(|w| w.is_zero()).count(), 20, "{waits:?}");
            for wait in waits.iter().filter(|w| !w.is_zero()) {
                assert!(*wait <= emission, "{wait:?}");
                assert!(*wait + elapsed >= emission, "{wait:?} after {elapsed:?}: the burst is spent for 3 s");
            }
        }
    }

    on_both! {
        /// A refused take says how long to wait; after that wait the next
        /// cell is there, on either instance, and only one.
        fn the_wait_a_refusal_answers_is_enough(place) {
            let (a, b) = (place.open(), place.open());
            // Long enough that no hiccup of a loaded machine between the
            // last two takes brings back another cell.
            let emission = Duration::from_secs(2);
            async fn take(j: &Journal, emission: Duration) -> Duration {
                j.take_rate("p@m/requests", 1, emission, 2).await.unwrap()
            }
            runtime().block_on(async {
                assert_eq!(take(&a, emission).await, Duration::ZERO);
                assert_eq!(take(&b, emission).await, Duration::ZERO);
                let wait = take(&a, emission).await;
                assert!(wait > Duration::ZERO && wait <= emission, "{wait:?}");
                tokio::time::sleep(wait).await;
                assert_eq!(take(&b, emission).await, Duration::ZERO, "the cell is back after the wait");
                assert!(take(&a, emission).await > Duration::ZERO, "and was taken");
                // Another limit is another row.
                assert_eq!(a.take_rate("q@m/requests", 1, emission, 2).await.unwrap(), Duration::ZERO);
            });
        }
    }

    on_both! {
        /// Tokens are taken many cells at once: 6 of a burst of 10 leave 4,
        /// so 6 more wait for 2 cells, and more than the burst is an error.
        fn many_cells_at_once(place) {
            let j = place.open();
            let emission = Duration::from_secs(1);
            runtime().block_on(async {
                let started = Instant::now();
                assert_eq!(j.take_rate("p@m/tokens", 6, emission, 10).await.unwrap(), Duration::ZERO);
                let wait = j.take_rate("p@m/tokens", 6, emission, 10).await.unwrap();
                assert!(wait <= 2 * emission && wait + started.elapsed() >= 2 * emission, "{wait:?}");
                assert_eq!(j.take_rate("p@m/tokens", 4, emission, 10).await.unwrap(), Duration::ZERO);
                let err = j.take_rate("p@m/tokens", 11, emission, 10).await.unwrap_err();
                assert!(err.message.contains("11 at once is over its burst of 10"), "{err}");
                assert_eq!(j.take_rate("p@m/tokens", 0, emission, 10).await.unwrap(), Duration::ZERO);
            });
        }
    }

    /// The time of one take, p50 and p99 over 2,000 takes on one row by 1
    /// and by 4 threads, on each database (docs/journal.md quotes these):
    /// `scripts/with-postgres.sh cargo test --no-default-features --lib
    /// journal::rates::tests::take_round_trip -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: run it by name"]
    fn take_round_trip() {
        use crate::journal::testing::{Kind, Place};
        for kind in [Kind::Postgres, Kind::Sqlite] {
            let place = Place::new(kind).unwrap();
            let journal = Arc::new(place.open());
            for threads in [1, 4] {
                let started = Instant::now();
                let mut times: Vec<Duration> = runtime().block_on(async {
                    // Connections made before the clock starts.
                    journal.take_rate("warm", 1, Duration::from_nanos(1), 1_000_000).await.unwrap();
                    let tasks: Vec<_> = (0..threads)
                        .map(|_| {
                            let journal = journal.clone();
                            tokio::spawn(async move {
                                let mut times = Vec::new();
                                for _ in 0..2000 / threads {
                                    let start = Instant::now();
                                    let wait =
                                        journal.take_rate("p@m/requests", 1, Duration::from_nanos(1), 1_000_000).await;
                                    assert_eq!(wait.unwrap(), Duration::ZERO);
                                    times.push(start.elapsed());
                                }
                                times
                            })
                        })
                        .collect();
                    let mut all = Vec::new();
                    for t in tasks {
                        all.extend(t.await.unwrap());
                    }
                    all
                });
                let wall = started.elapsed();
                times.sort();
                let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
                println!(
                    "{kind:?}: {} takes on one row by {threads} threads: {:.0} a second, p50 {:?}, p99 {:?}, max {:?}",
                    times.len(),
                    times.len() as f64 / wall.as_secs_f64(),
                    at(0.50),
                    at(0.99),
                    times[times.len() - 1]
                );
            }
        }
    }
}
