//! Provider errors, and the one place where a failure is classified.

use std::fmt;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Serialize;

use super::http;

/// What the layer above should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth another try on the same provider, after a backoff.
    Transient,
    /// Not worth retrying here; the next provider in the chain should take over.
    FallBack,
    /// Nothing else should be tried (bad input, budget exhausted, cancelled).
    Fatal,
}

/// Why a call failed, by meaning: what a reader such as the breaker decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The key or token was refused.
    Auth,
    /// A quota that no wait within reason refills: the account's, or the day's.
    Quota,
    /// Asked to slow down.
    RateLimited,
    /// The provider is overloaded (503, or Anthropic's 529).
    Overloaded,
    /// The provider does not take this kind of input (a server without vision).
    Unsupported,
    /// A content policy refused the prompt or withheld the answer: the job's
    /// own fault, not the provider's.
    ContentPolicy,
    /// The request was refused as malformed, too large, or for a model that is not there.
    InvalidRequest,
    /// The provider failed on its side.
    Server,
    /// No answer in time.
    Timeout,
    /// No connection could be made.
    Unreachable,
    /// The connection broke, or the answer could not be read whole.
    Transport,
    /// An answer came but cannot be used (garbled, empty, over the cap).
    BadAnswer,
    /// vidgate's own budget (the request's, the day's or a key's) refused
    /// the call before it was sent.
    Budget,
    #[default]
    Other,
}

/// What a protocol reads from an error body, for [`classify`]. Each protocol
/// has one pure function from its error body to these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFacts {
    /// The body's message for a person; empty when it has none.
    pub message: String,
    /// The machine-readable code or status: `invalid_image`, `insufficient_quota`,
    /// `RESOURCE_EXHAUSTED`, `overloaded_error`.
    pub code: Option<String>,
    /// How long the body asks us to wait (Gemini's `RetryInfo`).
    pub retry_delay: Option<Duration>,
    /// A quota that no wait within reason refills, in words (a daily quota,
    /// a limit of 0): the next provider takes over at once.
    pub quota_spent: Option<String>,
    /// The key itself was refused (invalid, expired, leaked), whatever the status.
    pub key_refused: bool,
}

impl ErrorFacts {
    /// One line for a person: the message, then the code.
    pub fn summary(&self) -> String {
        match self.code.as_deref() {
            Some(code) if !code.is_empty() => format!("{} ({code})", self.message),
            _ => self.message.clone(),
        }
    }
}

/// A failed call, carrying what the policies need to decide the next step.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ProviderError {
    pub provider: String,
    pub class: ErrorClass,
    /// Why, by meaning.
    pub cause: Cause,
    pub message: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The start of the response body (at most [`ProviderError::BODY_LIMIT`] bytes),
    /// with any secret already removed by the backend.
    pub body: Option<String>,
    /// How long the provider asked us to wait.
    pub retry_after: Option<Duration>,
    /// The video itself cannot be used here (too large to send, refused as a
    /// video): its frames may still do, on this provider too.
    pub video_unusable: bool,
    /// The provider refused our credentials: skip it for the rest of the run.
    pub disables_provider: bool,
    /// The provider may have billed the call (e.g. it timed out after sending).
    pub maybe_billed: bool,
    /// What the provider reported it billed, when a failed unit still had usage.
    pub billed: Option<Box<crate::schema::Usage>>,
    /// No connection could be made at all (offline, wrong host, server down).
    pub unreachable: bool,
    /// The call was never made (over budget, over a size limit): says
    /// nothing about the provider's health.
    pub not_sent: bool,
}

impl ProviderError {
    pub const BODY_LIMIT: usize = 2048;
    /// How much of the body an error's one line shows.
    pub const BODY_SHOWN: usize = 300;

    pub fn new(provider: impl Into<String>, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            class,
            cause: Cause::Other,
            message: message.into(),
            status: None,
            body: None,
            retry_after: None,
            video_unusable: false,
            disables_provider: false,
            maybe_billed: false,
            billed: None,
            unreachable: false,
            not_sent: false,
        }
    }

    /// An error from an HTTP answer, classified by [`classify_status`].
    pub fn from_status(
        provider: impl Into<String>,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
        wait_cap: Duration,
    ) -> Self {
        let class = classify_status(status, retry_after, wait_cap);
        let message = match retry_after {
            Some(wait) if wait > wait_cap => format!(
                "HTTP {status}: asked to wait {:.0} s, over the {:.0} s cap",
                wait.as_secs_f64(),
                wait_cap.as_secs_f64()
            ),
            _ => format!("HTTP {status}"),
        };
        let mut err = Self::new(provider, class, message);
        err.status = Some(status);
        err.body = Some(truncate(body, Self::BODY_LIMIT).to_string());
        err.retry_after = retry_after;
        err.disables_provider = matches!(status, 401 | 403);
        err
    }

    /// This error, saying why.
    #[must_use]
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = cause;
        self
    }

    /// This error with `redact` applied to every text it carries. Backends
    /// call it last, on the way out, after any body has been decoded into
    /// the message: a key quoted back by the server goes no further.
    #[must_use]
    pub fn redacted(mut self, redact: impl Fn(&str) -> String) -> Self {
        self.message = redact(&self.message);
        self.body = self.body.map(|body| redact(&body));
        self
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Transient
    }

    pub fn should_fall_back(&self) -> bool {
        self.class == ErrorClass::FallBack
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.message)?;
        // The body's start is enough to tell the cause; all of it (2 KiB) would
        // drown the line it ends.
        if let Some(body) = self.body.as_deref().filter(|b| !b.trim().is_empty()) {
            let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown = truncate(&line, Self::BODY_SHOWN);
            write!(f, ": {shown}{}", if shown.len() < line.len() { "…" } else { "" })?;
        }
        Ok(())
    }
}

/// Classify an HTTP status: the single retry rule of vidgate.
///
/// 408, 409, 429 and 5xx are transient, unless the provider asks for a wait
/// longer than `wait_cap`, which is not slept but handed to the next provider.
/// Every other status is not retried: the next provider takes over.
pub fn classify_status(status: u16, retry_after: Option<Duration>, wait_cap: Duration) -> ErrorClass {
    let transient = matches!(status, 408 | 409 | 429) || (500..600).contains(&status);
    if !transient {
        return ErrorClass::FallBack;
    }
    match retry_after {
        Some(wait) if wait > wait_cap => ErrorClass::FallBack,
        _ => ErrorClass::Transient,
    }
}

/// Codes of a request refused by a content policy (OpenAI's, Azure's filter).
const CONTENT_POLICY_CODES: &[&str] = &["content_policy_violation", "content_filter"];
/// Codes of an account with no quota left, which no wait refills.
const QUOTA_CODES: &[&str] = &["insufficient_quota"];

/// The cause an HTTP status alone suggests.
fn status_cause(status: u16) -> Cause {
    match status {
        401 | 403 => Cause::Auth,
        429 => Cause::RateLimited,
        408 => Cause::Timeout,
        503 | 529 => Cause::Overloaded,
        400..=499 => Cause::InvalidRequest,
        500..=599 => Cause::Server,
        _ => Cause::Other,
    }
}

/// Classify a failed HTTP answer: the one function that does, for every
/// protocol. `body` must already have any secret removed; `facts` are what
/// the protocol read from it.
///
/// - The status decides first, by [`classify_status`]; the wait is the body's
///   own (`facts.retry_delay`), else the `retry-after-ms` / `Retry-After` header.
/// - `x-should-retry: false` falls back; `true` retries what the status would
///   not, unless the wait is over the cap.
/// - A body that says "not supported" (a server without vision: llama-server's
///   500 "image input is not supported") falls back: asking again changes nothing.
/// - A content-policy code falls back, caused by the job, not the provider.
/// - A spent quota (`insufficient_quota`, a daily quota, a limit of 0) falls
///   back at once: no wait within reason ends it.
/// - A refused key (401, 403, or the body saying so) disables the provider.
pub fn classify(
    provider: &str,
    status: u16,
    body: &str,
    facts: Option<&ErrorFacts>,
    headers: &HeaderMap,
    wait_cap: Duration,
) -> ProviderError {
    let retry_after = facts.and_then(|f| f.retry_delay).or_else(|| http::retry_after(headers));
    let mut err = ProviderError::from_status(provider, status, body, retry_after, wait_cap);
    err.cause = status_cause(status);
    if let Some(f) = facts.filter(|f| !f.message.is_empty()) {
        err.message = format!("{}: {}", err.message, f.summary());
    }
    match http::should_retry(headers) {
        Some(false) => err.class = ErrorClass::FallBack,
        Some(true) if err.class == ErrorClass::FallBack && retry_after.is_none_or(|w| w <= wait_cap) => {
            err.class = ErrorClass::Transient;
        }
        _ => {}
    }
    let code = facts.and_then(|f| f.code.as_deref()).unwrap_or_default();
    if body.contains("not supported") {
        err.class = ErrorClass::FallBack;
        err.cause = Cause::Unsupported;
    }
    if CONTENT_POLICY_CODES.contains(&code) {
        err.class = ErrorClass::FallBack;
        err.cause = Cause::ContentPolicy;
    }
    if QUOTA_CODES.contains(&code) {
        err.class = ErrorClass::FallBack;
        err.cause = Cause::Quota;
        err.message = format!("HTTP {status}: the account has no quota left ({code})");
    }
    if let Some(spent) = facts.and_then(|f| f.quota_spent.as_deref()).filter(|_| status == 429) {
        err.class = ErrorClass::FallBack;
        err.cause = Cause::Quota;
        err.retry_after = None;
        err.message = format!("HTTP {status}: {spent}");
    }
    if facts.is_some_and(|f| f.key_refused) {
        err.disables_provider = true;
    }
    if err.disables_provider {
        err.class = ErrorClass::FallBack;
        err.cause = Cause::Auth;
    }
    err
}

fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status code through the one rule, pinned as a snapshot.
    #[test]
    fn every_status_is_classified() {
        let cap = Duration::from_secs(30);
        let mut table = String::new();
        for status in 100..600u16 {
            let class = classify_status(status, None, cap);
            if class != ErrorClass::FallBack {
                table.push_str(&format!("{status} {class:?}\n"));
            }
        }
        let transient: Vec<_> = table.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(&transient[..3], ["408", "409", "429"]);
        assert_eq!(transient.len(), 3 + 100, "408, 409, 429 and all of 5xx");
        insta::assert_snapshot!(table.lines().take(6).collect::<Vec<_>>().join("\n"), @r"
        408 Transient
        409 Transient
        429 Transient
        500 Transient
        501 Transient
        502 Transient
        ");
    }

    /// Every kind of failed answer through [`classify`], with what each
    /// protocol's reader would find in its body, pinned as a snapshot: one
    /// row per rule, each written as status, body facts, headers → class,
    /// cause, disabled, wait.
    #[test]
    fn every_failure_is_classified_by_one_function() {
        let said = |message: &str, code: &str| ErrorFacts {
            message: message.into(),
            code: (!code.is_empty()).then(|| code.into()),
            ..ErrorFacts::default()
        };
        let daily = ErrorFacts {
            quota_spent: Some("the daily quota GenerateRequestsPerDay is used up".into()),
            retry_delay: Some(Duration::from_secs(59)),
            ..said("You exceeded your current quota", "RESOURCE_EXHAUSTED")
        };
        let delay =
            ErrorFacts { retry_delay: Some(Duration::from_secs(20)), ..said("slow down", "RESOURCE_EXHAUSTED") };
        let leaked = ErrorFacts { key_refused: true, ..said("API key not valid", "INVALID_ARGUMENT") };
        let llama = r#"{"error":{"code":500,"message":"image input is not supported","type":"server_error"}}"#;
        /// What the row is, status, body, the body's facts, headers.
        type Row<'a> = (&'a str, u16, &'a str, Option<ErrorFacts>, &'a [(&'a str, &'a str)]);
        let rows: Vec<Row> = vec![
            ("bad request", 400, "", None, &[]),
            ("key refused", 401, "", Some(said("Incorrect API key", "invalid_api_key")), &[]),
            ("forbidden", 403, "", None, &[]),
            ("no such model", 404, "", None, &[]),
            ("request timeout", 408, "", None, &[]),
            ("slow down", 429, "", Some(said("Rate limit reached", "rate_limit_exceeded")), &[]),
            ("slow down, 2 s", 429, "", None, &[("retry-after", "2")]),
            ("slow down, 150 ms", 429, "", None, &[("retry-after-ms", "150"), ("retry-after", "9")]),
            ("slow down, an hour", 429, "", None, &[("retry-after", "3600")]),
            ("body's delay first", 429, "", Some(delay), &[("retry-after", "3600")]),
            ("account spent", 429, "", Some(said("You exceeded your current quota", "insufficient_quota")), &[]),
            ("daily quota", 429, "", Some(daily), &[]),
            ("server error", 500, "", None, &[]),
            ("no vision", 500, llama, Some(said("image input is not supported", "server_error")), &[]),
            ("unavailable", 503, "", None, &[]),
            ("overloaded", 529, "", Some(said("Overloaded", "overloaded_error")), &[]),
            ("content policy", 400, "", Some(said("Your request was rejected", "content_policy_violation")), &[]),
            ("key in the body", 400, "", Some(leaked), &[]),
            ("told not to retry", 500, "", None, &[("x-should-retry", "false")]),
            ("told to retry", 400, "", None, &[("x-should-retry", "true")]),
            ("told to retry a key", 401, "", None, &[("x-should-retry", "true")]),
            ("told to retry, an hour", 400, "", None, &[("x-should-retry", "true"), ("retry-after", "3600")]),
        ];
        let mut table = String::new();
        for (what, status, body, facts, pairs) in rows {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            let e = classify("p", status, body, facts.as_ref(), &headers, Duration::from_secs(30));
            let wait = e.retry_after.map_or("-".to_string(), |w| format!("{w:?}"));
            let disables = if e.disables_provider { "disables" } else { "-" };
            table.push_str(&format!(
                "{what:<24} {status} {:<9} {:<14} {disables:<8} {wait}\n",
                format!("{:?}", e.class),
                format!("{:?}", e.cause)
            ));
        }
        insta::assert_snapshot!(table);
    }

    #[test]
    fn a_wait_over_the_cap_falls_back() {
        let cap = Duration::from_secs(30);
        assert_eq!(classify_status(429, Some(Duration::from_secs(2)), cap), ErrorClass::Transient);
        assert_eq!(classify_status(429, Some(Duration::from_secs(3600)), cap), ErrorClass::FallBack);
        assert_eq!(classify_status(400, None, cap), ErrorClass::FallBack);
    }

    #[test]
    fn auth_failures_disable_the_provider() {
        let cap = Duration::from_secs(30);
        let e = ProviderError::from_status("openai", 401, "{\"error\":\"bad key\"}", None, cap);
        assert!(e.disables_provider && e.should_fall_back() && !e.is_retryable());
        assert_eq!(e.to_string(), "openai: HTTP 401: {\"error\":\"bad key\"}");
        let long = "é".repeat(5000);
        let e = ProviderError::from_status("x", 500, &long, None, cap);
        let line = e.to_string();
        assert!(line.len() <= 20 + ProviderError::BODY_SHOWN && line.ends_with("é…"), "{line}");
        assert!(e.body.unwrap().len() <= ProviderError::BODY_LIMIT);
        let pretty = "{\n  \"error\": {\n    \"message\": \"no\"\n  }\n}\n";
        let e = ProviderError::from_status("x", 500, pretty, None, cap);
        assert_eq!(e.to_string(), r#"x: HTTP 500: { "error": { "message": "no" } }"#, "a pretty body on one line");
    }
}
