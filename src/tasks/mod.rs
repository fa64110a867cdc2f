//! Tasks: one run of the CLI each, for a sync request or an async one (SPEC 6, 7). This module
//! owns a task's life, one file per stage: `intake` checks, stores and queues it; a `worker`
//! thread takes it from the queue and `execution` runs it; `ends` records how it ended and tells
//! whoever waits; `control` cancels, re-prioritizes or retries it; `recovery` sorts out what a
//! crash left behind. Answers are shaped in `api/`, never here.

mod control;
mod ends;
mod execution;
mod intake;
pub mod live;
mod recovery;
pub mod worker;

use std::sync::Arc;

use crate::app::App;
use crate::error::Error;
use crate::model::{Task, TaskStatus};

pub use control::{cancel, cancelled_end, refuse_waiting, retry, set_priority, Cancelling};
pub use ends::hear_ends_from_elsewhere;
pub use execution::{execute, fail_internally};
pub use intake::{submit, submit_awaited};
pub use recovery::{recover, settle_lost, settle_orphans};

pub fn get(app: &App, id: &str) -> Result<Arc<Task>, Error> {
    app.store
        .tasks
        .get(id)?
        .ok_or_else(|| Error::NotFound(format!("task {id} not found; list tasks with GET /api/tasks")))
}

/// Tasks with `status` (all when `None`) in queue order: priority first, then arrival.
pub fn list(
    app: &App,
    status: Option<TaskStatus>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<Arc<Task>>, usize), Error> {
    let mut tasks: Vec<Arc<Task>> =
        app.store.tasks.all()?.into_iter().filter(|t| status.is_none_or(|s| t.status == s)).collect();
    tasks.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)).then_with(|| a.created_at.cmp(&b.created_at))
    });
    let total = tasks.len();
    Ok((tasks.into_iter().skip(offset).take(limit).collect(), total))
}
