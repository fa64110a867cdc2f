//! The task queue (SPEC 6): which waiting task runs next. Worker threads (`tasks::worker`)
//! take tasks from it; the order is (priority desc, arrival seq asc), and a session's turns run
//! one at a time, in arrival order. The queue holds ids, not tasks: the records live in the
//! store.
//!
//! ARCHITECTURE: `Queue` is the seam the rest of ccs uses; `LocalQueue` (an in-process heap,
//! `local.rs`) is today's implementation. Another one (Redis, shared by several servers) must
//! guarantee, across every server that shares it:
//! - `take` hands each pushed task to exactly one taker, highest priority first, then oldest;
//!   never a session's turn while an earlier turn of that session waits or runs;
//! - `cancel` of a waiting task removes it for every taker; of a running one, it reaches the
//!   taker that runs it (`Cancel` is that server's flag; a shared queue relays it);
//! - `next_seq` numbers are unique and increasing for all servers (the FIFO order);
//! - `counts`, `session_busy` are answers for the whole queue, not this server's part;
//! - nothing outside assumes this server is the only taker: a task may be taken elsewhere
//!   between two calls. The store is written before the queue is told (`tasks`), so a queue
//!   entry always has its record; a taker skips an entry whose record is no longer pending.
//!
//! `set_workers`, `close` and `interrupt_running` concern this server's own workers.

mod local;

use std::cmp::Ordering;

use crate::model::Priority;
use crate::runner::Cancel;

pub use local::LocalQueue;

/// One queued task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub task_id: String,
    pub priority: Priority,
    pub seq: u64,
    pub session_id: Option<String>,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What `cancel` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting: it is out of the queue and will never run.
    Pending,
    /// It was running: its cancel flag is set (the worker kills it and records the end).
    Running,
    /// The queue does not have it.
    NotQueued,
}

/// What the rest of ccs asks of a task queue (see the module's ARCHITECTURE notes).
pub trait Queue: Send + Sync {
    /// A new arrival number (stored with the task, so the order survives a restart).
    fn next_seq(&self) -> u64;

    /// Queues a task whose record is stored already (pending).
    fn push(&self, entry: Entry);

    /// Blocks for the next task to run; `None` tells the calling worker to exit (the queue is
    /// closed, or there are more workers than `concurrency` now).
    fn take(&self) -> Option<(Entry, Cancel)>;

    /// A taken task has ended (its process is gone): its session's next turn may go.
    fn done(&self, task_id: &str);

    /// Takes a waiting task out of the queue, or flags a running one to be killed.
    fn cancel(&self, task_id: &str) -> Cancelled;

    /// Changes the priority of a waiting task; false if it is not waiting.
    fn reprioritize(&self, task_id: &str, priority: Priority) -> bool;

    /// Whether a turn of `session` waits or runs.
    fn session_busy(&self, session: &str) -> bool;

    /// (waiting, running)
    fn counts(&self) -> (usize, usize);

    /// Sets the number of workers; returns how many new worker threads the caller must start.
    /// Surplus workers leave when they next look for work (running tasks are never stopped).
    fn set_workers(&self, wanted: usize) -> usize;

    /// Stops handing out work; workers exit once their current task ends. Returns the tasks that
    /// were still waiting (they stay queued on disk).
    fn close(&self) -> Vec<Entry>;

    /// Flags every running task to be killed as interrupted (shutdown).
    fn interrupt_running(&self) -> usize;
}
