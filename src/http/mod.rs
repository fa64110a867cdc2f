//! The HTTP edge: a fixed pool of `httpThreads` acceptor threads on one tiny_http server (the
//! vendored copy, which bounds what a client may hold: `http.*` limits). Each request's target
//! is read once (`target`), routed, authenticated (every route but `/health`), rate limited, and
//! handed to its handler; a panic in a handler becomes a 500 for that request only. A body is
//! read on a thread of its own, so a slow upload never holds an acceptor. A handler may answer
//! when tasks have ended (`AfterTasks`: a sync run, a batch, a cancel waiting for the kill): the
//! request then waits for their ends (`App::ends`) and the acceptor moves on, so no acceptor ever
//! waits on a CLI; if its client hangs up first, its tasks are stopped (`on_gone`). Answers are
//! written by each connection's own tiny_http thread (a deferred one by a thread of its own), so
//! a client that does not read its answers holds only that.

pub mod auth;
mod browser;
pub mod error;
pub mod rate_limit;
pub mod request;
pub mod response;
pub mod router;
pub mod target;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::net::IpAddr;

use crate::app::App;
use crate::config::{self, Config, RateLimit};
pub use auth::Caller;
pub use error::{ApiError, Dialect};
use rate_limit::RateLimiter;
pub use request::Ctx;
pub use response::{AfterTasks, Awaited, Reply, ShapeAnswer};
use router::{Match, Method, Router};
use target::Target;

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
    /// Failed key checks by client address.
    failures: RateLimiter,
    stopping: AtomicBool,
    /// Deferred answers not sent yet.
    pending: AtomicUsize,
}

impl HttpServer {
    /// Binds `addr` and starts `threads` acceptors serving `routes`, within `limits`.
    pub fn start(
        app: Arc<App>,
        routes: Router<Handler>,
        addr: &str,
        threads: usize,
        limits: &config::Http,
    ) -> Result<HttpServer, String> {
        let server = tiny_http::Server::http_with_limits(addr, tiny_limits(limits)).map_err(|e| e.to_string())?;
        let server = Arc::new(server);
        let _ = LISTENING.set(Arc::downgrade(&server));
        let edge = Arc::new(EdgeState {
            routes,
            limiter: RateLimiter::over(app.store.counts.clone()),
            failures: RateLimiter::default(),
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

    /// Stops taking requests; waits up to `limit` for the acceptors to finish the answer they
    /// may be writing (a client that reads slowly cannot hold the stop longer).
    pub fn stop_accepting(&mut self, limit: Duration) {
        self.edge.stopping.store(true, Ordering::SeqCst);
        for _ in &self.acceptors {
            self.server.unblock();
        }
        let deadline = Instant::now() + limit;
        for acceptor in self.acceptors.drain(..) {
            while !acceptor.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if acceptor.is_finished() {
                let _ = acceptor.join();
            } else {
                log::warn!("stopping: an acceptor is still writing to a slow client; not waiting for it");
            }
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

/// The server of this process, for `/metrics` (one per process; tiny_http owns the counts).
static LISTENING: std::sync::OnceLock<std::sync::Weak<tiny_http::Server>> = std::sync::OnceLock::new();

/// Open connections, and connections closed to make room at `http.maxConnections`.
pub fn connection_counts() -> Option<(usize, u64)> {
    let server = LISTENING.get()?.upgrade()?;
    Some((server.num_connections(), server.connections_closed_to_make_room()))
}

/// What tiny_http enforces for us, before a request reaches an acceptor.
fn tiny_limits(http: &config::Http) -> tiny_http::Limits {
    let ms = Duration::from_millis;
    tiny_http::Limits {
        idle_timeout: Some(ms(http.keep_alive_ms)),
        read_timeout: Some(ms(http.read_timeout_ms)),
        write_timeout: Some(ms(http.write_timeout_ms)),
        max_connections: Some(http.max_connections),
        max_url_bytes: Some(http.max_url_bytes),
        max_head_bytes: Some(http.max_head_bytes),
        error_body: Some(error_body),
    }
}

/// The JSON error body of the answers tiny_http gives itself (400, 408, 414, 431, 505...),
/// which are also counted (`/metrics`) and logged at debug level: they never reach `serve`.
fn error_body(status: u16, reason: &str) -> (&'static str, String) {
    crate::metrics::count_refused(status);
    log::debug!("refused before routing: {status} {}", target::shown(reason));
    let hint = match status {
        408 => "; send the whole request within http.readTimeoutMs",
        414 => "; send a shorter URL (http.maxUrlBytes)",
        431 => "; send fewer or shorter headers (http.maxHeadBytes)",
        505 => "; use HTTP/1.1",
        _ => "",
    };
    ("application/json; charset=utf-8", ApiError::new(status, format!("{reason}{hint}")).body().to_string())
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

/// What the edge learnt about a request on its way in: for the log, metrics and headers.
struct RequestInfo {
    method: Method,
    /// `METHOD /path` as the log shows it (bounded, printable).
    line: String,
    /// The route pattern it matched (`other` when none did): a metrics label.
    route: String,
    /// Headers every answer to it carries (rate limit).
    headers: Vec<(&'static str, String)>,
    /// Whose error shape its errors take.
    dialect: Dialect,
    started: Instant,
}

/// A request that passed the edge's checks: its handler and what it is called with.
struct Admitted {
    handler: Handler,
    ctx: Ctx,
}

fn serve(app: &Arc<App>, edge: &Arc<EdgeState>, rq: tiny_http::Request) {
    let method = Method::parse(rq.method().as_str());
    let mut info = RequestInfo {
        method,
        line: format!("{} {}", method.name(), target::shown(rq.url())),
        route: "other".into(),
        headers: Vec::new(),
        dialect: Dialect::Ccs,
        started: Instant::now(),
    };
    let admitted = match admit(app, edge, &rq, &mut info) {
        Ok(admitted) => admitted,
        Err(err) => return send(app, rq, Err(err), &info),
    };
    if !has_body(&rq, method) {
        let answer = guard_panics(&info.line, || (admitted.handler)(app, &admitted.ctx));
        return deliver(app, edge, rq, answer, info);
    }
    // The body is read on a thread of its own, so a slow upload never holds an acceptor. There
    // is at most one per connection (tiny_http reads a connection's next request only after this
    // one is answered), so `http.maxConnections` bounds them too.
    if let Err(err) = declared_size_fits(&rq, app.config().max_body_bytes) {
        return send(app, rq, Err(err), &info);
    }
    let (app, edge) = (app.clone(), edge.clone());
    let (mut rq, mut admitted) = (rq, admitted);
    let spawned = std::thread::Builder::new().name("upload".into()).spawn(move || {
        let answer = read_body(&app, &mut rq).and_then(|body| {
            admitted.ctx.body = body;
            guard_panics(&info.line, || (admitted.handler)(&app, &admitted.ctx))
        });
        deliver(&app, &edge, rq, answer, info);
    });
    if let Err(e) = spawned {
        // The request is dropped with the closure: tiny_http answers it 500.
        log::error!("cannot start a thread to read a request body: {e}");
    }
}

/// Routing, auth and rate limiting: everything decided from the request head.
fn admit(app: &App, edge: &EdgeState, rq: &tiny_http::Request, info: &mut RequestInfo) -> Result<Admitted, ApiError> {
    // From the raw path first, so a target refused below is answered in its API's shape too.
    let anthropic_version = header(rq, "anthropic-version").is_some();
    let raw_path = rq.url().split('?').next().unwrap_or_default();
    info.dialect = Dialect::of(raw_path, anthropic_version);
    let target = Target::parse(rq.url())?;
    info.line = format!("{} {}", info.method.name(), target.shown());
    info.dialect = Dialect::of(&target.path, anthropic_version);
    let config = app.config();
    let headers = browser::Headers {
        host: header(rq, "Host"),
        origin: header(rq, "Origin"),
        sec_fetch_site: header(rq, "Sec-Fetch-Site"),
    };
    browser::check(headers, config.auth.has_keys())?;
    // An `Upgrade` (h2c from Java's HttpClient, `curl --http2`) is ignored: the answer is
    // HTTP/1.1, as RFC 9110 allows, and tiny_http frames the body as usual.
    let found = edge.routes.find(info.method, &target.path);
    let public = match &found {
        Match::Found(route, _) => {
            info.route = route.pattern.clone();
            route.public
        }
        _ => false,
    };
    let address = rq.remote_addr().map(|a| a.ip());
    let mut caller = Caller::default();
    if !public {
        caller = authenticate(&config, edge, rq, address)?;
        rate_limit(&config, edge, &caller, address, info)?;
    }
    caller.loopback = address.is_some_and(|ip| ip.is_loopback());
    match found {
        Match::Found(route, params) => {
            let headers = ccs_headers(rq);
            Ok(Admitted {
                handler: route.handler,
                ctx: Ctx { params, query: target.query, body: None, caller, headers },
            })
        }
        Match::WrongMethod(allowed) => {
            // As the client sent it: `Method::name` calls every method ccs does not know "other".
            let sent = target::shown(rq.method().as_str());
            Err(ApiError::method_not_allowed(&sent, &target.shown(), &allowed))
        }
        Match::NotFound => Err(ApiError::not_found(&target.shown())),
    }
}

/// The `x-ccs-*` headers of a request, names in lower case.
fn ccs_headers(rq: &tiny_http::Request) -> Vec<(String, String)> {
    rq.headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str()))
        .filter(|(name, _)| name.starts_with("x-ccs-"))
        .map(|(name, value)| (name, value.to_string()))
        .collect()
}

/// The key check, with failed attempts counted per client address (429 past the limit).
fn authenticate(
    config: &Config,
    edge: &EdgeState,
    rq: &tiny_http::Request,
    address: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    if !config.auth.has_keys() {
        return Ok(Caller::default());
    }
    let client = client_address(address);
    let rule = RateLimit { enabled: true, window_ms: auth::FAILURE_WINDOW_MS, max_requests: auth::MAX_FAILURES };
    let now = now_ms();
    // Wrong keys are counted in this server's memory (they never fail).
    let so_far = edge.failures.peek(&client, &rule, now).map_err(storage_unavailable)?;
    if !so_far.allowed {
        return Err(auth::too_many_failures(so_far.reset_secs));
    }
    let (bearer, api_key) = (header(rq, "Authorization"), header(rq, "X-API-Key"));
    auth::check(config, bearer, api_key).inspect_err(|_| {
        // A wrong key is a guess; a missing one guesses nothing.
        if bearer.is_some() || api_key.is_some() {
            let _ = edge.failures.check(&client, &rule, now);
        }
    })
}

/// The request budget (SPEC 8) of the caller's key, or of its address without keys.
fn rate_limit(
    config: &Config,
    edge: &EdgeState,
    caller: &Caller,
    address: Option<IpAddr>,
    info: &mut RequestInfo,
) -> Result<(), ApiError> {
    if !config.rate_limit.enabled {
        return Ok(());
    }
    let client = match &caller.key {
        Some(key) => format!("key:{key}"),
        None => client_address(address),
    };
    let decision = edge.limiter.check(&client, &config.rate_limit, now_ms()).map_err(storage_unavailable)?;
    info.headers = decision.headers();
    if decision.allowed {
        return Ok(());
    }
    let message = format!(
        "too many requests: at most {} per {} s for each client; retry in {} s",
        decision.limit, decision.window_secs, decision.reset_secs
    );
    Err(ApiError::new(429, message).with("retryAfter", decision.reset_secs))
}

/// A limit that could not be counted (the shared store is down): 503, saying why.
fn storage_unavailable(e: crate::store::StoreError) -> ApiError {
    crate::error::Error::from(e).into()
}

/// Who a limit counts without a key: the IPv4 address, or the IPv6 /64 (one host gets a whole
/// /64, so counting single IPv6 addresses would count nothing).
fn client_address(address: Option<IpAddr>) -> String {
    match address.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(ip)) => format!("ip:{ip}"),
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "ip:unknown".to_string(),
    }
}

/// Whether the request carries a body to read.
fn has_body(rq: &tiny_http::Request, method: Method) -> bool {
    let chunked = rq.headers().iter().any(|h| h.field.equiv("Transfer-Encoding"));
    method.has_body() && (chunked || rq.body_length().is_some_and(|n| n > 0))
}

/// 413 from `Content-Length` alone, before anything is read (and before `100 Continue`).
fn declared_size_fits(rq: &tiny_http::Request, limit: u64) -> Result<(), ApiError> {
    match rq.body_length() {
        Some(declared) if declared as u64 > limit => Err(ApiError::too_large(limit)),
        _ => Ok(()),
    }
}

fn read_body(app: &App, rq: &mut tiny_http::Request) -> Result<Option<serde_json::Value>, ApiError> {
    let config = app.config();
    let bytes = request::read_body(rq.as_reader(), config.max_body_bytes, config.http.read_timeout_ms)?;
    request::parse_json(&bytes)
}

/// Sends an answer now, or arranges for it to be sent when it is ready.
fn deliver(
    app: &Arc<App>,
    edge: &Arc<EdgeState>,
    rq: tiny_http::Request,
    answer: Result<Reply, ApiError>,
    info: RequestInfo,
) {
    match answer {
        Ok(Reply { after: Some(after), .. }) => answer_after_tasks(app, edge, rq, after, info),
        Ok(Reply { stream: Some(stream), .. }) => {
            log::info!("{} 200 (event stream)", info.line);
            app.metrics.count_request(info.method.name(), &info.route, 200);
            edge.pending.fetch_add(1, Ordering::SeqCst);
            let edge = edge.clone();
            let writer = rq.into_writer();
            let sent = std::thread::Builder::new().name("stream".into()).spawn(move || {
                stream(writer);
                edge.pending.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = sent {
                log::error!("cannot start a thread to stream an answer: {e}");
            }
        }
        answer => send(app, rq, answer, &info),
    }
}

/// Keeps the request until its tasks have ended, then answers it from their ends (on a thread
/// of its own, so the worker that ends the last task never waits on the client). A client that
/// leaves first has its tasks stopped (`on_gone`).
fn answer_after_tasks(
    app: &Arc<App>,
    edge: &Arc<EdgeState>,
    mut rq: tiny_http::Request,
    after: AfterTasks,
    info: RequestInfo,
) {
    let pending: Vec<(usize, String)> =
        after.tasks.iter().enumerate().filter_map(|(i, t)| Some((i, t.as_ref().ok()?.clone()))).collect();
    let ids: Vec<String> = pending.iter().map(|(_, id)| id.clone()).collect();
    if let Some(on_gone) = after.on_gone {
        let (app, ids) = (app.clone(), ids.clone());
        rq.on_client_gone(move || stop_tasks_of_gone_client(app, ids, on_gone));
    }
    edge.pending.fetch_add(1, Ordering::SeqCst);
    let waiting = Arc::new(parking_lot::Mutex::new(Waiting {
        ends: after.tasks.into_iter().map(|t| t.err().map(Err)).collect(),
        rq: Some(rq),
        info,
        answer: Some(after.answer),
    }));
    Waiting::answer_if_complete(&waiting, app, edge);
    for (i, id) in pending {
        let ended_already = || match app.store.tasks.get(&id) {
            Ok(task) => task.filter(|t| t.status.is_final()),
            // Counts as still running: its end, when it comes, is heard.
            Err(e) => {
                log::warn!("{e}");
                None
            }
        };
        let (answering, edge, waiting) = (app.clone(), edge.clone(), waiting.clone());
        let listener = Box::new(move |end| {
            waiting.lock().ends[i] = Some(Ok(end));
            Waiting::answer_if_complete(&waiting, &answering, &edge);
        });
        app.ends.listen(&id, ended_already, listener);
    }
}

/// A request waiting for the ends of its tasks.
struct Waiting {
    ends: Vec<Option<Awaited>>,
    rq: Option<tiny_http::Request>,
    info: RequestInfo,
    answer: Option<ShapeAnswer>,
}

impl Waiting {
    /// Sends the answer once every end is in (once: the request is taken).
    fn answer_if_complete(waiting: &parking_lot::Mutex<Waiting>, app: &App, edge: &Arc<EdgeState>) {
        let mut w = waiting.lock();
        if w.ends.iter().any(Option::is_none) {
            return;
        }
        let (Some(rq), Some(shape)) = (w.rq.take(), w.answer.take()) else { return };
        let ends = w.ends.drain(..).flatten().collect();
        // Handler code, run on the worker that ended the last task: a panic is this request's 500.
        let answer = guard_panics(&w.info.line, || shape(ends));
        let (rq, response) = answer_of(app, rq, answer, &w.info);
        drop(w);
        // Called on a worker, which must not wait on a slow client: written on a thread of its
        // own, and counted until written (a stop waits for these, bounded).
        let edge = edge.clone();
        let sent = std::thread::Builder::new().name("respond".into()).spawn(move || {
            let _ = rq.respond(response);
            edge.pending.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = sent {
            log::error!("cannot start a thread to answer a request: {e}");
        }
    }
}

/// Stops the tasks of a client that left before its answer, the last first (a batch's later
/// prompts wait while its first ones run; cancelling a running one would start a waiting one).
/// On a thread of its own: tiny_http calls this on the connection's thread, which must not wait.
fn stop_tasks_of_gone_client(app: Arc<App>, ids: Vec<String>, on_gone: fn(&App, &str)) {
    let stopping = std::thread::Builder::new().name("client-gone".into()).spawn(move || {
        for id in ids.iter().rev() {
            on_gone(&app, id);
        }
    });
    if let Err(e) = stopping {
        log::error!("cannot start a thread to stop the tasks of a gone client: {e}");
    }
}

/// Answers now: written by the connection's own thread, so a client that does not read its
/// answers holds that thread (up to http.writeTimeoutMs), never an acceptor.
fn send(app: &App, rq: tiny_http::Request, answer: Result<Reply, ApiError>, info: &RequestInfo) {
    let (rq, response) = answer_of(app, rq, answer, info);
    rq.respond_in_background(response.boxed());
}

/// The HTTP response of an answer (logged and counted here).
fn answer_of(
    app: &App,
    rq: tiny_http::Request,
    answer: Result<Reply, ApiError>,
    info: &RequestInfo,
) -> (tiny_http::Request, tiny_http::Response<std::io::Cursor<Vec<u8>>>) {
    let (status, body, headers) = match answer {
        Ok(reply) => (reply.status, reply.body, reply.headers),
        Err(err) => {
            let (status, body) = err.render(info.dialect);
            (status, body, err.headers)
        }
    };
    let level = if info.line == "GET /health" { log::Level::Debug } else { log::Level::Info };
    log::log!(level, "{} {status} {} ms", info.line, info.started.elapsed().as_millis());
    app.metrics.count_request(info.method.name(), &info.route, status);
    let content_type =
        if body.is_string() { "text/plain; version=0.0.4; charset=utf-8" } else { "application/json; charset=utf-8" };
    let data = match body {
        serde_json::Value::String(text) => text.into_bytes(),
        body => body.to_string().into_bytes(),
    };
    let mut response = tiny_http::Response::from_data(data).with_status_code(status);
    let content_type = ("Content-Type", content_type.to_string());
    for (name, value) in headers.iter().chain(&info.headers).chain(std::iter::once(&content_type)) {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    (rq, response)
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
    fn limits_count_ipv4_addresses_and_ipv6_networks() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_address(ip("10.1.2.3")), "ip:10.1.2.3");
        assert_eq!(client_address(ip("::ffff:10.1.2.3")), "ip:10.1.2.3");
        assert_eq!(client_address(ip("2001:db8:1:2::1")), client_address(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(client_address(ip("2001:db8:1:2::1")), client_address(ip("2001:db8:1:3::1")));
        assert_eq!(client_address(None), "ip:unknown");
    }

    fn shape_panics(_: Vec<Awaited>) -> Result<Reply, ApiError> {
        panic!("a bug in shaping an answer")
    }

    #[test]
    fn a_panic_shaping_a_deferred_answer_is_a_500_and_the_worker_goes_on() {
        let app = App::for_tests(crate::store::Store::in_memory());
        let edge = Arc::new(EdgeState {
            routes: Router::default(),
            limiter: RateLimiter::default(),
            failures: RateLimiter::default(),
            stopping: AtomicBool::new(false),
            pending: AtomicUsize::new(1),
        });
        let info = RequestInfo {
            method: Method::Post,
            line: "POST /api/claude".into(),
            route: "/api/claude".into(),
            headers: Vec::new(),
            dialect: Dialect::Ccs,
            started: Instant::now(),
        };
        let rq: tiny_http::Request = tiny_http::TestRequest::new().into();
        let waiting = parking_lot::Mutex::new(Waiting {
            ends: Vec::new(),
            rq: Some(rq),
            info,
            answer: Some(Box::new(shape_panics)),
        });
        // Called by the worker that ended the last task: it must not unwind into the worker.
        Waiting::answer_if_complete(&waiting, &app, &edge);
        let deadline = Instant::now() + Duration::from_secs(5);
        while edge.pending.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(edge.pending.load(Ordering::SeqCst), 0, "the answer (a 500) was sent and counted");
    }

    #[test]
    fn a_405_names_the_method_as_sent_and_the_methods_the_path_takes() {
        let app = App::for_tests(crate::store::Store::in_memory());
        let edge = EdgeState {
            routes: Router::default().add(Method::Post, "/api/claude", |_, _| Ok(Reply::ok(serde_json::json!({})))),
            limiter: RateLimiter::default(),
            failures: RateLimiter::default(),
            stopping: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
        };
        for (method, name) in [(tiny_http::Method::Options, "OPTIONS"), (tiny_http::Method::Delete, "DELETE")] {
            let rq: tiny_http::Request =
                tiny_http::TestRequest::new().with_method(method).with_path("/api/claude").into();
            let mut info = RequestInfo {
                method: Method::parse(rq.method().as_str()),
                line: String::new(),
                route: "other".into(),
                headers: Vec::new(),
                dialect: Dialect::Ccs,
                started: Instant::now(),
            };
            let Err(err) = admit(&app, &edge, &rq, &mut info) else { panic!("{name} must be refused") };
            assert_eq!(err.status, 405);
            assert_eq!(err.message, format!("/api/claude does not take {name}; it takes POST"));
            assert_eq!(err.headers, vec![("Allow", "POST".to_string())]);
        }
    }

    #[test]
    fn a_panicking_handler_is_a_500_and_the_caller_goes_on() {
        let Err(err) = guard_panics("GET /boom", || panic!("boom")) else { panic!("a panic must be an error") };
        assert_eq!(err.status, 500);
        assert_eq!(err.body()["success"], false);
        assert!(err.message.contains("GET /boom"));
        assert_eq!(guard_panics("GET /fine", || Ok(Reply::ok(serde_json::json!({})))).unwrap().status, 200);
    }
}
