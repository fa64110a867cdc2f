//! Streaming (SPEC 11): `stream: true` relays the CLI's stream-json events as Server-Sent
//! Events as they arrive, ends with the result and `event: done`, records the task like any
//! other, and a client that goes away cancels the run. `GET /api/tasks/:id/events` follows a task.

use std::time::{Duration, Instant};

use crate::support::{alive, eventually, sse_all, sse_next, sse_open, Server};
use serde_json::json;

fn names(events: &[crate::support::SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

#[test]
fn events_arrive_as_the_cli_prints_them_and_end_with_done() {
    let server = Server::start();
    let body = json!({"prompt": "tell me slowly @@drip=4", "project_path": server.project, "stream": true});
    let (status, events) = sse_all(server.port, "POST", "/api/claude", Some(&body));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let names = names(&events);
    assert_eq!(names.first(), Some(&"task"));
    assert_eq!(names[1], "system");
    assert_eq!(&names[names.len() - 3..], ["assistant", "result", "done"]);
    assert!(names.iter().filter(|n| **n == "stream_event").count() >= 4, "{names:?}");
    // The first delta came while the CLI was still running, not all at the end.
    let first_delta = events.iter().find(|e| e.event == "stream_event").unwrap().at;
    let done = events.last().unwrap();
    assert!(done.at - first_delta >= Duration::from_millis(700), "{:?} then {:?}", first_delta, done.at);
    assert_eq!(done.data["status"], "completed");
    assert_eq!(done.data["result"], "You said: tell me slowly @@drip=4");

    // The run is recorded like any other, with stream-json on the CLI's command line.
    let task = server.get(&format!("/api/tasks/{}", done.data["task_id"].as_str().unwrap())).json["task"].clone();
    assert_eq!(task["status"], "completed");
    assert_eq!(task["cost_usd"], 0.0125);
    let argv = crate::support::argv(&server.starts()[0]);
    assert!(crate::support::has_option(&argv, "--output-format", "stream-json"), "{argv:?}");
    assert!(argv.contains(&"--verbose".to_string()) && argv.contains(&"--include-partial-messages".to_string()));
    let session =
        server.get(&format!("/api/sessions/{}", done.data["session_id"].as_str().unwrap())).json["session"].clone();
    assert_eq!(session["messages_count"], 1);
}

#[test]
fn continue_streams_the_next_turn() {
    let server = Server::start();
    let first = server.ask("remember 7");
    let session = first.json["session_id"].as_str().unwrap();
    let body = json!({"prompt": "what was it?", "stream": true});
    let (_, events) = sse_all(server.port, "POST", &format!("/api/sessions/{session}/continue"), Some(&body));
    let done = events.last().unwrap();
    assert_eq!(done.event, "done");
    assert_eq!(done.data["result"], "You said: what was it? (turn 2; earlier: remember 7)");
}

#[test]
fn a_failed_run_streams_an_error_before_done() {
    let server = Server::start();
    let body = json!({"prompt": "@@fail=usage", "project_path": server.project, "stream": true});
    let (_, events) = sse_all(server.port, "POST", "/api/claude", Some(&body));
    let names = names(&events);
    assert_eq!(&names[names.len() - 2..], ["error", "done"], "{names:?}");
    assert_eq!(events.last().unwrap().data["status"], "failed");
    assert!(events[names.len() - 2].data["error"].as_str().unwrap().contains("Input validation failed"));
    // Bad input is still a plain JSON 400, before any stream starts.
    let bad = server.post("/api/claude", json!({"prompt": "", "stream": true}));
    assert_eq!(bad.status, 400);
}

#[test]
fn a_client_that_goes_away_cancels_the_run() {
    let server = Server::start();
    let body = json!({"prompt": "@@grandchild @@sleep=60", "project_path": server.project, "stream": true});
    let started = Instant::now();
    let (_, mut reader) = sse_open(server.port, "POST", "/api/claude", Some(&body));
    let opening = sse_next(&mut reader, started).unwrap();
    assert_eq!(opening.event, "task");
    let task_id = opening.data["task_id"].as_str().unwrap().to_string();
    assert_eq!(sse_next(&mut reader, started).unwrap().event, "system");
    assert!(eventually(10, || server.calls().iter().any(|c| c["grandchild_pid"].is_u64())));
    let cli = server.starts()[0]["pid"].as_u64().unwrap() as u32;
    let grandchild = server.calls().iter().find_map(|c| c["grandchild_pid"].as_u64()).unwrap() as u32;
    drop(reader); // the client hangs up
    let task = server.wait_task(&task_id, 40, |t| t["status"] == "cancelled");
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(eventually(10, || !alive(cli) && !alive(grandchild)), "the run outlived its client");
}

#[test]
fn an_async_task_can_be_followed_live_and_after_it_ended() {
    let server = Server::start();
    let accepted = server.post(
        "/api/claude",
        json!({"prompt": "follow me @@drip=3", "project_path": server.project, "async": true, "stream": true}),
    );
    assert_eq!(accepted.status, 202);
    let id = accepted.json["task_id"].as_str().unwrap().to_string();
    let (_, events) = sse_all(server.port, "GET", &format!("/api/tasks/{id}/events"), None);
    let names = names(&events);
    assert!(names.contains(&"system") && names.contains(&"stream_event") && names.contains(&"result"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"));
    // Following a finished task answers at once with how it ended.
    let (_, again) = sse_all(server.port, "GET", &format!("/api/tasks/{id}/events"), None);
    assert_eq!(again.last().unwrap().event, "done");
    assert_eq!(again.last().unwrap().data["status"], "completed");
    let plain = server.ask("not streamed");
    let (_, plain_events) =
        sse_all(server.port, "GET", &format!("/api/tasks/{}/events", plain.json["task_id"].as_str().unwrap()), None);
    assert_eq!(names_of(&plain_events), ["task", "done"]);
    assert_eq!(server.get("/api/tasks/nope/events").status, 404);
}

fn names_of(events: &[crate::support::SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}
