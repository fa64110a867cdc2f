//! The bound on concurrent claude processes (`taskQueue.concurrency`): a counting semaphore
//! whose limit follows config reloads in both directions. Closing it refuses new runs.

use parking_lot::{Condvar, Mutex};

struct State {
    in_use: usize,
    waiting: usize,
    limit: usize,
    closed: bool,
}

pub struct Slots {
    state: Mutex<State>,
    freed: Condvar,
}

/// One claude process may run while this is held.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(limit: usize) -> Slots {
        Slots {
            state: Mutex::new(State {
                in_use: 0,
                waiting: 0,
                limit: limit.max(1),
                closed: false,
            }),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot; `None` once the server is shutting down.
    pub fn acquire(&self) -> Option<Slot<'_>> {
        let mut s = self.state.lock();
        s.waiting += 1;
        while !s.closed && s.in_use >= s.limit {
            self.freed.wait(&mut s);
        }
        s.waiting -= 1;
        if s.closed {
            return None;
        }
        s.in_use += 1;
        Some(Slot(self))
    }

    /// Changes the limit; running processes are never stopped, a lower limit applies as they end.
    pub fn set_limit(&self, limit: usize) {
        self.state.lock().limit = limit.max(1);
        self.freed.notify_all();
    }

    /// Refuses every waiting and future `acquire`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.freed.notify_all();
    }

    /// (waiting, running)
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.waiting, s.in_use)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().in_use -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn limit_bounds_holders_and_grows_live() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire().unwrap();
        let s2 = slots.clone();
        let waiter = std::thread::spawn(move || s2.acquire().map(|_slot| ()).is_some());
        while slots.counts().0 != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(slots.counts(), (1, 1));
        slots.set_limit(2);
        assert!(waiter.join().unwrap());
        drop(held);
        assert_eq!(slots.counts(), (0, 0));
    }

    #[test]
    fn close_releases_waiters_with_none() {
        let slots = Arc::new(Slots::new(1));
        let _held = slots.acquire().unwrap();
        let s2 = slots.clone();
        let waiter = std::thread::spawn(move || s2.acquire().is_none());
        while slots.counts().0 != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        slots.close();
        assert!(waiter.join().unwrap());
        assert!(slots.acquire().is_none());
    }
}
