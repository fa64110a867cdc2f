//! Durability (SPEC 7): nothing acknowledged is lost, a crash interrupts (never re-runs) what
//! was running, waiting tasks run after a restart, and hundreds of tasks from many clients all
//! end completed.

mod support;

use std::collections::HashSet;

use serde_json::json;
use support::{eventually, Server};

#[test]
fn kill_9_with_one_task_running_and_several_waiting() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let running = server.submit(json!({"prompt": "long @@sleep=30"}));
    server.wait_for_runs(1);
    let waiting: Vec<String> = (0..4).map(|i| server.submit(json!({"prompt": format!("waiting {i}")}))).collect();
    let cancelled = server.submit(json!({"prompt": "cancelled"}));
    assert_eq!(server.delete(&format!("/api/tasks/{cancelled}")).status, 200);

    server.restart(); // kill -9, then start again on the same home

    let task = server.get(&format!("/api/tasks/{running}")).json["task"].clone();
    assert_eq!(task["status"], "interrupted", "{task}");
    assert!(task["error"].as_str().unwrap().contains("retry"));
    for id in &waiting {
        assert_eq!(server.wait_final(id)["status"], "completed", "waiting task {id}");
    }
    assert_eq!(server.get(&format!("/api/tasks/{cancelled}")).json["task"]["status"], "cancelled");
    // The interrupted task was not run again by itself, and the waiting ones ran in order.
    let prompts = server.prompts_run();
    assert_eq!(prompts.iter().filter(|p| p.starts_with("long")).count(), 1);
    assert_eq!(prompts[1..], ["waiting 0", "waiting 1", "waiting 2", "waiting 3"]);
    // `retry` is how it runs again.
    let retry = server.post(&format!("/api/tasks/{running}/retry"), json!({}));
    assert_eq!(retry.status, 201, "{}", retry.text);
}

#[test]
fn a_graceful_stop_keeps_waiting_tasks_and_interrupts_running_ones() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let running = server.submit(json!({"prompt": "@@sleep=30"}));
    server.wait_for_runs(1);
    let waiting = server.submit(json!({"prompt": "after the restart"}));
    assert_eq!(server.terminate(), Some(0));
    let task: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.state_dir().join(format!("data/tasks/{running}.json"))).unwrap())
            .unwrap();
    assert_eq!(task["status"], "interrupted");
    // A clean stop empties the journal into the record files: nothing is left to replay.
    let data = server.state_dir().join("data");
    let journals: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("journal"))
        .collect();
    assert!(journals.is_empty(), "{journals:?}");
    server.restart();
    assert_eq!(server.wait_final(&waiting)["status"], "completed");
}

#[test]
fn a_graceful_stop_answers_waiting_sync_requests_503() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let running =
        server.post_in_background("/api/claude", json!({"prompt": "@@sleep=30", "project_path": server.project}));
    server.wait_for_runs(1);
    let waiting =
        server.post_in_background("/api/claude", json!({"prompt": "never ran", "project_path": server.project}));
    assert!(eventually(10, || server.get("/health").json["queue"]["pending"] == 1));
    assert_eq!(server.terminate(), Some(0));
    let (running, waiting) = (running.join().unwrap(), waiting.join().unwrap());
    assert_eq!(running.status, 503, "{}", running.text);
    assert!(running.error().contains("server stopped"), "{}", running.error());
    assert_eq!(waiting.status, 503, "{}", waiting.text);
    assert!(waiting.error().contains("shutting down"), "{}", waiting.error());
    assert!(!server.prompts_run().contains(&"never ran".to_string()));
}

#[test]
fn hundreds_of_tasks_from_many_clients_all_complete() {
    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 4}, "logLevel": "warn"}));
    let (port, project) = (server.port, server.project.clone());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let project = project.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let body =
                            json!({"prompt": format!("client {c} task {i}"), "project_path": project}).to_string();
                        let r = support::http(port, "POST", "/api/tasks/async", Some(body.as_bytes()), &[]);
                        assert_eq!(r.status, 201, "{}", r.text);
                        r.json["task"]["id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let acknowledged: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(acknowledged.iter().collect::<HashSet<_>>().len(), CLIENTS * EACH);
    assert!(
        eventually(120, || {
            let q = server.get("/api/tasks/queue/status").json["queue"].clone();
            q["completed"].as_u64() == Some((CLIENTS * EACH) as u64)
        }),
        "not every task completed: {}",
        server.get("/api/tasks/queue/status").text
    );
    for id in &acknowledged {
        let task = server.get(&format!("/api/tasks/{id}")).json["task"].clone();
        assert_eq!(task["status"], "completed", "{id}: {task}");
    }
    assert_eq!(server.starts().len(), CLIENTS * EACH, "each task ran exactly once");
    assert!(support::max_overlap(&server.calls()) <= 4);
}
