//! After a start: what a crash or a stop left behind is sorted out before the first request.

use std::sync::Arc;

use crate::app::App;
use crate::model::{now, Mode, Task, TaskStatus};
use crate::runner;
use crate::store::Durable;

use super::ends::{finished, update};
use super::intake::entry_of;

/// After a start: tasks that were running become `interrupted` (never re-run by themselves;
/// the CLI a crash left running is killed first),
/// waiting async tasks are queued again in their old order, and waiting sync tasks (whose
/// client is gone) are cancelled. Returns (interrupted, requeued, cancelled).
pub fn recover(app: &App) -> (usize, usize, usize) {
    let all = match app.store.tasks.all() {
        Ok(all) => all,
        Err(e) => {
            log::error!("{e}; the tasks left from the last stop are not recovered: restart ccs once the store answers");
            return (0, 0, 0);
        }
    };
    let mut tasks: Vec<Arc<Task>> = all.into_iter().filter(|t| !t.status.is_final()).collect();
    tasks.sort_by_key(|t| t.seq);
    let (mut interrupted, mut requeued, mut cancelled) = (0, 0, 0);
    for task in tasks {
        // `Soon`: recovery can run again after another crash, with the same result.
        let end = |status: TaskStatus, message: &str| {
            update(app, &task.id, Durable::Soon, |t| {
                t.status = status;
                t.error = Some(message.to_string());
                t.updated_at = now();
                t.completed_at = Some(t.updated_at);
                true
            })
        };
        match (task.status, task.mode) {
            (TaskStatus::Processing, _) => {
                kill_leftover_cli(&task);
                let message = "the server stopped while this task ran; retry it (POST /api/tasks/<id>/retry) if its side effects allow";
                if let Some(task) = end(TaskStatus::Interrupted, message) {
                    finished(app, task, None);
                }
                interrupted += 1;
            }
            (_, Mode::Sync) => {
                end(
                    TaskStatus::Cancelled,
                    "the server stopped before this synchronous request got under way (its CLI had not started, \
                     or for a few milliseconds at most); its client was disconnected",
                );
                cancelled += 1;
            }
            (_, Mode::Async) => {
                app.queue.push(entry_of(&task));
                requeued += 1;
            }
        }
    }
    // After the running tasks' groups (each killed and logged with its task): the rest.
    kill_live_leftovers(app);
    (interrupted, requeued, cancelled)
}

/// Kills what the live CLI processes of a dead server left running (an idle one ends by itself
/// when its stdin closes, but not what it started), and says so.
fn kill_live_leftovers(app: &App) {
    match runner::leftovers::kill_live_leftovers(&app.config().data_dir) {
        Ok(pids) if pids.is_empty() => {}
        Ok(pids) => {
            log::warn!("killed {} process(es) the live claude CLIs of the previous server left: {pids:?}", pids.len())
        }
        Err(e) => log::warn!("cannot look for what the live claude CLIs of the previous server left: {e}"),
    }
}

/// Kills the CLI a dead server left running for `task` (its recorded process group, if that
/// still carries the task's marker), and says so.
fn kill_leftover_cli(task: &Task) {
    let Some(pgid) = task.pgid else { return };
    match runner::leftovers::kill_if_ours(pgid, &task.id, task.session_id.as_deref()) {
        Ok(pids) if pids.is_empty() => {}
        Ok(pids) => log::warn!(
            "task {}: killed process group {pgid} (pids {pids:?}), the CLI the previous server left running",
            task.id
        ),
        Err(e) => log::error!("task {}: could not kill process group {pgid} of its CLI: {e}", task.id),
    }
}
