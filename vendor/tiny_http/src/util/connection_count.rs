use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Counts the open connections of a server, so that the accept thread can stop accepting at a cap.
#[derive(Clone, Default)]
pub struct ConnectionCount {
    inner: Arc<(Mutex<usize>, Condvar)>,
}

/// One open connection: dropping it (when the connection is closed) decrements the count.
pub struct ConnectionGuard {
    count: ConnectionCount,
}

impl ConnectionCount {
    pub fn get(&self) -> usize {
        *self.inner.0.lock().unwrap()
    }

    pub fn add(&self) -> ConnectionGuard {
        *self.inner.0.lock().unwrap() += 1;
        ConnectionGuard {
            count: self.clone(),
        }
    }

    /// Waits until fewer than `max` connections are open, at most `timeout`.
    /// Returns true if there are fewer.
    pub fn wait_below(&self, max: usize, timeout: Duration) -> bool {
        let (count, condvar) = &*self.inner;
        let count = count.lock().unwrap();
        let (count, _) = condvar
            .wait_timeout_while(count, timeout, |count| *count >= max)
            .unwrap();
        *count < max
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let (count, condvar) = &*self.count.inner;
        *count.lock().unwrap() -= 1;
        condvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionCount;
    use std::time::Duration;

    #[test]
    fn counts_open_connections_and_wakes_up_below_the_cap() {
        let count = ConnectionCount::default();
        let first = count.add();
        let _second = count.add();
        assert_eq!(count.get(), 2);
        assert!(!count.wait_below(2, Duration::from_millis(10)));
        let waiter = {
            let count = count.clone();
            std::thread::spawn(move || count.wait_below(2, Duration::from_secs(2)))
        };
        drop(first);
        assert!(waiter.join().unwrap());
        assert_eq!(count.get(), 1);
    }
}
