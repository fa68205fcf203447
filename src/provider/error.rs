//! Provider errors, and the one place where a failure is classified.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

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

/// A failed call, carrying what the policies need to decide the next step.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ProviderError {
    pub provider: String,
    pub class: ErrorClass,
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
