//! After a start, and while the server runs: what a crash or a stop left behind is sorted out.
//! `recover` (before the first request) ends or queues again the unfinished tasks the queue does
//! not hold; `settle_lost` (housekeeping) ends the tasks the shared queue found without their
//! server (it died).

use std::sync::Arc;

use crate::app::App;
use crate::model::{now, Mode, Task, TaskStatus};
use crate::queue::Lost;
use crate::runner;
use crate::store::Durable;

use super::ends::{finished, update};
use super::intake::entry_of;

const INTERRUPTED: &str =
    "the server stopped while this task ran; retry it (POST /api/tasks/<id>/retry) if its side effects allow";
const SYNC_CANCELLED: &str = "the server stopped before this synchronous request got under way (its CLI had not \
                              started, or for a few milliseconds at most); its client was disconnected";

/// After a start: of the unfinished tasks the queue does not hold (a shared queue holds those
/// other servers wait on or run; an in-process one holds nothing yet), those that were running
/// become `interrupted` (never re-run by themselves; the CLI a crash left running is killed
/// first), waiting async tasks are queued again in their old order, and waiting sync tasks
/// (whose client is gone) are cancelled. Returns (interrupted, requeued, cancelled).
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
        match app.queue.is_queued(&task.id) {
            Ok(false) => {}
            Ok(true) => continue,
            Err(e) => {
                log::error!("task {}: left as it is ({e})", task.id);
                continue;
            }
        }
        match (task.status, task.mode) {
            (TaskStatus::Processing, _) => {
                kill_leftover_cli(&task);
                if let Some(task) = end(app, &task.id, TaskStatus::Interrupted, INTERRUPTED) {
                    finished(app, task, None);
                }
                interrupted += 1;
            }
            (_, Mode::Sync) => {
                end(app, &task.id, TaskStatus::Cancelled, SYNC_CANCELLED);
                cancelled += 1;
            }
            (_, Mode::Async) => match app.queue.push(entry_of(&task)) {
                Ok(()) => requeued += 1,
                Err(e) => log::error!("task {}: not queued again ({e}); it stays pending", task.id),
            },
        }
    }
    // After the running tasks' groups (each killed and logged with its task): the rest.
    kill_live_leftovers(app);
    (interrupted, requeued, cancelled)
}

/// Ends the tasks whose server died (`Queue::lost`): one that ran becomes `interrupted` (its
/// webhook fires; its CLI is killed if it ran on this host), a sync one that waited for that
/// server becomes `cancelled` (its client was connected to the dead server). Returns how many
/// it ended.
pub fn settle_lost(app: &App) -> usize {
    let mut ended = 0;
    for lost in app.queue.lost() {
        match lost {
            Lost::Running(entry) => {
                log::warn!(
                    "task {}: its server stopped renewing its claim (it died?); it ends interrupted",
                    entry.task_id
                );
                if let Ok(Some(task)) = app.store.tasks.get(&entry.task_id) {
                    kill_leftover_cli(&task);
                }
                if let Some(task) = end(app, &entry.task_id, TaskStatus::Interrupted, INTERRUPTED) {
                    finished(app, task, None);
                    ended += 1;
                }
            }
            Lost::Abandoned(entry) => {
                log::warn!("task {}: the server its client waited on is gone; it ends cancelled", entry.task_id);
                if end(app, &entry.task_id, TaskStatus::Cancelled, SYNC_CANCELLED).is_some() {
                    ended += 1;
                }
            }
        }
    }
    ended
}

/// Ends an unfinished task with `status` and `message`; `None` when it ended meanwhile (another
/// server may have got there first) or its end could not be saved. `Soon`: recovery can run
/// again after another crash, with the same result.
fn end(app: &App, task_id: &str, status: TaskStatus, message: &str) -> Option<Arc<Task>> {
    update(app, task_id, Durable::Soon, |t| {
        if t.status.is_final() {
            return false;
        }
        t.status = status;
        t.error = Some(message.to_string());
        t.updated_at = now();
        t.completed_at = Some(t.updated_at);
        true
    })
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
