use std::sync::Mutex;

use super::*;
use crate::provider::JobInput;
use crate::schema::Task;

const GOOD: &str = r#"{"events":[{"start":"00:01","end":"00:03","text":"A door opens."}]}"#;
const BACKWARDS: &str = r#"{"events":[{"start":"00:05","end":"00:02","text":"x"}]}"#;

fn job(task: Task) -> Job {
    Job {
        task,
        input: JobInput::Text("observations".into()),
        prompt: "List the events.".into(),
        prompt_version: "timeline@2".into(),
        max_output_tokens: 100,
        span: TimeRange::new(0, 10_000),
    }
}

fn usage(n: u64) -> Usage {
    Usage { input_tokens: n, output_tokens: 1, cost_usd: n as f64 / 1000.0 }
}

/// Answers `texts` in turn, each billed as 100 input tokens, and keeps the prompts it was sent.
struct Script {
    texts: Vec<Result<&'static str, ProviderError>>,
    prompts: Mutex<Vec<String>>,
}

impl Script {
    fn new(texts: Vec<Result<&'static str, ProviderError>>) -> Self {
        Self { texts, prompts: Mutex::new(Vec::new()) }
    }

    async fn run(&self, job: &Job, constraint: Constraint) -> Result<ProviderOutput, ProviderError> {
        answer("p", job, constraint, |job: Job| async move {
            let mut prompts = self.prompts.lock().unwrap();
            prompts.push(job.prompt.to_string());
            let text = self.texts[prompts.len() - 1].clone()?;
            Ok(RawAnswer {
                text: text.into(),
                usage: usage(100),
                model: "m".into(),
                warnings: vec![format!("w{}", prompts.len())],
            })
        })
        .await
    }

    fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_plain_answer_is_one_observation_over_what_the_job_covers() {
    let s = Script::new(vec![Ok("  A door opens.  ")]);
    let out = s.run(&job(Task::Describe), Constraint::Free).await.unwrap();
    assert_eq!(out.observations.len(), 1);
    assert_eq!(
        (out.observations[0].range, out.observations[0].text.as_str()),
        (TimeRange { start_ms: 0, end_ms: 10_000 }, "A door opens.")
    );
    assert_eq!((out.usage, out.model.as_str(), out.warnings), (usage(100), "m", vec!["w1".to_string()]));
    // Even JSON that would be a bad timeline is kept as it is said.
    let s = Script::new(vec![Ok(BACKWARDS)]);
    assert_eq!(
        s.run(&job(Task::Ask { question: "?".into() }), Constraint::Free).await.unwrap().observations[0].text,
        BACKWARDS
    );
    assert_eq!(s.prompts().len(), 1);
}

#[tokio::test]
async fn a_valid_timeline_becomes_events_in_one_call() {
    for constraint in [Constraint::Free, Constraint::Schema, Constraint::Grammar] {
        let s = Script::new(vec![Ok(GOOD)]);
        let out = s.run(&job(Task::Timeline), constraint).await.unwrap();
        assert_eq!(out.observations[0].range, TimeRange { start_ms: 1_000, end_ms: 3_000 });
        assert_eq!((out.observations[0].text.as_str(), out.observations[0].provider.as_str()), ("A door opens.", "p"));
        assert_eq!(s.prompts().len(), 1);
    }
}

#[tokio::test]
async fn free_text_gets_one_repair_that_says_why() {
    let s = Script::new(vec![Ok("not json"), Ok(GOOD)]);
    let out = s.run(&job(Task::Find { what: "a door".into() }), Constraint::Free).await.unwrap();
    assert_eq!(out.observations[0].text, "A door opens.");
    assert_eq!(out.usage.input_tokens, 200, "both calls are counted");
    assert_eq!(out.warnings, ["w1", "w2"]);
    let prompts = s.prompts();
    assert_eq!(prompts[0], "List the events.");
    assert!(
        prompts[1].starts_with(
            "List the events.\n\nYour previous answer could not be used: the answer is not the requested JSON"
        ),
        "{}",
        prompts[1]
    );
}

#[tokio::test]
async fn an_answer_that_stays_invalid_fails_the_unit_billed_so_far() {
    let s = Script::new(vec![Ok("not json"), Ok(BACKWARDS)]);
    let err = s.run(&job(Task::Timeline), Constraint::Free).await.unwrap_err();
    assert_eq!((err.class, err.maybe_billed), (ErrorClass::FallBack, true));
    assert!(
        err.message.starts_with("unit failed: the answer stayed invalid after one repair: event 1 ends"),
        "{}",
        err.message
    );
    assert_eq!(err.billed.as_deref(), Some(&Usage { input_tokens: 200, output_tokens: 2, cost_usd: 0.2 }));
    assert_eq!(s.prompts().len(), 2, "one repair, no more");
}

#[tokio::test]
async fn a_constrained_answer_is_not_asked_again() {
    for constraint in [Constraint::Schema, Constraint::Grammar] {
        let s = Script::new(vec![Ok(BACKWARDS), Ok(GOOD)]);
        let err = s.run(&job(Task::Timeline), constraint).await.unwrap_err();
        assert_eq!(
            (err.class, err.maybe_billed, err.billed.as_deref()),
            (ErrorClass::FallBack, true, Some(&usage(100)))
        );
        assert_eq!(
            err.message,
            "unit failed: the answer is invalid although its form was constrained, so it is not asked again: \
             event 1 ends (00:02.000) before it starts (00:05.000)"
        );
        assert_eq!(s.prompts().len(), 1);
    }
}

#[tokio::test]
async fn a_failed_repair_call_counts_the_first_as_billed() {
    let refused = ProviderError::new("p", ErrorClass::FallBack, "HTTP 400");
    let s = Script::new(vec![Ok("not json"), Err(refused)]);
    let err = s.run(&job(Task::Timeline), Constraint::Free).await.unwrap_err();
    assert_eq!((err.message.as_str(), err.maybe_billed, err.billed.as_deref()), ("HTTP 400", true, Some(&usage(100))));
    // A repair that may itself have been billed leaves the whole estimate charged.
    let mut timed_out = ProviderError::new("p", ErrorClass::Transient, "timed out");
    timed_out.maybe_billed = true;
    let s = Script::new(vec![Ok("not json"), Err(timed_out)]);
    let err = s.run(&job(Task::Timeline), Constraint::Free).await.unwrap_err();
    assert_eq!((err.maybe_billed, err.billed), (true, None));
}

#[test]
fn the_worst_case_counts_the_longest_repair_only_where_there_may_be_one() {
    // Counted in bytes, as the cost rules count text.
    let per_char = |job: &Job| -> Result<Estimate, ()> {
        let n = job.prompt.len() as u64;
        Ok(Estimate { input_tokens: n, output_tokens: 100, cost_usd: n as f64 })
    };
    let timeline = job(Task::Timeline);
    let one = per_char(&timeline).unwrap();
    assert_eq!(estimate(&timeline, Constraint::Schema, per_char).unwrap(), one);
    assert_eq!(estimate(&timeline, Constraint::Grammar, per_char).unwrap(), one);
    assert_eq!(
        estimate(&job(Task::Describe), Constraint::Free, per_char).unwrap(),
        per_char(&job(Task::Describe)).unwrap()
    );
    let worst = estimate(&timeline, Constraint::Free, per_char).unwrap();
    assert_eq!(worst.output_tokens, 200);
    assert!(worst.input_tokens > 2 * one.input_tokens + REASON_BYTES as u64, "{worst:?}");
    // No reason makes a repair prompt longer than the one reserved for.
    for long in ["é".repeat(REASON_BYTES), "x".repeat(5 * REASON_BYTES), format!("x{}", "€".repeat(REASON_BYTES))] {
        let repair = repair_job(&timeline, &long).unwrap();
        assert!(repair.prompt.contains("…"), "cut short");
        assert!(per_char(&repair).unwrap().input_tokens <= worst.input_tokens - one.input_tokens);
    }
    assert_eq!((calls(&timeline, Constraint::Free), calls(&timeline, Constraint::Schema)), (2, 1));
    assert_eq!(calls(&job(Task::Describe), Constraint::Free), 1);
}
