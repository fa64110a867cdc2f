use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// What the reading half, the writing half and the connection's thread share: one socket
/// (never duplicated), the deadline for reads and whether a write failed.
pub(crate) struct Socket {
    stream: Connection,
    // reads fail with `TimedOut` once this instant has passed
    read_deadline: Mutex<Option<Instant>>,
    write_failed: AtomicBool,
}

impl Socket {
    /// Reads fail with `TimedOut` after `timeout` from now (`None`: reads wait forever).
    ///
    /// Set by the connection's thread between requests, never while the application reads a body.
    pub(crate) fn set_read_deadline(&self, timeout: Option<Duration>) {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        *self.read_deadline.lock().unwrap() = deadline;
    }

    /// True once a write to the socket failed: the response may be cut, the connection is unusable.
    pub(crate) fn write_failed(&self) -> bool {
        self.write_failed.load(Ordering::Acquire)
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> IoResult<()> {
        self.stream.shutdown(how)
    }
}

pub struct RefinedTcpStream {
    socket: Arc<Socket>,
    close_read: bool,
    close_write: bool,
    // the socket's read timeout as last set by this half, to skip the call when it is unchanged
    read_timeout: Option<Duration>,
}

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Connection>,
    {
        let socket = Arc::new(Socket {
            stream: stream.into(),
            read_deadline: Mutex::new(None),
            write_failed: AtomicBool::new(false),
        });

        let read = RefinedTcpStream {
            socket: socket.clone(),
            close_read: true,
            close_write: false,
            read_timeout: None,
        };

        let write = RefinedTcpStream {
            socket,
            close_read: false,
            close_write: true,
            read_timeout: None,
        };

        (read, write)
    }

    pub(crate) fn socket(&self) -> Arc<Socket> {
        self.socket.clone()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.socket.stream.peer_addr()
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        self.socket.stream.set_write_timeout(timeout)
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.socket.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.socket.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let deadline = *self.socket.read_deadline.lock().unwrap();
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let now = Instant::now();
                if deadline <= now {
                    return Err(IoError::new(ErrorKind::TimedOut, "read deadline passed"));
                }
                Some(deadline - now)
            }
        };
        if timeout != self.read_timeout {
            self.socket.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }

        match (&self.socket.stream).read(buf) {
            // a read timeout shows as `WouldBlock` on unix
            Err(e) if timeout.is_some() && e.kind() == ErrorKind::WouldBlock => {
                Err(IoError::new(ErrorKind::TimedOut, "read deadline passed"))
            }
            result => result,
        }
    }
}

impl RefinedTcpStream {
    fn check_write<T>(&self, result: IoResult<T>) -> IoResult<T> {
        result.map_err(|e| {
            if e.kind() != ErrorKind::Interrupted {
                self.socket.write_failed.store(true, Ordering::Release);
            }
            // a write timeout shows as `WouldBlock` on unix
            if e.kind() == ErrorKind::WouldBlock {
                IoError::new(ErrorKind::TimedOut, "write timed out")
            } else {
                e
            }
        })
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        let result = (&self.socket.stream).write(buf);
        self.check_write(result)
    }

    fn flush(&mut self) -> IoResult<()> {
        let result = (&self.socket.stream).flush();
        self.check_write(result)
    }
}
