//! How a task ends: its final state is recorded, then whoever waits is told (a sync request,
//! the followers of its events, or the webhook of an async task).

use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::model::{now, Mode, Task, TaskStatus};
use crate::store::{Durable, StoreError};
use crate::webhook;

/// Changes a task record; logs (and returns `None`) when it cannot be saved.
pub(super) fn update(
    app: &App,
    id: &str,
    durable: Durable,
    change: impl FnOnce(&mut Task) -> bool,
) -> Option<Arc<Task>> {
    match app.store.tasks.update(id, durable, change) {
        Ok(task) => task,
        Err(e) => {
            log::error!("task {id}: {e}");
            None
        }
    }
}

pub(super) fn end_without_running(app: &App, task_id: &str, status: TaskStatus, err: Error) {
    log::info!("task {task_id} ended {} without running: {}", status.name(), err.to_string().escape_debug());
    let message = err.to_string();
    let task = app.store.tasks.update(task_id, Durable::Now, |t| {
        t.status = status;
        t.error = Some(message);
        t.updated_at = now();
        t.completed_at = Some(t.updated_at);
        true
    });
    match task {
        Ok(Some(task)) => finished(app, task, Some(err)),
        Ok(None) => {}
        Err(e) => end_unsaved(app, task_id, e),
    }
}

/// A change of a task's state could not be saved (a full disk, a read-only dataDir): the task
/// shows `failed` saying so, in memory only (a restart finds its last saved state), and whoever
/// waits hears it at once. No webhook: nothing unsaved is told.
pub(super) fn end_unsaved(app: &App, task_id: &str, err: StoreError) {
    log::error!("task {task_id}: its state could not be saved: {err}");
    let Some(current) = app.store.tasks.get(task_id) else { return };
    let mut task = (*current).clone();
    task.status = TaskStatus::Failed;
    task.error = Some(format!("the task could not be saved: {err}"));
    task.updated_at = now();
    task.completed_at = Some(task.updated_at);
    let task = app.store.tasks.show_unsaved(task_id, task);
    app.events.end(task);
    if let Some(on_done) = app.take_waiter(task_id) {
        on_done(Err(Error::Storage(err)));
    }
}

/// A task reached its final state: tell its followers, answer the waiting request, or send
/// the webhook.
pub(super) fn finished(app: &App, task: Arc<Task>, error: Option<Error>) {
    app.events.end(task.clone());
    match app.take_waiter(&task.id) {
        Some(on_done) => on_done(error.map_or(Ok(task), Err)),
        None if task.mode == Mode::Async => webhook::notify(app, &task),
        None => {}
    }
}
