//! Worker threads: each takes the next task from the queue, runs it to its end, and tells the
//! queue it is done (only then can the session's next turn go, and only then is the worker free:
//! a killed task holds its worker until its process is gone).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::app::App;
use crate::tasks;

pub fn spawn(app: Arc<App>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("worker".into()).spawn(move || run(&app))
}

fn run(app: &App) {
    while let Some((entry, cancel)) = app.queue.take() {
        let task_id = entry.task_id.clone();
        // A bug in one task must not take a worker (and the queue's bookkeeping) with it.
        if catch_unwind(AssertUnwindSafe(|| tasks::execute(app, &task_id, &cancel))).is_err() {
            log::error!("task {task_id} failed with an internal error");
            tasks::fail_internally(app, &task_id);
        }
        app.queue.done(&task_id);
    }
}
