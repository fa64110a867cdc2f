use std::io::Error as IoError;
use std::io::{self, Cursor, ErrorKind, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use crate::util::{EqualReader, FusedReader};
use crate::{HTTPVersion, Header, Method, Response, ResponseBox, StatusCode};
use chunked_transfer::Decoder;

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), they are
/// handed out one at a time: the next request of a connection is read only once the response to
/// the previous one has been written. If the body of a request was not read to its end, the
/// connection is closed after the response.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // if this writer is empty, then the request has been answered
    response_writer: Option<Box<dyn Write + Send + 'static>>,

    remote_addr: Option<SocketAddr>,

    // true if HTTPS, false if HTTP
    secure: bool,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // true if a `100 Continue` response must be sent when `as_reader()` is called
    must_send_continue: bool,

    // If Some, a message must be sent after responding
    notify_when_responded: Option<Sender<Responded>>,

    // set once the body has been read to its end
    body_complete: Arc<AtomicBool>,

    // called if the client goes away before the response is written; emptied when responding
    client_gone: Arc<Mutex<Option<ClientGoneCallback>>>,

    // true if the body reader is the rest of the stream (`Connection: upgrade` without framing)
    raw_stream: bool,
}

pub(crate) type ClientGoneCallback = Box<dyn FnOnce() + Send + 'static>;

/// What the connection's thread is told once the application is done with a request.
pub(crate) enum Responded {
    /// the response has been written
    Done,
    /// the connection's thread must write this response to this request (which has no sender
    /// any more), then count it as done: `Request::respond_in_background`
    InBackground(Box<Request>, ResponseBox),
}

struct NotifyOnDrop<R> {
    sender: Sender<Responded>,
    inner: R,
}

impl<R: Read> Read for NotifyOnDrop<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
impl<R: Write> Write for NotifyOnDrop<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
impl<R> Drop for NotifyOnDrop<R> {
    fn drop(&mut self) {
        self.sender.send(Responded::Done).ok();
    }
}

/// Error that can happen when building a `Request` object.
#[derive(Debug)]
pub enum RequestCreationError {
    /// The client sent an `Expect` header that was not recognized by tiny-http.
    ExpectationFailed,

    /// A `Content-Length` header is not a decimal number, or two of them differ.
    BadContentLength,

    /// The request has both a `Content-Length` and a `Transfer-Encoding` header.
    ContentLengthAndTransferEncoding,

    /// The request has more than one `Transfer-Encoding` header.
    RepeatedTransferEncoding,

    /// The `Transfer-Encoding` is not `chunked` alone.
    UnsupportedTransferEncoding,

    /// Error while reading data from the socket during the creation of the `Request`.
    CreationIoError(IoError),
}

impl From<IoError> for RequestCreationError {
    fn from(err: IoError) -> RequestCreationError {
        RequestCreationError::CreationIoError(err)
    }
}

/// Builds a new request.
///
/// After the request line and headers have been read from the socket, a new `Request` object
/// is built.
///
/// You must pass a `Read` that will allow the `Request` object to read from the incoming data.
/// It is the responsibility of the `Request` to read only the data of the request and not further.
///
/// The `Write` object will be used by the `Request` to write the response.
#[allow(clippy::too_many_arguments)]
pub fn new_request<R, W>(
    secure: bool,
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    mut source_data: R,
    writer: W,
) -> Result<Request, RequestCreationError>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    // finding the transfer-encoding header: there must be one at most
    let mut transfer_encodings = headers
        .iter()
        .filter(|h: &&Header| h.field.equiv("Transfer-Encoding"));
    let transfer_encoding = transfer_encodings.next().map(|h| h.value.clone());
    if transfer_encodings.next().is_some() {
        return Err(RequestCreationError::RepeatedTransferEncoding);
    }

    // finding the content-length header: it must be a decimal number, and the same in all
    // content-length headers, or the request cannot be delimited
    let mut content_length = None;
    for h in headers.iter().filter(|h| h.field.equiv("Content-Length")) {
        let value = h.value.as_str();
        let length: Option<usize> = if value.bytes().all(|b| b.is_ascii_digit()) {
            FromStr::from_str(value).ok()
        } else {
            None
        };
        match (length, content_length) {
            (Some(length), None) => content_length = Some(length),
            (Some(length), Some(previous)) if length == previous => (),
            _ => return Err(RequestCreationError::BadContentLength),
        }
    }
    if let Some(transfer_encoding) = &transfer_encoding {
        // a proxy in front may delimit the body by the one, and we by the other (request
        // smuggling): RFC 9112 6.3 allows to reject the request, and 6.1 to close after it
        if content_length.is_some() {
            return Err(RequestCreationError::ContentLengthAndTransferEncoding);
        }
        // only chunked is decoded: anything else (`gzip, chunked`, `identity`...) cannot be
        // delimited or would be handed out still encoded (RFC 9112 6.1: 501)
        if !transfer_encoding.as_str().eq_ignore_ascii_case("chunked") {
            return Err(RequestCreationError::UnsupportedTransferEncoding);
        }
    }

    // true if the client sent a `Expect: 100-continue` header
    let expects_continue = {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Expect"))
            .map(|h| h.value.as_str())
        {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            _ => return Err(RequestCreationError::ExpectationFailed),
        }
    };

    // true if the client sent a `Connection: upgrade` header and no framing: the rest of the
    // stream is the body, for `upgrade()`; with a `Content-Length` or a `Transfer-Encoding`, the
    // body is framed by them as in any other request (RFC 9112 6.3)
    let raw_stream = content_length.is_none() && transfer_encoding.is_none() && {
        match headers
            .iter()
            .find(|h: &&Header| h.field.equiv("Connection"))
            .map(|h| h.value.as_str())
        {
            Some(v) if v.to_ascii_lowercase().contains("upgrade") => true,
            _ => false,
        }
    };

    // we wrap `source_data` around a reading whose nature depends on the transfer-encoding and
    // content-length headers; `body_complete` is set once the body has been read from `source_data`
    let mut body_complete = Arc::new(AtomicBool::new(true));
    let reader = if raw_stream {
        // `Connection: upgrade` without framing: keeping the whole reader
        body_complete = Arc::new(AtomicBool::new(false));
        Box::new(source_data) as Box<dyn Read + Send + 'static>
    } else if let Some(content_length) = content_length {
        if content_length == 0 {
            Box::new(io::empty()) as Box<dyn Read + Send + 'static>
        } else if content_length <= 1024 && !expects_continue {
            // if the content-length is small enough, we just read everything into a buffer

            let mut buffer = vec![0; content_length];
            let mut offset = 0;

            while offset != content_length {
                let read = source_data.read(&mut buffer[offset..])?;
                if read == 0 {
                    // the socket returned EOF, but we were before the expected content-length
                    // aborting
                    let info = "Connection has been closed before we received enough data";
                    let err = IoError::new(ErrorKind::ConnectionAborted, info);
                    return Err(RequestCreationError::CreationIoError(err));
                }

                offset += read;
            }

            Box::new(Cursor::new(buffer)) as Box<dyn Read + Send + 'static>
        } else {
            let (data_reader, finished) = EqualReader::new(source_data, content_length);
            body_complete = finished;
            Box::new(data_reader) as Box<dyn Read + Send + 'static>
        }
    } else if transfer_encoding.is_some() {
        // `Transfer-Encoding: chunked`, checked above
        let (data_reader, finished) = FusedReader::new(Decoder::new(source_data));
        body_complete = finished;
        Box::new(data_reader) as Box<dyn Read + Send + 'static>
    } else {
        // if we have neither a Content-Length nor a Transfer-Encoding,
        // assuming that we have no data
        // TODO: could also be multipart/byteranges
        Box::new(io::empty()) as Box<dyn Read + Send + 'static>
    };

    Ok(Request {
        data_reader: Some(reader),
        response_writer: Some(Box::new(writer) as Box<dyn Write + Send + 'static>),
        remote_addr,
        secure,
        method,
        path,
        http_version: version,
        headers,
        body_length: content_length,
        must_send_continue: expects_continue,
        notify_when_responded: None,
        body_complete,
        client_gone: Arc::new(Mutex::new(None)),
        raw_stream,
    })
}

impl Request {
    /// Returns true if the request was made through HTTPS.
    #[inline]
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes.
    ///
    /// Returns `None` if the length is unknown.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    ///
    /// Note that this is gathered from the socket. If you receive the request from a proxy,
    /// this function will return the address of the proxy and not the address of the actual
    /// user.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Sends a response with a `Connection: upgrade` header, then turns the `Request` into a `Stream`.
    ///
    /// The main purpose of this function is to support websockets.
    /// If you detect that the request wants to use some kind of protocol upgrade, you can
    ///  call this function to obtain full control of the socket stream.
    ///
    /// If you call this on a non-websocket request, tiny-http will wait until this `Stream` object
    ///  is destroyed before continuing to read or write on the socket. Therefore you should always
    ///  destroy it as soon as possible.
    pub fn upgrade<R: Read>(
        mut self,
        protocol: &str,
        response: Response<R>,
    ) -> Box<dyn ReadWrite + Send> {
        use crate::util::CustomStream;

        self.forget_client_gone();

        response
            .raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                false,
                Some(protocol),
            )
            .ok(); // TODO: unused result

        self.response_writer.as_mut().unwrap().flush().ok(); // TODO: unused result

        let stream = CustomStream::new(self.extract_reader_impl(), self.extract_writer_impl());
        if let Some(sender) = self.notify_when_responded.take() {
            let stream = NotifyOnDrop {
                sender,
                inner: stream,
            };
            Box::new(stream) as Box<dyn ReadWrite + Send>
        } else {
            Box::new(stream) as Box<dyn ReadWrite + Send>
        }
    }

    /// Allows to read the body of the request.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::io::Read;
    /// # fn get_content_type(_: &tiny_http::Request) -> &'static str { "" }
    /// # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
    /// let mut request = server.recv().unwrap();
    ///
    /// if get_content_type(&request) == "application/json" {
    ///     let mut content = String::new();
    ///     request.as_reader().read_to_string(&mut content).unwrap();
    /// }
    /// ```
    ///
    /// If the client sent a `Expect: 100-continue` header with the request, calling this
    ///  function will send back a `100 Continue` response (and nothing else does: a request
    ///  answered without calling it never gets one).
    ///
    /// If the server has a `read_timeout` (see [`Limits`](crate::Limits)), reads fail with
    ///  `ErrorKind::TimedOut` once the body has taken longer than that since the end of the head.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        if self.must_send_continue {
            let msg = Response::new_empty(StatusCode(100));
            msg.raw_print(
                self.response_writer.as_mut().unwrap().by_ref(),
                self.http_version.clone(),
                &self.headers,
                true,
                None,
            )
            .ok();
            self.response_writer.as_mut().unwrap().flush().ok();
            self.must_send_continue = false;
        }

        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// Note that the destruction of the `Writer` object may trigger
    /// some events. For exemple if a client has sent multiple requests and the requests
    /// have been processed in parallel, the destruction of a writer will trigger
    /// the writing of the next response.
    /// Therefore you should always destroy the `Writer` as soon as possible.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        self.forget_client_gone();
        let writer = self.extract_writer_impl();
        if let Some(sender) = self.notify_when_responded.take() {
            let writer = NotifyOnDrop {
                sender,
                inner: writer,
            };
            Box::new(writer) as Box<dyn Write + Send + 'static>
        } else {
            writer
        }
    }

    /// Extract the response `Writer` object from the Request, dropping this `Writer` has the same side effects
    /// as the object returned by `into_writer` above.
    ///
    /// This may only be called once on a single request.
    fn extract_writer_impl(&mut self) -> Box<dyn Write + Send + 'static> {
        use std::mem;

        assert!(self.response_writer.is_some());

        let mut writer = None;
        mem::swap(&mut self.response_writer, &mut writer);
        writer.unwrap()
    }

    /// Extract the body `Reader` object from the Request.
    ///
    /// This may only be called once on a single request.
    fn extract_reader_impl(&mut self) -> Box<dyn Read + Send + 'static> {
        use std::mem;

        assert!(self.data_reader.is_some());

        let mut reader = None;
        mem::swap(&mut self.data_reader, &mut reader);
        reader.unwrap()
    }

    /// Sends a response to this request.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        self.forget_client_gone();
        let res = self.respond_impl(response);
        if let Some(sender) = self.notify_when_responded.take() {
            sender.send(Responded::Done).ok();
        }
        res
    }

    /// Hands the response to the connection's own thread, which writes it, and returns at once.
    ///
    /// `respond()` writes on the calling thread and blocks while the client does not read (up to
    /// the `write_timeout` of [`Limits`](crate::Limits) per write): a few clients that send
    /// requests and never read their responses can hold every thread of an application that
    /// answers on a fixed number of threads. With this method, only the connection's thread
    /// (which waits for the response anyway before it reads the next request) waits for such a
    /// client. The response is written as by `respond()` (the same headers, a `HEAD` request
    /// gets no body, the body is dropped after the response is written); an error writing it
    /// (a timeout, a client gone) closes the connection and is otherwise not reported.
    ///
    /// The callback of `on_client_gone` is removed at once, as by `respond()`. A request made
    /// with [`TestRequest`](crate::TestRequest) has no connection thread: the response is
    /// written before this returns.
    pub fn respond_in_background(mut self, response: ResponseBox) {
        self.forget_client_gone();
        let sender = match self.notify_when_responded.take() {
            Some(sender) => sender,
            None => {
                self.respond_impl(response).ok();
                return;
            }
        };
        if let Err(unsent) = sender.send(Responded::InBackground(Box::new(self), response)) {
            // the connection's thread is gone (it cannot be while it waits): write it here
            if let Responded::InBackground(request, response) = unsent.0 {
                request.respond(response).ok();
            }
        }
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), IoError>
    where
        R: Read,
    {
        let mut writer = self.extract_writer_impl();

        let do_not_send_body = self.method == Method::Head;

        Self::ignore_client_closing_errors(response.raw_print(
            writer.by_ref(),
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            None,
        ))?;

        Self::ignore_client_closing_errors(writer.flush())
    }

    fn ignore_client_closing_errors(result: io::Result<()>) -> io::Result<()> {
        result.or_else(|err| match err.kind() {
            ErrorKind::BrokenPipe => Ok(()),
            ErrorKind::ConnectionAborted => Ok(()),
            ErrorKind::ConnectionRefused => Ok(()),
            ErrorKind::ConnectionReset => Ok(()),
            _ => Err(err),
        })
    }

    pub(crate) fn with_notify_sender(mut self, sender: Sender<Responded>) -> Self {
        self.notify_when_responded = Some(sender);
        self
    }

    /// Calls `callback` if the client closes or resets the connection while the request waits
    /// for its response, so that long work done for it can stop.
    ///
    /// The connection is watched only once the body has been read to its end (a request with no
    /// body: at once) and until another request arrives on it (a pipelining client). A client
    /// that shuts down only its sending side counts as gone.
    ///
    /// `callback` is called at most once, on tiny-http's thread for the connection, and never once
    /// `respond`, `respond_in_background`, `into_writer` or `upgrade` has been called (they wait
    /// for a callback that is running to return, so it must be short and must not wait for the
    /// request to be answered).
    /// Registering again replaces the previous callback. It is detected within a fraction of a
    /// second; requests made with [`TestRequest`](crate::TestRequest) never call it.
    pub fn on_client_gone<F>(&mut self, callback: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let mut client_gone = self.client_gone.lock().unwrap_or_else(|e| e.into_inner());
        *client_gone = Some(Box::new(callback));
    }

    fn forget_client_gone(&mut self) {
        // waits for a running callback to return
        let mut client_gone = self.client_gone.lock().unwrap_or_else(|e| e.into_inner());
        client_gone.take();
    }

    /// Drops the request without answering it: for a connection that is being closed.
    pub(crate) fn discard(mut self) {
        self.response_writer = None;
    }

    /// The flag set once the body has been read to its end.
    pub(crate) fn body_complete(&self) -> Arc<AtomicBool> {
        self.body_complete.clone()
    }

    /// True if the body reader is the rest of the stream: `Connection: upgrade` without a
    /// `Content-Length` or a `Transfer-Encoding`.
    pub(crate) fn raw_stream(&self) -> bool {
        self.raw_stream
    }

    /// The callback registered by `on_client_gone`, emptied when responding.
    pub(crate) fn client_gone(&self) -> Arc<Mutex<Option<ClientGoneCallback>>> {
        self.client_gone.clone()
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.response_writer.is_some() {
            self.forget_client_gone();
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
            if let Some(sender) = self.notify_when_responded.take() {
                sender.send(Responded::Done).ok();
            }
        }
    }
}

/// Dummy trait that regroups the `Read` and `Write` traits.
///
/// Automatically implemented on all types that implement both `Read` and `Write`.
pub trait ReadWrite: Read + Write {}
impl<T> ReadWrite for T where T: Read + Write {}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
