//! Regression tests for the defects of tiny-http 0.12.0 that this copy fixes.

extern crate tiny_http;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Response, Server};

#[allow(dead_code)]
mod support;

use support::{connect, read_response, read_until_closed, HelloServer};

/// 0.12.0's task pool could queue a new connection behind a busy keep-alive connection: with 32
/// connections opened at once, 28 waited about 5 s.
#[test]
fn many_keep_alive_connections_opened_at_once_are_all_answered_promptly() {
    const CLIENTS: usize = 32;
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());

    let start = Instant::now();
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect(&hello.server)).collect();
    for client in clients.iter_mut() {
        write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    }
    for client in clients.iter_mut() {
        let response = read_response(client, Duration::from_secs(1));
        assert!(response.ends_with("hello"), "{}", response);
    }
    assert!(start.elapsed() < Duration::from_secs(1));

    // the connections are still open: they are kept alive
    for client in clients.iter_mut() {
        write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        assert!(read_response(client, Duration::from_secs(1)).ends_with("hello"));
    }
}

/// 0.12.0 buffered its 505 and never sent it.
#[test]
fn http_2_request_line_gets_505_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let mut client = connect(&hello.server);

    write!(client, "GET / HTTP/2.0\r\nHost: localhost\r\n\r\n").unwrap();

    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 505 "), "{}", content);
}

/// 0.12.0 closed the connection without an answer.
#[test]
fn non_ascii_header_line_gets_400_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let mut client = connect(&hello.server);

    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Name: caf\xc3\xa9\r\n\r\n")
        .unwrap();

    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 400 "), "{}", content);
}

/// 0.12.0 ignored a Content-Length it could not parse and read the body as empty, so the body
/// was then read as the next request.
#[test]
fn content_length_that_is_not_a_decimal_number_gets_400_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let heads = [
        "Content-Length: -1\r\n",
        "Content-Length: abc\r\n",
        "Content-Length: 1,2\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ];
    for head in heads.iter() {
        let mut client = connect(&hello.server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\n{}\r\nhello",
            head
        )
        .unwrap();

        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 400 "),
            "{:?}: {}",
            head,
            content
        );
        assert!(!content.contains("hello"), "{:?}: {}", head, content);
    }
}

#[test]
fn repeated_equal_content_lengths_are_accepted() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let mut client = connect(&hello.server);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    )
    .unwrap();

    let content = read_response(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 200 "), "{}", content);
}

/// 0.12.0 read the rest of an unread body on the responding thread when the request was
/// dropped, into a buffer of the announced size: a `Content-Length: 10000000000` allocated 10 GB,
/// and a client that never sends the body held the thread.
#[test]
fn early_answer_to_a_body_that_never_comes_returns_at_once_and_closes_the_connection() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(&server);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000000\r\n\r\nsome"
    )
    .unwrap();

    let rq = server.recv().unwrap();
    assert_eq!(rq.body_length(), Some(10_000_000_000));
    let start = Instant::now();
    rq.respond(Response::from_string("too large").with_status_code(413))
        .unwrap();
    assert!(start.elapsed() < Duration::from_millis(500));

    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 413 "), "{}", content);
    assert!(content.ends_with("too large"), "{}", content);
}

/// A body read in part closes the connection after the response: the rest is not taken as the
/// next request.
#[test]
fn body_read_in_part_closes_the_connection_after_the_response() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(&server);
    let body = "x".repeat(4000);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        body
    )
    .unwrap();

    let mut rq = server.recv().unwrap();
    let mut start = [0; 10];
    rq.as_reader().read_exact(&mut start).unwrap();
    rq.respond(Response::from_string("partial")).unwrap();

    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.ends_with("partial"), "{}", content);
    assert!(server
        .recv_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
}

/// A body read to its end (without reading past it) keeps the connection alive.
#[test]
fn body_read_exactly_to_its_end_keeps_the_connection_alive() {
    let hello = Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(&hello);
    let body = "x".repeat(4000);

    for _ in 0..2 {
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            body
        )
        .unwrap();
        let mut rq = hello.recv_timeout(Duration::from_secs(1)).unwrap().unwrap();
        let mut read = vec![0; body.len()];
        rq.as_reader().read_exact(&mut read).unwrap();
        rq.respond(Response::from_string("read")).unwrap();
        assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("read"));
    }
}

/// The 100 is sent only when the application reads the body.
#[test]
fn expect_100_continue_answered_without_reading_never_gets_100_continue() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(&server);

    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();

    let (done, answered) = mpsc::channel();
    thread::spawn(move || {
        let rq = server.recv().unwrap();
        assert_eq!(rq.body_length(), Some(100_000));
        rq.respond(Response::empty(413)).unwrap();
        done.send(()).unwrap();
    });

    answered.recv_timeout(Duration::from_secs(1)).unwrap();
    let content = read_until_closed(&mut client, Duration::from_secs(2));
    assert!(content.starts_with("HTTP/1.1 413 "), "{}", content);
    assert!(!content.contains("100 Continue"), "{}", content);
}

/// A chunked body read to its end keeps the connection alive for the next request.
#[test]
fn chunked_body_read_to_its_end_keeps_the_connection_alive() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let mut client = connect(&server);

    for _ in 0..2 {
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .unwrap();
        let mut rq = server
            .recv_timeout(Duration::from_secs(1))
            .unwrap()
            .unwrap();
        let mut body = String::new();
        rq.as_reader().read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");
        rq.respond(Response::from_string("read")).unwrap();
        assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("read"));
    }
}

/// 0.12.0 ignored `Content-Length` when a `Transfer-Encoding` came with it: a proxy in front that
/// delimits the body by the `Content-Length` passes a second request inside it (request
/// smuggling). RFC 9112 6.1 and 6.3.
#[test]
fn content_length_with_transfer_encoding_gets_400_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let heads = [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            smuggled.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            smuggled.len()
        ),
    ];
    for head in heads.iter() {
        let mut client = connect(&hello.server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\n{}\r\n{}",
            head, smuggled
        )
        .unwrap();

        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 400 "),
            "{:?}: {}",
            head,
            content
        );
        assert_eq!(content.matches("HTTP/1.1 ").count(), 1, "{}", content);
        assert!(!content.contains("hello"), "{:?}: {}", head, content);
    }
}

/// 0.12.0 read the first of two `Transfer-Encoding` headers and ignored the second, which a
/// proxy in front may read otherwise.
#[test]
fn two_transfer_encoding_headers_get_400_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let heads = [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
    ];
    for head in heads.iter() {
        let mut client = connect(&hello.server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\n{}\r\n5\r\nhello\r\n0\r\n\r\n",
            head
        )
        .unwrap();

        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 400 "),
            "{:?}: {}",
            head,
            content
        );
        assert!(!content.contains("hello"), "{:?}: {}", head, content);
    }
}

/// 0.12.0 decoded any `Transfer-Encoding` as chunked: `gzip, chunked` was handed out still
/// compressed, `identity` or `xchunked` read as chunks what a proxy in front sent otherwise.
/// Only `chunked` alone (in any case) is accepted; the rest gets 501 (RFC 9112 6.1), with the
/// body that `error_body` makes.
#[test]
fn transfer_encoding_other_than_chunked_gets_501_and_the_connection_closed() {
    fn error_body(status: u16, reason: &str) -> (&'static str, String) {
        ("text/plain", format!("{} {}", status, reason))
    }
    let limits = tiny_http::Limits {
        error_body: Some(error_body),
        ..tiny_http::Limits::default()
    };
    let hello = HelloServer::new(Server::http_with_limits("127.0.0.1:0", limits).unwrap());
    let encodings = [
        "gzip, chunked",
        "xchunked",
        "identity",
        "chunked, chunked",
        "",
    ];
    for encoding in encodings.iter() {
        let mut client = connect(&hello.server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {}\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            encoding
        )
        .unwrap();

        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 501 "),
            "{:?}: {}",
            encoding,
            content
        );
        assert!(
            content.ends_with("\r\n\r\n501 only \"Transfer-Encoding: chunked\" is supported"),
            "{:?}: {}",
            encoding,
            content
        );
    }

    let mut client = connect(&hello.server);
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: ChUnKeD\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    .unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("hello"));
}

/// 0.12.0 gave a request with `Connection: upgrade` the rest of the stream as its body even when
/// a `Content-Length` or `Transfer-Encoding` framed it: reading the body to its end waited
/// until the client closed, with no deadline. Framed, it is read as in any other request.
#[test]
fn connection_upgrade_with_a_content_length_or_chunked_body_is_framed_as_usual() {
    let server = Server::http("127.0.0.1:0").unwrap();
    let heads = [
        "Content-Length: 5\r\n\r\nhello",
        "Content-Length: 2000\r\n\r\n",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for head in heads.iter() {
        let mut client = connect(&server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n{}",
            head
        )
        .unwrap();
        if head.contains("2000") {
            client.write_all(&[b'x'; 2000]).unwrap();
        }

        let mut rq = server.recv().unwrap();
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let mut body = Vec::new();
            let read = rq.as_reader().read_to_end(&mut body);
            sender.send((read.map(|_| body), rq)).ok();
        });
        let (body, rq) = receiver
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{:?}: the body is still being read", head));
        let body = body.unwrap();
        assert!(body == b"hello" || body == [b'x'; 2000], "{:?}", head);
        rq.respond(Response::from_string("done")).unwrap();
        assert!(read_response(&mut client, Duration::from_secs(2)).ends_with("done"));
    }
}

/// A framed body with `Connection: upgrade` has the body deadline of `read_timeout`.
#[test]
fn connection_upgrade_with_a_body_that_never_comes_times_out() {
    let limits = tiny_http::Limits {
        read_timeout: Some(Duration::from_millis(500)),
        ..tiny_http::Limits::default()
    };
    let server = Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let mut client = connect(&server);
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\nContent-Length: 2000\r\n\r\nsome"
    )
    .unwrap();

    let mut rq = server.recv().unwrap();
    let (sender, receiver) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let read = rq.as_reader().read_to_end(&mut Vec::new());
        sender.send(read.map_err(|e| e.kind())).ok();
    });
    let read = receiver
        .recv_timeout(Duration::from_secs(5))
        .expect("the body read has no deadline");
    assert_eq!(read, Err(std::io::ErrorKind::TimedOut));
    assert!(start.elapsed() < Duration::from_secs(3));
}

/// Without `Content-Length` and `Transfer-Encoding`, `Connection: upgrade` still hands the rest
/// of the stream to `upgrade()`, without a read deadline.
#[test]
fn connection_upgrade_without_framing_gives_the_stream_to_upgrade_without_deadline() {
    let limits = tiny_http::Limits {
        read_timeout: Some(Duration::from_millis(500)),
        ..tiny_http::Limits::default()
    };
    let server = Server::http_with_limits("127.0.0.1:0", limits).unwrap();
    let mut client = connect(&server);
    write!(
        client,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();

    let rq = server.recv().unwrap();
    let echo = thread::spawn(move || {
        let mut stream = rq.upgrade("echo", Response::empty(101));
        let mut buf = [0; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
        stream.flush().unwrap();
    });
    let head = read_response(&mut client, Duration::from_secs(2));
    assert!(head.starts_with("HTTP/1.1 101 "), "{}", head);
    // longer than the read timeout: the upgraded stream has no deadline
    thread::sleep(Duration::from_secs(1));
    client.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    echo.join().unwrap();
}

/// 0.12.0 trimmed a header line of any whitespace and split lines at CRLF only: a folded line
/// (obs-fold), whitespace before the first header, or a bare CR, LF or NUL in a line made a
/// header that a proxy in front may read otherwise (RFC 9112 5.2, 2.2). They get 400.
#[test]
fn folded_or_indented_header_lines_and_bare_cr_lf_or_nul_get_400_and_the_connection_closed() {
    let hello = HelloServer::new(Server::http("127.0.0.1:0").unwrap());
    let heads: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n\tb\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\n\tHost: localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\nb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n",
    ];
    for head in heads.iter() {
        let mut client = connect(&hello.server);
        client.write_all(head).unwrap();
        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 400 "),
            "{:?}: {}",
            String::from_utf8_lossy(head),
            content
        );
        assert!(!content.contains("hello"), "{}", content);
    }
}

/// Only SP and HTAB are trimmed around a header value: `Transfer-Encoding: \x0bchunked` is not
/// chunked (then 501), and a value keeps other whitespace.
#[test]
fn only_spaces_and_tabs_are_trimmed_around_header_values() {
    let server = Server::http("127.0.0.1:0").unwrap();

    let mut client = connect(&server);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: \t a \x0bb\x0c \t\r\n\r\n")
        .unwrap();
    let rq = server.recv().unwrap();
    let value = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-A"))
        .map(|h| h.value.as_str().to_owned());
    assert_eq!(value.as_deref(), Some("a \x0bb\x0c"));
    rq.respond(Response::from_string("hello")).unwrap();
    assert!(read_response(&mut client, Duration::from_secs(2)).ends_with("hello"));

    for encoding in ["\x0bchunked", "chunked\x0b", "\x0cchunked"].iter() {
        let mut client = connect(&server);
        write!(
            client,
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {}\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            encoding
        )
        .unwrap();
        let content = read_until_closed(&mut client, Duration::from_secs(2));
        assert!(
            content.starts_with("HTTP/1.1 501 "),
            "{:?}: {}",
            encoding,
            content
        );
    }
}
