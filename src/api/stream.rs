//! Server-Sent Events (SPEC 11): `stream: true` on `/api/claude` and `/continue` runs the CLI in
//! stream-json mode and relays each event as it arrives (`event: <type>`, `data: <json>`),
//! ending with the result and `event: done`. A client that goes away cancels the run.
//! `GET /api/tasks/:id/events` follows any task the same way, without cancelling it.
//! The `/v1/` APIs stream the same runs in their own event formats (`Format`).

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
fn head(extra: &[(&'static str, String)]) -> String {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n",
    );
    for (name, value) in extra.iter().filter(|(_, v)| !v.contains(['\r', '\n'])) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head + "\r\n"
}

/// How a stream's events are written: ccs's own (`CcsEvents`), or an OpenAI or Anthropic stream.
/// Each method returns the text to send now, whole SSE events ("" for nothing).
pub trait Format: Send {
    /// Headers of the answer besides the event-stream ones.
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// What is sent first.
    fn opening(&mut self, task: &Task) -> String;

    /// What one line of the CLI's stream-json output becomes.
    fn line(&mut self, line: &str) -> String;

    /// What is sent last, from the task's end.
    fn ending(&mut self, app: &App, task: &Task) -> String;
}

/// Queues a streamed turn and answers with its events.
pub fn run(app: &App, request: TurnRequest) -> Result<Reply, ApiError> {
    run_as(app, request, |_| Box::new(CcsEvents::default()))
}

/// Queues a streamed turn and answers with its events in the format `format` makes for its task.
pub fn run_as(
    app: &App,
    mut request: TurnRequest,
    format: impl FnOnce(&Task) -> Box<dyn Format>,
) -> Result<Reply, ApiError> {
    request.stream = true;
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    let task = tasks::submit(&app, request, Mode::Sync)?;
    let events = app.events.subscribe(&task.id, || ended(&app, &task.id));
    let format = format(&task);
    Ok(Reply::stream(move |writer| relay(&app, &task, events, writer, format, true)))
}

/// `GET /api/tasks/:id/events`.
pub fn follow(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let task = tasks::get(app, ctx.param("id"))?;
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    let events = app.events.subscribe(&task.id, || ended(&app, &task.id));
    let format = Box::new(CcsEvents::default());
    Ok(Reply::stream(move |writer| relay(&app, &task, events, writer, format, false)))
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

fn relay(
    app: &App,
    task: &Task,
    events: Receiver<Event>,
    mut out: Box<dyn Write + Send>,
    mut format: Box<dyn Format>,
    cancel_on_disconnect: bool,
) {
    let head = head(&format.headers());
    let mut sent = out.write_all(head.as_bytes()).and_then(|_| write_chunk(&mut out, &format.opening(task)));
    while sent.is_ok() {
        match events.recv_timeout(KEEP_ALIVE) {
            Ok(Event::Line(line)) => sent = write_chunk(&mut out, &format.line(&line)),
            Ok(Event::End(end)) => {
                let _ = sent.and_then(|_| write_chunk(&mut out, &format.ending(app, &end))).and_then(|_| {
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

/// ccs's own events: `task`, then each CLI event under its `type`, then `error` (a run that
/// failed without a result) and `done`.
#[derive(Default)]
struct CcsEvents {
    saw_result: bool,
}

impl Format for CcsEvents {
    fn opening(&mut self, task: &Task) -> String {
        let opening = json!({"task_id": task.id, "session_id": task.session_id, "status": task.status});
        event("task", &opening.to_string())
    }

    fn line(&mut self, line: &str) -> String {
        let kind = event_type(line);
        self.saw_result |= kind == "result";
        event(&kind, line)
    }

    fn ending(&mut self, _app: &App, end: &Task) -> String {
        let mut text = String::new();
        if !self.saw_result && end.status != TaskStatus::Completed {
            text += &event("error", &json!({"status": end.status, "error": end.error}).to_string());
        }
        text + &event("done", &summary(end).to_string())
    }
}

/// The text Claude writes, as it comes, from the CLI's stream-json lines: the token deltas when
/// the CLI sends them (`--include-partial-messages`), else each assistant message's text at
/// once. A later message (after a tool call) begins after a blank line.
#[derive(Default)]
pub struct TextDeltas {
    /// The CLI sends token deltas (so its whole `assistant` messages repeat them).
    partial: bool,
    /// A new message began after some text was sent.
    separate: bool,
    sent: String,
}

impl TextDeltas {
    /// The text `line` adds ("" for none).
    pub fn text_of(&mut self, line: &str) -> String {
        let Ok(event) = serde_json::from_str::<Value>(line) else { return String::new() };
        let text = match event.get("type").and_then(Value::as_str) {
            Some("stream_event") => {
                self.partial = true;
                let inner = &event["event"];
                match inner.get("type").and_then(Value::as_str) {
                    Some("message_start") => {
                        self.separate = !self.sent.is_empty();
                        return String::new();
                    }
                    Some("content_block_delta") if inner["delta"]["type"] == "text_delta" => {
                        inner["delta"]["text"].as_str().unwrap_or_default().to_string()
                    }
                    _ => return String::new(),
                }
            }
            Some("assistant") if !self.partial => {
                self.separate = !self.sent.is_empty();
                let blocks = event["message"]["content"].as_array().cloned().unwrap_or_default();
                blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect()
            }
            _ => return String::new(),
        };
        self.add(text)
    }

    fn add(&mut self, text: String) -> String {
        if text.is_empty() {
            return text;
        }
        let text = if std::mem::take(&mut self.separate) { format!("\n\n{text}") } else { text };
        self.sent.push_str(&text);
        text
    }

    /// At the end of a completed run: its result, when no text was streamed.
    pub fn rest(&mut self, result: &str) -> String {
        if self.sent.is_empty() {
            self.add(result.to_string())
        } else {
            String::new()
        }
    }

    /// Every text sent: the answer as the client holds it.
    pub fn sent(&self) -> &str {
        &self.sent
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

/// One named SSE event. A line of stream-json (or JSON we made) has no newline in it: `data:`
/// takes one line.
pub fn event(kind: &str, data: &str) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

/// One chunk of the chunked body, sent at once; nothing for "" (an empty chunk would end the body).
fn write_chunk(out: &mut Box<dyn Write + Send>, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    write!(out, "{:x}\r\n{text}\r\n", text.len())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_comes_from_deltas_when_the_cli_sends_them_else_from_whole_messages() {
        let delta = |t: &str| {
            json!({"type": "stream_event", "event": {"type": "content_block_delta", "delta": {"type": "text_delta", "text": t}}}).to_string()
        };
        let start = json!({"type": "stream_event", "event": {"type": "message_start"}}).to_string();
        let whole = |t: &str| {
            json!({"type": "assistant", "message": {"content": [{"type": "text", "text": t}, {"type": "tool_use"}]}})
                .to_string()
        };
        let mut d = TextDeltas::default();
        assert_eq!(d.text_of(&start), "");
        assert_eq!((d.text_of(&delta("Hel")), d.text_of(&delta("lo"))), ("Hel".to_string(), "lo".to_string()));
        assert_eq!(d.text_of(&whole("Hello")), "", "the whole message repeats the deltas");
        d.text_of(&start);
        assert_eq!(d.text_of(&delta("Done.")), "\n\nDone.", "a later message follows a blank line");
        assert_eq!(d.rest("Done."), "", "the result was streamed already");
        assert_eq!(d.sent(), "Hello\n\nDone.");
        let mut old = TextDeltas::default();
        assert_eq!(old.text_of(&whole("Let me look.")), "Let me look.");
        assert_eq!(old.text_of(&whole("It is 4.")), "\n\nIt is 4.");
        assert_eq!(old.text_of("not json"), "");
        let mut quiet = TextDeltas::default();
        assert_eq!(quiet.rest("4"), "4", "a run that streamed no text sends its result");
    }

    #[test]
    fn events_are_named_by_their_type() {
        assert_eq!(event_type(r#"{"type":"stream_event","event":{}}"#), "stream_event");
        assert_eq!(event_type(r#"{"type":"result","is_error":false}"#), "result");
        assert_eq!(event_type("not json"), "raw");
    }
}
