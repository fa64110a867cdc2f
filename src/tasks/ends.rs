//! How a task ends: its final state is recorded, then whoever waits is told (a sync request,
//! the followers of its events, or the webhook of an async task).

use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::events::TaskEnd;
use crate::model::{now, Mode, Task, TaskStatus};
use crate::store::Durable;
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

/// Ends a task that did not run (or whose run broke down): `status` with `err`'s message. A
/// task that has ended meanwhile keeps its end (a final state never changes).
pub(super) fn end_without_running(app: &App, task_id: &str, status: TaskStatus, err: Error) {
    let _ = end_early(app, task_id, status, err, |t| !t.status.is_final());
}

/// Ends a task that is still waiting; `None` when it was not (a worker took it, or it ended).
/// When its end cannot be saved it shows `failed` (`end_unsaved`) and the store's error is
/// returned.
pub(super) fn end_if_pending(
    app: &App,
    task_id: &str,
    status: TaskStatus,
    err: Error,
) -> Result<Option<Arc<Task>>, Error> {
    end_early(app, task_id, status, err, |t| t.status == TaskStatus::Pending)
}

fn end_early(
    app: &App,
    task_id: &str,
    status: TaskStatus,
    err: Error,
    applies: impl FnOnce(&Task) -> bool,
) -> Result<Option<Arc<Task>>, Error> {
    let message = err.to_string();
    let task = app.store.tasks.update(task_id, Durable::Now, |t| {
        if !applies(t) {
            return false;
        }
        t.status = status;
        t.error = Some(message);
        t.updated_at = now();
        t.completed_at = Some(t.updated_at);
        true
    });
    match task {
        Ok(Some(task)) => {
            log::info!("task {task_id} ended {} without running: {}", status.name(), err.to_string().escape_debug());
            finished(app, task.clone(), Some(err));
            Ok(Some(task))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            let err = Error::from(e);
            end_unsaved(app, task_id, err.clone(), None);
            Err(err)
        }
    }
}

/// A change of a task's state could not be saved (a full disk, a read-only dataDir): the task
/// shows `failed` saying so, in memory only (a restart finds its last saved state), and whoever
/// waits hears it at once. No webhook: nothing unsaved is told. `last` is the task as last
/// read, if known: it stands in for the record when that cannot be read either (the store is
/// down); without it, nobody can be told.
pub(super) fn end_unsaved(app: &App, task_id: &str, err: Error, last: Option<&Arc<Task>>) {
    log::error!("task {task_id}: its state could not be saved: {err}");
    let current = match (app.store.tasks.get(task_id), last) {
        (Ok(Some(current)), _) => current,
        (Ok(None), _) => return,
        (Err(_), Some(last)) => last.clone(),
        (Err(e), None) => return log::error!("task {task_id} cannot be shown failed either: {e}"),
    };
    let mut task = (*current).clone();
    task.status = TaskStatus::Failed;
    task.error = Some(format!("the task could not be saved: {err}"));
    task.updated_at = now();
    task.completed_at = Some(task.updated_at);
    let task = app.store.tasks.show_unsaved(task_id, task);
    app.events.end(task.clone());
    app.ends.ended(task_id, TaskEnd { task, error: Some(err) });
}

/// A task whose state this server could only show (`end_unsaved`: the store was out of reach)
/// gets it saved before the queue lets the task go: in a shared store nobody else would end it
/// once the queue no longer holds it, and the other servers would show it pending or
/// processing for ever. Tries until it is saved (the task's claim in the queue is renewed
/// meanwhile) or the server shuts down; a state another server saved meanwhile stands.
pub(super) fn save_shown_end(app: &App, task_id: &str) {
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match app.store.tasks.save_shown(task_id, &mut |stored| stored.status.is_final()) {
            Ok(true) => return log::info!("task {task_id}: the state it showed unsaved is saved now"),
            Ok(false) => return,
            Err(e) if app.is_shutting_down() => {
                return log::error!("task {task_id}: the state it showed is still unsaved ({e}); it stays as saved")
            }
            Err(e) => {
                if pause.as_millis() == 50 {
                    log::warn!("task {task_id}: cannot save the state it showed unsaved yet ({e}); trying again");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// A task reached its final state (saved): tell its followers and whoever waits for it, and
/// send the webhook of an async task.
pub(super) fn finished(app: &App, task: Arc<Task>, error: Option<Error>) {
    app.events.end(task.clone());
    if task.mode == Mode::Async {
        webhook::notify(app, &task);
    }
    app.ends.ended(&task.id.clone(), TaskEnd { task, error });
}

/// Tells whoever waits here of tasks that ended on another server sharing the queue (a cancel
/// sent here for a task that runs there, the events of a task followed here). A task that runs
/// here is told by its worker, with the details of its end; one that ended here is told already.
pub fn hear_ends_from_elsewhere(app: &App) {
    let mut ids = app.ends.awaited();
    ids.extend(app.events.followed());
    for id in ids.into_iter().filter(|id| !app.queue.runs_here(id)) {
        // Not here before the read, nor after it: a task that ended here was told before its
        // worker let it go.
        let Ok(Some(task)) = app.store.tasks.get(&id) else { continue };
        if task.status.is_final() && !app.queue.runs_here(&id) {
            app.ends.ended(&id, TaskEnd { task: task.clone(), error: None });
            app.events.end(task);
        }
    }
}
