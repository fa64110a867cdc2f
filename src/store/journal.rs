//! The write-ahead journal of the file store. Every change is appended here first, by one
//! committer thread that makes a whole batch durable with one fdatasync however many threads
//! wrote to it (group commit). Committed changes go, in order, to whoever applies them to the
//! record files (`file`'s applier, through the `Work` channel `open` returns), and so does
//! every full journal file (every 16 MB the committer goes on in a new one) to be retired once
//! applied. At open, whatever journal files a crash left are read first: their records are
//! served from them (not from the record files, which a crash can leave stale or empty) and
//! handed to the applier before anything new.
//!
//! Faults. A journal file whose write or fdatasync failed is never appended to again: after a
//! failed fdatasync the kernel may have dropped the pages it could not write, so the file's
//! content is unknown. The committer retires it and goes on in a new file, at once, writing the
//! failed batch again. If that fails too the journal is faulted: the writers who waited for the
//! batch are told it failed (their change was never shown, and is dropped), every new change is
//! refused, and the changes readers can already see (`Soon` ones) are kept in order and written
//! first, into a new file, by a retry every second, before any new change is taken (with nothing
//! held back, a retry that can start a new file is enough: on a full disk the fault then clears
//! until the next write fails again). So no change is durable while an earlier one is not: a
//! `Now` write makes every earlier write durable, or fails. A failed write that was never acknowledged may still be found after a
//! crash (part of it can have reached the abandoned file), like any write whose answer was lost.
//!
//! Frames: `len u32 | sum u64 | payload`, little-endian, `sum` the FNV-1a hash of the payload;
//! payload `op u8 | kind len u8 | kind | id len u16 | id | bytes`. A torn last frame (the crash
//! came during its write, so nobody was told about it) fails its length or sum and ends replay.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::fsutil::sync_dir;

/// A journal file is retired (and a new one started) once it holds this much.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// How long changes nobody waits for may sit before they are committed (a change that is
/// waited for commits them at once).
const SOON: Duration = Duration::from_millis(5);
/// How often a faulted journal tries again to write what failed.
pub const RETRY: Duration = Duration::from_secs(1);
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

/// What the applier does, in order.
pub enum Work {
    /// Write these committed changes to the record files.
    Apply(Vec<Change>),
    /// Every change of this journal file has been applied: sync the records, delete the file.
    Retire(PathBuf),
}

/// The last state of every record named in the journal files left from before: `None` when
/// the record was removed.
pub type Replayed = HashMap<(String, String), Option<Vec<u8>>>;

/// Why the journal refuses changes, and since when.
#[derive(Debug, Clone)]
pub struct Fault {
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store's journal cannot be written since {} ({}); changes are refused until it can be \
             (retried every {} s)",
            self.since.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.reason,
            RETRY.as_secs()
        )
    }
}

/// The committer's only contact with the disk. `Folder` is the data folder; the tests put one
/// in front that fails on demand.
pub trait Disk: Send {
    /// Starts the empty journal file `number`, its name durable; appends go to it from now on.
    fn start(&mut self, number: u64) -> io::Result<PathBuf>;
    /// Appends `bytes` to the current journal file and returns once they are on disk.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// Journal files in the data folder. A file is opened for each commit rather than held open:
/// between commits ccs holds no file of the data folder open for writing, so the folder's file
/// system can be remounted read-only (for maintenance; the tests do it). The open costs
/// microseconds next to the fdatasync.
pub struct Folder {
    root: PathBuf,
    current: Option<PathBuf>,
}

impl Folder {
    pub fn new(root: &Path) -> Folder {
        Folder { root: root.to_path_buf(), current: None }
    }
}

impl Disk for Folder {
    fn start(&mut self, number: u64) -> io::Result<PathBuf> {
        self.current = None;
        let path = self.root.join(format!("{PREFIX}{number}"));
        OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.root)?;
        self.current = Some(path.clone());
        Ok(path)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let path = self.current.as_ref().ok_or_else(|| io::Error::other("no journal file was started"))?;
        let mut file = OpenOptions::new().append(true).open(path)?;
        file.write_all(bytes)?;
        file.sync_data()
    }
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
    pending: Vec<Entry>,
    /// Someone waits for a pending change: commit without delay.
    awaited: bool,
    /// Sequence numbers: of the last change appended, and of the last one on disk.
    appended: u64,
    durable: u64,
    /// Waited-for changes that could not be written, by sequence number: why. Each is taken by
    /// the writer who waits for it.
    failed: HashMap<u64, String>,
    /// Set while the journal cannot be written: changes are refused.
    fault: Option<Fault>,
    stopping: bool,
    stopped: bool,
    /// Batches committed (each one fdatasync), for the tests of group commit.
    commits: u64,
}

/// A change in the committer's hands.
struct Entry {
    seq: u64,
    change: Change,
    /// Its writer waits for it (a `Now` write): if it cannot be written, the writer is told and
    /// the change is dropped; a change nobody waits for is already shown, so it is kept.
    awaited: bool,
}

impl Journal {
    /// Starts a journal file in `root`, written through `disk`, with its committer thread; every
    /// `limit` bytes it goes on in a new file. Returns what the journal files left under `root`
    /// hold (a crash came before they were retired), to be read instead of the record files, and
    /// the applier's work, which begins with those old files: the applier writes their records
    /// and retires them while the server already runs (a start does not wait for thousands of
    /// files to be written).
    pub fn open_on(root: &Path, disk: Box<dyn Disk>, limit: u64) -> io::Result<(Journal, Replayed, Receiver<Work>)> {
        let old = journal_files(root)?;
        let (to_applier, work) = crossbeam_channel::unbounded();
        let mut replayed = Replayed::new();
        for (_, path) in &old {
            let changes = read_changes(path)?;
            for change in &changes {
                replayed.insert((change.kind.clone(), change.id.clone()), change.bytes.clone());
            }
            let _ = to_applier.send(Work::Apply(changes));
            let _ = to_applier.send(Work::Retire(path.clone()));
        }
        if !replayed.is_empty() {
            log::info!(
                "{} record(s) changed in the store's journal since the last checkpoint; they are read from it",
                replayed.len()
            );
        }
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), work: Condvar::new(), committed: Condvar::new() });
        let mut committer = Committer {
            shared: shared.clone(),
            disk,
            number: old.last().map_or(0, |(n, _)| *n),
            current: None,
            limit,
            unsaved: Vec::new(),
            to_applier,
        };
        committer.start_next()?;
        let thread = std::thread::Builder::new().name("journal".into()).spawn(move || committer.run())?;
        Ok((Journal { shared, committer: Mutex::new(Some(thread)) }, replayed, work))
    }

    /// Appends `change`; with `wait`, returns once it (and every change before it) is durable.
    /// Refused while the journal is faulted.
    pub fn append(&self, change: Change, wait: bool) -> io::Result<()> {
        let mut state = self.shared.state.lock();
        if state.stopped {
            return Err(io::Error::other("the store is closed"));
        }
        if let Some(fault) = &state.fault {
            return Err(io::Error::other(fault.to_string()));
        }
        state.appended += 1;
        let seq = state.appended;
        state.pending.push(Entry { seq, change, awaited: wait });
        state.awaited |= wait;
        self.shared.work.notify_one();
        if !wait {
            return Ok(());
        }
        loop {
            if let Some(reason) = state.failed.remove(&seq) {
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

    /// Why changes are refused now, if they are.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.state.lock().fault.clone()
    }

    /// Commits what is pending (a faulted journal tries once more) and stops the committer; the
    /// applier's work channel ends with the retirement of the last journal file.
    pub fn close(&self) {
        self.shared.state.lock().stopping = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.committer.lock().take() {
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
    disk: Box<dyn Disk>,
    /// The number of the last journal file started.
    number: u64,
    /// The journal file being written and the bytes in it; `None` once a failure abandoned it.
    current: Option<(PathBuf, u64)>,
    /// A journal file is retired (and a new one started) once it holds this much.
    limit: u64,
    /// Changes readers already see that a failed commit did not write, in order: they are
    /// written before anything newer.
    unsaved: Vec<Entry>,
    to_applier: Sender<Work>,
}

impl Committer {
    fn run(mut self) {
        loop {
            let (batch, faulted, stopping) = self.next_batch();
            if !batch.is_empty() || faulted {
                self.commit(batch, faulted);
            }
            if stopping {
                break;
            }
            if self.current.as_ref().is_some_and(|(_, written)| *written >= self.limit) {
                self.rotate();
            }
        }
        self.stop();
    }

    /// Waits for changes (nobody waiting for them: up to `SOON` for more; faulted: `RETRY`,
    /// then tries again with whatever is there); takes them all.
    fn next_batch(&self) -> (Vec<Entry>, bool, bool) {
        let mut state = self.shared.state.lock();
        let faulted = state.fault.is_some();
        if faulted {
            let deadline = Instant::now() + RETRY;
            while !state.stopping && !self.shared.work.wait_until(&mut state, deadline).timed_out() {}
        } else {
            while state.pending.is_empty() && !state.stopping {
                self.shared.work.wait(&mut state);
            }
            let deadline = Instant::now() + SOON;
            while !state.awaited && !state.stopping {
                if self.shared.work.wait_until(&mut state, deadline).timed_out() {
                    break;
                }
            }
        }
        state.awaited = false;
        (std::mem::take(&mut state.pending), faulted, state.stopping)
    }

    /// Writes what failed before and `batch`, then tells the writers how it went. A first failure
    /// is tried again at once in a new file: a passing fault costs nobody an error.
    fn commit(&mut self, batch: Vec<Entry>, faulted: bool) {
        let mut entries = std::mem::take(&mut self.unsaved);
        entries.extend(batch);
        let mut frames = Vec::new();
        for entry in &entries {
            encode(&entry.change, &mut frames);
        }
        let mut written = self.write(&frames);
        if written.is_err() && !faulted {
            written = self.write(&frames);
        }
        let mut state = self.shared.state.lock();
        state.commits += 1;
        match written {
            Ok(()) => {
                state.durable = entries.last().map_or(state.durable, |e| e.seq);
                if let Some(fault) = state.fault.take() {
                    log::warn!(
                        "the store's journal is written again (it could not be since {}); {} change(s) held back \
                         are on disk, and changes are taken again",
                        fault.since.to_rfc3339_opts(SecondsFormat::Millis, true),
                        entries.len()
                    );
                }
                let _ = self.to_applier.send(Work::Apply(entries.into_iter().map(|e| e.change).collect()));
            }
            Err(e) => {
                let reason = e.to_string();
                if state.fault.is_none() {
                    log::error!(
                        "the store's journal could not be written ({reason}); changes are refused until it can be, \
                         retried every {} s",
                        RETRY.as_secs()
                    );
                    state.fault = Some(Fault { reason: reason.clone(), since: Utc::now() });
                }
                let (awaited, shown): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.awaited);
                state.failed.extend(awaited.into_iter().map(|e| (e.seq, reason.clone())));
                self.unsaved = shown;
            }
        }
        self.shared.committed.notify_all();
    }

    /// Appends `frames` to the current journal file (a new one if a failure abandoned it) and
    /// makes them durable. After a failure the file is abandoned.
    fn write(&mut self, frames: &[u8]) -> io::Result<()> {
        if self.current.is_none() {
            self.start_next()?;
        }
        if frames.is_empty() {
            return Ok(());
        }
        match self.disk.append(frames) {
            Ok(()) => {
                if let Some((_, written)) = &mut self.current {
                    *written += frames.len() as u64;
                }
                Ok(())
            }
            Err(e) => {
                self.retire_current();
                Err(e)
            }
        }
    }

    /// Starts the next journal file; appends go to it from now on.
    fn start_next(&mut self) -> io::Result<()> {
        self.number += 1;
        let path = self.disk.start(self.number)?;
        self.current = Some((path, 0));
        Ok(())
    }

    /// Nothing more is appended to the current journal file: the applier retires it once it
    /// applied what was committed to it.
    fn retire_current(&mut self) {
        if let Some((path, _)) = self.current.take() {
            let _ = self.to_applier.send(Work::Retire(path));
        }
    }

    /// Goes on in a new journal file.
    fn rotate(&mut self) {
        self.retire_current();
        if let Err(e) = self.start_next() {
            // The next commit starts one, or faults the journal.
            log::error!("could not start a new journal file ({e}); the next commit tries again");
        }
    }

    /// The last commit is done: the current file is retired, and later appends fail.
    fn stop(mut self) {
        if !self.unsaved.is_empty() {
            log::error!(
                "{} change(s) nobody was told about could not be saved before the stop (the journal could not \
                 be written); a restart finds the state before them",
                self.unsaved.len()
            );
        }
        self.retire_current();
        let mut state = self.shared.state.lock();
        state.stopped = true;
        self.shared.committed.notify_all();
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

/// For the tests: a change of the record `id` of kind `things`.
#[cfg(test)]
fn change(id: &str, bytes: Option<&str>) -> Change {
    Change { kind: "things".into(), id: id.into(), bytes: bytes.map(|b| b.as_bytes().to_vec()) }
}

/// For the tests: what a crash can leave, two journal files. `journal-9` sets `things/a` to
/// `{"n":1}` and removes `things/b`; `journal-10` then sets `a` to `{"n":2}`.
#[cfg(test)]
pub(super) fn leave_two_journal_files(root: &Path) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    encode(&change("a", Some("{\"n\":1}")), &mut first);
    encode(&change("b", None), &mut first);
    encode(&change("a", Some("{\"n\":2}")), &mut second);
    fs::write(root.join("journal-9"), &first).unwrap();
    fs::write(root.join("journal-10"), &second).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;
    use crate::store::flaky::FlakyDisk;
    use crate::store::wait_until;

    fn open(root: &Path) -> (Journal, Replayed, Receiver<Work>) {
        Journal::open_on(root, Box::new(Folder::new(root)), CHECKPOINT_BYTES).unwrap()
    }

    fn replayed(root: &Path) -> Replayed {
        open(root).1
    }

    fn record(replayed: &Replayed, id: &str) -> Option<Option<Vec<u8>>> {
        replayed.get(&("things".to_string(), id.to_string())).cloned()
    }

    #[test]
    fn opening_replays_the_journal_files_in_order_and_hands_them_to_the_applier() {
        let root = TempDir::new("journal");
        leave_two_journal_files(root.path());

        let (journal, replayed, work) = open(root.path());
        assert_eq!(record(&replayed, "a"), Some(Some(b"{\"n\":2}".to_vec())), "the last change wins");
        assert_eq!(record(&replayed, "b"), Some(None), "a removal is remembered");
        let numbers: Vec<u64> = journal_files(root.path()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [9, 10, 11], "the new journal file follows the old ones");
        let retired: Vec<PathBuf> = work
            .try_iter()
            .filter_map(|w| match w {
                Work::Retire(path) => Some(path),
                Work::Apply(_) => None,
            })
            .collect();
        assert_eq!(retired, [root.join("journal-9"), root.join("journal-10")]);
        drop(journal);
    }

    #[test]
    fn a_journal_file_is_never_appended_to_after_a_failed_fdatasync() {
        let root = TempDir::new("journal");
        let disk = FlakyDisk::new(root.path());
        let faults = disk.faults();
        let (journal, _, _work) = Journal::open_on(root.path(), Box::new(disk), CHECKPOINT_BYTES).unwrap();
        journal.append(change("a", Some("1")), true).unwrap();
        faults.lock().fail_next_sync = true;
        // Written to the file, then the fdatasync fails: the batch goes again, into a new file.
        journal.append(change("b", Some("2")), true).unwrap();
        journal.append(change("c", Some("3")), true).unwrap();
        assert!(journal.fault().is_none(), "a passing fault costs nobody an error");
        let appends = faults.lock().appends.clone();
        let failed = appends.iter().position(|(_, ok)| !ok).expect("one append failed");
        let (abandoned, _) = &appends[failed];
        assert!(
            appends[failed + 1..].iter().all(|(path, ok)| path != abandoned && *ok),
            "appended to {} after its fdatasync failed: {appends:?}",
            abandoned.display()
        );
        drop(journal);
        let replayed = replayed(root.path());
        for (id, bytes) in [("a", "1"), ("b", "2"), ("c", "3")] {
            assert_eq!(record(&replayed, id), Some(Some(bytes.as_bytes().to_vec())), "{id}");
        }
    }

    #[test]
    fn after_a_failed_commit_no_change_is_taken_until_the_failed_ones_are_on_disk() {
        let root = TempDir::new("journal");
        let disk = FlakyDisk::new(root.path());
        let faults = disk.faults();
        let (journal, _, _work) = Journal::open_on(root.path(), Box::new(disk), CHECKPOINT_BYTES).unwrap();
        faults.lock().down = true;
        journal.append(change("shown", Some("soon")), false).unwrap();
        let waited = journal.append(change("waited", Some("now")), true).unwrap_err();
        assert!(waited.to_string().contains("Read-only file system"), "{waited}");
        let fault = journal.fault().expect("the journal is faulted");
        let refused = journal.append(change("refused", Some("now")), true).unwrap_err().to_string();
        assert!(refused.contains("refused") && refused.contains(&fault.reason), "{refused}");
        assert!(journal.append(change("refused-soon", Some("soon")), false).is_err());

        faults.lock().down = false;
        wait_until("a retry wrote what failed", || journal.fault().is_none());
        journal.append(change("after", Some("now")), true).unwrap();
        drop(journal);
        let replayed = replayed(root.path());
        assert_eq!(record(&replayed, "shown"), Some(Some(b"soon".to_vec())), "a shown change is written by the retry");
        assert_eq!(record(&replayed, "after"), Some(Some(b"now".to_vec())));
        for dropped in ["waited", "refused", "refused-soon"] {
            assert_eq!(record(&replayed, dropped), None, "{dropped}: its writer was told it failed");
        }
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
