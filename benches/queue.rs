//! `make bench`: figures for the task queue, measured on the real binary over loopback.
//!
//! 1. Async throughput with an instant fake CLI, against running the same fake directly with the
//!    same parallelism (the ratio is the server's overhead per task: HTTP, durable writes, queue).
//! 2. Submit latency of `POST /api/tasks/async` with 10 stored tasks and with 10,000: it must
//!    not grow with the number of stored tasks.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{eventually, Server, FAKE_CLAUDE};

const TASKS: usize = 300;
const PARALLEL: usize = 2;
const SUBMITS: usize = 200;

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that this builds.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("queue benchmark skipped: run it with `make bench`");
        return;
    }
    println!("ccs queue benchmark ({TASKS} tasks, concurrency {PARALLEL}; {SUBMITS} submits per latency run)\n");
    let (served, direct) = throughput();
    println!("async throughput, instant fake CLI:");
    println!("  through ccs : {:>8.1} tasks/s ({:.2} s)", TASKS as f64 / served.as_secs_f64(), served.as_secs_f64());
    println!("  fake direct : {:>8.1} runs/s  ({:.2} s)", TASKS as f64 / direct.as_secs_f64(), direct.as_secs_f64());
    println!("  ratio       : {:>8.2} (ccs time / direct time)\n", served.as_secs_f64() / direct.as_secs_f64());

    println!("submit latency, POST /api/tasks/async (ms):");
    for stored in [10, 10_000] {
        let mut lat = submit_latencies(stored);
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = lat.iter().map(|d| ms(*d)).sum::<f64>() / lat.len() as f64;
        println!(
            "  {stored:>6} stored: mean {mean:>6.2}  p50 {:>6.2}  p95 {:>6.2}  max {:>6.2}",
            ms(lat[lat.len() / 2]),
            ms(lat[lat.len() * 95 / 100]),
            ms(lat[lat.len() - 1])
        );
    }
}

fn throughput() -> (Duration, Duration) {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": PARALLEL}, "logLevel": "warn"}));
    let started = Instant::now();
    for i in 0..TASKS {
        server.submit(json!({"prompt": format!("bench {i}")}));
    }
    let all_done = eventually(600, || {
        server.get("/api/tasks/queue/status").json["queue"]["completed"].as_u64() == Some(TASKS as u64)
    });
    assert!(all_done, "the tasks did not all complete");
    let served = started.elapsed();

    let claude_dir = server.home.path().join("direct-claude");
    let started = Instant::now();
    let runners: Vec<_> = (0..PARALLEL)
        .map(|p| {
            let (dir, project) = (claude_dir.clone(), server.project.clone());
            std::thread::spawn(move || {
                for i in (p..TASKS).step_by(PARALLEL) {
                    let mut child = Command::new(FAKE_CLAUDE)
                        .args(["-p", "--output-format", "json"])
                        .current_dir(&project)
                        .env("CLAUDE_CONFIG_DIR", &dir)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    use std::io::Write;
                    let _ = child.stdin.take().unwrap().write_all(format!("bench {i}").as_bytes());
                    child.wait().unwrap();
                }
            })
        })
        .collect();
    runners.into_iter().for_each(|r| r.join().unwrap());
    (served, started.elapsed())
}

fn submit_latencies(stored: usize) -> Vec<Duration> {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}, "logLevel": "warn"}));
    store_finished_tasks(&server, stored);
    server.restart();
    // One long task holds the worker, so the measured submits only queue.
    server.submit(json!({"prompt": "@@sleep=600"}));
    (0..SUBMITS)
        .map(|i| {
            let started = Instant::now();
            server.submit(json!({"prompt": format!("latency {i}")}));
            started.elapsed()
        })
        .collect()
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
