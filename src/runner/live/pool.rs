//! The live processes of a server: one idle process per session at most, spares started ahead
//! for the default options, and how many are busy with a turn. Bounded by `Limits::max` (live +
//! spare + busy); the least recently used idle one is retired first to make room. A lock held
//! only to move processes in and out, never across a turn or a process start.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cli::{LiveCli, Start};

/// How long spares wait after one ended by itself before it was used (a CLI that cannot run in
/// the default folder must not be started again and again).
pub const SPARES_PAUSE: Duration = Duration::from_secs(30);

/// How often the memory of the same processes is read again (at most).
const RSS_READ_EVERY: Duration = Duration::from_secs(1);

/// How many processes, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub keep: Duration,
    pub spares: usize,
    pub max: usize,
}

/// What `/health`, `/metrics` and the TUI show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Idle processes kept for their session's next turn.
    pub sessions: usize,
    /// Idle processes started ahead for new sessions.
    pub spares: usize,
    /// Processes answering a turn now.
    pub busy: usize,
    /// Resident memory of the idle ones and the spares (their whole process groups; a busy
    /// one is not in the pool while it answers).
    pub rss_bytes: u64,
}

#[derive(Default)]
struct State {
    idle: HashMap<String, LiveCli>,
    spares: Vec<LiveCli>,
    busy: usize,
    limits: Option<Limits>,
    generation: u64,
    closed: bool,
    /// No spare starts before this (one failed to start, or ended unused).
    spares_paused_until: Option<Instant>,
}

impl State {
    fn total(&self) -> usize {
        self.idle.len() + self.spares.len() + self.busy
    }

    fn max(&self) -> usize {
        self.limits.map_or(0, |l| l.max)
    }

    /// Takes out least recently used idle processes and spares until at most `most` processes
    /// are left (busy ones count, and stay).
    fn evict_down_to(&mut self, most: usize) -> Vec<LiveCli> {
        let mut gone = Vec::new();
        while self.total() > most {
            match self.take_least_recent() {
                Some(cli) => gone.push(cli),
                None => break,
            }
        }
        gone
    }

    /// Takes out the least recently used idle process or spare.
    fn take_least_recent(&mut self) -> Option<LiveCli> {
        let idle = self.idle.iter().min_by_key(|(_, cli)| cli.last_used).map(|(id, cli)| (id.clone(), cli.last_used));
        let spare = self.spares.iter().enumerate().min_by_key(|(_, cli)| cli.last_used).map(|(i, c)| (i, c.last_used));
        match (idle, spare) {
            (Some((id, at)), Some((_, spare_at))) if at <= spare_at => self.idle.remove(&id),
            (_, Some((i, _))) => Some(self.spares.remove(i)),
            (Some((id, _)), None) => self.idle.remove(&id),
            (None, None) => None,
        }
    }
}

/// The pool; `App` holds one.
#[derive(Default)]
pub struct Pool {
    state: Mutex<State>,
    retiring: Mutex<Vec<JoinHandle<()>>>,
    /// The last reading of their memory, when it was taken and of which groups: `/health`
    /// needs no key, and a pass over `/proc` per request would make it an easy way to burn the
    /// host's CPU. A reading of other processes (one started or ended since) is taken again.
    rss: Mutex<Option<(Instant, Vec<i32>, u64)>>,
}

/// A turn's hold on a process slot: released when dropped (the process itself goes back with
/// `Pool::give_back`, or is gone).
pub struct Busy<'a> {
    pool: &'a Pool,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock();
        state.busy = state.busy.saturating_sub(1);
    }
}

/// What a turn gets from the pool.
pub enum Lease<'a> {
    /// The session's idle process, which `fits` accepted.
    Warm(LiveCli, Busy<'a>),
    /// Room for a new process.
    Room(Busy<'a>),
    /// No room (at `max`, every process busy): the turn runs as a one-off process.
    Full,
}

impl Pool {
    /// Sets the limits (spares and processes beyond them end); `retire` ends every idle process
    /// and spare (the way the CLI starts changed), and busy ones when they come back.
    pub fn configure(&self, limits: Limits, retire: bool) {
        let mut state = self.state.lock();
        state.limits = Some(limits);
        let mut gone = Vec::new();
        if retire {
            state.generation += 1;
            gone.extend(state.idle.drain().map(|(_, cli)| cli));
            gone.append(&mut state.spares);
        }
        // Fewer spares wanted (`"spares": 0` included): the oldest go.
        let extra = state.spares.len().saturating_sub(limits.spares);
        gone.extend(state.spares.drain(..extra));
        gone.extend(state.evict_down_to(limits.max));
        drop(state);
        self.retire_all(gone);
    }

    pub fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// For a turn of `session`: its idle process if `fits` it (else that one is retired), or
    /// room for a new one (retiring the least recently used idle one if the pool is full).
    pub fn lease(&self, session: &str, fits: impl FnOnce(&mut LiveCli) -> bool) -> Lease<'_> {
        let mut state = self.state.lock();
        if state.closed {
            return Lease::Full;
        }
        let mut gone = Vec::new();
        if let Some(mut cli) = state.idle.remove(session) {
            if cli.generation == state.generation && cli.is_usable() && fits(&mut cli) {
                state.busy += 1;
                return Lease::Warm(cli, Busy { pool: self });
            }
            gone.push(cli);
        }
        let room_for_one = state.max().saturating_sub(1);
        gone.extend(state.evict_down_to(room_for_one));
        let lease = if state.total() < state.max() {
            state.busy += 1;
            Lease::Room(Busy { pool: self })
        } else {
            Lease::Full
        };
        drop(state);
        self.retire_all(gone);
        lease
    }

    /// A process whose turn answered goes back, as its session's idle one, unless the pool
    /// changed meanwhile (closed, retired its generation, over its cap, nothing kept).
    pub fn give_back(&self, cli: LiveCli, busy: Busy<'_>) {
        drop(busy);
        let mut state = self.state.lock();
        let keep = state.limits.is_some_and(|l| !l.keep.is_zero());
        if state.closed || !keep || cli.generation != state.generation {
            drop(state);
            return self.retire_all(vec![cli]);
        }
        let mut gone: Vec<LiveCli> = state.idle.insert(cli.session_id.clone(), cli).into_iter().collect();
        let max = state.max();
        gone.extend(state.evict_down_to(max));
        drop(state);
        self.retire_all(gone);
    }

    /// Turns a spare started for `start` into the idle process of its own session, whose id
    /// it returns (the new session takes that id); `None` when no spare matches.
    pub fn claim_spare(&self, start: &Start) -> Option<String> {
        let mut state = self.state.lock();
        let generation = state.generation;
        let found =
            state.spares.iter_mut().position(|s| s.generation == generation && *s.start == *start && s.is_usable())?;
        let mut spare = state.spares.remove(found);
        spare.last_used = Instant::now();
        let id = spare.session_id.clone();
        state.idle.insert(id.clone(), spare);
        Some(id)
    }

    /// Retires the spares not started as `start` says (none: every spare).
    pub fn retire_spares_unlike(&self, start: Option<&Start>) {
        let mut state = self.state.lock();
        if state.spares.iter().all(|spare| Some(&*spare.start) == start) {
            return;
        }
        let (kept, gone): (Vec<LiveCli>, Vec<LiveCli>) =
            std::mem::take(&mut state.spares).into_iter().partition(|spare| Some(&*spare.start) == start);
        state.spares = kept;
        drop(state);
        self.retire_all(gone);
    }

    /// How many spares to start now (room is reserved for them as busy slots; each is handed
    /// over with `add_spare` or released by dropping its `Busy`).
    /// Sessions' processes (idle and busy) may take all but `spares` of the room: past that,
    /// the least recently used idle one is retired for a spare.
    pub fn spares_missing(&self) -> Vec<Busy<'_>> {
        let mut state = self.state.lock();
        let wanted = state.limits.map_or(0, |l| l.spares);
        if state.closed || state.spares_paused_until.is_some_and(|t| Instant::now() < t) {
            return Vec::new();
        }
        let missing = wanted.saturating_sub(state.spares.len());
        let sessions_room = state.max().saturating_sub(wanted);
        let mut gone = Vec::new();
        while state.total() + missing > state.max() && state.idle.len() + state.busy > sessions_room {
            let Some(id) = state.idle.iter().min_by_key(|(_, cli)| cli.last_used).map(|(id, _)| id.clone()) else {
                break;
            };
            gone.extend(state.idle.remove(&id));
        }
        let missing = missing.min(state.max().saturating_sub(state.total()));
        state.busy += missing;
        drop(state);
        self.retire_all(gone);
        (0..missing).map(|_| Busy { pool: self }).collect()
    }

    /// A spare that was started goes in (or is retired if the pool changed meanwhile).
    pub fn add_spare(&self, cli: LiveCli, busy: Busy<'_>) {
        drop(busy);
        let mut state = self.state.lock();
        if state.closed || cli.generation != state.generation || state.total() >= state.max() {
            drop(state);
            return self.retire_all(vec![cli]);
        }
        state.spares.push(cli);
    }

    /// Retires idle processes unused for `keep`, and any that ended by themselves.
    pub fn expire(&self) {
        let mut state = self.state.lock();
        let keep = state.limits.map_or(Duration::ZERO, |l| l.keep);
        let ended: Vec<String> = state
            .idle
            .iter_mut()
            .filter_map(|(id, cli)| (cli.last_used.elapsed() >= keep || !cli.is_usable()).then(|| id.clone()))
            .collect();
        let mut gone: Vec<LiveCli> = ended.iter().filter_map(|id| state.idle.remove(id)).collect();
        let mut kept = Vec::new();
        for mut spare in std::mem::take(&mut state.spares) {
            if spare.is_usable() {
                kept.push(spare);
            } else {
                log::warn!(
                    "spare claude process {} ended before it was used (its log: stderr {:?}); spares pause for {} s",
                    spare.pgid,
                    spare.stderr_tail(),
                    SPARES_PAUSE.as_secs()
                );
                state.spares_paused_until = Some(Instant::now() + SPARES_PAUSE);
                gone.push(spare);
            }
        }
        state.spares = kept;
        drop(state);
        for cli in &gone {
            log::info!("live claude process {} (session {}) ended: idle too long or exited", cli.pgid, cli.session_id);
        }
        self.retire_all(gone);
    }

    /// No spare starts for `pause` (one could not be started).
    pub fn pause_spares(&self, pause: Duration) {
        self.state.lock().spares_paused_until = Some(Instant::now() + pause);
    }

    /// Retires a process that is not in the pool (one a turn found unusable).
    pub fn retire(&self, cli: LiveCli) {
        self.retire_all(vec![cli]);
    }

    /// Retires the idle process of `session` (archived, closed or deleted).
    pub fn retire_session(&self, session: &str) {
        let cli = self.state.lock().idle.remove(session);
        self.retire_all(cli.into_iter().collect());
    }

    /// At shutdown: no more processes; every idle one and spare ends, and this waits (at most
    /// `within`) until they are reaped.
    pub fn close(&self, within: Duration) {
        let gone: Vec<LiveCli> = {
            let mut state = self.state.lock();
            state.closed = true;
            let mut gone: Vec<LiveCli> = state.idle.drain().map(|(_, cli)| cli).collect();
            gone.append(&mut state.spares);
            gone
        };
        self.retire_all(gone);
        let deadline = Instant::now() + within;
        let handles = std::mem::take(&mut *self.retiring.lock());
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    pub fn counts(&self) -> Counts {
        let (counts, groups) = {
            let state = self.state.lock();
            let mut groups: Vec<i32> = state.idle.values().chain(state.spares.iter()).map(|cli| cli.pgid).collect();
            groups.sort_unstable();
            let counts =
                Counts { sessions: state.idle.len(), spares: state.spares.len(), busy: state.busy, rss_bytes: 0 };
            (counts, groups)
        };
        let mut rss = self.rss.lock();
        let bytes = match &*rss {
            Some((at, read, bytes)) if at.elapsed() < RSS_READ_EVERY && *read == groups => *bytes,
            _ => {
                let bytes = super::super::leftovers::groups_rss(&groups);
                *rss = Some((Instant::now(), groups, bytes));
                bytes
            }
        };
        Counts { rss_bytes: bytes, ..counts }
    }

    fn retire_all(&self, gone: Vec<LiveCli>) {
        if gone.is_empty() {
            return;
        }
        // Started before the lock: a retirement that cannot get a thread ends its process here
        // (`Drop`, up to END_BY_ITSELF), which must not hold anyone else up.
        let started: Vec<JoinHandle<()>> = gone.into_iter().filter_map(LiveCli::retire).collect();
        let mut retiring = self.retiring.lock();
        retiring.retain(|h| !h.is_finished());
        retiring.extend(started);
    }
}
