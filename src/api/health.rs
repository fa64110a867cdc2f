//! `GET /health`: liveness, queue depth, the store's state, the live claude processes (idle
//! ones kept for sessions, spares, their memory) and the claude CLI's version; no
//! auth, no rate limit. Fast whatever the CLI does: it reads the last probe of the CLI and never
//! starts one. `status` is `"degraded"` while the store cannot save (writes answer 503 then);
//! the answer stays 200: the server is alive, serves reads and recovers by itself, so a
//! liveness check must not restart it.

use serde_json::json;

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};

pub fn get(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let (pending, processing) = app.queue.counts();
    let uptime = (app.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let cli = app.cli.status(&app.config().claude_path);
    let faults = app.store.faults();
    let status = if faults.is_empty() { "ok" } else { "degraded" };
    let reason = (!faults.is_empty()).then(|| faults.join("; "));
    Ok(Reply::ok(json!({
        "status": status,
        "uptime": uptime,
        "timestamp": crate::model::now_iso(),
        "version": env!("CARGO_PKG_VERSION"),
        "queue": {"pending": pending, "processing": processing},
        "store": {"status": status, "reason": reason},
        "live": app.live.counts(),
        "cli": {
            "path": cli.path,
            "version": cli.version,
            "error": cli.error,
            "probing": cli.probing,
            "probe_ms": cli.probe_ms,
        },
    })))
}
