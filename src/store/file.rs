//! `storageType: "file"`: one JSON file per record, `<dataDir>/<kind>/<id>.json`, written
//! atomically and durably (see `fsutil`).

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::Backend;
use crate::fsutil;

pub struct FileBackend {
    root: PathBuf,
    /// Held open for the life of the backend: the exclusive lock on the data folder.
    _lock: fs::File,
}

impl FileBackend {
    /// Opens `root`, taking an exclusive lock on it: two servers on one data folder would each
    /// believe the other's running tasks were interrupted. The OS drops the lock if we die.
    pub fn new(root: &Path) -> io::Result<FileBackend> {
        fs::create_dir_all(root)?;
        let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join(".lock"))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "another ccs server is using this data folder; stop it first, or give this one its own --home",
                ));
            }
            return Err(err);
        }
        Ok(FileBackend { root: root.to_path_buf(), _lock: lock })
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(kind).join(format!("{id}.json"))
    }
}

impl Backend for FileBackend {
    fn load(&self, kind: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        let dir = self.root.join(kind);
        fs::create_dir_all(&dir)?;
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
            records.push((id.to_string(), fs::read(&path)?));
        }
        Ok(records)
    }

    fn write(&self, kind: &str, id: &str, bytes: &[u8]) -> io::Result<()> {
        fsutil::write_atomic(&self.path(kind, id), bytes)
    }

    fn remove(&self, kind: &str, id: &str) -> io::Result<()> {
        fsutil::remove_durable(&self.path(kind, id))
    }

    fn quarantine(&self, kind: &str, id: &str) -> io::Result<String> {
        let from = self.path(kind, id);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = from.with_file_name(format!("{id}.json.corrupt-{stamp}"));
        fs::rename(&from, &to)?;
        Ok(to.display().to_string())
    }
}
