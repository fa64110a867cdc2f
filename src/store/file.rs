//! `storageType: "file"`: one JSON file per record, `<dataDir>/<kind>/<id>.json`. Every change
//! goes through the journal first (`<dataDir>/journal-<n>`, see `journal`), which makes it
//! durable; then the applier thread here replaces the record files, atomically (temp file +
//! rename: a reader never sees half a file) but without fsync of their own, off the commit path,
//! and retires each journal file once it applied it: it fsyncs the record files (and folders)
//! it wrote since the last one, then deletes the file. After a clean stop no journal is left and every record file is current.
//!
//! The applier takes its work in order. When a record file cannot be written it tries the same
//! work again every second and does nothing after it meanwhile (a record file must never get an
//! older state after a newer one); the journal keeps every change until then, and a stop while
//! it fails leaves the journal files for the next start to apply.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::journal::{Change, Disk, Folder, Journal, Replayed, Work, CHECKPOINT_BYTES, RETRY};
use super::{Backend, Durable};
use crate::fsutil::{self, sync_dir};

pub struct FileBackend {
    root: PathBuf,
    journal: Journal,
    /// Records the journal held at open (taken by `load`): they win over the record files.
    replayed: Mutex<Replayed>,
    applier: Applier,
    /// Held open for the life of the backend: the exclusive lock on the data folder.
    _lock: File,
}

/// The thread that writes record files and retires journal files.
struct Applier {
    /// Its work until `start` starts it.
    unstarted: Mutex<Option<Receiver<Work>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropped at close: a failing applier stops trying again.
    stop: Mutex<Option<Sender<()>>>,
    stopped: Receiver<()>,
    /// Why record files cannot be written now, if they cannot.
    fault: Arc<Mutex<Option<String>>>,
}

/// Where the record `id` of `kind` lives under `root`.
fn record_path(root: &Path, kind: &str, id: &str) -> PathBuf {
    root.join(kind).join(format!("{id}.json"))
}

impl FileBackend {
    /// Opens `root`, taking an exclusive lock on it: two servers on one data folder would each
    /// believe the other's running tasks were interrupted. The OS drops the lock if we die.
    pub fn new(root: &Path) -> io::Result<FileBackend> {
        FileBackend::open_on(root, Box::new(Folder::new(root)), CHECKPOINT_BYTES)
    }

    /// `new`, with the journal written through `disk` and retired every `limit` bytes.
    pub(crate) fn open_on(root: &Path, disk: Box<dyn Disk>, limit: u64) -> io::Result<FileBackend> {
        fsutil::create_private_dir(root)?;
        let lock = lock_folder(root)?;
        let (journal, replayed, work) = Journal::open_on(root, disk, limit)?;
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let applier = Applier {
            unstarted: Mutex::new(Some(work)),
            thread: Mutex::new(None),
            stop: Mutex::new(Some(stop)),
            stopped,
            fault: Arc::default(),
        };
        Ok(FileBackend { root: root.to_path_buf(), journal, replayed: Mutex::new(replayed), applier, _lock: lock })
    }

    fn change(&self, kind: &str, id: &str, bytes: Option<&[u8]>, durable: Durable) -> io::Result<()> {
        let change = Change { kind: kind.into(), id: id.into(), bytes: bytes.map(<[u8]>::to_vec) };
        self.journal.append(change, durable == Durable::Now)
    }

    /// Starts writing record files; called once they have all been read (the applier's temp
    /// files must not meet a load that clears leftover temp files).
    fn start_applying(&self) -> io::Result<()> {
        let Some(work) = self.applier.unstarted.lock().take() else { return Ok(()) };
        let (root, stopped, fault) = (self.root.clone(), self.applier.stopped.clone(), self.applier.fault.clone());
        let thread = std::thread::Builder::new()
            .name("journal-apply".into())
            .spawn(move || run_applier(&root, &work, &stopped, &fault))?;
        *self.applier.thread.lock() = Some(thread);
        Ok(())
    }
}

/// The exclusive lock on `root`, on its `.lock` file held open read-only (so ccs holds no file
/// of the data folder open for writing; see `journal::Folder`).
fn lock_folder(root: &Path) -> io::Result<File> {
    let path = root.join(".lock");
    let lock = match File::open(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            File::open(&path)?
        }
        opened => opened?,
    };
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another ccs server is using this data folder; stop it first, or give this one its own --home",
        )),
        Err(fs::TryLockError::Error(err)) => Err(err),
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
        self.start_applying()
    }

    /// Commits what is pending, applies everything to the record files, syncs them, removes
    /// the journal files and stops both threads.
    fn close(&self) {
        if let Err(e) = self.start_applying() {
            log::error!("cannot start the store's applier ({e}); the next start applies the journal");
        }
        self.journal.close();
        self.applier.stop.lock().take();
        if let Some(thread) = self.applier.thread.lock().take() {
            let _ = thread.join();
        }
    }

    fn hint(&self) -> &'static str {
        "check free disk space, the permissions of dataDir and that its file system is writable; GET /health \
         says when the store writes again"
    }

    fn faults(&self) -> Vec<String> {
        let journal = self.journal.fault().map(|fault| fault.to_string());
        journal.into_iter().chain(self.applier.fault.lock().clone()).collect()
    }

    fn quarantine(&self, kind: &str, id: &str) -> io::Result<String> {
        let from = record_path(&self.root, kind, id);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = from.with_file_name(format!("{id}.json.corrupt-{stamp}"));
        fs::rename(&from, &to)?;
        Ok(to.display().to_string())
    }
}

impl Drop for FileBackend {
    fn drop(&mut self) {
        self.close();
    }
}

/// The applier thread: does each piece of work until it is done, in order, until the journal
/// stops sending any, or the store closes while a piece fails.
fn run_applier(root: &Path, work: &Receiver<Work>, stopped: &Receiver<()>, fault: &Mutex<Option<String>>) {
    let mut written = Written::default();
    for item in work {
        if !do_until_done(root, &item, &mut written, stopped, fault) {
            log::error!("the store closed while record files could not be written; the next start applies its journal");
            return;
        }
    }
}

/// Does `item`, and again every `RETRY` while it fails; `false`: the store closed meanwhile.
fn do_until_done(
    root: &Path,
    item: &Work,
    written: &mut Written,
    stopped: &Receiver<()>,
    fault: &Mutex<Option<String>>,
) -> bool {
    loop {
        match do_work(root, item, written) {
            Ok(()) => {
                if let Some(was) = fault.lock().take() {
                    log::warn!("record files are written again (after: {was})");
                }
                return true;
            }
            Err(e) => {
                let mut fault = fault.lock();
                if fault.is_none() {
                    log::error!(
                        "{e}; tried again every {} s, and the journal keeps every change meanwhile",
                        RETRY.as_secs()
                    );
                }
                *fault = Some(e);
            }
        }
        if !matches!(stopped.recv_timeout(RETRY), Err(RecvTimeoutError::Timeout)) {
            return false;
        }
    }
}

/// Applies committed changes to the record files, or retires an applied journal file.
fn do_work(root: &Path, item: &Work, written: &mut Written) -> Result<(), String> {
    match item {
        Work::Apply(batch) => batch.iter().try_for_each(|change| {
            apply(root, change, written)
                .map_err(|e| format!("{} record {} could not be written to its file ({e})", change.kind, change.id))
        }),
        Work::Retire(path) => retire(root, path, written)
            .map_err(|e| format!("the applied journal file {} could not be removed ({e})", path.display())),
    }
}

/// The record files (and their folders) changed since the last journal file was retired: what
/// must be made durable before the next one goes.
#[derive(Default)]
struct Written {
    files: HashSet<PathBuf>,
    folders: HashSet<PathBuf>,
}

impl Written {
    /// fsync of every file, then of every folder (their renames and removals).
    fn make_durable(&mut self) -> io::Result<()> {
        for file in &self.files {
            match File::open(file).and_then(|f| f.sync_all()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for folder in &self.folders {
            sync_dir(folder)?;
        }
        self.files.clear();
        self.folders.clear();
        Ok(())
    }
}

fn apply(root: &Path, change: &Change, written: &mut Written) -> io::Result<()> {
    let path = record_path(root, &change.kind, &change.id);
    if let Some(folder) = path.parent() {
        written.folders.insert(folder.to_path_buf());
    }
    if change.bytes.is_some() {
        written.files.insert(path.clone());
    }
    match &change.bytes {
        Some(bytes) => fsutil::replace(&path, bytes),
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Makes the record files written since the last retirement durable, then removes the journal
/// file `path` durably.
fn retire(root: &Path, path: &Path, written: &mut Written) -> io::Result<()> {
    written.make_durable()?;
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => sync_dir(root),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::fsutil::TempDir;
    use crate::store::journal::leave_two_journal_files;
    use crate::store::wait_until;

    fn journal_files(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("journal-"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn records_of_journal_files_left_are_read_from_them_then_applied_and_retired() {
        let root = TempDir::new("file");
        // What a crash can leave: a record file emptied by a write that had not reached the
        // disk, and a removal that did not reach the record files at all.
        fs::create_dir_all(root.join("things")).unwrap();
        fs::write(root.join("things/a.json"), b"").unwrap();
        fs::write(root.join("things/b.json"), b"{\"old\":true}").unwrap();
        leave_two_journal_files(root.path());

        let backend = FileBackend::new(root.path()).unwrap();
        assert_eq!(backend.load("things").unwrap(), [("a".to_string(), b"{\"n\":2}".to_vec())]);
        backend.loaded().unwrap();
        drop(backend);
        assert_eq!(fs::read_to_string(root.join("things/a.json")).unwrap(), "{\"n\":2}");
        assert!(!root.join("things/b.json").exists());
        assert_eq!(journal_files(root.path()), Vec::<String>::new(), "the old files were applied and retired");
    }

    #[test]
    fn concurrent_writers_share_fsyncs_and_close_leaves_complete_files() {
        let root = TempDir::new("file");
        let backend = Arc::new(FileBackend::new(root.path()).unwrap());
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let backend = backend.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        backend.write("things", &format!("w{w}-{i}"), b"{}", Durable::Now).unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        backend.write("things", "last", b"{\"soon\":true}", Durable::Soon).unwrap();
        let commits = backend.journal.commits();
        assert!(commits < 200, "200 waited-for changes took {commits} commits: no grouping");
        backend.close();
        assert_eq!(fs::read_dir(root.join("things")).unwrap().count(), 201);
        assert_eq!(fs::read_to_string(root.join("things/last.json")).unwrap(), "{\"soon\":true}");
        assert_eq!(journal_files(root.path()), Vec::<String>::new(), "a clean close leaves no journal");
        assert!(backend.write("things", "late", b"{}", Durable::Now).is_err(), "a closed store refuses writes");
    }

    #[test]
    fn full_journal_files_are_retired_once_applied() {
        let root = TempDir::new("file");
        let backend = FileBackend::open_on(root.path(), Box::new(Folder::new(root.path())), 1024).unwrap();
        backend.loaded().unwrap();
        for i in 0..40 {
            let bytes = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
            backend.write("things", &format!("r{i}"), bytes.as_bytes(), Durable::Now).unwrap();
        }
        wait_until("one journal file is left", || journal_files(root.path()).len() == 1);
        let current = journal_files(root.path());
        let number: u64 = current[0].trim_start_matches("journal-").parse().unwrap();
        assert!(number > 3, "40 changes of 130 bytes fill several 1 KB files: {current:?}");
        drop(backend);
        let reopened = FileBackend::new(root.path()).unwrap();
        assert_eq!(reopened.replayed.lock().len(), 0, "a clean close leaves nothing to replay");
        assert_eq!(fs::read_dir(root.join("things")).unwrap().count(), 40);
    }

    #[test]
    fn a_record_file_that_cannot_be_written_is_tried_again_until_it_is() {
        let root = TempDir::new("file");
        let backend = FileBackend::new(root.path()).unwrap();
        backend.loaded().unwrap();
        // A file where the folder of the kind should be: no record file can be created in it.
        fs::write(root.join("things"), b"").unwrap();
        backend.write("things", "a", b"{\"n\":1}", Durable::Now).unwrap();
        wait_until("the applier reports its fault", || !backend.faults().is_empty());
        assert!(backend.faults()[0].contains("things record a could not be written"), "{:?}", backend.faults());
        backend.write("things", "a", b"{\"n\":2}", Durable::Now).unwrap();

        fs::remove_file(root.join("things")).unwrap();
        wait_until("the applier recovers", || backend.faults().is_empty());
        wait_until("the newest state is in the record file", || {
            fs::read_to_string(root.join("things/a.json")).is_ok_and(|text| text == "{\"n\":2}")
        });
        drop(backend);
        assert_eq!(journal_files(root.path()), Vec::<String>::new(), "retired once applied");
    }
}
