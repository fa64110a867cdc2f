//! The store: records by kind and id, and the one interface to them the rest of ccs uses
//! (`Records`, one per kind, gathered in `Store`).
//!
//! ARCHITECTURE: what any implementation of `Records` (the local one, `Table` over a `Backend`;
//! the shared one, `RedisRecords`, for several servers over one Redis) must guarantee.
//! - **Records by kind and id.** A record is a serde value under an id of ASCII letters, digits,
//!   `-`, `_` and `.` (not first); other ids are refused.
//! - **Durable before anyone is told.** Every write says when it must be durable (`Durable`):
//!   whatever a client is told (an id, an answer, a webhook) is durable before it is told. A
//!   `Now` write is durable before the call returns and before anyone can read it; a `Soon`
//!   write is visible at once and durable within a few milliseconds, and is for states nobody has
//!   been told about, followed by a `Now` write. Writes are ordered: a `Now` write makes every
//!   earlier write durable, or fails. After a failed write no later write succeeds until what
//!   failed and was shown is durable: the store refuses writes meanwhile (`StoreError`, which the
//!   API answers 503) and says why in `faults` (which `/health` shows), and recovers by itself.
//! - **`update` holds a per-record lock from read to write**, so two writers never lose each
//!   other's changes; for a shared store the lock holds across servers. It calls `change` at
//!   most once.
//! - **A read that fails says so** (`StoreError`), never answers "no such record".
//! - **`scan` by prefix returns records in id order.** `get` and `scan` are cheap (an index);
//!   `all` and `len` read every record of the kind: for listings and counts that need them, not
//!   for a request's hot path.
//! - **Nothing outside the store may assume it holds every record in memory**, or that this
//!   server is the only writer: read through `get`/`scan`/`all` each time, change through
//!   `update`/`upsert`, and never keep a copy as the truth.
//!
//! The local implementation keeps every record in memory, loaded once at start (reads and
//! listings never parse files), over a `Backend` of bytes: the file backend's journal (see
//! `journal`: ordered, group-committed, retried after a fault) or memory only. The shared one
//! (`redis`) keeps nothing but what this server showed unsaved, and reads Redis each time.

mod copy;
mod counts;
mod file;
#[cfg(test)]
pub(crate) mod flaky;
mod journal;
mod memory;
mod redis;
mod table;

/// For the store's tests: waits (at most 10 s) until `done`, failing the test with `what`.
#[cfg(test)]
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::config::{Config, StorageType};
use crate::model::{ConversationLink, Day, Delivery, Session, Task, Turn};
use crate::redis_link::Link;

#[cfg(test)]
pub use counts::MAX_CLIENTS;
pub use counts::{Counts, LocalCounts, RedisCounts};
pub use file::FileBackend;
pub use memory::MemoryBackend;
pub use redis::RedisRecords;
pub use table::{Backend, Table};

/// When a write must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Before the call returns and before anyone can read the change.
    Now,
    /// Within a few milliseconds, and with the next `Now` write.
    Soon,
}

/// The records of one kind (see the ARCHITECTURE note above for what an implementation
/// guarantees). Object-safe; call sites use the generic `update` and `upsert` of
/// `dyn Records<T>`.
///
/// Reads can fail too (a shared store's server can be down): a failed read is a `StoreError`,
/// never a missing record, so an API answers 503 and not a wrong 404.
pub trait Records<T>: Send + Sync {
    fn get(&self, id: &str) -> Result<Option<Arc<T>>, StoreError>;

    /// Stores `record` under `id` and makes it visible (see `Durable` for the order).
    fn put(&self, id: &str, record: T, durable: Durable) -> Result<Arc<T>, StoreError>;

    /// Changes the stored record `id` with `change`, which says whether to write; returns the
    /// record as written (`None`: no such record, or nothing to write).
    fn update_with(
        &self,
        id: &str,
        durable: Durable,
        change: &mut dyn FnMut(&mut T) -> bool,
    ) -> Result<Option<Arc<T>>, StoreError>;

    /// Like `update_with`, but a missing record starts as `fresh()`: two first writers of one
    /// id cannot both create it and lose one change.
    fn upsert_with(
        &self,
        id: &str,
        durable: Durable,
        fresh: &mut dyn FnMut() -> T,
        change: &mut dyn FnMut(&mut T),
    ) -> Result<Arc<T>, StoreError>;

    /// Shows `record` to this server's readers without saving it, for a state that could not
    /// be saved but that readers must see; a restart (or another server) finds the last saved
    /// state instead.
    fn show_unsaved(&self, id: &str, record: T) -> Arc<T>;

    /// Saves what this server showed unsaved of `id`, unless the stored record stands
    /// (`stored_stands`, e.g. another server ended the task meanwhile; then that one is shown
    /// again). Ok(false): nothing was shown unsaved. Only a shared store does it: in it, nobody
    /// else would ever save a state that only one server knows. The file and memory stores keep
    /// it shown until a restart (their recovery sorts it out).
    fn save_shown(&self, id: &str, stored_stands: &mut dyn FnMut(&T) -> bool) -> Result<bool, StoreError> {
        let _ = (id, stored_stands);
        Ok(false)
    }

    fn remove(&self, id: &str, durable: Durable) -> Result<(), StoreError>;

    /// Records whose id starts with `prefix`, in id order.
    fn scan(&self, prefix: &str) -> Result<Vec<Arc<T>>, StoreError>;

    /// Every record of the kind (reads them all), in id order.
    fn all(&self) -> Result<Vec<Arc<T>>, StoreError>;

    /// How many records of the kind there are (may count them all).
    fn len(&self) -> Result<usize, StoreError>;
}

impl<T> dyn Records<T> + '_ {
    /// `update_with` for a closure that may take what it captures.
    pub fn update(
        &self,
        id: &str,
        durable: Durable,
        change: impl FnOnce(&mut T) -> bool,
    ) -> Result<Option<Arc<T>>, StoreError> {
        // Called at most once (the contract above); a second call would change nothing.
        let mut change = Some(change);
        self.update_with(id, durable, &mut |record| change.take().is_some_and(|change| change(record)))
    }

    /// `upsert_with` for plain closures.
    pub fn upsert(
        &self,
        id: &str,
        durable: Durable,
        mut fresh: impl FnMut() -> T,
        mut change: impl FnMut(&mut T),
    ) -> Result<Arc<T>, StoreError> {
        self.upsert_with(id, durable, &mut fresh, &mut change)
    }
}

/// What the store was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Save,
    Remove,
}

/// A failed read, write or removal: what was done, on what, why, and what to do about it.
#[derive(Debug)]
pub struct StoreError {
    pub op: Op,
    pub kind: &'static str,
    /// The record's id; empty for a read of the whole kind.
    pub id: String,
    pub source: io::Error,
    /// What to do about it; it depends on where the records live (the backend says). May be
    /// empty (an id that is refused needs no hint).
    pub hint: &'static str,
}

impl StoreError {
    pub fn new(op: Op, kind: &'static str, id: &str, source: io::Error, hint: &'static str) -> StoreError {
        StoreError { op, kind, id: id.to_string(), source, hint }
    }

    /// The store could not be reached (a shared store over the network): it may answer again in
    /// a moment, unlike a store that refused the write (a full or read-only disk).
    pub fn is_unreachable(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotConnected
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Read => "read",
            Op::Save => "save",
            Op::Remove => "remove",
        };
        match self.id.as_str() {
            "" => write!(f, "could not {op} the {} records: {}", self.kind, self.source)?,
            id => write!(f, "could not {op} {} record {id}: {}", self.kind, self.source)?,
        }
        match self.hint {
            "" => Ok(()),
            hint => write!(f, " ({hint})"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Every kind of record of ccs.
pub struct Store {
    home: Home,
    pub sessions: Box<dyn Records<Session>>,
    pub turns: Box<dyn Records<Turn>>,
    pub tasks: Box<dyn Records<Task>>,
    pub deliveries: Box<dyn Records<Delivery>>,
    /// Statistics, one record per day (`YYYY-MM-DD`).
    pub statistics: Box<dyn Records<Day>>,
    /// Conversations of the `/v1/` APIs by digest, at most one per session.
    pub conversations: Box<dyn Records<ConversationLink>>,
    /// Request counts for the rate limit.
    pub counts: Arc<dyn Counts>,
}

/// Where the records live.
enum Home {
    Local(Arc<dyn Backend>),
    Redis(Arc<Link>),
}

impl Store {
    /// Opens the store `config` names (`storageType`): the local one loads every record; the
    /// Redis one connects and checks its key prefix. Errors say what to fix.
    pub fn open(config: &Config) -> io::Result<Store> {
        let backend: Arc<dyn Backend> = match config.storage_type {
            StorageType::File => Arc::new(FileBackend::new(&config.data_dir)?),
            StorageType::Memory => Arc::new(MemoryBackend),
            // Never fall back to another store silently: that would lose or split data.
            StorageType::Redis => {
                let url = config.redis_url.as_deref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "storageType \"redis\" needs redisUrl in the config")
                })?;
                return Store::open_redis(url, &config.redis_key_prefix);
            }
        };
        Store::with_backend(backend)
    }

    /// The shared store: every kind in Redis over `link`.
    /// The store in the Redis at `url`, under `prefix` (errors say what to fix).
    pub fn open_redis(url: &str, prefix: &str) -> io::Result<Store> {
        Ok(Store::on_redis(Link::open(url, prefix)?))
    }

    pub fn on_redis(link: Arc<Link>) -> Store {
        Store {
            sessions: Box::new(RedisRecords::new("sessions", link.clone())),
            turns: Box::new(RedisRecords::new("turns", link.clone())),
            tasks: Box::new(RedisRecords::new("tasks", link.clone())),
            deliveries: Box::new(RedisRecords::new("deliveries", link.clone())),
            statistics: Box::new(RedisRecords::new("statistics", link.clone())),
            conversations: Box::new(RedisRecords::new("conversations", link.clone())),
            counts: Arc::new(RedisCounts::new(link.clone())),
            home: Home::Redis(link),
        }
    }

    /// For tests: the store of `storageType: "memory"`.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Store {
        Store::with_backend(Arc::new(MemoryBackend)).unwrap()
    }

    /// For tests: the file store in `dir`, its journal on a disk that fails on demand.
    #[cfg(test)]
    pub(crate) fn on_flaky_disk(dir: &std::path::Path) -> (Store, Arc<parking_lot::Mutex<flaky::Faults>>) {
        let disk = flaky::FlakyDisk::new(dir);
        let faults = disk.faults();
        let backend = FileBackend::open_on(dir, Box::new(disk), journal::CHECKPOINT_BYTES).unwrap();
        (Store::with_backend(Arc::new(backend)).unwrap(), faults)
    }

    /// The local store: every kind a `Table` over `backend`.
    pub fn with_backend(backend: Arc<dyn Backend>) -> io::Result<Store> {
        let store = Store {
            sessions: Box::new(Table::open("sessions", backend.clone())?),
            turns: Box::new(Table::open("turns", backend.clone())?),
            tasks: Box::new(Table::open("tasks", backend.clone())?),
            deliveries: Box::new(Table::open("deliveries", backend.clone())?),
            statistics: Box::new(Table::open("statistics", backend.clone())?),
            conversations: Box::new(Table::open("conversations", backend.clone())?),
            counts: Arc::new(LocalCounts::default()),
            home: Home::Local(backend.clone()),
        };
        backend.loaded()?;
        Ok(store)
    }

    /// What keeps the store from reading or writing now (empty: nothing), each with what it
    /// does about it; `/health` shows them.
    pub fn faults(&self) -> Vec<String> {
        match &self.home {
            Home::Local(backend) => backend.faults(),
            Home::Redis(link) => link.fault().into_iter().collect(),
        }
    }

    /// At a clean stop: everything written is made durable (the file store's journal is emptied
    /// into the record files); later writes fail. Redis has nothing pending: each write was
    /// acknowledged when it returned.
    pub fn close(&self) {
        match &self.home {
            Home::Local(backend) => backend.close(),
            Home::Redis(_) => {}
        }
    }
}
