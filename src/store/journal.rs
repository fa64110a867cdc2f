//! The write-ahead journal of the file store. Every change is appended here first, by one
//! committer thread that makes a whole batch durable with one fdatasync however many threads
//! wrote to it (group commit); record files are then overwritten in place, without fsync. A
//! checkpoint (syncfs) every few MB makes the record files durable and empties the journal; at
//! open, whatever the journal still holds is applied again, so a record file that a crash left
//! stale, torn or empty is rewritten from it. (Measured on ext4: an in-place overwrite costs
//! 0.013 ms, a temp file renamed over the old one 0.32 ms, because a new inode is allocated and
//! the rename starts writeback.) So while the server runs, read records through the API; after
//! a clean stop the journal is empty and every file is whole.
//!
//! Frames: `len u32 | sum u64 | payload`, little-endian, `sum` the FNV-1a hash of the payload;
//! payload `op u8 | kind len u8 | kind | id len u16 | id | bytes`. A torn last frame (the crash
//! came during its write, so nobody was told about it) fails its length or sum and ends replay.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::file::record_path;

/// The journal is checkpointed once it holds this much.
const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// How long changes nobody waits for may sit before they are committed (a change that is
/// waited for commits them at once).
const SOON: Duration = Duration::from_millis(5);
/// Failed batches remembered for the writers still to wake up.
const MAX_FAILURES: usize = 64;

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
    committer: Mutex<Option<JoinHandle<()>>>,
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

impl Journal {
    /// Applies what the journal of the records under `root` still holds to their files, makes
    /// them durable, empties the journal and starts the committer. Returns the journal and how
    /// many changes it replayed.
    pub fn open(root: &Path) -> io::Result<(Journal, usize)> {
        let path = root.join("journal");
        let replayed = replay(&path, root)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if replayed > 0 {
            checkpoint(&file, root)?;
        }
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), work: Condvar::new(), committed: Condvar::new() });
        let committer = Committer { shared: shared.clone(), file, root: root.to_path_buf() };
        let handle = std::thread::Builder::new().name("journal".into()).spawn(move || committer.run())?;
        Ok((Journal { shared, committer: Mutex::new(Some(handle)) }, replayed))
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

    /// Commits what is pending, checkpoints, and stops the committer.
    pub fn close(&self) {
        self.shared.state.lock().stopping = true;
        self.shared.work.notify_one();
        if let Some(handle) = self.committer.lock().take() {
            let _ = handle.join();
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
    root: PathBuf,
}

impl Committer {
    fn run(mut self) {
        loop {
            let (batch, upto, stopping) = self.next_batch();
            if !batch.is_empty() {
                let result = self.commit(&batch);
                self.report(&result, upto, batch.len() as u64);
                if result.is_ok() {
                    self.apply(&batch);
                }
            }
            if stopping || self.file.metadata().map(|m| m.len()).unwrap_or(0) >= CHECKPOINT_BYTES {
                if let Err(e) = checkpoint(&self.file, &self.root) {
                    log::error!("the store's checkpoint failed ({e}); the journal keeps the changes");
                }
            }
            if stopping {
                break;
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

    /// The record files of a committed batch (no fsync: the journal has them until the next
    /// checkpoint).
    fn apply(&self, batch: &[Change]) {
        for change in batch {
            if let Err(e) = apply(&self.root, change) {
                log::error!("{} record {} could not be written ({e}); the journal keeps it", change.kind, change.id);
            }
        }
    }

    /// One append and one fdatasync for the batch.
    fn commit(&mut self, batch: &[Change]) -> io::Result<()> {
        let mut frames = Vec::new();
        for change in batch {
            encode(change, &mut frames);
        }
        let before = self.file.metadata()?.len();
        if let Err(e) = self.file.write_all(&frames).and_then(|()| self.file.sync_data()) {
            // A partial frame must not stay in front of the next batch's frames.
            let _ = self.file.set_len(before);
            return Err(e);
        }
        Ok(())
    }
}

fn apply(root: &Path, change: &Change) -> io::Result<()> {
    let path = record_path(root, &change.kind, &change.id);
    match &change.bytes {
        Some(bytes) => overwrite(&path, bytes),
        None => match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Writes `bytes` over the file at `path` (creating it and its folder if needed).
fn overwrite(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let open = || OpenOptions::new().write(true).create(true).truncate(false).open(path);
    let mut file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            open()?
        }
        opened => opened?,
    };
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)
}

/// Makes every record file under `root` durable, then empties the journal.
fn checkpoint(file: &File, root: &Path) -> io::Result<()> {
    let folder = File::open(root)?;
    // SAFETY: syncfs only flushes the file system of a descriptor we own.
    if unsafe { libc::syncfs(folder.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    file.set_len(0)?;
    file.sync_all()
}

/// Applies every whole frame of the journal at `path` to the records under `root`; returns how many.
fn replay(path: &Path, root: &Path) -> io::Result<usize> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let (changes, used) = decode_all(&bytes);
    if used < bytes.len() {
        log::warn!(
            "the store's journal ends with {} bytes of an unfinished write (a crash during a save nobody was told about); ignored",
            bytes.len() - used
        );
    }
    for change in &changes {
        apply(root, change)?;
    }
    if !changes.is_empty() {
        log::info!("applied {} change(s) from the store's journal", changes.len());
    }
    Ok(changes.len())
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
    fn opening_applies_what_the_journal_holds_and_empties_it() {
        let root = temp_root();
        // What a crash can leave: a record file emptied by a rename that reached the disk
        // before its data, and a removal that did not reach the record files at all.
        fs::create_dir_all(root.join("things")).unwrap();
        fs::write(root.join("things/a.json"), b"").unwrap();
        fs::write(root.join("things/b.json"), b"{\"old\":true}").unwrap();
        let mut frames = Vec::new();
        encode(&change("a", Some("{\"n\":1}")), &mut frames);
        encode(&change("b", None), &mut frames);
        fs::write(root.join("journal"), &frames).unwrap();

        let (journal, replayed) = Journal::open(&root).unwrap();
        assert_eq!(replayed, 2);
        assert_eq!(fs::read_to_string(root.join("things/a.json")).unwrap(), "{\"n\":1}");
        assert!(!root.join("things/b.json").exists());
        assert_eq!(fs::metadata(root.join("journal")).unwrap().len(), 0);
        drop(journal);
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
        assert_eq!(fs::metadata(root.join("journal")).unwrap().len(), 0, "a clean close empties the journal");
        assert!(journal.append(change("late", Some("{}")), true).is_err(), "a closed journal refuses writes");
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
