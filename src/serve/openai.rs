//! The OpenAI-compatible face: `POST /v1/chat/completions` with a video
//! part, `GET /v1/models`.
//!
//! The `model` picks the task (`vidgate/describe`, `vidgate/timeline`,
//! `vidgate/ask`, `vidgate/find`, or a `[router.aliases.NAME]`), the text
//! of the last user message is the question, and the one video part (see
//! [`request`] for the shapes taken) is the video. The run goes through the
//! service's [`Runs`](super::Runs) on the caller's key, as `POST /v1/runs`
//! does: the key's budget, the queue's 429 and restarts apply alike.
//!
//! The answer is the report rendered as Markdown, with `usage` the tokens
//! the providers reported, and the whole report in the vendor field
//! `vidgate: {run_id, report, cost_usd}`. With `stream: true` it comes as
//! `chat.completion.chunk`s, the run's progress as SSE comments before it.
//! Both wait for the run's plan before answering, so a refusal that spends
//! nothing (a key over budget, a URL that cannot be fetched, a file that
//! is no video) is an HTTP error; a failure after that ends the stream with
//! an error chunk.

pub mod request;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use self::request::{ChatRequest, VideoRef};
use super::keys::Caller;
use super::runs::{Run, RunState, Runs, Submission};
use super::{uploads, ApiError, App};
use crate::journal::now_s;
use crate::progress::Progress;
use crate::schema::{Constraints, VideoReport, VideoRequest, VideoSource};

/// The OpenAI-compatible routes. The chat body may carry a data URL as
/// large as `server.max_inline_video_bytes` in base64: its size is checked as it
/// is read (see [`chat_completions`]), not by axum's default limit.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions).layer(DefaultBodyLimit::disable()))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
}

/// When this service started: the models' `created`.
fn started_unix_s() -> i64 {
    static STARTED: OnceLock<i64> = OnceLock::new();
    *STARTED.get_or_init(now_s)
}

fn model_json(model: &request::Model) -> Value {
    json!({ "id": model.id, "object": "model", "created": started_unix_s(), "owned_by": "vidgate" })
}

/// `GET /v1/models`: the four tasks as `vidgate/<task>`, then the router aliases.
async fn list_models(State(app): State<App>) -> Json<Value> {
    let data: Vec<Value> = request::models(app.gateway().config()).iter().map(model_json).collect();
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}` (ids have a `/`).
async fn get_model(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_json(&request::model(app.gateway().config(), &id)?)))
}

/// The largest chat body: a data URL of `max_video_bytes` in base64, and
/// room for the rest of the request.
fn body_limit(max_video_bytes: u64) -> usize {
    let base64 = max_video_bytes.div_ceil(3).saturating_mul(4);
    usize::try_from(base64.saturating_add(1 << 20)).unwrap_or(usize::MAX)
}

/// 413 for a chat body whose inline video passes `max_bytes`.
fn inline_too_large(max_bytes: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!(
            "the inline video is larger than a chat request may carry: {max_bytes} bytes at most \
             (server.max_inline_video_bytes, or server.max_upload_bytes when smaller); \
             upload a larger video with POST /v1/videos and send its id, or send an http(s) URL"
        ),
    )
    .code("upload_too_large")
}

/// `POST /v1/chat/completions`.
async fn chat_completions(State(app): State<App>, caller: Caller, body: Body) -> Result<Response, ApiError> {
    // A body is held whole until its video is on disk: only so many at once,
    // so that memory stays within `max_concurrent_runs` inline videos.
    let reading = app.chat_bodies.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "{} chat requests are being read already (server.max_concurrent_runs); try again shortly",
                app.server.max_concurrent_runs
            ),
        )
        .retry_after(1)
    })?;
    let max = app.server.inline_video_cap();
    let (limit, mut bytes) = (body_limit(max), Vec::new());
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("the body broke off after {} bytes: {e}", bytes.len())))?;
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(inline_too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    drop(bytes);
    let chat = request::parse(body, app.gateway().config())?;
    let task = chat.task()?;
    let ChatRequest { model, stream: streamed, include_usage, video, .. } = chat;
    let inline = matches!(video.video, VideoRef::Inline { .. });
    // The base64 text is gone once decoded: it is not held while the run works.
    let source = video_source(&app, video.video, &video.param).await?;
    drop(reading);
    let decoded = match &source {
        VideoSource::Path { path } if inline => Some(path.clone()),
        _ => None,
    };
    let request = VideoRequest {
        source,
        task,
        sampling: video.sampling,
        constraints: Constraints { allowed_providers: model.chain, ..Constraints::default() },
    };
    let run = match app.runs.submit(Submission { request, account: caller.account }).await {
        Ok(run) => run,
        Err(e) => {
            // Nobody else knows the decoded video: it goes with the refusal.
            if let Some(path) = decoded {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    // A client that goes away stops its run: nobody else knows its id.
    let guard = CancelOnDrop { runs: app.runs.clone(), id: run.id, armed: true };
    let reply = Reply {
        id: format!("chatcmpl-vidgate-{}", run.id),
        created: now_s(),
        model: model.id,
        video_param: video.param,
    };
    if !streamed {
        let state = run.finished().await;
        guard.disarm();
        return Ok(Json(reply.completion(&run, state)?).into_response());
    }
    // The stream opens once the run is planned (or over): a refusal before
    // that is an HTTP error, as it is without streaming.
    if let Some(state) = planned_or_over(&run).await {
        if let RunState::Failed { .. } | RunState::Cancelled = state {
            guard.disarm();
            return Err(reply.error(&run, &state));
        }
    }
    Ok(stream(reply, run, guard, include_usage).into_response())
}

/// Where the run reads the video: an inline video is decoded into the
/// uploads dir and probed first; a URL is fetched by the gateway.
async fn video_source(app: &App, video: VideoRef, param: &str) -> Result<VideoSource, ApiError> {
    let param = param.to_string();
    match video {
        VideoRef::Url(url) => Ok(VideoSource::Url { url }),
        VideoRef::Upload(id) => uploads::find_for_use(&app.server.uploads_dir(), &id)
            .map(|found| VideoSource::Path { path: found.path })
            .ok_or_else(|| {
                ApiError::invalid(format!("no upload {id:?}: upload the video with POST /v1/videos")).param(param)
            }),
        VideoRef::Inline { mime, base64 } => {
            let ext = mime.as_deref().map_or("bin", extension);
            let failed = Arc::new(std::sync::Mutex::new(None::<String>));
            let chunks = Base64Chunks { text: &base64, pos: 0, carry: Vec::new(), failed: failed.clone(), done: false };
            let dir = app.server.uploads_dir();
            let saved =
                match uploads::save(&dir, ext, app.server.inline_video_cap(), futures_util::stream::iter(chunks)).await
                {
                    Ok(saved) => saved,
                    Err(e) if e.code == Some("upload_too_large") => {
                        return Err(inline_too_large(app.server.inline_video_cap()).param(param))
                    }
                    Err(e) => {
                        let bad = failed.lock().unwrap_or_else(|e| e.into_inner()).take();
                        return Err(match bad {
                            Some(why) => ApiError::invalid(format!("the video's base64 cannot be decoded: {why}")),
                            None => e,
                        }
                        .param(param));
                    }
                };
            match crate::media::probe(&saved.path, &app.gateway().config().limits).await {
                Ok(_) => Ok(VideoSource::Path { path: saved.path }),
                Err(e) => {
                    let _ = std::fs::remove_file(&saved.path);
                    Err(ApiError::invalid(format!("the video is not one vidgate can read: {e}")).param(param))
                }
            }
        }
    }
}

/// A file extension for a video media type (ffprobe reads the content anyway).
fn extension(mime: &str) -> &str {
    match mime.strip_prefix("video/").unwrap_or(mime) {
        "quicktime" => "mov",
        "x-matroska" => "mkv",
        "x-msvideo" => "avi",
        "mpeg" => "mpg",
        "ogg" => "ogv",
        "3gpp" => "3gp",
        "x-flv" => "flv",
        other => other,
    }
}

/// Base64 decoded a piece at a time (whitespace skipped, padding optional),
/// so a data URL's video is never held whole a second time.
struct Base64Chunks<'a> {
    text: &'a str,
    pos: usize,
    carry: Vec<u8>,
    /// Why decoding stopped, for the error.
    failed: Arc<std::sync::Mutex<Option<String>>>,
    done: bool,
}

/// Base64 characters decoded per piece (a multiple of 4).
const BASE64_PIECE: usize = 64 * 1024;

impl Iterator for Base64Chunks<'_> {
    type Item = Result<Bytes, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut piece = std::mem::take(&mut self.carry);
        let bytes = self.text.as_bytes();
        while piece.len() < BASE64_PIECE && self.pos < bytes.len() {
            let b = bytes[self.pos];
            self.pos += 1;
            if !b.is_ascii_whitespace() {
                piece.push(b);
            }
        }
        let last = self.pos >= bytes.len();
        if !last {
            self.carry = piece.split_off(piece.len() - piece.len() % 4);
        }
        self.done = last;
        if piece.is_empty() {
            return None;
        }
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        match engine.decode(&piece) {
            Ok(decoded) => Some(Ok(Bytes::from(decoded))),
            Err(e) => {
                let why = format!("{e} (near base64 character {})", self.pos.saturating_sub(piece.len()));
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
                self.done = true;
                Some(Err(why))
            }
        }
    }
}

/// Cancels the run when dropped armed: the client went away.
struct CancelOnDrop {
    runs: Arc<Runs>,
    id: i64,
    armed: bool,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(run = self.id, "the chat client went away: its run is cancelled");
            self.runs.cancel(self.id);
        }
    }
}

/// Wait until the run has its plan, or is over (then its last state).
async fn planned_or_over(run: &Run) -> Option<RunState> {
    let (history, mut live) = run.events();
    if history.iter().any(|e| matches!(e, Progress::Planned { .. })) {
        return None;
    }
    loop {
        tokio::select! {
            got = live.recv() => match got {
                Ok(Progress::Planned { .. }) => return None,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Some(run.finished().await),
            },
            state = run.finished() => return Some(state),
        }
    }
}

/// A failed or cancelled run as an error answer, with its own status.
fn run_error(id: i64, state: &RunState) -> ApiError {
    match state {
        RunState::Failed { error, http_status, .. } => {
            let status = StatusCode::from_u16(*http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let error = ApiError::new(status, error_type(status), error.clone());
            if status == StatusCode::PAYMENT_REQUIRED {
                error.code("over_budget")
            } else {
                error
            }
        }
        _ => ApiError::new(StatusCode::CONFLICT, "invalid_request_error", format!("run {id} was cancelled"))
            .code("run_cancelled"),
    }
}

/// OpenAI's error `type` for a status (as [`ApiError`] gives them).
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "invalid_request_error",
        402 => "insufficient_quota",
        404 => "not_found_error",
        429 => "rate_limit_error",
        502 => "upstream_error",
        503 => "service_unavailable",
        504 => "timeout",
        _ => "server_error",
    }
}

/// OpenAI's `usage` from the tokens the providers reported.
fn usage(report: &VideoReport) -> Value {
    let u = &report.usage;
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens.saturating_add(u.output_tokens),
    })
}

/// What every answer to one request shares.
struct Reply {
    id: String,
    created: i64,
    model: String,
    /// Where the video part is in the request.
    video_param: String,
}

impl Reply {
    /// The error answer of a run that did not end done. A 400 before the
    /// run's plan is the video's fault (it could not be fetched, read or
    /// cut): it names the video part.
    fn error(&self, run: &Run, state: &RunState) -> ApiError {
        let error = run_error(run.id, state);
        let planned = run.events().0.iter().any(|e| matches!(e, Progress::Planned { .. }));
        if error.status == StatusCode::BAD_REQUEST && !planned {
            error.param(self.video_param.clone())
        } else {
            error
        }
    }

    /// The `chat.completion` of a finished run.
    fn completion(&self, run: &Run, state: RunState) -> Result<Value, ApiError> {
        let RunState::Done { report } = state else { return Err(self.error(run, &state)) };
        Ok(json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": crate::render::markdown(&report), "refusal": null },
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": usage(&report),
            "system_fingerprint": null,
            "vidgate": { "run_id": run.id, "cost_usd": report.usage.cost_usd, "report": report },
        }))
    }

    /// A `chat.completion.chunk` with these choices.
    fn chunk(&self, choices: Value, include_usage: bool) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn delta(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Value {
        let choice = json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason });
        self.chunk(json!([choice]), include_usage)
    }
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

/// The streamed answer: a role chunk, the run's progress as comments,
/// then the content, a last chunk with `finish_reason` (and the report in
/// `vidgate`), a usage chunk when asked for, and `[DONE]`; or an error
/// chunk when the run fails.
fn stream(
    reply: Reply,
    run: Arc<Run>,
    guard: CancelOnDrop,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let mut first = reply.delta(json!({ "role": "assistant", "content": "" }), None, include_usage);
        first["vidgate"] = json!({ "run_id": run.id });
        let (history, mut live) = run.events();
        let comment = |p: &Progress| Event::default().comment(serde_json::to_string(p).unwrap_or_default());
        let mut opening = vec![data(&first)];
        opening.extend(history.iter().map(comment));
        for event in opening {
            if tx.send(event).await.is_err() {
                return; // the guard cancels the run
            }
        }
        let state = loop {
            use tokio::sync::broadcast::error::RecvError;
            tokio::select! {
                got = live.recv() => match got {
                    Ok(event) => if tx.send(comment(&event)).await.is_err() { return },
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break run.finished().await,
                },
                state = run.finished() => break state,
                () = tx.closed() => return,
            }
        };
        guard.disarm();
        while let Ok(event) = live.try_recv() {
            let _ = tx.send(comment(&event)).await;
        }
        let mut out = Vec::new();
        match &state {
            RunState::Done { report } => {
                let content = crate::render::markdown(report);
                for piece in content.split_inclusive("\n\n") {
                    out.push(data(&reply.delta(json!({ "content": piece }), None, include_usage)));
                }
                let mut last = reply.delta(json!({}), Some("stop"), include_usage);
                last["vidgate"] = json!({ "run_id": run.id, "cost_usd": report.usage.cost_usd, "report": report });
                out.push(data(&last));
                if include_usage {
                    let mut tail = reply.chunk(json!([]), false);
                    tail["usage"] = usage(report);
                    out.push(data(&tail));
                }
            }
            failed => {
                let e = reply.error(&run, failed);
                let error = json!({ "error": {
                    "message": e.message, "type": e.kind, "param": e.param, "code": e.code, "run_id": run.id,
                } });
                out.push(data(&error));
            }
        }
        out.push(Event::default().data("[DONE]"));
        for event in out {
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Sse::new(events.map(Ok)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Vec<u8>, String> {
        let failed = Arc::default();
        let chunks = Base64Chunks { text, pos: 0, carry: Vec::new(), failed, done: false };
        let mut out = Vec::new();
        for piece in chunks {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    #[test]
    fn base64_is_decoded_piece_by_piece_across_whitespace_and_without_padding() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        assert_eq!(decode(&text).unwrap(), data);
        // Wrapped at 76 columns, as MIME writes it.
        let wrapped: String = text
            .as_bytes()
            .chunks(76)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n");
        assert_eq!(decode(&wrapped).unwrap(), data);
        assert_eq!(decode("aGk").unwrap(), b"hi");
        assert!(decode("aGk*").unwrap_err().contains("Invalid"), "{:?}", decode("aGk*"));
        assert_eq!(decode("").unwrap(), b"");
    }

    #[test]
    fn the_body_limit_leaves_room_for_the_base64_of_the_largest_upload() {
        assert_eq!(body_limit(3), 4 + (1 << 20));
        assert_eq!(body_limit(u64::MAX), usize::MAX, "saturates, never wraps");
    }
}
