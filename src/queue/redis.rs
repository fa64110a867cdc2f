//! The shared queue (`storageType: "redis"`): one queue in Redis for every ccs server on the same
//! Redis and key prefix, with LocalQueue's order and rules. Every step that reads and changes
//! the queue is one Lua script (`redis/*.lua`; `common.lua` lists the keys), so it is atomic
//! across servers, and its times come from Redis's clock.
//!
//! This server's side: a `Cancel` per task its workers run; workers that wait on a `Condvar`,
//! woken by a push here, by a subscriber thread (channel `queue:events`: another server pushed,
//! ended a turn, or cancels a task that runs here) and by a poll (a message can be lost, and a
//! preference window ends by itself); a heartbeat thread that keeps `server:<id>` alive and
//! renews the leases of the tasks this server runs (a server that dies stops renewing: another
//! one's `lost` claims its tasks once the lease ran out), and picks up cancels whose message was
//! lost. Both threads end when the queue is dropped.
//!
//! A session's turn prefers the server that ran its last turn (its live CLI process is there):
//! other servers leave it for `PREFER` after it became ready, while that server is alive.
//! Limits: not for Redis Cluster (scripts build key names); `take` looks at the first `SCAN`
//! shared ready entries (a server's pinned ones are in a set of its own), so a server may wait
//! while more than that many turns are left to other servers' live processes (for `PREFER`).

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::{Cancelled, Entry, Lost, Queue, QueueError};
use crate::model::Priority;
use crate::redis_link::Link;
use crate::runner::Cancel;

/// How long other servers leave a session's turn to the server that has its live process.
const PREFER: Duration = Duration::from_millis(300);
/// How often an idle worker looks again without being woken.
const POLL: Duration = Duration::from_millis(200);
/// The subscriber's read timeout: how soon it notices that the queue is dropped.
const LISTEN: Duration = Duration::from_millis(250);
/// The longest wait between two tries while Redis cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How many of the first ready entries `take` looks at.
const SCAN: usize = 64;

/// An entry as kept in Redis (`queue:entries`).
#[derive(Serialize, Deserialize)]
struct Stored {
    task_id: String,
    priority: Priority,
    seq: u64,
    session_id: Option<String>,
    /// The server that alone may take it.
    pinned: Option<String>,
}

impl Stored {
    fn entry(self) -> Entry {
        Entry {
            task_id: self.task_id,
            priority: self.priority,
            seq: self.seq,
            session_id: self.session_id,
            pinned: self.pinned.is_some(),
        }
    }
}

fn parse(json: &str) -> Result<Entry, QueueError> {
    serde_json::from_str::<Stored>(json)
        .map(Stored::entry)
        .map_err(|e| QueueError(format!("a queue entry in Redis is not ccs's ({e}): {json}")))
}

struct Scripts {
    next_seq: Script,
    push: Script,
    take: Script,
    done: Script,
    cancel: Script,
    reprioritize: Script,
    counts: Script,
    heartbeat: Script,
    lost: Script,
    unpin: Script,
    rejoin: Script,
}

impl Scripts {
    fn new() -> Scripts {
        let with_common = |body: &str| Script::new(&format!("{}\n{body}", include_str!("redis/common.lua")));
        Scripts {
            next_seq: with_common(include_str!("redis/next_seq.lua")),
            push: with_common(include_str!("redis/push.lua")),
            take: with_common(include_str!("redis/take.lua")),
            done: with_common(include_str!("redis/done.lua")),
            cancel: with_common(include_str!("redis/cancel.lua")),
            reprioritize: with_common(include_str!("redis/reprioritize.lua")),
            counts: with_common(include_str!("redis/counts.lua")),
            heartbeat: with_common(include_str!("redis/heartbeat.lua")),
            lost: with_common(include_str!("redis/lost.lua")),
            unpin: with_common(include_str!("redis/unpin.lua")),
            rejoin: with_common(include_str!("redis/rejoin.lua")),
        }
    }
}

/// This server's workers and the tasks they run.
#[derive(Default)]
struct Local {
    running: HashMap<String, Cancel>,
    workers_wanted: usize,
    workers_alive: usize,
    closed: bool,
    /// Counts wake-ups, so a worker does not sleep through one that came while it looked.
    wakes: u64,
}

/// What the queue and its two threads share.
struct Shared {
    link: Arc<Link>,
    /// This server's id: its host and port (a server started again on them is the same one).
    server: String,
    lease: Duration,
    /// The highest arrival number the store held at the start.
    start_seq: u64,
    scripts: Scripts,
    local: Mutex<Local>,
    wake: Condvar,
}

pub struct RedisQueue {
    shared: Arc<Shared>,
    /// Dropped to stop the threads.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl RedisQueue {
    /// Joins the queue under `link`'s prefix as the server `server` (`server_id`), whose running
    /// tasks are claimed for `lease` at a time; `next_seq` is the highest arrival number the
    /// store holds. What an earlier life of the same server held is taken out of the queue (the
    /// start's recovery ends it); a live server with the same id is refused.
    pub fn open(link: Arc<Link>, server: String, lease: Duration, next_seq: u64) -> Result<RedisQueue, QueueError> {
        let shared = Arc::new(Shared {
            link,
            server,
            lease,
            start_seq: next_seq,
            scripts: Scripts::new(),
            local: Mutex::default(),
            wake: Condvar::new(),
        });
        shared.rejoin()?;
        shared.heartbeat()?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let mut queue = RedisQueue { shared, stop: Some(stop), threads: Vec::new() };
        for (name, run) in [("queue-heartbeat", heartbeat as fn(&Shared, &Receiver<()>)), ("queue-events", listen)] {
            let (shared, stopped) = (queue.shared.clone(), stopped.clone());
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&shared, &stopped))
                .map_err(|e| QueueError(format!("cannot start the thread {name}: {e}")))?;
            queue.threads.push(thread);
        }
        Ok(queue)
    }

    /// For tests: one look for a task, without waiting.
    #[cfg(test)]
    fn take_now(&self) -> Option<(Entry, Cancel)> {
        let entry = self.shared.try_take().unwrap()?;
        let cancel = Cancel::default();
        self.shared.local.lock().running.insert(entry.task_id.clone(), cancel.clone());
        Some((entry, cancel))
    }
}

impl Drop for RedisQueue {
    fn drop(&mut self) {
        {
            let mut local = self.shared.local.lock();
            local.closed = true;
            self.shared.wake.notify_all();
        }
        self.stop.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The id of the server listening on `port` of this host.
pub fn server_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string());
    let host = host.ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    format!("{host}:{port}")
}

impl Shared {
    /// Runs a script with the key prefix as ARGV[1], then `args`.
    fn run<T: redis::FromRedisValue>(&self, script: &Script, args: &[&str]) -> Result<T, QueueError> {
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.link.prefix());
        for arg in args {
            invocation.arg(*arg);
        }
        Ok(self.link.with(|c| invocation.invoke(c))?)
    }

    /// Refuses to join while a live process on this host holds the id; else takes out what an
    /// earlier life of this server held.
    fn rejoin(&self) -> Result<(), QueueError> {
        let key = self.link.key(&format!("server:{}", self.server));
        let holder: Option<String> = self.link.with(|c| redis::cmd("GET").arg(&key).query(c))?;
        let pid = holder.and_then(|pid| pid.parse::<u32>().ok()).filter(|&pid| pid != std::process::id());
        if let Some(pid) = pid.filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            return Err(QueueError(format!(
                "another ccs server (pid {pid}) is in this queue as {}; two servers on one host need different ports",
                self.server
            )));
        }
        let taken: u64 = self.run(&self.scripts.rejoin, &[&self.server])?;
        if taken > 0 {
            log::warn!("{taken} task(s) this server held before it stopped are out of the queue; recovery ends them");
        }
        Ok(())
    }

    fn lease_ms(&self) -> String {
        self.lease.as_millis().to_string()
    }

    fn try_take(&self) -> Result<Option<Entry>, QueueError> {
        let taken: Option<String> = self.run(
            &self.scripts.take,
            &[&self.server, &self.lease_ms(), &PREFER.as_millis().to_string(), &SCAN.to_string()],
        )?;
        taken.map(|json| parse(&json)).transpose()
    }

    /// Wakes every waiting worker (there may be work now).
    fn wake_all(&self) {
        let mut local = self.local.lock();
        local.wakes += 1;
        self.wake.notify_all();
    }

    /// A message on `queue:events`.
    fn on_message(&self, message: &str) {
        match message.strip_prefix("cancel:") {
            Some(task_id) => {
                if let Some(cancel) = self.local.lock().running.get(task_id) {
                    cancel.cancel();
                }
            }
            None => self.wake_all(),
        }
    }

    /// Renews this server's liveness and its tasks' leases; cancels what was cancelled
    /// elsewhere, and stops what is no longer this server's (its lease ran out meanwhile).
    fn heartbeat(&self) -> Result<(), QueueError> {
        let ids: Vec<String> = self.local.lock().running.keys().cloned().collect();
        let lease = self.lease_ms();
        let pid = std::process::id().to_string();
        let mut args: Vec<&str> = vec![&self.server, &lease, &pid];
        args.extend(ids.iter().map(String::as_str));
        let (gone, cancelled): (Vec<String>, Vec<String>) = self.run(&self.scripts.heartbeat, &args)?;
        // Not part of the renewal: a failure here must not count as claims not renewed.
        if let Err(e) = self.link.keep_claim() {
            log::debug!("cannot write the key prefix's marker again: {e}");
        }
        let local = self.local.lock();
        for id in &gone {
            if let Some(cancel) = local.running.get(id) {
                log::warn!(
                    "task {id}: this server's claim on it ran out (Redis was out of reach longer than \
                     redisLeaseMs); another server ends it interrupted, so it is stopped here"
                );
                cancel.interrupt();
            }
        }
        for id in &cancelled {
            if let Some(cancel) = local.running.get(id) {
                cancel.cancel();
            }
        }
        Ok(())
    }
}

/// The heartbeat thread: every lease/3 until stopped. When the claims could not be renewed
/// for 2/3 of a lease, they run out soon and other servers may settle the tasks (and run a
/// session's next turn): the tasks that run here are interrupted first, so that two servers
/// never run turns of one session at once (a server cut off from Redis cannot know).
fn heartbeat(shared: &Shared, stopped: &Receiver<()>) {
    let mut down = false;
    let mut fenced = false;
    let mut renewed = std::time::Instant::now();
    loop {
        match stopped.recv_timeout(shared.lease / 3) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let attempt = std::time::Instant::now();
        match shared.heartbeat() {
            Ok(()) => {
                renewed = attempt;
                fenced = false;
                if down {
                    down = false;
                    log::info!("the task queue in Redis answers again");
                }
            }
            Err(e) => {
                if !down {
                    down = true;
                    log::warn!("cannot renew this server's claims in the task queue: {e}");
                }
                if !fenced && renewed.elapsed() >= shared.lease * 2 / 3 {
                    fenced = true;
                    let local = shared.local.lock();
                    local.running.values().for_each(Cancel::interrupt);
                    if !local.running.is_empty() {
                        log::warn!(
                            "{} task(s) running here are stopped (interrupted): this server's claims on them run out \
                             (Redis out of reach for {} ms, redisLeaseMs {}) and another server may settle them",
                            local.running.len(),
                            renewed.elapsed().as_millis(),
                            shared.lease.as_millis()
                        );
                    }
                }
            }
        }
    }
}

/// The subscriber thread: relays `queue:events` to this server's workers until stopped,
/// connecting again whenever the connection breaks.
fn listen(shared: &Shared, stopped: &Receiver<()>) {
    let channel = shared.link.key("queue:events");
    let mut backoff = FIRST_BACKOFF;
    loop {
        match shared.link.dedicated(LISTEN) {
            Ok(mut conn) => {
                let mut pubsub = conn.as_pubsub();
                if pubsub.subscribe(&channel).is_ok() {
                    backoff = FIRST_BACKOFF;
                    // Whatever was said while no one listened: look again.
                    shared.wake_all();
                    loop {
                        match pubsub.get_message() {
                            Ok(message) => {
                                if let Ok(text) = message.get_payload::<String>() {
                                    shared.on_message(&text);
                                }
                            }
                            Err(e) if e.is_timeout() => {}
                            Err(_) => break,
                        }
                        if !matches!(stopped.try_recv(), Err(crossbeam_channel::TryRecvError::Empty)) {
                            return;
                        }
                    }
                }
            }
            Err(_) => backoff = (backoff * 2).min(MAX_BACKOFF),
        }
        match stopped.recv_timeout(backoff) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

impl Queue for RedisQueue {
    fn next_seq(&self) -> Result<u64, QueueError> {
        let s = &self.shared;
        s.run(&s.scripts.next_seq, &[&s.start_seq.to_string()])
    }

    fn push(&self, entry: Entry) -> Result<(), QueueError> {
        let s = &self.shared;
        let pinned = entry.pinned.then(|| s.server.clone());
        let stored = Stored {
            task_id: entry.task_id,
            priority: entry.priority,
            seq: entry.seq,
            session_id: entry.session_id,
            pinned: pinned.clone(),
        };
        let json = serde_json::to_string(&stored).map_err(|e| QueueError(e.to_string()))?;
        let _: i64 = s.run(&s.scripts.push, &[&stored.task_id, &json, pinned.as_deref().unwrap_or("")])?;
        s.wake_all();
        Ok(())
    }

    fn take(&self) -> Option<(Entry, Cancel)> {
        let s = &self.shared;
        let mut backoff = FIRST_BACKOFF;
        let mut told = false;
        loop {
            let seen = {
                let mut local = s.local.lock();
                if local.closed || local.workers_alive > local.workers_wanted {
                    local.workers_alive = local.workers_alive.saturating_sub(1);
                    return None;
                }
                local.wakes
            };
            let pause = match s.try_take() {
                Ok(Some(entry)) => {
                    let cancel = Cancel::default();
                    s.local.lock().running.insert(entry.task_id.clone(), cancel.clone());
                    if told {
                        log::info!("a worker takes tasks from the queue in Redis again");
                    }
                    return Some((entry, cancel));
                }
                Ok(None) => {
                    backoff = FIRST_BACKOFF;
                    POLL
                }
                Err(e) => {
                    if !told {
                        told = true;
                        log::warn!("a worker cannot take tasks: {e}; it tries again");
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            let mut local = s.local.lock();
            if local.wakes == seen && !local.closed {
                s.wake.wait_for(&mut local, pause);
            }
        }
    }

    fn done(&self, task_id: &str) {
        let s = &self.shared;
        // No longer renewed: if Redis stays out of reach, the lease runs out and another server
        // settles the task (its record is final by then, so nothing changes).
        s.local.lock().running.remove(task_id);
        let mut backoff = FIRST_BACKOFF;
        loop {
            match s.run::<i64>(&s.scripts.done, &[task_id, &s.server]) {
                Ok(_) => return,
                Err(e) if s.local.lock().closed => {
                    log::error!("task {task_id}: the queue did not hear that it ended ({e}); its lease runs out");
                    return;
                }
                Err(e) => {
                    if backoff == FIRST_BACKOFF {
                        log::warn!("task {task_id}: cannot tell the queue that it ended: {e}; trying again");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn cancel(&self, task_id: &str) -> Result<Cancelled, QueueError> {
        let s = &self.shared;
        let found: String = s.run(&s.scripts.cancel, &[task_id])?;
        Ok(match found.as_str() {
            "running" => {
                // Here: at once. Elsewhere: that server hears the message (or its heartbeat
                // reads the cancel set).
                if let Some(cancel) = s.local.lock().running.get(task_id) {
                    cancel.cancel();
                }
                Cancelled::Running
            }
            "pending" => Cancelled::Pending,
            _ => Cancelled::NotQueued,
        })
    }

    fn reprioritize(&self, task_id: &str, priority: Priority) -> Result<bool, QueueError> {
        let s = &self.shared;
        let changed: i64 = s.run(&s.scripts.reprioritize, &[task_id, &priority.to_string()])?;
        Ok(changed == 1)
    }

    fn session_busy(&self, session: &str) -> Result<bool, QueueError> {
        let key = self.shared.link.key("queue:occupied");
        Ok(self.shared.link.with(|c| redis::cmd("SISMEMBER").arg(&key).arg(session).query(c))?)
    }

    fn is_queued(&self, task_id: &str) -> Result<bool, QueueError> {
        let key = self.shared.link.key("queue:entries");
        Ok(self.shared.link.with(|c| redis::cmd("HEXISTS").arg(&key).arg(task_id).query(c))?)
    }

    fn counts(&self) -> Result<(usize, usize), QueueError> {
        let s = &self.shared;
        let (waiting, running): (i64, i64) = s.run(&s.scripts.counts, &[])?;
        Ok((waiting.max(0) as usize, running.max(0) as usize))
    }

    fn lost(&self) -> Vec<Lost> {
        let s = &self.shared;
        let found: Vec<String> = match s.run(&s.scripts.lost, &[]) {
            Ok(found) => found,
            Err(e) => {
                log::debug!("cannot look for tasks of dead servers now: {e}");
                return Vec::new();
            }
        };
        let mut lost = Vec::new();
        for pair in found.chunks(2) {
            let [kind, json] = pair else { continue };
            match parse(json) {
                Ok(entry) if kind == "running" => lost.push(Lost::Running(entry)),
                Ok(entry) => lost.push(Lost::Abandoned(entry)),
                Err(e) => log::error!("{e}"),
            }
        }
        lost
    }

    fn fault(&self) -> Option<String> {
        self.shared.link.fault()
    }

    fn set_workers(&self, wanted: usize) -> usize {
        let s = &self.shared;
        let mut local = s.local.lock();
        local.workers_wanted = wanted;
        let missing = wanted.saturating_sub(local.workers_alive);
        local.workers_alive += missing;
        local.wakes += 1;
        s.wake.notify_all();
        if local.closed {
            local.workers_alive -= missing;
            return 0;
        }
        missing
    }

    /// Waiting tasks stay for the other servers, but for those pinned to this one: they are
    /// taken out and returned (nobody else may run them).
    fn close(&self) -> Vec<Entry> {
        let s = &self.shared;
        {
            let mut local = s.local.lock();
            local.closed = true;
            s.wake.notify_all();
        }
        match s.run::<Vec<String>>(&s.scripts.unpin, &[&s.server]) {
            Ok(found) => found.iter().filter_map(|json| parse(json).map_err(|e| log::error!("{e}")).ok()).collect(),
            Err(e) => {
                log::warn!("the waiting tasks of this server stay in the queue ({e}); another server cancels them");
                Vec::new()
            }
        }
    }

    fn interrupt_running(&self) -> usize {
        let local = self.shared.local.lock();
        local.running.values().for_each(Cancel::interrupt);
        local.running.len()
    }

    fn running_here(&self) -> usize {
        self.shared.local.lock().running.len()
    }

    fn runs_here(&self, task_id: &str) -> bool {
        self.shared.local.lock().running.contains_key(task_id)
    }
}

#[cfg(test)]
mod tests;
