//! Uploads, run submission and the event stream of the native API.

use std::convert::Infallible;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::Json;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::progress::Progress;
use crate::schema::{Constraints, SamplingPlan, Task, VideoRequest, VideoSource};
use crate::serve::keys::Caller;
use crate::serve::runs::Run;
use crate::serve::runs::Submission;
use crate::serve::{uploads, ApiError, App};

/// `POST /v1/videos`: a multipart field `file`, streamed to the uploads dir
/// and probed; a file that is not a video is removed and refused.
pub(super) async fn upload(State(app): State<App>, mut form: Multipart) -> Result<(StatusCode, Json<Value>), ApiError> {
    let dir = app.server.uploads_dir();
    while let Some(field) = form.next_field().await.map_err(|e| ApiError::invalid(format!("the form: {e}")))? {
        if field.name() != Some("file") {
            continue;
        }
        let ext = field
            .file_name()
            .and_then(|n| std::path::Path::new(n).extension())
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .to_string();
        let saved = uploads::save(&dir, &ext, app.server.max_upload_bytes, field).await?;
        let info = match crate::media::probe(&saved.path, &app.gateway().config().limits).await {
            Ok(info) => info,
            Err(e) => {
                let _ = std::fs::remove_file(&saved.path);
                return Err(ApiError::invalid(format!("the upload is not a video vidgate can read: {e}")).param("file"));
            }
        };
        return Ok((StatusCode::CREATED, Json(json!({ "id": saved.id, "bytes": saved.bytes, "probe": info }))));
    }
    Err(ApiError::invalid("no field `file` in the form: send the video as multipart field `file`").param("file"))
}

/// The body of `POST /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunBody {
    /// An upload's id.
    video: Option<String>,
    url: Option<String>,
    task: String,
    question: Option<String>,
    what: Option<String>,
    #[serde(default)]
    sampling: Option<SamplingPlan>,
    #[serde(default)]
    constraints: Option<Constraints>,
}

impl RunBody {
    /// The request the body asks for; an upload it names counts as used now
    /// (retention keeps it longer).
    pub(super) fn request(self, app: &App) -> Result<VideoRequest, ApiError> {
        let source = match (self.video, self.url) {
            (Some(id), None) => {
                let found = uploads::find_for_use(&app.server.uploads_dir(), &id).ok_or_else(|| {
                    ApiError::invalid(format!("no upload {id:?}: upload it with POST /v1/videos")).param("video")
                })?;
                VideoSource::Path { path: found.path }
            }
            (None, Some(url)) => VideoSource::Url { url },
            _ => return Err(ApiError::invalid("give either `video` (an upload id) or `url`, not both").param("video")),
        };
        let needed = |v: Option<String>, name: &'static str| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ApiError::invalid(format!("task {} needs `{name}`", self.task)).param(name))
        };
        let task = match self.task.as_str() {
            "describe" => Task::Describe,
            "timeline" => Task::Timeline,
            "ask" => Task::Ask { question: needed(self.question, "question")? },
            "find" => Task::Find { what: needed(self.what, "what")? },
            other => {
                return Err(
                    ApiError::invalid(format!("unknown task {other:?}: describe, timeline, ask or find")).param("task")
                )
            }
        };
        Ok(VideoRequest {
            source,
            task,
            sampling: self.sampling.unwrap_or_default(),
            constraints: self.constraints.unwrap_or_default(),
        })
    }
}

/// `POST /v1/runs`: the run's id at once; the work goes on in the background.
pub(super) async fn submit(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<RunBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let request = body.request(&app)?;
    let run = app.runs.submit(Submission { request, account: caller.account }).await?;
    let id = run.id;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": id,
            "status": run.state().name(),
            "links": {
                "self": format!("/v1/runs/{id}"),
                "events": format!("/v1/runs/{id}/events"),
                "report": format!("/v1/runs/{id}/report.json"),
            }
        })),
    ))
}

/// An event stream's state: the receiver, its run, and whether the run is over.
type Reader = (tokio::sync::broadcast::Receiver<Progress>, Arc<Run>, bool);

/// The first event still buffered after the run ended, if any.
fn drain_next(mut rx: tokio::sync::broadcast::Receiver<Progress>, run: Arc<Run>) -> Option<(Progress, Reader)> {
    loop {
        match rx.try_recv() {
            Ok(event) => return Some((event, (rx, run, true))),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// `GET /v1/runs/{id}/events`: the events so far, then live ones, then
/// `event: end` with the run's status.
pub(super) async fn events(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Some(run) = app.runs.get(id).filter(|r| caller.sees(r.key.as_deref())) else {
        return Err(match super::found(&app, &caller, id).await {
            Ok(_) => super::elsewhere(id),
            Err(e) => e,
        });
    };
    let (history, live) = run.events();
    let past = futures_util::stream::iter(history);
    // Live events until the run is over, then whatever is still buffered;
    // a reader too slow for the channel skips what it missed, and reads on.
    let live = futures_util::stream::unfold((live, run.clone(), false), |(mut rx, run, over)| async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            if over {
                return drain_next(rx, run);
            }
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(event) => return Some((event, (rx, run, false))),
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                _ = run.finished() => return drain_next(rx, run),
            }
        }
    });
    let end_run = run.clone();
    let end = futures_util::stream::once(async move {
        let state = end_run.finished().await;
        let mut data = json!({ "status": state.name() });
        if let crate::serve::RunState::Failed { error, .. } = &state {
            data["error"] = json!(error);
        }
        Event::default().event("end").data(data.to_string())
    });
    let progress = past
        .chain(live)
        .map(|p| Event::default().event("progress").data(serde_json::to_string(&p).unwrap_or_default()));
    Ok(Sse::new(progress.chain(end).map(Ok)).keep_alive(axum::response::sse::KeepAlive::default()))
}
