//! Tests of `Limits`: timeouts, connection cap and head size limits.

extern crate tiny_http;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Response, Server};

#[allow(dead_code)]
mod support;

use support::{connect, new_server_with_limits, read_response, read_until_closed, HelloServer};

/// Writes `data` one byte every `interval` on a thread of its own, until done or an error.
fn trickle(client: &TcpStream, data: &'static [u8], interval: Duration) {
    let mut client = client.try_clone().unwrap();
    thread::spawn(move || {
        for byte in data {
            thread::sleep(interval);
            if client.write_all(&[*byte]).is_err() {
                return;
            }
        }
    });
}

#[test]
fn idle_connection_is_closed_silently_after_idle_timeout() {
    let limits = Limits {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);
    let hello = HelloServer::new(server);

    // after accepting
    let start = Instant::now();
    assert_eq!(read_until_closed(&mut client, Duration::from_secs(2)), "");
    assert!(start.elapsed() >= Duration::from_millis(250));

    // after a response
    let mut client = connect(&hello.server);
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("hello"));
    let start = Instant::now();
    assert_eq!(read_until_closed(&mut client, Duration::from_secs(2)), "");
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[test]
fn slow_head_gets_408_at_the_read_timeout_even_if_bytes_keep_coming() {
    let limits = Limits {
        read_timeout: Some(Duration::from_millis(500)),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);
    let _hello = HelloServer::new(server);

    write!(client, "GET / HTTP/1.1\r\n").unwrap();
    trickle(
        &client,
        b"Host: localhost\r\n\r\n",
        Duration::from_millis(100),
    );

    let start = Instant::now();
    let content = read_until_closed(&mut client, Duration::from_secs(3));
    assert!(content.starts_with("HTTP/1.1 408 "), "{}", content);
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[test]
fn slow_body_reads_fail_with_timed_out_at_the_read_timeout() {
    let limits = Limits {
        read_timeout: Some(Duration::from_millis(500)),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n"
    )
    .unwrap();
    trickle(&client, &[b'x'; 40], Duration::from_millis(100));

    let mut rq = server.recv().unwrap();
    let start = Instant::now();
    let mut body = Vec::new();
    let err = rq.as_reader().read_to_end(&mut body).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() < Duration::from_millis(1000));
    rq.respond(Response::empty(408)).unwrap();

    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 408 "), "{}", content);
}

#[test]
fn write_to_a_client_that_does_not_read_fails_with_timed_out_at_the_write_timeout() {
    let limits = Limits {
        write_timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);

    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let rq = server.recv().unwrap();

    // more than the socket buffers hold
    let start = Instant::now();
    let err = rq
        .respond(Response::from_data(vec![b'x'; 64 << 20]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// Limits with a connection cap and idle and read timeouts that no test reaches.
fn capped(max_connections: usize) -> Limits {
    Limits {
        max_connections: Some(max_connections),
        idle_timeout: Some(Duration::from_secs(60)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Limits::default()
    }
}

/// Sends a request and reads its response, which must come within a second.
fn get_hello(client: &mut TcpStream) {
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(read_response(client, Duration::from_secs(1)).ends_with("hello"));
}

/// Panics if `client` gets anything or is closed within `within`.
fn assert_open_and_silent(client: &mut TcpStream, within: Duration) {
    client.set_read_timeout(Some(within)).unwrap();
    match client.read(&mut [0; 16]) {
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => (),
        other => panic!("expected nothing within {:?}, got {:?}", within, other),
    }
}

#[test]
fn at_max_connections_a_new_connection_closes_the_longest_idle_one() {
    let hello = HelloServer::new(Server::http_with_limits("127.0.0.1:0", capped(4)).unwrap());

    // idle since it was accepted
    let mut longest_idle = connect(&hello.server);
    thread::sleep(Duration::from_millis(300));
    // idle since their response
    let mut others: Vec<TcpStream> = (0..3).map(|_| connect(&hello.server)).collect();
    for client in &mut others {
        get_hello(client);
    }
    assert_eq!(hello.server.num_connections(), 4);

    let start = Instant::now();
    let mut newcomer = connect(&hello.server);
    get_hello(&mut newcomer);
    assert!(start.elapsed() < Duration::from_secs(1));

    // closed without a response, as after an idle timeout
    assert_eq!(
        read_until_closed(&mut longest_idle, Duration::from_secs(1)),
        ""
    );
    for client in &mut others {
        get_hello(client);
    }
    assert_eq!(hello.server.num_connections(), 4);
}

#[test]
fn at_max_connections_with_every_request_in_progress_new_connections_wait_until_one_is_answered() {
    let server = Server::http_with_limits("127.0.0.1:0", capped(4)).unwrap();
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect();
    let mut held = Vec::new();
    for client in &mut clients {
        write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        held.push(
            server
                .recv_timeout(Duration::from_secs(1))
                .unwrap()
                .unwrap(),
        );
    }

    // the fifth waits in the listen queue: no connection is idle
    let mut fifth = connect(&server);
    write!(fifth, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert!(server
        .recv_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    assert_open_and_silent(&mut fifth, Duration::from_millis(100));
    assert_eq!(server.num_connections(), 4);

    // the first answered is idle: it makes room
    held.remove(0)
        .respond(Response::from_string("hello"))
        .unwrap();
    let rq = server
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    rq.respond(Response::from_string("hello")).unwrap();
    assert!(read_response(&mut fifth, Duration::from_secs(1)).ends_with("hello"));
    let first = read_until_closed(&mut clients[0], Duration::from_secs(1));
    assert!(first.ends_with("hello"), "{}", first);
    assert_eq!(server.num_connections(), 4);

    // the others still get their responses
    for (rq, client) in held.into_iter().zip(&mut clients[1..]) {
        rq.respond(Response::from_string("hello")).unwrap();
        assert!(read_response(client, Duration::from_secs(1)).ends_with("hello"));
    }
}

#[test]
fn at_max_connections_the_connection_idle_or_reading_a_head_the_longest_is_closed_first() {
    let hello = HelloServer::new(Server::http_with_limits("127.0.0.1:0", capped(2)).unwrap());

    // idle since it was accepted. Until its thread has started and waits for a request, it is
    // not idle yet (on a loaded machine that takes a while).
    let mut idle = connect(&hello.server);
    thread::sleep(Duration::from_millis(300));
    // then a head begins on another connection
    let mut partial = connect(&hello.server);
    write!(partial, "GET / HTTP/1.1\r\nHost: lo").unwrap();
    thread::sleep(Duration::from_millis(300));

    // the first newcomer closes the idle one, idle since before the head began
    let mut first = connect(&hello.server);
    get_hello(&mut first);
    assert_eq!(read_until_closed(&mut idle, Duration::from_secs(1)), "");
    // The client can read its answer before the server's thread has marked the connection idle
    // again.
    thread::sleep(Duration::from_millis(300));
    // the second one closes the head, begun before the first newcomer became idle
    let mut second = connect(&hello.server);
    get_hello(&mut second);
    assert_eq!(read_until_closed(&mut partial, Duration::from_secs(1)), "");
    assert_eq!(hello.server.num_connections(), 2);
    assert_eq!(hello.server.connections_closed_to_make_room(), 2);

    get_hello(&mut first);
}

/// Since change 15: a newcomer is idle from its accept, for a few milliseconds before it sends
/// its request; heads that an attacker began earlier are closed before it.
#[test]
fn at_max_connections_a_newcomer_that_sends_its_request_a_little_later_is_served_before_old_heads()
{
    let hello = HelloServer::new(Server::http_with_limits("127.0.0.1:0", capped(4)).unwrap());

    // an attacker holds 3 slots with heads that never end, begun long ago
    let mut heads: Vec<TcpStream> = (0..3).map(|_| connect(&hello.server)).collect();
    for head in &mut heads {
        write!(head, "GET /x HTTP/1.1\r\n").unwrap();
        // one after the other
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_secs(1));
    assert_eq!(hello.server.num_connections(), 3);

    // a client takes the last slot, and sends its request a moment later, while the attacker
    // opens new connections
    let mut fresh = connect(&hello.server);
    thread::sleep(Duration::from_millis(100));
    let mut attacker = connect(&hello.server);
    thread::sleep(Duration::from_millis(100));
    get_hello(&mut fresh);

    // the head that began first is closed, without a response, then the next one
    assert_eq!(read_until_closed(&mut heads[0], Duration::from_secs(1)), "");
    assert_eq!(hello.server.connections_closed_to_make_room(), 1);
    let _attacker = connect(&hello.server);
    assert_eq!(read_until_closed(&mut heads[1], Duration::from_secs(1)), "");
    assert_eq!(hello.server.connections_closed_to_make_room(), 2);

    // the client was never closed
    get_hello(&mut fresh);
    assert_open_and_silent(&mut heads[2], Duration::from_millis(50));
    assert_open_and_silent(&mut attacker, Duration::from_millis(50));
}

#[test]
fn at_max_connections_with_none_idle_a_new_connection_closes_the_one_whose_head_began_first() {
    let hello = HelloServer::new(Server::http_with_limits("127.0.0.1:0", capped(4)).unwrap());

    // a slowloris: every slot holds a head that never ends
    let mut first = connect(&hello.server);
    write!(first, "GET /x HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    let mut others: Vec<TcpStream> = (0..3).map(|_| connect(&hello.server)).collect();
    for client in &mut others {
        write!(client, "GET /x HTTP/1.1\r\n").unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(hello.server.num_connections(), 4);

    let start = Instant::now();
    let mut newcomer = connect(&hello.server);
    get_hello(&mut newcomer);
    assert!(start.elapsed() < Duration::from_secs(1));

    // closed without a response
    assert_eq!(read_until_closed(&mut first, Duration::from_secs(1)), "");
    assert_eq!(hello.server.num_connections(), 4);
    // the others are still served
    for client in &mut others {
        assert_open_and_silent(client, Duration::from_millis(50));
        write!(client, "Host: localhost\r\n\r\n").unwrap();
        assert!(read_response(client, Duration::from_secs(1)).ends_with("hello"));
    }
}

#[test]
fn at_max_connections_a_connection_whose_request_the_application_holds_is_never_closed() {
    let server = Server::http_with_limits("127.0.0.1:0", capped(2)).unwrap();
    // the oldest connection; its body never comes, and the application holds the request
    let mut held = connect(&server);
    write!(
        held,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n"
    )
    .unwrap();
    let rq = server
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let mut partial = connect(&server);
    write!(partial, "GET /x HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(100));

    // the first newcomer closes the partial head, the second the first newcomer, now idle
    let mut newcomers = Vec::new();
    for _ in 0..2 {
        let mut newcomer = connect(&server);
        write!(newcomer, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        server
            .recv_timeout(Duration::from_secs(1))
            .unwrap()
            .unwrap()
            .respond(Response::from_string("hello"))
            .unwrap();
        assert!(read_response(&mut newcomer, Duration::from_secs(1)).ends_with("hello"));
        newcomers.push(newcomer);
    }
    assert_eq!(read_until_closed(&mut partial, Duration::from_secs(1)), "");
    assert_eq!(
        read_until_closed(&mut newcomers[0], Duration::from_secs(1)),
        ""
    );

    // the one whose request the application holds was never chosen
    assert_open_and_silent(&mut held, Duration::from_millis(50));
    rq.respond(Response::from_string("hello")).unwrap();
    let content = read_until_closed(&mut held, Duration::from_secs(2));
    assert!(content.ends_with("hello"), "{}", content);
}

#[test]
fn at_max_connections_what_into_writer_left_unflushed_is_sent_before_its_connection_is_closed() {
    let server = Server::http_with_limits("127.0.0.1:0", capped(1)).unwrap();
    let mut first = connect(&server);
    write!(first, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let rq = server
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let mut writer = rq.into_writer();
    write!(writer, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    drop(writer);

    // the first is closed to make room once idle, after its response
    let mut second = connect(&server);
    write!(second, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let rq = server
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    rq.respond(Response::from_string("hello")).unwrap();
    assert!(read_response(&mut second, Duration::from_secs(1)).ends_with("hello"));
    let content = read_until_closed(&mut first, Duration::from_secs(1));
    assert!(content.ends_with("\r\n\r\nhello"), "{}", content);
}

#[test]
fn dropping_the_server_at_max_connections_stops_listening() {
    let limits = Limits {
        max_connections: Some(1),
        ..Limits::default()
    };
    let server = Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let addr = server.server_addr().to_ip().unwrap();
    let _held = connect(&server);
    let start = Instant::now();
    while server.num_connections() < 1 {
        assert!(start.elapsed() < Duration::from_secs(1));
        thread::sleep(Duration::from_millis(10));
    }

    drop(server);
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still listening after the server was dropped"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn request_line_longer_than_max_url_bytes_gets_414_without_the_url() {
    let limits = Limits {
        max_url_bytes: Some(100),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);
    let hello = HelloServer::new(server);

    // "GET " + url + " HTTP/1.1" is exactly 100 bytes
    let url = format!("/{}", "a".repeat(100 - 14));
    write!(client, "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", url).unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("hello"));

    let mut client = connect(&hello.server);
    let url = format!("/{}", "secret".repeat(20));
    write!(client, "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", url).unwrap();
    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 414 "), "{}", content);
    assert!(!content.contains("secret"), "{}", content);
}

#[test]
fn head_larger_than_max_head_bytes_gets_431() {
    let limits = Limits {
        max_head_bytes: Some(1024),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);
    let hello = HelloServer::new(server);

    let fits = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(900));
    client.write_all(fits.as_bytes()).unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("hello"));

    let mut client = connect(&hello.server);
    let head = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-Pad: pppppppp\r\n".repeat(300)
    );
    client.write_all(head.as_bytes()).unwrap();
    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 431 "), "{}", content);
}

#[test]
fn error_body_makes_the_body_of_tiny_http_own_responses() {
    fn error_body(status: u16, reason: &str) -> (&'static str, String) {
        (
            "application/json",
            format!("{{\"status\":{},\"reason\":\"{}\"}}", status, reason),
        )
    }
    let limits = Limits {
        max_head_bytes: Some(1000),
        error_body: Some(error_body),
        ..Limits::default()
    };
    let (server, mut client) = new_server_with_limits(limits);
    let _hello = HelloServer::new(server);

    let head = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "p".repeat(1000));
    client.write_all(head.as_bytes()).unwrap();
    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 431 "), "{}", content);
    assert!(
        content.contains("Content-Type: application/json\r\n"),
        "{}",
        content
    );
    assert!(
        content.ends_with(
            "\r\n\r\n{\"status\":431,\"reason\":\"the request head is larger than 1000 bytes\"}"
        ),
        "{}",
        content
    );
}
