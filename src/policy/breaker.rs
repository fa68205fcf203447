//! One circuit breaker per provider, shared by every request on it. It counts
//! failed *calls* in a row, not failed units: concurrent units on a dead
//! provider cannot each run their whole retry loop before it trips. Until the
//! provider has answered (and again after any failure), only a few calls may
//! be out at once, so a dead provider sees a handful of calls whatever the
//! concurrency. Tripped, it is benched for a cooldown; then one probe call
//! decides, and the others fall back meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::provider::{Cause, ErrorClass, ProviderError, ProviderOutput};

/// Failed calls in a row that bench a provider.
pub const TRIP_AFTER: u32 = 3;
/// Calls that could not connect, in a row, that bench it: nothing is listening.
const TRIP_UNREACHABLE_AFTER: u32 = 2;
/// Calls in flight plus failures in a row allowed while the provider has not
/// just answered: the most calls a provider that never answers gets.
pub const UNPROVEN_CALLS: u32 = 4;

#[derive(Debug, Default)]
struct State {
    /// Failed calls in a row.
    failures: u32,
    in_flight: u32,
    /// The last call that ended was answered.
    proven: bool,
    /// Benched until then; past it, the breaker is half-open.
    open_until: Option<Instant>,
    /// Half-open, and the one probe call is out.
    probing: bool,
}

/// One provider's recent calls, and until when it is benched.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
    changed: Notify,
}

enum Admit {
    Go { probe: bool },
    Wait,
    Refuse(String),
}

/// Leave to make one call; it must be finished with how the call ended.
/// Dropped unfinished (the call was cancelled), it counts for nothing.
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
    cooldown: Duration,
    finished: bool,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether calls are refused now: inside the cooldown, or half-open with
    /// the probe out.
    pub fn is_benched(&self) -> bool {
        let state = self.state();
        state.open_until.is_some_and(|until| Instant::now() < until || state.probing)
    }

    /// How long the provider stays benched from now: `Some(ZERO)` when the
    /// cooldown is over and a probe call decides (half-open), `None` when closed.
    pub fn open_for(&self) -> Option<Duration> {
        let state = self.state();
        state.open_until.map(|until| until.saturating_duration_since(Instant::now()))
    }

    fn try_admit(&self) -> Admit {
        let mut state = self.state();
        if let Some(until) = state.open_until {
            let now = Instant::now();
            if now < until {
                return Admit::Refuse(format!(
                    "benched for {:.0} s more after its calls failed",
                    (until - now).as_secs_f64().ceil()
                ));
            }
            if state.probing {
                return Admit::Refuse("benched: one probe call after the cooldown is out".into());
            }
            state.probing = true;
            state.in_flight += 1;
            return Admit::Go { probe: true };
        }
        if !state.proven && state.in_flight + state.failures >= UNPROVEN_CALLS {
            return Admit::Wait;
        }
        state.in_flight += 1;
        Admit::Go { probe: false }
    }

    /// Leave for one call: at once, after calls in flight end (while the
    /// provider has not proved itself), or refused with the reason.
    ///
    /// # Errors
    /// The provider is benched.
    pub async fn admit(&self, cooldown: Duration) -> Result<Ticket<'_>, String> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_admit() {
                Admit::Go { probe } => return Ok(Ticket { breaker: self, probe, cooldown, finished: false }),
                Admit::Refuse(reason) => return Err(reason),
                Admit::Wait => changed.await,
            }
        }
    }

    /// Sleep for `wait`, or less when the provider is benched meanwhile: a
    /// retry that would be refused need not wait for it.
    pub async fn sleep_unless_benched(&self, wait: Duration) {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_benched() {
                return;
            }
            tokio::select! {
                () = &mut sleep => return,
                () = changed => {}
            }
        }
    }

    fn finish(&self, probe: bool, cooldown: Duration, outcome: Option<Result<(), &ProviderError>>) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if probe {
            state.probing = false;
        }
        match outcome {
            // Cancelled, or an error that says nothing of the provider's health.
            None => {}
            Some(Err(e)) if says_nothing_of_health(e) => {}
            Some(Ok(())) => {
                *state = State { in_flight: state.in_flight, proven: true, ..State::default() };
            }
            Some(Err(e)) => {
                state.proven = false;
                state.failures += 1;
                let trip = probe
                    || state.failures >= TRIP_AFTER
                    || e.disables_provider
                    || (e.unreachable && state.failures >= TRIP_UNREACHABLE_AFTER);
                if trip {
                    state.open_until = Some(Instant::now() + cooldown);
                    state.failures = 0;
                }
            }
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// Never sent; asked to slow down or out of quota (the account's state, not
/// the service's); or the job's own fault: bad input, or content a policy
/// refused.
fn says_nothing_of_health(e: &ProviderError) -> bool {
    e.not_sent
        || e.status == Some(429)
        || matches!(e.cause, Cause::RateLimited | Cause::Quota | Cause::ContentPolicy)
        || (e.class == ErrorClass::Fatal && !e.disables_provider)
}

impl Ticket<'_> {
    /// Count the call's result.
    pub fn finish(mut self, result: &Result<ProviderOutput, ProviderError>) {
        self.finished = true;
        self.breaker.finish(self.probe, self.cooldown, Some(result.as_ref().map(|_| ())));
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker.finish(self.probe, self.cooldown, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Result<ProviderOutput, ProviderError> {
        Err(ProviderError::new("p", ErrorClass::Transient, "HTTP 503"))
    }

    fn answered() -> Result<ProviderOutput, ProviderError> {
        Ok(ProviderOutput { observations: Vec::new(), usage: Default::default(), model: "m".into(), warnings: vec![] })
    }

    const COOL: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn it_says_how_long_it_stays_open() {
        let b = Breaker::default();
        assert_eq!(b.open_for(), None);
        for _ in 0..TRIP_AFTER {
            b.admit(COOL).await.unwrap().finish(&failed());
        }
        assert_eq!(b.open_for(), Some(COOL));
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(b.open_for(), Some(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(b.open_for(), Some(Duration::ZERO), "half-open: a probe decides");
        b.admit(COOL).await.unwrap().finish(&answered());
        assert_eq!(b.open_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_calls_in_a_row_bench_it_and_one_probe_decides() {
        let b = Breaker::default();
        for _ in 0..TRIP_AFTER {
            b.admit(COOL).await.unwrap().finish(&failed());
        }
        assert!(b.is_benched());
        assert!(b.admit(COOL).await.unwrap_err().contains("benched for 60 s more"));
        tokio::time::advance(COOL).await;
        assert!(!b.is_benched(), "half-open after the cooldown");
        let probe = b.admit(COOL).await.unwrap();
        assert!(b.is_benched(), "one probe at a time");
        assert!(b.admit(COOL).await.unwrap_err().contains("one probe call"));
        probe.finish(&failed());
        assert!(b.admit(COOL).await.unwrap_err().contains("benched for 60 s more"), "a failed probe benches it again");
        tokio::time::advance(COOL).await;
        b.admit(COOL).await.unwrap().finish(&answered());
        let many: Vec<_> = futures_now(&b, 10).await;
        assert_eq!(many.len(), 10, "answered: no cap on calls in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn bad_input_says_nothing_of_the_providers_health() {
        let b = Breaker::default();
        for _ in 0..TRIP_AFTER * 2 {
            b.admit(COOL).await.unwrap().finish(&Err(ProviderError::new("p", ErrorClass::Fatal, "no frames")));
        }
        assert!(!b.is_benched(), "a healthy provider is not benched for the job's own faults");
    }

    /// A refusal by a content policy, read as each protocol reads it: the
    /// job's content, not the provider's health.
    #[tokio::test(start_paused = true)]
    async fn content_policy_refusals_say_nothing_of_health() {
        let job = crate::provider::Job {
            task: crate::schema::Task::Describe,
            input: crate::provider::JobInput::Text("t".into()),
            prompt: "p".into(),
            prompt_version: "p@1".into(),
            max_output_tokens: 8,
            span: None,
        };
        let refused = br#"{"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": null, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}"#;
        let openai = crate::provider::openai_compat::translate::parse_response(refused, &job, "p").unwrap_err();
        let blocked = br#"{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}"#;
        let gemini = crate::provider::gemini::translate::parse_response(blocked, &job, "p").unwrap_err();
        let b = Breaker::default();
        for e in [openai, gemini] {
            for _ in 0..TRIP_AFTER * 2 {
                let ticket = b.admit(COOL).await.unwrap_or_else(|why| panic!("benched for a refusal ({e}): {why}"));
                ticket.finish(&Err(e.clone()));
            }
            assert!(!b.is_benched(), "benched for a refusal: {e}");
        }
    }

    async fn futures_now(b: &Breaker, n: usize) -> Vec<Ticket<'_>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(tokio::time::timeout(Duration::from_millis(1), b.admit(COOL)).await.unwrap().unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn an_unproven_provider_gets_a_few_calls_at_once_and_a_cancelled_one_counts_nothing() {
        let b = Breaker::default();
        let out = futures_now(&b, UNPROVEN_CALLS as usize).await;
        assert!(tokio::time::timeout(Duration::from_secs(1), b.admit(COOL)).await.is_err(), "the next one waits");
        drop(out);
        let mut out = futures_now(&b, UNPROVEN_CALLS as usize).await;
        let first = out.remove(0);
        first.finish(&answered());
        assert_eq!(futures_now(&b, 10).await.len(), 10, "answered once: the cap is lifted");
    }

    #[tokio::test(start_paused = true)]
    async fn not_sent_and_slow_down_answers_say_nothing_of_health() {
        let b = Breaker::default();
        let mut e = ProviderError::new("p", ErrorClass::Transient, "HTTP 429");
        e.status = Some(429);
        let mut over = ProviderError::new("p", ErrorClass::FallBack, "over budget");
        over.not_sent = true;
        for _ in 0..10 {
            b.admit(COOL).await.unwrap().finish(&Err(e.clone()));
            b.admit(COOL).await.unwrap().finish(&Err(over.clone()));
        }
        assert!(!b.is_benched());
    }
}
