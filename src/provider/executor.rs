//! The one place a provider speaks HTTP. A protocol hands it requests it
//! built with pure functions and reads the bodies it gets back; the executor
//! does the rest, the same way for every protocol:
//!
//! - authorises the request ([`Auth`]) and adds the protocol's fixed headers;
//! - holds off while the last answer's quota headers said to;
//! - reads the answer within a cap (the error body within a smaller one);
//! - turns a failed answer into a [`ProviderError`] through the one
//!   [`classify`](super::classify) function, with the facts the protocol's
//!   error reader found in the body;
//! - maps transport failures (a timeout may have been billed; no connection
//!   means unreachable; a broken or oversized body; a streamed body whose
//!   file failed was never sent whole, and is not billed);
//! - removes the key or token, and URL credentials, from every error it makes;
//! - sends a request refused with HTTP 401 once more with a new token, where
//!   the credentials are a token that can be fetched anew;
//! - and, once the key is refused, refuses every later call of the run.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use super::auth::Auth;
use super::error::{classify, Cause, ErrorFacts};
use super::http::{self, BodyError, QuotaLeft};
use super::{ErrorClass, ProviderError, SetupError};
use crate::secret::Secret;

/// Answers larger than this are refused rather than held in memory.
pub const ANSWER_CAP: usize = 8 << 20;
/// Error bodies are read only this far.
pub const ERROR_BODY_CAP: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A protocol's reader of its error bodies: pure, `None` when the body is not one.
pub type ErrorReader = fn(&[u8]) -> Option<ErrorFacts>;
/// A protocol's reader of its quota headers: how long to hold off before the next call.
pub type QuotaReader = fn(&HeaderMap) -> Option<Duration>;

/// The `x-ratelimit-*` headers of OpenAI and most compatible servers.
pub fn x_ratelimit_pause(headers: &HeaderMap) -> Option<Duration> {
    QuotaLeft::from_headers(headers).pause()
}

tokio::task_local! {
    static WATCH: Arc<SendWatch>;
}

/// What the executor did within one call, for the layer that cuts the call
/// off at its deadline: a call cut off before any request that may be billed
/// went out (while its token was fetched, say) cost nothing.
#[derive(Debug, Default)]
pub struct SendWatch {
    /// A request went through the executor. A provider that never uses it
    /// (a local model) leaves this unset, and nothing is known.
    used: AtomicBool,
    /// A request that may be billed started to go out.
    sent: AtomicBool,
}

impl SendWatch {
    /// `call`, with what the executor sends within it noted here.
    pub async fn watch<F: Future>(self: Arc<Self>, call: F) -> F::Output {
        WATCH.scope(self, call).await
    }

    /// Whether the call is known to have sent nothing that may be billed.
    pub fn nothing_billed_sent(&self) -> bool {
        self.used.load(Ordering::SeqCst) && !self.sent.load(Ordering::SeqCst)
    }

    fn note(flag: fn(&SendWatch) -> &AtomicBool) {
        // Outside a watched call there is nobody to tell.
        let _ = WATCH.try_with(|watch| flag(watch).store(true, Ordering::SeqCst));
    }
}

/// HTTP for one provider.
#[derive(Debug)]
pub struct Executor {
    provider: String,
    client: reqwest::Client,
    auth: Auth,
    headers: HeaderMap,
    wait_cap: Duration,
    read_error: ErrorReader,
    read_quota: QuotaReader,
    /// Set when the key is refused: the provider is skipped for the rest of
    /// the run, or, for a token source, until its next token is due.
    disabled: AtomicBool,
    /// Quota headers said to hold off until then.
    pause_until: Mutex<Option<Instant>>,
}

/// A successful (2xx) answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Executor {
    /// An executor for `provider`, authorising with `auth`, reading error
    /// bodies with `read_error`, and waiting at most `wait_cap` when asked to.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(provider: &str, auth: Auth, read_error: ErrorReader, wait_cap: Duration) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError {
                provider: provider.into(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            provider: provider.to_string(),
            client,
            auth,
            headers: HeaderMap::new(),
            wait_cap,
            read_error,
            read_quota: x_ratelimit_pause,
            disabled: AtomicBool::new(false),
            pause_until: Mutex::new(None),
        })
    }

    /// Send `name: value` with every request (`anthropic-version`, say).
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        self
    }

    /// Read quota headers with `read` instead of the `x-ratelimit-*` reader.
    #[must_use]
    pub fn with_quota_reader(mut self, read: QuotaReader) -> Self {
        self.read_quota = read;
        self
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The longest wait asked for that is slept rather than handed to the next provider.
    pub fn wait_cap(&self) -> Duration {
        self.wait_cap
    }

    /// An error of this provider.
    pub fn error(&self, class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError::new(self.provider.clone(), class, message)
    }

    /// `text` without the key or token in it.
    pub fn redact(&self, text: &str) -> String {
        self.auth.redact(text)
    }

    /// `err` without the key or token in any text it carries: for errors a
    /// protocol made from a body (a key quoted back in an answer).
    pub fn redacted(&self, err: ProviderError) -> ProviderError {
        err.redacted(|text| self.redact(text))
    }

    /// A request to `url`; nothing is sent until [`Request::send`].
    pub fn request(&self, method: Method, url: impl Into<String>) -> Request<'_> {
        Request {
            exec: self,
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Payload::None,
            authorised: true,
            billed: true,
            cap: ANSWER_CAP,
        }
    }

    fn check_enabled(&self) -> Result<(), ProviderError> {
        // Tokens that were refused are tried again once a new one is due:
        // a process that lives for weeks outlives a lapsed login.
        if self.disabled.load(Ordering::SeqCst) && self.auth.token_due() {
            tracing::info!(provider = %self.provider, "a new bearer token is due: trying the credentials again");
            self.disabled.store(false, Ordering::SeqCst);
        }
        if self.disabled.load(Ordering::SeqCst) {
            return Err(self
                .error(ErrorClass::FallBack, "disabled for this run: it refused our credentials")
                .with_cause(Cause::Auth));
        }
        Ok(())
    }

    async fn hold_off(&self) {
        let pause = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = pause {
            tokio::time::sleep_until(until).await;
        }
    }

    fn note_quota(&self, headers: &HeaderMap) {
        if let Some(pause) = (self.read_quota)(headers) {
            *self.pause_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + pause.min(self.wait_cap));
        }
    }

    /// A failed answer, classified; a refused key disables the provider.
    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = http::read_capped(response, ERROR_BODY_CAP).await.unwrap_or_default();
        let body = self.redact(&String::from_utf8_lossy(&body));
        let facts = (self.read_error)(body.as_bytes());
        let err = self.redacted(classify(&self.provider, status, &body, facts.as_ref(), &headers, self.wait_cap));
        if err.disables_provider {
            self.disabled.store(true, Ordering::SeqCst);
        }
        err
    }

    /// A request that got no answer. `billed`: the provider may have started
    /// on it (a timeout or a broken connection after sending).
    fn send_error(&self, e: &reqwest::Error, url: &str, billed: bool) -> ProviderError {
        if let Some(source) = SourceError::in_chain(e) {
            // Our own file failed, not the network: the server never had the
            // request whole, so nothing was billed and sending again reads
            // the same file.
            let mut err = self
                .error(ErrorClass::Fatal, self.redact(&format!("the request was not sent whole: {source}")))
                .with_cause(Cause::Other);
            err.not_sent = true;
            return err;
        }
        let detail = self.redact(&crate::secret::redact_urls(&http::error_chain(e)));
        let mut err = if e.is_connect() {
            let mut err = self
                .error(ErrorClass::Transient, format!("cannot connect to {}: {detail}", host(url)))
                .with_cause(Cause::Unreachable);
            err.unreachable = true;
            err
        } else if e.is_timeout() {
            let mut err = self.error(ErrorClass::Transient, format!("timed out: {detail}")).with_cause(Cause::Timeout);
            err.maybe_billed = billed;
            err
        } else {
            let mut err =
                self.error(ErrorClass::Transient, format!("the request failed: {detail}")).with_cause(Cause::Transport);
            err.maybe_billed = billed;
            err
        };
        err.status = e.status().map(|s| s.as_u16());
        err
    }

    fn body_error(&self, e: BodyError, billed: bool) -> ProviderError {
        let (class, cause) = match e {
            BodyError::TooLarge { .. } => (ErrorClass::FallBack, Cause::BadAnswer),
            BodyError::Broken(_) => (ErrorClass::Transient, Cause::Transport),
        };
        let mut err = self.redacted(self.error(class, e.to_string()).with_cause(cause));
        err.maybe_billed = billed;
        err
    }
}

/// `host:port` of a URL, for a message that must not show its path or query.
fn host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0))))
        .unwrap_or_else(|| crate::secret::redact_urls(url))
}

/// What a request carries.
enum Payload {
    None,
    /// Bytes held whole, and their content type.
    Bytes(bytes::Bytes, Option<&'static str>),
    /// A body too large to hold, made anew for each send.
    Stream(Streamed),
}

/// A body streamed from its source, made anew for each time it is sent
/// (a resend after a refused token, a retry), with its length known before.
pub struct Streamed {
    pub len: u64,
    pub content_type: &'static str,
    pub make: Box<dyn Fn() -> reqwest::Body + Send + Sync>,
}

/// A streamed body's source failed while the body was sent: its file could
/// not be opened, or was not as long as the body announced. The request never
/// went whole, so the failure is local, not the network's, and costs nothing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {why}")]
pub struct SourceError {
    /// The source, named for a person (a file's path).
    pub what: String,
    pub why: String,
}

impl SourceError {
    pub fn new(what: impl Into<String>, why: impl Into<String>) -> Self {
        Self { what: what.into(), why: why.into() }
    }

    /// The source error behind `e`, when a streamed body's source is what failed.
    fn in_chain<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e SourceError> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<SourceError>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Payload::None => f.write_str("None"),
            Payload::Bytes(bytes, kind) => write!(f, "Bytes({} bytes, {kind:?})", bytes.len()),
            Payload::Stream(s) => write!(f, "Stream({} bytes, {})", s.len, s.content_type),
        }
    }
}

/// One request, built up and then sent once (twice when a token was refused).
#[derive(Debug)]
#[must_use]
pub struct Request<'e> {
    exec: &'e Executor,
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Payload,
    authorised: bool,
    billed: bool,
    cap: usize,
}

impl Request<'_> {
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `body` as JSON.
    ///
    /// # Errors
    /// It cannot be written as JSON (a mistake upstream: fatal).
    pub fn json<T: serde::Serialize + ?Sized>(self, body: &T) -> Result<Self, ProviderError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| self.exec.error(ErrorClass::Fatal, format!("cannot write the request: {e}")))?;
        Ok(self.json_bytes(bytes))
    }

    /// A body already written as JSON.
    pub fn json_bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Payload::Bytes(body.into(), Some("application/json"));
        self
    }

    /// Raw bytes (an upload's chunk).
    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Payload::Bytes(body.into(), None);
        self
    }

    /// A body streamed rather than held (a video inline in JSON).
    pub fn streamed(mut self, body: Streamed) -> Self {
        self.body = Payload::Stream(body);
        self
    }

    /// Send no credentials: the URL carries its own authority (an upload session).
    pub fn unauthorised(mut self) -> Self {
        self.authorised = false;
        self
    }

    /// A call that is never billed (an upload, a state poll, a delete): a
    /// failure to get its answer costs nothing.
    pub fn unbilled(mut self) -> Self {
        self.billed = false;
        self
    }

    /// Refuse answers over `bytes` instead of [`ANSWER_CAP`].
    pub fn cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self
    }

    /// The request as reqwest sends it, with `token` where the credentials are a token.
    fn build(&self, token: Option<&Secret>) -> reqwest::RequestBuilder {
        let exec = self.exec;
        let mut builder = exec.client.request(self.method.clone(), &self.url).headers(exec.headers.clone());
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        builder = match &self.body {
            Payload::None => builder,
            Payload::Bytes(body, content_type) => {
                if let Some(content_type) = content_type {
                    builder = builder.header(CONTENT_TYPE, *content_type);
                }
                builder.body(body.clone())
            }
            Payload::Stream(s) => {
                builder.header(CONTENT_TYPE, s.content_type).header(CONTENT_LENGTH, s.len).body((s.make)())
            }
        };
        if self.authorised {
            builder = exec.auth.apply(builder, token);
        }
        builder
    }

    /// Send it with `token`: the response, whatever its status.
    async fn attempt(&self, token: Option<&Secret>) -> Result<reqwest::Response, ProviderError> {
        let exec = self.exec;
        exec.hold_off().await;
        if self.billed {
            SendWatch::note(|w| &w.sent);
        }
        self.build(token).send().await.map_err(|e| exec.send_error(&e, &self.url, self.billed))
    }

    /// Send it: the answer read whole, or a classified, redacted error. A
    /// token refused with HTTP 401 is fetched anew and the request sent once
    /// more with it, before the refusal counts.
    ///
    /// # Errors
    /// The provider is disabled, the credentials cannot be had, the request
    /// got no answer, the answer is not a success, or its body cannot be read
    /// within the cap.
    pub async fn send(self) -> Result<Answer, ProviderError> {
        let exec = self.exec;
        SendWatch::note(|w| &w.used);
        exec.check_enabled()?;
        let token = match self.authorised {
            true => exec.auth.token(&exec.provider).await.map_err(|e| exec.redacted(e))?,
            false => None,
        };
        let mut response = self.attempt(token.as_ref()).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(refused) = &token {
                if let Some(fresh) = exec.auth.replace(refused, &exec.provider).await.map_err(|e| exec.redacted(e))? {
                    tracing::info!(provider = %exec.provider, "the bearer token was refused (HTTP 401): sending again with a new one");
                    drop(response);
                    response = self.attempt(Some(&fresh)).await?;
                }
            }
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        exec.note_quota(&headers);
        if !response.status().is_success() {
            return Err(exec.status_error(response).await);
        }
        let body = http::read_capped(response, self.cap).await.map_err(|e| exec.body_error(e, self.billed))?;
        Ok(Answer { status, headers, body })
    }
}
