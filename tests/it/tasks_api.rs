//! The task queue end to end: async submission, queue order and priorities, cancellation of
//! waiting and running tasks, the concurrency bound, timeouts, retry, the queue bound, and
//! `/health` staying fast while every worker is busy.

use crate::support::{alive, eventually, max_overlap, Server};
use serde_json::{json, Value};

/// Starts a long task that holds the only worker; returns its id once it runs (a task is
/// `processing` from the moment its CLI has started).
fn occupy_the_worker(server: &Server, secs: f64) -> String {
    let id = server.submit(json!({"prompt": format!("blocker @@sleep={secs}")}));
    let task = server.wait_task(&id, 15, |t| t["status"] == "processing");
    assert_eq!(task["status"], "processing", "{task}");
    id
}

#[test]
fn async_tasks_are_accepted_at_once_and_complete() {
    let server = Server::start();
    let r = server.post(
        "/api/claude",
        json!({"prompt": "later please", "project_path": server.project, "async": true, "priority": 7}),
    );
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json["status"], "pending");
    assert_eq!(r.json["priority"], 7);
    let id = r.json["task_id"].as_str().unwrap().to_string();
    let task = server.wait_final(&id);
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"], "You said: later please");
    for field in [
        "id",
        "status",
        "priority",
        "prompt",
        "project_path",
        "model",
        "session_id",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "result",
        "error",
        "cost_usd",
        "duration_ms",
        "num_turns",
        "usage",
        "exit_code",
        "metadata",
        "webhook",
    ] {
        assert!(task.get(field).is_some(), "{field} missing from {task}");
    }
    assert!(task.get("request").is_none(), "internal fields stay internal");

    let r = server.post("/api/tasks/async", json!({"prompt": "via tasks", "project_path": server.project}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["task"]["status"], "pending");
    let done = server.wait_final(r.json["task"]["id"].as_str().unwrap());
    assert_eq!(done["status"], "completed");
    assert_eq!(server.post("/api/tasks/async", json!({"prompt": "x", "colour": 1})).status, 400);
}

#[test]
fn higher_priority_runs_first_and_equal_priorities_keep_arrival_order() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    occupy_the_worker(&server, 1.0);
    let ids: Vec<String> = [("p5-a", 5), ("p5-b", 5), ("p9-a", 9), ("p1", 1), ("p9-b", 9)]
        .iter()
        .map(|(prompt, priority)| server.submit(json!({"prompt": prompt, "priority": priority})))
        .collect();
    for id in &ids {
        assert_eq!(server.wait_final(id)["status"], "completed");
    }
    assert_eq!(server.prompts_run()[1..], ["p9-a", "p9-b", "p5-a", "p5-b", "p1"]);
}

#[test]
fn listing_shows_queue_order() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    occupy_the_worker(&server, 1.0);
    let low = server.submit(json!({"prompt": "low", "priority": 2}));
    let high = server.submit(json!({"prompt": "high", "priority": 8}));
    let pending = server.get("/api/tasks?status=pending");
    let order: Vec<&str> =
        pending.json["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(order, [high.as_str(), low.as_str()]);
    assert_eq!(server.get("/api/tasks?status=nope").status, 400);
    assert_eq!(server.get("/api/tasks?limit=1").json["count"], 1);
}

#[test]
fn patch_priority_reorders_waiting_tasks() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let blocker = occupy_the_worker(&server, 1.0);
    let a = server.submit(json!({"prompt": "a"}));
    let b = server.submit(json!({"prompt": "b"}));
    let r = server.patch(&format!("/api/tasks/{b}/priority"), json!({"priority": 10}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"success": true, "task_id": b, "old_priority": 5, "new_priority": 10}));
    for bad in [json!({"priority": 5.5}), json!({"priority": "7"}), json!({}), json!({"priority": 3, "x": 1})] {
        assert_eq!(server.patch(&format!("/api/tasks/{a}/priority"), bad.clone()).status, 400, "{bad}");
    }
    assert_eq!(server.patch("/api/tasks/nope/priority", json!({"priority": 3})).status, 404);
    let running = server.patch(&format!("/api/tasks/{blocker}/priority"), json!({"priority": 3}));
    assert_eq!(running.status, 409, "{}", running.text);
    server.wait_final(&a);
    assert_eq!(server.prompts_run()[1..], ["b", "a"]);
    assert_eq!(server.get(&format!("/api/tasks/{b}")).json["task"]["priority"], 10);
}

#[test]
fn a_cancelled_waiting_task_never_runs_and_can_be_retried() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let blocker = occupy_the_worker(&server, 1.0);
    let doomed = server.submit(json!({"prompt": "never"}));
    let after = server.submit(json!({"prompt": "after"}));
    let r = server.delete(&format!("/api/tasks/{doomed}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "cancelled");
    assert_eq!(server.wait_final(&after)["status"], "completed");
    assert_eq!(server.wait_final(&blocker)["status"], "completed");
    assert!(!server.prompts_run().contains(&"never".to_string()));
    assert_eq!(server.get(&format!("/api/tasks/{doomed}")).json["task"]["status"], "cancelled");
    assert_eq!(server.delete(&format!("/api/tasks/{doomed}")).status, 409);
    assert_eq!(server.delete(&format!("/api/tasks/{after}")).status, 409);
    assert_eq!(server.delete("/api/tasks/nope").status, 404);

    let retry = server.post(&format!("/api/tasks/{doomed}/retry"), json!({}));
    assert_eq!(retry.status, 201, "{}", retry.text);
    let new_id = retry.json["task"]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, doomed);
    assert_eq!(server.wait_final(&new_id)["result"], "You said: never");
    assert_eq!(server.post(&format!("/api/tasks/{after}/retry"), json!({})).status, 409);
}

#[test]
fn cancelling_a_running_task_kills_its_process_group_and_it_stays_cancelled() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let id = server.submit(json!({"prompt": "@@grandchild @@sleep=60"}));
    let cli = server.wait_for_runs(1);
    let cli_pid = cli["pid"].as_u64().unwrap() as u32;
    assert!(eventually(10, || server.calls().iter().any(|c| c["grandchild_pid"].is_u64())));
    let grandchild = server.calls().iter().find_map(|c| c["grandchild_pid"].as_u64()).unwrap() as u32;
    let r = server.delete(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "cancelled");
    assert!(eventually(10, || !alive(cli_pid) && !alive(grandchild)), "the run's processes survived the cancel");
    // The worker is free again, and the status never flips back.
    let next = server.submit(json!({"prompt": "next"}));
    assert_eq!(server.wait_final(&next)["status"], "completed");
    assert_eq!(server.get(&format!("/api/tasks/{id}")).json["task"]["status"], "cancelled");
}

#[test]
fn cancelling_a_running_task_holds_no_acceptor_while_its_group_gets_the_grace_period() {
    // One acceptor, a CLI that ignores SIGTERM, and a long grace: the DELETE is answered only
    // once the task has ended (after the grace), and the only acceptor serves others meanwhile.
    let server = Server::start_with(json!({"httpThreads": 1, "taskQueue": {"concurrency": 1, "killGraceMs": 4000}}));
    let id = server.submit(json!({"prompt": "@@ignore-term @@sleep=60"}));
    server.wait_for_runs(1);
    let port = server.port;
    let path = format!("/api/tasks/{id}");
    let cancel = std::thread::spawn(move || crate::support::http(port, "DELETE", &path, None, &[]));
    assert!(eventually(5, || server.get(&format!("/api/tasks/{id}")).json["task"]["status"] == "processing"));
    let asked = std::time::Instant::now();
    assert_eq!(server.get("/health").status, 200);
    assert!(!cancel.is_finished(), "the DELETE is answered only when the task has ended");
    assert!(asked.elapsed() < std::time::Duration::from_secs(3), "the acceptor was held: {:?}", asked.elapsed());
    let r = cancel.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "cancelled", "{}", r.text);
    assert_eq!(r.json["task"]["status"], "cancelled");
}

#[test]
fn a_cancel_that_races_a_clean_exit_still_ends_cancelled() {
    // The fake ignores SIGTERM and exits 0 on its own a moment later: the task must not turn
    // "completed" after it was cancelled.
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1, "killGraceMs": 3000}}));
    let id = server.submit(json!({"prompt": "@@ignore-term @@sleep=0.6"}));
    server.wait_for_runs(1);
    let r = server.delete(&format!("/api/tasks/{id}"));
    assert_eq!(r.json["status"], "cancelled", "{}", r.text);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(server.get(&format!("/api/tasks/{id}")).json["task"]["status"], "cancelled");
}

#[test]
fn the_number_of_cli_processes_never_exceeds_concurrency() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 2}}));
    let ids: Vec<String> = (0..8).map(|i| server.submit(json!({"prompt": format!("{i} @@sleep=0.3")}))).collect();
    for id in &ids {
        assert_eq!(server.wait_final(id)["status"], "completed");
    }
    assert_eq!(max_overlap(&server.calls()), 2);
}

#[test]
fn a_task_past_its_timeout_ends_timeout() {
    let server = Server::start();
    let id = server.submit(json!({"prompt": "@@sleep=20", "timeout_ms": 500}));
    let task = server.wait_final(&id);
    assert_eq!(task["status"], "timeout", "{task}");
    assert!(task["error"].as_str().unwrap().contains("500 ms"));
}

#[test]
fn turns_of_one_session_keep_their_order_whatever_their_priority() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 3}}));
    let session = server.new_session(json!({"project_path": server.project}));
    let ids: Vec<String> = [("first @@sleep=0.3", 1), ("second", 10), ("third", 5)]
        .iter()
        .map(|(prompt, priority)| server.submit(json!({"prompt": prompt, "session_id": session, "priority": priority})))
        .collect();
    let last = server.wait_final(&ids[2]);
    assert_eq!(last["result"], "You said: third (turn 3; earlier: first @@sleep=0.3 | second)");
    assert_eq!(max_overlap(&server.calls()), 1);
}

#[test]
fn the_queue_bound_answers_503() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1, "maxPending": 2}}));
    occupy_the_worker(&server, 1.0);
    server.submit(json!({"prompt": "one"}));
    server.submit(json!({"prompt": "two"}));
    let r = server.post("/api/tasks/async", json!({"prompt": "three", "project_path": server.project}));
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.error().contains("maxPending"));
}

#[test]
fn health_answers_while_every_worker_and_acceptor_would_be_busy() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}, "httpThreads": 2}));
    let waiting: Vec<_> = (0..5)
        .map(|i| {
            server.post_in_background(
                "/api/claude",
                json!({"prompt": format!("{i} @@sleep=1.5"), "project_path": server.project}),
            )
        })
        .collect();
    // Five sync requests wait on two acceptor threads and one worker; /health still answers.
    let mut health = Value::Null;
    let answered = eventually(10, || {
        health = server.get("/health").json;
        health["queue"]["pending"] == 4
    });
    assert!(answered, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["queue"],
        json!({"pending": 4, "processing": 1, "reason": null}),
        "answered while five sync requests wait"
    );
    assert_eq!(server.get("/api/tasks/queue/status").status, 200);
    drop(waiting); // the runs finish on their own; the server is killed at the end of the test
}

#[test]
fn sync_requests_are_tasks_too() {
    let server = Server::start();
    let r = server.ask("sync as task");
    let task = server.get(&format!("/api/tasks/{}", r.json["task_id"].as_str().unwrap())).json["task"].clone();
    assert_eq!(task["status"], "completed");
    assert_eq!(task["mode"], "sync");
    assert_eq!(task["webhook"], Value::Null);
}

#[test]
fn queue_status_counts_every_state() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    server.ask("ok");
    server.ask("@@fail=api");
    let blocker = occupy_the_worker(&server, 1.0);
    let waiting = server.submit(json!({"prompt": "wait"}));
    let q = server.get("/api/tasks/queue/status").json["queue"].clone();
    assert_eq!(q["concurrency"], 1);
    assert_eq!(q["running"], true);
    assert_eq!((q["total"].as_u64(), q["completed"].as_u64(), q["failed"].as_u64()), (Some(4), Some(1), Some(1)));
    assert_eq!((q["pending"].as_u64(), q["processing"].as_u64()), (Some(1), Some(1)));
    assert_eq!(q["total_cost_usd"], 0.0125);
    assert!(q["oldest_pending_age_ms"].as_i64().is_some());
    server.wait_final(&blocker);
    server.wait_final(&waiting);
    let q = server.get("/api/tasks/queue/status").json["queue"].clone();
    assert_eq!((q["pending"].as_u64(), q["completed"].as_u64()), (Some(0), Some(3)));
    assert_eq!(q["oldest_pending_age_ms"], Value::Null);
}

#[test]
fn async_batch_answers_with_the_task_ids() {
    let server = Server::start();
    let r = server
        .post("/api/claude/batch", json!({"prompts": ["a", "b", "c"], "project_path": server.project, "async": true}));
    assert_eq!(r.status, 202, "{}", r.text);
    let tasks = r.json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    for (task, prompt) in tasks.iter().zip(["a", "b", "c"]) {
        let done = server.wait_final(task["task_id"].as_str().unwrap());
        assert_eq!(done["result"], format!("You said: {prompt}"));
    }
}

#[test]
fn continue_async_queues_the_next_turn() {
    let server = Server::start();
    let first = server.ask("one");
    let session = first.json["session_id"].as_str().unwrap();
    let r = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": "two", "async": true}));
    assert_eq!(r.status, 202, "{}", r.text);
    let task = server.wait_final(r.json["task_id"].as_str().unwrap());
    assert_eq!(task["result"], "You said: two (turn 2; earlier: one)");
}
