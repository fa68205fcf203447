//! Money and runs of the service: a run whose budget runs out mid-way is
//! refused as 402 `insufficient_quota`, like one refused before it starts.

use std::sync::Arc;

use vidgate::provider::scripted::Step;
use vidgate::provider::Provider;
use vidgate::schema::{Task, Usage, VideoRequest};
use vidgate::serve::runs::Submission;
use vidgate::serve::RunState;

use super::{config, scripted, Server, UNIT_USD};
use crate::util::{block_on, testsrc_10s};

/// Each call is estimated at [`UNIT_USD`] but billed three times that, so a
/// plan that fits its budget runs out of it mid-way.
#[test]
fn a_budget_that_runs_out_mid_run_fails_the_run_with_402_and_what_was_done() {
    let dear = Step::Answer {
        text: "{time}: a test pattern".into(),
        usage: Usage { input_tokens: 100, output_tokens: 20, cost_usd: 3.0 * UNIT_USD },
    };
    let fake = Arc::new(scripted("fake").with_fallback(dear));
    let server = Server::start(config("fake"), vec![("fake", fake.clone() as Arc<dyn Provider>)]);
    let mut request = VideoRequest::new(testsrc_10s(), Task::Describe);
    request.constraints.max_cost_usd = Some(15.0 * UNIT_USD);
    let run = block_on(server.app.runs.submit(Submission { request, account: None })).unwrap();
    let state = block_on(run.finished());
    let RunState::Failed { error, http_status, partial } = &state else { panic!("{state:?}") };
    assert_eq!(*http_status, 402, "{error}");
    assert!(error.contains("budget"), "{error}");
    assert!(partial.as_ref().is_some_and(|p| !p.observations.is_empty()), "what was done is kept: {state:?}");
    assert!(fake.calls() > 0 && fake.calls() < 10, "{} calls", fake.calls());

    let body: serde_json::Value =
        block_on(async { server.client().get(server.url(&format!("/v1/runs/{}", run.id))).send().await?.json().await })
            .unwrap();
    assert_eq!((&body["status"], &body["http_status"]), (&"failed".into(), &402.into()), "{body}");
}
