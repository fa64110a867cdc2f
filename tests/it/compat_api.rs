//! The OpenAI- and Anthropic-compatible paths (`/v1/...`) over raw HTTP: their error shapes,
//! the same queue, limits and cancel as ccs's own API, the model allow-list, and how a
//! conversation maps to sessions. (tests/it/sdk_clients.rs drives them with the official
//! client libraries.)

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{alive, eventually, http, sse_all, Response, Server};

fn post(server: &Server, path: &str, body: Value, headers: &[(&str, &str)]) -> Response {
    http(server.port, "POST", path, Some(body.to_string().as_bytes()), headers)
}

fn chat(server: &Server, body: Value) -> Response {
    post(server, "/v1/chat/completions", body, &[])
}

fn messages(server: &Server, body: Value) -> Response {
    post(server, "/v1/messages", body, &[("anthropic-version", "2023-06-01")])
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// An OpenAI error: (status, type, param, message).
fn openai_error(r: &Response) -> (u16, String, Value, String) {
    let e = &r.json["error"];
    assert!(e.is_object() && r.json.get("success").is_none(), "not an OpenAI error: {}", r.text);
    (r.status, e["type"].as_str().unwrap_or("").into(), e["param"].clone(), e["message"].as_str().unwrap_or("").into())
}

/// An Anthropic error: (status, type, message).
fn anthropic_error(r: &Response) -> (u16, String, String) {
    assert_eq!(r.json["type"], "error", "not an Anthropic error: {}", r.text);
    let e = &r.json["error"];
    (r.status, e["type"].as_str().unwrap_or("").into(), e["message"].as_str().unwrap_or("").into())
}

#[test]
fn errors_on_the_v1_paths_take_the_shape_of_the_api_called() {
    let server = Server::start_with(json!({"maxBodyBytes": 4096}));
    let typo = chat(&server, json!({"model": "sonnet", "messages": user("hi"), "temprature": 0.5}));
    let (status, kind, param, message) = openai_error(&typo);
    assert_eq!((status, kind.as_str(), param), (400, "invalid_request_error", json!("temprature")));
    assert!(message.contains("did you mean \"temperature\""), "{message}");
    let nested = chat(&server, json!({"model": "sonnet", "messages": [{"role": "user", "contnt": "hi"}]}));
    assert_eq!(openai_error(&nested).2, json!("messages[0].contnt"));
    let tools = chat(&server, json!({"model": "sonnet", "messages": user("hi"), "tools": [{"type": "function"}]}));
    assert!(openai_error(&tools).3.contains("Claude Code runs its own tools"), "{}", tools.text);
    let options =
        chat(&server, json!({"model": "sonnet", "messages": user("hi"), "stream_options": {"include_usage": true}}));
    assert_eq!(openai_error(&options).2, json!("stream_options"), "only with stream: true, as OpenAI");
    let wrong_type =
        json!({"model": "sonnet", "messages": user("hi"), "stream": true, "stream_options": {"include_usage": "yes"}});
    assert_eq!(openai_error(&chat(&server, wrong_type)).2, json!("stream_options.include_usage"));
    let not_json = http(server.port, "POST", "/v1/chat/completions", Some(b"{nope"), &[]);
    assert_eq!(openai_error(&not_json).0, 400);
    let (status, kind, _) = anthropic_error(&messages(&server, json!({"model": "sonnet"})));
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    let big = messages(&server, json!({"model": "sonnet", "messages": user(&"x".repeat(5000))}));
    let (status, kind, _) = anthropic_error(&big);
    assert_eq!((status, kind.as_str()), (413, "request_too_large"));
    // A path refused before routing is answered in its API's shape too.
    let bad_path = server.get("/v1/models/a%2Fb");
    assert_eq!(openai_error(&bad_path).0, 400, "{}", bad_path.text);
    let unknown = server.get("/v1/nothing");
    assert_eq!(openai_error(&unknown).0, 404);
    let wrong_method = server.get("/v1/chat/completions");
    assert_eq!(openai_error(&wrong_method).0, 405);
    assert_eq!(wrong_method.header("Allow"), Some("POST"));
    // Where both APIs have the path, an Anthropic client's header picks its shape.
    let missing = http(server.port, "GET", "/v1/models/gpt-4o", None, &[("anthropic-version", "2023-06-01")]);
    assert_eq!(anthropic_error(&missing).1, "not_found_error");
    assert_eq!(openai_error(&server.get("/v1/models/gpt-4o")).1, "not_found_error");
    // ccs's own paths keep theirs.
    assert_eq!(server.post("/api/claude", json!({"promt": "x"})).json["success"], false);
}

#[test]
fn the_key_is_taken_from_either_header_and_errors_say_so_in_the_api_shape() {
    let server = Server::start_with(json!({"auth": {"apiKeys": ["k-1"]}}));
    let none = chat(&server, json!({"model": "sonnet", "messages": user("hi")}));
    assert_eq!(openai_error(&none).0, 401);
    let (status, kind, _) = anthropic_error(&messages(&server, json!({"model": "sonnet", "messages": user("hi")})));
    assert_eq!((status, kind.as_str()), (401, "authentication_error"));
    let bearer = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "sonnet", "messages": user("hi")}),
        &[("Authorization", "Bearer k-1")],
    );
    assert_eq!(bearer.status, 200, "{}", bearer.text);
    let api_key =
        post(&server, "/v1/messages", json!({"model": "sonnet", "messages": user("hi")}), &[("x-api-key", "k-1")]);
    assert_eq!(api_key.status, 200, "{}", api_key.text);
    assert_eq!(api_key.json["content"][0]["text"], "You said: hi");
}

#[test]
fn a_full_queue_is_overloaded_529_for_anthropic_clients_and_503_for_openai_ones() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1, "maxPending": 1}}));
    let project = server.project.display().to_string();
    let running = server.submit(json!({"prompt": "@@sleep=30", "project_path": project}));
    server.wait_task(&running, 20, |t| t["status"] == "processing");
    let waiting = server.submit(json!({"prompt": "waits", "project_path": project}));
    let (status, kind, message) =
        anthropic_error(&messages(&server, json!({"model": "sonnet", "messages": user("hi")})));
    assert_eq!((status, kind.as_str()), (529, "overloaded_error"));
    assert!(message.contains("maxPending"), "{message}");
    let (status, kind, _, _) = openai_error(&chat(&server, json!({"model": "sonnet", "messages": user("hi")})));
    assert_eq!((status, kind.as_str()), (503, "server_error"));
    for id in [&waiting, &running] {
        server.delete(&format!("/api/tasks/{id}"));
    }
}

#[test]
fn a_run_that_fails_or_times_out_is_an_error_of_the_api_called() {
    let server = Server::start();
    let slow = json!({"model": "sonnet", "messages": user("@@sleep=20"), "ccs": {"timeout_ms": 500}});
    let timed_out = chat(&server, slow.clone());
    let (status, _, _, message) = openai_error(&timed_out);
    assert_eq!((status, timed_out.json["error"]["code"].as_str()), (504, Some("timeout")), "{message}");
    assert!(timed_out.json["error"]["ccs"]["task_id"].is_string(), "{}", timed_out.text);
    assert_eq!(anthropic_error(&messages(&server, slow)).1, "timeout_error");
    let failed = messages(&server, json!({"model": "sonnet", "messages": user("@@fail=api")}));
    let (status, kind, message) = anthropic_error(&failed);
    assert_eq!((status, kind.as_str()), (502, "api_error"));
    assert!(message.contains("API Error"), "{message}");
    // Streamed, the error comes as the stream's last event.
    let body = json!({"model": "sonnet", "stream": true, "messages": user("@@fail=api")});
    let (status, events) = sse_all(server.port, "POST", "/v1/messages", Some(&body));
    assert!(status.contains("200"), "{status}");
    let last = events.last().expect("events");
    assert_eq!((last.event.as_str(), last.data["error"]["type"].as_str()), ("error", Some("api_error")));
}

#[test]
fn a_turn_through_the_v1_apis_is_a_task_like_any_other() {
    let server = Server::start();
    let other = server.home.path().join("other-project");
    std::fs::create_dir_all(&other).unwrap();
    let other = other.canonicalize().unwrap().display().to_string();
    let body = json!({"model": "opus", "messages": user("hi"), "user": "u-7", "metadata": {"team": "a"},
                      "ccs": {"priority": 9, "max_turns": 3}});
    let r = post(&server, "/v1/chat/completions", body, &[("x-ccs-project-path", &other)]);
    assert_eq!(r.status, 200, "{}", r.text);
    let task = server.get(&format!("/api/tasks/{}", r.json["ccs"]["task_id"].as_str().unwrap())).json["task"].clone();
    assert_eq!((task["priority"].as_u64(), task["model"].as_str()), (Some(9), Some("opus")));
    assert_eq!(task["project_path"], other);
    assert_eq!(task["metadata"], json!({"team": "a", "user": "u-7"}));
    assert_eq!(r.json["ccs"]["project_path"], other);
    assert_eq!(r.header("x-ccs-task-id"), task["id"].as_str());
    let summary = server.get("/api/statistics/summary").json;
    assert_eq!(summary["statistics"]["requests"]["successful"], 1, "{summary}");
    let outside = post(
        &server,
        "/v1/chat/completions",
        json!({"model": "opus", "messages": user("hi")}),
        &[("x-ccs-project-path", "/no/such/folder")],
    );
    assert_eq!(openai_error(&outside).0, 400, "{}", outside.text);
    let bad_priority = chat(&server, json!({"model": "opus", "messages": user("hi"), "ccs": {"priority": 11}}));
    assert_eq!(openai_error(&bad_priority).2, json!("ccs.priority"));
    let n2 = chat(&server, json!({"model": "opus", "messages": user("hi"), "n": 2}));
    assert_eq!(openai_error(&n2).2, json!("n"));
}

#[test]
fn only_the_models_the_config_offers_are_taken_by_any_api() {
    let server = Server::start();
    let listed: Vec<String> = server.get("/v1/models").json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(["sonnet", "opus", "haiku"].iter().all(|m| listed.contains(&m.to_string())), "{listed:?}");
    assert_eq!(chat(&server, json!({"model": "claude-opus-4-1", "messages": user("hi")})).status, 200);
    assert_eq!(openai_error(&chat(&server, json!({"model": "gpt-4o", "messages": user("hi")}))).2, json!("model"));
    // Without `models`, ccs's own API passes any name on, as the original server did.
    assert_eq!(server.post("/api/claude", json!({"prompt": "hi", "model": "my-own-model"})).status, 200);
    server.edit_config(json!({"models": ["opus", "claude-opus-4-1"]}));
    assert!(eventually(10, || server.get("/v1/models").json["data"].as_array().map(Vec::len) == Some(2)));
    assert_eq!(server.get("/v1/models").json["first_id"], "opus");
    let (status, kind, message) =
        anthropic_error(&messages(&server, json!({"model": "sonnet", "messages": user("hi")})));
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert!(message.contains("opus, claude-opus-4-1"), "{message}");
    let own = server.post("/api/claude", json!({"prompt": "hi", "model": "sonnet"}));
    assert_eq!((own.status, own.json["field"].as_str()), (400, Some("model")), "{}", own.text);
    assert_eq!(server.post("/api/claude", json!({"prompt": "hi", "model": "opus"})).status, 200);
}

#[test]
fn a_history_ccs_does_not_hold_is_replayed_in_a_new_session() {
    let server = Server::start();
    let first = chat(&server, json!({"model": "sonnet", "messages": user("my name is Ada")}));
    let session = first.json["ccs"]["session_id"].as_str().unwrap().to_string();
    let answer = first.json["choices"][0]["message"]["content"].clone();
    let history = json!([{"role": "user", "content": "my name is Ada"}, {"role": "assistant", "content": answer},
                         {"role": "user", "content": "what is my name?"}]);
    // The session went on through ccs's own API: it no longer holds just this history.
    let went_on = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": "something else"}));
    assert_eq!(went_on.status, 200, "{}", went_on.text);
    let forked = chat(&server, json!({"model": "sonnet", "messages": history.clone()}));
    assert_eq!(forked.status, 200, "{}", forked.text);
    assert_eq!(forked.json["ccs"]["continued"], false);
    assert_ne!(forked.json["ccs"]["session_id"], session);
    let replayed = server.starts().last().unwrap()["stdin"].as_str().unwrap().to_string();
    assert!(
        replayed.contains("<user>\nmy name is Ada\n</user>") && replayed.ends_with("what is my name?"),
        "{replayed}"
    );
    // The forked conversation goes on in its own session; deleting it drops what ccs kept.
    let forked_session = forked.json["ccs"]["session_id"].as_str().unwrap().to_string();
    let mut next = history.as_array().unwrap().clone();
    next.push(json!({"role": "assistant", "content": forked.json["choices"][0]["message"]["content"]}));
    next.push(json!({"role": "user", "content": "thanks"}));
    let goes_on = chat(&server, json!({"model": "sonnet", "messages": next}));
    assert_eq!(
        (goes_on.json["ccs"]["continued"].as_bool(), goes_on.json["ccs"]["session_id"].as_str()),
        (Some(true), Some(forked_session.as_str()))
    );
    assert_eq!(server.delete(&format!("/api/sessions/{forked_session}")).status, 200);
    let after_delete = chat(&server, json!({"model": "sonnet", "messages": next_after(&goes_on, &next)}));
    assert_eq!(
        (after_delete.status, after_delete.json["ccs"]["continued"].as_bool()),
        (200, Some(false)),
        "{}",
        after_delete.text
    );
    // A session id sent back continues that session whatever the history.
    let by_id = post(
        &server,
        "/v1/messages",
        json!({"model": "sonnet", "messages": user("hello again")}),
        &[("x-ccs-session-id", &session)],
    );
    assert_eq!(
        (by_id.json["ccs"]["session_id"].as_str(), by_id.json["ccs"]["continued"].as_bool()),
        (Some(session.as_str()), Some(true))
    );
    let unknown = post(
        &server,
        "/v1/messages",
        json!({"model": "sonnet", "messages": user("hi")}),
        &[("x-ccs-session-id", "no-such-session")],
    );
    assert_eq!(anthropic_error(&unknown).1, "not_found_error");
    let twice = post(
        &server,
        "/v1/messages",
        json!({"model": "sonnet", "messages": user("hi")}),
        &[("x-ccs-session-id", &session), ("X-Ccs-Session-Id", "another")],
    );
    let (status, _, message) = anthropic_error(&twice);
    assert_eq!(status, 400, "a header given twice: which one counts is anyone's guess");
    assert!(message.contains("more than once"), "{message}");
}

fn next_after(answer: &Response, history: &[Value]) -> Value {
    let mut next = history.to_vec();
    next.push(json!({"role": "assistant", "content": answer.json["choices"][0]["message"]["content"]}));
    next.push(json!({"role": "user", "content": "and now?"}));
    Value::Array(next)
}

#[test]
fn a_client_that_hangs_up_cancels_its_v1_run() {
    let server = Server::start();
    for (path, stream) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let starts = server.starts().len();
        let body = json!({"model": "sonnet", "stream": stream, "messages": user("@@sleep=60")}).to_string();
        let mut client = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        client.write_all(head.as_bytes()).unwrap();
        assert!(eventually(20, || server.starts().len() > starts), "the run started");
        let cli = server.starts().last().unwrap()["pid"].as_u64().unwrap() as u32;
        let started = Instant::now();
        drop(client);
        let tasks = || server.get("/api/tasks?status=cancelled").json["tasks"].as_array().cloned().unwrap_or_default();
        assert!(eventually(30, || tasks().len() == usize::from(stream) + 1), "{path}: the task was not cancelled");
        assert!(eventually(20, || !alive(cli)), "{path}: the run outlived its client");
        assert!(started.elapsed() < Duration::from_secs(40));
    }
}

#[test]
fn a_session_cannot_run_a_model_the_config_does_not_offer() {
    let server = Server::start();
    let project = server.project.display().to_string();
    let old = server.new_session(json!({"project_path": project, "model": "my-own-model"}));
    server.edit_config(json!({"models": ["opus"]}));
    assert!(eventually(10, || server.get("/v1/models").json["data"].as_array().map(Vec::len) == Some(1)));
    let made = server.post("/api/sessions", json!({"project_path": project, "model": "my-own-model"}));
    assert_eq!((made.status, made.json["field"].as_str()), (400, Some("model")), "{}", made.text);
    let runs = server.post(&format!("/api/sessions/{old}/continue"), json!({"prompt": "hi"}));
    assert_eq!((runs.status, runs.json["field"].as_str()), (400, Some("model")), "{}", runs.text);
    assert!(runs.error().contains("send \"model\" with one of: opus"), "{}", runs.text);
    let by_v1 =
        post(&server, "/v1/messages", json!({"model": "opus", "messages": user("hi")}), &[("x-ccs-session-id", &old)]);
    assert_eq!(by_v1.status, 200, "naming an offered model runs it: {}", by_v1.text);
    assert!(server.starts().iter().all(|s| !crate::support::argv(s).contains(&"my-own-model".to_string())));
}

#[test]
fn a_system_prompt_the_cli_cannot_take_as_an_argument_is_a_400_not_a_cli_failure() {
    let server = Server::start();
    let long = json!({"model": "sonnet", "system": "s".repeat(200_000), "messages": user("hi")});
    let (status, kind, message) = anthropic_error(&messages(&server, long));
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"), "{message}");
    assert!(message.contains("at most 131071 bytes"), "{message}");
    let nul = json!({"model": "sonnet", "messages": [{"role": "system", "content": "a\u{0}b"}, {"role": "user", "content": "hi"}]});
    let (status, _, param, message) = openai_error(&chat(&server, nul));
    assert_eq!((status, param), (400, json!("append_system_prompt")), "{message}");
    let own = server.post("/api/claude", json!({"prompt": "hi", "system_prompt": "x\u{0}"}));
    assert_eq!((own.status, own.json["field"].as_str()), (400, Some("system_prompt")), "{}", own.text);
    assert!(server.starts().is_empty(), "no run was started");
}

#[test]
fn the_openai_user_field_is_kept_within_the_metadata_size_limit() {
    let server = Server::start();
    let big = chat(&server, json!({"model": "sonnet", "messages": user("hi"), "user": "u".repeat(100_000)}));
    let (status, _, param, message) = openai_error(&big);
    assert_eq!((status, param), (400, json!("user")), "{message}");
    let near = json!({"model": "sonnet", "messages": user("hi"), "metadata": {"k": "m".repeat(10_000)},
                      "user": "u".repeat(10_000)});
    assert_eq!(openai_error(&chat(&server, near)).2, json!("user"));
    assert!(server.get("/api/tasks").json["tasks"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn a_history_continues_only_a_session_of_the_same_key_and_project_folder() {
    let server = Server::start_with(json!({"auth": {"apiKeys": ["k-a", "k-b"]}}));
    let folder = |name: &str| {
        let path = server.home.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path.canonicalize().unwrap().display().to_string()
    };
    let (a, b) = (folder("a"), folder("b"));
    let ask = |key: &str, project: &str, messages: Value| {
        let auth = format!("Bearer {key}");
        let body = json!({"model": "sonnet", "messages": messages});
        post(&server, "/v1/chat/completions", body, &[("Authorization", &auth), ("x-ccs-project-path", project)])
    };
    let session = |r: &Response| r.json["ccs"]["session_id"].as_str().unwrap_or_default().to_string();
    // Two clients start with the same question and get the same answer: the same history.
    let first_b = ask("k-b", &b, user("hello"));
    let first_a = ask("k-a", &a, user("hello"));
    let answer = first_a.json["choices"][0]["message"]["content"].clone();
    assert_eq!(answer, first_b.json["choices"][0]["message"]["content"]);
    let next = json!([{"role": "user", "content": "hello"}, {"role": "assistant", "content": answer},
                      {"role": "user", "content": "next"}]);
    let b_next = ask("k-b", &b, next.clone());
    assert_eq!(b_next.status, 200, "B's own conversation must not be refused for A's session: {}", b_next.text);
    assert_eq!(
        (b_next.json["ccs"]["continued"].as_bool(), session(&b_next), b_next.json["ccs"]["project_path"].as_str()),
        (Some(true), session(&first_b), Some(b.as_str()))
    );
    let other_key = ask("k-b", &a, next.clone());
    assert_eq!(
        (other_key.status, other_key.json["ccs"]["continued"].as_bool()),
        (200, Some(false)),
        "{}",
        other_key.text
    );
    assert_ne!(session(&other_key), session(&first_a), "key B continued key A's session");
    let a_next = ask("k-a", &a, next);
    assert_eq!((a_next.json["ccs"]["continued"].as_bool(), session(&a_next)), (Some(true), session(&first_a)));
}

#[test]
fn deleting_a_session_keeps_the_link_another_session_with_the_same_history_took_over() {
    let server = Server::start();
    let first = chat(&server, json!({"model": "sonnet", "messages": user("hello")}));
    let second = chat(&server, json!({"model": "sonnet", "messages": user("hello")}));
    let session = |r: &Response| r.json["ccs"]["session_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(server.delete(&format!("/api/sessions/{}", session(&first))).status, 200);
    let answer = second.json["choices"][0]["message"]["content"].clone();
    let next = json!([{"role": "user", "content": "hello"}, {"role": "assistant", "content": answer},
                      {"role": "user", "content": "next"}]);
    let goes_on = chat(&server, json!({"model": "sonnet", "messages": next}));
    assert_eq!((goes_on.json["ccs"]["continued"].as_bool(), session(&goes_on)), (Some(true), session(&second)));
}
