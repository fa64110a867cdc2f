//! Live CLI processes (SPEC 13): a session's turns on one process that stays alive, turns with
//! other options run cold, idle processes end (time, archive, delete, a config change, the
//! memory cap), a dead one is replaced with nothing lost, cancel and timeout kill it, spares
//! are taken and replaced, and nothing outlives the server, even after `kill -9`.
//! Every server here turns live processes on itself, whatever `CCS_TEST_LIVE_CLI` says.

use crate::support::{alive, argv, eventually, has_option, Server};
use serde_json::{json, Value};

fn live_server(live: Value) -> Server {
    let mut config = json!({"liveCli": {"enabled": true, "spares": 0, "maxProcesses": 4}});
    crate::support::merge(&mut config["liveCli"], live);
    Server::start_with(config)
}

fn turn(server: &Server, session: &str, prompt: &str) -> crate::support::Response {
    server.post("/api/claude", json!({"prompt": prompt, "session_id": session}))
}

fn pid(call: &Value) -> u32 {
    call["pid"].as_u64().unwrap() as u32
}

/// The pid of the process that ran the last turn so far.
fn last_turn_pid(server: &Server) -> u32 {
    pid(server.starts().last().unwrap())
}

#[test]
fn a_sessions_turns_reuse_one_process_and_cost_what_each_turn_cost() {
    let server = live_server(json!({}));
    let first = server.ask("my name is Ada");
    assert_eq!(first.status, 200, "{}", first.text);
    let id = first.json["session_id"].as_str().unwrap().to_string();
    let second = turn(&server, &id, "I like tea");
    let third = turn(&server, &id, "what do you know?");
    assert_eq!(third.status, 200, "{}", third.text);
    assert_eq!(third.json["result"], "You said: what do you know? (turn 3; earlier: my name is Ada | I like tea)");
    assert_eq!(server.spawns().len(), 1, "one process for three turns: {:?}", server.spawns());
    let pids: Vec<u32> = server.starts().iter().map(pid).collect();
    assert_eq!(pids, vec![pids[0]; 3]);
    // The CLI reports a running total (0.0125, 0.025, 0.0375); each turn costs its own part.
    for r in [&first, &second, &third] {
        assert_eq!(r.json["cost_usd"], 0.0125, "{}", r.text);
    }
    let session = server.get(&format!("/api/sessions/{id}")).json["session"].clone();
    assert_eq!(session["total_cost_usd"], 0.0375);
    assert_eq!(session["messages_count"], 3);
    let health = server.get("/health").json;
    assert_eq!(health["live"]["sessions"], 1, "{health}");
    assert!(health["live"]["rss_bytes"].as_u64().unwrap() > 0, "{health}");
    let metrics = server.get("/metrics").text;
    assert!(metrics.contains("\nccs_live_sessions 1\n"), "{metrics}");
    assert!(alive(pids[0]), "the process waits for the next turn");
}

#[test]
fn a_turn_with_other_options_runs_cold_and_retires_the_old_process() {
    let server = live_server(json!({}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let old = last_turn_pid(&server);
    let r = server.post("/api/claude", json!({"prompt": "two", "session_id": id, "model": "opus"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], "You said: two (turn 2; earlier: one)");
    let spawns = server.spawns();
    assert_eq!(spawns.len(), 2, "{spawns:?}");
    let started = argv(&spawns[1]);
    assert!(started.contains(&format!("--resume={id}")) && has_option(&started, "--model", "opus"), "{started:?}");
    assert!(eventually(5, || !alive(old)), "the process started with the other model was retired");
    // The next turn with the same options takes the new process.
    let r = server.post("/api/claude", json!({"prompt": "three", "session_id": id, "model": "opus"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.spawns().len(), 2);
}

#[test]
fn an_idle_process_ends_after_keep_ms_and_the_next_turn_resumes() {
    let server = live_server(json!({"keepMs": 300}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let first = last_turn_pid(&server);
    assert!(eventually(10, || !alive(first)), "the idle process outlived liveCli.keepMs");
    assert!(server.log_text().contains("idle too long"), "{}", server.log_text());
    let r = turn(&server, &id, "two");
    assert_eq!(r.json["result"], "You said: two (turn 2; earlier: one)", "{}", r.text);
    assert!(argv(&server.spawns()[1]).contains(&format!("--resume={id}")));
}

#[test]
fn archiving_closing_or_deleting_a_session_ends_its_process() {
    let server = live_server(json!({}));
    for change in ["archived", "closed", "delete"] {
        let id = server.ask("hello").json["session_id"].as_str().unwrap().to_string();
        let process = last_turn_pid(&server);
        assert!(alive(process));
        let r = if change == "delete" {
            server.delete(&format!("/api/sessions/{id}"))
        } else {
            server.patch(&format!("/api/sessions/{id}/status"), json!({"status": change}))
        };
        assert_eq!(r.status, 200, "{change}: {}", r.text);
        assert!(eventually(5, || !alive(process)), "{change}: the session's live process runs on");
    }
    assert_eq!(server.get("/health").json["live"]["sessions"], 0);
}

#[test]
fn a_killed_idle_process_is_replaced_by_a_cold_resume_with_the_conversation_intact() {
    let server = live_server(json!({}));
    let id = server.ask("remember 42").json["session_id"].as_str().unwrap().to_string();
    let first = last_turn_pid(&server);
    crate::support::signal(first, libc::SIGKILL);
    assert!(eventually(5, || !alive(first)));
    let r = turn(&server, &id, "what number?");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], "You said: what number? (turn 2; earlier: remember 42)");
    let spawns = server.spawns();
    assert_eq!(spawns.len(), 2);
    assert!(argv(&spawns[1]).contains(&format!("--resume={id}")), "{:?}", argv(&spawns[1]));
    // The prompt went to the new process only.
    assert_eq!(server.prompts_run(), ["remember 42", "what number?"]);
}

#[test]
fn cancel_and_timeout_of_a_live_turn_kill_it_and_the_next_turn_runs_cold() {
    let server = live_server(json!({}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let live = last_turn_pid(&server);
    // Cancel: the second turn runs on the live process, then DELETE kills its group.
    let task = server.submit(json!({"prompt": "two @@sleep=30", "session_id": id}));
    assert!(eventually(10, || server.starts().len() == 2));
    assert_eq!(last_turn_pid(&server), live, "the second turn went to the live process");
    assert_eq!(server.delete(&format!("/api/tasks/{task}")).status, 200);
    assert_eq!(server.wait_final(&task)["status"], "cancelled");
    assert!(eventually(5, || !alive(live)), "the cancelled live process runs on");
    // Timeout: the third turn starts a process (cold, --resume), which the timeout kills.
    let r = server.post("/api/claude", json!({"prompt": "three @@sleep=30", "session_id": id, "timeout_ms": 1000}));
    assert_eq!(r.status, 504, "{}", r.text);
    let timed_out = last_turn_pid(&server);
    assert!(eventually(5, || !alive(timed_out)), "the timed-out process runs on");
    let r = turn(&server, &id, "four");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json["result"].as_str().unwrap().contains("earlier: one | two @@sleep=30 | three @@sleep=30"),
        "{}",
        r.text
    );
    assert_eq!(server.spawns().len(), 3, "each killed process is replaced once: {:?}", server.spawns());
}

#[test]
fn a_spare_is_taken_by_a_new_session_and_replaced() {
    let server = live_server(json!({"spares": 1}));
    assert!(eventually(10, || server.spawns().len() == 1), "no spare was started");
    let spare = server.spawns()[0].clone();
    let spare_args = argv(&spare);
    let spare_session = spare_args[spare_args.iter().position(|a| a == "--session-id").unwrap() + 1].clone();
    assert!(eventually(5, || server.get("/health").json["live"]["spares"] == 1));
    // A request in the default folder with no option of its own takes it.
    let r = server.post("/api/claude", json!({"prompt": "hello"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["session_id"], spare_session.as_str(), "the session took the spare's id");
    assert_eq!(pid(&server.starts()[0]), pid(&spare), "the spare answered the first turn");
    assert!(eventually(10, || server.spawns().len() == 2), "the spare was not replaced");
    let second = argv(&server.spawns()[1]);
    assert!(!second.contains(&spare_session), "a new spare has a new session id: {second:?}");
    // A request with options of its own does not take a spare.
    assert!(eventually(5, || server.get("/health").json["live"]["spares"] == 1));
    let r = server.post("/api/claude", json!({"prompt": "other", "model": "opus"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.get("/health").json["live"]["spares"], 1);
    assert_eq!(server.spawns().len(), 3);
}

#[test]
fn at_the_process_cap_the_least_recently_used_idle_one_is_retired() {
    let server = live_server(json!({"maxProcesses": 2}));
    let a = server.ask("a").json["session_id"].as_str().unwrap().to_string();
    let a_pid = last_turn_pid(&server);
    let b = server.ask("b").json["session_id"].as_str().unwrap().to_string();
    let b_pid = last_turn_pid(&server);
    assert_eq!(turn(&server, &a, "a again").status, 200); // a is now the more recently used
    assert_eq!(last_turn_pid(&server), a_pid);
    server.ask("c");
    assert!(eventually(5, || !alive(b_pid)), "b, the least recently used, was not retired");
    assert!(alive(a_pid));
    assert_eq!(server.get("/health").json["live"]["sessions"], 2);
    let r = turn(&server, &b, "b again");
    assert_eq!(r.json["result"], "You said: b again (turn 2; earlier: b)", "{}", r.text);
}

#[test]
fn a_config_change_to_how_claude_starts_retires_idle_processes() {
    let server = live_server(json!({}));
    server.ask("one");
    let process = last_turn_pid(&server);
    let mut env = json!({"CCS_TEST_MARK": "changed"});
    crate::support::merge(&mut env, json!({"FAKE_CLAUDE_LOG": server.calls_log.display().to_string()}));
    server.edit_config(json!({"claudeEnv": env}));
    assert!(eventually(10, || !alive(process)), "an idle process kept the old environment");
}

#[test]
fn with_live_processes_off_every_turn_is_a_process_of_its_own() {
    let server = Server::start_with(json!({"liveCli": {"enabled": false}}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    turn(&server, &id, "two");
    let r = turn(&server, &id, "three");
    assert_eq!(r.json["result"], "You said: three (turn 3; earlier: one | two)");
    let spawns = server.spawns();
    assert_eq!(spawns.len(), 3);
    assert!(spawns.iter().all(|s| has_option(&argv(s), "--output-format", "json")));
    assert_eq!(server.get("/health").json["live"], json!({"sessions": 0, "spares": 0, "busy": 0, "rss_bytes": 0}));
}

#[test]
fn kill_9_of_the_server_leaves_no_live_process_behind() {
    let mut server = live_server(json!({"spares": 1}));
    let idle = server.ask("idle one").json["session_id"].as_str().unwrap().to_string();
    let idle_pid = last_turn_pid(&server);
    let busy = server.ask("busy one").json["session_id"].as_str().unwrap().to_string();
    let busy_task = server.submit(json!({"prompt": "long @@sleep=60", "session_id": busy}));
    assert!(eventually(10, || server.starts().len() == 3));
    let busy_pid = last_turn_pid(&server);
    assert!(eventually(10, || server.get("/health").json["live"]["spares"] == 1));
    let all: Vec<u32> = server.spawns().iter().map(pid).collect();
    assert!(all.contains(&idle_pid) && all.contains(&busy_pid), "{all:?}");

    server.kill9();
    // Idle processes see their stdin close and end; the busy one ends at the next start.
    assert!(eventually(5, || !alive(idle_pid)), "an idle live process outlived the server");
    server.launch();
    assert!(eventually(10, || all.iter().all(|p| !alive(*p))), "a process of the old server survived the restart");
    assert_eq!(server.wait_final(&busy_task)["status"], "interrupted");
    let r = turn(&server, &idle, "after");
    assert_eq!(r.json["result"], "You said: after (turn 2; earlier: idle one)", "{}", r.text);
}

#[test]
fn an_api_error_fails_the_turn_as_a_cold_run_and_the_process_goes_on() {
    let server = live_server(json!({}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let r = turn(&server, &id, "@@fail=api");
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("API Error: 529"), "{}", r.text);
    assert_eq!(r.json["exit_code"], 1, "the exit code a one-shot run would have: {}", r.text);
    let r = turn(&server, &id, "three");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["cost_usd"], 0.0125, "the failed turn cost nothing: {}", r.text);
    assert_eq!(server.spawns().len(), 1, "the process took all three turns");
}

#[test]
fn a_streamed_turn_on_a_live_process_relays_its_events_as_they_come() {
    let server = live_server(json!({}));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let body = json!({"prompt": "slowly @@drip=3", "session_id": id, "stream": true});
    let (status, events) = crate::support::sse_all(server.port, "POST", "/api/claude", Some(&body));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names[..2], ["task", "system"], "{names:?}");
    assert_eq!(&names[names.len() - 3..], ["assistant", "result", "done"]);
    let first_delta = events.iter().find(|e| e.event == "stream_event").unwrap().at;
    let done = events.last().unwrap();
    assert!(done.at - first_delta >= std::time::Duration::from_millis(500), "relayed as printed, not at the end");
    assert_eq!(done.data["result"], "You said: slowly @@drip=3 (turn 2; earlier: one)");
    assert_eq!(done.data["cost_usd"], 0.0125, "{}", done.data);
    assert_eq!(server.spawns().len(), 1, "the streamed turn went to the live process");
}

#[test]
fn idle_sessions_leave_room_for_the_spares() {
    // Two processes at most, one of them a spare: sessions keep one idle process, not two.
    let server = live_server(json!({"spares": 1, "maxProcesses": 2}));
    let spare_ready = || eventually(10, || server.get("/health").json["live"]["spares"] == 1);
    assert!(spare_ready());
    let first = server.post("/api/claude", json!({"prompt": "first"}));
    assert_eq!(first.status, 200, "{}", first.text);
    let first_pid = last_turn_pid(&server);
    assert!(spare_ready(), "a new spare starts in the free room");
    let second = server.post("/api/claude", json!({"prompt": "second"}));
    assert_eq!(second.status, 200, "{}", second.text);
    assert!(spare_ready(), "no room for a spare: {}", server.get("/health").text);
    assert!(eventually(5, || !alive(first_pid)), "the least recently used session made room for the spare");
    let health = server.get("/health").json;
    assert_eq!((health["live"]["sessions"].clone(), health["live"]["spares"].clone()), (json!(1), json!(1)));
}

#[test]
fn with_a_cli_that_takes_the_session_id_at_start_no_spare_is_started() {
    // claude 2.0.x takes a `--session-id` when it starts: a spare that a new session took and
    // that ended before its first turn (other options, idle too long, the cap, a config change)
    // would leave that session with an id no CLI can start or resume.
    let server = Server::start_with(json!({
        "claudeEnv": {"FAKE_CLAUDE_VERSION": "2.0.77"},
        "liveCli": {"enabled": true, "spares": 1, "maxProcesses": 4},
    }));
    assert!(eventually(15, || server.get("/health").json["cli"]["version"] == "2.0.77"));
    std::thread::sleep(std::time::Duration::from_millis(1500)); // three housekeeping rounds
    assert_eq!(server.spawns().len(), 0, "a spare was started: {:?}", server.spawns());
    let session = server.post("/api/sessions", json!({"project_path": server.home.path().join("workspace")}));
    assert_eq!(session.status, 201, "{}", session.text);
    let id = session.json["session"]["id"].as_str().unwrap();
    // Its first turn with a model of its own needs a process started for that model.
    let r = server.post("/api/claude", json!({"prompt": "hello", "session_id": id, "model": "opus"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.post("/api/claude", json!({"prompt": "again", "session_id": id, "model": "opus"}));
    assert_eq!(r.json["result"], "You said: again (turn 2; earlier: hello)", "{}", r.text);
    assert_eq!(server.get("/health").json["live"]["spares"], 0);
}

#[test]
fn a_session_archived_or_closed_while_its_turn_runs_keeps_no_process() {
    // (A session with a turn running cannot be deleted: 409.)
    let server = live_server(json!({}));
    for change in ["archived", "closed"] {
        let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
        let process = last_turn_pid(&server);
        let task = server.submit(json!({"prompt": "two @@sleep=1", "session_id": id}));
        assert!(eventually(10, || server.calls().last().is_some_and(|c| c["stdin"] == "two @@sleep=1")));
        let r = server.patch(&format!("/api/sessions/{id}/status"), json!({"status": change}));
        assert_eq!(r.status, 200, "{change}: {}", r.text);
        assert_eq!(server.wait_final(&task)["status"], "completed");
        assert!(
            eventually(5, || !alive(process)),
            "{change}: the session's live process waits for a turn it cannot get"
        );
    }
    assert_eq!(server.get("/health").json["live"]["sessions"], 0);
}

#[test]
fn kill_9_of_the_server_leaves_nothing_an_idle_process_started() {
    // A turn's tool may leave a process running (here a `sleep 300` in the CLI's group): while
    // the CLI waits for its next turn, so does it. After kill -9 the idle CLI ends by itself (its
    // stdin closed); what it started is killed at the next start.
    let mut server = live_server(json!({}));
    let r = server.ask("start something @@grandchild");
    assert_eq!(r.status, 200, "{}", r.text);
    let leader = last_turn_pid(&server);
    let grandchild = server.calls().iter().find_map(|c| c["grandchild_pid"].as_u64()).unwrap() as u32;
    assert!(alive(grandchild));
    server.kill9();
    assert!(eventually(5, || !alive(leader)), "the idle live process outlived the server");
    server.launch();
    assert!(eventually(5, || !alive(grandchild)), "what an idle live process started outlived the restart");
    assert!(server.log_text().contains("the live claude CLIs of the previous server left"), "{}", server.log_text());
}

#[test]
fn a_first_turn_that_crashed_is_not_run_again_whatever_its_output_says() {
    // ccs resumes a first turn whose CLI said "Session ID <id> is already in use" at start; a
    // turn that crashed after it began (its output naming a folder "already in use", as a
    // tool's "address already in use" could) must not be taken for that and run again.
    let server = live_server(json!({}));
    let folder = server.home.path().join("address already in use");
    std::fs::create_dir_all(&folder).unwrap();
    let r = server.post("/api/claude", json!({"prompt": "once @@fail=crash", "project_path": folder}));
    assert_eq!(r.status, 502, "{}", r.text);
    let runs = server.starts().iter().filter(|s| s["stdin"] == "once @@fail=crash").count();
    assert_eq!(runs, 1, "the crashed turn ran again: {:?}", server.spawns());
}

#[test]
fn a_session_with_a_budget_of_its_own_keeps_its_process() {
    // $0.10 a turn, the session $1 in all: the process may have $0.10 to $0.125 left (as
    // without a session budget), and never more than the session has left ($0.11 in all).
    let server = Server::start_with(json!({"maxBudgetUsd": 0.1, "liveCli": {"enabled": true, "spares": 0}}));
    for (limit, started_with) in [(1.0, "0.125"), (0.11, "0.11")] {
        let id = server.new_session(json!({"project_path": server.project, "max_budget_usd": limit}));
        for prompt in ["one", "two", "three"] {
            let r = turn(&server, &id, prompt);
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json["cost_usd"], 0.0125, "{}", r.text);
        }
        let spawns: Vec<Value> =
            server.spawns().into_iter().filter(|s| argv(s).iter().any(|a| a.contains(&id))).collect();
        assert_eq!(spawns.len(), 1, "one process for the session's three turns: {spawns:?}");
        assert!(has_option(&argv(&spawns[0]), "--max-budget-usd", started_with), "{spawns:?}");
    }
}

#[test]
fn fewer_spares_in_the_config_end_the_spares_beyond_them() {
    let server = live_server(json!({"spares": 1}));
    assert!(eventually(10, || server.spawns().len() == 1), "no spare was started");
    let spare = pid(&server.spawns()[0]);
    server.edit_config(json!({"liveCli": {"spares": 0}}));
    assert!(eventually(10, || !alive(spare)), "the spare outlived \"spares\": 0");
    assert_eq!(server.get("/health").json["live"]["spares"], 0);
}

#[test]
fn a_cli_upgraded_in_place_takes_the_next_turn_and_spares_are_started_again() {
    // claudePath stays the same; the executable behind it becomes another version.
    let home = crate::support::TempDir::new("upgraded-cli");
    let claude = home.path().join("claude");
    std::fs::copy(crate::support::FAKE_CLAUDE, &claude).unwrap();
    let server = live_server(json!({"spares": 1}));
    server.edit_config(json!({"claudePath": claude}));
    assert!(eventually(15, || server.get("/health").json["cli"]["path"] == claude.display().to_string()));
    assert!(eventually(10, || server.get("/health").json["live"]["spares"] == 1));
    let id = server.ask("one").json["session_id"].as_str().unwrap().to_string();
    let old = last_turn_pid(&server);
    let old_spare = server.spawns().iter().map(pid).find(|p| *p != old && alive(*p)).unwrap();
    let script = format!("#!/bin/sh\nFAKE_CLAUDE_VERSION=2.1.400 exec {} \"$@\"\n", crate::support::FAKE_CLAUDE);
    let next = home.path().join("claude.new");
    std::fs::write(&next, script).unwrap();
    std::fs::set_permissions(&next, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&next, &claude).unwrap();
    assert!(eventually(15, || server.get("/health").json["cli"]["version"] == "2.1.400"));
    let r = turn(&server, &id, "two");
    assert_eq!(r.json["result"], "You said: two (turn 2; earlier: one)", "{}", r.text);
    assert_ne!(last_turn_pid(&server), old, "the turn went to the process of the CLI before the upgrade");
    assert!(eventually(5, || !alive(old) && !alive(old_spare)), "processes of the old CLI live on");
    assert!(eventually(10, || server.get("/health").json["live"]["spares"] == 1), "no new spare");
}
