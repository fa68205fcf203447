//! What the journal adds to each provider call, on SQLite and on PostgreSQL
//! side by side: the call's money held (`hold`, one transaction under the
//! journal's write lock), its unit looked up (`get`) and written (`put`,
//! committed), its spend queued and its reservation let go (not waited
//! for). Timed per call, from 1 task and from 8 at once, SQLite and
//! PostgreSQL in turns so that both meet the same load on the machine.
//! Prints p50, p99 and max per backend, and PostgreSQL's p99 less SQLite's
//! (the goal of issue 15: under 2 ms).
//!
//! PostgreSQL: `VIDGATE_BENCH_PG_URL` (a server that may be written to: a
//! database `vidgate_bench_ledger` is made there anew), else a server of
//! its own (`scripts/with-postgres.sh --print`, Debian's PostgreSQL, fsync
//! on), stopped at the end.
//!
//! `cargo bench --no-default-features --bench ledger [-- --calls N]`

#[path = "support/pg_server.rs"]
mod pg_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vidgate::journal::{Journal, UnitRecord};
use vidgate::policy::SharedLedger;
use vidgate::schema::{Observation, TimeRange, Usage};

fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(2000, |n| n.parse().expect("--calls takes a number"));
    println!("load average at the start: {}", load_average());
    let server = pg_server::PgServer::start();
    let url = server.database("vidgate_bench_ledger");
    let dir = tempfile::tempdir().unwrap();
    let journals: [(&str, Arc<Journal>); 2] = [
        ("sqlite", Arc::new(Journal::open(&dir.path().join("bench.sqlite3")).unwrap())),
        ("postgres", Arc::new(Journal::connect(&url, None, 4).unwrap())),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for tasks in [1, 8] {
        println!("\n{calls} calls from {tasks} task(s) at once, ms per call:");
        let mut p99 = Vec::new();
        // Warm up, then the two in turns, four rounds each.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
        for round in 0..5 {
            for (i, (_, journal)) in journals.iter().enumerate() {
                let t =
                    rt.block_on(timed_calls(journal.clone(), calls / 4, tasks, tasks * 10_000_000 + round * 1_000_000));
                if round > 0 {
                    times[i].extend(t);
                }
            }
        }
        for ((name, _), mut t) in journals.iter().zip(times) {
            t.sort_unstable();
            let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
            println!(
                "  {name:<9} p50 {:>6.3}  p99 {:>6.3}  max {:>7.3}  ({} calls)",
                at(0.5),
                at(0.99),
                at(1.0),
                t.len()
            );
            p99.push(at(0.99));
        }
        println!("  PostgreSQL's p99 less SQLite's: {:+.3} ms (goal: < 2 ms)", p99[1] - p99[0]);
    }
    println!("\nload average at the end: {}", load_average());
}

/// `n` calls' journal work, from `tasks` tasks at once; each call's time.
async fn timed_calls(journal: Arc<Journal>, n: usize, tasks: usize, base: usize) -> Vec<Duration> {
    let per_task = n.div_ceil(tasks);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let key = format!("bench-{}", base + t * per_task + i);
                    let started = Instant::now();
                    one_call(&journal, key).await;
                    times.push(started.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

/// What the journal does around one provider call.
async fn one_call(journal: &Arc<Journal>, key: String) {
    let held = journal.hold(0.001, 1_000_000.0).await.expect("money held");
    let j = journal.clone();
    let k = key.clone();
    let found = tokio::task::spawn_blocking(move || j.get(&k)).await.unwrap().unwrap();
    assert!(found.is_none());
    let record = UnitRecord {
        provider: "p".into(),
        model: "m".into(),
        observations: vec![Observation {
            range: TimeRange { start_ms: 0, end_ms: 1000 },
            text: "a person walks a dog along a beach at sunset".into(),
            provider: "p".into(),
            model: Some("m".into()),
        }],
        usage: Usage { input_tokens: 1000, output_tokens: 50, cost_usd: 0.0011 },
    };
    let j = journal.clone();
    tokio::task::spawn_blocking(move || j.put(&key, "video", "v@1", &record)).await.unwrap().unwrap();
    journal.queue_spend("p", 0.0011);
    journal.let_go(held, 0.0);
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
}
