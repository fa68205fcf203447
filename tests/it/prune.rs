//! The journal's retention: a journal of 10,000 units shrinks on disk when
//! pruned; a pruned request pays again while a recent one does not; an
//! unfinished run (here one given as bytes) keeps its units and resumes
//! from its kept copy; `vidgate journal stats|prune`; `serve` prunes and
//! shows it in its metrics.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use vidgate::gateway::Gateway;
use vidgate::journal::{unit_key, Journal, UnitRecord};
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{Job, JobInput, Provider};
use vidgate::schema::{Observation, SamplingMode, SamplingPlan, Task, TimeRange, Usage, VideoRequest, VideoSource};

use crate::gateway::{config, scripted};
use crate::util::*;

const DAY: i64 = 86_400;

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Make every unit (of `video`, when named) in the journal at `path` look `days` old.
fn age_units(path: &Path, video: Option<&str>, days: i64) {
    let db = rusqlite::Connection::open(path).unwrap();
    let at = now_s() - days * DAY;
    match video {
        Some(v) => db.execute("UPDATE units SET created_unix_s = ?1 WHERE video = ?2", rusqlite::params![at, v]),
        None => db.execute("UPDATE units SET created_unix_s = ?1", rusqlite::params![at]),
    }
    .unwrap();
}

/// A unit as a frame batch of a real run leaves it: a few observations of a sentence each.
fn record(n: usize) -> UnitRecord {
    let observations = (0..3)
        .map(|i| Observation {
            range: TimeRange { start_ms: (n * 3 + i) as u64 * 1000, end_ms: (n * 3 + i + 1) as u64 * 1000 },
            text: format!("Frame {n}.{i}: a test pattern of coloured bars with a moving square and a counter."),
            provider: "fake".into(),
            model: Some("fake-vision".into()),
        })
        .collect();
    UnitRecord {
        provider: "fake".into(),
        model: "fake-vision".into(),
        observations,
        usage: Usage { input_tokens: 300, output_tokens: 60, cost_usd: 0.0003 },
    }
}

fn fill(j: &Journal, video: &str, units: usize) {
    for n in 0..units {
        let job = Job {
            task: Task::Describe,
            input: JobInput::Text(format!("batch {n}")),
            prompt: "describe".into(),
            prompt_version: "frame@1".into(),
            max_output_tokens: 256,
            span: None,
        };
        j.put(&unit_key(video, "fake", "fake-vision", "", &job), video, "frame@1", &record(n)).unwrap();
    }
}

/// The journal file's size, with its write-ahead log folded in first.
fn file_bytes(path: &Path) -> u64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(db);
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn a_journal_of_ten_thousand_units_shrinks_on_disk_when_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let j = Journal::open(&path).unwrap();
    let started = Instant::now();
    fill(&j, "old-video", 10_000);
    fill(&j, "recent-video", 100);
    let filled_in = started.elapsed();
    age_units(&path, Some("old-video"), 40);
    let before = file_bytes(&path);
    let pruned = j.prune(Duration::from_secs(30 * DAY as u64)).unwrap();
    let after = file_bytes(&path);
    eprintln!(
        "10,000 units (+100 recent) filled in {filled_in:?}: {before} bytes on disk; pruned ({}): {after} bytes",
        pruned.vacuum
    );
    assert_eq!(pruned.rows["units"], 10_000);
    assert_eq!(pruned.vacuum, "incremental", "a new journal gives pages back incrementally");
    assert_eq!(j.stats().unwrap().rows["units"], 100);
    assert!(after * 10 < before, "{before} bytes before, {after} after");
    assert!(pruned.bytes_after < pruned.bytes_before, "{pruned:?}");
}

/// Ten frames of testsrc_10s, one a second, one a call.
fn request(video: &Path) -> VideoRequest {
    let mut r = VideoRequest::new(video, Task::Describe);
    r.sampling = SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 160 };
    r
}

fn gateway(path: &Path, provider: &Arc<ScriptedProvider>) -> Gateway {
    Gateway::with_journal(config(&["a"]), Journal::open(path).unwrap()).with_provider("a", provider.clone())
}

#[test]
fn a_rerun_of_a_pruned_request_pays_again_and_a_recent_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let old_clip = testsrc_10s();
    let new_clip =
        x264_clip("prune-recent-4s.mp4", "testsrc2=duration=4:size=160x120:rate=5", &["-pix_fmt", "yuv420p"]);
    let a = Arc::new(scripted("a"));
    let g = gateway(&path, &a);
    let first = block_on(g.run(request(&old_clip))).unwrap();
    let recent = block_on(g.run(request(&new_clip))).unwrap();
    assert_eq!((first.reused_units, recent.reused_units), (0, 0));
    let old_hash = block_on(vidgate::models::hash_file(&old_clip)).unwrap();
    age_units(&path, Some(&old_hash), 40);
    let pruned = g.journal().prune(Duration::from_secs(30 * DAY as u64)).unwrap();
    assert_eq!(pruned.rows["units"], 11, "ten frames and the story of the old run: {pruned:?}");

    let calls = a.calls();
    let again = block_on(g.run(request(&old_clip))).unwrap();
    assert_eq!(again.reused_units, 0, "its units were pruned");
    assert_eq!(a.calls() - calls, 11, "ten frames and the story, paid again");
    assert!(again.usage.cost_usd > 0.0);
    let calls = a.calls();
    let recent_again = block_on(g.run(request(&new_clip))).unwrap();
    assert_eq!(a.calls(), calls, "the recent run's units were kept: nothing paid");
    assert!(recent_again.reused_units > 0 && recent_again.usage.cost_usd == 0.0, "{recent_again:?}");
}

/// A run given as bytes stops at its fifth frame as if its process died;
/// its units, made old, survive a prune; a resume reads its video from the
/// kept copy (the row never held the bytes) and pays only for the rest.
#[test]
fn an_unfinished_run_keeps_its_units_through_a_prune_and_resumes_from_its_kept_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let clip = testsrc_10s();
    let data = std::fs::read(&clip).unwrap();
    let hash = block_on(vidgate::models::hash_file(&clip)).unwrap();
    let mut req = request(Path::new("unused"));
    req.source = VideoSource::Bytes { data: data.clone(), format: Some("mp4".into()) };

    let answer = Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: 0.001 },
    };
    let hang = Step::Delay(Duration::from_secs(3600), Box::new(answer.clone()));
    let a = Arc::new(scripted("a").with_steps((0..4).map(|_| answer.clone())).with_fallback(hang));
    let g = gateway(&path, &a);
    let work = runtime().spawn(async move { g.run(req).await });
    let deadline = Instant::now() + Duration::from_secs(120);
    // Other processes open the journal under other spellings of its path.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let watcher = Journal::open(&dir.path().join("link/journal.sqlite3")).unwrap();
    while a.calls() < 5 || watcher.units_for_video(&hash).unwrap() < 4 {
        assert!(Instant::now() < deadline, "the run reached its fifth frame");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process dies: the run stays unfinished, and its lease runs out.
    work.abort();
    let _ = block_on(work);
    expire_run_leases(&path);
    let db = rusqlite::Connection::open(&path).unwrap();
    let longest: i64 = db.query_row("SELECT MAX(length(request)) FROM runs", [], |r| r.get(0)).unwrap();
    assert!(longest < 2000, "no video bytes in the runs table ({} bytes of video): {longest}", data.len());

    age_units(&path, None, 400);
    let pruned = watcher.prune(Duration::from_secs(30 * DAY as u64)).unwrap();
    assert_eq!((pruned.rows["units"], pruned.units_kept_for_unfinished_runs), (0, 4), "{pruned:?}");
    assert_eq!(watcher.units_for_video(&hash).unwrap(), 4);

    let b = Arc::new(scripted("a"));
    let g = gateway(&dir.path().join("sub/../journal.sqlite3"), &b);
    let report = block_on(g.resume(None)).unwrap();
    assert_eq!(report.observations.len(), 10);
    assert_eq!(report.reused_units, 4, "the four frames paid before the prune");
    let frames = b.jobs().iter().filter(|j| matches!(j.input, JobInput::Frames(_))).count();
    assert_eq!(frames, 6, "only the rest is paid");
    let kept = dir.path().join("journal.sqlite3.videos");
    let left: Vec<_> = std::fs::read_dir(&kept).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "the kept copy goes once no run may resume: {left:?}");
}

fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    vidgate().arg("--config").arg(config).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn journal_stats_and_prune_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    {
        let j = Journal::open(&path).unwrap();
        fill(&j, "old", 50);
        fill(&j, "new", 5);
        j.record_spend("fake", 0.125).unwrap();
    }
    age_units(&path, Some("old"), 10);
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, format!("[journal]\npath = {path:?}\n")).unwrap();
    let keeping = dir.path().join("keeping.toml");
    std::fs::write(&keeping, format!("[journal]\npath = {path:?}\nkeep_days = 7\n")).unwrap();

    let out = cli(&plain, &["journal", "stats", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rows"]["units"], 55, "{stats}");
    assert_eq!(stats["rows"]["spend"], 1, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["spent_today_usd"], 0.125, "{stats}");
    assert!((stats["oldest_unix_s"].as_i64().unwrap() - (now_s() - 10 * DAY)).abs() < 60, "{stats}");
    let out = cli(&plain, &["journal", "stats"]);
    let shown = text(&out.stdout);
    assert!(out.status.success() && shown.contains("units        55 rows"), "{shown}");
    assert!(shown.contains("spent today  $0.1250") && shown.contains("oldest entry"), "{shown}");

    // Neither a flag nor journal.keep_days: refused, nothing pruned.
    let out = cli(&plain, &["journal", "prune"]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("--older-than") && text(&out.stderr).contains("keep_days"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&plain, &["journal", "prune", "--older-than", "-1"]);
    assert!(!out.status.success() && text(&out.stderr).contains("0..=36500"), "{}", text(&out.stderr));
    // A flag older than everything: nothing goes.
    let out = cli(&plain, &["journal", "prune", "--older-than", "30", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pruned: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pruned["rows"]["units"], 0, "{pruned}");
    // journal.keep_days = 7: the ten-day-old units go, today's spend stays.
    let out = cli(&keeping, &["journal", "prune"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shown.contains("50 units") && shown.contains("vacuum       incremental"), "{shown}");
    let stats: Value = serde_json::from_slice(&cli(&plain, &["journal", "stats", "--json"]).stdout).unwrap();
    assert_eq!((stats["rows"]["units"].clone(), stats["rows"]["spend"].clone()), (5.into(), 1.into()), "{stats}");

    // No journal at the path: said, and none is made.
    let missing = dir.path().join("missing.toml");
    std::fs::write(&missing, format!("[journal]\npath = {:?}\n", dir.path().join("none.sqlite3"))).unwrap();
    let out = cli(&missing, &["journal", "stats"]);
    assert!(!out.status.success() && text(&out.stderr).contains("no journal at"), "{}", text(&out.stderr));
    assert!(!dir.path().join("none.sqlite3").exists());
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn serve_prunes_at_start_with_keep_days_and_counts_it_in_its_metrics() {
    use crate::serve::{client_with, Server};
    let mut c = crate::serve::config("fake");
    c.journal.keep_days = Some(30);
    let fake = Arc::new(scripted("fake"));
    let server = Server::start(c, vec![("fake", fake as Arc<dyn Provider>)]);
    fill(server.app.gateway().journal(), "old", 20);
    fill(server.app.gateway().journal(), "new", 3);
    age_units(&server.journal_path(), Some("old"), 31);
    let pruning = {
        let _in = runtime().enter();
        vidgate::serve::native::retention::spawn_pruning(server.app.clone())
    };
    let scrape = || {
        block_on(async { client_with(&server.admin_key).get(server.url("/metrics")).send().await?.text().await })
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = scrape();
    while metric(&shown, r#"vidgate_journal_pruned_rows_total{table="units"}"#) != Some(20.0) {
        assert!(Instant::now() < deadline, "pruned at start: {shown}");
        std::thread::sleep(Duration::from_millis(50));
        shown = scrape();
    }
    pruning.abort();
    assert_eq!(metric(&shown, r#"vidgate_journal_pruned_rows_total{table="runs"}"#), Some(0.0), "{shown}");
    let bytes = metric(&shown, "vidgate_journal_bytes").unwrap();
    assert!(bytes > 0.0, "{shown}");
    assert_eq!(server.app.gateway().journal().stats().unwrap().rows["units"], 3);

    // Without keep_days, nothing is pruned.
    let (plain, _) = crate::serve::with_fake();
    assert_eq!(block_on(vidgate::serve::native::retention::prune_journal(&plain.app)).unwrap(), None);
    // A reload that sets keep_days: the next scheduled prune prunes.
    let mut with_days = plain.app.gateway().config().clone();
    with_days.journal.keep_days = Some(30);
    plain.app.reload(with_days).unwrap();
    assert!(block_on(vidgate::serve::native::retention::prune_journal(&plain.app)).unwrap().is_some());
}
