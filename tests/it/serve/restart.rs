//! Restarts lose nothing: a finished run's report is served after a restart,
//! and a run stopped mid-way is resumed under its own id by the next start,
//! paying no finished unit twice. Each "instance" is a service over the same
//! journal file and uploads dir, as a restarted process would be.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::progress::Progress;
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{JobInput, Provider};
use vidgate::schema::{Task, Usage, VideoRequest};
use vidgate::serve::runs::Submission;
use vidgate::serve::App;

use super::{config, scripted, UNIT_USD};
use crate::util::block_on;

/// A service instance on `dir` (its journal and uploads), with `fake` as its provider.
pub(super) fn instance(dir: &Path, fake: Arc<ScriptedProvider>) -> App {
    let mut config = config("fake");
    config.server.data_dir = Some(dir.join("uploads"));
    let journal = Journal::open(&dir.join("journal.sqlite3")).unwrap();
    App::new(Gateway::with_journal(config, journal).with_provider("fake", fake as Arc<dyn Provider>))
}

/// A provider that takes `delay` for each frame.
pub(super) fn slow(delay: Duration) -> Arc<ScriptedProvider> {
    let answer = Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: UNIT_USD },
    };
    Arc::new(scripted("fake").with_fallback(Step::Delay(delay, Box::new(answer))))
}

/// The frame times `fake` was called for, each as often as it was.
fn frames_called(fake: &ScriptedProvider) -> Vec<u64> {
    fake.jobs()
        .iter()
        .flat_map(|job| match &job.input {
            JobInput::Frames(frames) => frames.iter().map(|f| f.pts_ms).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// GET `path` from `app` served on a free port.
fn get(app: &App, path: &str) -> serde_json::Value {
    block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = vidgate::serve::router(app.clone());
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        let mut request = client.get(format!("{base}{path}"));
        let name = format!("restart-{}", vidgate::serve::uploads::new_id());
        // An admin key: it reads every run, whichever key started it.
        let new = vidgate::journal::NewKey { name, admin: true, ..Default::default() };
        let key = app.gateway().journal().create_key(&new).unwrap().key.expose().to_string();
        request = request.bearer_auth(key);
        let body = request.send().await.unwrap().json().await.unwrap();
        server.abort();
        body
    })
}

#[test]
fn a_run_finished_before_a_restart_is_still_served_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let first = instance(dir.path(), Arc::new(scripted("fake")));
    let request = VideoRequest::new(crate::util::testsrc_10s(), Task::Timeline);
    let run = block_on(first.runs.submit(Submission { request, account: None })).unwrap();
    assert_eq!(block_on(run.finished()).name(), "done");
    block_on(first.runs.drain(Duration::ZERO));

    let second = instance(dir.path(), Arc::new(scripted("fake")));
    assert_eq!(block_on(second.runs.restore()).unwrap(), 0, "nothing was left to resume");
    let body = get(&second, &format!("/v1/runs/{}", run.id));
    assert_eq!(body["status"], "done", "{body}");
    assert!(!body["report"]["events"].as_array().unwrap().is_empty(), "{body}");
}

#[test]
fn a_run_stopped_mid_way_is_resumed_under_its_id_and_no_frame_is_paid_twice() {
    let dir = tempfile::tempdir().unwrap();
    let before = slow(Duration::from_millis(200));
    let first = instance(dir.path(), before.clone());
    let request = VideoRequest::new(crate::util::testsrc_10s(), Task::Timeline);
    let run = block_on(first.runs.submit(Submission { request, account: None })).unwrap();
    block_on(async {
        while units(&run, false) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // The service stops with no grace: the run stays unfinished, not cancelled.
    block_on(first.runs.drain(Duration::ZERO));
    assert_eq!(run.state().name(), "running", "a stopped run is not marked over");

    let after = slow(Duration::ZERO);
    let second = instance(dir.path(), after.clone());
    assert_eq!(block_on(second.runs.restore()).unwrap(), 1, "its own run is resumed at once, lease or not");
    let resumed = second.runs.get(run.id).expect("the run keeps its id");
    assert_eq!(block_on(resumed.finished()).name(), "done");
    let body = get(&second, &format!("/v1/runs/{}", run.id));
    assert_eq!(body["status"], "done", "{body}");

    let finished_before = units(&run, false);
    let reused = units(&resumed, true);
    assert!(reused >= finished_before, "the {finished_before} units finished before were read back: {reused}");
    assert_eq!(after.calls(), units(&resumed, false), "one call a unit after the restart");
    let (paid_before, paid_after) = (frames_called(&before), frames_called(&after));
    assert!(!paid_after.is_empty(), "the rest of the run was done after the restart");
    // Every frame asked before was either read back from the journal or
    // asked again (its call was under way at the stop), never both.
    let twice = paid_after.iter().filter(|t| paid_before.contains(t)).count();
    assert_eq!(twice + reused, paid_before.len(), "before: {paid_before:?}, after: {paid_after:?}");
}

/// The units `run` finished so far, read back from the journal or not.
pub(super) fn units(run: &vidgate::serve::runs::Run, reused: bool) -> usize {
    let (history, _) = run.events();
    history.iter().filter(|e| matches!(e, Progress::Unit { reused: r, .. } if *r == reused)).count()
}

#[test]
fn sigterm_stops_the_binary_with_exit_0_and_its_journal_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = dir.path().join("vidgate.toml");
    std::fs::write(
        &file,
        format!(
            "[journal]\npath = {:?}\n[server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {:?}\nshutdown_grace_s = 5\n",
            dir.path().join("journal.sqlite3"),
            dir.path().join("uploads")
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let child = crate::util::vidgate()
            .arg("--config")
            .arg(&file)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let up = block_on(async {
            for _ in 0..600 {
                if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
                    return Some(r.status());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        });
        let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(term.success());
        let out = child.wait_with_output().unwrap();
        assert!(up.is_some(), "the service never answered: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}
