//! A mock of the Anthropic Messages API on 127.0.0.1, enough for the real `claude` CLI to run
//! offline (CLI.md): `POST /v1/messages` answers Server-Sent Events with `echo: <last user
//! text>` and usage; every request is recorded; it can be told to fail or to be slow.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum Behaviour {
    Echo,
    /// Answer this HTTP status with an API error body (and `x-should-retry: false`).
    Fail(u16),
    /// Wait this long, then echo.
    Slow(Duration),
}

pub struct MockApi {
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    server: Arc<tiny_http::Server>,
}

impl MockApi {
    pub fn start() -> MockApi {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the mock API"));
        let port = server.server_addr().to_ip().map(|a| a.port()).unwrap_or(0);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::Echo));
        for _ in 0..4 {
            let (server, requests, behaviour) = (server.clone(), requests.clone(), behaviour.clone());
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    answer(rq, &requests, &behaviour);
                }
            });
        }
        MockApi { url: format!("http://127.0.0.1:{port}"), requests, behaviour, server }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// The environment that runs the real CLI offline against this mock: its URL, a made-up
    /// key, `home` as its HOME and config folder, no retries and no traffic of its own.
    pub fn offline_env(&self, home: &std::path::Path) -> Value {
        json!({
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": "sk-ant-test-offline",
            "HOME": home.display().to_string(),
            "CLAUDE_CONFIG_DIR": home.join(".claude").display().to_string(),
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        })
    }

    /// The bodies of every `POST /v1/messages` so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        for _ in 0..4 {
            self.server.unblock();
        }
    }
}

/// The text of the last user message (past the CLI's own `<system-reminder>` blocks).
pub fn last_user_text(body: &Value) -> String {
    let Some(message) = body["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user")) else {
        return String::new();
    };
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .rfind(|t| !t.trim_start().starts_with("<system-reminder>"))
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

fn answer(mut rq: tiny_http::Request, requests: &Mutex<Vec<Value>>, behaviour: &Mutex<Behaviour>) {
    let mut body = String::new();
    let _ = rq.as_reader().read_to_string(&mut body);
    let path = rq.url().to_string();
    let json_header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    if rq.method() != &tiny_http::Method::Post || !path.starts_with("/v1/messages") || path.contains("count_tokens") {
        let response = tiny_http::Response::from_string(
            r#"{"type":"error","error":{"type":"not_found_error","message":"not here"}}"#,
        )
        .with_status_code(404)
        .with_header(json_header);
        let _ = rq.respond(response);
        return;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(body.clone());
    let behaviour = behaviour.lock().unwrap().clone();
    match behaviour {
        Behaviour::Fail(status) => {
            let kind = if status == 401 { "authentication_error" } else { "api_error" };
            let error = json!({"type": "error", "error": {"type": kind, "message": format!("mock failure {status}")}});
            let response = tiny_http::Response::from_string(error.to_string())
                .with_status_code(status)
                .with_header(json_header)
                .with_header(tiny_http::Header::from_bytes("x-should-retry", "false").unwrap());
            let _ = rq.respond(response);
            return;
        }
        Behaviour::Slow(wait) => std::thread::sleep(wait),
        Behaviour::Echo => {}
    }
    let text = format!("echo: {}", last_user_text(&body));
    let model = body["model"].as_str().unwrap_or("claude-sonnet-4-5").to_string();
    let input_tokens = body.to_string().len() / 4;
    if body["stream"] != true {
        let message = json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 5}});
        let _ = rq.respond(tiny_http::Response::from_string(message.to_string()).with_header(json_header));
        return;
    }
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 5}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let sse: String = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
    let response = tiny_http::Response::from_string(sse)
        .with_header(tiny_http::Header::from_bytes("Content-Type", "text/event-stream").unwrap());
    let _ = rq.respond(response);
}
