//! `GET /health`: liveness and queue depth; no auth, no rate limit.

use serde_json::json;

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};

pub fn get(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let (pending, processing) = app.queue.counts();
    let uptime = (app.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    Ok(Reply::ok(json!({
        "status": "ok",
        "uptime": uptime,
        "timestamp": crate::model::now_iso(),
        "version": env!("CARGO_PKG_VERSION"),
        "queue": {"pending": pending, "processing": processing},
    })))
}
