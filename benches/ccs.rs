//! `make bench`: the release `ccs` with an instant fake CLI on 127.0.0.1, measured from outside,
//! printed as one markdown table (docs/benchmarks.md keeps the last one). Loads are bounded:
//! a few seconds each, loopback only. Its own keep-alive HTTP/1.1 load generator needs no tools.
//! The `live` part runs the real claude CLI (`make real-cli`) against a mock Anthropic API; the
//! `redis` part starts redis-servers of its own (`apt-get install redis-server`).

#[path = "../tests/it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::mock_anthropic::MockApi;
use support::redis_server::Redis;
use support::{ccs_bin, free_port, Server, FAKE_CLAUDE};

const LOAD: Duration = Duration::from_secs(3);

struct Row(String, String, String);

/// One part of the table: adds its rows.
type Part = fn(&mut Vec<Row>);

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that this builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benchmark skipped: run it with `make bench`");
        return;
    }
    raise_fd_limit();
    // CCS_BENCH=sync,async runs only those parts (names below); unset runs all.
    let only = std::env::var("CCS_BENCH").unwrap_or_default();
    let parts: [(&str, Part); 10] = [
        ("startup", startup_and_memory),
        ("health", health_load),
        ("burst", burst_of_connections),
        ("slow", slow_clients),
        ("sync", sync_load),
        ("async", async_throughput),
        ("stored", stored_tasks),
        ("redis", redis_servers),
        ("idle", idle_connections),
        ("live", live_processes),
    ];
    let mut rows = Vec::new();
    for (name, part) in parts {
        if only.is_empty() || only.split(',').any(|o| o.trim() == name) {
            part(&mut rows);
        }
    }
    println!("\n| measure | ccs | compare / target |\n|---|---|---|");
    for Row(what, value, compare) in rows {
        println!("| {what} | {value} | {compare} |");
    }
}

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on this process (children inherit it).
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Waits until the server has finished what a load left it (its store writes record files in
/// the background) and the disk has what was written, so the next measurement starts clean.
fn settle(pid: u32) {
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        fields.get(11..13).map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum::<u64>())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = cpu();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = cpu();
        if now == last {
            break;
        }
        last = now;
    }
    // SAFETY: sync() only flushes file system buffers.
    unsafe { libc::sync() };
}

fn rss_kb(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One keep-alive connection: sends a request, reads the whole answer.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
        Conn { reader: BufReader::new(stream) }
    }

    fn call(&mut self, method: &str, path: &str, body: &str) -> u16 {
        self.request(method, path, body).0
    }

    /// Sends one request and reads the whole answer: (status, body); status 0 when the
    /// connection failed.
    fn request(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if self.reader.get_mut().write_all(request.as_bytes()).is_err() {
            return (0, Vec::new());
        }
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line).unwrap_or(0) == 0 {
            return (0, Vec::new());
        }
        let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            chunked |= lower.starts_with("transfer-encoding: chunked");
        }
        let mut answer = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).ok();
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; n + 2];
                self.reader.read_exact(&mut chunk).ok();
                answer.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            answer = vec![0u8; length];
            self.reader.read_exact(&mut answer).ok();
        }
        (status, answer)
    }
}

/// Latencies of the requests (or runs) that succeeded, and the time they took in all.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn p(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        percentile(&sorted, q)
    }

    fn describe(&self) -> String {
        format!("{:.0}/s, p50 {}, p99 {}", self.rate(), ms(self.p(0.5)), ms(self.p(0.99)))
    }
}

/// `n` threads, each making the calls `setup()` returns back to back for `duration` (a call
/// says whether it succeeded).
fn drive<F: FnMut() -> bool>(n: usize, duration: Duration, setup: impl Fn() -> F + Sync) -> Sample {
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    let mut call = setup();
                    let mut mine = Vec::new();
                    while started.elapsed() < duration {
                        let t = Instant::now();
                        if call() {
                            mine.push(t.elapsed());
                        }
                    }
                    mine
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    Sample { latencies, elapsed: started.elapsed() }
}

/// `connections` clients each sending one request back to back for `duration`.
fn load(port: u16, connections: usize, method: &str, path: &str, body: &str, duration: Duration) -> Sample {
    drive(connections, duration, || {
        let mut conn = Conn::open(port);
        move || {
            let ok = conn.call(method, path, body) != 0;
            if !ok {
                conn = Conn::open(port);
            }
            ok
        }
    })
}

/// The fake CLI run directly by `parallel` threads for `duration`.
fn direct(parallel: usize, project: &std::path::Path, claude_dir: &std::path::Path, duration: Duration) -> Sample {
    drive(parallel, duration, || {
        || {
            run_fake(project, claude_dir, "bench");
            true
        }
    })
}

/// One run of the fake CLI as ccs runs a first turn with the default config: the same argv
/// (a new `--session-id`, which the fake saves like the real CLI), the prompt on stdin, stdout
/// and stderr read through pipes.
fn run_fake(project: &std::path::Path, claude_dir: &std::path::Path, prompt: &str) {
    let mut child = Command::new(FAKE_CLAUDE)
        .args(first_turn_argv())
        .current_dir(project)
        .env("CLAUDE_CONFIG_DIR", claude_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(prompt.as_bytes());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the fake CLI failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn first_turn_argv() -> Vec<String> {
    let config = ccs::bench::Config::defaults(std::path::Path::new("/h"), std::path::Path::new("/u"));
    let args = ccs::bench::CliArgs {
        model: Some(config.default_model.clone()),
        max_budget_usd: Some(config.max_budget_usd),
        permission_mode: config.permission_mode.clone(),
        allowed_tools: config.allowed_tools.clone(),
        disallowed_tools: config.disallowed_tools.clone(),
        ..Default::default()
    };
    let session = ccs::bench::SessionFlag::Create(uuid::Uuid::new_v4().to_string());
    ccs::bench::build_argv(&args, &session, false)
}

/// A server for one part. The parts before `live` measure what ccs adds to one CLI process per
/// turn (against the fake run directly the same way), so live processes are off unless a part
/// turns them on.
fn quiet(extra: Value) -> Server {
    let mut config = json!({"logLevel": "warn", "liveCli": {"enabled": false}});
    support::merge(&mut config, extra);
    Server::start_with(config)
}

fn startup_and_memory(rows: &mut Vec<Row>) {
    let home = support::TempDir::new("bench-start");
    let mut times = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(ccs_bin())
            .args(["--home", home.path().to_str().unwrap(), "--port", &port.to_string(), "serve"])
            .env("HOME", home.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while Conn::try_health(port).is_none() {
            std::thread::sleep(Duration::from_micros(500));
        }
        times.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    rows.push(Row("startup to first `/health` (median of 5)".into(), ms(times[2]), String::new()));
    let server = quiet(json!({}));
    std::thread::sleep(Duration::from_secs(1));
    rows.push(Row(
        "idle RSS".into(),
        format!("{} KiB", rss_kb(server.pid())),
        "target ≤ 8 MB; the original: 70 MB".into(),
    ));
    let size = std::fs::metadata(ccs_bin()).map(|m| m.len()).unwrap_or(0);
    rows.push(Row(
        if std::env::var_os("CCS_BIN").is_some() { "binary (static `make release`)" } else { "binary (release build)" }
            .into(),
        format!("{size} bytes"),
        "target ≤ 6 MB (static `make release`)".into(),
    ));
}

impl Conn {
    /// How many tasks have completed, from `GET /api/tasks/queue/status`.
    fn completed(&mut self) -> u64 {
        let (_, body) = self.request("GET", "/api/tasks/queue/status", "");
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["queue"]["completed"].as_u64()).unwrap_or(0)
    }

    fn try_health(port: u16) -> Option<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.starts_with("HTTP/1.1 200").then_some(())
    }
}

fn health_load(rows: &mut Vec<Row>) {
    let server = quiet(json!({}));
    for connections in [1, 16, 64] {
        let sample = load(server.port, connections, "GET", "/health", "", LOAD);
        let target = if connections == 16 { "target ≥ 30,000/s; the original: 6,200/s" } else { "" };
        rows.push(Row(format!("`/health` at {connections} connections"), sample.describe(), target.into()));
    }
    rows.push(Row("RSS after the `/health` load".into(), format!("{} KiB", rss_kb(server.pid())), String::new()));
}

fn sync_load(rows: &mut Vec<Row>) {
    sync_rows(rows, "file", &[1, 4, 16, 64]);
    // What the disk costs: the same without storing anything.
    sync_rows(rows, "memory", &[1, 4]);
}

fn sync_rows(rows: &mut Vec<Row>, storage: &str, levels: &[usize]) {
    // concurrency 64: the worker bound must not be what is measured here.
    let server = quiet(json!({"taskQueue": {"concurrency": 64}, "httpThreads": 64, "storageType": storage}));
    let body = json!({"prompt": "bench", "project_path": server.project}).to_string();
    let claude_dir = server.home.path().join("direct-claude");
    let label = if storage == "file" { String::new() } else { format!(", storageType {storage}") };
    for &connections in levels {
        // Three rounds, ccs then the fake alone, so a drift of the machine hits both alike.
        let (mut ccs, mut fake) = (Sample::default(), Sample::default());
        for _ in 0..3 {
            ccs.merge(load(server.port, connections, "POST", "/api/claude", &body, LOAD / 3));
            settle(server.pid());
            fake.merge(direct(connections, &server.project, &claude_dir, LOAD / 3));
            settle(server.pid());
        }
        rows.push(Row(
            format!("sync `POST /api/claude` at {connections}{label}"),
            ccs.describe(),
            format!(
                "fake direct: {}; ratio {:.2}; p50 overhead {} (target ≤ 2 ms)",
                fake.describe(),
                fake.rate() / ccs.rate().max(0.001),
                ms(ccs.p(0.5).saturating_sub(fake.p(0.5)))
            ),
        ));
    }
    if storage == "file" {
        rows.push(Row(
            "RSS after the sync load".into(),
            format!("{} KiB", rss_kb(server.pid())),
            "the original: 81 sync/s".into(),
        ));
    }
}

fn async_throughput(rows: &mut Vec<Row>) {
    async_run(rows, 1, "file");
    async_run(rows, 8, "file");
    async_run(rows, 8, "memory");
}

/// 1,000 async tasks sent by `clients` connections at once, until the last one completed,
/// against the same number of runs of the fake alone with the same parallelism.
fn async_run(rows: &mut Vec<Row>, clients: usize, storage: &str) {
    const TASKS: usize = 1000;
    const PARALLEL: usize = 4;
    let server = quiet(json!({"taskQueue": {"concurrency": PARALLEL}, "storageType": storage}));
    let body = json!({"prompt": "async bench", "project_path": server.project}).to_string();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let mut conn = Conn::open(server.port);
                for _ in 0..TASKS / clients {
                    assert_eq!(conn.call("POST", "/api/tasks/async", &body), 201);
                }
            });
        }
    });
    let submitted = started.elapsed();
    let mut conn = Conn::open(server.port);
    while conn.completed() < TASKS as u64 {
        assert!(started.elapsed() < Duration::from_secs(600), "the tasks did not all complete");
        std::thread::sleep(Duration::from_millis(2));
    }
    let served = started.elapsed();
    settle(server.pid());
    let claude_dir = server.home.path().join("direct-claude");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| (0..TASKS / PARALLEL).for_each(|_| run_fake(&server.project, &claude_dir, "async bench")));
        }
    });
    let alone = started.elapsed();
    rows.push(Row(
        format!(
            "async: {TASKS} tasks from {clients} client(s), concurrency {PARALLEL}{}",
            if storage == "file" { String::new() } else { format!(", storageType {storage}") }
        ),
        format!(
            "{:.0} tasks/s ({:.2} s; all accepted after {:.2} s)",
            TASKS as f64 / served.as_secs_f64(),
            served.as_secs_f64(),
            submitted.as_secs_f64()
        ),
        format!(
            "fake direct, {PARALLEL} parallel: {:.0} runs/s; ratio {:.2} (target ≤ 1.2)",
            TASKS as f64 / alone.as_secs_f64(),
            served.as_secs_f64() / alone.as_secs_f64()
        ),
    ));
}

/// Writes `n` completed task records straight into the data folder.
fn store_finished_tasks(server: &Server, n: usize) {
    let dir = server.state_dir().join("data/tasks");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let task = json!({
            "id": id, "status": "completed", "priority": 5, "prompt": format!("old {i}"),
            "project_path": server.project, "model": "claude-sonnet-4-5", "session_id": null,
            "created_at": "2026-11-01T00:00:00.000Z", "updated_at": "2026-11-01T00:00:01.000Z",
            "started_at": "2026-11-01T00:00:00.000Z", "completed_at": "2026-11-01T00:00:01.000Z",
            "result": "done", "error": null, "cost_usd": 0.01, "duration_ms": 1000, "num_turns": 1,
            "usage": {"input_tokens": 10, "output_tokens": 10}, "exit_code": 0, "metadata": {},
            "mode": "async", "webhook": null, "seq": i + 1,
        });
        std::fs::write(dir.join(format!("{id}.json")), task.to_string()).unwrap();
    }
}

fn stored_tasks(rows: &mut Vec<Row>) {
    let mut means = Vec::new();
    for stored in [10, 10_000] {
        let mut server = quiet(json!({"taskQueue": {"concurrency": 1}}));
        store_finished_tasks(&server, stored);
        server.kill9();
        let started = Instant::now();
        server.restart();
        let restart = started.elapsed();
        // One long task holds the worker, so the measured submits only queue.
        server.submit(json!({"prompt": "@@sleep=600"}));
        let mut conn = Conn::open(server.port);
        let body = json!({"prompt": "latency", "project_path": server.project}).to_string();
        let (mut submits, mut gets) = (Vec::new(), Vec::new());
        let id = server.submit(json!({"prompt": "to get"}));
        let get_path: &'static str = Box::leak(format!("/api/tasks/{id}").into_boxed_str());
        for _ in 0..200 {
            let t = Instant::now();
            conn.call("POST", "/api/tasks/async", &body);
            submits.push(t.elapsed());
            let t = Instant::now();
            conn.call("GET", get_path, "");
            gets.push(t.elapsed());
        }
        submits.sort();
        gets.sort();
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
        means.push((mean(&submits), mean(&gets)));
        rows.push(Row(
            format!("{stored} stored tasks: submit / get"),
            format!(
                "submit p50 {} p99 {}; get p50 {} p99 {}",
                ms(percentile(&submits, 0.5)),
                ms(percentile(&submits, 0.99)),
                ms(percentile(&gets, 0.5)),
                ms(percentile(&gets, 0.99))
            ),
            format!("restart to `/health`: {} (target ≤ 1 s at 10,000)", ms(restart)),
        ));
    }
    let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-9);
    rows.push(Row(
        "10,000 vs 10 stored (mean)".into(),
        format!("submit ×{:.2}, get ×{:.2}", ratio(means[0].0, means[1].0), ratio(means[0].1, means[1].1)),
        "target ≤ 1.5".into(),
    ));
    restart_with_a_full_journal(rows);
}

/// The worst restart: `kill -9` right after 10,000 tasks were queued, so the journal holds them
/// all (about 15 MB, just under a journal file's 16 MB) and the start replays it.
fn restart_with_a_full_journal(rows: &mut Vec<Row>) {
    const QUEUED: usize = 10_000;
    let mut server = quiet(json!({"taskQueue": {"concurrency": 1, "maxPending": 20_000}}));
    server.submit(json!({"prompt": "@@sleep=600"}));
    server.wait_for_runs(1);
    let body = json!({"prompt": "queued", "project_path": server.project}).to_string();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let mut conn = Conn::open(server.port);
                for _ in 0..QUEUED / 8 {
                    assert_eq!(conn.call("POST", "/api/tasks/async", &body), 201);
                }
            });
        }
    });
    let data = server.state_dir().join("data");
    let journal: u64 = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let started = Instant::now();
    server.restart();
    let restart = started.elapsed();
    let queue = server.get("/api/tasks/queue/status").json["queue"].clone();
    let back = ["pending", "processing", "completed"].iter().map(|k| queue[*k].as_u64().unwrap_or(0)).sum::<u64>();
    assert_eq!(back, QUEUED as u64, "every queued task is back: {queue}");
    rows.push(Row(
        format!("kill -9 with {QUEUED} tasks just queued"),
        format!("restart to `/health`: {} (journal {:.1} MB read)", ms(restart), journal as f64 / 1e6),
        format!("all {back} tasks back in the queue (target ≤ 1 s)"),
    ));
}

/// Workers of each server in the `redis` part, and how long the fake CLI takes a task there:
/// a server runs at most 4 / 0.2 s = 20 tasks/s, and the CLI sleeps rather than working, so
/// the cores are not what bounds it.
const REDIS_CONCURRENCY: usize = 4;
const REDIS_SLEEP_S: f64 = 0.2;
/// Tasks a server of the cluster gets (about 12 s at 20 tasks/s), and the client threads sending.
const REDIS_TASKS_PER_SERVER: usize = 240;
const REDIS_CLIENTS: usize = 4;

/// Several servers on one Redis (issue 14): async throughput of 1, 2 and 3 servers sharing the
/// queue, each task run exactly once; then submit and get latency, Redis store against file.
fn redis_servers(rows: &mut Vec<Row>) {
    let mut one_server = 0.0;
    for n in 1..=3 {
        let rate = redis_throughput(rows, n, one_server);
        if n == 1 {
            one_server = rate;
        }
    }
    redis_latency(rows);
}

/// `n` ccs servers on one private redis-server, sharing the project folder and the CLI's state
/// as tests/it/redis_cluster.rs starts them; the fake CLI of each logs to that server's own
/// file, so its runs can be counted per server. The fields drop in order: Redis last.
struct RedisCluster {
    servers: Vec<Server>,
    shared: support::TempDir,
    _redis: Redis,
}

impl RedisCluster {
    fn start(n: usize) -> RedisCluster {
        let redis = Redis::start();
        let shared = support::TempDir::new("bench-cluster");
        std::fs::create_dir_all(shared.path().join("project")).unwrap();
        let config = json!({
            "storageType": "redis",
            "redisUrl": redis.url(),
            "taskQueue": {"concurrency": REDIS_CONCURRENCY},
            "rateLimit": {"enabled": false},
            "claudeEnv": {"CLAUDE_CONFIG_DIR": shared.path().join("claude-config").display().to_string()},
        });
        let servers = (0..n).map(|_| quiet(config.clone())).collect();
        RedisCluster { servers, shared, _redis: redis }
    }

    fn project(&self) -> std::path::PathBuf {
        self.shared.path().join("project")
    }
}

/// `n` servers on one Redis: `REDIS_TASKS_PER_SERVER` × `n` async tasks sent round-robin to
/// them by `REDIS_CLIENTS` threads, timed until the last one ended; returns its tasks/s.
fn redis_throughput(rows: &mut Vec<Row>, n: usize, one_server: f64) -> f64 {
    let cluster = RedisCluster::start(n);
    let tasks = REDIS_TASKS_PER_SERVER * n;
    let started = Instant::now();
    submit_round_robin(&cluster, tasks);
    let accepted = started.elapsed();
    let queue = wait_until_all_ended(&cluster, tasks, started);
    let took = started.elapsed();
    let rate = tasks as f64 / took.as_secs_f64();
    let bound = (n * REDIS_CONCURRENCY) as f64 / REDIS_SLEEP_S;
    let compare = if n == 1 {
        format!("bound {bound:.0} tasks/s ({:.0}%)", rate / bound * 100.0)
    } else {
        format!(
            "{:.2}× one server{}; bound {bound:.0} tasks/s ({:.0}%)",
            rate / one_server.max(1e-9),
            if n == 3 { " (target ≥ 2.5×)" } else { "" },
            rate / bound * 100.0
        )
    };
    rows.push(Row(
        format!(
            "redis: {tasks} async tasks round-robin to {n} server(s) on one Redis, concurrency \
             {REDIS_CONCURRENCY} each, fake CLI {REDIS_SLEEP_S} s"
        ),
        format!(
            "{rate:.1} tasks/s ({:.2} s; all accepted after {:.2} s); {}",
            took.as_secs_f64(),
            accepted.as_secs_f64(),
            ran_once(&cluster, tasks, &queue)
        ),
        compare,
    ));
    rate
}

/// Sends tasks 0..`tasks` from `REDIS_CLIENTS` threads, task i to server i mod n, each thread
/// on one kept-alive connection to every server.
fn submit_round_robin(cluster: &RedisCluster, tasks: usize) {
    let project = cluster.project();
    std::thread::scope(|scope| {
        for client in 0..REDIS_CLIENTS {
            let project = &project;
            scope.spawn(move || {
                let mut conns: Vec<Conn> = cluster.servers.iter().map(|s| Conn::open(s.port)).collect();
                for i in (client..tasks).step_by(REDIS_CLIENTS) {
                    let body =
                        json!({"prompt": format!("redis bench {i} @@sleep={REDIS_SLEEP_S}"), "project_path": project});
                    let n = conns.len();
                    let (status, answer) = conns[i % n].request("POST", "/api/tasks/async", &body.to_string());
                    assert_eq!(status, 201, "redis: a submit failed: {}", String::from_utf8_lossy(&answer));
                }
            });
        }
    });
}

/// Polls the first server's `GET /api/tasks/queue/status` (the counts of every task in Redis)
/// every 50 ms until all `tasks` are there and none is pending or running; its last answer.
fn wait_until_all_ended(cluster: &RedisCluster, tasks: usize, started: Instant) -> Value {
    // Five times the ideal time, and a minute more: a loaded machine is slow, not stuck.
    let ideal = tasks as f64 * REDIS_SLEEP_S / (cluster.servers.len() * REDIS_CONCURRENCY) as f64;
    let limit = Duration::from_secs_f64(ideal * 5.0 + 60.0);
    let mut conn = Conn::open(cluster.servers[0].port);
    loop {
        let (_, body) = conn.request("GET", "/api/tasks/queue/status", "");
        let queue = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null)["queue"].clone();
        let count = |key: &str| queue[key].as_u64().unwrap_or(0);
        if count("total") >= tasks as u64 && count("pending") + count("processing") == 0 {
            return queue;
        }
        assert!(started.elapsed() < limit, "redis: the tasks did not all end within {limit:?}: {queue}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every task ran exactly once, from the fake CLI's `start` events of all the servers
/// (the prompt names the task), with how many tasks completed and how many runs each server made.
fn ran_once(cluster: &RedisCluster, tasks: usize, queue: &Value) -> String {
    let mut runs: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut per_server = Vec::new();
    for server in &cluster.servers {
        let starts = server.starts();
        per_server.push(starts.len().to_string());
        for start in starts {
            *runs.entry(start["stdin"].as_str().unwrap_or("").to_string()).or_default() += 1;
        }
    }
    let twice = runs.values().filter(|&&count| count > 1).count();
    let completed = queue["completed"].as_u64().unwrap_or(0);
    let verdict = if runs.len() == tasks && twice == 0 { "each exactly once" } else { "NOT each exactly once" };
    format!(
        "{} runs of {tasks} tasks, {} tasks run, {twice} more than once: {verdict}; {completed} completed; \
         runs per server {}",
        runs.values().sum::<usize>(),
        runs.len(),
        per_server.join(" / ")
    )
}

/// Requests of each kind in the latency rows.
const REDIS_LATENCY_REQUESTS: usize = 300;

/// One server on the Redis store and one on the file store, each with its one worker held by a
/// long task so the measured tasks only queue: sequential `POST /api/tasks/async` and `GET
/// /api/tasks/:id` of the task just submitted on one kept-alive connection, in three rounds
/// alternating the servers so a drift of the machine hits both alike.
fn redis_latency(rows: &mut Vec<Row>) {
    let redis = Redis::start();
    let config = |storage: Value| {
        let mut config = json!({"taskQueue": {"concurrency": 1}, "rateLimit": {"enabled": false}});
        support::merge(&mut config, storage);
        config
    };
    let mut servers = [
        quiet(config(json!({"storageType": "redis", "redisUrl": redis.url()}))),
        quiet(config(json!({"storageType": "file"}))),
    ];
    let mut samples = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for server in &servers {
        server.submit(json!({"prompt": "@@sleep=600"}));
        server.wait_for_runs(1);
    }
    let mut conns: Vec<Conn> = servers.iter().map(|s| Conn::open(s.port)).collect();
    for _round in 0..3 {
        for (which, server) in servers.iter().enumerate() {
            settle(server.pid());
            let (submits, gets) = &mut samples[which];
            submit_and_get(&mut conns[which], server, REDIS_LATENCY_REQUESTS / 3, submits, gets);
        }
    }
    let [(redis_submits, redis_gets), (file_submits, file_gets)] = &samples;
    let requests = redis_submits.len();
    rows.push(Row(
        format!("redis: {requests} sequential submits (`POST /api/tasks/async`), one connection, worker busy"),
        format!("Redis store: {}", p50_p99(redis_submits)),
        format!(
            "file store: {}; Redis p50 {}, p99 {}",
            p50_p99(file_submits),
            signed_ms(p50(redis_submits), p50(file_submits)),
            signed_ms(p99(redis_submits), p99(file_submits))
        ),
    ));
    rows.push(Row(
        format!("redis: {requests} `GET /api/tasks/:id` of the task just submitted"),
        format!("Redis store: {}", p50_p99(redis_gets)),
        format!(
            "file store: {}; Redis p50 {}, p99 {}",
            p50_p99(file_gets),
            signed_ms(p50(redis_gets), p50(file_gets)),
            signed_ms(p99(redis_gets), p99(file_gets))
        ),
    ));
    for server in &mut servers {
        server.terminate(); // ends the long task's CLI
    }
}

/// `count` pairs on `conn`: a submit, then a get of the task it made; the times go to `submits`
/// and `gets`.
fn submit_and_get(
    conn: &mut Conn,
    server: &Server,
    count: usize,
    submits: &mut Vec<Duration>,
    gets: &mut Vec<Duration>,
) {
    let body = json!({"prompt": "latency", "project_path": server.project}).to_string();
    for _ in 0..count {
        let t = Instant::now();
        let (status, answer) = conn.request("POST", "/api/tasks/async", &body);
        submits.push(t.elapsed());
        assert_eq!(status, 201, "redis: a submit failed: {}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let path = format!("/api/tasks/{}", answer["task"]["id"].as_str().unwrap_or(""));
        let t = Instant::now();
        let status = conn.call("GET", &path, "");
        gets.push(t.elapsed());
        assert_eq!(status, 200, "redis: a get failed");
    }
}

fn idle_connections(rows: &mut Vec<Row>) {
    let server = quiet(json!({}));
    let before = (threads(server.pid()), rss_kb(server.pid()));
    let idle: Vec<TcpStream> = (0..2000).filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok()).collect();
    std::thread::sleep(Duration::from_secs(1));
    let held = (threads(server.pid()), rss_kb(server.pid()));
    let mut lat = Vec::new();
    for _ in 0..200 {
        // A new connection each time: the worst case for a client arriving while others idle.
        let t = Instant::now();
        Conn::open(server.port).call("GET", "/health", "");
        lat.push(t.elapsed());
    }
    lat.sort();
    rows.push(Row(
        format!("{} idle open connections, then 200 new ones calling `/health`", idle.len()),
        format!(
            "p50 {} p99 {} max {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(percentile(&lat, 1.0))
        ),
        format!("threads {} → {}, RSS {} → {} KiB (http.maxConnections 1024)", before.0, held.0, before.1, held.1),
    ));
    drop(idle);
}

/// `n` keep-alive connections opened at once (or one after the other), each calling `/health`
/// back to back for `LOAD`: (the longest wait of a connection for its first answer, requests/s).
fn burst(port: u16, n: usize, at_once: bool) -> (Duration, f64) {
    let gate = std::sync::Barrier::new(n);
    let opened = std::sync::Mutex::new(());
    let firsts = std::sync::Mutex::new(Vec::new());
    let all_open = std::sync::Barrier::new(n);
    let sample = drive(n, LOAD + Duration::from_secs(1), || {
        gate.wait();
        let turn = (!at_once).then(|| opened.lock().unwrap());
        let t = Instant::now();
        let mut conn = Conn::open(port);
        conn.call("GET", "/health", "");
        firsts.lock().unwrap().push(t.elapsed());
        drop(turn);
        all_open.wait();
        move || conn.call("GET", "/health", "") == 200
    });
    let longest = firsts.into_inner().unwrap().into_iter().max().unwrap_or_default();
    (longest, sample.rate())
}

fn burst_of_connections(rows: &mut Vec<Row>) {
    let server = quiet(json!({}));
    for n in [16, 64] {
        let (wait, rate) = burst(server.port, n, true);
        let (_, one_by_one) = burst(server.port, n, false);
        rows.push(Row(
            format!("{n} keep-alive connections opened at once"),
            format!("longest wait for a first answer {}, {rate:.0}/s", ms(wait)),
            format!(
                "opened one at a time: {one_by_one:.0}/s ({:+.1}%); target: wait ≤ 100 ms, within 10%",
                (rate / one_by_one - 1.0) * 100.0
            ),
        ));
    }
}

/// 200 clients sending a request head one byte every 0.5 s while one client measures `/health`.
fn slow_clients(rows: &mut Vec<Row>) {
    let server = quiet(json!({}));
    let port = server.port;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sample = std::thread::scope(|scope| {
        for _ in 0..200 {
            scope.spawn(|| {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return };
                for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter().cycle() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let sample = load(port, 1, "GET", "/health", "", LOAD);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        sample
    });
    rows.push(Row(
        "`/health` from 1 connection while 200 clients send their heads a byte each 0.5 s".into(),
        sample.describe(),
        "the slow ones are cut off at http.readTimeoutMs".into(),
    ));
}

/// Rounds of the `live` part (one sample of each kind a round), and the time they may take.
const LIVE_ROUNDS: usize = 20;
const LIVE_BUDGET: Duration = Duration::from_secs(65);

/// The real CLI of the `live` part: `CCS_REAL_CLAUDE`, else the 2.1.197 `make real-cli` installs;
/// `Err(path)` when it is not there.
fn real_claude() -> Result<String, String> {
    let installed = concat!(env!("CARGO_MANIFEST_DIR"), "/target/real-cli/2.1.197/node_modules/.bin/claude");
    let path = std::env::var("CCS_REAL_CLAUDE").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| installed.into());
    if std::path::Path::new(&path).exists() {
        Ok(path)
    } else {
        Err(path)
    }
}

/// (pid, parent pid, CPU ticks used) of every process of `root`'s tree, `root` included.
fn process_tree(root: u32) -> Vec<(u32, u32, u64)> {
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let cpu = fields.get(11..13)?.iter().filter_map(|v| v.parse::<u64>().ok()).sum();
            Some((pid, fields.get(1)?.parse().ok()?, cpu))
        })
        .collect();
    let mut mine = vec![root];
    loop {
        let before = mine.len();
        for (pid, parent, _) in &all {
            if mine.contains(parent) && !mine.contains(pid) {
                mine.push(*pid);
            }
        }
        if mine.len() == before {
            break;
        }
    }
    all.into_iter().filter(|(pid, _, _)| mine.contains(pid)).collect()
}

/// The live claude processes of ccs `root` (its children marked `CCS_SESSION_ID`): (session id,
/// pid). A spare carries the id of the session that takes it.
fn live_clis(root: u32) -> Vec<(String, u32)> {
    process_tree(root)
        .into_iter()
        .filter(|(_, parent, _)| *parent == root)
        .filter_map(|(pid, _, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let id = environ.split(|b| *b == 0).find_map(|e| e.strip_prefix(b"CCS_SESSION_ID="))?;
            Some((String::from_utf8_lossy(id).into_owned(), pid))
        })
        .collect()
}

/// Waits (3 s at most) until `root` and every process under it use no more CPU: one tick at
/// most in 200 ms.
fn settle_tree(root: u32) {
    let cpu = || process_tree(root).iter().map(|(_, _, ticks)| ticks).sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = cpu();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu();
        if now <= last + 1 {
            break;
        }
        last = now;
    }
}

fn live_counts(server: &Server) -> Value {
    server.get("/health").json["live"].clone()
}

/// Waits until ccs has its spare (`/health`), then 1 s for the CLI to be ready and until nothing
/// of this bench (the servers, their CLIs, the direct ones) uses CPU; false when no spare came
/// within 30 s.
fn wait_for_spare(server: &Server) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_counts(server)["spares"].as_u64().unwrap_or(0) < 1 {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    settle_tree(std::process::id());
    true
}

/// One sync `POST /api/claude` with `body` (made beforehand): its time, and the session id when
/// it answered 200 with the mock API's echo of `prompt`.
fn timed_turn(conn: &mut Conn, body: &str, prompt: &str) -> (Duration, Option<String>) {
    let started = Instant::now();
    let (status, answer) = conn.request("POST", "/api/claude", body);
    let took = started.elapsed();
    let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if status != 200 || answer["result"] != format!("echo: {prompt}") {
        eprintln!("live: a turn through ccs failed ({status}): {answer}");
        return (took, None);
    }
    (took, answer["session_id"].as_str().map(str::to_string))
}

/// One cold run of the real CLI as ccs runs a first turn (`first_turn_argv`: `-p --output-format
/// json --model <default> --max-budget-usd <default> --session-id <new>`, the prompt on stdin),
/// in `project` with `env`: its wall time until exit, if it answered.
fn cold_direct(claude: &str, env: &Value, project: &std::path::Path, prompt: &str) -> Option<Duration> {
    let mut command = Command::new(claude);
    command.args(first_turn_argv()).current_dir(project);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env.as_object()? {
        command.env(key, value.as_str()?);
    }
    let started = Instant::now();
    let mut child = command.spawn().ok()?;
    let _ = child.stdin.take()?.write_all(prompt.as_bytes());
    let output = child.wait_with_output().ok()?;
    let took = started.elapsed();
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if !output.status.success() || answer["result"] != format!("echo: {prompt}") {
        eprintln!("live: a direct run failed ({}): {}", output.status, String::from_utf8_lossy(&output.stdout));
        return None;
    }
    Some(took)
}

/// The real CLI started the way ccs starts a spare (stream-json in and out, the default model,
/// twice the default budget, a new `--session-id`), run directly: ccs left out of a live turn.
struct DirectLive {
    child: std::process::Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl DirectLive {
    fn start(claude: &str, env: &Value, project: &std::path::Path) -> Option<DirectLive> {
        let config = ccs::bench::Config::defaults(std::path::Path::new("/h"), std::path::Path::new("/u"));
        let args = ccs::bench::CliArgs {
            model: Some(config.default_model.clone()),
            max_budget_usd: Some(config.max_budget_usd * 2.0),
            permission_mode: config.permission_mode.clone(),
            allowed_tools: config.allowed_tools.clone(),
            disallowed_tools: config.disallowed_tools.clone(),
            ..Default::default()
        };
        let session = ccs::bench::SessionFlag::Create(uuid::Uuid::new_v4().to_string());
        let mut argv = ccs::bench::build_argv(&args, &session, true);
        argv.splice(1..1, ["--input-format".to_string(), "stream-json".to_string()]);
        let mut command = Command::new(claude);
        command.args(argv).current_dir(project).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        for (key, value) in env.as_object()? {
            command.env(key, value.as_str()?);
        }
        let mut child = command.spawn().ok()?;
        let stdout = BufReader::new(child.stdout.take()?);
        Some(DirectLive { child, stdout })
    }

    /// Writes one user message and reads up to its `result` event: the time, if it echoed.
    fn turn(&mut self, prompt: &str) -> Option<Duration> {
        let message =
            json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": prompt}]}});
        let started = Instant::now();
        let stdin = self.child.stdin.as_mut()?;
        stdin.write_all(format!("{message}\n").as_bytes()).ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
                eprintln!("live: a direct stream-json CLI ended without a result");
                return None;
            }
            let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if event["type"] == "result" {
                let took = started.elapsed();
                let echoed = event["result"] == format!("echo: {prompt}");
                if !echoed {
                    eprintln!("live: a direct stream-json turn failed: {event}");
                }
                return echoed.then_some(took);
            }
        }
    }
}

impl Drop for DirectLive {
    /// Closing stdin ends the CLI; killed if it is still there after 5 s.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn p50_p99(latencies: &[Duration]) -> String {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    format!("p50 {}, p99 {} ({} samples)", ms(percentile(&sorted, 0.5)), ms(percentile(&sorted, 0.99)), sorted.len())
}

fn p50(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    percentile(&sorted, 0.5)
}

fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    percentile(&sorted, 0.99)
}

/// `a - b`, signed.
fn signed_ms(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
}

fn ratio_of_p50(a: &[Duration], b: &[Duration]) -> f64 {
    p50(a).as_secs_f64() / p50(b).as_secs_f64().max(1e-9)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Live CLI processes (SPEC 13) with the real CLI against an instant mock API on 127.0.0.1:
/// a first turn taking a spare, a follow-up on a session's live process, and a cold run of the
/// CLI alone (and, for reference, a cold turn through a ccs with live processes off), one of
/// each a round so the machine's drift hits all alike; then what ccs and the processes hold.
fn live_processes(rows: &mut Vec<Row>) {
    let claude = match real_claude() {
        Ok(path) => path,
        Err(path) => {
            rows.push(Row(
                "live CLI processes (issue 13)".into(),
                "skipped".into(),
                format!("no claude CLI at {path}: run `make real-cli`, or set CCS_REAL_CLAUDE"),
            ));
            return;
        }
    };
    let part_started = Instant::now();
    let mock = MockApi::start();
    let dir = support::TempDir::new("bench-live");
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let env = mock.offline_env(&dir.path().join("cli-home"));
    let config = |enabled: bool| {
        json!({
            "claudePath": claude,
            "claudeEnv": env,
            "defaultProjectPath": project,
            "liveCli": {"enabled": enabled, "spares": 1, "maxProcesses": 4},
            "taskQueue": {"concurrency": 2, "defaultTimeout": 120_000},
        })
    };
    let mut live = quiet(config(true));
    let mut cold = quiet(config(false));
    let mut version = String::from("?");
    for server in [&live, &cold] {
        let probed = support::eventually(60, || server.get("/health").json["cli"]["probing"] == false);
        version = server.get("/health").json["cli"]["version"].as_str().unwrap_or("?").to_string();
        assert!(probed && version != "?", "ccs did not probe {claude}");
    }
    assert!(wait_for_spare(&live), "no spare claude process within 30 s:\n{}", live.log_text());
    let ccs_rss_before = rss_kb(live.pid());
    let spare_rss = live_counts(&live)["rss_bytes"].as_u64().unwrap_or(0);

    let (mut live_conn, mut cold_conn) = (Conn::open(live.port), Conn::open(cold.port));
    let plain = |prompt: &str| json!({"prompt": prompt}).to_string();
    // One of each, not measured (the CLI's files into the page cache); its session and direct
    // process take the first follow-ups.
    cold_direct(&claude, &env, &project, "warm up");
    timed_turn(&mut cold_conn, &plain("warm up"), "warm up");
    let mut session = timed_turn(&mut live_conn, &plain("warm up"), "warm up").1;
    let mut direct_used = DirectLive::start(&claude, &env, &project);
    direct_used.as_mut().and_then(|cli| cli.turn("warm up"));
    let mut direct_ahead = DirectLive::start(&claude, &env, &project);

    let (mut first, mut follow, mut direct, mut cold_ccs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut direct_first, mut direct_follow) = (Vec::new(), Vec::new());
    let (mut took_spare, mut on_its_process) = (0, 0);
    let rounds = Instant::now();
    for round in 0..LIVE_ROUNDS {
        if rounds.elapsed() > LIVE_BUDGET || !wait_for_spare(&live) {
            break;
        }
        // Each pair of kinds alternates which goes first (the first run after the quiet wait).
        let order = [round % 2, 1 - round % 2];
        for kind in order {
            if kind == 0 {
                let prompt = format!("cold direct {round}");
                direct.extend(cold_direct(&claude, &env, &project, &prompt));
            } else {
                let prompt = format!("cold through ccs {round}");
                if let (took, Some(_)) = timed_turn(&mut cold_conn, &plain(&prompt), &prompt) {
                    cold_ccs.push(took);
                }
            }
        }
        // Follow-ups: the session of the last round's first turn, whose process took that turn,
        // and the direct process that took the last round's first message.
        let previous = session.take();
        for kind in order {
            let prompt = format!("follow-up {round}");
            match (kind, &previous) {
                (0, Some(id)) => {
                    let pid_of = || live_clis(live.pid()).into_iter().find(|(s, _)| s == id).map(|(_, pid)| pid);
                    let before = pid_of();
                    let body = json!({"prompt": prompt, "session_id": id}).to_string();
                    if let (took, Some(_)) = timed_turn(&mut live_conn, &body, &prompt) {
                        follow.push(took);
                        on_its_process += usize::from(before.is_some() && before == pid_of());
                    }
                }
                (0, None) => {}
                _ => direct_follow.extend(direct_used.as_mut().and_then(|cli| cli.turn(&prompt))),
            }
        }
        // First turns: a new session (taking the spare), and the direct process started ahead.
        for kind in order {
            let prompt = format!("first turn {round}");
            if kind == 0 {
                let spares: Vec<String> = live_clis(live.pid()).into_iter().map(|(id, _)| id).collect();
                if let (took, Some(id)) = timed_turn(&mut live_conn, &plain(&prompt), &prompt) {
                    first.push(took);
                    took_spare += usize::from(spares.contains(&id));
                    session = Some(id);
                }
            } else if let Some(mut cli) = direct_ahead.take() {
                direct_first.extend(cli.turn(&prompt));
                direct_used = Some(cli); // the one used before ends here
            }
        }
        // Deleting the old session ends its process: the pool (maxProcesses) never fills with
        // idle sessions, which would leave no room for the next spare.
        if let Some(id) = previous {
            live_conn.call("DELETE", &format!("/api/sessions/{id}"), "");
        }
        direct_ahead = DirectLive::start(&claude, &env, &project);
    }
    drop((direct_used, direct_ahead));
    let rounds = rounds.elapsed();
    wait_for_spare(&live);
    let ccs_rss_after = rss_kb(live.pid());
    let cold_rss = rss_kb(cold.pid());
    // The pool filled: new sessions until only the spare's slot is left.
    let mut filling = 0;
    while live_counts(&live)["sessions"].as_u64().unwrap_or(0) < 3 && filling < 4 && wait_for_spare(&live) {
        let prompt = format!("fill {filling}");
        timed_turn(&mut live_conn, &plain(&prompt), &prompt);
        filling += 1;
    }
    wait_for_spare(&live);
    let counts = live_counts(&live);
    let held = counts["sessions"].as_u64().unwrap_or(0) + counts["spares"].as_u64().unwrap_or(0);
    let held_rss = counts["rss_bytes"].as_u64().unwrap_or(0);

    let label = format!("claude {version}, real, instant mock API");
    rows.push(Row(
        format!("live: first turn through ccs with a spare ({label})"),
        p50_p99(&first),
        format!(
            "{:.2} of the cold direct run's p50 (target ≤ 0.25); {took_spare} of {} took the spare",
            ratio_of_p50(&first, &direct),
            first.len()
        ),
    ));
    rows.push(Row(
        "live: follow-up turn in a live session (`session_id`)".into(),
        p50_p99(&follow),
        format!(
            "{:.2} of the cold direct run's p50 (target ≤ 0.10); {on_its_process} of {} on the session's live process",
            ratio_of_p50(&follow, &direct),
            follow.len()
        ),
    ));
    rows.push(Row(
        "live: first message to a stream-json CLI started ahead, run directly (ccs left out)".into(),
        p50_p99(&direct_first),
        format!("ccs's first turn with a spare: p50 {} against it", signed_ms(p50(&first), p50(&direct_first))),
    ));
    rows.push(Row(
        "live: next message to that CLI, run directly".into(),
        p50_p99(&direct_follow),
        format!("ccs's follow-up turn: p50 {} against it", signed_ms(p50(&follow), p50(&direct_follow))),
    ));
    rows.push(Row(
        "live: cold direct CLI run (`claude -p --output-format json --session-id <new>`, prompt on stdin)".into(),
        p50_p99(&direct),
        "a first turn without live processes, ccs left out".into(),
    ));
    rows.push(Row(
        "live: cold turn through ccs with `liveCli.enabled: false`".into(),
        p50_p99(&cold_ccs),
        format!(
            "{:.2} of the cold direct run's p50 ({})",
            ratio_of_p50(&cold_ccs, &direct),
            signed_ms(p50(&cold_ccs), p50(&direct))
        ),
    ));
    rows.push(Row(
        "live: idle RSS of ccs itself (VmRSS)".into(),
        format!("{ccs_rss_before} KiB before any turn (1 spare), {ccs_rss_after} KiB after the live rows"),
        format!("the ccs with live processes off, after its cold turns: {cold_rss} KiB"),
    ));
    rows.push(Row(
        "live: memory of live processes (`/health` `live.rss_bytes`)".into(),
        format!(
            "1 spare: {}; {} idle sessions + {} spare: {} ({} a process)",
            mib(spare_rss),
            counts["sessions"],
            counts["spares"],
            mib(held_rss),
            mib(held_rss / held.max(1))
        ),
        format!(
            "liveCli.maxProcesses 4; the rounds took {:.1} s, the part {:.1} s",
            rounds.as_secs_f64(),
            part_started.elapsed().as_secs_f64()
        ),
    ));
    live.terminate();
    cold.terminate();
}
