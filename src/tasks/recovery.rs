//! After a start, and while the server runs: what a crash or a stop left behind is sorted out.
//! `recover` (before the first request) ends or queues again the unfinished tasks the queue does
//! not hold; `settle_lost` (housekeeping) ends the tasks the shared queue found without their
//! server (it died).

use std::sync::Arc;

use crate::app::App;
use crate::model::{now, Mode, Task, TaskStatus};
use crate::queue::{Entry, Lost};
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
    let counts = settle_unqueued(app, |_| true);
    // After the running tasks' groups (each killed and logged with its task): the rest.
    kill_live_leftovers(app);
    counts
}

/// Unfinished tasks untouched for this long that the queue does not hold are sorted out as at
/// a start (`settle_orphans`).
const ORPHANED_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// While the server runs (hourly): what `recover` does, for unfinished tasks untouched for ten
/// minutes that the queue does not hold. With one server there are none; on a shared store,
/// a record whose queue entry was lost (a Redis that lost its last second, a server that died
/// between saving a task and queueing it) would otherwise wait for ever. Returns (interrupted,
/// requeued, cancelled).
pub fn settle_orphans(app: &App) -> (usize, usize, usize) {
    let cutoff = now() - ORPHANED_AFTER;
    settle_unqueued(app, |task| task.updated_at < cutoff)
}

/// Of the unfinished tasks that `pick` picks and the queue does not hold, those that were
/// running become `interrupted`, waiting async ones are queued again in their old order, and
/// waiting sync ones are cancelled.
fn settle_unqueued(app: &App, pick: impl Fn(&Task) -> bool) -> (usize, usize, usize) {
    let all = match app.store.tasks.all() {
        Ok(all) => all,
        Err(e) => {
            log::error!("{e}; unfinished tasks are not sorted out now: restart ccs once the store answers");
            return (0, 0, 0);
        }
    };
    let mut tasks: Vec<Arc<Task>> = all.into_iter().filter(|t| !t.status.is_final() && pick(t)).collect();
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
    (interrupted, requeued, cancelled)
}

/// Ends the tasks whose server died (`Queue::lost`): one that ran becomes `interrupted` (its
/// webhook fires; its CLI is killed if it ran on this host), a sync one that waited for that
/// server becomes `cancelled` (its client was connected to the dead server). An async one that
/// server took but never started (still pending) is queued again: it never ran. Returns how
/// many it ended.
pub fn settle_lost(app: &App) -> usize {
    let mut ended = 0;
    for lost in app.queue.lost() {
        let settled = match lost {
            Lost::Running(entry) => settle_lost_run(app, entry),
            Lost::Abandoned(entry) => {
                log::warn!("task {}: the server its client waited on is gone; it ends cancelled", entry.task_id);
                end(app, &entry.task_id, TaskStatus::Cancelled, SYNC_CANCELLED).is_some()
            }
        };
        ended += usize::from(settled);
    }
    ended
}

/// A task whose server stopped renewing its claim; true if this ended it.
fn settle_lost_run(app: &App, entry: Entry) -> bool {
    let id = entry.task_id.clone();
    let task = app.store.tasks.get(&id).ok().flatten();
    // A later turn of its session may have gone ahead meanwhile: then it is not run out of order.
    let session_free =
        |t: &Task| t.session_id.as_deref().is_none_or(|s| app.queue.session_busy(s).is_ok_and(|busy| !busy));
    match task.as_deref().map(|t| (t.status, t.mode)) {
        // Its end was saved; only the queue did not hear of it (Redis was out of reach).
        Some((status, _)) if status.is_final() => false,
        // Its server took it and stopped before its CLI got the prompt: it never ran.
        Some((TaskStatus::Pending, Mode::Async)) if task.as_deref().is_some_and(session_free) => {
            log::warn!("task {id}: its server stopped before starting it; it is queued again");
            if let Err(e) = app.queue.push(Entry { pinned: false, ..entry }) {
                log::error!("task {id}: not queued again ({e}); the hourly check will");
            }
            false
        }
        Some((TaskStatus::Pending, Mode::Sync)) => {
            log::warn!("task {id}: its server stopped before starting it; it ends cancelled");
            end(app, &id, TaskStatus::Cancelled, SYNC_CANCELLED).is_some()
        }
        _ => {
            log::warn!("task {id}: its server stopped renewing its claim (it died?); it ends interrupted");
            if let Some(task) = &task {
                kill_leftover_cli(task);
            }
            let ended = end(app, &id, TaskStatus::Interrupted, INTERRUPTED);
            ended.map(|task| finished(app, task, None)).is_some()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TurnRequest;
    use crate::store::Store;

    #[test]
    fn unfinished_tasks_no_queue_holds_are_sorted_out_once_untouched_for_ten_minutes() {
        let app = App::for_tests(Store::in_memory());
        let request = TurnRequest { prompt: "p".into(), project_path: Some("/tmp".into()), ..TurnRequest::default() };
        let queued = crate::tasks::submit(&app, request.clone(), Mode::Async).unwrap();
        let orphan = |id: &str, status: TaskStatus, minutes_ago: i64| {
            let mut task = (*queued).clone();
            task.id = id.into();
            task.status = status;
            task.updated_at = now() - chrono::TimeDelta::minutes(minutes_ago);
            app.store.tasks.put(id, task, Durable::Now).unwrap();
        };
        orphan("lost-run", TaskStatus::Processing, 11);
        orphan("lost-wait", TaskStatus::Pending, 11);
        orphan("recent", TaskStatus::Processing, 1);
        // Held by the queue, however old: left to it.
        app.store
            .tasks
            .update(&queued.id, Durable::Now, |t| {
                t.updated_at = now() - chrono::TimeDelta::minutes(30);
                true
            })
            .unwrap();
        assert_eq!(settle_orphans(&app), (1, 1, 0));
        let status = |id: &str| app.store.tasks.get(id).unwrap().unwrap().status;
        assert_eq!(status("lost-run"), TaskStatus::Interrupted);
        assert!(app.queue.is_queued("lost-wait").unwrap(), "a waiting async task is queued again");
        assert_eq!(status("recent"), TaskStatus::Processing, "maybe on its way into the queue");
        assert_eq!(status(&queued.id), TaskStatus::Pending);
        assert_eq!(settle_orphans(&app), (0, 0, 0), "once");
    }
}
