//! The API (SPEC 6): the route table and one file per resource. Handlers are plain functions
//! of (app, request data) → reply; the `http` module does the I/O around them.

pub mod claude;
mod config;
mod fields;
mod health;
mod metrics;
mod sessions;
mod statistics;
mod stream;
mod tasks;

use crate::http::router::{Method, Router};
use crate::http::Handler;

/// Every route; literal paths come before `:id` ones.
pub fn routes() -> Router<Handler> {
    use Method::*;
    Router::<Handler>::default()
        .public(Get, "/health", health::get)
        .add(Get, "/metrics", metrics::get)
        .add(Get, "/api/config", config::get)
        .add(Put, "/api/config", config::put)
        .add(Get, "/api/statistics", statistics::overview)
        .add(Get, "/api/statistics/summary", statistics::summary)
        .add(Get, "/api/statistics/daily", statistics::daily)
        .add(Get, "/api/statistics/range", statistics::range)
        .add(Get, "/api/statistics/models", statistics::models)
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
        .add(Post, "/api/tasks/async", tasks::create_async)
        .add(Get, "/api/tasks", tasks::list)
        .add(Get, "/api/tasks/queue/status", tasks::queue_status)
        .add(Get, "/api/tasks/:id", tasks::get)
        .add(Get, "/api/tasks/:id/events", stream::follow)
        .add(Delete, "/api/tasks/:id", tasks::cancel)
        .add(Patch, "/api/tasks/:id/priority", tasks::set_priority)
        .add(Post, "/api/tasks/:id/retry", tasks::retry)
}
