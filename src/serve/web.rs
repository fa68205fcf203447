//! The web page at `/`, served from the binary: one HTML page, its script
//! and its style sheet (no CDN, no build step), under a strict
//! Content-Security-Policy; and the thumbnails its timeline shows.
//!
//! The page and its assets are public. Everything else it calls is the
//! native API, with the key the user pastes into the page, sent as
//! `Authorization: Bearer …` (never in a URL).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::{ApiError, App};
use crate::media::{self, Extraction, FrameFormat, Strategy};
use crate::schema::{SamplingMode, SamplingPlan, TimeRange};

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");

/// What the page may load: its own script, style, and API; blob: URLs for
/// thumbnails, the local video and downloads; any http(s) video for URL runs.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
     media-src 'self' blob: https: http:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Thumbnails are never wider than this.
pub const MAX_THUMBNAIL_WIDTH: u32 = 640;

/// The page, its assets, and thumbnails of uploaded videos.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/v1/videos/{id}/thumbnail", get(thumbnail))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    match name.as_str() {
        "app.js" => Ok(page("text/javascript; charset=utf-8", APP_JS)),
        "style.css" => Ok(page("text/css; charset=utf-8", STYLE_CSS)),
        _ => Err(ApiError::not_found(format!("no asset {name:?}"))),
    }
}

/// `?t_ms=N&width=W`.
#[derive(Debug, Deserialize)]
struct ThumbnailQuery {
    #[serde(default)]
    t_ms: u64,
    width: Option<u32>,
}

/// A JPEG of the upload's frame at `t_ms` (clamped into the video), at most
/// [`MAX_THUMBNAIL_WIDTH`] wide.
async fn thumbnail(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<ThumbnailQuery>,
) -> Result<Response, ApiError> {
    let upload = super::uploads::find(&app.server.uploads_dir(), &id)
        .ok_or_else(|| ApiError::not_found(format!("no upload {id:?}")))?;
    let width = query.width.unwrap_or(320);
    if !(16..=MAX_THUMBNAIL_WIDTH).contains(&width) {
        return Err(ApiError::invalid(format!(
            "width {width} is outside 16..={MAX_THUMBNAIL_WIDTH} (the thumbnail's width in pixels)"
        ))
        .param("width"));
    }
    let gateway = app.gateway();
    let config = gateway.config();
    let info = media::probe(&upload.path, &config.limits).await.map_err(|e| ApiError::invalid(e.to_string()))?;
    let t_ms = query.t_ms.min(info.duration_ms.saturating_sub(1));
    let plan = SamplingPlan {
        mode: SamplingMode::Count { count: 1 },
        range: Some(TimeRange { start_ms: t_ms, end_ms: t_ms + 1 }),
        max_frames: 1,
        width,
    };
    let timeout = crate::timecode::seconds(config.limits.extract_timeout_s.min(30.0));
    let format = FrameFormat::Jpeg { quality: config.sampling.jpeg_quality };
    let mut extraction = Extraction::new(&info, &plan, &config.sampling, format, timeout)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    extraction.strategy = Strategy::Seek { times_ms: vec![t_ms] };
    let mut stream = media::extract(extraction).map_err(|e| ApiError::invalid(e.to_string()))?;
    let frame = match stream.next().await {
        Some(frame) => frame.map_err(|e| ApiError::invalid(e.to_string()))?,
        None => return Err(ApiError::not_found(format!("no frame at {t_ms} ms in upload {id}"))),
    };
    let mut response = (StatusCode::OK, frame.data.bytes().to_vec()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(response)
}
