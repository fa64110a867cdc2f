//! Tests of `Request::respond_in_background`: the connection's own thread writes the response.

extern crate tiny_http;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Response, Server, TestRequest};

#[allow(dead_code)]
mod support;

use support::{connect, read_response};

/// Larger than what the socket buffers of a loopback connection hold (a few MB each way), so
/// that writing it blocks when the client does not read.
const BIG: usize = 64 * 1024 * 1024;

/// Answers `/big` with `BIG` bytes and anything else with "hello", on `threads` threads that
/// all use `respond_in_background`, until the server is unblocked.
fn serve_in_background(server: &Arc<Server>, threads: usize) -> Vec<thread::JoinHandle<()>> {
    (0..threads)
        .map(|_| {
            let server = server.clone();
            thread::spawn(move || {
                for rq in server.incoming_requests() {
                    let response = if rq.url() == "/big" {
                        let body = std::io::repeat(b'x').take(BIG as u64);
                        Response::new(200.into(), vec![], body, Some(BIG), None).boxed()
                    } else {
                        Response::from_string("hello").boxed()
                    };
                    rq.respond_in_background(response);
                }
            })
        })
        .collect()
}

#[test]
fn clients_that_never_read_do_not_hold_the_application_threads() {
    let limits = Limits {
        write_timeout: Some(Duration::from_secs(2)),
        ..Limits::default()
    };
    let server = Arc::new(Server::http_with_limits("127.0.0.1:0", limits).unwrap());
    let app = serve_in_background(&server, 2);

    // 4 clients pipeline requests for large responses and never read; each connection is closed
    // by its write timeout, and they connect again until the end of the test
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let addr = server.server_addr().to_ip().unwrap();
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut client = match std::net::TcpStream::connect(addr) {
                        Ok(client) => client,
                        Err(_) => return,
                    };
                    client
                        .set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    for _ in 0..100 {
                        if stop.load(Ordering::Relaxed)
                            || client
                                .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
                                .is_err()
                        {
                            break;
                        }
                    }
                    // hold the connection without reading until the server closes it
                    client
                        .set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(5)
                    {
                        // a peek does not consume: the receive buffer stays full
                        match client.peek(&mut [0; 1]) {
                            Ok(0) => break,
                            Err(e)
                                if e.kind() != std::io::ErrorKind::WouldBlock
                                    && e.kind() != std::io::ErrorKind::TimedOut =>
                            {
                                break
                            }
                            _ => thread::sleep(Duration::from_millis(100)),
                        }
                    }
                }
            })
        })
        .collect();

    // throughout 2 write timeouts, another client is answered promptly
    let start = Instant::now();
    let mut answered = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let mut client = connect(&server);
        let asked = Instant::now();
        write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let response = read_response(&mut client, Duration::from_secs(10));
        assert!(response.ends_with("hello"), "{}", response);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "answered after {:?}",
            asked.elapsed()
        );
        answered += 1;
        thread::sleep(Duration::from_millis(100));
    }
    assert!(answered > 5);

    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    server.unblock();
    server.unblock();
    for thread in app {
        thread.join().unwrap();
    }
}

#[test]
fn pipelined_requests_answered_in_background_come_in_order() {
    let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
    let app = serve_in_background(&server, 2);

    let mut client = connect(&server);
    for _ in 0..3 {
        write!(client, "HEAD /big HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    }
    for _ in 0..3 {
        // a HEAD request gets no body, as with `respond()`
        let mut head = Vec::new();
        let mut byte = [0; 1];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        while !head.ends_with(b"\r\n\r\n") {
            client.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{}", head);
        let response = read_response(&mut client, Duration::from_secs(5));
        assert!(response.ends_with("hello"), "{}", response);
    }

    server.unblock();
    server.unblock();
    for thread in app {
        thread.join().unwrap();
    }
}

#[test]
fn test_request_is_answered_before_respond_in_background_returns() {
    // no connection thread: the response is written inline, and nothing blocks
    let request: tiny_http::Request = TestRequest::new().with_path("/").into();
    request.respond_in_background(Response::from_string("hello").boxed());
}
