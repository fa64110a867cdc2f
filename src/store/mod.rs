//! Records on disk (or only in memory), one record per key, each written on its own so the cost
//! of a write does not grow with the number of records. Every table keeps all its records in
//! memory, loaded once at start: reads and listings never parse files.
//!
//! Every write says when it must be on disk (`Durable`). The rule: whatever a client is told
//! (an id, an answer, a webhook) is durable before it is told. A `Now` write is durable before
//! the in-memory copy changes; a `Soon` write is visible at once and durable within a few
//! milliseconds, and is for states nobody has been told about, followed by a `Now` write: the
//! file store's journal is ordered, so a `Now` write makes every earlier write durable too.
//! Changes to an existing record go through `update`, which holds that record's lock (one of a
//! few stripes) from read to write, so two writers never lose each other's changes.

mod file;
mod journal;
mod memory;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::StorageType;
use crate::model::{Day, Delivery, Session, Task, Turn};

pub use file::FileBackend;
pub use memory::MemoryBackend;

/// When a write must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Before the call returns and before anyone can read the change.
    Now,
    /// Within a few milliseconds, and with the next `Now` write.
    Soon,
}

/// Where records live: bytes by (kind, id).
pub trait Backend: Send + Sync {
    /// Every record of `kind`; records that cannot be read are moved aside and skipped.
    fn load(&self, kind: &str) -> io::Result<Vec<(String, Vec<u8>)>>;
    fn write(&self, kind: &str, id: &str, bytes: &[u8], durable: Durable) -> io::Result<()>;
    fn remove(&self, kind: &str, id: &str, durable: Durable) -> io::Result<()>;
    /// Moves a record that does not parse out of the way; returns where it went.
    fn quarantine(&self, kind: &str, id: &str) -> io::Result<String>;
    /// Every table has loaded its records.
    fn loaded(&self) -> io::Result<()> {
        Ok(())
    }
    /// Writes what is pending; later writes fail.
    fn close(&self) {}
}

/// A failed write or removal.
#[derive(Debug)]
pub struct StoreError {
    pub kind: &'static str,
    pub id: String,
    pub source: io::Error,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not save {} record {}: {} (check free disk space and the permissions of dataDir)",
            self.kind, self.id, self.source
        )
    }
}

impl std::error::Error for StoreError {}

/// One kind of record, indexed in memory by id (ordered, so prefix scans are cheap).
pub struct Table<T> {
    kind: &'static str,
    backend: Arc<dyn Backend>,
    rows: RwLock<BTreeMap<String, Arc<T>>>,
    writers: [Mutex<()>; STRIPES],
}

const STRIPES: usize = 16;

impl<T: Serialize + DeserializeOwned + Clone> Table<T> {
    fn open(kind: &'static str, backend: Arc<dyn Backend>) -> io::Result<Table<T>> {
        let mut rows = BTreeMap::new();
        for (id, bytes) in backend.load(kind)? {
            match serde_json::from_slice::<T>(&bytes) {
                Ok(record) => {
                    rows.insert(id, Arc::new(record));
                }
                Err(err) => match backend.quarantine(kind, &id) {
                    Ok(to) => {
                        log::warn!("{kind} record {id} is corrupt ({err}); moved it aside to {to}")
                    }
                    Err(e) => log::warn!("{kind} record {id} is corrupt ({err}) and could not be moved aside: {e}"),
                },
            }
        }
        Ok(Table { kind, backend, rows: RwLock::new(rows), writers: Default::default() })
    }

    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.rows.read().get(id).cloned()
    }

    /// Stores `record` under `id` and makes it visible (see `Durable` for the order).
    pub fn put(&self, id: &str, record: T, durable: Durable) -> Result<Arc<T>, StoreError> {
        let _writer = self.writers[stripe(id)].lock();
        self.write(id, record, durable)
    }

    /// The write itself; the caller holds the record's stripe lock, so writes of one record
    /// reach the backend in the order they become visible.
    fn write(&self, id: &str, record: T, durable: Durable) -> Result<Arc<T>, StoreError> {
        let error = |source| StoreError { kind: self.kind, id: id.to_string(), source };
        if !is_safe_id(id) {
            return Err(error(io::Error::new(io::ErrorKind::InvalidInput, "unsafe record id")));
        }
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| error(e.into()))?;
        self.backend.write(self.kind, id, &bytes, durable).map_err(error)?;
        let record = Arc::new(record);
        self.rows.write().insert(id.to_string(), record.clone());
        Ok(record)
    }

    /// Changes the stored record `id` with `change`, which says whether to write; returns the
    /// record as written (`None`: no such record, or nothing to write).
    pub fn update(
        &self,
        id: &str,
        durable: Durable,
        change: impl FnOnce(&mut T) -> bool,
    ) -> Result<Option<Arc<T>>, StoreError> {
        let _writer = self.writers[stripe(id)].lock();
        let Some(current) = self.get(id) else { return Ok(None) };
        let mut next = (*current).clone();
        if !change(&mut next) {
            return Ok(None);
        }
        self.write(id, next, durable).map(Some)
    }

    /// Like `update`, but a missing record starts as `fresh()`: two first writers of one id
    /// cannot both create it and lose one change.
    pub fn upsert(
        &self,
        id: &str,
        durable: Durable,
        fresh: impl FnOnce() -> T,
        change: impl FnOnce(&mut T),
    ) -> Result<Arc<T>, StoreError> {
        let _writer = self.writers[stripe(id)].lock();
        let mut next = self.get(id).map_or_else(fresh, |current| (*current).clone());
        change(&mut next);
        self.write(id, next, durable)
    }

    /// Shows `record` without saving it, for a state that could not be saved (the disk is
    /// full) but that readers must see; a restart finds the last saved state instead.
    pub fn show_unsaved(&self, id: &str, record: T) -> Arc<T> {
        let _writer = self.writers[stripe(id)].lock();
        let record = Arc::new(record);
        self.rows.write().insert(id.to_string(), record.clone());
        record
    }

    pub fn remove(&self, id: &str, durable: Durable) -> Result<(), StoreError> {
        let _writer = self.writers[stripe(id)].lock();
        self.backend.remove(self.kind, id, durable).map_err(|source| StoreError {
            kind: self.kind,
            id: id.to_string(),
            source,
        })?;
        self.rows.write().remove(id);
        Ok(())
    }

    /// Records whose id starts with `prefix`, in id order.
    pub fn scan(&self, prefix: &str) -> Vec<Arc<T>> {
        let rows = self.rows.read();
        rows.range(prefix.to_string()..).take_while(|(id, _)| id.starts_with(prefix)).map(|(_, r)| r.clone()).collect()
    }

    pub fn all(&self) -> Vec<Arc<T>> {
        self.rows.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.rows.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stripe(id: &str) -> usize {
    id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % STRIPES
}

fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Every table of ccs.
pub struct Store {
    backend: Arc<dyn Backend>,
    pub sessions: Table<Session>,
    pub turns: Table<Turn>,
    pub tasks: Table<Task>,
    pub deliveries: Table<Delivery>,
    /// Statistics, one record per day (`YYYY-MM-DD`).
    pub statistics: Table<Day>,
}

impl Store {
    /// Opens the store of `storage_type` under `data_dir`, loading every record.
    pub fn open(storage_type: StorageType, data_dir: &Path) -> io::Result<Store> {
        let backend: Arc<dyn Backend> = match storage_type {
            StorageType::File => Arc::new(FileBackend::new(data_dir)?),
            StorageType::Memory => Arc::new(MemoryBackend),
            // Never fall back to memory silently: that would lose data on restart.
            StorageType::Redis => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "storageType \"redis\" is not available yet"))
            }
        };
        Store::with_backend(backend)
    }

    pub fn with_backend(backend: Arc<dyn Backend>) -> io::Result<Store> {
        let store = Store {
            sessions: Table::open("sessions", backend.clone())?,
            turns: Table::open("turns", backend.clone())?,
            tasks: Table::open("tasks", backend.clone())?,
            deliveries: Table::open("deliveries", backend.clone())?,
            statistics: Table::open("statistics", backend.clone())?,
            backend,
        };
        store.backend.loaded()?;
        Ok(store)
    }

    /// At a clean stop: everything written is made durable (the file store's journal is emptied
    /// into the record files); later writes fail.
    pub fn close(&self) {
        self.backend.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ccs-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn table(dir: &Path) -> Table<Value> {
        Table::open("things", Arc::new(FileBackend::new(dir).unwrap())).unwrap()
    }

    #[test]
    fn records_survive_a_reopen_and_scan_by_prefix() {
        let dir = temp_dir();
        let t = table(&dir);
        t.put("a.00000001", json!({"n": 1}), Durable::Now).unwrap();
        t.put("a.00000002", json!({"n": 2}), Durable::Soon).unwrap();
        t.put("b.00000001", json!({"n": 3}), Durable::Now).unwrap();
        t.put("a.00000001", json!({"n": 10}), Durable::Soon).unwrap();
        t.remove("b.00000001", Durable::Now).unwrap();
        drop(t);
        let reopened = table(&dir);
        let scanned: Vec<i64> = reopened.scan("a.").iter().map(|v| v["n"].as_i64().unwrap()).collect();
        assert_eq!(scanned, [10, 2]);
        assert_eq!(reopened.len(), 2);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn corrupt_records_are_moved_aside_and_leftover_temp_files_removed() {
        let dir = temp_dir();
        table(&dir).put("good", json!({"ok": true}), Durable::Now).unwrap();
        std::fs::write(dir.join("things/bad.json"), b"{\"half\": ").unwrap();
        std::fs::write(dir.join("things/.good.json.1.2.tmp"), b"{").unwrap();
        let t = table(&dir);
        assert_eq!(t.len(), 1);
        let names: Vec<String> = std::fs::read_dir(dir.join("things"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("bad.json.corrupt-")), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_data_folder_has_one_owner_at_a_time() {
        let dir = temp_dir();
        let first = FileBackend::new(&dir).unwrap();
        let err = FileBackend::new(&dir).err().unwrap();
        assert!(err.to_string().contains("another ccs server"), "{err}");
        drop(first);
        assert!(FileBackend::new(&dir).is_ok());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn concurrent_updates_of_one_record_lose_nothing() {
        let t: Arc<Table<Value>> = Arc::new(Table::open("things", Arc::new(MemoryBackend)).unwrap());
        t.put("n", json!({"a": 0, "b": 0}), Durable::Now).unwrap();
        let threads: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|field| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        t.update("n", Durable::Now, |v| {
                            v[field] = json!(v[field].as_i64().unwrap() + 1);
                            true
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*t.get("n").unwrap(), json!({"a": 500, "b": 500}));
        assert!(t.update("missing", Durable::Now, |_| true).unwrap().is_none());
    }

    #[test]
    fn concurrent_upserts_of_a_new_record_lose_nothing() {
        let t: Arc<Table<Value>> = Arc::new(Table::open("things", Arc::new(MemoryBackend)).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    t.upsert("day", Durable::Now, || json!(0), |v| *v = json!(v.as_i64().unwrap() + 1)).unwrap();
                })
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*t.get("day").unwrap(), json!(8));
    }

    #[test]
    fn unsafe_ids_are_refused() {
        let dir = temp_dir();
        let t = table(&dir);
        assert!(t.put("../escape", json!(1), Durable::Now).is_err());
        assert!(t.put("", json!(1), Durable::Now).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn memory_backend_keeps_nothing_across_opens() {
        let t: Table<Value> = Table::open("things", Arc::new(MemoryBackend)).unwrap();
        t.put("x", json!(1), Durable::Now).unwrap();
        assert_eq!(t.get("x").as_deref(), Some(&json!(1)));
        let again: Table<Value> = Table::open("things", Arc::new(MemoryBackend)).unwrap();
        assert!(again.is_empty());
    }
}
