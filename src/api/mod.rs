//! The API (SPEC 6): the route table and one file per resource. Handlers are plain functions
//! of (app, request data) → reply; the `http` module does the I/O around them.

mod claude;
mod fields;
mod health;
mod sessions;

use crate::http::router::{Method, Router};
use crate::http::Handler;

/// Every route; literal paths come before `:id` ones.
pub fn routes() -> Router<Handler> {
    use Method::*;
    Router::<Handler>::default()
        .add(Get, "/health", health::get)
        .add(Post, "/api/claude", claude::post)
        .add(Post, "/api/claude/batch", claude::batch)
        .add(Post, "/api/sessions", sessions::create)
        .add(Get, "/api/sessions", sessions::list)
        .add(Get, "/api/sessions/search", sessions::search)
        .add(Get, "/api/sessions/:id", sessions::get)
        .add(Delete, "/api/sessions/:id", sessions::delete)
        .add(Get, "/api/sessions/:id/stats", sessions::stats)
        .add(Post, "/api/sessions/:id/continue", sessions::continue_turn)
        .add(Patch, "/api/sessions/:id/status", sessions::set_status)
}

/// Now, as the API writes timestamps (RFC 3339, milliseconds, UTC).
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
