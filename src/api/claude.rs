//! `POST /api/claude` (one prompt) and `POST /api/claude/batch` (up to 10). Sync requests are
//! tasks like any other: the answer is sent when the worker is done, while the acceptor thread
//! goes back to taking requests. `async: true` answers 202 with the task id at once.

use std::sync::Arc;

use serde_json::{json, Value};

use super::fields::Fields;
use crate::app::App;
use crate::error::Error;
use crate::events::TaskEnd;
use crate::http::{AfterTasks, ApiError, Awaited, Ctx, Reply};
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
        priority: f.priority()?.unwrap_or_default(),
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
        let task = tasks::submit(app, request, Mode::Async)?;
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

/// Queues a sync turn; its answer is sent when the task ends, and a client that leaves first
/// has it cancelled.
pub fn run_sync(app: &App, request: TurnRequest) -> Result<Reply, ApiError> {
    let task = tasks::submit_awaited(app, request)?;
    Ok(Reply::after_tasks(AfterTasks {
        tasks: vec![Ok(task.id.clone())],
        answer: Box::new(answer_run),
        on_gone: Some(cancel_run),
    }))
}

fn answer_run(ends: Vec<Awaited>) -> Result<Reply, ApiError> {
    completed(ends).map(|task| Reply::ok(success_body(&task)))
}

/// The one task of a sync run, completed; else the error of its end (`task_error`).
pub fn completed(mut ends: Vec<Awaited>) -> Result<Arc<Task>, ApiError> {
    match ends.pop() {
        Some(Ok(TaskEnd { task, error: None })) => match task_error(&task) {
            None => Ok(task),
            Some(error) => Err(error),
        },
        Some(Ok(TaskEnd { error: Some(err), .. }) | Err(err)) => Err(err.into()),
        None => Err(ApiError::internal("a sync run without its task")),
    }
}

/// The client of a sync run went away: its task is cancelled (SPEC 6).
pub fn cancel_run(app: &App, id: &str) {
    log::info!("task {id}: its sync client went away; cancelling it");
    let _ = tasks::cancel(app, id, "its client went away before the answer");
}

/// The error a task that did not complete answers with (`None`: it completed).
pub fn task_error(task: &Task) -> Option<ApiError> {
    let message = task.error.clone().unwrap_or_default();
    let (task_id, session_id) = (task.id.clone(), task.session_id.clone());
    let error = match task.status {
        TaskStatus::Completed => return None,
        TaskStatus::Timeout => ApiError::from(Error::CliTimeout { message, task_id, session_id }),
        TaskStatus::Cancelled => ApiError::new(409, message).with("task_id", task_id).with("session_id", session_id),
        TaskStatus::Interrupted | TaskStatus::Pending | TaskStatus::Processing => {
            ApiError::new(503, message).with("task_id", task_id).with("session_id", session_id)
        }
        TaskStatus::Failed => ApiError::from(Error::CliFailed { message, task_id: Some(task_id), session_id }),
    };
    Some(error.with("exit_code", task.exit_code))
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
        priority: f.priority()?.unwrap_or_default(),
        webhook_url: f.url("webhook_url")?,
        ..TurnRequest::default()
    };
    let requests: Vec<TurnRequest> =
        prompts.into_iter().map(|prompt| TurnRequest { prompt, ..template.clone() }).collect();
    let (waiting, _) = app.queue.counts().map_err(Error::from)?;
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
            .map(|request| match tasks::submit(app, request, Mode::Async) {
                Ok(task) => accepted_body(&task),
                Err(err) => json!({"success": false, "error": err.to_string()}),
            })
            .collect();
        return Ok(Reply::with_status(202, json!({"success": true, "tasks": accepted, "count": accepted.len()})));
    }
    // Each prompt is a task of its own; one refused (a full queue...) is an error in its place.
    let tasks = requests.into_iter().map(|request| tasks::submit_awaited(app, request).map(|t| t.id.clone())).collect();
    Ok(Reply::after_tasks(AfterTasks { tasks, answer: Box::new(answer_batch), on_gone: Some(cancel_run) }))
}

fn answer_batch(ends: Vec<Awaited>) -> Result<Reply, ApiError> {
    let ends: Vec<Result<Arc<Task>, Error>> = ends
        .into_iter()
        .map(|end| match end {
            Ok(TaskEnd { task, error: None }) => Ok(task),
            Ok(TaskEnd { error: Some(err), .. }) | Err(err) => Err(err),
        })
        .collect();
    Ok(Reply::ok(batch_body(&ends)))
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
