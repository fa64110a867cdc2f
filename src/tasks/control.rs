//! What the API does to a task after it came in: cancel it, change its priority, retry it; and
//! what a stop does to the tasks still waiting.

use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::events::TaskEnd;
use crate::model::{now, Mode, Priority, Task, TaskStatus, TurnRequest};
use crate::queue::{Cancelled, Entry};
use crate::store::Durable;

use super::ends::{end_if_pending, end_without_running};
use super::get;
use super::intake::{shutting_down, submit};

/// What a cancel did.
#[derive(Debug)]
pub enum Cancelling {
    /// It had not started: it ended `cancelled` now and never runs.
    Ended(Arc<Task>),
    /// It runs: its process group gets SIGTERM, then SIGKILL after `taskQueue.killGraceMs`;
    /// its worker records the end (`cancelled`) once the group is gone.
    Stopping,
}

/// Cancels a task (`why`: who asked, for its error message): a waiting one never runs; a
/// running one has its process group killed; a finished one is a conflict. Never waits: the
/// end of a stopping task is told to whoever listens (`App::ends`).
pub fn cancel(app: &App, id: &str, why: &str) -> Result<Cancelling, Error> {
    let task = get(app, id)?;
    if task.status.is_final() {
        return Err(already_ended(&task));
    }
    if app.queue.cancel(id)? == Cancelled::Running {
        return Ok(Cancelling::Stopping);
    }
    // Out of the queue (or on its way in: a worker skips a task that is no longer pending).
    let err = Error::Conflict(format!("task {id} was cancelled ({why})"));
    if let Some(task) = end_if_pending(app, id, TaskStatus::Cancelled, err)? {
        log::info!("task {id} cancelled before it ran");
        return Ok(Cancelling::Ended(task));
    }
    // It left `pending` meanwhile: a worker took it, or it ended.
    let task = get(app, id)?;
    if task.status.is_final() {
        return Err(already_ended(&task));
    }
    match app.queue.cancel(id)? {
        Cancelled::Running => Ok(Cancelling::Stopping),
        _ => Err(Error::Conflict(format!("task {id} could not be cancelled; try again"))),
    }
}

/// What a cancel that waited for a running task achieved: the task, cancelled; the store's error
/// when its end could not be saved; or a conflict when it ended otherwise before the kill reached
/// it (its CLI had finished, failed, timed out).
pub fn cancelled_end(end: TaskEnd) -> Result<Arc<Task>, Error> {
    match (end.task.status, end.error) {
        (TaskStatus::Cancelled, _) => Ok(end.task),
        (_, Some(err @ Error::Storage(_))) => Err(err),
        _ => Err(already_ended(&end.task)),
    }
}

fn already_ended(task: &Task) -> Error {
    Error::Conflict(format!(
        "task {} is already {}; only pending or processing tasks can be cancelled",
        task.id,
        task.status.name()
    ))
}

/// PATCH priority of a waiting task; returns (old, new). The record is written first, then
/// the queue follows: a write that fails leaves both as they were. One change at a time
/// (`App::priority_change`), so the last change is the one both keep.
pub fn set_priority(app: &App, id: &str, priority: Priority) -> Result<(Priority, Priority), Error> {
    let _one_at_a_time = app.priority_change.lock();
    let not_pending =
        || Error::Conflict(format!("task {id} is no longer pending; only waiting tasks can change priority"));
    let mut old = get(app, id)?.priority;
    let changed = app.store.tasks.update(id, Durable::Now, |t| {
        if t.status != TaskStatus::Pending {
            return false;
        }
        old = t.priority;
        t.priority = priority;
        t.updated_at = now();
        true
    })?;
    if changed.is_none() {
        return Err(not_pending());
    }
    match app.queue.reprioritize(id, priority) {
        Ok(true) => {}
        // A worker took it between the write and now: it runs; the record keeps what was asked.
        Ok(false) => return Err(not_pending()),
        Err(e) => {
            // The queue keeps the old priority: so does the record (unless it left `pending`).
            let restored = app.store.tasks.update(id, Durable::Now, |t| {
                if t.status != TaskStatus::Pending || t.priority != priority {
                    return false;
                }
                t.priority = old;
                t.updated_at = now();
                true
            });
            if let Err(store_err) = restored {
                log::error!("task {id}: priority {priority} is recorded, the queue keeps {old}: {store_err}");
            }
            return Err(e.into());
        }
    }
    log::info!("task {id} priority {old} -> {priority}");
    Ok((old, priority))
}

/// Queues a finished, unsuccessful task again as a new (async) task.
pub fn retry(app: &App, id: &str) -> Result<Arc<Task>, Error> {
    let task = get(app, id)?;
    let retryable = [TaskStatus::Failed, TaskStatus::Timeout, TaskStatus::Cancelled, TaskStatus::Interrupted];
    if !retryable.contains(&task.status) {
        return Err(Error::Conflict(format!(
            "task {id} is {}; only failed, timeout, cancelled or interrupted tasks can be retried",
            task.status.name()
        )));
    }
    let mut request = task.request.clone();
    if request.prompt.is_empty() {
        // A record from before requests were stored with tasks.
        request = TurnRequest { prompt: task.prompt.clone(), session_id: task.session_id.clone(), ..request };
    }
    // Retried at the priority it had last (a PATCH may have changed it since it was asked).
    request.priority = task.priority;
    let retried = submit(app, request, Mode::Async)?;
    log::info!("task {id} retried as task {}", retried.id);
    Ok(retried)
}

/// At shutdown: waiting sync tasks (their clients are still connected) end `cancelled` with a 503.
pub fn refuse_waiting(app: &App, waiting: Vec<Entry>) {
    for entry in waiting {
        match app.store.tasks.get(&entry.task_id) {
            Ok(Some(task)) if task.mode == Mode::Sync => {
                end_without_running(app, &entry.task_id, TaskStatus::Cancelled, shutting_down());
            }
            Ok(_) => {}
            // Left waiting: the next start's recovery cancels a sync task.
            Err(e) => log::error!("{e}; task {} is left as it is", entry.task_id),
        }
    }
}
