//! `storageType: "file"`: one JSON file per record, `<dataDir>/<kind>/<id>.json`, replaced
//! atomically; every change goes through the journal first (`<dataDir>/journal-<n>`, see
//! `journal`), which makes it durable. After a clean stop no journal is left.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::journal::{Change, Journal, Replayed};
use super::{Backend, Durable};
use crate::fsutil;

pub struct FileBackend {
    root: PathBuf,
    journal: Journal,
    /// Records the journal held at open (taken by `load`): they win over the record files.
    replayed: parking_lot::Mutex<Replayed>,
    /// Held open for the life of the backend: the exclusive lock on the data folder.
    _lock: fs::File,
}

/// Where the record `id` of `kind` lives under `root`.
pub fn record_path(root: &Path, kind: &str, id: &str) -> PathBuf {
    root.join(kind).join(format!("{id}.json"))
}

impl FileBackend {
    /// Opens `root`, taking an exclusive lock on it: two servers on one data folder would each
    /// believe the other's running tasks were interrupted. The OS drops the lock if we die.
    pub fn new(root: &Path) -> io::Result<FileBackend> {
        crate::fsutil::create_private_dir(root)?;
        let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join(".lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another ccs server is using this data folder; stop it first, or give this one its own --home",
                ))
            }
            Err(fs::TryLockError::Error(err)) => return Err(err),
        }
        let (journal, replayed) = Journal::open(root)?;
        Ok(FileBackend { root: root.to_path_buf(), journal, replayed: parking_lot::Mutex::new(replayed), _lock: lock })
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        record_path(&self.root, kind, id)
    }

    fn change(&self, kind: &str, id: &str, bytes: Option<&[u8]>, durable: Durable) -> io::Result<()> {
        let change = Change { kind: kind.into(), id: id.into(), bytes: bytes.map(<[u8]>::to_vec) };
        self.journal.append(change, durable == Durable::Now)
    }
}

impl Backend for FileBackend {
    fn load(&self, kind: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        let dir = self.root.join(kind);
        fs::create_dir_all(&dir)?;
        let mut journaled = HashMap::new();
        self.replayed.lock().retain(|(k, id), bytes| {
            if k != kind {
                return true;
            }
            journaled.insert(id.clone(), bytes.take());
            false
        });
        let mut records = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(fsutil::TEMP_SUFFIX) {
                // An interrupted write: the record it was replacing is still intact.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !journaled.contains_key(id) {
                records.push((id.to_string(), fs::read(&path)?));
            }
        }
        records.extend(journaled.into_iter().filter_map(|(id, bytes)| Some((id, bytes?))));
        Ok(records)
    }

    fn write(&self, kind: &str, id: &str, bytes: &[u8], durable: Durable) -> io::Result<()> {
        self.change(kind, id, Some(bytes), durable)
    }

    fn remove(&self, kind: &str, id: &str, durable: Durable) -> io::Result<()> {
        self.change(kind, id, None, durable)
    }

    fn loaded(&self) -> io::Result<()> {
        self.journal.start_applying()
    }

    fn close(&self) {
        self.journal.close();
    }

    fn quarantine(&self, kind: &str, id: &str) -> io::Result<String> {
        let from = self.path(kind, id);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = from.with_file_name(format!("{id}.json.corrupt-{stamp}"));
        fs::rename(&from, &to)?;
        Ok(to.display().to_string())
    }
}
