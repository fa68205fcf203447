//! `vidgate serve`: the gateway as an HTTP service.
//!
//! One [`App`] holds the gateway, the runs it works on, the API keys and the
//! metrics; [`router`] maps the routes onto it:
//!
//! | routes | module |
//! |---|---|
//! | `POST /v1/chat/completions`, `GET /v1/models` (OpenAI-compatible) | [`openai`] |
//! | `/v1/videos`, `/v1/runs…`, `/v1/plan`, `/v1/providers`, `/healthz`, `/metrics` | [`native`] |
//! | API keys, checked on every request | [`keys`] |
//! | the web page at `/` | [`web`] |
//!
//! Every run goes through [`runs::Runs`]: a bounded number work at once, a
//! bounded number wait, and the rest are answered 429 with `Retry-After`.

pub mod keys;
pub mod native;
pub mod openai;
pub mod runs;
pub mod uploads;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use crate::config::ServerConfig;
use crate::gateway::{Gateway, GatewayError, Live, Reload};

pub use runs::{RunState, Runs};

/// Everything the routes share. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// The gateway in force; [`App::reload`] replaces it.
    live: Arc<Live>,
    pub runs: Arc<Runs>,
    pub server: Arc<ServerConfig>,
    pub keys: Arc<keys::Keys>,
    pub metrics: Arc<native::metrics::Metrics>,
    /// Chat bodies read at once (each may hold an inline video in memory):
    /// as many as runs work at once; one more is answered 429.
    pub chat_bodies: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("gateway", &self.gateway()).finish_non_exhaustive()
    }
}

impl App {
    /// The service on `gateway`, with the `[server]` section of its config.
    pub fn new(gateway: Gateway) -> Self {
        let server = Arc::new(gateway.config().server.clone());
        let live = Arc::new(Live::new(Arc::new(gateway)));
        let runs = Arc::new(Runs::new(live.clone(), &server));
        let keys = Arc::new(keys::Keys::from_env(&server.admin_key_env));
        let metrics = Arc::new(native::metrics::Metrics::new());
        let counted = metrics.clone();
        runs.on_finish(Arc::new(move |run, state| counted.run_finished(run, state)));
        let chat_bodies = Arc::new(tokio::sync::Semaphore::new(server.max_concurrent_runs));
        Self { live, runs, server, keys, metrics, chat_bodies }
    }

    /// The gateway new requests and runs work on.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.live.current()
    }

    /// Serve from now on with `config`: providers whose profile changed are
    /// built anew, the others keep their limiters, breakers and clients, and
    /// the journal (spend, reservations, runs) is the same. Runs under way
    /// finish on the config they started with. `[server]` settings are read
    /// at start only: a change there is reported, not applied.
    ///
    /// # Errors
    /// The new config is refused (invalid, or another journal); the one in
    /// force stays.
    pub fn reload(&self, config: crate::config::Config) -> Result<Reload, GatewayError> {
        self.live.reload(config)
    }
}

/// Every route of the service.
pub fn router(app: App) -> Router {
    Router::new()
        .merge(openai::routes())
        .merge(native::routes())
        .merge(web::routes())
        .merge(keys::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), keys::authenticate))
        .with_state(app)
}

/// Serve `app` on `bind` until `shutdown` resolves; then stop taking
/// requests and let the open ones finish.
///
/// # Errors
/// The address cannot be bound, or the listener fails.
pub async fn serve(
    app: App,
    bind: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(address = %listener.local_addr()?, "vidgate serve is listening");
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await
}

/// An error answer, in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    pub code: Option<&'static str>,
    /// The request field at fault, e.g. `messages[0].content[1]`.
    pub param: Option<std::borrow::Cow<'static, str>>,
    /// Seconds, sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, code: None, param: None, retry_after_s: None }
    }

    /// 400: the request cannot be served as sent.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl From<&GatewayError> for ApiError {
    fn from(e: &GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::Input(_) | GatewayError::Media(_) | GatewayError::Fetch(_) | GatewayError::Route(_) => {
                ApiError::invalid(message)
            }
            GatewayError::OverBudget(_) | GatewayError::Failed { over_budget: true, .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_quota", message).code("over_budget")
            }
            GatewayError::Deadline { .. } => ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            GatewayError::Failed { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message),
            GatewayError::Setup(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message),
            GatewayError::LedgerUnavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", message).retry_after(10)
            }
            GatewayError::Config(_) | GatewayError::Journal(_) | GatewayError::Prompt(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            }
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        Self::from(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
