//! ccs with the real `claude` CLI (npm `@anthropic-ai/claude-code`), offline: the CLI talks to
//! a mock Anthropic API on 127.0.0.1 (tests/support/mock_anthropic.rs). The CLI's path comes
//! from `CCS_REAL_CLAUDE` (`make real-cli` installs the pinned version and `make test` sets it);
//! without it these tests say they were skipped and pass.

mod support;

#[path = "support/mock_anthropic.rs"]
mod mock_anthropic;

use std::time::Instant;

use mock_anthropic::{last_user_text, Behaviour, MockApi};
use serde_json::{json, Value};
use support::{alive, eventually, Server};

/// The real CLI, or `None` (and a note on stderr) when it is not installed.
fn real_claude(test: &str) -> Option<String> {
    cli_from("CCS_REAL_CLAUDE", test)
}

/// The older (2.0.x, pure JS) CLI, for the compatibility tests.
fn old_claude(test: &str) -> Option<String> {
    cli_from("CCS_REAL_CLAUDE_OLD", test)
}

fn cli_from(variable: &str, test: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(path) if std::path::Path::new(&path).exists() => Some(path),
        _ => {
            eprintln!("SKIPPED {test}: {variable} is not set to a claude CLI (run `make real-cli`, then `make test`)");
            None
        }
    }
}

/// A server whose `claudePath` is the real CLI, pointed at `mock`, with its HOME isolated (a
/// temp folder removed with the returned guard).
fn server_for(claude: &str, mock: &MockApi, extra: Value) -> (Server, support::TempDir) {
    let guard = support::TempDir::new("real-cli-home");
    let cli_home = guard.path().to_path_buf();
    let mut config = json!({
        "claudePath": claude,
        "claudeEnv": {
            "ANTHROPIC_BASE_URL": mock.url,
            "ANTHROPIC_API_KEY": "sk-ant-test-offline",
            "HOME": cli_home.display().to_string(),
            "CLAUDE_CONFIG_DIR": cli_home.join(".claude").display().to_string(),
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
        "taskQueue": {"defaultTimeout": 120000},
    });
    support::merge(&mut config, extra);
    (Server::start_with(config), guard)
}

#[test]
fn a_sync_prompt_runs_the_real_cli() {
    let Some(claude) = real_claude("a_sync_prompt_runs_the_real_cli") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let r = server.ask("Say hello to ccs");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], "echo: Say hello to ccs");
    assert!(r.json["session_id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(r.json["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!mock.requests().is_empty());
}

#[test]
fn a_three_turn_session_resumes_the_real_conversation() {
    let Some(claude) = real_claude("a_three_turn_session_resumes_the_real_conversation") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let first = server.ask("My name is Ada.");
    assert_eq!(first.status, 200, "{}", first.text);
    let session = first.json["session_id"].as_str().unwrap().to_string();
    for prompt in ["I like tea.", "What do you know about me?"] {
        let r = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": prompt}));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["session_id"], session.as_str(), "the CLI kept the session id");
    }
    // The last request to the API carries the whole conversation.
    let last = mock.requests().last().cloned().unwrap();
    let conversation = last["messages"].to_string();
    for earlier in ["My name is Ada.", "echo: My name is Ada.", "I like tea.", "echo: I like tea."] {
        assert!(conversation.contains(earlier), "{earlier:?} missing from the resumed conversation");
    }
    assert_eq!(last_user_text(&last), "What do you know about me?");
    let turns = server.get(&format!("/api/sessions/{session}")).json["session"]["turns"].clone();
    assert_eq!(turns.as_array().unwrap().len(), 3);
}

#[test]
fn model_and_system_prompt_reach_the_api() {
    let Some(claude) = real_claude("model_and_system_prompt_reach_the_api") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let r = server.post(
        "/api/claude",
        // A name the CLI does not know passes through as is (known old ids it maps to new ones).
        json!({"prompt": "hi", "project_path": server.project, "model": "claude-ccs-test-model",
               "system_prompt": "You are the ccs test harness. Marker 7f3a."}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let request = mock.requests().into_iter().find(|q| last_user_text(q) == "hi").expect("the prompt's request");
    assert_eq!(request["model"], "claude-ccs-test-model");
    assert!(request["system"].to_string().contains("Marker 7f3a"), "the system prompt did not reach the API");
}

#[test]
fn an_api_error_is_reported_with_the_clis_message() {
    let Some(claude) = real_claude("an_api_error_is_reported_with_the_clis_message") else { return };
    let mock = MockApi::start();
    mock.set(Behaviour::Fail(401));
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let r = server.ask("this will fail");
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().contains("401") || r.error().to_lowercase().contains("auth"), "{}", r.error());
    let task = server.get(&format!("/api/tasks/{}", r.json["task_id"].as_str().unwrap())).json["task"].clone();
    assert_eq!(task["status"], "failed");
}

#[test]
fn an_async_task_with_a_webhook_runs_the_real_cli() {
    let Some(claude) = real_claude("an_async_task_with_a_webhook_runs_the_real_cli") else { return };
    let mock = MockApi::start();
    let receiver = support::Receiver::start(vec![]);
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let id = server.submit(json!({"prompt": "async hello", "webhook_url": receiver.url}));
    let got = receiver.wait_for(1, 120);
    assert_eq!(got.len(), 1, "no webhook");
    assert_eq!(got[0].json()["data"]["task_id"], id.as_str());
    assert_eq!(got[0].json()["data"]["result"], "echo: async hello");
}

#[test]
fn cancelling_a_running_real_cli_leaves_no_process_behind() {
    let Some(claude) = real_claude("cancelling_a_running_real_cli_leaves_no_process_behind") else { return };
    let mock = MockApi::start();
    mock.set(Behaviour::Slow(std::time::Duration::from_secs(60)));
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let id = server.submit(json!({"prompt": "take your time"}));
    assert!(eventually(60, || !mock.requests().is_empty()), "the CLI never called the API");
    let cli_pids = processes_under(server.pid());
    assert!(!cli_pids.is_empty());
    let r = server.delete(&format!("/api/tasks/{id}"));
    assert_eq!(r.json["status"], "cancelled", "{}", r.text);
    assert!(eventually(20, || cli_pids.iter().all(|p| !alive(*p))), "processes left: {:?}", cli_pids);
}

#[test]
fn streaming_relays_the_real_clis_events() {
    let Some(claude) = real_claude("streaming_relays_the_real_clis_events") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let body = json!({"prompt": "stream it", "project_path": server.project, "stream": true});
    let (_, events) = support::sse_all(server.port, "POST", "/api/claude", Some(&body));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert!(names.contains(&"system") && names.contains(&"stream_event"), "{names:?}");
    assert_eq!(&names[names.len() - 2..], ["result", "done"], "{names:?}");
    assert_eq!(events.last().unwrap().data["result"], "echo: stream it");
}

#[test]
fn one_real_request_through_ccs_against_the_cli_alone() {
    // Not a timed assertion: it prints the figure for the closing note and README.
    let Some(claude) = real_claude("one_real_request_through_ccs_against_the_cli_alone") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    server.ask("warm up");
    let started = Instant::now();
    let r = server.ask("timed");
    let through_ccs = started.elapsed();
    assert_eq!(r.status, 200);
    let config: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    let mut direct = std::process::Command::new(&claude);
    direct.args(["-p", "--output-format", "json"]).current_dir(&server.project).stdin(std::process::Stdio::piped());
    direct.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    for (k, v) in config["claudeEnv"].as_object().unwrap() {
        direct.env(k, v.as_str().unwrap());
    }
    let started = Instant::now();
    let mut child = direct.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"timed").unwrap();
    assert!(child.wait().unwrap().success());
    let alone = started.elapsed();
    eprintln!("real CLI: one request through ccs {through_ccs:?}, the CLI alone {alone:?}");
}

#[test]
fn the_older_cli_answers_and_resumes_too() {
    let Some(claude) = old_claude("the_older_cli_answers_and_resumes_too") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let first = server.ask("Remember 42.");
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["result"], "echo: Remember 42.");
    let session = first.json["session_id"].as_str().unwrap().to_string();
    let second = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": "Which number?"}));
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.json["result"], "echo: Which number?");
    let last = mock.requests().into_iter().rev().find(|q| last_user_text(q) == "Which number?").unwrap();
    assert!(last["messages"].to_string().contains("Remember 42."), "the older CLI did not resume the conversation");
}

/// Every process whose parent chain leads to `root`.
fn processes_under(root: u32) -> Vec<u32> {
    let parent = |pid: u32| support::parent_of(pid);
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let mut p = *pid;
            for _ in 0..20 {
                match parent(p) {
                    Some(pp) if pp == root => return p != root,
                    Some(pp) if pp > 1 => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}
