//! Worker threads: each takes the next task from the queue, runs it to its end, and tells the
//! queue it is done (only then can the session's next turn go, and only then is the worker free:
//! a killed task holds its worker until its process is gone).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::app::App;

/// Runs `workers` worker threads (starting new ones; surplus ones leave after their task).
pub fn set_workers(app: &App, workers: usize) {
    let Some(app) = app.shared() else { return };
    let missing = app.queue.set_workers(workers);
    let mut handles = app.worker_threads.lock();
    handles.retain(|h| !h.is_finished());
    for _ in 0..missing {
        match spawn(app.clone()) {
            Ok(handle) => handles.push(handle),
            Err(e) => log::error!("cannot start a worker thread: {e}"),
        }
    }
}

/// Waits for every worker thread to end (after `queue.close()`).
pub fn join_workers(app: &App) {
    let handles: Vec<JoinHandle<()>> = std::mem::take(&mut *app.worker_threads.lock());
    for handle in handles {
        let _ = handle.join();
    }
}

fn spawn(app: Arc<App>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("worker".into()).spawn(move || run(&app))
}

fn run(app: &App) {
    while let Some((entry, cancel)) = app.queue.take() {
        let task_id = entry.task_id.clone();
        // A bug in one task must not take a worker (and the queue's bookkeeping) with it.
        let started = catch_unwind(AssertUnwindSafe(|| super::execute(app, &task_id, &cancel)));
        if started.is_err() {
            log::error!("task {task_id} failed with an internal error");
            super::fail_internally(app, &task_id);
        }
        super::ends::save_shown_end(app, &task_id);
        app.queue.done(&task_id);
        if matches!(started, Ok(false)) {
            // Still pending: queued again (else a restart's recovery, or the sweep, queues it).
            if let Err(e) = app.queue.push(entry) {
                log::warn!("task {task_id} could not be queued again ({e}); recovery will");
            }
        }
    }
}
