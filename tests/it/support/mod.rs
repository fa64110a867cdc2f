//! Test harness: runs the real `ccs` binary on a free 127.0.0.1 port in a temp home, with the
//! fake claude (tests/it/support/fake_claude.rs) as `claudePath`, and talks plain HTTP to it.

pub mod mock_anthropic;
pub mod redis_server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use redis_server::{redis_in_tests, Redis};

pub const CCS: &str = env!("CARGO_BIN_EXE_ccs");

/// The ccs binary the servers run: `CCS_BIN` when set (`make bench` sets the static release
/// build, the one users install), else the one cargo built for the tests.
pub fn ccs_bin() -> String {
    std::env::var("CCS_BIN").unwrap_or_else(|_| CCS.to_string())
}
pub const FAKE_CLAUDE: &str = env!("CARGO_BIN_EXE_fake-claude");

/// A temp folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ccs-test-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir.canonicalize().expect("canonical temp dir"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `error` text of an error body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Sends one HTTP/1.1 request and reads the whole answer (the connection is closed after).
pub fn http(port: u16, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to ccs");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        // The server may answer (413) and close before reading it all.
        let _ = stream.write_all(body);
    }
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Transfer-Encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    Response { status, headers, text: body, json }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A port nobody listens on, below the ephemeral range (32768 and up on Linux) that outgoing
/// connections take their local ports from, so it stays free until a server binds it.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn free_port() -> u16 {
    loop {
        let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether the suite runs with live CLI processes (`CCS_TEST_LIVE_CLI=false`: without).
pub fn live_cli_in_tests() -> bool {
    std::env::var("CCS_TEST_LIVE_CLI").map_or(true, |v| v != "false")
}

/// A running server and everything around it.
pub struct Server {
    pub port: u16,
    pub home: TempDir,
    /// An existing project folder to run prompts in.
    pub project: PathBuf,
    /// Where the fake CLI logs each call.
    pub calls_log: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// A program ccs is started through (e.g. `prlimit --nofile=64`), if any.
    launcher: Vec<String>,
    /// The server's own redis-server when the suite runs on the Redis store (kept running
    /// until the server is dropped).
    _redis: Option<Redis>,
}

impl Server {
    /// A server with the test config plus `config` merged over it.
    pub fn start_with(config: Value) -> Server {
        Server::start_through(config, &[])
    }

    /// A server started through `launcher` (a command that runs its arguments, like `prlimit`).
    pub fn start_through(config: Value, launcher: &[&str]) -> Server {
        let home = TempDir::new("home");
        let project = home.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::create_dir_all(home.path().join("workspace")).unwrap();
        let calls_log = home.path().join("fake-calls.jsonl");
        let mut base = json!({
            "claudePath": FAKE_CLAUDE,
            "logLevel": "debug",
            "claudeEnv": {
                "FAKE_CLAUDE_LOG": calls_log.display().to_string(),
                "CLAUDE_CONFIG_DIR": home.path().join("claude-config").display().to_string(),
            },
            "taskQueue": {"killGraceMs": 500},
            // Tests poll and stress the API; the rate-limit tests turn it on themselves.
            "rateLimit": {"enabled": false},
            // The whole suite runs with live CLI processes on (the default) and, with
            // CCS_TEST_LIVE_CLI=false (`make test` does both), off. Spares are tested on their own.
            "liveCli": {"enabled": live_cli_in_tests(), "spares": 0},
        });
        let redis = (redis_in_tests() && config.get("storageType").is_none()).then(Redis::start);
        if let Some(redis) = &redis {
            // A short lease: a killed server's tasks are settled within seconds.
            merge(&mut base, json!({"storageType": "redis", "redisUrl": redis.url(), "redisLeaseMs": 3000}));
        }
        merge(&mut base, config);
        std::fs::create_dir_all(home.path().join("state")).unwrap();
        std::fs::write(home.path().join("state/config.json"), serde_json::to_vec_pretty(&base).unwrap()).unwrap();
        let launcher = launcher.iter().map(|s| s.to_string()).collect();
        let mut server =
            Server { port: 0, home, project, calls_log, child: None, extra_args: Vec::new(), launcher, _redis: redis };
        server.launch();
        server
    }

    pub fn start() -> Server {
        Server::start_with(json!({}))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join("state")
    }

    pub fn config_path(&self) -> PathBuf {
        self.state_dir().join("config.json")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("logs/server.log")).unwrap_or_default()
    }

    /// The `ccs` command with this server's home and environment.
    pub fn command(&self) -> Command {
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(ccs_bin());
                cmd
            }
            None => Command::new(ccs_bin()),
        };
        cmd.arg("--home")
            .arg(self.state_dir())
            .env("HOME", self.home.path())
            .env_remove("CCS_HOME")
            .env_remove("CCS_CONFIG");
        cmd
    }

    /// Starts the server; again on its last port when that is free (a restarted server keeps
    /// its address, and on a shared queue its identity, host and port).
    pub fn launch(&mut self) {
        for attempt in 0..5 {
            let port = if attempt == 0 && self.port != 0 && port_is_free(self.port) { self.port } else { free_port() };
            let mut cmd = self.command();
            cmd.args(["--port", &port.to_string()]).args(&self.extra_args).arg("serve");
            let mut child =
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn ccs");
            if wait_healthy(port, &mut child) {
                self.port = port;
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("ccs did not start; log:\n{}", self.log_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("server running")
    }

    /// SIGKILL: the server dies without any chance to save anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    pub fn get(&self, path: &str) -> Response {
        http(self.port, "GET", path, None, &[])
    }

    pub fn delete(&self, path: &str) -> Response {
        http(self.port, "DELETE", path, None, &[])
    }

    pub fn post(&self, path: &str, body: Value) -> Response {
        http(self.port, "POST", path, Some(body.to_string().as_bytes()), &[])
    }

    pub fn patch(&self, path: &str, body: Value) -> Response {
        http(self.port, "PATCH", path, Some(body.to_string().as_bytes()), &[])
    }

    /// POSTs on a thread of its own; join the handle for the answer.
    pub fn post_in_background(&self, path: &str, body: Value) -> std::thread::JoinHandle<Response> {
        let (port, path) = (self.port, path.to_string());
        std::thread::spawn(move || http(port, "POST", &path, Some(body.to_string().as_bytes()), &[]))
    }

    /// Waits until the fake CLI has been started `n` times in all; returns the last start.
    pub fn wait_for_runs(&self, n: usize) -> Value {
        assert!(eventually(15, || self.starts().len() >= n), "the CLI was not started {n} time(s)");
        self.starts()[n - 1].clone()
    }

    /// Creates a session with `body` and returns its id.
    pub fn new_session(&self, body: Value) -> String {
        let r = self.post("/api/sessions", body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["session"]["id"].as_str().unwrap().to_string()
    }

    /// POST /api/claude in this server's project folder.
    pub fn ask(&self, prompt: &str) -> Response {
        self.post("/api/claude", json!({"prompt": prompt, "project_path": self.project}))
    }

    /// Every event of the fake CLI's runs, in order (its probes, `--version` and `--help`, left out).
    pub fn calls(&self) -> Vec<Value> {
        self.logged().into_iter().filter(|c| c["event"] != "probe").collect()
    }

    /// The fake CLI's `--version` and `--help` calls (ccs's probes of it).
    pub fn probes(&self) -> Vec<Value> {
        self.logged().into_iter().filter(|c| c["event"] == "probe").collect()
    }

    fn logged(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.calls_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `start` events of the fake CLI (one per run: a one-shot process, or a message to a
    /// live one).
    pub fn starts(&self) -> Vec<Value> {
        self.calls().into_iter().filter(|c| c["event"] == "start").collect()
    }

    /// The processes of the fake CLI that were started: one-shot runs and live processes
    /// (spares included).
    pub fn spawns(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["event"] == "spawn" || (c["event"] == "start" && c["live"] != true))
            .collect()
    }

    /// Rewrites the config file with `change` merged in (the server hot-reloads it).
    pub fn edit_config(&self, change: Value) {
        let mut config: Value = serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap();
        merge(&mut config, change);
        write_and_bump_mtime(&self.config_path(), &serde_json::to_vec_pretty(&config).unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        // Reap whatever the fake left behind in this home (a failed test must not leak sleepers).
        for event in self.calls() {
            if let Some(pid) = event["grandchild_pid"].as_u64() {
                kill_if_ours(pid as u32, &self.home.path().to_string_lossy());
            }
        }
    }
}

/// Writes a file so that its mtime surely differs from the previous one.
pub fn write_and_bump_mtime(path: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    std::fs::write(path, bytes).unwrap();
    if let Some(before) = before {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        let _ = file.set_modified(before + Duration::from_secs(2));
    }
}

pub fn wait_healthy(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            if read_response(&mut stream).status == 200 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Polls `check` until it is true or `secs` pass; returns the last answer.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only sends a signal.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// SIGKILL to `pid` if it is still a process of this test: its command line or environment
/// mentions `marker` (the test's own temp folder). A pid noted a while ago may be another
/// test's server by now: pids wrap around (at 32,768 on many machines).
pub fn kill_if_ours(pid: u32, marker: &str) {
    let mentions = |what: &str| {
        std::fs::read(format!("/proc/{pid}/{what}"))
            .is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
    };
    if !marker.is_empty() && (mentions("cmdline") || mentions("environ")) {
        signal(pid, libc::SIGKILL);
    }
}

/// Whether `pid` is a live process (a zombie counts as gone: it runs nothing).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Not an answer about the process: this test process may be out of descriptors itself
        // (a flood test holds many). Signal 0 needs none (a zombie counts as alive here).
        // SAFETY: kill with signal 0 only checks that the process exists.
        Err(_) => (unsafe { libc::kill(pid as i32, 0) }) == 0,
    }
}

/// The parent pid of `pid`, if it exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

pub fn merge(base: &mut Value, change: Value) {
    match (base, change) {
        (Value::Object(base), Value::Object(change)) => {
            for (k, v) in change {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, change) => *base = change,
    }
}

/// The argv the fake CLI got in one `start` event.
pub fn argv(call: &Value) -> Vec<String> {
    call["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// Whether `argv` has `flag` directly followed by `value`.
pub fn has_option(argv: &[String], flag: &str, value: &str) -> bool {
    argv.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// The most processes of the fake CLI that ran at the same instant, from its start/end log.
pub fn max_overlap(calls: &[Value]) -> usize {
    let mut edges: Vec<(u64, i32)> = calls
        .iter()
        .filter_map(|c| match c["event"].as_str() {
            Some("start") => Some((c["t_ms"].as_u64()?, 1)),
            Some("end") => Some((c["t_ms"].as_u64()?, -1)),
            _ => None,
        })
        .collect();
    // Ends before starts at the same millisecond: touching runs do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// One request a `Receiver` got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A webhook receiver on 127.0.0.1: records every request and answers with the scripted
/// statuses in turn (200 once the script is used up).
pub struct Receiver {
    pub url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    /// `script`: (status, Retry-After seconds) per request.
    pub fn start(script: Vec<(u16, Option<u64>)>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = got.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(received) = read_request(&mut stream) else { continue };
                record.lock().unwrap().push(received);
                let (status, retry_after) = script.next().unwrap_or((200, None));
                let extra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                let answer = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Receiver { url, got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests came in (bounded); returns them all.
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        eventually(secs, || self.received().len() >= n);
        self.received()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let length = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(Received { headers, body: body[..length].to_string() });
            }
        }
    }
}

impl Server {
    /// Polls GET /api/tasks/:id until `done` holds for it (bounded); returns the last task.
    pub fn wait_task(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        eventually(secs, || {
            last = self.get(&format!("/api/tasks/{id}")).json["task"].clone();
            done(&last)
        });
        last
    }

    /// Polls until task `id` reaches a final state.
    pub fn wait_final(&self, id: &str) -> Value {
        self.wait_task(id, 30, |t| {
            matches!(t["status"].as_str(), Some("completed" | "failed" | "timeout" | "cancelled" | "interrupted"))
        })
    }

    /// POST /api/tasks/async in the project folder; returns the task id.
    pub fn submit(&self, body: Value) -> String {
        let mut body = body;
        if body.get("project_path").is_none() && body.get("session_id").is_none() {
            body["project_path"] = json!(self.project);
        }
        let r = self.post("/api/tasks/async", body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["task"]["id"].as_str().unwrap().to_string()
    }

    /// The prompts the fake CLI got, in the order the runs started.
    pub fn prompts_run(&self) -> Vec<String> {
        self.starts().iter().map(|c| c["stdin"].as_str().unwrap_or("").to_string()).collect()
    }
}

/// One Server-Sent Event as received: when (since the request was sent), its name and data.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub at: Duration,
    pub event: String,
    pub data: Value,
}

/// Decodes a chunked HTTP body as it arrives.
pub struct Dechunk {
    inner: std::io::BufReader<TcpStream>,
    left: usize,
    done: bool,
}

impl Read for Dechunk {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.inner.read_line(&mut size)? == 0 {
                return Ok(0);
            }
            self.left = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n;
        if self.left == 0 {
            let mut crlf = String::new();
            self.inner.read_line(&mut crlf)?;
        }
        Ok(n)
    }
}

pub type SseReader = std::io::BufReader<Dechunk>;

/// Opens an event stream; returns the status line and a reader of its events.
pub fn sse_open(port: u16, method: &str, path: &str, body: Option<&Value>) -> (String, SseReader) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to ccs");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut status = String::new();
    use std::io::BufRead;
    reader.read_line(&mut status).unwrap();
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        chunked |= header.to_ascii_lowercase().starts_with("transfer-encoding: chunked");
    }
    assert!(chunked || !status.contains("200"), "an event stream must be chunked");
    (status.trim().to_string(), std::io::BufReader::new(Dechunk { inner: reader, left: 0, done: false }))
}

/// The next event of a stream (comments skipped); `None` at its end.
pub fn sse_next(reader: &mut SseReader, started: Instant) -> Option<SseEvent> {
    use std::io::BufRead;
    let (mut event, mut data) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() && !event.is_empty() {
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            return Some(SseEvent { at: started.elapsed(), event, data });
        }
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        }
    }
}

/// Every event of a stream, to its end.
pub fn sse_all(port: u16, method: &str, path: &str, body: Option<&Value>) -> (String, Vec<SseEvent>) {
    let started = Instant::now();
    let (status, mut reader) = sse_open(port, method, path, body);
    let mut events = Vec::new();
    while let Some(event) = sse_next(&mut reader, started) {
        events.push(event);
    }
    (status, events)
}
