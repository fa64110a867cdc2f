//! The in-process queue: a `BinaryHeap` of ready tasks under a `Mutex`, a `Condvar` that wakes
//! a worker per push. Only a session's oldest waiting turn is in the heap; later ones wait aside
//! (in `later`) and move into the heap when the turn before them ends, so no worker ever waits
//! on a session. One server takes from it, so `pinned` means nothing here, nothing is ever
//! `lost`, and no call fails.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use parking_lot::{Condvar, Mutex};

use super::{Cancelled, Entry, Lost, Queue, QueueError};
use crate::model::Priority;
use crate::runner::Cancel;

#[derive(Default)]
struct State {
    ready: BinaryHeap<Entry>,
    /// Turns of a session that wait for an earlier turn of the same session, oldest first.
    later: HashMap<String, VecDeque<Entry>>,
    /// Sessions that have a turn in `ready` or running.
    occupied: HashSet<String>,
    running: HashMap<String, (Entry, Cancel)>,
    /// Ids of the tasks waiting or running (a push of one of them does nothing).
    held: HashSet<String>,
    next_seq: u64,
    workers_wanted: usize,
    workers_alive: usize,
    closed: bool,
}

impl State {
    fn pending(&self) -> usize {
        self.ready.len() + self.later.values().map(VecDeque::len).sum::<usize>()
    }

    /// The session's next turn (if any) moves into the heap; else the session is free.
    fn release_session(&mut self, session: &str) {
        match self.later.get_mut(session).and_then(VecDeque::pop_front) {
            Some(next) => self.ready.push(next),
            None => {
                self.occupied.remove(session);
            }
        }
        if self.later.get(session).is_some_and(VecDeque::is_empty) {
            self.later.remove(session);
        }
    }
}

#[derive(Default)]
pub struct LocalQueue {
    state: Mutex<State>,
    wake: Condvar,
}

impl LocalQueue {
    #[cfg(test)]
    pub fn workers_alive(&self) -> usize {
        self.state.lock().workers_alive
    }

    pub fn new(next_seq: u64) -> LocalQueue {
        let queue = LocalQueue::default();
        queue.state.lock().next_seq = next_seq;
        queue
    }
}

impl Queue for LocalQueue {
    /// A new arrival number (stored with the task, so the order survives a restart).
    fn next_seq(&self) -> Result<u64, QueueError> {
        let mut s = self.state.lock();
        s.next_seq += 1;
        Ok(s.next_seq)
    }

    fn push(&self, entry: Entry) -> Result<(), QueueError> {
        let mut s = self.state.lock();
        if !s.held.insert(entry.task_id.clone()) {
            return Ok(());
        }
        match &entry.session_id {
            Some(session) if s.occupied.contains(session) => {
                let waiting = s.later.entry(session.clone()).or_default();
                let at = waiting.partition_point(|e| e.seq < entry.seq);
                waiting.insert(at, entry);
            }
            session => {
                if let Some(session) = session {
                    s.occupied.insert(session.clone());
                }
                s.ready.push(entry);
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Blocks for the next task to run; `None` tells the calling worker to exit (the queue is
    /// closed, or there are more workers than `concurrency` now).
    fn take(&self) -> Option<(Entry, Cancel)> {
        let mut s = self.state.lock();
        loop {
            if s.closed || s.workers_alive > s.workers_wanted {
                s.workers_alive -= 1;
                return None;
            }
            if let Some(entry) = s.ready.pop() {
                let cancel = Cancel::default();
                s.running.insert(entry.task_id.clone(), (entry.clone(), cancel.clone()));
                return Some((entry, cancel));
            }
            self.wake.wait(&mut s);
        }
    }

    /// A taken task has ended (its process is gone): its session's next turn may go.
    fn done(&self, task_id: &str) {
        let mut s = self.state.lock();
        if let Some((entry, _)) = s.running.remove(task_id) {
            s.held.remove(task_id);
            if let Some(session) = &entry.session_id {
                s.release_session(session);
                self.wake.notify_one();
            }
        }
    }

    /// Takes a waiting task out of the queue, or flags a running one to be killed.
    fn cancel(&self, task_id: &str) -> Result<Cancelled, QueueError> {
        let mut s = self.state.lock();
        if let Some((_, cancel)) = s.running.get(task_id) {
            cancel.cancel();
            return Ok(Cancelled::Running);
        }
        Ok(match remove_pending(&mut s, task_id) {
            Some(_) => {
                s.held.remove(task_id);
                Cancelled::Pending
            }
            None => Cancelled::NotQueued,
        })
    }

    /// Changes the priority of a waiting task; false if it is not waiting.
    fn reprioritize(&self, task_id: &str, priority: Priority) -> Result<bool, QueueError> {
        let mut s = self.state.lock();
        if let Some(waiting) = s.later.values_mut().flat_map(|q| q.iter_mut()).find(|e| e.task_id == task_id) {
            waiting.priority = priority;
            return Ok(true);
        }
        let mut entries = std::mem::take(&mut s.ready).into_vec();
        let found = entries.iter_mut().find(|e| e.task_id == task_id).map(|e| e.priority = priority).is_some();
        s.ready = entries.into();
        Ok(found)
    }

    /// Whether a turn of `session` waits or runs.
    fn session_busy(&self, session: &str) -> Result<bool, QueueError> {
        Ok(self.state.lock().occupied.contains(session))
    }

    fn is_queued(&self, task_id: &str) -> Result<bool, QueueError> {
        Ok(self.state.lock().held.contains(task_id))
    }

    /// (waiting, running)
    fn counts(&self) -> Result<(usize, usize), QueueError> {
        let s = self.state.lock();
        Ok((s.pending(), s.running.len()))
    }

    /// One server: none of its tasks is ever another's to end.
    fn lost(&self) -> Vec<Lost> {
        Vec::new()
    }

    fn fault(&self) -> Option<String> {
        None
    }

    /// Sets the number of workers; returns how many new worker threads the caller must start.
    /// Surplus workers leave when they next look for work (running tasks are never stopped).
    fn set_workers(&self, wanted: usize) -> usize {
        let mut s = self.state.lock();
        s.workers_wanted = wanted;
        let missing = wanted.saturating_sub(s.workers_alive);
        s.workers_alive += missing;
        self.wake.notify_all();
        if s.closed {
            s.workers_alive -= missing;
            return 0;
        }
        missing
    }

    /// Stops handing out work; workers exit once their current task ends. Returns the tasks that
    /// were still waiting (they stay queued on disk).
    fn close(&self) -> Vec<Entry> {
        let mut s = self.state.lock();
        s.closed = true;
        self.wake.notify_all();
        let mut left: Vec<Entry> = s.ready.drain().collect();
        left.extend(s.later.drain().flat_map(|(_, q)| q));
        for entry in &left {
            s.held.remove(&entry.task_id);
        }
        left
    }

    /// Flags every running task to be killed as interrupted (shutdown).
    fn interrupt_running(&self) -> usize {
        let s = self.state.lock();
        s.running.values().for_each(|(_, cancel)| cancel.interrupt());
        s.running.len()
    }

    fn running_here(&self) -> usize {
        self.state.lock().running.len()
    }

    fn runs_here(&self, task_id: &str) -> bool {
        self.state.lock().running.contains_key(task_id)
    }
}

fn remove_pending(s: &mut State, task_id: &str) -> Option<Entry> {
    for (session, waiting) in s.later.iter_mut() {
        if let Some(at) = waiting.iter().position(|e| e.task_id == task_id) {
            let entry = waiting.remove(at);
            if waiting.is_empty() {
                let session = session.clone();
                s.later.remove(&session);
            }
            return entry;
        }
    }
    let mut entries = std::mem::take(&mut s.ready).into_vec();
    let at = entries.iter().position(|e| e.task_id == task_id);
    let removed = at.map(|at| entries.swap_remove(at));
    s.ready = entries.into();
    if let Some(session) = removed.as_ref().and_then(|e| e.session_id.clone()) {
        // It was its session's head: the next turn of that session may go now.
        s.release_session(&session);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, priority: u8, seq: u64, session: Option<&str>) -> Entry {
        let priority = Priority::new(priority.into()).unwrap();
        Entry { task_id: id.into(), priority, seq, session_id: session.map(str::to_string), pinned: false }
    }

    fn queue() -> LocalQueue {
        let q = LocalQueue::new(0);
        q.set_workers(1);
        q
    }

    fn take_id(q: &LocalQueue) -> String {
        let (e, _) = q.take().unwrap();
        q.done(&e.task_id);
        e.task_id
    }

    #[test]
    fn higher_priority_first_then_arrival_order() {
        let q = queue();
        q.push(entry("a", 5, 1, None)).unwrap();
        q.push(entry("b", 9, 2, None)).unwrap();
        q.push(entry("c", 5, 3, None)).unwrap();
        q.push(entry("d", 9, 4, None)).unwrap();
        q.push(entry("e", 1, 5, None)).unwrap();
        let order: Vec<String> = (0..5).map(|_| take_id(&q)).collect();
        assert_eq!(order, ["b", "d", "a", "c", "e"]);
    }

    #[test]
    fn reprioritize_reorders_waiting_tasks() {
        let q = queue();
        q.push(entry("a", 5, 1, None)).unwrap();
        q.push(entry("b", 5, 2, None)).unwrap();
        assert!(q.reprioritize("b", Priority::new(10).unwrap()).unwrap());
        assert!(!q.reprioritize("nope", Priority::new(10).unwrap()).unwrap());
        assert_eq!(take_id(&q), "b");
        assert_eq!(take_id(&q), "a");
    }

    #[test]
    fn a_sessions_turns_keep_their_order_and_never_overlap_yet_others_run() {
        let q = queue();
        q.push(entry("s1", 1, 1, Some("S"))).unwrap();
        q.push(entry("s2", 10, 2, Some("S"))).unwrap(); // higher priority, but must wait for s1
        q.push(entry("x", 5, 3, None)).unwrap();
        let (first, _) = q.take().unwrap();
        assert_eq!(first.task_id, "x"); // x (5) beats s1 (1); s2 waits aside
        let (second, _) = q.take().unwrap();
        assert_eq!(second.task_id, "s1");
        // s1 is running: s2 is not takeable although a worker asks.
        assert_eq!(q.counts().unwrap(), (1, 2));
        assert!(q.session_busy("S").unwrap());
        q.done("s1");
        let (third, _) = q.take().unwrap();
        assert_eq!(third.task_id, "s2");
        q.done("s2");
        q.done("x");
        assert!(!q.session_busy("S").unwrap());
        assert_eq!(q.counts().unwrap(), (0, 0));
    }

    #[test]
    fn cancel_removes_waiting_tasks_and_flags_running_ones() {
        let q = queue();
        q.push(entry("s1", 5, 1, Some("S"))).unwrap();
        q.push(entry("s2", 5, 2, Some("S"))).unwrap();
        q.push(entry("s3", 5, 3, Some("S"))).unwrap();
        assert_eq!(q.cancel("s2").unwrap(), Cancelled::Pending);
        let (running, cancel) = q.take().unwrap();
        assert_eq!(running.task_id, "s1");
        assert_eq!(q.cancel("s1").unwrap(), Cancelled::Running);
        assert!(cancel.is_cancelled());
        assert_eq!(q.cancel("zzz").unwrap(), Cancelled::NotQueued);
        q.done("s1");
        assert_eq!(take_id(&q), "s3");
        // Cancelling a session's head in the heap lets its next turn in.
        q.push(entry("t1", 5, 4, Some("T"))).unwrap();
        q.push(entry("t2", 5, 5, Some("T"))).unwrap();
        assert_eq!(q.cancel("t1").unwrap(), Cancelled::Pending);
        assert_eq!(take_id(&q), "t2");
    }

    #[test]
    fn surplus_workers_leave_and_close_returns_what_waited() {
        let q = LocalQueue::new(0);
        assert_eq!(q.set_workers(2), 2);
        assert_eq!(q.set_workers(1), 0);
        assert!(q.take().is_none(), "one of the two workers is surplus");
        assert_eq!(q.workers_alive(), 1);
        q.push(entry("a", 5, 1, None)).unwrap();
        q.push(entry("b", 5, 2, Some("S"))).unwrap();
        q.push(entry("c", 5, 3, Some("S"))).unwrap();
        let left: HashSet<String> = q.close().into_iter().map(|e| e.task_id).collect();
        assert_eq!(left, ["a", "b", "c"].iter().map(|s| s.to_string()).collect());
        assert!(q.take().is_none());
        assert_eq!(q.set_workers(4), 0, "a closed queue starts no workers");
    }

    #[test]
    fn a_push_of_a_task_the_queue_holds_does_nothing() {
        let q = queue();
        q.push(entry("x", 5, 1, None)).unwrap();
        q.push(entry("x", 5, 1, None)).unwrap();
        assert_eq!(q.counts().unwrap(), (1, 0));
        let (taken, _) = q.take().unwrap();
        q.push(taken).unwrap();
        assert_eq!(q.counts().unwrap(), (0, 1), "running: not queued again");
        assert!(q.is_queued("x").unwrap());
        q.done("x");
        assert!(!q.is_queued("x").unwrap());
        assert!(q.lost().is_empty() && q.fault().is_none());
    }

    #[test]
    fn seq_numbers_continue_from_the_start_value() {
        let q = LocalQueue::new(41);
        assert_eq!(q.next_seq().unwrap(), 42);
        assert_eq!(q.next_seq().unwrap(), 43);
    }
}
