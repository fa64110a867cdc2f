//! The task queue (SPEC 6): which waiting task runs next. Worker threads (`tasks::worker`)
//! take tasks from it; the order is (priority desc, arrival seq asc), and a session's turns run
//! one at a time, in arrival order. The queue holds ids, not tasks: the records live in the
//! store.
//!
//! ARCHITECTURE: `Queue` is the seam the rest of ccs uses; `open` picks the implementation from
//! `storageType`: `LocalQueue` (an in-process heap, `local.rs`) for the file and memory stores,
//! `RedisQueue` (`redis.rs`, one queue shared by every server on the same Redis and key prefix)
//! for the Redis store. Both guarantee, across every server that shares the queue:
//! - `take` hands each pushed task to exactly one taker, highest priority first, then oldest;
//!   never a session's turn while an earlier turn of that session waits or runs; a `pinned`
//!   entry (a sync turn, whose client and live stream are on the server that pushed it) only to
//!   the server that pushed it;
//! - `push` of a task the queue holds already (waiting or running) does nothing;
//! - `cancel` of a waiting task removes it for every taker; of a running one, it reaches the
//!   taker that runs it (`Cancel` is that server's flag; a shared queue relays it);
//! - `next_seq` numbers are unique and increasing for all servers (the FIFO order);
//! - `counts`, `session_busy`, `is_queued` are answers for the whole queue, not this server's
//!   part;
//! - a server that dies is noticed (its lease expires): `lost` hands what it ran, and the pinned
//!   tasks that waited for it, to exactly one other server, which ends them in the store
//!   (`tasks::recovery::settle_lost`);
//! - nothing outside assumes this server is the only taker: a task may be taken elsewhere
//!   between two calls. The store is written before the queue is told (`tasks`), so a queue
//!   entry always has its record; a taker skips an entry whose record is no longer pending.
//!
//! Calls that reach Redis can fail (`QueueError`: a request answers 503); `take` and `done`
//! cannot: a worker has nobody to answer, so they wait for Redis to come back.
//! `set_workers`, `close`, `interrupt_running` and `running_here` concern this server's own
//! workers.

mod local;
mod redis;

use std::cmp::Ordering;
use std::fmt;

use crate::config::{Config, StorageType};
use crate::model::Priority;
use crate::runner::Cancel;

pub use self::redis::RedisQueue;
pub use local::LocalQueue;

/// One queued task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub task_id: String,
    pub priority: Priority,
    pub seq: u64,
    pub session_id: Option<String>,
    /// Only the server that pushed it may take it: its client waits on that server (a sync
    /// turn, whose answer and live stream are there).
    pub pinned: bool,
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

/// A task whose server is gone (`Queue::lost`), handed to one server to record its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// It was taken by a server whose lease expired (that server died or lost Redis): it ends
    /// `interrupted`.
    Running(Entry),
    /// It waited, pinned to a server that is gone (its client went with it): it ends
    /// `cancelled`.
    Abandoned(Entry),
}

/// The shared queue cannot be reached now. ccs connects again by itself; the request can be
/// sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the task queue cannot be used now: {}; ccs connects again by itself", self.0)
    }
}

impl std::error::Error for QueueError {}

impl From<crate::redis_link::LinkError> for QueueError {
    fn from(e: crate::redis_link::LinkError) -> QueueError {
        QueueError(e.0)
    }
}

/// The queue `storageType` calls for: in-process for the file and memory stores, shared in
/// Redis for the Redis store. `next_seq` is the highest arrival number the store holds.
pub fn open(config: &Config, next_seq: u64) -> Result<Box<dyn Queue>, String> {
    match config.storage_type {
        StorageType::File | StorageType::Memory => Ok(Box::new(LocalQueue::new(next_seq))),
        StorageType::Redis => {
            let url = config.redis_url.as_deref().ok_or("storageType \"redis\" needs redisUrl in the config")?;
            let link = crate::redis_link::Link::open(url, &config.redis_key_prefix).map_err(|e| e.0)?;
            let lease = std::time::Duration::from_millis(config.redis_lease_ms);
            let queue = RedisQueue::open(link, redis::server_id(config.port), lease, next_seq)
                .map_err(|e| format!("cannot open the task queue in Redis: {}", e.0))?;
            Ok(Box::new(queue))
        }
    }
}

/// What the rest of ccs asks of a task queue (see the module's ARCHITECTURE notes).
pub trait Queue: Send + Sync {
    /// A new arrival number (stored with the task, so the order survives a restart).
    fn next_seq(&self) -> Result<u64, QueueError>;

    /// Queues a task whose record is stored already (pending); nothing when the queue holds it
    /// already (waiting or running).
    fn push(&self, entry: Entry) -> Result<(), QueueError>;

    /// Blocks for the next task to run; `None` tells the calling worker to exit (the queue is
    /// closed, or there are more workers than `concurrency` now). While the queue cannot be
    /// reached it waits and tries again.
    fn take(&self) -> Option<(Entry, Cancel)>;

    /// A taken task has ended (its process is gone): its session's next turn may go. Tries
    /// until the queue hears it (or the queue is closed).
    fn done(&self, task_id: &str);

    /// Takes a waiting task out of the queue, or flags a running one to be killed.
    fn cancel(&self, task_id: &str) -> Result<Cancelled, QueueError>;

    /// Changes the priority of a waiting task; false if it is not waiting.
    fn reprioritize(&self, task_id: &str, priority: Priority) -> Result<bool, QueueError>;

    /// Whether a turn of `session` waits or runs.
    fn session_busy(&self, session: &str) -> Result<bool, QueueError>;

    /// Whether the task waits or runs (on any server).
    fn is_queued(&self, task_id: &str) -> Result<bool, QueueError>;

    /// (waiting, running)
    fn counts(&self) -> Result<(usize, usize), QueueError>;

    /// Tasks whose server is gone, each handed to one caller across servers (see `Lost`).
    /// Empty when the queue cannot be reached now (the next call finds them).
    fn lost(&self) -> Vec<Lost>;

    /// Why the queue is unusable now (`None`: it works).
    fn fault(&self) -> Option<String>;

    /// Sets the number of workers; returns how many new worker threads the caller must start.
    /// Surplus workers leave when they next look for work (running tasks are never stopped).
    fn set_workers(&self, wanted: usize) -> usize;

    /// Stops handing out work; workers exit once their current task ends. Returns the tasks that
    /// were still waiting and that only this server could run (they stay queued on disk).
    fn close(&self) -> Vec<Entry>;

    /// Flags every task this server runs to be killed as interrupted (shutdown).
    fn interrupt_running(&self) -> usize;

    /// How many tasks this server's workers run now.
    fn running_here(&self) -> usize;

    /// Whether one of this server's workers runs `task_id` now (from `take` until `done`).
    fn runs_here(&self, task_id: &str) -> bool;
}
