//! Tests of `Request::on_client_gone`.

extern crate tiny_http;

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::Duration;

use tiny_http::Response;

#[allow(dead_code)]
mod support;

use support::{new_one_server_one_client, read_response};

#[test]
fn callback_is_called_when_the_client_closes_while_the_response_is_pending() {
    let (server, mut client) = new_one_server_one_client();
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();

    let mut rq = server.recv().unwrap();
    let (gone, gone_rx) = mpsc::channel();
    rq.on_client_gone(move || gone.send(()).unwrap());

    drop(client);
    gone_rx.recv_timeout(Duration::from_secs(1)).unwrap();
    rq.respond(Response::from_string("too late")).ok();
}

#[test]
fn callback_is_called_once_the_body_has_been_read() {
    let (server, mut client) = new_one_server_one_client();
    write!(
        client,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"
    )
    .unwrap();

    let mut rq = server.recv().unwrap();
    let (gone, gone_rx) = mpsc::channel();
    rq.on_client_gone(move || gone.send(()).unwrap());

    client.write_all(&[b'x'; 5000]).unwrap();
    let mut body = Vec::new();
    rq.as_reader().read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), 5000);

    client.shutdown(Shutdown::Both).unwrap();
    gone_rx.recv_timeout(Duration::from_secs(1)).unwrap();
}

#[test]
fn callback_is_not_called_after_the_response() {
    let (server, mut client) = new_one_server_one_client();
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();

    let mut rq = server.recv().unwrap();
    let (gone, gone_rx) = mpsc::channel();
    rq.on_client_gone(move || gone.send(()).unwrap());
    rq.respond(Response::from_string("done")).unwrap();

    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("done"));
    drop(client);
    assert!(gone_rx.recv_timeout(Duration::from_millis(600)).is_err());
}

#[test]
fn callback_is_not_called_while_the_client_waits() {
    let (server, mut client) = new_one_server_one_client();
    write!(client, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();

    let mut rq = server.recv().unwrap();
    let (gone, gone_rx) = mpsc::channel();
    rq.on_client_gone(move || gone.send(()).unwrap());

    assert!(gone_rx.recv_timeout(Duration::from_millis(600)).is_err());
    rq.respond(Response::from_string("done")).unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("done"));
}

/// A pipelined request ends the watch: its client is there.
#[test]
fn callback_is_not_called_once_a_pipelined_request_came() {
    let (server, mut client) = new_one_server_one_client();
    write!(client, "GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();

    let mut rq = server.recv().unwrap();
    let (gone, gone_rx) = mpsc::channel();
    rq.on_client_gone(move || gone.send(()).unwrap());

    write!(client, "GET /2 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    client.shutdown(Shutdown::Write).unwrap();
    assert!(gone_rx.recv_timeout(Duration::from_millis(600)).is_err());

    rq.respond(Response::from_string("first")).unwrap();
    let second = server
        .recv_timeout(Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert_eq!(second.url(), "/2");
    second.respond(Response::from_string("second")).unwrap();
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("first"));
    assert!(read_response(&mut client, Duration::from_secs(1)).ends_with("second"));
}
