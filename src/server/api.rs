//! The native JSON API under `/api/turnstile/v1/` (SPEC H3).

use std::sync::Arc;

use axum::Router;

use super::AppState;

/// The routes of the native API, relative to `/api/turnstile/v1`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
