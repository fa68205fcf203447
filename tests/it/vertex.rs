//! Vertex AI's bearer tokens over a long run: a fake endpoint that accepts
//! only the newest token a `token_command` minted, for a second or two, and
//! refuses a revoked one with HTTP 401.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{AuthScheme, Config, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::policy::{self, AttemptLog, Budget};
use vidgate::provider::ProviderError;
use vidgate::schema::{Outcome, SamplingMode, SamplingPlan, Task, VideoRequest};

use crate::gemini::{backend, profile, recorded, run_with, video_job};
use crate::openai::completion;
use crate::util::*;

#[derive(Default)]
struct State {
    /// How long a token is taken after its first use.
    valid_for: Duration,
    /// When each token was first presented.
    first_seen: HashMap<String, Instant>,
    revoked: Option<String>,
    /// Answers with 401, and answers with 200.
    refused: u32,
    served: u32,
}

/// A Vertex AI `generateContent` that takes only the newest token of the
/// command whose counter file is `counter`, for a while after its first use.
#[derive(Clone)]
struct Vertex {
    counter: PathBuf,
    delay: Duration,
    state: Arc<Mutex<State>>,
}

impl Vertex {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn newest(&self) -> String {
        format!("ya29.token-{}", std::fs::read_to_string(&self.counter).unwrap_or_default().trim())
    }
}

impl Respond for Vertex {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let presented = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let newest = self.newest();
        let mut s = self.state();
        let first = *s.first_seen.entry(presented.clone()).or_insert_with(Instant::now);
        let fresh = first.elapsed() < s.valid_for;
        if presented != newest || !fresh || s.revoked.as_deref() == Some(presented.as_str()) {
            s.refused += 1;
            return ResponseTemplate::new(401).set_body_json(json!({"error": {"code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "status": "UNAUTHENTICATED"}}));
        }
        s.served += 1;
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let mut answer = recorded("inline_video.response.json");
        if body["generationConfig"]["responseSchema"].is_object() {
            answer["candidates"][0]["content"]["parts"][0]["text"] =
                json!(r#"{"events":[{"start":"00:00.000","end":"00:02.000","text":"A test pattern."}]}"#);
        }
        ResponseTemplate::new(200).set_body_json(answer).set_delay(self.delay)
    }
}

/// A command that mints a new token each time it runs, counting in `counter`:
/// the token alone, or JSON saying it expires in `expires_in` seconds.
fn minting_command(counter: &Path, expires_in: Option<f64>) -> Vec<String> {
    let print = match expires_in {
        Some(s) => format!(r#"printf '{{"access_token": "ya29.token-%s", "expires_in": {s}}}\n' "$n""#),
        None => r#"echo "ya29.token-$n""#.to_string(),
    };
    let script =
        format!("n=$(cat '{0}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{0}'; {print}", counter.display());
    vec!["sh".into(), "-c".into(), script]
}

fn mints(counter: &Path) -> u32 {
    std::fs::read_to_string(counter).unwrap_or_default().trim().parse().unwrap_or(0)
}

async fn vertex(counter: &Path, valid_for: Duration, delay: Duration) -> (MockServer, Vertex) {
    let server = MockServer::start().await;
    let state = State { valid_for, ..State::default() };
    let fake = Vertex { counter: counter.to_path_buf(), delay, state: Arc::new(Mutex::new(state)) };
    Mock::given(wiremock::matchers::any()).respond_with(fake.clone()).mount(&server).await;
    (server, fake)
}

fn vertex_profile(server: &MockServer, test: &str, command: Vec<String>) -> ProviderProfile {
    let mut p = profile(server, test);
    p.auth = Some(AuthScheme::Bearer);
    p.api_key_env = None;
    p.project = Some("proj-1".into());
    p.token_command = Some(command);
    p
}

/// A run of six calls, 0.6 s each, while tokens live a second: it
/// takes new tokens as they come due and never meets a refusal.
fn a_run_spans_several_expiries(test: &str, lifetime_s: Option<f64>, expires_in: Option<f64>) {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        let (server, fake) = vertex(&counter, Duration::from_millis(1800), Duration::from_millis(600)).await;
        let mut p = vertex_profile(&server, test, minting_command(&counter, expires_in));
        p.token_lifetime_s = lifetime_s;
        p.frames_per_call = Some(2);
        p.limits.max_concurrency = Some(1);
        // Frames, not the video: ten of them in five calls, and the story.
        p.models.get_mut("gemini-test").unwrap().native_video = Some(false);
        let mut config = Config::builtin().unwrap();
        config.providers.insert("vertex".into(), p.clone());
        config.router.chain = vec!["vertex".into()];
        config.budget.max_usd_per_request = 1.0;
        let g = Gateway::with_journal(config, Journal::in_memory().unwrap()).with_provider("vertex", backend(&p));
        let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
        request.sampling =
            SamplingPlan { mode: SamplingMode::Fps { fps: 1.0 }, range: None, max_frames: 64, width: 160 };
        let started = Instant::now();
        let report = g.run(request).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(3), "the run outlived several tokens");
        assert!(report.attempts.iter().all(|a| a.outcome == Outcome::Ok), "{:?}", report.attempts);
        let state = fake.state();
        assert_eq!(state.served, 6);
        assert_eq!(state.refused, 0, "each token was replaced before it expired");
        assert!(mints(&counter) >= 3, "{} tokens", mints(&counter));
    });
}

#[test]
fn a_run_longer_than_the_token_lifetime_never_meets_a_refusal() {
    a_run_spans_several_expiries("lifetime", Some(1.0), None);
}

#[test]
fn the_expiry_in_the_commands_json_output_is_kept_to() {
    // No lifetime set: the default (50 minutes) would outlive the fake's tokens.
    a_run_spans_several_expiries("json-expiry", None, Some(1.2));
}

/// A token revoked on the server's side: the 401 brings one new token and
/// one resend, within the same call.
#[test]
fn a_revoked_token_is_replaced_once_and_the_request_sent_again() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        let (server, fake) = vertex(&counter, Duration::from_secs(600), Duration::ZERO).await;
        let p = vertex_profile(&server, "revoked", minting_command(&counter, None));
        let gemini = backend(&p);
        let job = video_job(&testsrc_10s());
        run_with(gemini.clone(), &p, &job).await.result.unwrap();
        assert_eq!(mints(&counter), 1);
        fake.state().revoked = Some(fake.newest());
        let mut second = job.clone();
        second.prompt = "Describe it again.".into();
        let r = run_with(gemini.clone(), &p, &second).await;
        r.result.unwrap();
        let attempts = r.log.snapshot();
        assert_eq!(attempts.len(), 1, "one attempt: the resend is inside it");
        assert_eq!(attempts[0].outcome, Outcome::Ok);
        assert_eq!(mints(&counter), 2, "one new token");
        let state = fake.state();
        assert_eq!((state.refused, state.served), (1, 2), "one refusal, then the resend served");
    });
}

/// A token refused again after the resend is a refused credential: the
/// provider falls back, and the command ran once more, not in a loop. Once
/// the next token is due, the credentials are tried again (a login mended
/// while the gateway runs).
#[test]
fn a_token_refused_after_the_resend_counts_as_refused_until_the_next_is_due() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        // Tokens that are stale at once.
        let (server, fake) = vertex(&counter, Duration::ZERO, Duration::ZERO).await;
        let mut p = vertex_profile(&server, "refused", minting_command(&counter, None));
        p.token_lifetime_s = Some(1.0);
        let gemini = backend(&p);
        let job = video_job(&testsrc_10s());
        let err = run_with(gemini.clone(), &p, &job).await.result.unwrap_err();
        assert!(err.disables_provider, "{err}");
        assert!(!err.to_string().contains("ya29.token"), "{err}");
        assert_eq!(mints(&counter), 2, "the first token and one replacement");
        assert_eq!(fake.state().refused, 2);
        let err = run_with(gemini.clone(), &p, &job).await.result.unwrap_err();
        assert!(err.to_string().contains("refused our credentials"), "{err}");
        assert_eq!((mints(&counter), fake.state().refused), (2, 2), "nothing sent while refused");

        fake.state().valid_for = Duration::from_secs(600);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        run_with(gemini, &p, &job).await.result.unwrap();
        assert_eq!(mints(&counter), 3, "a new token, once due, and the call goes through");
    });
}

/// `runs` concurrent calls through one stack on the provider of `p`, with
/// the budget they were charged to.
async fn calls_at_once(p: &ProviderProfile, runs: usize) -> (Vec<ProviderError>, Budget) {
    let mut config = Config::default();
    config.retry.max_attempts = 3;
    let budget = Budget::new(1.0);
    let stack = policy::standard_stack(backend(p), p, &config, budget.clone(), AttemptLog::default());
    let jobs: Vec<_> = (0..runs)
        .map(|i| {
            let mut job = video_job(&testsrc_10s());
            job.prompt = format!("Describe the video, call {i}.").into();
            job
        })
        .collect();
    let results = futures_util::future::join_all(jobs.iter().map(|job| stack.run(job))).await;
    (results.into_iter().map(Result::unwrap_err).collect(), budget)
}

/// Every call failed saying `why`, unsent and uncharged; nothing reached `fake`.
fn all_failed_unsent(errors: &[ProviderError], budget: &Budget, fake: &Vertex, why: &str) {
    for err in errors {
        assert!(err.message.contains(why), "{err}");
        assert!(err.not_sent && !err.maybe_billed, "{err:?}");
    }
    assert_eq!(budget.spent(), 0.0, "nothing was sent, nothing charged");
    let state = fake.state();
    assert_eq!(state.served + state.refused, 0, "nothing reached the server");
}

/// A token command that fails, under several calls at once: it runs once,
/// every call fails with its error, and nothing is charged.
#[test]
fn a_failing_token_command_runs_once_for_the_calls_waiting_on_it_and_costs_nothing() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let (server, fake) = vertex(&dir.path().join("count"), Duration::from_secs(600), Duration::ZERO).await;
        let script = format!("echo run >> '{}'; sleep 0.3; echo 'not logged in' >&2; exit 3", runs.display());
        let p = vertex_profile(&server, "failing", vec!["sh".into(), "-c".into(), script]);
        let (errors, budget) = calls_at_once(&p, 4).await;
        all_failed_unsent(&errors, &budget, &fake, "the token command `sh` gave no token");
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1, "the command ran once");
    });
}

/// A token command that hangs past the calls' deadline: they are cut off
/// before anything was sent, and are not charged.
#[test]
fn calls_cut_off_while_their_token_is_fetched_cost_nothing() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (server, fake) = vertex(&dir.path().join("count"), Duration::from_secs(600), Duration::ZERO).await;
        let command = vec!["sh".into(), "-c".into(), "exec sleep 20".into()];
        let mut p = vertex_profile(&server, "hanging", command);
        p.timeout_s = Some(0.3);
        let (errors, budget) = calls_at_once(&p, 3).await;
        all_failed_unsent(&errors, &budget, &fake, "before the request was sent");
    });
}

/// The same for an OpenAI-compatible server behind a token (a gateway that
/// takes OAuth tokens): the executor is shared, so is the resend.
#[test]
fn an_openai_compatible_server_gets_the_same_one_resend() {
    use vidgate::provider::openai_compat::OpenAiCompat;
    use vidgate::provider::{Job, JobInput, Provider};
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::header("authorization", "Bearer ya29.token-2"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion("a test pattern")))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(wiremock::matchers::any())
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "token expired"}})))
            .mount(&server)
            .await;
        let p = ProviderProfile {
            protocol: Some(vidgate::config::Protocol::Openai),
            base_url: Some(format!("{}/v1", server.uri())),
            auth: Some(AuthScheme::Bearer),
            token_command: Some(minting_command(&counter, None)),
            model: Some("fake-vision".into()),
            price: Some(vidgate::config::Price {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                cached_input_per_mtok: None,
                audio_input_per_mtok: None,
            }),
            ..ProviderProfile::default()
        };
        let openai = OpenAiCompat::from_profile("gateway", &p, &Config::default()).unwrap();
        let job = Job {
            task: Task::Describe,
            input: JobInput::Text("[00:01.000] a test pattern".into()),
            prompt: "Tell the story.".into(),
            prompt_version: "story@1".into(),
            max_output_tokens: 100,
            span: None,
        };
        let out = openai.run(&job).await.unwrap();
        assert_eq!(out.observations[0].text, "a test pattern");
        assert_eq!(mints(&counter), 2, "the refused token and one new one");
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "sent twice, within one call");
    });
}

/// The command line at trace level, through a refused token and its
/// replacement: neither token shows in any output.
#[test]
fn tokens_never_show_in_output_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("count");
    let (server, fake) = runtime().block_on(vertex(&counter, Duration::from_secs(600), Duration::ZERO));
    fake.state().revoked = Some("ya29.token-1".into());
    let command = serde_json::to_string(&minting_command(&counter, Some(3600.0))).unwrap();
    let config = dir.path().join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            "[providers.myvertex]\nprotocol = \"gemini\"\nbase_url = \"{}\"\nauth = \"bearer\"\nproject = \"proj-1\"\n\
             model = \"gemini-2.5-flash\"\ntoken_command = {command}\n",
            server.uri()
        ),
    )
    .unwrap();
    let out = vidgate()
        .args(["-vvv", "describe", "--provider", "myvertex", "--json", "--config"])
        .arg(&config)
        .arg(testsrc_10s())
        .env("VIDGATE_LOG", "trace")
        .env("XDG_CACHE_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.lines().count() > 5, "trace logging is on");
    assert!(stderr.contains("sending again with a new one"), "the refused token was replaced");
    assert!(!stdout.contains("ya29.token") && !stderr.contains("ya29.token"), "a token leaked");
    assert_eq!((mints(&counter), fake.state().refused), (2, 1));
}
