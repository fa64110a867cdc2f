//! The open connections of a server: how many there are, so that the accept thread can stop
//! accepting at a cap, and which of them are idle (no request in progress) and since when, so
//! that at the cap the longest-idle one can be closed to make room for a new one.
//!
//! Invariant: a connection is in the idle set only while its thread waits for the first byte of
//! a request. Choosing a connection to close and the connection's thread leaving the idle state
//! happen under the same lock, so a connection is closed to make room either before its thread
//! takes the first byte of a request (the thread then ends without reading it) or not at all.

use std::collections::BTreeMap;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::util::Socket;

/// Counts the open connections of a server and knows which of them are idle.
#[derive(Clone, Default)]
pub struct ConnectionCount {
    inner: Arc<(Mutex<State>, Condvar)>,
}

#[derive(Default)]
struct State {
    // connections accepted and not closed yet (closed to make room included, until their thread
    // has ended)
    open: usize,
    // connections closed to make room whose thread has not ended yet
    evicted: usize,
    next_id: u64,
    // the idle connections, the longest-idle first
    idle: BTreeMap<(Instant, u64), Arc<Socket>>,
}

/// One open connection: dropping it (when the connection is closed) decrements the count.
pub struct ConnectionGuard {
    count: ConnectionCount,
    id: u64,
    // `Some` while idle: when it became idle (its key in the idle set is `(since, id)`)
    idle_since: Option<Instant>,
    evicted: bool,
}

impl ConnectionCount {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> usize {
        self.lock().open
    }

    /// Counts a new connection; it is not idle until its thread says so.
    pub fn add(&self) -> ConnectionGuard {
        let mut state = self.lock();
        state.open += 1;
        state.next_id += 1;
        ConnectionGuard {
            count: self.clone(),
            id: state.next_id,
            idle_since: None,
            evicted: false,
        }
    }

    /// Waits until fewer than `max` connections are open or one of them is idle (room can be
    /// made), at most `timeout`. Returns true if so.
    pub fn wait_for_room(&self, max: usize, timeout: Duration) -> bool {
        let (_, condvar) = &*self.inner;
        let (state, _) = condvar
            .wait_timeout_while(self.lock(), timeout, |state| {
                state.open >= max && state.evicted == 0 && state.idle.is_empty()
            })
            .unwrap_or_else(|e| e.into_inner());
        state.open < max || state.evicted > 0 || !state.idle.is_empty()
    }

    /// Makes room for one more connection below `max`: while `max` or more are open, closes the
    /// longest-idle one (shuts its socket down both ways: its thread's read returns and the
    /// thread ends) and waits for its thread to end. Waits at most `timeout`; returns true if
    /// fewer than `max` connections are open.
    pub fn make_room(&self, max: usize, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let (_, condvar) = &*self.inner;
        let mut state = self.lock();
        loop {
            if state.open < max {
                return true;
            }
            // one at a time: the one being closed makes room for this connection
            if state.evicted == 0 {
                let longest_idle = state.idle.keys().next().copied();
                if let Some(key) = longest_idle {
                    if let Some(socket) = state.idle.remove(&key) {
                        socket.shutdown(Shutdown::Both).ok();
                        state.evicted += 1;
                        log::debug!("Closed the longest-idle connection to make room");
                        continue;
                    }
                }
            }
            let left = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return false;
            }
            state = condvar
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl ConnectionGuard {
    /// The connection's thread waits for the first byte of a request: from now on the connection
    /// may be closed, by shutting down `socket`, to make room for a new one.
    pub fn set_idle(&mut self, socket: &Arc<Socket>) {
        if self.evicted || self.idle_since.is_some() {
            return;
        }
        let (_, condvar) = &*self.count.inner;
        let mut state = self.count.lock();
        let since = Instant::now();
        state.idle.insert((since, self.id), socket.clone());
        self.idle_since = Some(since);
        // the accept thread may be waiting for a connection to close
        condvar.notify_all();
    }

    /// The connection's thread got the first byte of a request (or its read failed): from now on
    /// the connection is not closed to make room. Returns false if it has been closed to make
    /// room already: the thread must then end without reading from it.
    pub fn set_busy(&mut self) -> bool {
        if let Some(since) = self.idle_since.take() {
            let mut state = self.count.lock();
            if state.idle.remove(&(since, self.id)).is_none() {
                self.evicted = true;
            }
        }
        !self.evicted
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        // out of the idle set, with its reference to the socket
        self.set_busy();
        let (_, condvar) = &*self.count.inner;
        let mut state = self.count.lock();
        state.open -= 1;
        if self.evicted {
            state.evicted -= 1;
        }
        condvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionCount;
    use crate::util::RefinedTcpStream;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A connection on 127.0.0.1: the server's halves as tiny-http holds them (dropping them
    /// closes it), and the client.
    fn connection() -> ((RefinedTcpStream, RefinedTcpStream), TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (RefinedTcpStream::new(server), client)
    }

    /// True if the server's side closes the connection within `within`.
    fn closed_within(client: &mut TcpStream, within: Duration) -> bool {
        client.set_read_timeout(Some(within)).unwrap();
        matches!(client.read(&mut [0; 1]), Ok(0))
    }

    #[test]
    fn counts_open_connections_and_wakes_up_below_the_cap() {
        let count = ConnectionCount::default();
        let first = count.add();
        let _second = count.add();
        assert_eq!(count.get(), 2);
        assert!(!count.wait_for_room(2, Duration::from_millis(10)));
        let waiter = {
            let count = count.clone();
            std::thread::spawn(move || count.wait_for_room(2, Duration::from_secs(2)))
        };
        drop(first);
        assert!(waiter.join().unwrap());
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn making_room_closes_the_longest_idle_connection_only() {
        let count = ConnectionCount::default();
        let (_busy_halves, mut busy_client) = connection();
        let _busy = count.add();
        let (oldest_halves, mut oldest_client) = connection();
        let mut oldest = count.add();
        let (newest_halves, mut newest_client) = connection();
        let mut newest = count.add();
        assert!(!count.wait_for_room(3, Duration::from_millis(10)));
        oldest.set_idle(&oldest_halves.0.socket());
        newest.set_idle(&newest_halves.0.socket());
        assert!(count.wait_for_room(3, Duration::from_millis(10)));

        let maker = {
            let count = count.clone();
            std::thread::spawn(move || count.make_room(3, Duration::from_secs(2)))
        };
        // closed at once; the room is made when its thread has ended
        let short = Duration::from_millis(50);
        assert!(closed_within(&mut oldest_client, Duration::from_secs(1)));
        assert!(!closed_within(&mut newest_client, short));
        assert!(!closed_within(&mut busy_client, short));
        assert_eq!(count.get(), 3);
        assert!(!oldest.set_busy(), "its thread learns that it was closed");
        drop(oldest);
        assert!(maker.join().unwrap());
        assert_eq!(count.get(), 2);

        // a connection that left the idle state is never chosen
        assert!(newest.set_busy());
        let _third = count.add();
        assert!(!count.make_room(3, Duration::from_millis(50)));
        assert!(!closed_within(&mut newest_client, short));
        assert_eq!(count.get(), 3);
    }
}
