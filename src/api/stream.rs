//! Server-Sent Events (SPEC 11): `stream: true` on `/api/claude` and `/continue` runs the CLI in
//! stream-json mode and relays each event as it arrives (`event: <type>`, `data: <json>`),
//! ending with the result and `event: done`. A client that goes away cancels the run.
//! `GET /api/tasks/:id/events` follows any task the same way, without cancelling it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};

use crate::app::App;
use crate::events::Event;
use crate::http::{ApiError, Ctx, Reply};
use crate::model::{Mode, Task, TaskStatus, TurnRequest};
use crate::tasks;

/// How often an idle stream sends a comment, which is also how a gone client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Chunked, so the client sees where the stream ends while the connection stays usable
/// (tiny_http keeps it open for the client's next request).
const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
                    X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Queues a streamed turn and answers with its events.
pub fn run(app: &App, mut request: TurnRequest) -> Result<Reply, ApiError> {
    request.stream = true;
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    let task = tasks::submit(&app, request, Mode::Sync)?;
    let events = app.events.subscribe(&task.id, || ended(&app, &task.id));
    Ok(Reply::stream(move |writer| relay(&app, &task, events, writer, true)))
}

/// `GET /api/tasks/:id/events`.
pub fn follow(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let task = tasks::get(app, ctx.param("id"))?;
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    let events = app.events.subscribe(&task.id, || ended(&app, &task.id));
    Ok(Reply::stream(move |writer| relay(&app, &task, events, writer, false)))
}

/// The record of a task that has ended: a task that ended before anyone followed it (or, for a
/// run, before its own request did: a DELETE came first) has no live topic, its record says it all.
/// A record that cannot be read counts as not ended: its end, when it comes, is heard.
fn ended(app: &App, id: &str) -> Option<Arc<Task>> {
    match app.store.tasks.get(id) {
        Ok(task) => task.filter(|t| t.status.is_final()),
        Err(e) => {
            log::warn!("{e}");
            None
        }
    }
}

fn relay(app: &App, task: &Task, events: Receiver<Event>, mut out: Box<dyn Write + Send>, cancel_on_disconnect: bool) {
    let opening = json!({"task_id": task.id, "session_id": task.session_id, "status": task.status});
    let mut sent = out.write_all(HEAD.as_bytes()).and_then(|_| write_event(&mut out, "task", &opening.to_string()));
    let mut saw_result = false;
    while sent.is_ok() {
        match events.recv_timeout(KEEP_ALIVE) {
            Ok(Event::Line(line)) => {
                let kind = event_type(&line);
                saw_result |= kind == "result";
                sent = write_event(&mut out, &kind, &line);
            }
            Ok(Event::End(end)) => {
                if !saw_result && end.status != TaskStatus::Completed {
                    let error = json!({"status": end.status, "error": end.error});
                    sent = write_event(&mut out, "error", &error.to_string());
                }
                let _ = sent.and_then(|_| write_event(&mut out, "done", &summary(&end).to_string())).and_then(|_| {
                    out.write_all(b"0\r\n\r\n")?;
                    out.flush()
                });
                return;
            }
            Err(RecvTimeoutError::Timeout) => sent = write_chunk(&mut out, ": keep-alive\n\n"),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
    if cancel_on_disconnect {
        log::info!("task {}: the streaming client went away; cancelling the run", task.id);
        let _ = tasks::cancel(app, &task.id, "its streaming client went away");
    }
}

/// The `type` of a stream-json event (`system`, `assistant`, `stream_event`, `result`, ...).
fn event_type(line: &str) -> String {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "raw".to_string())
}

fn summary(task: &Task) -> Value {
    json!({
        "task_id": task.id,
        "status": task.status,
        "session_id": task.session_id,
        "result": task.result,
        "error": task.error,
        "cost_usd": task.cost_usd,
        "duration_ms": task.duration_ms,
    })
}

fn write_event(out: &mut Box<dyn Write + Send>, kind: &str, data: &str) -> std::io::Result<()> {
    // A line of stream-json has no newline in it; `data:` takes one line.
    write_chunk(out, &format!("event: {kind}\ndata: {data}\n\n"))
}

/// One chunk of the chunked body, sent at once.
fn write_chunk(out: &mut Box<dyn Write + Send>, text: &str) -> std::io::Result<()> {
    write!(out, "{:x}\r\n{text}\r\n", text.len())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_by_their_type() {
        assert_eq!(event_type(r#"{"type":"stream_event","event":{}}"#), "stream_event");
        assert_eq!(event_type(r#"{"type":"result","is_error":false}"#), "result");
        assert_eq!(event_type("not json"), "raw");
    }
}
