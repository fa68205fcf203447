//! The native API for long work: uploads, runs, their events and reports,
//! plans, providers, health and metrics.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

mod info;
mod jobs;
pub mod metrics;
pub mod retention;
mod videos;

use super::keys::Caller;
use super::runs::Run;
use super::{ApiError, App};

/// The native API's routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        // An upload is capped by server.max_upload_bytes as it is written.
        .route("/v1/videos", post(videos::create).layer(DefaultBodyLimit::disable()))
        .route("/v1/videos/{id}", get(videos::get))
        .route("/v1/plan", post(info::plan))
        .route("/v1/providers", get(info::providers))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/runs", get(list_runs).post(jobs::submit))
        .route("/v1/runs/{id}/events", get(jobs::events))
        .route("/v1/runs/{id}", get(run_status).delete(cancel_run))
        .route("/v1/runs/{id}/{file}", get(report))
}

async fn healthz(State(app): State<App>) -> Json<Value> {
    let (running, waiting) = app.runs.load();
    Json(json!({ "status": "ok", "runs": { "running": running, "waiting": waiting } }))
}

/// A run as the API shows it: its state, and its report once done.
fn run_json(run: &Run) -> Result<Value, ApiError> {
    let mut body = serde_json::to_value(run.state()).map_err(|e| ApiError::invalid(e.to_string()))?;
    body["id"] = json!(run.id);
    body["created"] = json!(run.created_unix_s);
    Ok(body)
}

/// The run `id`, held here or (a shared journal) by another instance, if
/// `caller` may see it.
pub(super) async fn found(app: &App, caller: &Caller, id: i64) -> Result<std::sync::Arc<super::runs::Run>, ApiError> {
    let run = app.runs.find(id).await.map_err(|e| ApiError::from(&e))?;
    run.filter(|r| caller.sees(r.key.as_deref())).ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

/// 409 for what only the instance holding a run can do.
pub(super) fn elsewhere(id: i64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "invalid_request_error",
        format!(
            "run {id} is worked on by another instance sharing this journal: its status and report \
             are served here, its events and cancelling by that instance"
        ),
    )
}

/// A run's state, and its report once done.
async fn run_status(State(app): State<App>, caller: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let run = found(&app, &caller, id).await?;
    Ok(Json(run_json(&run)?))
}

/// Every run served that the caller may see, newest first (on a shared
/// database, every instance's).
async fn list_runs(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let runs = app.runs.list_all().await?;
    let seen = runs.iter().filter(|r| caller.sees(r.key.as_deref()));
    let data = seen.map(|r| run_json(r)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// Cancel a run; answers once it is over.
async fn cancel_run(State(app): State<App>, caller: Caller, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let run = found(&app, &caller, id).await?;
    if !app.runs.holds(id) && !run.state().is_over() {
        return Err(elsewhere(id));
    }
    app.runs.cancel(id);
    let state = run.finished().await;
    Ok(Json(json!({ "id": id, "status": state.name() })))
}

/// A finished run's report as `report.json`, `report.md`, `report.srt` or
/// `report.vtt`; 409 while the run is not done.
async fn report(
    State(app): State<App>,
    caller: Caller,
    Path((id, file)): Path<(i64, String)>,
) -> Result<([(axum::http::header::HeaderName, &'static str); 1], String), ApiError> {
    let run = found(&app, &caller, id).await?;
    let super::runs::RunState::Done { report } = run.state() else {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "invalid_request_error",
            format!("run {id} is {}; its report comes when it is done", run.state().name()),
        ));
    };
    let (kind, body) = match file.as_str() {
        "report.json" => {
            ("application/json", serde_json::to_string_pretty(&report).map_err(|e| ApiError::invalid(e.to_string()))?)
        }
        "report.md" => ("text/markdown; charset=utf-8", crate::render::markdown(&report)),
        "report.srt" => ("application/x-subrip; charset=utf-8", crate::render::srt(&report.events)),
        "report.vtt" => ("text/vtt; charset=utf-8", crate::render::vtt(&report.events)),
        other => return Err(ApiError::not_found(format!("no {other}: try report.json, .md, .srt or .vtt"))),
    };
    Ok(([(axum::http::header::CONTENT_TYPE, kind)], body))
}
