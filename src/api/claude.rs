//! `POST /api/claude` (one prompt) and `POST /api/claude/batch` (up to 10). Sync requests are
//! tasks like any other: the answer is sent when the worker is done, while the acceptor thread
//! goes back to taking requests. `async: true` answers 202 with the task id at once.

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::fields::Fields;
use crate::app::App;
use crate::error::Error;
use crate::http::response::{OnGone, Respond};
use crate::http::{ApiError, Ctx, Reply};
use crate::model::{Mode, Task, TaskStatus, TurnRequest};
use crate::money;
use crate::tasks;

/// Every field `/api/claude` takes; `/continue` takes the same but `session_id` and `project_path`.
pub const TURN_FIELDS: &[&str] = &[
    "prompt",
    "project_path",
    "model",
    "session_id",
    "system_prompt",
    "append_system_prompt",
    "max_budget_usd",
    "max_turns",
    "timeout_ms",
    "allowed_tools",
    "disallowed_tools",
    "permission_mode",
    "agent",
    "mcp_config",
    "async",
    "priority",
    "webhook_url",
    "stream",
    "metadata",
];

const PERMISSION_MODES: &[&str] = &["acceptEdits", "bypassPermissions", "default", "dontAsk", "plan"];

/// Reads and validates the fields of one turn.
pub fn turn_request(f: &Fields) -> Result<TurnRequest, ApiError> {
    Ok(TurnRequest {
        prompt: f.required_text("prompt")?,
        session_id: f.text("session_id")?,
        project_path: f.text("project_path")?,
        model: f.text("model")?,
        system_prompt: f.text("system_prompt")?,
        append_system_prompt: f.text("append_system_prompt")?,
        max_budget_usd: f.number("max_budget_usd", 0.0)?,
        max_turns: f.integer("max_turns", 1, 10_000)?.map(|n| n as u32),
        timeout_ms: f.integer("timeout_ms", 100, 86_400_000)?,
        allowed_tools: f.tool_list("allowed_tools")?,
        disallowed_tools: f.tool_list("disallowed_tools")?,
        permission_mode: f.choice("permission_mode", PERMISSION_MODES)?,
        agent: f.text("agent")?,
        mcp_config: f.text_or_json("mcp_config")?,
        metadata: f.object("metadata")?,
        priority: f.integer("priority", 1, 10)?.unwrap_or(5) as u8,
        webhook_url: f.url("webhook_url")?,
        stream: f.boolean("stream")? == Some(true),
    })
}

pub fn post(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let fields = Fields::new(ctx.body.as_ref(), TURN_FIELDS)?;
    let request = turn_request(&fields)?;
    answer_turn(app, request, fields.boolean("async")? == Some(true))
}

/// Queues a turn: async answers 202 at once; `stream` answers with its events; else the result.
pub fn answer_turn(app: &App, request: TurnRequest, asynchronous: bool) -> Result<Reply, ApiError> {
    if asynchronous {
        let task = tasks::submit(app, request, Mode::Async, None)?;
        return Ok(Reply::with_status(202, accepted_body(&task)));
    }
    if request.stream {
        return super::stream::run(app, request);
    }
    run_sync(app, request)
}

/// The 202 answer to an async request.
pub fn accepted_body(task: &Task) -> Value {
    json!({
        "success": true,
        "task_id": task.id,
        "status": task.status,
        "priority": task.priority,
        "session_id": task.session_id,
        "webhook_url": task.request.webhook_url,
    })
}

/// Queues a sync turn; its answer is sent when the task ends.
pub fn run_sync(app: &App, request: TurnRequest) -> Result<Reply, ApiError> {
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    Ok(Reply::later(move |respond| {
        let slot = Arc::new(Mutex::new(Some(respond)));
        let on_done = {
            let slot = slot.clone();
            Box::new(move |end: Result<Arc<Task>, Error>| {
                answer(&slot, end.map_err(ApiError::from).and_then(task_reply))
            })
        };
        match tasks::submit(&app, request, Mode::Sync, Some(on_done)) {
            Ok(task) => Some(cancel_when_gone(app, vec![task.id.clone()])),
            Err(err) => {
                answer(&slot, Err(err.into()));
                None
            }
        }
    }))
}

/// What a sync request's client leaving does: its tasks are cancelled (on a thread of their own:
/// the caller is the HTTP layer's connection thread, which must not wait).
fn cancel_when_gone(app: Arc<App>, task_ids: Vec<String>) -> OnGone {
    Box::new(move || {
        let cancelling = std::thread::Builder::new().name("cancel".into()).spawn(move || {
            // The last first: a batch's later prompts wait while its first ones run, and
            // cancelling a running one frees a worker that would start a waiting one.
            for id in task_ids.iter().rev() {
                log::info!("task {id}: its sync client went away; cancelling it");
                let _ = tasks::cancel(&app, id);
            }
        });
        if let Err(e) = cancelling {
            log::error!("cannot start a thread to cancel the tasks of a gone client: {e}");
        }
    })
}

fn answer(slot: &Mutex<Option<Respond>>, reply: Result<Reply, ApiError>) {
    if let Some(respond) = slot.lock().take() {
        respond(reply);
    }
}

/// The answer to a finished sync task: 200 with the result, or the error status of its end.
pub fn task_reply(task: Arc<Task>) -> Result<Reply, ApiError> {
    let message = task.error.clone().unwrap_or_default();
    let (task_id, session_id) = (task.id.clone(), task.session_id.clone());
    let error = match task.status {
        TaskStatus::Completed => return Ok(Reply::ok(success_body(&task))),
        TaskStatus::Timeout => ApiError::from(Error::CliTimeout { message, task_id, session_id }),
        TaskStatus::Cancelled => ApiError::new(409, message).with("task_id", task_id).with("session_id", session_id),
        TaskStatus::Interrupted | TaskStatus::Pending | TaskStatus::Processing => {
            ApiError::new(503, message).with("task_id", task_id).with("session_id", session_id)
        }
        TaskStatus::Failed => ApiError::from(Error::CliFailed { message, task_id: Some(task_id), session_id }),
    };
    Err(error.with("exit_code", task.exit_code))
}

fn success_body(task: &Task) -> Value {
    json!({
        "success": true,
        "result": task.result,
        "duration_ms": task.duration_ms,
        "cost_usd": task.cost_usd.unwrap_or(0.0),
        "session_id": task.session_id,
        "task_id": task.id,
        "num_turns": task.num_turns,
        "usage": task.usage,
        "model": task.model,
    })
}

const BATCH_FIELDS: &[&str] = &["prompts", "project_path", "model", "async", "priority", "webhook_url"];

/// Runs every prompt (each in a session of its own) as a task; answers in order, when all ended
/// (or at once with the task ids when `async`).
pub fn batch(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), BATCH_FIELDS)?;
    let prompts =
        f.text_list("prompts", 10)?.ok_or_else(|| ApiError::bad_request("prompts", "\"prompts\" is required"))?;
    let config = app.config();
    let project_path = crate::project::resolve_or_default(f.text("project_path")?.as_deref(), &config)?;
    let template = TurnRequest {
        project_path: Some(project_path),
        model: f.text("model")?,
        priority: f.integer("priority", 1, 10)?.unwrap_or(5) as u8,
        webhook_url: f.url("webhook_url")?,
        ..TurnRequest::default()
    };
    let requests: Vec<TurnRequest> =
        prompts.into_iter().map(|prompt| TurnRequest { prompt, ..template.clone() }).collect();
    let (waiting, _) = app.queue.counts();
    if waiting + requests.len() > config.task_queue.max_pending {
        return Err(Error::Unavailable(format!(
            "the queue cannot take {} more tasks ({waiting} waiting, taskQueue.maxPending {}); retry later",
            requests.len(),
            config.task_queue.max_pending
        ))
        .into());
    }
    if f.boolean("async")? == Some(true) {
        let accepted: Vec<Value> = requests
            .into_iter()
            .map(|request| match tasks::submit(app, request, Mode::Async, None) {
                Ok(task) => accepted_body(&task),
                Err(err) => json!({"success": false, "error": err.to_string()}),
            })
            .collect();
        return Ok(Reply::with_status(202, json!({"success": true, "tasks": accepted, "count": accepted.len()})));
    }
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    Ok(Reply::later(move |respond| {
        let ids = run_batch(&app, requests, respond);
        Some(cancel_when_gone(app, ids))
    }))
}

struct Batch {
    ends: Vec<Option<Result<Arc<Task>, Error>>>,
    respond: Option<Respond>,
}

/// Queues every prompt of a batch; returns the ids of the tasks queued.
fn run_batch(app: &App, requests: Vec<TurnRequest>, respond: Respond) -> Vec<String> {
    let batch = Arc::new(Mutex::new(Batch { ends: requests.iter().map(|_| None).collect(), respond: Some(respond) }));
    let mut queued = Vec::new();
    for (i, request) in requests.into_iter().enumerate() {
        let on_done = {
            let batch = batch.clone();
            Box::new(move |end: Result<Arc<Task>, Error>| batch_end(&batch, i, end))
        };
        match tasks::submit(app, request, Mode::Sync, Some(on_done)) {
            Ok(task) => queued.push(task.id.clone()),
            Err(err) => batch_end(&batch, i, Err(err)),
        }
    }
    queued
}

/// Records the end of prompt `i`; the last one to end sends the answer.
fn batch_end(batch: &Mutex<Batch>, i: usize, end: Result<Arc<Task>, Error>) {
    let mut b = batch.lock();
    b.ends[i] = Some(end);
    if b.ends.iter().all(Option::is_some) {
        let ends: Vec<Result<Arc<Task>, Error>> = b.ends.drain(..).flatten().collect();
        if let Some(respond) = b.respond.take() {
            drop(b);
            respond(Ok(Reply::ok(batch_body(&ends))));
        }
    }
}

fn batch_body(ends: &[Result<Arc<Task>, Error>]) -> Value {
    let (mut successful, mut cost, mut duration) = (0, 0u64, 0u64);
    let results: Vec<Value> = ends
        .iter()
        .map(|end| {
            if let Ok(task) = end {
                cost += money::to_micros(task.cost_usd.unwrap_or(0.0));
                duration += task.duration_ms.unwrap_or(0);
            }
            match end {
                Ok(task) if task.status == TaskStatus::Completed => {
                    successful += 1;
                    success_body(task)
                }
                Ok(task) => json!({"success": false, "error": task.error, "status": task.status, "task_id": task.id, "session_id": task.session_id}),
                Err(err) => json!({"success": false, "error": err.to_string()}),
            }
        })
        .collect();
    json!({
        "success": true,
        "results": results,
        "summary": {
            "total": ends.len(),
            "successful": successful,
            "failed": ends.len() - successful,
            "total_cost_usd": money::to_usd(cost),
            "total_duration_ms": duration,
        },
    })
}
