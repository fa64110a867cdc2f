//! `GET /health`: liveness, queue depth, the store's state, the live claude processes (idle
//! ones kept for sessions, spares, their memory) and the claude CLI's version; no
//! auth, no rate limit. Fast whatever the CLI does: it reads the last probe of the CLI and never
//! starts one. `status` is `"degraded"` while the store cannot save or the shared queue cannot
//! be reached (writes, or new tasks, answer 503 then);
//! the answer stays 200: the server is alive, serves reads and recovers by itself, so a
//! liveness check must not restart it.

use serde_json::{json, Value};

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};

pub fn get(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let counts = app.queue.counts();
    let (pending, processing) = match &counts {
        Ok((pending, processing)) => (json!(pending), json!(processing)),
        Err(_) => (Value::Null, Value::Null),
    };
    let uptime = (app.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    let cli = app.cli.status(&app.config().claude_path);
    let faults = app.store.faults();
    let store_status = if faults.is_empty() { "ok" } else { "degraded" };
    let reason = (!faults.is_empty()).then(|| faults.join("; "));
    let queue_fault = app.queue.fault().or_else(|| counts.err().map(|e| e.to_string()));
    let status = if faults.is_empty() && queue_fault.is_none() { "ok" } else { "degraded" };
    Ok(Reply::ok(json!({
        "status": status,
        "uptime": uptime,
        "timestamp": crate::model::now_iso(),
        "version": env!("CARGO_PKG_VERSION"),
        "queue": {"pending": pending, "processing": processing, "reason": queue_fault},
        "store": {"status": store_status, "reason": reason},
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
