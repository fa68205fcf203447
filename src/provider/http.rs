//! What every HTTP backend reads from responses: how long to wait, whether to
//! retry, how much quota is left, and the body, within a size cap.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::timecode;

/// How long the server asked us to wait: `retry-after-ms`, else `Retry-After`
/// in seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(timecode::seconds(ms / 1000.0));
    }
    let value = text("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| timecode::seconds(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(timecode::capped(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)))
}

/// The server's own word on retrying (`x-should-retry: true|false`).
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Quota left, from `x-ratelimit-remaining-*` and `x-ratelimit-reset-*`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QuotaLeft {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    /// The per-minute limits, from `x-ratelimit-limit-*`.
    pub requests_limit: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub requests_reset: Option<Duration>,
    pub tokens_reset: Option<Duration>,
}

impl QuotaLeft {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        Self {
            requests: text("x-ratelimit-remaining-requests").and_then(|v| v.parse().ok()),
            tokens: text("x-ratelimit-remaining-tokens").and_then(|v| v.parse().ok()),
            requests_limit: text("x-ratelimit-limit-requests").and_then(|v| v.parse().ok()),
            tokens_limit: text("x-ratelimit-limit-tokens").and_then(|v| v.parse().ok()),
            requests_reset: text("x-ratelimit-reset-requests").and_then(parse_go_duration),
            tokens_reset: text("x-ratelimit-reset-tokens").and_then(parse_go_duration),
        }
    }

    /// How long to hold off before the next request, when a quota is spent.
    ///
    /// The reset time is until the bucket is *full* again; it refills
    /// continuously, so with the limit known the wait for one request's worth
    /// is `reset / limit` (a request of one token, at least, for tokens).
    pub fn pause(&self) -> Option<Duration> {
        let spent = |left: Option<u64>, reset: Option<Duration>, limit: Option<u64>| match (left, reset) {
            (Some(0), Some(reset)) => Some(match limit.filter(|l| *l > 0) {
                Some(limit) => reset.div_f64(limit as f64).max(Duration::from_millis(1)),
                None => reset,
            }),
            _ => None,
        };
        let requests = spent(self.requests, self.requests_reset, self.requests_limit);
        let tokens = spent(self.tokens, self.tokens_reset, self.tokens_limit);
        match (requests, tokens) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `1s`, `6m0s`, `20ms`, `1h2m3.5s`, or plain seconds.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| timecode::seconds(secs));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    total.is_finite().then(|| timecode::seconds(total))
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is over the {limit}-byte cap")]
    TooLarge { limit: usize },
    #[error("the connection broke while reading the answer: {0}")]
    Broken(String),
}

/// Read the body, refusing to hold more than `limit` bytes.
pub async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| BodyError::Broken(error_chain(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line (reqwest hides the useful part in the source).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_in_every_form() {
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "150"), ("retry-after", "9")])),
            Some(Duration::from_millis(150))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = retry_after(&headers(&[("retry-after", &later)])).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(120));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)])), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
    }

    #[test]
    fn quota_headers_say_when_to_pause() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m30s"),
            ("x-ratelimit-remaining-tokens", "500"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ]);
        let q = QuotaLeft::from_headers(&h);
        assert_eq!(q.pause(), Some(Duration::from_secs(90)), "no limit given: wait for the whole reset");
        let mut h = h;
        h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
        assert_eq!(QuotaLeft::from_headers(&h).pause(), Some(Duration::from_millis(1500)), "one request's refill");
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("x"), None);
        assert_eq!(should_retry(&headers(&[("x-should-retry", "false")])), Some(false));
    }

    /// Huge but finite numbers are cut to the cap, never turned into a panic.
    #[test]
    fn huge_waits_are_capped() {
        let cap = timecode::seconds(timecode::MAX_SECONDS);
        assert_eq!(retry_after(&headers(&[("retry-after", "1e30")])), Some(cap));
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "1e300")])), Some(cap));
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "inf")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")])), Some(cap));
        for reset in ["1e30", "1e300", "99999999999999999999h", "9999999999999999999999999m0.5s"] {
            let h = headers(&[("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", reset)]);
            let q = QuotaLeft::from_headers(&h);
            assert_eq!(q.requests_reset, Some(cap), "{reset}");
            assert_eq!(q.pause(), Some(cap), "{reset}");
        }
        let h = headers(&[
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1e30"),
            ("x-ratelimit-limit-tokens", "1"),
        ]);
        assert_eq!(QuotaLeft::from_headers(&h).pause(), Some(cap));
    }
}
