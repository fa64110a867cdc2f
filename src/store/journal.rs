//! The write-ahead journal of the file store. Every change is appended here first, by one
//! committer thread that makes a whole batch durable with one fdatasync however many threads
//! wrote to it (group commit). An applier thread then replaces the record files, atomically
//! (temp file + rename: a reader never sees half a file) but without fsync of their own, off
//! the commit path. Every 16 MB the committer goes on in a new journal file, and the applier,
//! once it has applied the old one, syncs every file under the data folder and deletes it. At open,
//! whatever journal files a crash left are read first: their records are served from them (not
//! from the record files, which a crash can leave stale or empty) and the applier rewrites them.
//! After a clean stop no journal file is left and every record file is current.
//!
//! Frames: `len u32 | sum u64 | payload`, little-endian, `sum` the FNV-1a hash of the payload;
//! payload `op u8 | kind len u8 | kind | id len u16 | id | bytes`. A torn last frame (the crash
//! came during its write, so nobody was told about it) fails its length or sum and ends replay.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::file::record_path;
use crate::fsutil::sync_dir;

/// A journal file is retired (and a new one started) once it holds this much.
const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// How long changes nobody waits for may sit before they are committed (a change that is
/// waited for commits them at once).
const SOON: Duration = Duration::from_millis(5);
/// Failed batches remembered for the writers still to wake up.
const MAX_FAILURES: usize = 64;
/// Journal files are `journal-<n>`, replayed in the order of n.
const PREFIX: &str = "journal-";

/// One change of a record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: String,
    pub id: String,
    /// The new content; `None` removes the record.
    pub bytes: Option<Vec<u8>>,
}

pub struct Journal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The applier's work until `start_applying` starts it.
    unstarted: Mutex<Option<(PathBuf, Receiver<Work>)>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the committer: something was appended, or stop.
    work: Condvar,
    /// Wakes writers: a batch was committed (or failed).
    committed: Condvar,
}

#[derive(Default)]
struct State {
    pending: Vec<Change>,
    /// Someone waits for a pending change: commit without delay.
    awaited: bool,
    /// Sequence numbers: of the last change appended, and of the last one on disk.
    appended: u64,
    durable: u64,
    /// Batches that could not be committed: (first, last) sequence numbers and the reason.
    failures: VecDeque<(u64, u64, String)>,
    stopping: bool,
    stopped: bool,
    /// Batches committed (each one fdatasync), for the tests of group commit.
    commits: u64,
}

/// What the applier thread does, in order.
enum Work {
    /// Write these committed changes to the record files.
    Apply(Vec<Change>),
    /// Every change of this journal file has been applied: sync the records, delete the file.
    Retire(PathBuf),
}

/// The last state of every record named in the journal files left from before: `None` when
/// the record was removed.
pub type Replayed = HashMap<(String, String), Option<Vec<u8>>>;

impl Journal {
    /// Starts a new journal file with its committer and applier threads. What the journal files
    /// left under `root` hold (a crash came before they were retired) is returned, to be read
    /// instead of the record files, and handed to the applier first: it writes those records and
    /// retires the old files while the server already runs (a start does not wait for thousands
    /// of files to be written).
    pub fn open(root: &Path) -> io::Result<(Journal, Replayed)> {
        Journal::open_with_limit(root, CHECKPOINT_BYTES)
    }

    /// `open`, with journal files retired once they hold `limit` bytes.
    fn open_with_limit(root: &Path, limit: u64) -> io::Result<(Journal, Replayed)> {
        let old = journal_files(root)?;
        let mut replayed = Replayed::new();
        let mut leftovers = Vec::new();
        for (_, path) in old.iter() {
            let changes = read_changes(path)?;
            for change in &changes {
                replayed.insert((change.kind.clone(), change.id.clone()), change.bytes.clone());
            }
            leftovers.push(Work::Apply(changes));
            leftovers.push(Work::Retire(path.clone()));
        }
        if !replayed.is_empty() {
            log::info!(
                "{} record(s) changed in the store's journal since the last checkpoint; they are read from it",
                replayed.len()
            );
        }
        let number = old.last().map_or(1, |(n, _)| n + 1);
        let (file, path) = create_journal(root, number)?;
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), work: Condvar::new(), committed: Condvar::new() });
        let (to_applier, work) = crossbeam_channel::unbounded();
        for item in leftovers {
            let _ = to_applier.send(item);
        }
        let committer = Committer {
            shared: shared.clone(),
            file,
            path,
            number,
            written: 0,
            limit,
            root: root.to_path_buf(),
            to_applier,
        };
        let threads = vec![std::thread::Builder::new().name("journal".into()).spawn(move || committer.run())?];
        let unstarted = Mutex::new(Some((root.to_path_buf(), work)));
        Ok((Journal { shared, threads: Mutex::new(threads), unstarted }, replayed))
    }

    /// Starts writing record files; called once they have all been read (the applier's temp
    /// files must not meet a load that clears leftover temp files).
    pub fn start_applying(&self) -> io::Result<()> {
        let Some((root, work)) = self.unstarted.lock().take() else { return Ok(()) };
        let applier =
            std::thread::Builder::new().name("journal-apply".into()).spawn(move || run_applier(&root, &work))?;
        self.threads.lock().push(applier);
        Ok(())
    }

    /// Appends `change`; with `wait`, returns once it (and every change before it) is durable.
    pub fn append(&self, change: Change, wait: bool) -> io::Result<()> {
        let mut state = self.shared.state.lock();
        if state.stopped {
            return Err(io::Error::other("the store is closed"));
        }
        state.pending.push(change);
        state.appended += 1;
        let seq = state.appended;
        state.awaited |= wait;
        self.shared.work.notify_one();
        if !wait {
            return Ok(());
        }
        loop {
            if let Some((_, _, reason)) = state.failures.iter().find(|(from, to, _)| (*from..=*to).contains(&seq)) {
                return Err(io::Error::other(format!("the journal could not be written: {reason}")));
            }
            if state.durable >= seq {
                return Ok(());
            }
            if state.stopped {
                return Err(io::Error::other("the store closed before the change was saved"));
            }
            self.shared.committed.wait(&mut state);
        }
    }

    /// Commits what is pending, applies everything to the record files, syncs them, removes
    /// the journal file and stops both threads.
    pub fn close(&self) {
        if let Err(e) = self.start_applying() {
            log::error!("cannot start the store's applier ({e}); the next start applies the journal");
        }
        self.shared.state.lock().stopping = true;
        self.shared.work.notify_one();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }

    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.shared.state.lock().commits
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

struct Committer {
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    number: u64,
    /// Bytes in the current journal file, and how many it may take.
    written: u64,
    limit: u64,
    root: PathBuf,
    to_applier: Sender<Work>,
}

impl Committer {
    fn run(mut self) {
        loop {
            let (batch, upto, stopping) = self.next_batch();
            if !batch.is_empty() {
                let result = self.commit(&batch);
                self.report(&result, upto, batch.len() as u64);
                if result.is_ok() {
                    let _ = self.to_applier.send(Work::Apply(batch));
                }
            }
            if stopping {
                let _ = self.to_applier.send(Work::Retire(self.path.clone()));
                break;
            }
            if self.written >= self.limit {
                if let Err(e) = self.rotate() {
                    log::error!("could not start a new journal file ({e}); the current one keeps growing");
                }
            }
        }
        let mut state = self.shared.state.lock();
        state.stopped = true;
        self.shared.committed.notify_all();
    }

    /// Waits for changes (nobody waiting for them: up to `SOON` for more); takes them all.
    fn next_batch(&self) -> (Vec<Change>, u64, bool) {
        let mut state = self.shared.state.lock();
        while state.pending.is_empty() && !state.stopping {
            self.shared.work.wait(&mut state);
        }
        let deadline = Instant::now() + SOON;
        while !state.awaited && !state.stopping {
            if self.shared.work.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.awaited = false;
        (std::mem::take(&mut state.pending), state.appended, state.stopping)
    }

    /// One append and one fdatasync for the batch.
    fn commit(&mut self, batch: &[Change]) -> io::Result<()> {
        let mut frames = Vec::new();
        for change in batch {
            encode(change, &mut frames);
        }
        if let Err(e) = self.file.write_all(&frames).and_then(|()| self.file.sync_data()) {
            // A partial frame must not stay in front of the next batch's frames.
            let _ = self.file.set_len(self.written);
            return Err(e);
        }
        self.written += frames.len() as u64;
        Ok(())
    }

    /// Tells the writers of changes up to `upto` how their batch of `count` went.
    fn report(&self, result: &io::Result<()>, upto: u64, count: u64) {
        let mut state = self.shared.state.lock();
        state.commits += 1;
        match result {
            Ok(()) => state.durable = upto,
            Err(e) => {
                log::error!("the journal could not be written ({e}); changes were not saved");
                if state.failures.len() == MAX_FAILURES {
                    state.failures.pop_front();
                }
                state.failures.push_back((upto + 1 - count, upto, e.to_string()));
            }
        }
        self.shared.committed.notify_all();
    }

    /// Goes on in a new journal file; the applier retires the old one once it applied it.
    fn rotate(&mut self) -> io::Result<()> {
        let (file, path) = create_journal(&self.root, self.number + 1)?;
        let old = std::mem::replace(&mut self.path, path);
        self.file = file;
        self.number += 1;
        self.written = 0;
        let _ = self.to_applier.send(Work::Retire(old));
        Ok(())
    }
}

/// The applier thread: writes committed changes to the record files (off the commit path:
/// creating a file can take longer than a commit) and retires journal files. After a failure it
/// retires nothing more: the next start must read every journal file from that one on, in order.
fn run_applier(root: &Path, work: &Receiver<Work>) {
    let mut broken = false;
    for item in work {
        match item {
            Work::Apply(batch) => {
                for change in &batch {
                    if let Err(e) = apply(root, change) {
                        log::error!(
                            "{} record {} could not be written ({e}); the journal keeps it for the next start",
                            change.kind,
                            change.id
                        );
                        broken = true;
                    }
                }
            }
            Work::Retire(_) if broken => {}
            Work::Retire(path) => {
                let retired =
                    sync_file_system(root).and_then(|()| fs::remove_file(&path)).and_then(|()| sync_dir(root));
                if let Err(e) = retired {
                    log::error!(
                        "could not retire the journal file {} ({e}); the next start reads it again",
                        path.display()
                    );
                    broken = true;
                }
            }
        }
    }
}

/// The journal files under `root`, by number.
fn journal_files(root: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        let number = path.file_name().and_then(|n| n.to_str()?.strip_prefix(PREFIX)?.parse::<u64>().ok());
        if let Some(number) = number {
            files.push((number, path));
        }
    }
    files.sort();
    Ok(files)
}

/// A new, empty journal file whose name is on disk before anything is committed to it.
fn create_journal(root: &Path, number: u64) -> io::Result<(File, PathBuf)> {
    let path = root.join(format!("{PREFIX}{number}"));
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    sync_dir(root)?;
    Ok((file, path))
}

fn apply(root: &Path, change: &Change) -> io::Result<()> {
    let path = record_path(root, &change.kind, &change.id);
    match &change.bytes {
        Some(bytes) => crate::fsutil::replace(&path, bytes),
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Makes every file and folder under `root` durable: each file, then its folder (an fsync of a
/// file with nothing unwritten costs little). A file removed meanwhile is skipped.
fn sync_file_system(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let synced = match entry.file_type()? {
            kind if kind.is_dir() => sync_file_system(&entry.path()),
            kind if kind.is_file() => File::open(entry.path()).and_then(|file| file.sync_all()),
            _ => Ok(()),
        };
        match synced {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    sync_dir(root)
}

/// The changes of every whole frame of the journal file at `path`.
fn read_changes(path: &Path) -> io::Result<Vec<Change>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let (changes, used) = decode_all(&bytes);
    if used < bytes.len() {
        log::warn!(
            "{} ends with {} bytes of an unfinished write (a crash during a save nobody was told about); ignored",
            path.display(),
            bytes.len() - used
        );
    }
    Ok(changes)
}

pub fn encode(change: &Change, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(change.bytes.as_ref().map_or(0, Vec::len) + 64);
    payload.push(if change.bytes.is_some() { b'W' } else { b'D' });
    payload.push(change.kind.len() as u8);
    payload.extend_from_slice(change.kind.as_bytes());
    payload.extend_from_slice(&(change.id.len() as u16).to_le_bytes());
    payload.extend_from_slice(change.id.as_bytes());
    payload.extend_from_slice(change.bytes.as_deref().unwrap_or_default());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&fnv1a(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// The changes of every whole, intact frame from the start, and how many bytes they took.
fn decode_all(bytes: &[u8]) -> (Vec<Change>, usize) {
    let mut changes = Vec::new();
    let mut at = 0;
    while let Some((change, next)) = decode(bytes, at) {
        changes.push(change);
        at = next;
    }
    (changes, at)
}

fn decode(bytes: &[u8], at: usize) -> Option<(Change, usize)> {
    let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes.get(at + 4..at + 12)?.try_into().ok()?);
    let payload = bytes.get(at + 12..at + 12 + len)?;
    if fnv1a(payload) != sum {
        return None;
    }
    let op = *payload.first()?;
    let kind_len = *payload.get(1)? as usize;
    let kind = std::str::from_utf8(payload.get(2..2 + kind_len)?).ok()?;
    let id_at = 2 + kind_len;
    let id_len = u16::from_le_bytes(payload.get(id_at..id_at + 2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(payload.get(id_at + 2..id_at + 2 + id_len)?).ok()?;
    let data = &payload[id_at + 2 + id_len..];
    let bytes = match op {
        b'W' => Some(data.to_vec()),
        b'D' => None,
        _ => return None,
    };
    Some((Change { kind: kind.into(), id: id.into(), bytes }, at + 12 + len))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: &str, bytes: Option<&str>) -> Change {
        Change { kind: "things".into(), id: id.into(), bytes: bytes.map(|b| b.as_bytes().to_vec()) }
    }

    fn temp_root() -> PathBuf {
        let root = std::env::temp_dir().join(format!("ccs-journal-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn opening_reads_the_journal_files_in_order_and_the_applier_retires_them() {
        let root = temp_root();
        // What a crash can leave: a record file emptied by a write that had not reached the
        // disk, and a removal that did not reach the record files at all.
        fs::create_dir_all(root.join("things")).unwrap();
        fs::write(root.join("things/a.json"), b"").unwrap();
        fs::write(root.join("things/b.json"), b"{\"old\":true}").unwrap();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        encode(&change("a", Some("{\"n\":1}")), &mut first);
        encode(&change("b", None), &mut first);
        encode(&change("a", Some("{\"n\":2}")), &mut second);
        fs::write(root.join("journal-9"), &first).unwrap();
        fs::write(root.join("journal-10"), &second).unwrap();

        let (journal, replayed) = Journal::open(&root).unwrap();
        let record = |id: &str| replayed.get(&("things".to_string(), id.to_string())).cloned();
        assert_eq!(record("a"), Some(Some(b"{\"n\":2}".to_vec())), "the last change wins");
        assert_eq!(record("b"), Some(None), "a removal is remembered");
        let numbers: Vec<u64> = journal_files(&root).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(*numbers.last().unwrap(), 11, "the new journal file follows the old ones");
        drop(journal);
        assert_eq!(fs::read_to_string(root.join("things/a.json")).unwrap(), "{\"n\":2}");
        assert!(!root.join("things/b.json").exists());
        assert!(journal_files(&root).unwrap().is_empty(), "the old files were applied and retired");
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn concurrent_writers_share_fsyncs_and_close_leaves_complete_files() {
        let root = temp_root();
        let (journal, _) = Journal::open(&root).unwrap();
        let journal = Arc::new(journal);
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        journal.append(change(&format!("w{w}-{i}"), Some("{}")), true).unwrap();
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        journal.append(change("last", Some("{\"soon\":true}")), false).unwrap();
        let commits = journal.commits();
        assert!(commits < 200, "200 waited-for changes took {commits} commits: no grouping");
        journal.close();
        assert_eq!(fs::read_dir(root.join("things")).unwrap().count(), 201);
        assert_eq!(fs::read_to_string(root.join("things/last.json")).unwrap(), "{\"soon\":true}");
        assert!(journal_files(&root).unwrap().is_empty(), "a clean close leaves no journal");
        assert!(journal.append(change("late", Some("{}")), true).is_err(), "a closed journal refuses writes");
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn full_journal_files_are_retired_once_applied() {
        let root = temp_root();
        let (journal, _) = Journal::open_with_limit(&root, 1024).unwrap();
        journal.start_applying().unwrap();
        for i in 0..40 {
            journal
                .append(change(&format!("r{i}"), Some(&format!("{{\"pad\":\"{}\"}}", "x".repeat(100)))), true)
                .unwrap();
        }
        let retired = || journal_files(&root).unwrap().len() == 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !retired() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let current = journal_files(&root).unwrap();
        assert_eq!(current.len(), 1, "{current:?}");
        assert!(current[0].0 > 3, "40 changes of 130 bytes fill several 1 KB files: {current:?}");
        drop(journal);
        let (_reopened, replayed) = Journal::open(&root).unwrap();
        assert!(replayed.is_empty(), "a clean close leaves nothing to replay");
        assert_eq!(fs::read_dir(root.join("things")).unwrap().count(), 40);
        fs::remove_dir_all(root).ok();
    }

    #[test]
    fn frames_decode_back_and_a_torn_or_damaged_tail_ends_them() {
        let mut bytes = Vec::new();
        encode(&change("a", Some("{\"n\":1}")), &mut bytes);
        encode(&change("b", None), &mut bytes);
        let whole = bytes.len();
        encode(&change("c", Some("{\"n\":3}")), &mut bytes);
        let (all, used) = decode_all(&bytes);
        assert_eq!(all, [change("a", Some("{\"n\":1}")), change("b", None), change("c", Some("{\"n\":3}"))]);
        assert_eq!(used, bytes.len());

        let torn = &bytes[..bytes.len() - 2];
        assert_eq!(decode_all(torn), (all[..2].to_vec(), whole));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert_eq!(decode_all(&damaged).1, whole);
    }
}
