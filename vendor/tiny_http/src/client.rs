use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{is_ows, HTTPVersion, Method};
use crate::request::{ClientGoneCallback, Responded};
use crate::util::{ConnectionGuard, RefinedTcpStream, Socket};
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Header, Limits, Request, Response};

/// How long the connection's thread waits for the client, or for a response, between checks of
/// the other while the application holds a request.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// When a connection is closed with a request body left unread, at most this much of what the
/// client still sends is read and thrown away, for at most `LINGER_TIME`: closing a socket with
/// unread data resets the connection, and the client may then lose the response.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // the socket under both halves, for its read deadline and shutting it down
    socket: Arc<Socket>,

    // the connection in the server's count, which knows whether it is idle
    guard: ConnectionGuard,

    limits: Limits,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// a `Content-Length` that is not a decimal number, or two that differ
    BadContentLength(HTTPVersion),
    /// both `Content-Length` and `Transfer-Encoding`
    ContentLengthAndTransferEncoding(HTTPVersion),
    /// two `Transfer-Encoding` headers
    RepeatedTransferEncoding(HTTPVersion),
    /// a `Transfer-Encoding` other than `chunked`
    UnsupportedTransferEncoding(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// HTTP/2.0 or above
    UnsupportedVersion,
    /// the request line is longer than `max_url_bytes`
    UriTooLong(usize),
    /// the request head is larger than `max_head_bytes`
    HeadTooLarge(usize),
    ReadIoError(IoError),
}

/// Error that can happen when reading a line of the request head.
enum LineError {
    TooLong,
    NotAscii,
    Io(IoError),
}

/// What the client does while the application holds its request.
enum ClientState {
    Waiting,
    Sending,
    Gone,
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        guard: ConnectionGuard,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let socket = read_socket.socket();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            socket,
            guard,
            limits,
        }
    }

    /// Reads the requests of the connection and hands them to `push` one at a time: the next
    /// request is read once the response to the previous one has been written. Returns when the
    /// connection is to be closed.
    pub fn serve<F>(mut self, mut push: F)
    where
        F: FnMut(Request),
    {
        let (sender, receiver) = mpsc::channel();
        while let Some(rq) = self.next() {
            let body_complete = rq.body_complete();
            let client_gone = rq.client_gone();
            push(rq.with_notify_sender(sender.clone()));
            self.wait_for_response(&receiver, &body_complete, &client_gone);
            // what the application wrote through `into_writer()` may still be buffered: the
            // response is written, and the connection can be idle, once it is flushed
            if let Some(mut writer) = self.sink.next() {
                writer.flush().ok();
            }

            if self.socket.write_failed() {
                return;
            }
            if !body_complete.load(Ordering::Acquire) {
                // we don't know where the next request would start
                self.linger();
                return;
            }
        }
    }

    /// Waits until the response to the request handed out has been written, or writes it if the
    /// application handed it back (`Request::respond_in_background`). Meanwhile, once its body
    /// has been read, calls the callback registered with `Request::on_client_gone` if the client
    /// closes the connection.
    fn wait_for_response(
        &mut self,
        responded: &Receiver<Responded>,
        body_complete: &AtomicBool,
        client_gone: &Mutex<Option<ClientGoneCallback>>,
    ) {
        let mut stop_watching = false;
        loop {
            let watching = !stop_watching
                && body_complete.load(Ordering::Acquire)
                && client_gone
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some();

            if !watching {
                match responded.recv_timeout(WATCH_INTERVAL) {
                    // the body may be read, or a callback registered, later
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(message) => return write_in_background(message),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }

            match responded.try_recv() {
                Err(TryRecvError::Empty) => (),
                Ok(message) => return write_in_background(message),
                Err(TryRecvError::Disconnected) => return,
            }
            match self.client_state() {
                ClientState::Waiting => (),
                // a pipelined request: the client is still there
                ClientState::Sending => stop_watching = true,
                ClientState::Gone => {
                    stop_watching = true;
                    // the lock makes `respond()` wait for the callback
                    let mut client_gone = client_gone.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(callback) = client_gone.take() {
                        if catch_unwind(AssertUnwindSafe(callback)).is_err() {
                            log::error!("The callback for a client gone panicked");
                        }
                    }
                }
            }
        }
    }

    /// Waits at most `WATCH_INTERVAL` for the client to send something or to close the connection.
    /// Only called once the request body has been read, when nothing else reads the socket.
    fn client_state(&mut self) -> ClientState {
        let reader = match self.next_header_source.try_turn() {
            Some(reader) => reader,
            None => return ClientState::Waiting,
        };
        if !reader.buffer().is_empty() {
            return ClientState::Sending;
        }

        self.socket.set_read_deadline(Some(WATCH_INTERVAL));
        let state = match reader.fill_buf() {
            Ok([]) => ClientState::Gone,
            Ok(_) => ClientState::Sending,
            Err(ref e)
                if e.kind() == ErrorKind::TimedOut
                    || e.kind() == ErrorKind::WouldBlock
                    || e.kind() == ErrorKind::Interrupted =>
            {
                ClientState::Waiting
            }
            Err(_) => ClientState::Gone,
        };
        self.socket.set_read_deadline(None);
        state
    }

    /// Waits for the first byte of the next request, at most `idle_timeout`. Returns false if
    /// none comes, or if the connection was closed meanwhile to make room for a new one.
    fn wait_for_request(&mut self) -> bool {
        self.socket.set_read_deadline(self.limits.idle_timeout);
        let reader = self.next_header_source.wait_turn();
        // a pipelined request already in the buffer: its head has begun, it is never idle
        if reader.buffer().is_empty() {
            // idle: at the connection cap, the server may close the connection (shut its socket
            // down, which ends this read) to make room for a new one
            self.guard.set_idle();
            let received = match reader.fill_buf() {
                Ok(buf) => !buf.is_empty(),
                Err(_) => false,
            };
            if !received {
                return false;
            }
        }
        // from the first byte until the request is handed out, the connection may still be
        // closed to make room, after the idle ones; if it was closed already, a byte that came
        // at the same time is not read: the client sees the connection closed as after an idle
        // timeout
        if !self.guard.start_head() {
            return false;
        }

        // the head must be complete within `read_timeout` from its first byte
        self.socket.set_read_deadline(self.limits.read_timeout);
        true
    }

    /// Closes the connection after a response: flushes it, shuts the writing side, and reads
    /// and throws away at most `LINGER_BYTES` of what the client still sends, for at most
    /// `LINGER_TIME`, so that the client reads the response rather than a reset.
    fn linger(&mut self) {
        // what the application wrote through `into_writer()` may still be buffered
        if let Some(mut writer) = self.sink.next() {
            writer.flush().ok();
        }
        self.socket.shutdown(Shutdown::Write).ok();

        self.socket.set_read_deadline(Some(LINGER_TIME));
        let mut buf = [0; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match self.next_header_source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        self.no_more_requests = true;
    }

    /// Sends a response that tiny-http makes itself (the request is wrong, or exceeds a limit),
    /// then closes the connection.
    fn send_error(&mut self, status: u16, version: HTTPVersion, reason: &str) {
        let mut response = Response::from_data(Vec::new());
        if let Some(error_body) = self.limits.error_body {
            let (content_type, body) = error_body(status, reason);
            response = Response::from_data(body);
            if let Ok(header) = Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
                response.add_header(header);
            }
        }

        if let Some(mut writer) = self.sink.next() {
            let response = response.with_status_code(status);
            response
                .raw_print(writer.by_ref(), version, &[], false, None)
                .ok();
            writer.flush().ok();
        }
        self.linger();
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line. Reads at most `max_bytes` bytes, `CRLF` included.
    fn read_next_line(&mut self, max_bytes: usize) -> Result<AsciiString, LineError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;

        loop {
            if buf.len() >= max_bytes {
                return Err(LineError::TooLong);
            }

            let byte = self.next_header_source.wait_turn().bytes().next();

            let byte = match byte {
                Some(b) => b.map_err(LineError::Io)?,
                None => {
                    let err = IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF");
                    return Err(LineError::Io(err));
                }
            };

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf).map_err(|_| LineError::NotAscii);
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // bytes of the head still allowed, the CRLF of each line included
        let max_head = self.limits.max_head_bytes.unwrap_or(usize::MAX);
        let mut head_left = max_head;

        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let max_url = self.limits.max_url_bytes.unwrap_or(usize::MAX);
                let max_line = max_url.saturating_add(2);
                let line = match self.read_next_line(max_line.min(head_left)) {
                    Ok(line) => line,
                    Err(LineError::TooLong) if max_line <= head_left => {
                        return Err(ReadError::UriTooLong(max_url))
                    }
                    Err(LineError::TooLong) => return Err(ReadError::HeadTooLarge(max_head)),
                    Err(LineError::NotAscii) => return Err(ReadError::WrongRequestLine),
                    Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
                };
                head_left -= line.len() + 2;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // checking HTTP version
            if version > (1, 1) {
                return Err(ReadError::UnsupportedVersion);
            }

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = match self.read_next_line(head_left) {
                        Ok(line) => line,
                        Err(LineError::TooLong) => return Err(ReadError::HeadTooLarge(max_head)),
                        Err(LineError::NotAscii) => return Err(ReadError::WrongHeader(version)),
                        Err(LineError::Io(e)) => return Err(ReadError::ReadIoError(e)),
                    };
                    head_left -= line.len() + 2;

                    if line.is_empty() {
                        break;
                    };
                    // RFC 9112 5.2 and 2.2: a line folded onto the previous one (obs-fold),
                    // whitespace before the first header, a bare CR or LF, or a NUL may be read
                    // otherwise by a proxy in front (request smuggling)
                    let line = line.as_str();
                    if line.starts_with(is_ows) || line.contains(['\r', '\n', '\0']) {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.trim_end_matches(is_ows)) {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // the body must be read within `read_timeout` from the end of the head
        self.socket.set_read_deadline(self.limits.read_timeout);

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            false,
            method,
            path,
            version.clone(),
            headers,
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
                request::RequestCreationError::BadContentLength => {
                    ReadError::BadContentLength(version)
                }
                request::RequestCreationError::ContentLengthAndTransferEncoding => {
                    ReadError::ContentLengthAndTransferEncoding(version)
                }
                request::RequestCreationError::RepeatedTransferEncoding => {
                    ReadError::RepeatedTransferEncoding(version)
                }
                request::RequestCreationError::UnsupportedTransferEncoding => {
                    ReadError::UnsupportedTransferEncoding(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }

    /// Answers a request that could not be read, if an answer is due.
    fn fail(&mut self, err: ReadError) {
        let (status, version, reason) = match err {
            ReadError::WrongRequestLine => (
                400,
                HTTPVersion(1, 1),
                "the request line is not valid".to_owned(),
            ),
            ReadError::WrongHeader(ver) => (400, ver, "a header line is not valid".to_owned()),
            ReadError::BadContentLength(ver) => (
                400,
                ver,
                "the Content-Length header is not a decimal number, or two of them differ"
                    .to_owned(),
            ),
            ReadError::ContentLengthAndTransferEncoding(ver) => (
                400,
                ver,
                "the request has both a Content-Length and a Transfer-Encoding header".to_owned(),
            ),
            ReadError::RepeatedTransferEncoding(ver) => (
                400,
                ver,
                "the request has more than one Transfer-Encoding header".to_owned(),
            ),
            ReadError::UnsupportedTransferEncoding(ver) => (
                501,
                ver,
                "only \"Transfer-Encoding: chunked\" is supported".to_owned(),
            ),
            ReadError::ExpectationFailed(ver) => (
                417,
                ver,
                "only \"Expect: 100-continue\" is supported".to_owned(),
            ),
            ReadError::UnsupportedVersion => (
                505,
                HTTPVersion(1, 1),
                "only HTTP versions 1.0 and 1.1 are supported".to_owned(),
            ),
            ReadError::UriTooLong(max) => (
                414,
                HTTPVersion(1, 1),
                format!("the request line is longer than {} bytes", max),
            ),
            ReadError::HeadTooLarge(max) => (
                431,
                HTTPVersion(1, 1),
                format!("the request head is larger than {} bytes", max),
            ),
            ReadError::ReadIoError(ref err) if err.kind() == ErrorKind::TimedOut => {
                let timeout = self.limits.read_timeout.unwrap_or_default();
                (
                    408,
                    HTTPVersion(1, 1),
                    format!(
                        "the request was not received within {} ms",
                        timeout.as_millis()
                    ),
                )
            }
            // the client went away
            ReadError::ReadIoError(_) => return,
        };
        // we don't know where the next request would start, so we have to close
        self.send_error(status, version, &reason);
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        if !self.wait_for_request() {
            return None; // closing the connection silently: the client is idle or gone
        }

        let rq = match self.read() {
            Ok(rq) => rq,
            Err(err) => {
                self.fail(err);
                return None;
            }
        };

        // from now on the application holds the request, and the connection is never closed to
        // make room; if it was closed while the head was read, the request is dropped unanswered
        if !self.guard.hand_out() {
            rq.discard();
            return None;
        }

        // updating the status of the connection
        let connection_header = rq
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str());

        let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

        if rq.raw_stream() {
            // the rest of the stream is the application's: no deadline
            self.socket.set_read_deadline(None);
        }

        match lowercase {
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
            Some(ref val)
                if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
            {
                self.no_more_requests = true
            }
            None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        // returning the request
        Some(rq)
    }
}

/// Writes the response that the application handed back to the connection's thread, if any.
/// The request has no sender any more, and its callback for a client gone was removed before it
/// was handed back; its body is dropped once the response is written.
fn write_in_background(message: Responded) {
    if let Responded::InBackground(request, response) = message {
        // a failed write marks the socket, and the connection is closed after it
        request.respond(response).ok();
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
