//! Money and runs of the service: a run whose budget runs out mid-way is
//! refused as 402 `insufficient_quota`, like one refused before it starts,
//! and a run resumed after a restart still counts against its key's cap.

use std::sync::Arc;
use std::time::Duration;

use vidgate::gateway::Account;
use vidgate::journal::NewKey;
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
    let run = block_on(server.app.runs.submit(Submission { request, account: Some(server.account.clone()) })).unwrap();
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

/// A run stopped mid-way and resumed by the next start is still paid by its
/// key: the key's daily cap, restored from the journal, applies to it. Here
/// the key spent its day elsewhere meanwhile, so the resumed run is refused.
#[test]
fn a_resumed_run_still_counts_against_its_keys_daily_cap() {
    use super::restart::{instance, slow, units};
    let dir = tempfile::tempdir().unwrap();
    let first = instance(dir.path(), slow(Duration::from_millis(200)));
    let new = NewKey { name: "capped".into(), max_usd_per_day: Some(1.0), ..NewKey::default() };
    let key = first.gateway().journal().create_key(&new).unwrap().record;
    let account = Account { id: key.id.clone(), max_usd_per_day: key.max_usd_per_day };
    let request = VideoRequest::new(testsrc_10s(), Task::Timeline);
    let run = block_on(first.runs.submit(Submission { request, account: Some(account) })).unwrap();
    block_on(async {
        while units(&run, false) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    block_on(first.runs.drain(Duration::ZERO));
    let gateway = first.gateway();
    let journal = gateway.journal();
    let before = journal.account_spent_today(&key.id).unwrap();
    assert!(before >= 2.0 * UNIT_USD, "the run's spend counts under its key: {before}");
    journal.queue_spend_for("elsewhere", 1.0 - before - UNIT_USD / 2.0, Some(&key.id));
    let spent = journal.account_spent_today(&key.id).unwrap();
    // (A call cut off at the stop may count a moment later, as spent.)
    assert!(spent > 1.0 - UNIT_USD, "less than a call is left on the key today: {spent}");

    let after = slow(Duration::ZERO);
    let second = instance(dir.path(), after.clone());
    assert_eq!(block_on(second.runs.restore()).unwrap(), 1);
    let resumed = second.runs.get(run.id).expect("the run keeps its id");
    assert_eq!(resumed.key.as_deref(), Some(key.id.as_str()), "the run is still its key's");
    let state = block_on(resumed.finished());
    let RunState::Failed { error, http_status, .. } = &state else {
        panic!("the key's cap was not applied: {state:?}")
    };
    assert_eq!(*http_status, 402, "{error}");
    assert_eq!(after.calls(), 0, "nothing is spent past the key's cap");
}

#[test]
fn a_run_whose_key_was_revoked_is_not_resumed_and_spends_nothing_more() {
    use super::restart::{instance, slow, units};
    let dir = tempfile::tempdir().unwrap();
    let first = instance(dir.path(), slow(Duration::from_millis(200)));
    let new = NewKey { name: "gone".into(), ..NewKey::default() };
    let key = first.gateway().journal().create_key(&new).unwrap().record;
    let account = Account { id: key.id.clone(), max_usd_per_day: None };
    let request = VideoRequest::new(testsrc_10s(), Task::Timeline);
    let run = block_on(first.runs.submit(Submission { request, account: Some(account) })).unwrap();
    block_on(async {
        while units(&run, false) < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    block_on(first.runs.drain(Duration::ZERO));
    first.gateway().journal().revoke_key("gone").unwrap();

    let after = slow(Duration::ZERO);
    let second = instance(dir.path(), after.clone());
    assert_eq!(block_on(second.runs.restore()).unwrap(), 0, "nothing is resumed");
    let stopped = second.runs.get(run.id).expect("the run is still shown under its id");
    let state = block_on(stopped.finished());
    let RunState::Failed { error, http_status, .. } = &state else { panic!("{state:?}") };
    assert_eq!(*http_status, 403, "{error}");
    assert!(error.contains("revoked"), "{error}");
    assert_eq!(after.calls(), 0, "nothing is spent for a revoked key");
    // The failure is the journal's too: a third start resumes nothing.
    let third = instance(dir.path(), slow(Duration::ZERO));
    assert_eq!(block_on(third.runs.restore()).unwrap(), 0);
}
