//! The OpenAI-compatible face: `POST /v1/chat/completions` with a video part,
//! `GET /v1/models`.

use axum::Router;

use super::App;

pub fn routes() -> Router<App> {
    Router::new()
}
