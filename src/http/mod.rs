//! The HTTP edge: a fixed pool of `httpThreads` acceptor threads on one tiny_http server. Each
//! request is routed, authenticated, its body read within `maxBodyBytes`, and handed to its
//! handler; a panic in a handler becomes a 500 for that request only. A handler may answer
//! later (a sync run): the request then travels with the task and the acceptor moves on, so no
//! acceptor ever waits on a CLI.

pub mod auth;
pub mod error;
pub mod request;
pub mod response;
pub mod router;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
pub use error::ApiError;
pub use request::Ctx;
pub use response::Reply;
use router::{Match, Method, Router};

/// A request handler: plain data in, plain data out.
pub type Handler = fn(&App, &Ctx) -> Result<Reply, ApiError>;

pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    acceptors: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    /// Deferred answers not sent yet.
    pending: Arc<AtomicUsize>,
}

impl HttpServer {
    /// Binds `addr` and starts `threads` acceptors serving `routes`.
    pub fn start(app: Arc<App>, routes: Router<Handler>, addr: &str, threads: usize) -> Result<HttpServer, String> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| e.to_string())?);
        let routes = Arc::new(routes);
        let stopping = Arc::new(AtomicBool::new(false));
        let pending = Arc::new(AtomicUsize::new(0));
        let acceptors = (0..threads.max(1))
            .map(|i| {
                let (server, routes, app, stopping, pending) =
                    (server.clone(), routes.clone(), app.clone(), stopping.clone(), pending.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || accept_loop(&server, &routes, &app, &stopping, &pending))
                    .map_err(|e| format!("cannot start acceptor thread: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(HttpServer { server, acceptors, stopping, pending })
    }

    /// Stops taking requests; returns once every acceptor thread has finished its request.
    pub fn stop_accepting(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.acceptors {
            self.server.unblock();
        }
        for acceptor in self.acceptors.drain(..) {
            let _ = acceptor.join();
        }
    }

    /// Waits (up to `limit`) until every deferred answer has been sent.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn accept_loop(
    server: &tiny_http::Server,
    routes: &Router<Handler>,
    app: &App,
    stopping: &AtomicBool,
    pending: &Arc<AtomicUsize>,
) {
    while !stopping.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(rq) => serve(app, routes, rq, pending),
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    log::warn!("accepting a request failed: {e}");
                }
            }
        }
    }
}

fn serve(app: &App, routes: &Router<Handler>, mut rq: tiny_http::Request, pending: &Arc<AtomicUsize>) {
    let started = Instant::now();
    let method = Method::parse(rq.method().as_str());
    let url = rq.url().to_string();
    let (path, query) = request::split_url(&url);
    let answer = answer(app, routes, &mut rq, method, path, query);
    let line = format!("{} {path}", method.name());
    match answer {
        Ok(Reply { later: Some(later), .. }) => {
            pending.fetch_add(1, Ordering::SeqCst);
            let pending = pending.clone();
            later(Box::new(move |answer| {
                // The worker that calls this must not wait on a slow client: send from a thread.
                let sent = std::thread::Builder::new().name("respond".into()).spawn(move || {
                    send(rq, answer, &line, started);
                    pending.fetch_sub(1, Ordering::SeqCst);
                });
                if let Err(e) = sent {
                    log::error!("cannot start a thread to answer a request: {e}");
                }
            }));
        }
        answer => send(rq, answer, &line, started),
    }
}

fn send(rq: tiny_http::Request, answer: Result<Reply, ApiError>, line: &str, started: Instant) {
    let (status, body, headers) = match answer {
        Ok(reply) => (reply.status, reply.body, reply.headers),
        Err(err) => (err.status, err.body(), err.headers.clone()),
    };
    let level = if line == "GET /health" { log::Level::Debug } else { log::Level::Info };
    log::log!(level, "{line} {status} {} ms", started.elapsed().as_millis());
    let mut response = tiny_http::Response::from_data(body.to_string().into_bytes()).with_status_code(status);
    let content_type = ("Content-Type", "application/json; charset=utf-8".to_string());
    for (name, value) in headers.iter().chain(std::iter::once(&content_type)) {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("client went away before the answer to {line}: {e}");
    }
}

fn answer(
    app: &App,
    routes: &Router<Handler>,
    rq: &mut tiny_http::Request,
    method: Method,
    path: &str,
    query: Vec<(String, String)>,
) -> Result<Reply, ApiError> {
    let (handler, params) = match routes.find(method, path) {
        Match::Found(handler, params) => (*handler, params),
        Match::WrongMethod(allowed) => return Err(ApiError::method_not_allowed(method.name(), path, &allowed)),
        Match::NotFound => return Err(ApiError::not_found(path)),
    };
    let config = app.config();
    if auth::is_protected(path) {
        auth::check(&config, header(rq, "Authorization"), header(rq, "X-API-Key"))?;
    }
    let body = if method.has_body() {
        let declared = rq.body_length();
        let bytes = request::read_body(declared, rq.as_reader(), config.max_body_bytes)?;
        request::parse_json(&bytes)?
    } else {
        None
    };
    let ctx = Ctx { params, query, body };
    guard_panics(&format!("{} {path}", method.name()), || handler(app, &ctx))
}

fn header<'a>(rq: &'a tiny_http::Request, name: &'static str) -> Option<&'a str> {
    rq.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str())
}

/// Runs a handler; a panic becomes a 500 for this request alone (the thread lives on).
pub fn guard_panics(what: &str, handler: impl FnOnce() -> Result<Reply, ApiError>) -> Result<Reply, ApiError> {
    catch_unwind(AssertUnwindSafe(handler)).unwrap_or_else(|_| {
        log::error!("handler for {what} panicked; answered 500");
        Err(ApiError::internal(what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_a_500_and_the_caller_goes_on() {
        let Err(err) = guard_panics("GET /boom", || panic!("boom")) else { panic!("a panic must be an error") };
        assert_eq!(err.status, 500);
        assert_eq!(err.body()["success"], false);
        assert!(err.message.contains("GET /boom"));
        assert_eq!(guard_panics("GET /fine", || Ok(Reply::ok(serde_json::json!({})))).unwrap().status, 200);
    }
}
