//! The web page at `/`, served from the binary.

use axum::Router;

use super::App;

pub fn routes() -> Router<App> {
    Router::new()
}
