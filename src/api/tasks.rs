//! `/api/tasks`: submit async, list, read, change priority, cancel, retry, queue status.

use serde_json::{json, Value};

use super::claude::{turn_request, TURN_FIELDS};
use super::fields::Fields;
use super::page;
use crate::app::App;
use crate::http::{AfterTasks, ApiError, Awaited, Ctx, Reply};
use crate::model::{now, Mode, Priority, Task, TaskStatus};
use crate::store::StoreError;
use crate::{money, tasks};

const STATUSES: &[&str] = &["pending", "processing", "completed", "failed", "timeout", "cancelled", "interrupted"];

pub fn create_async(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let fields = Fields::new(ctx.body.as_ref(), TURN_FIELDS)?;
    let task = tasks::submit(app, turn_request(&fields)?, Mode::Async)?;
    Ok(Reply::created(json!({"success": true, "task": task.to_api()})))
}

pub fn list(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let status = match ctx.query("status")? {
        None => None,
        Some(name) => Some(parse_status(name).ok_or_else(|| {
            ApiError::bad_request("status", format!("\"status\" must be one of {}", STATUSES.join(", ")))
        })?),
    };
    let limit = ctx.query_number("limit", 50, 1000)?;
    let offset = ctx.query_number("offset", 0, usize::MAX)?;
    let (found, total) = tasks::list(app, status, limit, offset)?;
    Ok(Reply::ok(page("tasks", found.iter().map(|t| t.to_api()), total, offset)))
}

fn parse_status(name: &str) -> Option<TaskStatus> {
    serde_json::from_value(Value::String(name.to_string())).ok()
}

pub fn get(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let task = tasks::get(app, ctx.param("id"))?;
    Ok(Reply::ok(json!({"success": true, "task": task.to_api()})))
}

pub fn set_priority(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), &["priority"])?;
    let priority = f.priority()?.ok_or_else(|| {
        let (min, max) = (Priority::MIN, Priority::MAX);
        ApiError::bad_request("priority", format!("\"priority\" is required (an integer from {min} to {max})"))
    })?;
    let id = ctx.param("id");
    let (old, new) = tasks::set_priority(app, id, priority)?;
    Ok(Reply::ok(json!({"success": true, "task_id": id, "old_priority": old, "new_priority": new})))
}

/// A waiting task is answered at once; a running one when its process group is gone and its
/// end recorded (within `taskQueue.killGraceMs` and a moment), without holding an acceptor: 409
/// if it ended otherwise first (it completed before the kill reached it).
pub fn cancel(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let id = ctx.param("id");
    match tasks::cancel(app, id, &format!("DELETE /api/tasks/{id}"))? {
        tasks::Cancelling::Ended(task) => Ok(Reply::ok(cancelled_body(&task))),
        tasks::Cancelling::Stopping => Ok(Reply::after_tasks(AfterTasks {
            tasks: vec![Ok(id.to_string())],
            answer: Box::new(answer_cancelled),
            on_gone: None,
        })),
    }
}

pub(super) fn answer_cancelled(mut ends: Vec<Awaited>) -> Result<Reply, ApiError> {
    match ends.pop() {
        Some(Ok(end)) => Ok(Reply::ok(cancelled_body(&*tasks::cancelled_end(end)?))),
        Some(Err(err)) => Err(err.into()),
        None => Err(ApiError::internal("a cancel without its task")),
    }
}

fn cancelled_body(task: &Task) -> Value {
    json!({"success": true, "task_id": task.id, "status": task.status, "task": task.to_api()})
}

pub fn retry(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let task = tasks::retry(app, ctx.param("id"))?;
    Ok(Reply::created(json!({"success": true, "retried_from": ctx.param("id"), "task": task.to_api()})))
}

pub fn queue_status(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({"success": true, "queue": queue_body(app)?})))
}

/// The queue's counts, from the task records (all of them, not only this server's queue).
fn queue_body(app: &App) -> Result<Value, StoreError> {
    let tasks = app.store.tasks.all()?;
    let count = |status: TaskStatus| tasks.iter().filter(|t| t.status == status).count();
    let cost: u64 = tasks.iter().map(|t| money::to_micros(t.cost_usd.unwrap_or(0.0))).sum();
    let oldest_pending = tasks.iter().filter(|t| t.status == TaskStatus::Pending).map(|t| t.created_at).min();
    Ok(json!({
        "running": !app.is_shutting_down(),
        "concurrency": app.config().task_queue.concurrency,
        "total": tasks.len(),
        "pending": count(TaskStatus::Pending),
        "processing": count(TaskStatus::Processing),
        "completed": count(TaskStatus::Completed),
        "failed": count(TaskStatus::Failed),
        "cancelled": count(TaskStatus::Cancelled),
        "timeout": count(TaskStatus::Timeout),
        "interrupted": count(TaskStatus::Interrupted),
        "total_cost_usd": money::to_usd(cost),
        "oldest_pending_age_ms": oldest_pending.map(|at| (now() - at).num_milliseconds().max(0)),
    }))
}
