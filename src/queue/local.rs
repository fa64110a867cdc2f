//! The in-process queue: a `BinaryHeap` of ready tasks under a `Mutex`, a `Condvar` that wakes
//! a worker per push. Only a session's oldest waiting turn is in the heap; later ones wait aside
//! (in `later`) and move into the heap when the turn before them ends, so no worker ever waits
//! on a session.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use parking_lot::{Condvar, Mutex};

use super::{Cancelled, Entry, Queue};
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
    fn next_seq(&self) -> u64 {
        let mut s = self.state.lock();
        s.next_seq += 1;
        s.next_seq
    }

    fn push(&self, entry: Entry) {
        let mut s = self.state.lock();
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
            if let Some(session) = &entry.session_id {
                s.release_session(session);
                self.wake.notify_one();
            }
        }
    }

    /// Takes a waiting task out of the queue, or flags a running one to be killed.
    fn cancel(&self, task_id: &str) -> Cancelled {
        let mut s = self.state.lock();
        if let Some((_, cancel)) = s.running.get(task_id) {
            cancel.cancel();
            return Cancelled::Running;
        }
        match remove_pending(&mut s, task_id) {
            Some(_) => Cancelled::Pending,
            None => Cancelled::NotQueued,
        }
    }

    /// Changes the priority of a waiting task; false if it is not waiting.
    fn reprioritize(&self, task_id: &str, priority: Priority) -> bool {
        let mut s = self.state.lock();
        if let Some(waiting) = s.later.values_mut().flat_map(|q| q.iter_mut()).find(|e| e.task_id == task_id) {
            waiting.priority = priority;
            return true;
        }
        let mut entries = std::mem::take(&mut s.ready).into_vec();
        let found = entries.iter_mut().find(|e| e.task_id == task_id).map(|e| e.priority = priority).is_some();
        s.ready = entries.into();
        found
    }

    /// Whether a turn of `session` waits or runs.
    fn session_busy(&self, session: &str) -> bool {
        self.state.lock().occupied.contains(session)
    }

    /// (waiting, running)
    fn counts(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.pending(), s.running.len())
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
        left
    }

    /// Flags every running task to be killed as interrupted (shutdown).
    fn interrupt_running(&self) -> usize {
        let s = self.state.lock();
        s.running.values().for_each(|(_, cancel)| cancel.interrupt());
        s.running.len()
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
        Entry { task_id: id.into(), priority, seq, session_id: session.map(str::to_string) }
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
        q.push(entry("a", 5, 1, None));
        q.push(entry("b", 9, 2, None));
        q.push(entry("c", 5, 3, None));
        q.push(entry("d", 9, 4, None));
        q.push(entry("e", 1, 5, None));
        let order: Vec<String> = (0..5).map(|_| take_id(&q)).collect();
        assert_eq!(order, ["b", "d", "a", "c", "e"]);
    }

    #[test]
    fn reprioritize_reorders_waiting_tasks() {
        let q = queue();
        q.push(entry("a", 5, 1, None));
        q.push(entry("b", 5, 2, None));
        assert!(q.reprioritize("b", Priority::new(10).unwrap()));
        assert!(!q.reprioritize("nope", Priority::new(10).unwrap()));
        assert_eq!(take_id(&q), "b");
        assert_eq!(take_id(&q), "a");
    }

    #[test]
    fn a_sessions_turns_keep_their_order_and_never_overlap_yet_others_run() {
        let q = queue();
        q.push(entry("s1", 1, 1, Some("S")));
        q.push(entry("s2", 10, 2, Some("S"))); // higher priority, but must wait for s1
        q.push(entry("x", 5, 3, None));
        let (first, _) = q.take().unwrap();
        assert_eq!(first.task_id, "x"); // x (5) beats s1 (1); s2 waits aside
        let (second, _) = q.take().unwrap();
        assert_eq!(second.task_id, "s1");
        // s1 is running: s2 is not takeable although a worker asks.
        assert_eq!(q.counts(), (1, 2));
        assert!(q.session_busy("S"));
        q.done("s1");
        let (third, _) = q.take().unwrap();
        assert_eq!(third.task_id, "s2");
        q.done("s2");
        q.done("x");
        assert!(!q.session_busy("S"));
        assert_eq!(q.counts(), (0, 0));
    }

    #[test]
    fn cancel_removes_waiting_tasks_and_flags_running_ones() {
        let q = queue();
        q.push(entry("s1", 5, 1, Some("S")));
        q.push(entry("s2", 5, 2, Some("S")));
        q.push(entry("s3", 5, 3, Some("S")));
        assert_eq!(q.cancel("s2"), Cancelled::Pending);
        let (running, cancel) = q.take().unwrap();
        assert_eq!(running.task_id, "s1");
        assert_eq!(q.cancel("s1"), Cancelled::Running);
        assert!(cancel.is_cancelled());
        assert_eq!(q.cancel("zzz"), Cancelled::NotQueued);
        q.done("s1");
        assert_eq!(take_id(&q), "s3");
        // Cancelling a session's head in the heap lets its next turn in.
        q.push(entry("t1", 5, 4, Some("T")));
        q.push(entry("t2", 5, 5, Some("T")));
        assert_eq!(q.cancel("t1"), Cancelled::Pending);
        assert_eq!(take_id(&q), "t2");
    }

    #[test]
    fn surplus_workers_leave_and_close_returns_what_waited() {
        let q = LocalQueue::new(0);
        assert_eq!(q.set_workers(2), 2);
        assert_eq!(q.set_workers(1), 0);
        assert!(q.take().is_none(), "one of the two workers is surplus");
        assert_eq!(q.workers_alive(), 1);
        q.push(entry("a", 5, 1, None));
        q.push(entry("b", 5, 2, Some("S")));
        q.push(entry("c", 5, 3, Some("S")));
        let left: HashSet<String> = q.close().into_iter().map(|e| e.task_id).collect();
        assert_eq!(left, ["a", "b", "c"].iter().map(|s| s.to_string()).collect());
        assert!(q.take().is_none());
        assert_eq!(q.set_workers(4), 0, "a closed queue starts no workers");
    }

    #[test]
    fn seq_numbers_continue_from_the_start_value() {
        let q = LocalQueue::new(41);
        assert_eq!(q.next_seq(), 42);
        assert_eq!(q.next_seq(), 43);
    }
}
