//! The native API for long work: uploads, runs, their events and reports,
//! plans, providers, health and metrics.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, App};

pub fn routes() -> Router<App> {
    Router::new().route("/healthz", get(healthz)).route("/v1/runs/{id}", get(run_status))
}

async fn healthz(State(app): State<App>) -> Json<Value> {
    let (running, waiting) = app.runs.load();
    Json(json!({ "status": "ok", "runs": { "running": running, "waiting": waiting } }))
}

/// A run's state, and its report once done.
async fn run_status(State(app): State<App>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let run = app.runs.get(id).ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    let mut body = serde_json::to_value(run.state()).map_err(|e| ApiError::invalid(e.to_string()))?;
    body["id"] = json!(run.id);
    body["created"] = json!(run.created_unix_s);
    Ok(Json(body))
}
