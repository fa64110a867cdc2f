use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Creates a server and a client connected to the server.
pub fn new_one_server_one_client() -> (tiny_http::Server, TcpStream) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (server, client)
}

/// Creates a "hello world" server with a client connected to the server.
///
/// The server will automatically close after 3 seconds.
pub fn new_client_to_hello_world_server() -> TcpStream {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();

    thread::spawn(move || {
        let mut cycles = 3 * 1000 / 20;

        loop {
            if let Some(rq) = server.try_recv().unwrap() {
                let response = tiny_http::Response::from_string("hello world".to_string());
                rq.respond(response).unwrap();
            }

            thread::sleep(Duration::from_millis(20));

            cycles -= 1;
            if cycles == 0 {
                break;
            }
        }
    });

    client
}

/// Creates a server with `limits` on 127.0.0.1 and a client connected to it.
pub fn new_server_with_limits(limits: tiny_http::Limits) -> (tiny_http::Server, TcpStream) {
    let server = tiny_http::Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let client = connect(&server);
    (server, client)
}

/// Connects a new client to `server`.
pub fn connect(server: &tiny_http::Server) -> TcpStream {
    TcpStream::connect(server.server_addr().to_ip().unwrap()).unwrap()
}

/// Reads until the server closes the connection, at most `within`. Panics if it does not close.
pub fn read_until_closed(client: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut content = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the connection is still open after {:?}",
            within
        );
        client.set_read_timeout(Some(left)).unwrap();
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => content.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection is still open after {:?}: {}", within, e),
        }
    }
    String::from_utf8_lossy(&content).into_owned()
}

/// Reads one response (head and `Content-Length` body), at most `within`.
pub fn read_response(client: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut content = Vec::new();
    let mut byte = [0; 1];
    let mut body_length = None;
    while !matches!(body_length, Some((head, length)) if content.len() >= head + length) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no complete response within {:?}", within);
        client.set_read_timeout(Some(left)).unwrap();
        match client.read(&mut byte) {
            Ok(1) => content.push(byte[0]),
            other => panic!(
                "no complete response within {:?} ({:?}, got {:?})",
                within,
                other,
                String::from_utf8_lossy(&content)
            ),
        }
        if body_length.is_none() && content.ends_with(b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&content).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |l| l.trim().parse().unwrap());
            body_length = Some((content.len(), length));
        }
    }
    String::from_utf8_lossy(&content).into_owned()
}

/// Answers every request of `server` with "hello" until dropped.
pub struct HelloServer {
    pub server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HelloServer {
    pub fn new(server: tiny_http::Server) -> HelloServer {
        let server = Arc::new(server);
        let inner = server.clone();
        let thread = thread::spawn(move || {
            for rq in inner.incoming_requests() {
                rq.respond(tiny_http::Response::from_string("hello")).ok();
            }
        });
        HelloServer {
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
