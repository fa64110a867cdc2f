//! Sessions end to end: turns that really continue the CLI conversation, every `/api/sessions`
//! endpoint, turn ordering, budgets, and state that survives `kill -9`.

use crate::support::{eventually, Server};
use serde_json::json;

#[test]
fn three_turns_continue_one_cli_conversation() {
    let server = Server::start();
    let first = server.ask("my name is Ada");
    assert_eq!(first.status, 200, "{}", first.text);
    let id = first.json["session_id"].as_str().unwrap().to_string();
    let second = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "I like tea"}));
    assert_eq!(second.status, 200, "{}", second.text);
    let third = server.post("/api/claude", json!({"prompt": "what do you know?", "session_id": id}));
    assert_eq!(third.status, 200, "{}", third.text);
    // Only a CLI that resumed the same conversation knows the two earlier prompts.
    assert_eq!(third.json["result"], "You said: what do you know? (turn 3; earlier: my name is Ada | I like tea)");
    assert_eq!(third.json["session_id"], id);

    let starts = server.starts();
    assert_eq!(starts.len(), 3);
    assert!(
        crate::support::has_option(&crate::support::argv(&starts[0]), "--session-id", id.as_str()),
        "{:?}",
        crate::support::argv(&starts[0])
    );
    for later in &starts[1..] {
        let argv = crate::support::argv(later);
        if crate::support::live_cli_in_tests() {
            // The process of the first turn took the later ones on its stdin.
            assert_eq!(later["pid"], starts[0]["pid"], "{later}");
        } else {
            assert!(argv.contains(&format!("--resume={id}")), "{argv:?}");
            assert!(!argv.contains(&"--session-id".to_string()), "{argv:?}");
        }
        assert_eq!(later["cwd"], server.project.display().to_string(), "every turn runs in the session's folder");
    }

    let session = server.get(&format!("/api/sessions/{id}"));
    assert_eq!(session.status, 200);
    let s = &session.json["session"];
    assert_eq!(s["messages_count"], 3);
    assert_eq!(s["total_cost_usd"], 0.0375);
    let turns = s["turns"].as_array().unwrap();
    let prompts: Vec<&str> = turns.iter().map(|t| t["prompt"].as_str().unwrap()).collect();
    assert_eq!(prompts, ["my name is Ada", "I like tea", "what do you know?"]);
    assert_eq!(turns[2]["task_id"], third.json["task_id"]);
    assert_eq!(turns[2]["status"], "completed");
}

#[test]
fn a_first_turn_that_failed_before_the_cli_saved_it_is_created_again() {
    let server = Server::start();
    let r = server.ask("@@fail=usage");
    assert_eq!(r.status, 502);
    let id = r.json["session_id"].as_str().unwrap().to_string();
    let again = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "now properly"}));
    assert_eq!(again.status, 200, "{}", again.text);
    let argv = crate::support::argv(&server.starts()[1]);
    assert!(crate::support::has_option(&argv, "--session-id", id.as_str()), "{argv:?}");
}

#[test]
fn a_timed_out_first_turn_is_resumed_next_time() {
    // The CLI saved the session before it was killed, so `--session-id` would be refused.
    let server = Server::start();
    let r = server
        .post("/api/claude", json!({"prompt": "slow @@sleep=30", "project_path": server.project, "timeout_ms": 500}));
    assert_eq!(r.status, 504, "{}", r.text);
    let id = r.json["session_id"].as_str().unwrap().to_string();
    let next = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "are you there?"}));
    assert_eq!(next.status, 200, "{}", next.text);
    assert_eq!(next.json["result"], "You said: are you there? (turn 2; earlier: slow @@sleep=30)");
}

#[test]
fn session_endpoints() {
    let server = Server::start();
    let created = server.post(
        "/api/sessions",
        json!({"project_path": server.project, "model": "opus", "system_prompt": "be terse", "metadata": {"team": "blue"}}),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let s = &created.json["session"];
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["status"], "active");
    assert_eq!(s["messages_count"], 0);
    assert_eq!(s["model"], "opus");
    assert_eq!(s["project_path"], server.project.display().to_string());
    assert!(s.get("cli_started").is_none(), "internal fields stay internal");

    // The session's model and system prompt apply to its turns.
    let turn = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "hi"}));
    assert_eq!(turn.status, 200, "{}", turn.text);
    let argv = crate::support::argv(&server.starts()[0]);
    assert!(crate::support::has_option(&argv, "--model", "opus"), "{argv:?}");
    assert!(crate::support::has_option(&argv, "--system-prompt", "be terse"), "{argv:?}");

    let other = server.post("/api/sessions", json!({"project_path": server.home.path()})).json["session"]["id"].clone();
    let list = server.get("/api/sessions");
    assert_eq!(list.json["count"], 2);
    assert_eq!(list.json["sessions"][0]["id"], other, "newest first");
    let limited = server.get("/api/sessions?limit=1&offset=1");
    assert_eq!(limited.json["sessions"][0]["id"], id.as_str());
    assert_eq!(limited.json["total"], 2);
    let by_path = server.get(&format!("/api/sessions?project_path={}", server.project.display()));
    assert_eq!(by_path.json["count"], 1);

    let found = server.get("/api/sessions/search?q=BLUE");
    assert_eq!(found.json["count"], 1);
    assert_eq!(found.json["sessions"][0]["id"], id.as_str());
    assert_eq!(server.get(&format!("/api/sessions/search?q={}", &id[..8])).json["count"], 1);
    assert_eq!(server.get("/api/sessions/search").status, 400);

    let stats = server.get(&format!("/api/sessions/{id}/stats"));
    assert_eq!(stats.json["stats"]["messages_count"], 1);
    assert_eq!(stats.json["stats"]["total_cost_usd"], 0.0125);

    let archived = server.patch(&format!("/api/sessions/{id}/status"), json!({"status": "archived"}));
    assert_eq!(archived.json["session"]["status"], "archived");
    assert_eq!(server.get("/api/sessions?status=archived").json["count"], 1);
    let refused = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "more"}));
    assert_eq!(refused.status, 409);
    assert!(refused.error().contains("archived"), "{}", refused.error());
    assert_eq!(server.patch(&format!("/api/sessions/{id}/status"), json!({"status": "paused"})).status, 400);
    assert_eq!(server.get("/api/sessions?status=paused").status, 400);

    assert_eq!(server.delete(&format!("/api/sessions/{id}")).json, json!({"success": true}));
    assert_eq!(server.get(&format!("/api/sessions/{id}")).status, 404);
    assert_eq!(server.delete(&format!("/api/sessions/{id}")).status, 404);
    // The record file follows the journal within milliseconds.
    let file = server.state_dir().join(format!("data/sessions/{id}.json"));
    assert!(eventually(5, || !file.exists()), "the session's file stayed");
}

#[test]
fn session_errors() {
    let server = Server::start();
    let unknown = "00000000-0000-4000-8000-000000000000";
    let r = server.post("/api/claude", json!({"prompt": "x", "session_id": unknown}));
    assert_eq!(r.status, 404);
    assert!(r.error().contains(unknown));
    assert_eq!(server.post(&format!("/api/sessions/{unknown}/continue"), json!({"prompt": "x"})).status, 404);
    assert_eq!(server.get(&format!("/api/sessions/{unknown}/stats")).status, 404);
    assert_eq!(server.post("/api/sessions", json!({})).status, 400);
    assert_eq!(server.post("/api/sessions", json!({"project_path": "/no/such/dir"})).status, 400);
    assert_eq!(server.post("/api/sessions", json!({"project_path": server.project, "colour": "red"})).status, 400);
    let id = server.new_session(json!({"project_path": server.project}));
    let r = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "x", "project_path": "/tmp"}));
    assert_eq!((r.status, r.json["field"].as_str()), (400, Some("project_path")));
    let r = server.post("/api/claude", json!({"prompt": "x", "session_id": id, "project_path": server.home.path()}));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("belongs to project folder"), "{}", r.error());
}

#[test]
fn turns_of_one_session_run_one_at_a_time_in_order_and_delete_waits() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 4}}));
    let id = server.new_session(json!({"project_path": server.project}));
    let continue_path = format!("/api/sessions/{id}/continue");
    let first = server.post_in_background(&continue_path, json!({"prompt": "one @@sleep=1"}));
    server.wait_for_runs(1);
    let second = server.post_in_background(&continue_path, json!({"prompt": "two"}));
    // While a turn runs the session cannot be deleted.
    let busy = server.delete(&format!("/api/sessions/{id}"));
    assert_eq!(busy.status, 409, "{}", busy.text);
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.json["result"], "You said: two (turn 2; earlier: one @@sleep=1)");
    assert_eq!(crate::support::max_overlap(&server.calls()), 1, "turns of one session never overlap");
}

#[test]
fn session_budget_stops_new_turns_once_spent() {
    let server = Server::start();
    let id = server.post("/api/sessions", json!({"project_path": server.project, "max_budget_usd": 0.02})).json
        ["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "a"})).status, 200);
    // What is left of the session budget caps the run's own budget.
    let argv = crate::support::argv(&server.starts()[0]);
    assert!(crate::support::has_option(&argv, "--max-budget-usd", "0.02"), "{argv:?}");
    let b = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "b"}));
    if crate::support::live_cli_in_tests() {
        // The live process started with the session's $0.02 checks what it spent since: this
        // turn's cap is what is left ($0.0075), and its $0.0125 goes over it.
        assert_eq!(server.spawns().len(), 1, "the same process took the second turn");
        assert_eq!(b.status, 502, "{}", b.text);
        assert!(b.error().contains("Reached maximum budget ($0.02)"), "{}", b.error());
    } else {
        assert_eq!(b.status, 200);
        let argv = crate::support::argv(&server.starts()[1]);
        assert!(crate::support::has_option(&argv, "--max-budget-usd", "0.0075"), "{argv:?}");
    }
    let refused = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "c"}));
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.error().contains("budget"), "{}", refused.error());
    assert_eq!(server.starts().len(), 2);
}

#[test]
fn sessions_and_turns_survive_kill_9() {
    // The file store's journal and record files are what this checks.
    let mut server = Server::start_with(json!({"storageType": "file"}));
    let a = server.ask("first");
    let id = a.json["session_id"].as_str().unwrap().to_string();
    server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "second"}));
    let b = server.post("/api/sessions", json!({"project_path": server.project, "metadata": {"k": "v"}}));
    let before_a = server.get(&format!("/api/sessions/{id}")).json;
    let before_b = server.get(&format!("/api/sessions/{}", b.json["session"]["id"].as_str().unwrap())).json;

    server.kill9();
    // No checkpoint ran yet: the journal holds every change. Empty a record file, as a power
    // loss can leave a file that was renamed into place without its own fsync: the next start
    // rewrites it from the journal.
    let data = server.state_dir().join("data");
    assert!(std::fs::metadata(data.join("journal-1")).unwrap().len() > 0);
    std::fs::write(data.join(format!("sessions/{id}.json")), b"").unwrap();
    server.launch();
    assert!(server.log_text().contains("changed in the store's journal"), "{}", server.log_text());

    assert_eq!(server.get(&format!("/api/sessions/{id}")).json, before_a);
    assert_eq!(server.get(&format!("/api/sessions/{}", b.json["session"]["id"].as_str().unwrap())).json, before_b);
    assert_eq!(server.get("/api/sessions").json["count"], 2);
    // The conversation goes on after the restart.
    let third = server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": "third"}));
    assert_eq!(third.json["result"], "You said: third (turn 3; earlier: first | second)");
}

#[test]
fn a_run_in_progress_at_kill_9_is_marked_interrupted_after_restart() {
    let mut server = Server::start();
    let pending =
        server.post_in_background("/api/claude", json!({"prompt": "long @@sleep=30", "project_path": server.project}));
    server.wait_for_runs(1);
    // A run under way: a sync task's start reaches the disk within a few milliseconds (nobody
    // is told of it; a crash before that cancels the task instead).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cli_pid = server.starts()[0]["pid"].as_u64().unwrap() as u32;
    server.restart();
    let _ = pending.join();
    // The CLI did not outlive the server that ran it.
    assert!(eventually(5, || !crate::support::alive(cli_pid)), "the CLI kept running after kill -9 of ccs");
    let tasks = server.get("/api/tasks").json["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["status"], "interrupted");
    assert!(server.log_text().contains("marked interrupted"));
}

#[test]
fn a_corrupt_record_is_moved_aside_and_the_rest_loads() {
    // A record file of the file store is corrupted (the Redis store's case: src/store/redis.rs).
    let mut server = Server::start_with(json!({"storageType": "file"}));
    let good = server.ask("keep me").json["session_id"].as_str().unwrap().to_string();
    let sessions_dir = server.state_dir().join("data/sessions");
    std::fs::write(sessions_dir.join("11111111-1111-4111-8111-111111111111.json"), b"{\"id\": \"half").unwrap();
    server.restart();
    assert_eq!(server.get(&format!("/api/sessions/{good}")).status, 200);
    assert_eq!(server.get("/api/sessions").json["count"], 1);
    let names: Vec<String> = std::fs::read_dir(&sessions_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("11111111-1111-4111-8111-111111111111.json.corrupt-")), "{names:?}");
    assert!(server.log_text().contains("is corrupt"));
}

#[test]
fn memory_storage_keeps_nothing_on_disk() {
    let server = Server::start_with(json!({"storageType": "memory"}));
    let r = server.ask("ephemeral");
    assert_eq!(r.status, 200);
    let id = r.json["session_id"].as_str().unwrap();
    assert_eq!(server.get(&format!("/api/sessions/{id}")).status, 200);
    let sessions_dir = server.state_dir().join("data/sessions");
    assert!(!sessions_dir.exists() || std::fs::read_dir(sessions_dir).unwrap().next().is_none());
}
