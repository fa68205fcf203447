//! API keys: who may call the service, and what each may spend.
//!
//! [`authenticate`] runs before every route: a request carries its key as
//! `Authorization: Bearer …` or `x-api-key`, except `GET /healthz` and the
//! web page (`/`, `/assets/…`), which are public. The key is either the
//! admin key from the environment variable `server.admin_key_env` (read at
//! start) or a key made with `vidgate keys create` (kept hashed in the
//! journal). The resolved [`Caller`] rides in the request's extensions;
//! handlers take it as an argument. A key's runs are paid from its own
//! daily cap (see [`crate::gateway::Account`]), and its requests per minute
//! are limited here.
//!
//! Admin routes: `/metrics` and key management (`POST /v1/keys`,
//! `GET /v1/keys`, `DELETE /v1/keys/{id}`).
//!
//! Keys are never logged, nor echoed in an error.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{ApiError, App};
use crate::gateway::{Account, GatewayError};
use crate::journal::{ApiKey, Journal, KeyError, NewKey};
use crate::secret::Secret;

/// Who sent a request: put in its extensions by [`authenticate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The key's id (`admin` for the environment's admin key); never the key.
    pub id: String,
    pub name: String,
    pub admin: bool,
    /// Who pays for the runs it starts: pass it into a
    /// [`Submission`](super::runs::Submission). None for the environment's
    /// admin key, whose runs only the gateway's caps bound.
    pub account: Option<Account>,
}

impl Caller {
    /// Whether this caller may see a run paid by the key `run_key`: a run
    /// of its own key, or any run for an admin. Another key's runs are not
    /// there for it (404), their ids counting in order as they do.
    pub fn sees(&self, run_key: Option<&str>) -> bool {
        self.admin || run_key == Some(self.id.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(missing_key)
    }
}

/// The keys' state in a running service: the admin key, and each key's
/// request rate.
pub struct Keys {
    /// SHA-256 of the environment's admin key, compared in constant time.
    admin: Option<[u8; 32]>,
    admin_env: String,
    /// One limiter per key with a rate, made with its quota; a key's quota
    /// is fixed, so a key's limiter is kept as long as the key is used.
    limiters: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("admin_env", &self.admin_env)
            .field("admin_key_set", &self.admin.is_some())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Read the admin key from the environment variable `admin_env`, now.
    pub fn from_env(admin_env: &str) -> Self {
        Self::new(admin_env, Secret::from_env(admin_env))
    }

    /// With `admin` as the admin key (read from `admin_env`).
    pub fn new(admin_env: &str, admin: Option<Secret>) -> Self {
        Self { admin: admin.map(|k| sha256(k.expose())), admin_env: admin_env.to_string(), limiters: Mutex::default() }
    }

    fn is_admin_key(&self, presented: &str) -> bool {
        // Equal-length digests, compared without an early exit.
        self.admin.is_some_and(|admin| bool::from(admin.ct_eq(&sha256(presented))))
    }

    /// Whether `key` may make a request now; when not, the seconds to wait.
    fn admit(&self, key: &ApiKey) -> Result<(), u64> {
        let Some(rpm) = key.requests_per_minute.and_then(NonZeroU32::new) else { return Ok(()) };
        let limiter = {
            let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            limiters
                .entry(key.id.clone())
                .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_minute(rpm))))
                .clone()
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    fn forget(&self, id: &str) {
        self.limiters.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// Routes open to every caller, key or not.
fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (path == "/healthz" || path == "/" || path.starts_with("/assets/"))
}

/// Routes for admin keys only.
fn needs_admin(path: &str) -> bool {
    path == "/metrics" || path == "/v1/keys" || path.starts_with("/v1/keys/")
}

/// The key a request carries, if any.
fn presented(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

fn missing_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "no API key: send one as `Authorization: Bearer <key>` or in the `x-api-key` header \
         (make one with `vidgate keys create --name <name>`)",
    )
    .code("missing_api_key")
}

fn invalid_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "the API key is not valid: it is unknown or was revoked",
    )
    .code("invalid_api_key")
}

/// Check the request's key, put its [`Caller`] in the request, and pass it
/// on; or answer 401 (no or a bad key), 403 (an admin route) or 429 (the
/// key's rate).
pub async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if is_public(request.method(), &path) {
        return next.run(request).await;
    }
    let key = presented(&request).map(str::to_string);
    let caller = match resolve(&app, key).await {
        Ok(caller) => caller,
        Err(e) => {
            tracing::info!(method = %request.method(), path = %path, status = e.status.as_u16(), "request refused: {}", e.message);
            return e.into_response();
        }
    };
    if needs_admin(&path) && !caller.admin {
        tracing::info!(key = %caller.id, path = %path, "request refused: an admin route");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!(
                "{path} needs an admin key (one made with `vidgate keys create --admin`, or the key in ${})",
                app.keys.admin_env
            ),
        )
        .code("admin_key_required")
        .into_response();
    }
    tracing::debug!(key = %caller.id, name = %caller.name, method = %request.method(), path = %path, "request");
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn resolve(app: &App, key: Option<String>) -> Result<Caller, ApiError> {
    let key = Secret::new(key.ok_or_else(missing_key)?);
    let key = key.expose();
    if app.keys.is_admin_key(key) {
        return Ok(Caller { id: "admin".into(), name: format!("${}", app.keys.admin_env), admin: true, account: None });
    }
    // A key's hash is looked up; the key itself goes no further.
    let found = app.gateway().journal().find_key(key).await.map_err(|e| ApiError::from(GatewayError::from(e)))?;
    let found = found.ok_or_else(invalid_key)?;
    let admitted = if app.gateway().journal().is_shared_database() {
        admit_shared(app, &found).await?
    } else {
        app.keys.admit(&found)
    };
    admitted.map_err(|wait_s| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "key {:?} may make {} requests a minute: try again in {wait_s} s",
                found.name,
                found.requests_per_minute.unwrap_or_default()
            ),
        )
        .code("rate_limit_exceeded")
        .retry_after(wait_s.max(1))
    })?;
    let account = Account { id: found.id.clone(), max_usd_per_day: found.max_usd_per_day };
    Ok(Caller { id: found.id, name: found.name, admin: found.admin, account: Some(account) })
}

/// [`Keys::admit`] for the instances of a shared database: the key's
/// requests a minute are counted in the database, across all of them.
async fn admit_shared(app: &App, key: &ApiKey) -> Result<Result<(), u64>, ApiError> {
    let Some(rpm) = key.requests_per_minute.filter(|n| *n > 0) else { return Ok(Ok(())) };
    let emission = std::time::Duration::from_secs(60) / rpm;
    let limit = format!("key:{}/requests", key.id);
    let wait = app
        .gateway()
        .journal()
        .take_rate(&limit, 1, emission, rpm)
        .await
        .map_err(|e| ApiError::from(GatewayError::from(e)))?;
    Ok(if wait.is_zero() { Ok(()) } else { Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)) })
}

/// Key management, for admin keys.
pub fn routes() -> Router<App> {
    Router::new().route("/v1/keys", get(list).post(create)).route("/v1/keys/{id}", delete(revoke))
}

/// The body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    #[serde(default)]
    admin: bool,
    max_usd_per_day: Option<f64>,
    requests_per_minute: Option<u32>,
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Journal(e) => ApiError::from(GatewayError::from(e)),
        KeyError::Invalid(m) => ApiError::invalid(m),
        KeyError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "invalid_request_error", m).code("name_taken"),
        KeyError::NotFound(m) => ApiError::not_found(m),
    }
}

/// `f` on the journal, off the async runtime's threads.
async fn on_journal<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Journal) -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    app.gateway().on_journal(move |j| Ok(f(j))).await?
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "permission_error", "key management needs an admin key")
            .code("admin_key_required"))
    }
}

/// Make a key: the answer is the only place it is ever shown.
async fn create(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin_only(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let new = NewKey {
        name: body.name,
        admin: body.admin,
        max_usd_per_day: body.max_usd_per_day,
        requests_per_minute: body.requests_per_minute,
    };
    let made = on_journal(&app, move |j| j.create_key(&new)).await.map_err(key_error)?;
    tracing::info!(by = %caller.id, key = %made.record.id, name = %made.record.name, "API key created");
    let mut body = serde_json::to_value(&made.record).map_err(|e| ApiError::invalid(e.to_string()))?;
    body["key"] = json!(made.key.expose());
    Ok((StatusCode::CREATED, Json(body)))
}

/// Every key, never the keys themselves.
async fn list(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let keys = on_journal(&app, |j| j.list_keys().map_err(KeyError::from)).await.map_err(key_error)?;
    Ok(Json(json!({ "object": "list", "data": keys })))
}

/// Revoke the key with this id (or live name): its next request is refused.
async fn revoke(State(app): State<App>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    admin_only(&caller)?;
    let key = on_journal(&app, move |j| j.revoke_key(&id)).await.map_err(key_error)?;
    app.keys.forget(&key.id);
    tracing::info!(by = %caller.id, key = %key.id, name = %key.name, "API key revoked");
    Ok(Json(serde_json::to_value(&key).map_err(|e| ApiError::invalid(e.to_string()))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    #[test]
    fn public_and_admin_routes() {
        assert!(is_public(&Method::GET, "/healthz") && is_public(&Method::GET, "/assets/app.js"));
        assert!(is_public(&Method::GET, "/") && !is_public(&Method::POST, "/"));
        assert!(!is_public(&Method::GET, "/v1/runs/1") && !is_public(&Method::GET, "/healthz/x"));
        assert!(needs_admin("/metrics") && needs_admin("/v1/keys") && needs_admin("/v1/keys/key_1"));
        assert!(!needs_admin("/v1/keysmith") && !needs_admin("/v1/runs"));
    }

    #[test]
    fn the_key_is_read_from_either_header() {
        let with = |name: &str, value: &str| Request::builder().header(name, value).body(Body::empty()).unwrap();
        assert_eq!(presented(&with("authorization", "Bearer vg-abc")), Some("vg-abc"));
        assert_eq!(presented(&with("authorization", "bearer  vg-abc ")), Some("vg-abc"));
        assert_eq!(presented(&with("x-api-key", "vg-abc")), Some("vg-abc"));
        assert_eq!(presented(&with("authorization", "Basic dXNlcg==")), None);
        assert_eq!(presented(&with("authorization", "Bearer ")), None);
    }

    #[test]
    fn the_admin_key_matches_only_itself() {
        let keys = Keys::new("X", Some(Secret::new("admin-secret-1")));
        assert!(keys.is_admin_key("admin-secret-1"));
        assert!(!keys.is_admin_key("admin-secret-") && !keys.is_admin_key("admin-secret-2") && !keys.is_admin_key(""));
        assert!(!Keys::new("X", None).is_admin_key(""));
        assert!(!format!("{keys:?}").contains("admin-secret"));
    }

    /// A handler takes the caller as an argument.
    #[tokio::test]
    async fn a_handler_sees_the_caller_the_key_resolved_to() {
        let gateway = crate::gateway::Gateway::with_journal(
            crate::Config::builtin().unwrap(),
            crate::journal::Journal::in_memory().unwrap(),
        );
        let made = gateway
            .journal()
            .create_key(&NewKey { name: "app1".into(), max_usd_per_day: Some(2.0), ..NewKey::default() })
            .unwrap();
        let app = App::new(gateway);
        async fn whoami(caller: Caller) -> Json<Value> {
            Json(json!({ "id": caller.id, "name": caller.name, "admin": caller.admin,
                         "cap": caller.account.and_then(|a| a.max_usd_per_day) }))
        }
        let router = Router::new()
            .route("/whoami", get(whoami))
            .layer(axum::middleware::from_fn_with_state(app.clone(), authenticate))
            .with_state(app);
        let ask = |key: Option<&str>| {
            let mut request = Request::builder().uri("/whoami");
            if let Some(key) = key {
                request = request.header("x-api-key", key);
            }
            router.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        let ok = ask(Some(made.key.expose())).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let body: Value =
            serde_json::from_slice(&axum::body::to_bytes(ok.into_body(), 1 << 16).await.unwrap()).unwrap();
        assert_eq!(body, json!({ "id": made.record.id, "name": "app1", "admin": false, "cap": 2.0 }));
        assert_eq!(ask(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ask(Some("vg-nope")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
}
