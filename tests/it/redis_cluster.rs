//! Several servers on one Redis (SPEC 12, `storageType: "redis"`): tasks sent to any of them run
//! exactly once, in priority order across all of them; a session's turns stay in order whichever
//! server gets them; a cancel reaches the server that runs the task; a server killed mid-task has
//! its task marked `interrupted` by the others once its lease expires; Redis killed and started
//! again loses no acknowledged task; a wrong `redisUrl` or a prefix that holds another program's
//! keys is refused at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};

use crate::support::redis_server::Redis;
use crate::support::{alive, argv, eventually, max_overlap, Receiver, Server, TempDir};

/// What the servers of one cluster share: Redis, the project folder and the CLI's state (the
/// transcripts `--resume` reads), and one log of the fake CLI's runs.
struct Cluster {
    redis: Redis,
    shared: TempDir,
    servers: Vec<Server>,
}

const LEASE_MS: u64 = 2_000;

impl Cluster {
    fn start(n: usize, config: Value) -> Cluster {
        let redis = Redis::start();
        let shared = TempDir::new("cluster");
        std::fs::create_dir_all(shared.path().join("project")).unwrap();
        let mut cluster = Cluster { redis, shared, servers: Vec::new() };
        for _ in 0..n {
            cluster.add(config.clone());
        }
        cluster
    }

    fn add(&mut self, config: Value) -> &Server {
        let mut base = json!({
            "storageType": "redis",
            "redisUrl": self.redis.url(),
            "redisLeaseMs": LEASE_MS,
            "claudeEnv": {
                "FAKE_CLAUDE_LOG": self.log().display().to_string(),
                "CLAUDE_CONFIG_DIR": self.shared.path().join("claude-config").display().to_string(),
            },
        });
        crate::support::merge(&mut base, config);
        self.servers.push(Server::start_with(base));
        self.servers.last().unwrap()
    }

    fn log(&self) -> PathBuf {
        self.shared.path().join("fake-calls.jsonl")
    }

    fn project(&self) -> PathBuf {
        self.shared.path().join("project")
    }

    /// The fake CLI's `start` events of every server, in the order they were logged.
    fn starts(&self) -> Vec<Value> {
        logged(&self.log()).into_iter().filter(|c| c["event"] == "start").collect()
    }

    fn submit(&self, server: usize, body: Value) -> String {
        let mut body = body;
        if body.get("session_id").is_none() {
            body["project_path"] = json!(self.project());
        }
        let r = self.servers[server].post("/api/tasks/async", body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["task"]["id"].as_str().unwrap().to_string()
    }
}

fn logged(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Runs `ccs serve` with `config`, which must refuse to start; returns what it said.
fn refused_start(config: Value) -> String {
    let home = TempDir::new("refused");
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    let out = std::process::Command::new(crate::support::ccs_bin())
        .arg("--home")
        .arg(home.path())
        .args(["--port", &crate::support::free_port().to_string(), "serve"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "it started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn prompt_of(start: &Value) -> String {
    start["stdin"].as_str().unwrap_or("").to_string()
}

#[test]
fn five_hundred_tasks_sent_to_three_servers_run_exactly_once() {
    let cluster = Cluster::start(3, json!({"taskQueue": {"concurrency": 2}}));
    let ids: Vec<String> = (0..500)
        .map(|i| cluster.submit(i % 3, json!({"prompt": format!("job {i}"), "priority": 1 + i % 10})))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let task = cluster.servers[(i + 1) % 3].wait_final(id);
        assert_eq!(task["status"], "completed", "{task}");
    }
    let mut runs: HashMap<String, usize> = HashMap::new();
    for start in cluster.starts() {
        *runs.entry(prompt_of(&start)).or_default() += 1;
    }
    assert_eq!(runs.len(), 500, "every task ran");
    assert!(
        runs.values().all(|&n| n == 1),
        "a task ran twice: {:?}",
        runs.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    // Statistics are shared: every server counts all 500 runs, once.
    for server in &cluster.servers {
        let summary = server.get("/api/statistics/summary").json["statistics"].clone();
        assert_eq!(summary["requests"]["total"], 500, "{summary}");
    }
}

#[test]
fn priorities_hold_across_servers() {
    let cluster = Cluster::start(2, json!({"taskQueue": {"concurrency": 1}}));
    // Both workers busy until every task below has arrived (at either server); then both free.
    let blockers: Vec<String> =
        (0..2).map(|i| cluster.submit(i, json!({"prompt": format!("blocker {i} @@sleep=60")}))).collect();
    assert!(eventually(15, || cluster.starts().len() == 2), "both servers run a blocker");
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(cluster.submit(i % 2, json!({"prompt": format!("low {i}"), "priority": 2})));
        ids.push(cluster.submit((i + 1) % 2, json!({"prompt": format!("high {i}"), "priority": 9})));
    }
    for (i, blocker) in blockers.iter().enumerate() {
        assert_eq!(cluster.servers[1 - i].delete(&format!("/api/tasks/{blocker}")).status, 200);
    }
    for id in &ids {
        assert_eq!(cluster.servers[0].wait_final(id)["status"], "completed");
    }
    let order: Vec<String> = cluster.starts().iter().skip(2).map(prompt_of).collect();
    // Every high one is taken before any low one; but the two servers start what they took on
    // their own, so the high one the other server took at the same moment may start (and log)
    // just after the first low one: at most one, with two workers.
    let first_low = order.iter().position(|p| p.starts_with("low")).unwrap();
    let highs_after = order[first_low..].iter().filter(|p| p.starts_with("high")).count();
    assert!(highs_after <= 1, "every high-priority task was taken before any low one: {order:?}");
    assert!(order[..first_low].iter().filter(|p| p.starts_with("high")).count() >= 5, "{order:?}");
}

#[test]
fn a_sessions_turns_sent_to_different_servers_run_in_order() {
    let cluster = Cluster::start(3, json!({"taskQueue": {"concurrency": 2}}));
    let r = cluster.servers[0].post("/api/sessions", json!({"project_path": cluster.project()}));
    assert_eq!(r.status, 201, "{}", r.text);
    let session = r.json["session"]["id"].as_str().unwrap().to_string();
    let ids: Vec<String> = (0..6)
        .map(|i| cluster.submit(i % 3, json!({"prompt": format!("turn {i} @@sleep=0.2"), "session_id": session})))
        .collect();
    for id in &ids {
        assert_eq!(cluster.servers[2].wait_final(id)["status"], "completed");
    }
    let starts = cluster.starts();
    let order: Vec<String> = starts.iter().map(prompt_of).collect();
    let expected: Vec<String> = (0..6).map(|i| format!("turn {i} @@sleep=0.2")).collect();
    assert_eq!(order, expected, "the turns ran in the order they were sent");
    let runs: Vec<Value> =
        logged(&cluster.log()).into_iter().filter(|c| c["event"] == "start" || c["event"] == "end").collect();
    assert_eq!(max_overlap(&runs), 1, "two turns of one session never overlap");
    // Every turn after the first continued the conversation (`--resume`, or a live process).
    let session_after = cluster.servers[1].get(&format!("/api/sessions/{session}")).json["session"].clone();
    assert_eq!(session_after["messages_count"], 6, "{session_after}");
    let resumed = starts
        .iter()
        .skip(1)
        .filter(|s| s["live"] == true || argv(s).iter().any(|a| a.starts_with("--resume")))
        .count();
    assert_eq!(resumed, 5);
}

#[test]
fn a_cancel_sent_to_another_server_kills_the_process_where_it_runs() {
    let mut cluster = Cluster::start(1, json!({"taskQueue": {"concurrency": 1}}));
    let id = cluster.submit(0, json!({"prompt": "long @@sleep=60"}));
    assert!(eventually(15, || cluster.starts().len() == 1));
    let pid = cluster.starts()[0]["pid"].as_u64().unwrap() as u32;
    cluster.add(json!({"taskQueue": {"concurrency": 1}}));
    let r = cluster.servers[1].delete(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    let task = cluster.servers[1].wait_task(&id, 15, |t| t["status"] == "cancelled");
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(eventually(10, || !alive(pid)), "the CLI process {pid} on the other server was killed");
}

#[test]
fn a_server_killed_mid_task_has_its_task_interrupted_by_the_survivors() {
    let receiver = Receiver::start(vec![]);
    let mut cluster = Cluster::start(1, json!({"taskQueue": {"concurrency": 1}}));
    let id = cluster.submit(0, json!({"prompt": "long @@sleep=60", "webhook_url": receiver.url}));
    assert!(eventually(15, || cluster.starts().len() == 1));
    cluster.add(json!({"taskQueue": {"concurrency": 1}}));
    let killed_at = std::time::Instant::now();
    cluster.servers[0].kill9();
    let task = cluster.servers[1].wait_task(&id, 20, |t| t["status"] == "interrupted");
    assert_eq!(task["status"], "interrupted", "{task}");
    let waited = killed_at.elapsed().as_millis() as u64;
    assert!(waited < LEASE_MS + 10_000, "marked after {waited} ms (lease {LEASE_MS} ms)");
    let hooks = receiver.wait_for(1, 15);
    assert_eq!(hooks.len(), 1, "one webhook for the interrupted task");
    assert_eq!(hooks[0].json()["data"]["status"], "interrupted", "{}", hooks[0].body);
    // It is not run again by itself.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(cluster.starts().len(), 1);
}

#[test]
fn redis_killed_and_started_again_loses_no_acknowledged_task() {
    let mut cluster = Cluster::start(2, json!({"taskQueue": {"concurrency": 2}}));
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push(cluster.submit(i % 2, json!({"prompt": format!("before {i} @@sleep=0.1")})));
    }
    cluster.redis.kill9();
    // While Redis is down: a clear 503, and /health says why.
    let r = cluster.servers[0].post("/api/tasks/async", json!({"prompt": "during", "project_path": cluster.project()}));
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.error().contains("Redis"), "{}", r.text);
    let health = cluster.servers[1].get("/health");
    assert!(health.text.contains("Redis"), "{}", health.text);
    cluster.redis.launch();
    for i in 0..20 {
        acknowledged.push(cluster.submit(i % 2, json!({"prompt": format!("after {i}")})));
    }
    for id in &acknowledged {
        let task = cluster.servers[0].wait_final(id);
        assert!(
            matches!(task["status"].as_str(), Some("completed" | "interrupted")),
            "acknowledged task {id} ended {task}"
        );
    }
    let completed = acknowledged
        .iter()
        .filter(|id| cluster.servers[1].get(&format!("/api/tasks/{id}")).json["task"]["status"] == "completed")
        .count();
    assert!(completed >= 36, "only {completed} of 40 completed");
}

#[test]
fn a_task_that_ends_while_redis_is_down_has_its_end_saved_once_redis_is_back() {
    // A lease longer than the outage: the server that ran the task still holds it when Redis is
    // back, so nobody but that server can end it.
    let mut cluster = Cluster::start(2, json!({"taskQueue": {"concurrency": 1}, "redisLeaseMs": 30_000}));
    let id = cluster.submit(0, json!({"prompt": "short @@sleep=2"}));
    assert!(eventually(15, || cluster.starts().len() == 1));
    std::thread::sleep(std::time::Duration::from_millis(1200)); // its start is in the AOF
    cluster.redis.kill9();
    std::thread::sleep(std::time::Duration::from_millis(2500)); // its CLI ends meanwhile
    cluster.redis.launch();
    let unfinished = |t: &Value| matches!(t["status"].as_str(), Some("pending" | "processing") | None);
    let seen: Vec<Value> = (0..2).map(|i| cluster.servers[i].wait_task(&id, 15, |t| !unfinished(t))).collect();
    for task in &seen {
        assert!(!unfinished(task), "the task never ends on one server: {task}");
    }
    assert_eq!(seen[0]["status"], seen[1]["status"], "both servers show one end");
}

#[test]
fn a_wrong_redis_url_fails_at_start_with_a_clear_error() {
    let port = crate::support::free_port();
    let stderr = refused_start(json!({"storageType": "redis", "redisUrl": format!("redis://127.0.0.1:{port}/0")}));
    assert!(stderr.contains("redisUrl") && stderr.contains("not reachable"), "{stderr}");
}

#[test]
fn keys_of_another_program_under_the_prefix_are_refused_and_never_touched() {
    let redis = Redis::start();
    redis.cli(&["SET", "ccs:theirs", "their value"]);
    redis.cli(&["SET", "elsewhere", "also theirs"]);
    let stderr = refused_start(json!({"storageType": "redis", "redisUrl": redis.url()}));
    assert!(stderr.contains("redisKeyPrefix") && stderr.contains("ccs:theirs"), "{stderr}");
    // With a prefix of its own, it runs beside them and leaves them as they were.
    let server =
        Server::start_with(json!({"storageType": "redis", "redisUrl": redis.url(), "redisKeyPrefix": "mine:"}));
    let id = server.submit(json!({"prompt": "hello"}));
    assert_eq!(server.wait_final(&id)["status"], "completed");
    assert_eq!(redis.cli(&["GET", "ccs:theirs"]), "their value");
    assert_eq!(redis.cli(&["GET", "elsewhere"]), "also theirs");
    let ours = redis.cli(&["KEYS", "*"]);
    assert!(ours.lines().all(|k| k.starts_with("mine:") || k == "ccs:theirs" || k == "elsewhere"), "{ours}");
}

#[test]
fn copy_to_redis_moves_a_file_store_and_its_waiting_tasks_run_on_redis() {
    let redis = Redis::start();
    let mut server =
        Server::start_with(json!({"storageType": "file", "taskQueue": {"concurrency": 1, "killGraceMs": 200}}));
    let done = server.submit(json!({"prompt": "finished before the move"}));
    assert_eq!(server.wait_final(&done)["status"], "completed");
    let running = server.submit(json!({"prompt": "long @@sleep=30"}));
    server.wait_for_runs(2);
    let waiting: Vec<String> = (0..2).map(|i| server.submit(json!({"prompt": format!("waiting {i}")}))).collect();
    assert_eq!(server.terminate(), Some(0));

    let copy = |server: &Server| {
        server.edit_config(json!({"redisUrl": redis.url()}));
        server.command().arg("copy-to-redis").output().unwrap()
    };
    let out = copy(&server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("tasks: 4 copied, 0 already there"), "{stdout}");
    let again = copy(&server);
    assert!(String::from_utf8_lossy(&again.stdout).contains("tasks: 0 copied, 4 already there"));

    server.edit_config(json!({"storageType": "redis"}));
    server.launch();
    assert_eq!(server.get(&format!("/api/tasks/{done}")).json["task"]["status"], "completed");
    assert_eq!(server.get(&format!("/api/tasks/{running}")).json["task"]["status"], "interrupted");
    for id in &waiting {
        assert_eq!(server.wait_final(id)["status"], "completed", "waiting task {id} ran on Redis");
    }
    assert!(redis.cli(&["EXISTS", &format!("ccs:tasks:{done}")]) == "1", "the records are in Redis");
}

#[test]
fn a_keys_rate_limit_holds_across_servers() {
    const KEY: &str = "a-long-enough-api-key-for-the-cluster";
    let limited =
        json!({"auth": {"apiKeys": [KEY]}, "rateLimit": {"enabled": true, "maxRequests": 4, "windowMs": 86400000}});
    let cluster = Cluster::start(2, limited);
    let ask = |server: usize| {
        crate::support::http(cluster.servers[server].port, "GET", "/api/tasks", None, &[("X-API-Key", KEY)])
    };
    let statuses: Vec<u16> = [0, 1, 0, 1, 0, 1].iter().map(|&s| ask(s).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429], "4 requests in all, whichever server");
    let refused = ask(1);
    assert!(refused.header("Retry-After").is_some());
    // The API key is not a Redis key name.
    assert!(!cluster.redis.cli(&["KEYS", "*"]).contains(KEY));
}

#[test]
fn a_task_taken_by_a_server_that_died_before_starting_it_runs_elsewhere() {
    let mut cluster = Cluster::start(1, json!({"taskQueue": {"concurrency": 1}}));
    let blocker = cluster.submit(0, json!({"prompt": "blocker @@sleep=60"}));
    assert!(eventually(15, || cluster.starts().len() == 1));
    let id = cluster.submit(0, json!({"prompt": "taken, never started"}));
    // A server took it (out of the ready set, claimed with a lease) and died before its CLI got
    // the prompt: the claim's lease has run out.
    assert_eq!(cluster.redis.cli(&["ZREM", "ccs:queue:ready", &id]), "1");
    cluster.redis.cli(&["HSET", "ccs:queue:running", &id, "gone-host:1"]);
    cluster.redis.cli(&["ZADD", "ccs:queue:leases", "0", &id]);
    cluster.add(json!({"taskQueue": {"concurrency": 1}}));
    let task = cluster.servers[1].wait_final(&id);
    assert_eq!(task["status"], "completed", "it never ran, so it runs now: {task}");
    assert_eq!(cluster.starts().iter().filter(|s| prompt_of(s) == "taken, never started").count(), 1);
    assert_eq!(cluster.servers[1].delete(&format!("/api/tasks/{blocker}")).status, 200);
}
