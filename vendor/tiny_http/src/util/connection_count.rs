//! The open connections of a server: how many there are, so that the accept thread can stop
//! accepting at a cap, and which of them may be closed to make room for a new one at the cap,
//! since when: the idle ones (no request in progress) and those reading a head (a request that
//! has begun and has not been handed to the application yet). The one to close is the one that
//! entered its state longest ago, idle or reading a head alike; and how many were closed.
//!
//! Invariant: a connection is a candidate as idle only while its thread waits for the first byte
//! of a request, and as reading a head only from that byte until its request is handed out.
//! Choosing a connection to close and the connection's thread moving from one state to the next
//! happen under the same lock, so a connection is closed to make room either before its thread
//! takes the first byte of a request, or before its request is handed out (the thread then ends
//! without reading further or handing it out, and sends nothing), or not at all: a request that
//! the application holds, or whose response is being written, is never cut.

use std::collections::BTreeMap;
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::util::Socket;

/// Counts the open connections of a server and knows which of them are idle or reading a head.
#[derive(Clone, Default)]
pub struct ConnectionCount {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// Connections by the instant they entered their state, the longest in it first, with their
/// socket and the name of their state.
type Since = BTreeMap<(Instant, u64), (Arc<Socket>, &'static str)>;

#[derive(Default)]
struct State {
    // connections accepted and not closed yet (closed to make room included, until their thread
    // has ended)
    open: usize,
    // connections closed to make room whose thread has not ended yet
    evicted: usize,
    next_id: u64,
    // the idle connections and those reading a head, the one in its state longest first
    candidates: Since,
    // connections closed to make room since the server started
    closed_to_make_room: u64,
}

impl State {
    /// True if a new connection can be served below `max`, now or once a connection closed to
    /// make room has ended.
    fn has_room(&self, max: usize) -> bool {
        self.open < max || self.evicted > 0 || !self.candidates.is_empty()
    }

    /// Takes out of the candidates the connection to close to make room: the one that has been
    /// idle or reading a head the longest. A connection is idle from its accept or its last
    /// response, so a newcomer that has not sent its first byte yet is never closed before the
    /// heads that an attacker began earlier.
    fn choose(&mut self) -> Option<(Arc<Socket>, &'static str)> {
        let key = self.candidates.keys().next().copied()?;
        self.candidates.remove(&key)
    }
}

/// Where a connection is, as far as making room goes.
#[derive(Clone, Copy)]
enum Phase {
    /// never closed to make room: just accepted, or a request handed out and not answered yet
    Busy,
    /// waiting for the first byte of a request, since then
    Idle(Instant),
    /// reading a head, begun then
    Head(Instant),
}

/// One open connection: dropping it (when the connection is closed) decrements the count.
pub struct ConnectionGuard {
    count: ConnectionCount,
    id: u64,
    socket: Arc<Socket>,
    // its key among the candidates is `(since, id)`
    phase: Phase,
    evicted: bool,
}

impl ConnectionCount {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> usize {
        self.lock().open
    }

    /// How many connections were closed to make room for a new one.
    pub fn closed_to_make_room(&self) -> u64 {
        self.lock().closed_to_make_room
    }

    /// Counts a new connection, which closing `socket` closes; it cannot be closed to make room
    /// until its thread says that it is idle.
    pub fn add(&self, socket: Arc<Socket>) -> ConnectionGuard {
        let mut state = self.lock();
        state.open += 1;
        state.next_id += 1;
        ConnectionGuard {
            count: self.clone(),
            id: state.next_id,
            socket,
            phase: Phase::Busy,
            evicted: false,
        }
    }

    /// Waits until fewer than `max` connections are open or one of them is idle or reading a
    /// head (room can be made), at most `timeout`. Returns true if so.
    pub fn wait_for_room(&self, max: usize, timeout: Duration) -> bool {
        let (_, condvar) = &*self.inner;
        let (state, _) = condvar
            .wait_timeout_while(self.lock(), timeout, |state| !state.has_room(max))
            .unwrap_or_else(|e| e.into_inner());
        state.has_room(max)
    }

    /// Makes room for one more connection below `max`: while `max` or more are open, closes the
    /// connection that has been idle or reading a head the longest (shuts its socket down both
    /// ways: its thread's read returns and the thread ends), and
    /// waits for its thread to end. Waits at most `timeout`; returns true if fewer than `max`
    /// connections are open.
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
                let chosen = state.choose();
                if let Some((socket, which)) = chosen {
                    socket.shutdown(Shutdown::Both).ok();
                    state.evicted += 1;
                    state.closed_to_make_room += 1;
                    log::debug!("Closed a connection {} to make room", which);
                    continue;
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
    /// may be closed to make room for a new one.
    pub fn set_idle(&mut self) {
        self.enter(Phase::Idle(Instant::now()));
    }

    /// The connection's thread got the first byte of a request (or starts on a pipelined one):
    /// the connection may still be closed to make room, by the instant its head began, until its
    /// request is handed out. Returns false if it has been closed to make room already: the thread must
    /// then end without reading from it.
    pub fn start_head(&mut self) -> bool {
        self.enter(Phase::Head(Instant::now()))
    }

    /// The request that the connection's thread has read is handed to the application: from now
    /// on the connection is not closed to make room. Returns false if it has been closed to make
    /// room already: the thread must then end without handing the request out or answering it.
    pub fn hand_out(&mut self) -> bool {
        self.enter(Phase::Busy)
    }

    /// Moves the connection to `next` under the lock that choosing one to close takes. Returns
    /// false, and leaves it out of both sets for good, if it has been closed to make room.
    fn enter(&mut self, next: Phase) -> bool {
        if self.evicted {
            return false;
        }
        let (_, condvar) = &*self.count.inner;
        let mut state = self.count.lock();
        let still_there = match self.phase {
            Phase::Busy => true,
            Phase::Idle(since) | Phase::Head(since) => {
                state.candidates.remove(&(since, self.id)).is_some()
            }
        };
        if !still_there {
            self.evicted = true;
            self.phase = Phase::Busy;
            return false;
        }
        match next {
            Phase::Busy => (),
            Phase::Idle(since) => {
                let idle = (self.socket.clone(), "idle since longest");
                state.candidates.insert((since, self.id), idle);
            }
            Phase::Head(since) => {
                let head = (self.socket.clone(), "whose head began first");
                state.candidates.insert((since, self.id), head);
            }
        }
        if matches!(self.phase, Phase::Busy) && !matches!(next, Phase::Busy) {
            // the accept thread may be waiting for a connection that it can close
            condvar.notify_all();
        }
        self.phase = next;
        true
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        // out of the candidates, with its reference to the socket
        self.enter(Phase::Busy);
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
    use super::{ConnectionCount, ConnectionGuard};
    use crate::util::RefinedTcpStream;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A connection on 127.0.0.1 counted in `count`: its guard, the server's halves as tiny-http
    /// holds them (dropping them closes it), and the client.
    fn connection(
        count: &ConnectionCount,
    ) -> (
        ConnectionGuard,
        (RefinedTcpStream, RefinedTcpStream),
        TcpStream,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let halves = RefinedTcpStream::new(server);
        (count.add(halves.0.socket()), halves, client)
    }

    /// True if the server's side closes the connection within `within`.
    fn closed_within(client: &mut TcpStream, within: Duration) -> bool {
        client.set_read_timeout(Some(within)).unwrap();
        matches!(client.read(&mut [0; 1]), Ok(0))
    }

    const SHORT: Duration = Duration::from_millis(50);

    #[test]
    fn counts_open_connections_and_wakes_up_below_the_cap() {
        let count = ConnectionCount::default();
        let (first, _first_halves, _first_client) = connection(&count);
        let (_second, _second_halves, _second_client) = connection(&count);
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
        let (_busy, _busy_halves, mut busy_client) = connection(&count);
        let (mut oldest, _oldest_halves, mut oldest_client) = connection(&count);
        let (mut newest, _newest_halves, mut newest_client) = connection(&count);
        assert!(!count.wait_for_room(3, Duration::from_millis(10)));
        oldest.set_idle();
        newest.set_idle();
        assert!(count.wait_for_room(3, Duration::from_millis(10)));

        let maker = {
            let count = count.clone();
            std::thread::spawn(move || count.make_room(3, Duration::from_secs(2)))
        };
        // closed at once; the room is made when its thread has ended
        assert!(closed_within(&mut oldest_client, Duration::from_secs(1)));
        assert!(!closed_within(&mut newest_client, SHORT));
        assert!(!closed_within(&mut busy_client, SHORT));
        assert_eq!(count.get(), 3);
        assert!(!oldest.start_head(), "its thread learns that it was closed");
        drop(oldest);
        assert!(maker.join().unwrap());
        assert_eq!(count.get(), 2);

        // a connection whose request was handed out is never chosen
        assert!(newest.start_head());
        assert!(newest.hand_out());
        let (_third, _third_halves, _third_client) = connection(&count);
        assert!(!count.wait_for_room(3, Duration::from_millis(10)));
        assert!(!count.make_room(3, SHORT));
        assert!(!closed_within(&mut newest_client, SHORT));
        assert_eq!(count.get(), 3);
    }

    #[test]
    fn making_room_closes_the_connection_idle_or_reading_a_head_the_longest() {
        let count = ConnectionCount::default();
        let (mut handed_out, _handed_out_halves, mut handed_out_client) = connection(&count);
        handed_out.set_idle();
        assert!(handed_out.start_head());
        assert!(handed_out.hand_out());
        let (mut oldest_head, _oldest_halves, mut oldest_client) = connection(&count);
        oldest_head.set_idle();
        assert!(oldest_head.start_head());
        let (mut idle, _idle_halves, mut idle_client) = connection(&count);
        idle.set_idle();
        let (mut newest_head, _newest_halves, mut newest_client) = connection(&count);
        // a pipelined head: never idle
        assert!(newest_head.start_head());

        // the head that began before the other became idle; the room is made when its thread
        // has ended, which learns it when it would hand its request out
        assert!(!count.make_room(4, SHORT));
        assert!(closed_within(&mut oldest_client, Duration::from_secs(1)));
        assert!(!closed_within(&mut idle_client, SHORT));
        assert!(!closed_within(&mut newest_client, SHORT));
        assert!(!oldest_head.hand_out());
        drop(oldest_head);
        assert_eq!(count.get(), 3);
        assert_eq!(count.closed_to_make_room(), 1);

        // then the idle one, idle since before the other head began
        assert!(!count.make_room(3, SHORT));
        assert!(closed_within(&mut idle_client, Duration::from_secs(1)));
        assert!(!closed_within(&mut newest_client, SHORT));
        assert!(!closed_within(&mut handed_out_client, SHORT));
        assert!(!idle.start_head(), "its thread learns that it was closed");
        drop(idle);
        assert_eq!(count.get(), 2);
        assert!(count.make_room(3, SHORT));

        // then the other head; the handed-out one never
        assert!(newest_head.hand_out());
        assert!(!count.wait_for_room(2, Duration::from_millis(10)));
        assert!(!count.make_room(2, SHORT));
        assert!(!closed_within(&mut newest_client, SHORT));
        assert!(!closed_within(&mut handed_out_client, SHORT));
        assert_eq!(count.get(), 2);
        assert_eq!(count.closed_to_make_room(), 2);
    }
}
