//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]
// lints of newer clippy versions on code as published in 0.12.0 (their fixes need Rust 1.74 or
// 1.82, above the crate's MSRV, or only restyle it)
#![allow(
    clippy::doc_overindented_list_items,
    clippy::io_other_error,
    clippy::needless_borrow,
    clippy::unnecessary_map_or
)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::{AcceptBackoff, AfterAcceptError, ConnectionCount, MessagesQueue};

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // number of open connections
    connections: ConnectionCount,
}

enum Message {
    NewRequest(Request),
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    ///
    /// This copy of tiny-http has no SSL support: `Some` makes `Server::new` fail.
    pub ssl: Option<SslConfig>,

    /// Timeouts and size limits; `Limits::default()` sets none.
    pub limits: Limits,
}

/// Limits that keep slow, idle or oversized clients from holding the server's threads,
/// descriptors and memory.
///
/// `Limits::default()` sets none of them, as tiny-http always did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// How long a connection may stay without a request in progress (after it was accepted, and
    /// after a response has been written) before the first byte of the next request comes.
    /// The connection is then closed without a response.
    pub idle_timeout: Option<Duration>,

    /// How long the whole head of a request may take, from its first byte: after that, the
    /// server answers `408 Request Timeout` and closes the connection. A body may take as long
    /// again, from the end of the head: after that, reads from `Request::as_reader()` fail with
    /// `ErrorKind::TimedOut` (the application answers, then the connection is closed).
    /// These are deadlines: a client that sends a byte now and then does not extend them.
    /// The stream of a `Connection: upgrade` request has none after its head.
    pub read_timeout: Option<Duration>,

    /// How long each write to a client may block (`SO_SNDTIMEO`). A write that times out fails
    /// with `ErrorKind::TimedOut` and the connection is closed after the response.
    pub write_timeout: Option<Duration>,

    /// How many connections may be open at once. At the cap, a new connection makes room by
    /// closing, among the idle connections (no request in progress, as for `idle_timeout`: since
    /// their accept or their last response) and those whose request head has begun and has not
    /// been handed out yet (a client that sends its head slowly, or never ends it: since its
    /// first byte), the one that entered its state first. It is closed without a response;
    /// `Server::connections_closed_to_make_room` counts them. A connection whose request has been handed out is never
    /// closed for this: if every connection has one, the server stops accepting, and new
    /// connections wait in the system's listen queue until one closes, becomes idle or starts a
    /// head.
    pub max_connections: Option<usize>,

    /// How long the request line (method, URL and version, without the line end) may be:
    /// a longer one gets `414 URI Too Long` and the connection is closed.
    pub max_url_bytes: Option<usize>,

    /// How large the request head (request line and header lines with their line ends, and the
    /// empty line that ends the head) may be: a larger one gets
    /// `431 Request Header Fields Too Large` and the connection is closed. No more than this is
    /// read.
    pub max_head_bytes: Option<usize>,

    /// The body of the responses that tiny-http sends itself (400, 408, 414, 417, 431, 501, 505),
    /// made from the status code and a short English explanation, e.g. "the request head is
    /// larger than 65536 bytes". `None`: empty bodies.
    pub error_body: Option<ErrorBody>,
}

/// Makes the body of a response that tiny-http sends itself: called with the status code and a
/// short English explanation, returns a content type and a body.
pub type ErrorBody = fn(status: u16, reason: &str) -> (&'static str, String);

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::http_with_limits(addr, Limits::default())
    }

    /// Shortcut for a simple server on a specific address, with timeouts and size limits.
    pub fn http_with_limits<A>(
        addr: A,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
            limits,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
            limits: Limits::default(),
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener_with_limits(listener, config.ssl, config.limits)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, Limits::default())
    }

    /// Same as `from_listener()`, with timeouts and size limits.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        if ssl_config.is_some() {
            return Err("This copy of tiny-http has no SSL support".into());
        }

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);
        let connections = ConnectionCount::default();

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        thread::Builder::new().spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();
            let mut backoff = AcceptBackoff::default();

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                if let Some(max) = limits.max_connections {
                    // at the cap with no connection idle or reading a head, new connections
                    // wait in the listen queue
                    if !inside_connections.wait_for_room(max, Duration::from_millis(100)) {
                        continue;
                    }
                }

                let sock = match server.accept() {
                    Ok((sock, _)) => {
                        if backoff.on_success() {
                            log::info!("Accepting new clients again");
                        }
                        sock
                    }
                    Err(e) => {
                        match backoff.on_error(&e) {
                            AfterAcceptError::Retry => {
                                log::debug!("Error accepting new client: {}", e)
                            }
                            AfterAcceptError::Pause { delay, first } => {
                                if first {
                                    log::error!(
                                        "Error accepting new client: {} (retrying until it works)",
                                        e
                                    );
                                }
                                thread::sleep(delay);
                            }
                        }
                        continue;
                    }
                };

                if let Some(max) = limits.max_connections {
                    // at the cap, the connection idle or reading a head the longest is closed
                    // to make room; if there is none any more, the new one waits for room here
                    while !inside_connections.make_room(max, Duration::from_millis(100)) {
                        if inside_close_trigger.load(Relaxed) {
                            break;
                        }
                    }
                }
                if inside_close_trigger.load(Relaxed) {
                    // the server's own connection that unblocks `accept()`: no room is made for it
                    break;
                }

                use util::RefinedTcpStream;
                let (read_closable, write_closable) = RefinedTcpStream::new(sock);
                let guard = inside_connections.add(read_closable.socket());
                if limits.write_timeout.is_some() {
                    if let Err(e) = write_closable.set_write_timeout(limits.write_timeout) {
                        log::warn!("Cannot set the write timeout of a connection: {}", e);
                    }
                }
                let client = ClientConnection::new(write_closable, read_closable, limits, guard);

                let messages = inside_messages.clone();
                let mut client = Some(client);
                tasks_pool.spawn(Box::new(move || {
                    if let Some(client) = client.take() {
                        client.serve(|rq| messages.push(rq.into()));
                    }
                }));
            }
            log::debug!("Terminating accept thread");
        })?;

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server: connections accepted
    /// and not closed yet.
    pub fn num_connections(&self) -> usize {
        self.connections.get()
    }

    /// Returns how many connections were closed, since the server started, to make room for a
    /// new one at `Limits::max_connections` (idle ones and ones reading a head).
    pub fn connections_closed_to_make_room(&self) -> u64 {
        self.connections.closed_to_make_room()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
