//! Requests per minute, tokens per minute, requests per day and a concurrency
//! cap, per provider. Every limiter must pass; a request larger than the token
//! allowance is refused at once rather than waited on forever, and so is a
//! request once the day's are spent: the next provider takes it instead of
//! waiting hours. A wait the provider asks for (`Retry-After`) holds every
//! call to it, not only the one that was told.
//!
//! The buckets are this process's, or rows that every instance of one
//! PostgreSQL journal shares ([`SharedRates`], see
//! [`LimitState::shared`]): then the provider's requests and tokens per
//! minute and requests per day hold for all of them together, the requests
//! paced so that no minute holds more than the limit, and a wait the
//! provider asks of one instance holds the requests of all. The
//! concurrency cap stays per instance.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::RateLimits;
use crate::provider::{ErrorClass, Estimate, Job, Provider, ProviderError, ProviderOutput};

/// The share of a stated limit that is used.
const SAFETY: f64 = 0.97;
/// The longest pause a provider's answer can impose on the calls after it.
const LONGEST_PAUSE: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

pub struct RateLimited {
    inner: Arc<dyn Provider>,
    state: Arc<LimitState>,
}

/// What a provider's limits hold: the buckets, the day's count, the calls in
/// flight and the pause it asked for. One per provider, shared by the layers
/// built for it, and kept across a config reload that leaves its profile as
/// it was (the calls it made still count).
pub struct LimitState {
    buckets: Buckets,
    /// The tokens a minute, which one call may not pass.
    tokens_per_minute: Option<u32>,
    requests_per_day: Option<u32>,
    slots: Option<Arc<Semaphore>>,
    pause: Mutex<Pause>,
}

/// Where the requests and tokens a minute and the requests a day are counted.
enum Buckets {
    /// In this process.
    Local {
        requests: Option<DefaultDirectRateLimiter>,
        tokens: Option<DefaultDirectRateLimiter>,
        day: Option<DayQuota>,
    },
    /// In rows every instance shares, `{key}/requests`, `{key}/tokens` and
    /// `{key}/day`.
    Shared { rates: Arc<dyn SharedRates>, key: String, requests: Option<Gcra>, tokens: Option<Gcra>, day: Option<Gcra> },
}

/// Rate limits that several processes take from together (the journal's
/// rows on PostgreSQL).
#[async_trait]
pub trait SharedRates: Send + Sync {
    /// Take `cells` from the limit `key`, which emits one cell every
    /// `emission` and holds at most `burst`: zero when taken, else how long
    /// to wait before asking again (nothing was taken).
    ///
    /// # Errors
    /// The limits cannot be read or written: the call must not be sent.
    async fn take(&self, key: &str, cells: u32, emission: Duration, burst: u32) -> Result<Duration, String>;

    /// Give out no cell of the limit `key` for `wait` from now (the
    /// provider asked a caller to wait), then one per `emission`.
    ///
    /// # Errors
    /// The limits cannot be written.
    async fn hold(&self, key: &str, wait: Duration, emission: Duration, burst: u32) -> Result<(), String>;
}

/// A limit of `burst` cells, one back every `emission`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gcra {
    emission: Duration,
    burst: u32,
}

impl Gcra {
    /// `n` in each `window`: the window's allowance as the burst, refilled a
    /// little slower than the limit, so clock skew and jitter never tip a
    /// request over it. `None` for a limit of 0.
    fn new(n: u64, window: Duration) -> Option<Self> {
        let burst = n.min(u32::MAX as u64) as u32;
        (burst > 0).then(|| Self { emission: window.div_f64(burst as f64 * SAFETY), burst })
    }

    /// `n` in each `window`, paced: at the same rate, but a burst of only
    /// the 3 % the rate leaves (at least 1), so that no `window`, wherever it
    /// starts, ever holds more than `n`. A whole window's allowance at once
    /// would let up to twice `n` into the window that follows it, which a
    /// provider counting a sliding minute refuses.
    fn paced(n: u64, window: Duration) -> Option<Self> {
        let full = Self::new(n, window)?;
        let spare = (f64::from(full.burst) * (1.0 - SAFETY)).floor() as u32;
        // Rounded up to the nanosecond: never a hair faster than the rate.
        let emission =
            Duration::from_nanos((window.as_nanos() as f64 / (f64::from(full.burst) * SAFETY)).ceil() as u64);
        Some(Self { emission, burst: spare.max(1) })
    }

    fn quota(self) -> Option<Quota> {
        Quota::with_period(self.emission).map(|q| q.allow_burst(NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN)))
    }
}

impl std::fmt::Debug for LimitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitState").finish_non_exhaustive()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl LimitState {
    /// Limits counted in this process.
    pub fn new(limits: &RateLimits) -> Self {
        let local = |n: u64, window| Gcra::new(n, window).and_then(Gcra::quota).map(RateLimiter::direct);
        let buckets = Buckets::Local {
            requests: limits.requests_per_minute.and_then(|n| local(n.into(), MINUTE)),
            tokens: limits.tokens_per_minute.and_then(|n| local(n, MINUTE)),
            day: limits.requests_per_day.and_then(|n| DayQuota::with_clock(n, DefaultClock::default())),
        };
        Self::with_buckets(limits, buckets)
    }

    /// Limits whose requests and tokens a minute and requests a day are
    /// taken from `rates`, under `key` (`name@model`), with every other
    /// process that takes from them, counted once for all: the same share as
    /// [`LimitState::new`]'s, the same bursts for tokens and the day, and
    /// requests a minute paced ([`Gcra::paced`]), never more than the limit
    /// in any minute. The concurrency cap and a pause the provider asks for
    /// stay this process's.
    pub fn shared(limits: &RateLimits, rates: Arc<dyn SharedRates>, key: &str) -> Self {
        let buckets = Buckets::Shared {
            rates,
            key: key.to_string(),
            requests: limits.requests_per_minute.and_then(|n| Gcra::paced(n.into(), MINUTE)),
            tokens: limits.tokens_per_minute.and_then(|n| Gcra::new(n, MINUTE)),
            day: limits.requests_per_day.and_then(|n| Gcra::new(n.into(), DAY)),
        };
        Self::with_buckets(limits, buckets)
    }

    fn with_buckets(limits: &RateLimits, buckets: Buckets) -> Self {
        Self {
            buckets,
            tokens_per_minute: limits.tokens_per_minute.filter(|n| *n > 0).map(|n| n.min(u32::MAX as u64) as u32),
            requests_per_day: limits.requests_per_day.filter(|n| *n > 0),
            slots: limits.max_concurrency.filter(|n| *n > 0).map(|n| Arc::new(Semaphore::new(n as usize))),
            pause: Mutex::default(),
        }
    }

    /// Whether the minute's and the day's limits are shared with other processes.
    pub fn is_shared(&self) -> bool {
        matches!(self.buckets, Buckets::Shared { .. })
    }
}

/// What the provider last asked of every caller.
#[derive(Debug, Default)]
struct Pause {
    /// Calls wait until then (a wait short enough to sit out).
    hold_until: Option<Instant>,
    /// Calls are handed to the next provider until then (a wait too long).
    refuse_until: Option<Instant>,
}

impl Pause {
    /// Note the wait `err` asked for, from now.
    fn note(&mut self, err: &ProviderError) {
        let Some(asked) = err.retry_after.filter(|d| !d.is_zero()) else { return };
        let until = Instant::now() + asked.min(LONGEST_PAUSE);
        let slot = if err.is_retryable() { &mut self.hold_until } else { &mut self.refuse_until };
        *slot = Some(slot.map_or(until, |t| t.max(until)));
    }
}

/// The requests a provider takes in a day: taken one by one, and refused,
/// never waited on, once spent.
struct DayQuota<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock + Clone> DayQuota<C> {
    fn with_clock(per_day: u32, clock: C) -> Option<Self> {
        let limiter = RateLimiter::direct_with_clock(Gcra::new(per_day.into(), DAY)?.quota()?, clock.clone());
        Some(Self { limiter, clock })
    }

    /// Take one request; when the day's are spent, how long until the next.
    fn take(&self) -> Result<(), Duration> {
        self.limiter.check().map_err(|spent| spent.wait_time_from(self.clock.now()))
    }
}

impl RateLimited {
    pub fn new(inner: Arc<dyn Provider>, limits: &RateLimits) -> Self {
        Self::with_state(inner, Arc::new(LimitState::new(limits)))
    }

    /// `inner` under limits whose state is `state` (another layer's, kept).
    pub fn with_state(inner: Arc<dyn Provider>, state: Arc<LimitState>) -> Self {
        Self { inner, state }
    }

    /// Take one of the day's requests, or refuse the call, unsent, so the
    /// next provider takes it.
    async fn take_from_day(&self) -> Result<(), ProviderError> {
        let wait = match &self.state.buckets {
            Buckets::Local { day: Some(day), .. } => day.take().err(),
            Buckets::Shared { day: Some(day), .. } => Some(self.take_shared("day", 1, *day).await?),
            _ => None,
        };
        let (Some(wait), Some(per_day)) = (wait.filter(|w| !w.is_zero()), self.state.requests_per_day) else {
            return Ok(());
        };
        let id = self.inner.id();
        let minutes = wait.as_secs().div_ceil(60);
        Err(not_sent(
            id,
            format!(
                "the {per_day} requests a day of providers.{id}.limits.requests_per_day are spent; the next is \
                 allowed in {} h {:02} min",
                minutes / 60,
                minutes % 60
            ),
        ))
    }

    /// Take `cells` from the shared limit `{key}/{what}`: zero when taken,
    /// else the wait. A limit that cannot be read refuses the call, unsent:
    /// nothing goes out unmetered.
    async fn take_shared(&self, what: &str, cells: u32, gcra: Gcra) -> Result<Duration, ProviderError> {
        let Buckets::Shared { rates, key, .. } = &self.state.buckets else { return Ok(Duration::ZERO) };
        let key = format!("{key}/{what}");
        rates.take(&key, cells, gcra.emission, gcra.burst).await.map_err(|e| {
            not_sent(self.inner.id(), format!("the rate limit {key} shared by every instance cannot be read: {e}"))
        })
    }

    /// Wait until `cells` of the shared limit `{key}/{what}` are taken.
    async fn wait_shared(&self, what: &str, cells: u32, gcra: Option<Gcra>) -> Result<(), ProviderError> {
        let Some(gcra) = gcra else { return Ok(()) };
        loop {
            let wait = self.take_shared(what, cells, gcra).await?;
            if wait.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Wait out a pause the provider asked for; refuse while it asked for
    /// longer than a retry may wait.
    async fn paused(&self) -> Result<(), ProviderError> {
        loop {
            let now = Instant::now();
            let (hold, refuse) = {
                let pause = self.state.pause.lock().unwrap_or_else(|e| e.into_inner());
                (pause.hold_until.filter(|t| *t > now), pause.refuse_until.filter(|t| *t > now))
            };
            if let Some(until) = refuse {
                return Err(not_sent(
                    self.inner.id(),
                    format!(
                        "the provider asked every caller to wait {:.0} s more, over what a retry may wait",
                        (until - now).as_secs_f64().ceil()
                    ),
                ));
            }
            match hold {
                // The pause may have been lengthened meanwhile: look again.
                Some(until) => tokio::time::sleep_until(until).await,
                None => return Ok(()),
            }
        }
    }

    fn check_size(&self, estimate: &Estimate) -> Result<u32, ProviderError> {
        let tokens = estimate.input_tokens.saturating_add(estimate.output_tokens);
        if let Some(per_minute) = &self.state.tokens_per_minute {
            if tokens > *per_minute as u64 {
                return Err(ProviderError::new(
                    self.inner.id(),
                    ErrorClass::FallBack,
                    format!(
                        "one call of ~{tokens} tokens is over the provider's limit of {per_minute} tokens per minute"
                    ),
                ));
            }
        }
        Ok(tokens.clamp(1, u32::MAX as u64) as u32)
    }
}

#[async_trait]
impl Provider for RateLimited {
    forward_to_inner!("RateLimited");

    fn estimate(&self, job: &Job) -> Result<Estimate, ProviderError> {
        let estimate = self.inner.estimate(job)?;
        self.check_size(&estimate)?;
        Ok(estimate)
    }

    async fn run(&self, job: &Job) -> Result<ProviderOutput, ProviderError> {
        let tokens = self.check_size(&self.inner.estimate(job)?)?;
        // Before any wait: a spent day is refused at once.
        self.take_from_day().await?;
        let _slot = match &self.state.slots {
            Some(slots) => Some(slots.clone().acquire_owned().await.map_err(|_| {
                ProviderError::new(self.inner.id(), ErrorClass::Fatal, "the concurrency limiter was closed")
            })?),
            None => None,
        };
        match &self.state.buckets {
            Buckets::Local { requests, tokens: token_limiter, .. } => {
                if let Some(requests) = requests {
                    requests.until_ready().await;
                }
                if let Some(limiter) = token_limiter {
                    let n = NonZeroU32::new(tokens).unwrap_or(NonZeroU32::MIN);
                    limiter.until_n_ready(n).await.map_err(|e| {
                        ProviderError::new(self.inner.id(), ErrorClass::FallBack, format!("token limiter: {e}"))
                    })?;
                }
            }
            Buckets::Shared { requests, tokens: token_gcra, .. } => {
                self.wait_shared("requests", 1, *requests).await?;
                self.wait_shared("tokens", tokens, *token_gcra).await?;
            }
        }
        self.paused().await?;
        let result = self.inner.run(job).await;
        if let Err(err) = &result {
            self.state.pause.lock().unwrap_or_else(|e| e.into_inner()).note(err);
            self.hold_shared(err).await;
        }
        result
    }
}

impl RateLimited {
    /// A wait the provider asked for, to be sat out (a retryable answer),
    /// holds the shared requests of every instance too: no instance sends
    /// the provider another request before it is over.
    async fn hold_shared(&self, err: &ProviderError) {
        let Buckets::Shared { rates, key, requests: Some(gcra), .. } = &self.state.buckets else { return };
        let Some(wait) = err.retry_after.filter(|d| !d.is_zero() && err.is_retryable()) else { return };
        let key = format!("{key}/requests");
        if let Err(e) = rates.hold(&key, wait.min(LONGEST_PAUSE), gcra.emission, gcra.burst).await {
            tracing::warn!(limit = %key, error = %e, "cannot tell the other instances of the provider's pause");
        }
    }
}

/// A refusal of a call that was never sent: the next provider takes it,
/// and it says nothing of this one's health.
fn not_sent(provider: &str, message: String) -> ProviderError {
    let mut err = ProviderError::new(provider, ErrorClass::FallBack, message);
    err.not_sent = true;
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::scripted::ScriptedProvider;
    use std::time::Duration;

    use crate::provider::scripted::text_job as job;

    #[tokio::test]
    async fn a_call_larger_than_the_token_allowance_is_refused_at_once() {
        // The scripted provider estimates 200 tokens a call.
        let limits = RateLimits { tokens_per_minute: Some(150), ..RateLimits::default() };
        let p = Arc::new(ScriptedProvider::new("s"));
        let limited = RateLimited::new(p.clone(), &limits);
        let err = limited.estimate(&job()).unwrap_err();
        assert!(err.to_string().contains("~200 tokens is over the provider's limit of 150 tokens per minute"), "{err}");
        let err =
            tokio::time::timeout(Duration::from_secs(1), limited.run(&job())).await.expect("no hang").unwrap_err();
        assert!(err.should_fall_back());
        assert_eq!(p.calls(), 0);
    }

    #[tokio::test]
    async fn requests_per_minute_space_calls_out_after_the_burst() {
        let limits = RateLimits { requests_per_minute: Some(600), ..RateLimits::default() };
        let limited = RateLimited::new(Arc::new(ScriptedProvider::new("s")), &limits);
        let started = std::time::Instant::now();
        for _ in 0..603 {
            limited.run(&job()).await.unwrap();
        }
        // 600 at once, then one every ~103 ms (600 per minute at 97 %).
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    /// On the runtime's paused clock, so the rounds are counted exactly.
    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_holds() {
        use crate::provider::scripted::Step;
        use crate::schema::Usage;
        let steps = (0..6).map(|_| {
            Step::Delay(Duration::from_millis(50), Box::new(Step::Answer { text: "x".into(), usage: Usage::default() }))
        });
        let p = Arc::new(ScriptedProvider::new("s").with_steps(steps));
        let limits = RateLimits { max_concurrency: Some(2), ..RateLimits::default() };
        let limited = Arc::new(RateLimited::new(p, &limits));
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let l = limited.clone();
                tokio::spawn(async move { l.run(&job()).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(started.elapsed(), Duration::from_millis(150), "six 50 ms calls two at a time take three rounds");
    }

    /// On the runtime's paused clock: a call that waited on a limiter would
    /// let the clock run to the test's timeout at once.
    #[tokio::test(start_paused = true)]
    async fn a_call_over_the_days_requests_is_refused_at_once_unsent() {
        let limits = RateLimits { requests_per_day: Some(2), ..RateLimits::default() };
        let p = Arc::new(ScriptedProvider::new("s"));
        let limited = RateLimited::new(p.clone(), &limits);
        for _ in 0..2 {
            limited.run(&job()).await.unwrap();
        }
        let err = tokio::time::timeout(Duration::from_secs(600), limited.run(&job()))
            .await
            .expect("refused at once, not waited on")
            .unwrap_err();
        assert!(err.should_fall_back() && err.not_sent, "{err}");
        assert_eq!(err.provider, "s");
        // Two a day at 97 %: one every 44 536 s.
        assert_eq!(
            err.message,
            "the 2 requests a day of providers.s.limits.requests_per_day are spent; the next is allowed in 12 h 23 min"
        );
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test]
    async fn a_spent_day_hands_the_call_to_the_next_provider() {
        let limits = RateLimits { requests_per_day: Some(1), ..RateLimits::default() };
        let (a, b) = (Arc::new(ScriptedProvider::new("a")), Arc::new(ScriptedProvider::new("b")));
        let chain = crate::policy::FallbackChain::new(vec![Arc::new(RateLimited::new(a.clone(), &limits)), b.clone()]);
        let by = |o: ProviderOutput| o.observations[0].provider.clone();
        assert_eq!(by(chain.run(&job()).await.unwrap()), "a");
        assert_eq!(by(chain.run(&job()).await.unwrap()), "b");
        assert_eq!((a.calls(), b.calls()), (1, 1));
    }

    #[test]
    fn the_days_requests_come_back_as_the_day_goes_by() {
        let clock = governor::clock::FakeRelativeClock::default();
        let day = DayQuota::with_clock(3, clock.clone()).unwrap();
        for _ in 0..3 {
            day.take().unwrap();
        }
        let wait = day.take().unwrap_err();
        let expected = DAY.div_f64(3.0 * SAFETY);
        assert!(wait.abs_diff(expected) < Duration::from_millis(1), "{wait:?}, expected {expected:?}");
        clock.advance(wait - Duration::from_secs(1));
        assert!(day.take().is_err(), "not yet");
        clock.advance(Duration::from_secs(1));
        day.take().unwrap();
        assert!(day.take().is_err(), "one came back, and was taken");
        assert!(DayQuota::with_clock(0, clock).is_none(), "a limit of 0 is no limit, as the others");
    }

    fn asked_to_wait(secs: u64, class: ErrorClass) -> crate::provider::scripted::Step {
        let mut e = ProviderError::new("s", class, "HTTP 429");
        e.status = Some(429);
        e.retry_after = Some(Duration::from_secs(secs));
        crate::provider::scripted::Step::Fail(e)
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_one_call_was_asked_for_holds_every_call() {
        let p = Arc::new(ScriptedProvider::new("s").with_steps([asked_to_wait(1, ErrorClass::Transient)]));
        let limited = Arc::new(RateLimited::new(p.clone(), &RateLimits::default()));
        assert!(limited.run(&job()).await.unwrap_err().is_retryable());
        let told = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let l = limited.clone();
                tokio::spawn(async move { l.run(&job()).await.map(|_| Instant::now()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(p.calls(), 1, "nothing is sent before the asked time");
        for t in tasks {
            assert!(t.await.unwrap().unwrap() >= told + Duration::from_secs(1));
        }
        assert_eq!(p.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_a_retry_may_take_hands_every_call_on() {
        let p = Arc::new(ScriptedProvider::new("s").with_steps([asked_to_wait(3600, ErrorClass::FallBack)]));
        let limited = RateLimited::new(p.clone(), &RateLimits::default());
        limited.run(&job()).await.unwrap_err();
        let err = limited.run(&job()).await.unwrap_err();
        assert!(err.should_fall_back() && err.not_sent, "{err}");
        assert!(err.message.contains("asked every caller to wait 3600 s more"), "{err}");
        assert_eq!(p.calls(), 1);
        tokio::time::advance(Duration::from_secs(3600)).await;
        limited.run(&job()).await.unwrap();
    }

    #[test]
    fn paced_requests_never_put_more_than_the_limit_in_any_minute() {
        for n in [1u64, 2, 33, 60, 120, 600, 10_000, u64::from(u32::MAX)] {
            let paced = Gcra::paced(n, MINUTE).unwrap();
            // At most the burst, then one per emission, in any minute.
            let most = u64::from(paced.burst) + (MINUTE.as_nanos() / paced.emission.as_nanos()) as u64;
            assert!(most <= n, "{n} a minute: up to {most} in one minute");
            let rate = Gcra::new(n, MINUTE).unwrap().emission;
            assert!(paced.emission.abs_diff(rate) <= Duration::from_nanos(1), "the same rate");
        }
        assert_eq!(Gcra::paced(60, MINUTE).unwrap().burst, 1);
        assert_eq!(Gcra::paced(10_000, MINUTE).unwrap().burst, 300);
        assert!(Gcra::paced(0, MINUTE).is_none());
    }

    /// Limits that cannot be read: every take fails.
    struct Unreadable;

    #[async_trait]
    impl SharedRates for Unreadable {
        async fn take(&self, _: &str, _: u32, _: Duration, _: u32) -> Result<Duration, String> {
            Err("no connection to the database".into())
        }
        async fn hold(&self, _: &str, _: Duration, _: Duration, _: u32) -> Result<(), String> {
            Err("no connection to the database".into())
        }
    }

    #[tokio::test]
    async fn shared_limits_that_cannot_be_read_hand_the_call_on_unsent() {
        let limits = RateLimits { requests_per_minute: Some(60), ..RateLimits::default() };
        let (a, b) = (Arc::new(ScriptedProvider::new("a")), Arc::new(ScriptedProvider::new("b")));
        let state = Arc::new(LimitState::shared(&limits, Arc::new(Unreadable), "a@m"));
        let limited = RateLimited::with_state(a.clone(), state);
        let err = limited.run(&job()).await.unwrap_err();
        assert!(err.should_fall_back() && err.not_sent, "{err}");
        assert!(err.message.contains("the rate limit a@m/requests shared by every instance cannot be read"), "{err}");
        let chain = crate::policy::FallbackChain::new(vec![Arc::new(limited), b.clone()]);
        assert_eq!(chain.run(&job()).await.unwrap().observations[0].provider, "b");
        assert_eq!((a.calls(), b.calls()), (0, 1), "nothing went out unmetered");
        // Unlimited, the shared limits are never asked.
        let free = RateLimited::with_state(
            a.clone(),
            Arc::new(LimitState::shared(&RateLimits::default(), Arc::new(Unreadable), "a@m")),
        );
        free.run(&job()).await.unwrap();
    }

    mod shared {
        use super::*;
        use crate::journal::testing::on_both;
        use crate::journal::Journal;

        fn runtime() -> tokio::runtime::Runtime {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        }

        /// Two instances of one journal, each with its layer of the provider
        /// `s@m` and the provider that layer calls.
        struct Instances {
            journals: Vec<Arc<Journal>>,
            layers: Vec<Arc<RateLimited>>,
            providers: Vec<Arc<ScriptedProvider>>,
        }

        fn two_instances(place: &crate::journal::testing::Place, limits: &RateLimits) -> Instances {
            let journals: Vec<Arc<Journal>> = (0..2).map(|_| Arc::new(place.open())).collect();
            let providers: Vec<_> = (0..2).map(|_| Arc::new(ScriptedProvider::new("s"))).collect();
            let layers = journals
                .iter()
                .zip(&providers)
                .map(|(j, p)| {
                    let state = LimitState::shared(limits, j.clone(), "s@m");
                    assert!(state.is_shared());
                    Arc::new(RateLimited::with_state(p.clone(), Arc::new(state)))
                })
                .collect();
            Instances { journals, layers, providers }
        }

        on_both! {
            /// 120 requests a minute, shared: once another instance spent the
            /// burst (3), six calls through two instances go one per emission
            /// (60 s / (120 × 97 %) ≈ 515 ms), not at once as two local limits
            /// would let them. Only the quota's lower bound is asserted.
            fn requests_per_minute_hold_across_instances(place) {
                let limits = RateLimits { requests_per_minute: Some(120), ..RateLimits::default() };
                let Instances { journals, layers, providers } = two_instances(place, &limits);
                let gcra = Gcra::paced(120, MINUTE).unwrap();
                let elapsed = runtime().block_on(async {
                    let started = std::time::Instant::now();
                    for _ in 0..gcra.burst {
                        let wait = journals[0].take_rate("s@m/requests", 1, gcra.emission, gcra.burst).await.unwrap();
                        assert_eq!(wait, Duration::ZERO);
                    }
                    let calls: Vec<_> = (0..6)
                        .map(|i| {
                            let layer = layers[i % 2].clone();
                            tokio::spawn(async move { layer.run(&job()).await })
                        })
                        .collect();
                    for call in calls {
                        call.await.unwrap().unwrap();
                    }
                    started.elapsed()
                });
                assert_eq!(providers[0].calls() + providers[1].calls(), 6);
                let least = gcra.emission * 6 - Duration::from_millis(5);
                assert!(elapsed >= least, "{elapsed:?}: six cells come back no sooner than {least:?}");
            }
        }

        on_both! {
            /// Two requests a day between two instances: the third call, on
            /// either, is refused at once and handed on unsent; tokens a
            /// minute are counted in the shared row too.
            fn the_days_requests_and_the_tokens_are_counted_once_for_all(place) {
                let limits = RateLimits { requests_per_day: Some(2), tokens_per_minute: Some(1000), ..RateLimits::default() };
                let Instances { journals, layers, providers } = two_instances(place, &limits);
                runtime().block_on(async {
                    layers[0].run(&job()).await.unwrap();
                    layers[1].run(&job()).await.unwrap();
                    for layer in &layers {
                        let err = tokio::time::timeout(Duration::from_secs(5), layer.run(&job()))
                            .await
                            .expect("refused at once")
                            .unwrap_err();
                        assert!(err.should_fall_back() && err.not_sent, "{err}");
                        assert!(err.message.starts_with("the 2 requests a day of providers.s.limits.requests_per_day are spent"), "{err}");
                    }
                    // Two calls of ~200 tokens: 400 of the 1000 taken, so 700 more wait.
                    let gcra = Gcra::new(1000, MINUTE).unwrap();
                    assert_eq!(journals[1].take_rate("s@m/tokens", 600, gcra.emission, gcra.burst).await.unwrap(), Duration::ZERO);
                    assert!(journals[0].take_rate("s@m/tokens", 100, gcra.emission, gcra.burst).await.unwrap() > Duration::ZERO);
                });
                assert_eq!(providers[0].calls() + providers[1].calls(), 2);
            }
        }

        on_both! {
            /// A provider that asks one instance to wait 2 s (a 503 with
            /// Retry-After) holds the other's next request too, though that
            /// one's share of the minute is untouched.
            fn a_wait_the_provider_asks_of_one_instance_holds_every_instance(place) {
                let limits = RateLimits { requests_per_minute: Some(600), ..RateLimits::default() };
                let journals: Vec<Arc<Journal>> = (0..2).map(|_| Arc::new(place.open())).collect();
                let told = ScriptedProvider::new("s");
                let busy = told.transient(Some(Duration::from_secs(2)));
                let providers = [Arc::new(told.with_steps([busy])), Arc::new(ScriptedProvider::new("s"))];
                let layers: Vec<_> = journals
                    .iter()
                    .zip(&providers)
                    .map(|(j, p)| RateLimited::with_state(p.clone(), Arc::new(LimitState::shared(&limits, j.clone(), "s@m"))))
                    .collect();
                let waited = runtime().block_on(async {
                    let err = layers[0].run(&job()).await.unwrap_err();
                    assert!(err.is_retryable(), "{err}");
                    let started = std::time::Instant::now();
                    layers[1].run(&job()).await.unwrap();
                    started.elapsed()
                });
                assert!(waited >= Duration::from_millis(1900), "the other instance sent after {waited:?}");
                assert!(waited < Duration::from_secs(10), "{waited:?}");
                assert_eq!(providers[1].calls(), 1);
            }
        }

        on_both! {
            /// A database that fails the take (here its table is gone) fails
            /// the call unsent, and the chain's next provider takes it.
            fn a_database_that_fails_the_take_hands_the_call_on_unsent(place) {
                let limits = RateLimits { requests_per_minute: Some(60), ..RateLimits::default() };
                let Instances { journals, layers, providers } = two_instances(place, &limits);
                journals[0].sql(|c| c.batch("DROP TABLE rate_limits")).unwrap();
                let next = Arc::new(ScriptedProvider::new("next"));
                let chain = crate::policy::FallbackChain::new(vec![layers[0].clone(), next.clone()]);
                runtime().block_on(async {
                    let err = layers[0].run(&job()).await.unwrap_err();
                    assert!(err.should_fall_back() && err.not_sent, "{err}");
                    assert!(err.message.contains("s@m/requests shared by every instance cannot be read"), "{err}");
                    assert_eq!(chain.run(&job()).await.unwrap().observations[0].provider, "next");
                });
                assert_eq!(providers[0].calls(), 0, "nothing went out unmetered");
            }
        }
    }
}
