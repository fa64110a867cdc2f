//! The local implementation of `Records`: one kind of record, every record in memory (loaded
//! once at start, indexed by id in order, so prefix scans are cheap), written through a
//! `Backend` of bytes by kind and id. Writes of one record are serialized by its lock (one of a
//! few stripes), from read to write, so writes of a record reach the backend in the order they
//! become visible.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Durable, Op, Records, StoreError};

/// Where records live: bytes by (kind, id).
pub trait Backend: Send + Sync {
    /// Every record of `kind`; records that cannot be read are moved aside and skipped.
    fn load(&self, kind: &str) -> io::Result<Vec<(String, Vec<u8>)>>;
    /// Writes `bytes` as the record (see `Durable`). After a write fails, later ones fail too
    /// until what failed and was shown is written (see the store's ARCHITECTURE note).
    fn write(&self, kind: &str, id: &str, bytes: &[u8], durable: Durable) -> io::Result<()>;
    fn remove(&self, kind: &str, id: &str, durable: Durable) -> io::Result<()>;
    /// Moves a record that does not parse out of the way; returns where it went.
    fn quarantine(&self, kind: &str, id: &str) -> io::Result<String>;
    /// Every table has loaded its records.
    fn loaded(&self) -> io::Result<()> {
        Ok(())
    }
    /// What keeps the backend from writing now, each with what it does about it.
    fn faults(&self) -> Vec<String> {
        Vec::new()
    }
    /// Writes what is pending; later writes fail.
    fn close(&self) {}
    /// What to do when a write fails (it goes into the `StoreError`).
    fn hint(&self) -> &'static str {
        ""
    }
}

/// One kind of record, indexed in memory by id.
pub struct Table<T> {
    kind: &'static str,
    backend: Arc<dyn Backend>,
    rows: RwLock<BTreeMap<String, Arc<T>>>,
    writers: [Mutex<()>; STRIPES],
}

const STRIPES: usize = 16;

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// The records of `kind` in `backend`; those that do not parse are moved aside.
    pub fn open(kind: &'static str, backend: Arc<dyn Backend>) -> io::Result<Table<T>> {
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

    /// The write itself; the caller holds the record's stripe lock.
    fn write(&self, id: &str, record: T, durable: Durable) -> Result<Arc<T>, StoreError> {
        if !is_safe_id(id) {
            return Err(unsafe_id(self.kind, id));
        }
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| self.error(Op::Save, id, e.into()))?;
        self.backend.write(self.kind, id, &bytes, durable).map_err(|e| self.error(Op::Save, id, e))?;
        let record = Arc::new(record);
        self.rows.write().insert(id.to_string(), record.clone());
        Ok(record)
    }

    fn error(&self, op: Op, id: &str, source: io::Error) -> StoreError {
        StoreError::new(op, self.kind, id, source, self.backend.hint())
    }

    fn writer(&self, id: &str) -> &Mutex<()> {
        &self.writers[stripe(id)]
    }
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync> Records<T> for Table<T> {
    fn get(&self, id: &str) -> Result<Option<Arc<T>>, StoreError> {
        Ok(self.rows.read().get(id).cloned())
    }

    fn put(&self, id: &str, record: T, durable: Durable) -> Result<Arc<T>, StoreError> {
        let _writer = self.writer(id).lock();
        self.write(id, record, durable)
    }

    fn update_with(
        &self,
        id: &str,
        durable: Durable,
        change: &mut dyn FnMut(&mut T) -> bool,
    ) -> Result<Option<Arc<T>>, StoreError> {
        let _writer = self.writer(id).lock();
        let Some(current) = self.rows.read().get(id).cloned() else { return Ok(None) };
        let mut next = (*current).clone();
        if !change(&mut next) {
            return Ok(None);
        }
        self.write(id, next, durable).map(Some)
    }

    fn upsert_with(
        &self,
        id: &str,
        durable: Durable,
        fresh: &mut dyn FnMut() -> T,
        change: &mut dyn FnMut(&mut T),
    ) -> Result<Arc<T>, StoreError> {
        let _writer = self.writer(id).lock();
        let current = self.rows.read().get(id).cloned();
        let mut next = current.map_or_else(fresh, |current| (*current).clone());
        change(&mut next);
        self.write(id, next, durable)
    }

    fn show_unsaved(&self, id: &str, record: T) -> Arc<T> {
        let _writer = self.writer(id).lock();
        let record = Arc::new(record);
        self.rows.write().insert(id.to_string(), record.clone());
        record
    }

    fn remove(&self, id: &str, durable: Durable) -> Result<(), StoreError> {
        let _writer = self.writer(id).lock();
        self.backend.remove(self.kind, id, durable).map_err(|e| self.error(Op::Remove, id, e))?;
        self.rows.write().remove(id);
        Ok(())
    }

    fn scan(&self, prefix: &str) -> Result<Vec<Arc<T>>, StoreError> {
        let rows = self.rows.read();
        Ok(rows
            .range(prefix.to_string()..)
            .take_while(|(id, _)| id.starts_with(prefix))
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn all(&self) -> Result<Vec<Arc<T>>, StoreError> {
        Ok(self.rows.read().values().cloned().collect())
    }

    fn len(&self) -> Result<usize, StoreError> {
        Ok(self.rows.read().len())
    }
}

fn stripe(id: &str) -> usize {
    id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % STRIPES
}

/// Ids of ASCII letters, digits, `-`, `_` and `.` (not first): safe as file names and keys.
pub(super) fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The refusal of an id that `is_safe_id` does not allow.
pub(super) fn unsafe_id(kind: &'static str, id: &str) -> StoreError {
    StoreError::new(Op::Save, kind, id, io::Error::new(io::ErrorKind::InvalidInput, "unsafe record id"), "")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::*;
    use crate::fsutil::TempDir;
    use crate::store::file::FileBackend;
    use crate::store::flaky::FlakyDisk;
    use crate::store::journal::CHECKPOINT_BYTES;
    use crate::store::memory::MemoryBackend;
    use crate::store::wait_until;

    type Things = Box<dyn Records<Value>>;

    fn table(dir: &Path) -> Things {
        Box::new(Table::<Value>::open("things", Arc::new(FileBackend::new(dir).unwrap())).unwrap())
    }

    fn in_memory() -> Arc<dyn Records<Value>> {
        Arc::new(Table::<Value>::open("things", Arc::new(MemoryBackend)).unwrap())
    }

    #[test]
    fn records_survive_a_reopen_and_scan_by_prefix() {
        let dir = TempDir::new("store");
        let t = table(dir.path());
        t.put("a.00000001", json!({"n": 1}), Durable::Now).unwrap();
        t.put("a.00000002", json!({"n": 2}), Durable::Soon).unwrap();
        t.put("b.00000001", json!({"n": 3}), Durable::Now).unwrap();
        t.put("a.00000001", json!({"n": 10}), Durable::Soon).unwrap();
        t.remove("b.00000001", Durable::Now).unwrap();
        drop(t);
        let reopened = table(dir.path());
        let scanned: Vec<i64> = reopened.scan("a.").unwrap().iter().map(|v| v["n"].as_i64().unwrap()).collect();
        assert_eq!(scanned, [10, 2]);
        assert_eq!(reopened.len().unwrap(), 2);
    }

    #[test]
    fn corrupt_records_are_moved_aside_and_leftover_temp_files_removed() {
        let dir = TempDir::new("store");
        table(dir.path()).put("good", json!({"ok": true}), Durable::Now).unwrap();
        std::fs::write(dir.join("things/bad.json"), b"{\"half\": ").unwrap();
        std::fs::write(dir.join("things/.good.json.1.2.tmp"), b"{").unwrap();
        let t = table(dir.path());
        assert_eq!(t.len().unwrap(), 1);
        let names: Vec<String> = std::fs::read_dir(dir.join("things"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("bad.json.corrupt-")), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_data_folder_has_one_owner_at_a_time() {
        let dir = TempDir::new("store");
        let first = FileBackend::new(dir.path()).unwrap();
        let err = FileBackend::new(dir.path()).err().unwrap();
        assert!(err.to_string().contains("another ccs server"), "{err}");
        drop(first);
        assert!(FileBackend::new(dir.path()).is_ok());
    }

    #[test]
    fn concurrent_updates_of_one_record_lose_nothing() {
        let t = in_memory();
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
        assert_eq!(*t.get("n").unwrap().unwrap(), json!({"a": 500, "b": 500}));
        assert!(t.update("missing", Durable::Now, |_| true).unwrap().is_none());
    }

    #[test]
    fn concurrent_upserts_of_a_new_record_lose_nothing() {
        let t = in_memory();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    t.upsert("day", Durable::Now, || json!(0), |v| *v = json!(v.as_i64().unwrap() + 1)).unwrap();
                })
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*t.get("day").unwrap().unwrap(), json!(8));
    }

    #[test]
    fn unsafe_ids_are_refused() {
        let dir = TempDir::new("store");
        let t = table(dir.path());
        assert!(t.put("../escape", json!(1), Durable::Now).is_err());
        assert!(t.put("", json!(1), Durable::Now).is_err());
    }

    #[test]
    fn memory_backend_keeps_nothing_across_opens() {
        let t = in_memory();
        t.put("x", json!(1), Durable::Now).unwrap();
        assert_eq!(t.get("x").unwrap().as_deref(), Some(&json!(1)));
        assert_eq!(in_memory().len().unwrap(), 0);
    }

    #[test]
    fn after_a_failed_write_no_now_write_succeeds_until_what_was_shown_is_on_disk() {
        let dir = TempDir::new("store");
        let disk = FlakyDisk::new(dir.path());
        let faults = disk.faults();
        let backend = Arc::new(FileBackend::open_on(dir.path(), Box::new(disk), CHECKPOINT_BYTES).unwrap());
        let t: Things = Box::new(Table::<Value>::open("things", backend.clone()).unwrap());
        backend.loaded().unwrap();
        t.put("kept", json!("before"), Durable::Now).unwrap();

        faults.lock().down = true;
        // Shown at once; its batch fails later, and it must still reach the disk before any
        // later write is acknowledged.
        t.update("kept", Durable::Soon, |v| {
            *v = json!("shown");
            true
        })
        .unwrap();
        wait_until("the failed batch is reported", || !backend.faults().is_empty());
        let refused = t.put("refused", json!(1), Durable::Now).unwrap_err().to_string();
        assert!(
            refused.contains("could not save things record refused") && refused.contains("refused until"),
            "{refused}"
        );
        assert!(t.get("refused").unwrap().is_none(), "a refused write is not shown");
        assert_eq!(*t.get("kept").unwrap().unwrap(), json!("shown"));

        faults.lock().down = false;
        wait_until("the store recovers", || backend.faults().is_empty());
        t.put("after", json!(2), Durable::Now).unwrap();
        drop(t);
        drop(backend);
        let reopened = table(dir.path());
        assert_eq!(*reopened.get("kept").unwrap().unwrap(), json!("shown"), "the shown write was written by a retry");
        assert_eq!(*reopened.get("after").unwrap().unwrap(), json!(2));
        assert!(reopened.get("refused").unwrap().is_none());
    }
}
