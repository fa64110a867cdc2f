//! The HTTP edge: a fixed pool of `httpThreads` acceptor threads on one tiny_http server. Each
//! request is routed, authenticated, its body read within `maxBodyBytes`, and handed to its
//! handler; a panic in a handler becomes a 500 for that request only. A handler may answer
//! later (a sync run): the request then travels with the task and the acceptor moves on, so no
//! acceptor ever waits on a CLI.

pub mod auth;
pub mod error;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod router;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::Config;
pub use error::ApiError;
use rate_limit::RateLimiter;
pub use request::Ctx;
pub use response::Reply;
use router::{Match, Method, Router};

/// A request handler: plain data in, plain data out.
pub type Handler = fn(&App, &Ctx) -> Result<Reply, ApiError>;

pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    acceptors: Vec<JoinHandle<()>>,
    edge: Arc<EdgeState>,
}

/// What the acceptor threads share.
struct EdgeState {
    routes: Router<Handler>,
    limiter: RateLimiter,
    stopping: AtomicBool,
    /// Deferred answers not sent yet.
    pending: AtomicUsize,
}

impl HttpServer {
    /// Binds `addr` and starts `threads` acceptors serving `routes`.
    pub fn start(app: Arc<App>, routes: Router<Handler>, addr: &str, threads: usize) -> Result<HttpServer, String> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| e.to_string())?);
        let edge = Arc::new(EdgeState {
            routes,
            limiter: RateLimiter::default(),
            stopping: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
        });
        let acceptors = (0..threads.max(1))
            .map(|i| {
                let (server, app, edge) = (server.clone(), app.clone(), edge.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || accept_loop(&server, &app, &edge))
                    .map_err(|e| format!("cannot start acceptor thread: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(HttpServer { server, acceptors, edge })
    }

    /// Stops taking requests; returns once every acceptor thread has finished its request.
    pub fn stop_accepting(&mut self) {
        self.edge.stopping.store(true, Ordering::SeqCst);
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
        while self.edge.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn accept_loop(server: &tiny_http::Server, app: &Arc<App>, edge: &Arc<EdgeState>) {
    while !edge.stopping.load(Ordering::SeqCst) {
        match server.recv() {
            Ok(rq) => serve(app, edge, rq),
            Err(e) => {
                if !edge.stopping.load(Ordering::SeqCst) {
                    log::warn!("accepting a request failed: {e}");
                }
            }
        }
    }
}

fn serve(app: &Arc<App>, shared: &Arc<EdgeState>, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let method = Method::parse(rq.method().as_str());
    let url = rq.url().to_string();
    let (path, query) = request::split_url(&url);
    let mut edge =
        RequestInfo { line: format!("{} {path}", method.name()), route: "unmatched".into(), headers: Vec::new() };
    let answer = answer(app, shared, &mut rq, method, path, query, &mut edge);
    match answer {
        Ok(Reply { later: Some(later), .. }) => {
            shared.pending.fetch_add(1, Ordering::SeqCst);
            let (shared, app) = (shared.clone(), app.clone());
            later(Box::new(move |answer| {
                // The worker that calls this must not wait on a slow client: send from a thread.
                let sent = std::thread::Builder::new().name("respond".into()).spawn(move || {
                    send(&app, rq, answer, &edge, started);
                    shared.pending.fetch_sub(1, Ordering::SeqCst);
                });
                if let Err(e) = sent {
                    log::error!("cannot start a thread to answer a request: {e}");
                }
            }));
        }
        Ok(Reply { stream: Some(stream), .. }) => {
            log::info!("{} 200 (event stream)", edge.line);
            app.metrics.count_request(rq.method().as_str(), &edge.route, 200);
            shared.pending.fetch_add(1, Ordering::SeqCst);
            let shared = shared.clone();
            let writer = rq.into_writer();
            let sent = std::thread::Builder::new().name("stream".into()).spawn(move || {
                stream(writer);
                shared.pending.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = sent {
                log::error!("cannot start a thread to stream an answer: {e}");
            }
        }
        answer => send(app, rq, answer, &edge, started),
    }
}

/// What the edge learnt about a request on its way in: for the log, metrics and headers.
struct RequestInfo {
    line: String,
    /// The route pattern it matched (`unmatched` for 404s).
    route: String,
    /// Headers every answer to it carries (rate limit).
    headers: Vec<(&'static str, String)>,
}

fn send(app: &App, rq: tiny_http::Request, answer: Result<Reply, ApiError>, edge: &RequestInfo, started: Instant) {
    let (status, body, headers) = match answer {
        Ok(reply) => (reply.status, reply.body, reply.headers),
        Err(err) => (err.status, err.body(), err.headers.clone()),
    };
    let level = if edge.line == "GET /health" { log::Level::Debug } else { log::Level::Info };
    log::log!(level, "{} {status} {} ms", edge.line, started.elapsed().as_millis());
    app.metrics.count_request(rq.method().as_str(), &edge.route, status);
    let content_type =
        if body.is_string() { "text/plain; version=0.0.4; charset=utf-8" } else { "application/json; charset=utf-8" };
    let data = match body {
        serde_json::Value::String(text) => text.into_bytes(),
        body => body.to_string().into_bytes(),
    };
    let mut response = tiny_http::Response::from_data(data).with_status_code(status);
    let content_type = ("Content-Type", content_type.to_string());
    for (name, value) in headers.iter().chain(&edge.headers).chain(std::iter::once(&content_type)) {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    if let Err(e) = rq.respond(response) {
        log::debug!("client went away before the answer to {}: {e}", edge.line);
    }
}

fn answer(
    app: &App,
    shared: &EdgeState,
    rq: &mut tiny_http::Request,
    method: Method,
    path: &str,
    query: Vec<(String, String)>,
    edge: &mut RequestInfo,
) -> Result<Reply, ApiError> {
    let found = shared.routes.find(method, path);
    if let Match::Found(_, _, route) = &found {
        edge.route = route.to_string();
    }
    let config = app.config();
    if auth::is_protected(path) {
        auth::check(&config, header(rq, "Authorization"), header(rq, "X-API-Key"))?;
    }
    if path.starts_with("/api/") && config.rate_limit.enabled {
        let client = client_key(&config, rq);
        let decision = shared.limiter.check(&client, &config.rate_limit, now_ms());
        edge.headers = decision.headers();
        if !decision.allowed {
            let message = format!(
                "too many requests: at most {} per {} s for each client; retry in {} s",
                decision.limit, decision.window_secs, decision.reset_secs
            );
            return Err(ApiError::new(429, message).with("retryAfter", decision.reset_secs));
        }
    }
    let (handler, params) = match found {
        Match::Found(handler, params, _) => (*handler, params),
        Match::WrongMethod(allowed) => return Err(ApiError::method_not_allowed(method.name(), path, &allowed)),
        Match::NotFound => return Err(ApiError::not_found(path)),
    };
    let body = if method.has_body() {
        let declared = rq.body_length();
        let bytes = request::read_body(declared, rq.as_reader(), config.max_body_bytes)?;
        request::parse_json(&bytes)?
    } else {
        None
    };
    let ctx = Ctx { params, query, body };
    guard_panics(&edge.line, || handler(app, &ctx))
}

/// Who a rate limit counts: the API key when keys are in use, else the client's IP.
fn client_key(config: &Config, rq: &tiny_http::Request) -> String {
    if !config.auth.api_keys.is_empty() {
        let key = header(rq, "Authorization").and_then(|h| h.strip_prefix("Bearer ")).or(header(rq, "X-API-Key"));
        if let Some(key) = key {
            return format!("key:{}", key.trim());
        }
    }
    rq.remote_addr().map_or_else(|| "ip:unknown".to_string(), |addr| format!("ip:{}", addr.ip()))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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
