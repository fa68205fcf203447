//! The journal across processes: a resumed run reads the file the run named,
//! refuses a changed one and never takes over a run that is alive; processes
//! starting together on a new journal all get it; a journal that cannot be
//! written says so rather than claiming to keep the work.

use std::process::{Child, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{Config, Protocol, ProviderProfile, RateLimits};
use vidgate::gateway::{Gateway, GatewayError};
use vidgate::journal::Journal;
use vidgate::provider::scripted::{ScriptedProvider, Step};
use vidgate::provider::{Capabilities, ErrorClass, ProviderError};
use vidgate::schema::{SamplingMode, SamplingPlan, Task, Usage, VideoRequest, VideoSource};

use crate::util::*;

const KEY: &str = "sk-vidgate-journal-test";

/// An OpenAI-compatible server that answers every frame, except that from
/// call `stall_at` on (while set) it tells the test and never answers.
#[derive(Clone)]
struct Stalling {
    calls: Arc<AtomicUsize>,
    stall_at: Arc<Mutex<Option<usize>>>,
    stalled: Arc<Mutex<mpsc::Sender<()>>>,
}

impl Respond for Stalling {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-j", "object": "chat.completion", "created": 1, "model": "fake-vision",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("A test pattern (call {n}).")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }));
        if self.stall_at.lock().unwrap().is_some_and(|at| n >= at) {
            let _ = self.stalled.lock().unwrap().send(());
            return answer.set_delay(Duration::from_secs(3600));
        }
        answer
    }
}

/// The fake, a config file naming it and a journal in `dir`, and the
/// channel that tells when the fake stalls.
fn setup(dir: &std::path::Path, stall_at: Option<usize>) -> (MockServer, Stalling, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let fake =
        Stalling { calls: Arc::default(), stall_at: Arc::new(Mutex::new(stall_at)), stalled: Arc::new(Mutex::new(tx)) };
    let server = runtime().block_on(async {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any()).respond_with(fake.clone()).mount(&server).await;
        server
    });
    let journal = dir.join("journal.sqlite3");
    std::fs::write(
        dir.join("vidgate.toml"),
        format!(
            "[journal]\npath = {journal:?}\n\n[sampling]\nfps = 1.0\nwidth = 160\n\n[budget]\nmax_usd_per_day = 5.0\n\n\
             [providers.fake]\nprotocol = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"VIDGATE_JOURNAL_KEY\"\nmodel = \"fake-vision\"\n\
             [providers.fake.limits]\nmax_concurrency = 1\n[providers.fake.price]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            server.uri()
        ),
    )
    .unwrap();
    (server, fake, rx)
}

fn cli(dir: &std::path::Path, cwd: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = vidgate();
    cmd.arg("--config").arg(dir.join("vidgate.toml")).args(args).current_dir(cwd).env("VIDGATE_JOURNAL_KEY", KEY);
    cmd
}

fn resume(dir: &std::path::Path, cwd: &std::path::Path) -> Output {
    cli(dir, cwd, &["resume", "--format", "json"]).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn resume_reads_the_file_the_run_named_refuses_a_changed_one_and_never_takes_over_a_live_run() {
    let dir = tempfile::tempdir().unwrap();
    let (here, there) = (dir.path().join("here"), dir.path().join("there"));
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&there).unwrap();
    // Two files called clip.mp4: ten seconds here, three there.
    std::fs::copy(testsrc_10s(), here.join("clip.mp4")).unwrap();
    let short = make_clip("journal-short-3s.mp4", &["-f", "lavfi", "-i", "color=c=red:size=160x120:rate=5:duration=3"]);
    std::fs::copy(&short, there.join("clip.mp4")).unwrap();
    let (_server, fake, stalled) = setup(dir.path(), Some(4));

    // A run in `here`, on the relative path, answered four frames and hangs on the fifth.
    let child = cli(dir.path(), &here, &["describe", "clip.mp4", "--provider", "fake", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    stalled.recv_timeout(Duration::from_secs(120)).expect("the run reached the fifth frame");

    // Alive, it holds its lease: not taken over.
    let live = resume(dir.path(), &there);
    assert!(!live.status.success() && stderr(&live).contains("still running"), "{}", stderr(&live));
    kill(child);
    // Dead, its lease runs out (here, at once).
    expire_run_leases(&dir.path().join("journal.sqlite3"));

    // The file changed since: refused, and the run stays resumable.
    let original = std::fs::read(here.join("clip.mp4")).unwrap();
    std::fs::copy(&short, here.join("clip.mp4")).unwrap();
    let refused = resume(dir.path(), &there);
    assert!(!refused.status.success(), "a changed file is refused");
    assert!(stderr(&refused).contains("changed since the run began"), "{}", stderr(&refused));
    std::fs::write(here.join("clip.mp4"), original).unwrap();

    // From the other directory, resume describes the file in `here`: ten
    // frames, four of them read back from the journal.
    *fake.stall_at.lock().unwrap() = None;
    let out = resume(dir.path(), &there);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["observations"].as_array().unwrap().len(), 10, "the ten-second clip, not the three-second one");
    assert_eq!(report["reused_units"], 4);
    let again = resume(dir.path(), &there);
    assert!(stderr(&again).contains("no unfinished run"), "resumed once: {}", stderr(&again));
}

#[test]
fn four_processes_starting_together_on_a_new_journal_all_get_it() {
    let clip = make_clip("journal-1s.mp4", &["-f", "lavfi", "-i", "color=c=blue:size=64x48:rate=5:duration=1"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, _fake, _stalled) = setup(dir.path(), None);
    let config = std::fs::read_to_string(dir.path().join("vidgate.toml")).unwrap();
    let mut failures = Vec::new();
    for round in 0..20 {
        // A new journal each round, which all four create at once.
        let journal = dir.path().join(format!("round-{round}/journal.sqlite3"));
        let round_dir = dir.path().join(format!("cfg-{round}"));
        std::fs::create_dir_all(&round_dir).unwrap();
        let text = config.replace(&format!("{:?}", dir.path().join("journal.sqlite3")), &format!("{journal:?}"));
        std::fs::write(round_dir.join("vidgate.toml"), text).unwrap();
        let children: Vec<Child> = (0..4)
            .map(|_| {
                cli(&round_dir, dir.path(), &["describe", clip.to_str().unwrap(), "--provider", "fake", "--json"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(format!("round {round}: {}", stderr(&out)));
            }
        }
    }
    assert!(failures.is_empty(), "{} of 80 runs failed: {failures:#?}", failures.len());
}

fn answer() -> Step {
    Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: 0.001 },
    }
}

#[test]
fn when_the_journal_cannot_be_written_the_run_says_what_was_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let journal = Journal::open(&path).unwrap();
    // The disk fills up after three units: every later write fails.
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TRIGGER disk_full BEFORE INSERT ON units WHEN (SELECT COUNT(*) FROM units) >= 3
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let mut config = Config::builtin().unwrap();
    config.providers.insert(
        "a".into(),
        ProviderProfile {
            protocol: Some(Protocol::Openai),
            limits: RateLimits { max_concurrency: Some(1), ..RateLimits::default() },
            ..ProviderProfile::default()
        },
    );
    config.router.chain = vec!["a".into()];
    config.budget.max_usd_per_request = 1.0;
    config.retry.max_wait_s = 1.0;
    // Six frames are answered, then the provider fails for good.
    let mut down = ProviderError::new("a", ErrorClass::FallBack, "HTTP 500: the model is overloaded");
    down.status = Some(500);
    let one_frame = Capabilities { max_images_per_call: 1, ..Capabilities::default() };
    let a = ScriptedProvider::new("a").with_capabilities(one_frame).with_steps((0..6).map(|_| answer()));
    let a = Arc::new(a.with_fallback(Step::Fail(down)));
    let g = Gateway::with_journal(config, journal).with_provider("a", a.clone());
    let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
    request.sampling = SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 160 };
    let err = block_on(g.run(request)).unwrap_err();
    let GatewayError::Failed { partial, .. } = err else { panic!("{err}") };
    assert_eq!(partial.observations.len(), 6);
    assert_eq!(partial.unsaved_units, 3, "three of the six answered units were not written");
    let note = g.kept_note(partial.unsaved_units);
    assert!(note.contains("3 finished units could not be written") && !note.contains("reuses them"), "{note}");
    assert!(partial.warnings.iter().any(|w| w.contains("could not be written")), "{:?}", partial.warnings);
    let video = block_on(vidgate::models::hash_file(&testsrc_10s())).unwrap();
    assert_eq!(g.journal().units_for_video(&video).unwrap(), 3, "what the journal holds");
}

/// A URL's signature is never stored, so a run from a presigned URL cannot be
/// fetched again by `resume`: it says so, instead of failing at the download.
#[test]
fn a_run_from_a_url_with_credentials_is_not_resumed_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite3");
    let mut request = VideoRequest::new("unused.mp4", Task::Describe);
    request.source = VideoSource::Url { url: "https://videos.example/v.mp4?X-Amz-Signature=SIGSECRET".into() };
    Journal::open(&path).unwrap().start_run(&request).unwrap();
    expire_run_leases(&path);
    let gateway = Gateway::with_journal(Config::builtin().unwrap(), Journal::open(&path).unwrap());
    let err = runtime().block_on(gateway.resume(None)).unwrap_err().to_string();
    assert!(err.contains("its URL carried credentials, which the journal does not keep"), "{err}");
    assert!(err.contains("X-Amz-Signature=***") && !err.contains("SIGSECRET"), "{err}");
}
