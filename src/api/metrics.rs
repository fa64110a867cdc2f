//! `GET /metrics`: Prometheus text format.

use std::fmt::Write;

use serde_json::Value;

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};
use crate::model::TaskStatus;
use crate::{money, stats};

const STATUSES: [TaskStatus; 7] = [
    TaskStatus::Pending,
    TaskStatus::Processing,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Timeout,
    TaskStatus::Cancelled,
    TaskStatus::Interrupted,
];

pub fn get(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    let _ = writeln!(out, "# HELP ccs_build_info The running version.\n# TYPE ccs_build_info gauge");
    let _ = writeln!(out, "ccs_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    gauge(
        &mut out,
        "ccs_uptime_seconds",
        "Seconds since the server started.",
        format!("{:.3}", app.started.elapsed().as_secs_f64()),
    );
    // Left out while the shared queue cannot be reached (a scraper shows a gap, not a zero).
    if let Ok((pending, processing)) = app.queue.counts() {
        gauge(&mut out, "ccs_queue_pending", "Tasks waiting in the queue.", pending.to_string());
        gauge(&mut out, "ccs_queue_processing", "Tasks running now.", processing.to_string());
    }
    gauge(
        &mut out,
        "ccs_workers",
        "Worker threads (taskQueue.concurrency).",
        app.config().task_queue.concurrency.to_string(),
    );

    let live = app.live.counts();
    gauge(
        &mut out,
        "ccs_live_sessions",
        "Idle live claude processes kept for their session.",
        live.sessions.to_string(),
    );
    gauge(&mut out, "ccs_live_spares", "Spare claude processes started ahead.", live.spares.to_string());
    gauge(&mut out, "ccs_live_busy", "Live claude processes answering a turn now.", live.busy.to_string());
    gauge(
        &mut out,
        "ccs_live_rss_bytes",
        "Resident memory of the idle live and spare claude processes.",
        live.rss_bytes.to_string(),
    );

    let tasks = app.store.tasks.all()?;
    let _ = writeln!(out, "# HELP ccs_tasks Stored tasks by status.\n# TYPE ccs_tasks gauge");
    for status in STATUSES {
        let n = tasks.iter().filter(|t| t.status == status).count();
        let _ = writeln!(out, "ccs_tasks{{status=\"{}\"}} {n}", status.name());
    }

    let total = stats::totals(app)?;
    let counter = |out: &mut String, name: &str, help: &str, lines: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    counter(
        &mut out,
        "ccs_cli_runs_total",
        "Finished claude runs by outcome (from the statistics).",
        &[
            ("{outcome=\"success\"}".into(), total.successful_requests.to_string()),
            ("{outcome=\"failure\"}".into(), total.failed_requests.to_string()),
        ],
    );
    counter(
        &mut out,
        "ccs_cost_usd_total",
        "Cost reported by the CLI, in dollars.",
        &[(String::new(), money::to_usd(total.cost_micros).to_string())],
    );
    counter(
        &mut out,
        "ccs_tokens_total",
        "Tokens reported by the CLI.",
        &[
            ("{type=\"input\"}".into(), total.input_tokens.to_string()),
            ("{type=\"output\"}".into(), total.output_tokens.to_string()),
        ],
    );
    if let Some((open, closed)) = crate::http::connection_counts() {
        gauge(
            &mut out,
            "ccs_http_connections",
            "Open HTTP connections (http.maxConnections at most).",
            open.to_string(),
        );
        counter(
            &mut out,
            "ccs_http_connections_closed_total",
            "Idle or slow connections closed to make room for new ones at http.maxConnections.",
            &[(String::new(), closed.to_string())],
        );
    }
    app.metrics.render(&mut out);
    Ok(Reply::ok(Value::String(out)))
}
