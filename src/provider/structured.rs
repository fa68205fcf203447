//! The one rule for answers that must be a timeline (timeline and find jobs,
//! [`Job::structured`]), on every backend.
//!
//! A backend makes one call and hands back its [`RawAnswer`]; [`answer`]
//! turns that into a [`ProviderOutput`]. A plain answer is one observation
//! over what the job covers. A structured answer is checked against the
//! timeline schema and the job's span ([`crate::timeline::parse_events`]).
//! Where the backend cannot hold its output to the schema ([`Constraint::Free`])
//! a bad answer gets exactly one repair call: the prompt of `prompts/repair.md`
//! with the reason. Where it can (a JSON schema, a grammar), asking again
//! would get the same kind of answer, so it does not. A violation that
//! remains fails the unit the same way everywhere: [`ErrorClass::FallBack`],
//! possibly billed, with the usage so far. [`estimate`] counts the possible
//! repair in the worst case, so every backend reserves for it alike.

use std::future::Future;

use crate::provider::{ErrorClass, Estimate, Job, ProviderError, ProviderOutput};
use crate::schema::{Event, Observation, TimeRange, Usage};

/// The most bytes of a reason quoted back to the model (then `…`); a reason
/// can quote the answer, which can be long.
const REASON_BYTES: usize = 400;

/// What one call to a model returned, before any task rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAnswer {
    pub text: String,
    /// What the call cost (the estimate's, when the provider reported none).
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// What is doubtful about the call: cut at the output cap, unusable usage.
    pub warnings: Vec<String>,
}

/// How a backend holds its answer to the timeline JSON, for a structured job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// Free text: a bad answer gets one repair call.
    Free,
    /// A JSON schema sent with the request (a response format or schema).
    Schema,
    /// A grammar the sampler follows (the local model).
    Grammar,
}

impl Constraint {
    /// A JSON schema when `schema`, else free text.
    pub fn schema_if(schema: bool) -> Self {
        if schema {
            Constraint::Schema
        } else {
            Constraint::Free
        }
    }

    fn holds_output(self) -> bool {
        self != Constraint::Free
    }
}

/// The most calls [`answer`] makes for `job`: two when a structured answer
/// may need its repair, else one.
pub fn calls(job: &Job, constraint: Constraint) -> u32 {
    if job.structured() && !constraint.holds_output() {
        2
    } else {
        1
    }
}

/// The worst-case cost of `job`: `one_call` of the job, plus `one_call` of
/// its longest repair when [`calls`] says there may be one.
///
/// # Errors
/// What `one_call` returns.
pub fn estimate<E>(
    job: &Job,
    constraint: Constraint,
    one_call: impl Fn(&Job) -> Result<Estimate, E>,
) -> Result<Estimate, E> {
    let mut total = one_call(job)?;
    if calls(job, constraint) > 1 {
        // The longest reason quoted back, in bytes and in characters, so the
        // reservation covers any repair.
        let longest = "x".repeat(REASON_BYTES + '…'.len_utf8());
        let repair = repair_prompt(job, &longest).unwrap_or_else(|_| job.clone());
        let second = one_call(&repair)?;
        total.input_tokens = total.input_tokens.saturating_add(second.input_tokens);
        total.output_tokens = total.output_tokens.saturating_add(second.output_tokens);
        total.cost_usd += second.cost_usd;
    }
    Ok(total)
}

/// The job of the repair call: `job` with the repair prompt, which asks again
/// and says why the answer could not be used.
///
/// # Errors
/// The built-in template cannot be rendered (a broken build), as a fatal error.
pub fn repair_job(job: &Job, reason: &str) -> Result<Job, ProviderError> {
    repair_prompt(job, &shortened(reason))
}

fn repair_prompt(job: &Job, reason: &str) -> Result<Job, ProviderError> {
    let fatal = |e: crate::prompts::PromptError| ProviderError::new("vidgate", ErrorClass::Fatal, e.to_string());
    let template = crate::prompts::load("repair", None).map_err(fatal)?;
    let prompt = template.render(&[("prompt", &job.prompt), ("reason", reason)]).map_err(fatal)?;
    let mut repair = job.clone();
    repair.prompt = prompt.into();
    Ok(repair)
}

/// Serve `job` with `call`, one call to the model per invocation, by the one
/// rule of this module.
///
/// # Errors
/// What a call fails with, unchanged for the first call; a repair call's
/// failure counts the first call as billed. An answer that stays invalid is
/// a unit failure ([`ErrorClass::FallBack`]) billed at the usage so far.
pub async fn answer<F, Fut>(
    provider: &str,
    job: &Job,
    constraint: Constraint,
    mut call: F,
) -> Result<ProviderOutput, ProviderError>
where
    F: FnMut(Job) -> Fut,
    Fut: Future<Output = Result<RawAnswer, ProviderError>>,
{
    let first = call(job.clone()).await?;
    if !job.structured() {
        return Ok(plain(provider, job, first));
    }
    let span = job.covered();
    let reason = match crate::timeline::parse_events(&first.text, span) {
        Ok(events) => return Ok(timeline(provider, first, events)),
        Err(reason) => reason,
    };
    let RawAnswer { mut usage, model, mut warnings, .. } = first;
    if constraint.holds_output() {
        return Err(unit_failed(
            provider,
            format!("the answer is invalid although its form was constrained, so it is not asked again: {reason}"),
            usage,
        ));
    }
    tracing::info!(provider, %reason, "asking once for a repaired timeline");
    let second = call(repair_job(job, &reason)?).await.map_err(|mut e| {
        // The first call was billed; what the repair cost is the error's to say.
        if !e.maybe_billed {
            let mut so_far = usage;
            if let Some(billed) = &e.billed {
                so_far.add(billed);
            }
            e.billed = Some(Box::new(so_far));
        }
        e.maybe_billed = true;
        e
    })?;
    usage.add(&second.usage);
    warnings.extend(second.warnings);
    match crate::timeline::parse_events(&second.text, span) {
        Ok(events) => Ok(timeline(provider, RawAnswer { text: second.text, usage, model, warnings }, events)),
        Err(reason) => {
            Err(unit_failed(provider, format!("the answer stayed invalid after one repair: {reason}"), usage))
        }
    }
}

/// A plain answer: one observation over the frames it saw, or over what the
/// job covers.
pub fn plain(provider: &str, job: &Job, answer: RawAnswer) -> ProviderOutput {
    let range = job.input.frames_span().unwrap_or_else(|| job.covered());
    let observation = Observation {
        range,
        text: answer.text.trim().to_string(),
        provider: provider.to_string(),
        model: Some(answer.model.clone()),
    };
    ProviderOutput {
        observations: vec![observation],
        usage: answer.usage,
        model: answer.model,
        warnings: answer.warnings,
    }
}

fn timeline(provider: &str, answer: RawAnswer, events: Vec<Event>) -> ProviderOutput {
    let observations = events
        .into_iter()
        .map(|e| Observation {
            range: TimeRange { start_ms: e.start_ms, end_ms: e.end_ms.max(e.start_ms + 1) },
            text: e.text,
            provider: provider.to_string(),
            model: Some(answer.model.clone()),
        })
        .collect();
    ProviderOutput { observations, usage: answer.usage, model: answer.model, warnings: answer.warnings }
}

fn unit_failed(provider: &str, why: String, usage: Usage) -> ProviderError {
    let mut err = ProviderError::new(provider, ErrorClass::FallBack, format!("unit failed: {why}"));
    err.maybe_billed = true;
    err.billed = Some(Box::new(usage));
    err
}

fn shortened(reason: &str) -> String {
    if reason.len() <= REASON_BYTES {
        return reason.to_string();
    }
    let cut = (0..=REASON_BYTES).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", &reason[..cut])
}

#[cfg(test)]
mod tests;
