//! Per-session turn ordering: turns of one session run one at a time, in the order they arrived
//! (a ticket line per session). Sessions do not wait on each other.

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct Line {
    next_ticket: u64,
    serving: u64,
}

#[derive(Default)]
pub struct Gate {
    lines: Mutex<HashMap<String, Line>>,
    turn_done: Condvar,
}

/// Held while a turn of the session runs; the next turn goes when it is dropped.
pub struct GateGuard<'a> {
    gate: &'a Gate,
    key: String,
}

impl Gate {
    /// Waits for this caller's turn on `key`.
    pub fn enter(&self, key: &str) -> GateGuard<'_> {
        let mut lines = self.lines.lock();
        let line = lines.entry(key.to_string()).or_default();
        let ticket = line.next_ticket;
        line.next_ticket += 1;
        while lines.get(key).is_some_and(|line| line.serving != ticket) {
            self.turn_done.wait(&mut lines);
        }
        GateGuard {
            gate: self,
            key: key.to_string(),
        }
    }

    /// Whether a turn of `key` runs or waits.
    pub fn is_busy(&self, key: &str) -> bool {
        self.lines.lock().contains_key(key)
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut lines = self.gate.lines.lock();
        if let Some(line) = lines.get_mut(&self.key) {
            line.serving += 1;
            if line.serving == line.next_ticket {
                lines.remove(&self.key);
            }
        }
        self.gate.turn_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn turns_of_one_session_run_in_arrival_order() {
        let gate = Arc::new(Gate::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.enter("s");
        let mut handles = Vec::new();
        for i in 0..5 {
            let (waiter, order) = (gate.clone(), order.clone());
            handles.push(std::thread::spawn(move || {
                let _g = waiter.enter("s");
                order.lock().push(i);
            }));
            // Each thread takes its ticket before the next one starts.
            while gate.lines.lock()["s"].next_ticket != i + 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert!(gate.is_busy("s"));
        let other = gate.enter("t"); // another session is not blocked
        drop(other);
        drop(first);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock(), [0, 1, 2, 3, 4]);
        assert!(!gate.is_busy("s"));
    }
}
