//! Stored videos: `POST /v1/videos` with a JSON body naming a URL (fetched
//! with the gateway's SSRF guard and `[fetch]` limits, as the CLI fetches),
//! and `GET /v1/videos/{id}`, the stored file with HTTP Range support so a
//! player can seek.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::fetch::FetchError;
use crate::serve::{uploads, ApiError, App};

/// The most bytes a JSON body of `POST /v1/videos` may have.
const MAX_JSON_BYTES: usize = 64 << 10;

/// The JSON body of `POST /v1/videos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlBody {
    url: String,
}

/// `POST /v1/videos`: a multipart upload (field `file`), or a JSON body
/// `{"url": "https://…"}`.
pub(super) async fn create(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    if !json {
        let form = Multipart::from_request(request, &app).await.map_err(|e| {
            ApiError::invalid(format!(
                "{}: send the video as multipart field `file`, or JSON {{\"url\": …}}",
                e.body_text()
            ))
            .param("file")
        })?;
        return Ok(super::jobs::upload(State(app), form).await.into_response());
    }
    // The route takes bodies of any size (uploads are capped as they are
    // written); a JSON body is read whole, so it is capped here.
    let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("a JSON body of POST /v1/videos takes at most {MAX_JSON_BYTES} bytes"),
        )
    })?;
    let body: UrlBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the JSON body: {e}; send {{\"url\": \"https://…\"}}")).param("url"))?;
    Ok(from_url(&app, &body.url).await?.into_response())
}

/// Fetch `url` into the uploads dir (never more than `fetch.max_bytes` nor
/// `server.max_upload_bytes`), probe it, and keep it as an upload.
async fn from_url(app: &App, url: &str) -> Result<(StatusCode, Json<Value>), ApiError> {
    let dir = app.server.uploads_dir();
    tokio::fs::create_dir_all(&dir).await.map_err(|e| server_error(format!("{}: {e}", dir.display())))?;
    let mut limits = app.gateway().config().fetch.clone();
    // The download is written where it stays, so it can be kept by a rename.
    limits.temp_dir = Some(dir.clone());
    limits.max_bytes = limits.max_bytes.min(app.server.max_upload_bytes);
    let setting = if limits.max_bytes < app.gateway().config().fetch.max_bytes {
        "server.max_upload_bytes"
    } else {
        "fetch.max_bytes"
    };
    let got = crate::fetch::fetch(url, &limits, None).await.map_err(|e| refused(e, setting))?;
    // From the URL's path only: `https://host.com` has no extension `com`.
    let url_path = reqwest::Url::parse(&got.final_url).map(|u| u.path().to_string()).unwrap_or_default();
    let ext = std::path::Path::new(&url_path)
        .extension()
        .and_then(|e| e.to_str())
        .map_or_else(|| "bin".to_string(), uploads::extension);
    let id = uploads::new_id();
    let path = dir.join(format!("{id}.{ext}"));
    let bytes = got.bytes;
    let shown = got.final_url.clone();
    got.persist(&path).map_err(|e| server_error(format!("cannot keep the download as {}: {e}", path.display())))?;
    match crate::media::probe(&path, &app.gateway().config().limits).await {
        Ok(info) => Ok((StatusCode::CREATED, Json(json!({ "id": id, "bytes": bytes, "probe": info })))),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(ApiError::invalid(format!("{shown}: not a video vidgate can read: {e}"))
                .param("url")
                .code("not_a_video"))
        }
    }
}

/// A URL that was not fetched: 400 naming it and why, or 500 when the
/// download could not be written here.
/// `setting` is the one that bounds the size.
fn refused(e: FetchError, setting: &str) -> ApiError {
    match e {
        FetchError::Io(e) => server_error(format!("cannot write the download: {e}")),
        FetchError::TooLarge { url, limit } => {
            ApiError::invalid(format!("{url}: the video is larger than the limit of {limit} bytes ({setting})"))
                .param("url")
                .code("url_refused")
        }
        e => ApiError::invalid(e.to_string()).param("url").code("url_refused"),
    }
}

fn server_error(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
}

/// `GET /v1/videos/{id}`: the stored video, with Range requests answered
/// (206) and its content type from its extension; 404 for an id that is
/// not an upload (an id is hex digits only, so it names no other file).
pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let found = uploads::find(&app.server.uploads_dir(), &id)
        .ok_or_else(|| ApiError::not_found(format!("no video {id:?}: upload one with POST /v1/videos")))?;
    let served = tower_http::services::ServeFile::new(&found.path)
        .try_call(request)
        .await
        .map_err(|e| server_error(format!("cannot read video {id}: {e}")))?;
    let mut response = served.into_response();
    // The extension came from the client: whatever it says, this answer is
    // a video or plain bytes, never a page a browser would run.
    let headers = response.headers_mut();
    let is_video =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("video/"));
    if !is_video {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}
