//! ccs with the real `claude` CLI (npm `@anthropic-ai/claude-code`), offline: the CLI talks to
//! a mock Anthropic API on 127.0.0.1 (tests/it/support/mock_anthropic.rs).
//!
//! The core tests run once per supported CLI line (`VERSIONS`: 1.0.x without --max-budget-usd,
//! the last pure-JS 2.0.x, the 2.1.x that `npm install` picks on Node 20, and the newest), each
//! from the variable `make test` sets when `make real-cli` installed it. A CLI that is not
//! installed makes its test print SKIPPED and pass. The other tests use `CCS_REAL_CLAUDE`.

use std::time::Instant;

use crate::support::mock_anthropic::{last_user_text, Behaviour, MockApi};
use crate::support::{alive, eventually, Server};
use serde_json::{json, Value};

/// The CLIs of the core tests: the variable that names each, and the line it stands for (the
/// Makefile pins the exact versions).
const VERSIONS: &[(&str, &str)] = &[
    ("CCS_REAL_CLAUDE_1_0", "1.0.x"),
    ("CCS_REAL_CLAUDE_OLD", "2.0.x"),
    ("CCS_REAL_CLAUDE", "2.1.x (npm's pick on Node 20)"),
    ("CCS_REAL_CLAUDE_NEWEST", "the newest"),
];

/// The real CLI, or `None` (and a note on stderr) when it is not installed.
fn real_claude(test: &str) -> Option<String> {
    cli_from("CCS_REAL_CLAUDE", test)
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
fn server_for(claude: &str, mock: &MockApi, extra: Value) -> (Server, crate::support::TempDir) {
    let guard = crate::support::TempDir::new("real-cli-home");
    let cli_home = guard.path().to_path_buf();
    let mut config = json!({
        "claudePath": claude,
        "claudeEnv": mock.offline_env(&cli_home),
        "taskQueue": {"defaultTimeout": 120000},
    });
    crate::support::merge(&mut config, extra);
    (Server::start_with(config), guard)
}

#[test]
fn core_on_cli_1_0() {
    core_on(VERSIONS[0]);
}

#[test]
fn core_on_cli_2_0() {
    core_on(VERSIONS[1]);
}

#[test]
fn core_on_cli_2_1() {
    core_on(VERSIONS[2]);
}

#[test]
fn core_on_the_newest_cli() {
    core_on(VERSIONS[3]);
}

/// What every supported CLI must do through ccs: be probed, answer, resume a session, take the
/// model and system prompt, report an API error, stream, and stop at its budget.
fn core_on((variable, line): (&str, &str)) {
    let test = format!("core tests on claude {line}");
    let Some(claude) = cli_from(variable, &test) else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let version = probed_version(&server, &claude);
    let label = format!("claude {version} ({claude})");

    // One prompt (with the budget flag only where the CLI has it: 1.0.x fails on it).
    let first = server.ask("My name is Ada.");
    assert_eq!(first.status, 200, "{label}: {}", first.text);
    assert_eq!(first.json["result"], "echo: My name is Ada.", "{label}");
    assert!(first.json["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0, "{label}: {}", first.text);
    let session = first.json["session_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(session.len(), 36, "{label}: {}", first.text);

    // Two more turns resume the conversation under the same id.
    for prompt in ["I like tea.", "What do you know about me?"] {
        let r = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": prompt}));
        assert_eq!(r.status, 200, "{label}: {}", r.text);
        assert_eq!(r.json["session_id"], session.as_str(), "{label}: the CLI kept the session id");
    }
    let last = mock.requests().into_iter().rev().find(|q| last_user_text(q) == "What do you know about me?");
    let conversation = last.map(|q| q["messages"].to_string()).unwrap_or_default();
    for earlier in ["My name is Ada.", "echo: My name is Ada.", "I like tea.", "echo: I like tea."] {
        assert!(conversation.contains(earlier), "{label}: {earlier:?} missing from the resumed conversation");
    }

    // The model and the system prompt reach the API.
    let r = server.post(
        "/api/claude",
        // A name the CLI does not know passes through as is (known old ids it maps to new ones).
        json!({"prompt": "hi", "project_path": server.project, "model": "claude-ccs-test-model",
               "system_prompt": "You are the ccs test harness. Marker 7f3a.", "max_turns": 2}),
    );
    assert_eq!(r.status, 200, "{label}: {}", r.text);
    let request = mock.requests().into_iter().find(|q| last_user_text(q) == "hi");
    let request = request.unwrap_or_else(|| panic!("{label}: the prompt's request never reached the API"));
    assert_eq!(request["model"], "claude-ccs-test-model", "{label}");
    assert!(request["system"].to_string().contains("Marker 7f3a"), "{label}: the system prompt did not reach the API");

    // Streaming relays the CLI's events.
    let body = json!({"prompt": "stream it", "project_path": server.project, "stream": true});
    let (_, events) = crate::support::sse_all(server.port, "POST", "/api/claude", Some(&body));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert!(names.contains(&"system") && names.contains(&"assistant"), "{label}: {names:?}");
    assert!(names.ends_with(&["result", "done"]), "{label}: {names:?}");
    assert_eq!(events[events.len() - 2].data["result"], "echo: stream it", "{label}");

    // A budget below the cost of one call: the CLI stops the run, or ccs fails it after.
    let r = server
        .post("/api/claude", json!({"prompt": "too dear", "project_path": server.project, "max_budget_usd": 0.000001}));
    assert_eq!(r.status, 502, "{label}: {}", r.text);
    assert!(r.error().contains("maximum budget"), "{label}: {}", r.error());
    if !version.starts_with("1.0.") {
        assert!(!r.error().contains("ccs checked"), "{label} has --max-budget-usd: {}", r.error());
    } else {
        assert!(r.error().contains("has no --max-budget-usd, so ccs checked"), "{label}: {}", r.error());
    }

    // An API error is reported with the CLI's message.
    mock.set(Behaviour::Fail(401));
    let r = server.ask("this will fail");
    assert_eq!(r.status, 502, "{label}: {}", r.text);
    assert!(r.error().contains("401") || r.error().to_lowercase().contains("auth"), "{label}: {}", r.error());
    eprintln!("PASSED core tests on {label}");
}

/// Waits for the probe in `/health` and checks it against what the CLI itself says.
fn probed_version(server: &Server, claude: &str) -> String {
    let mut cli = Value::Null;
    assert!(
        eventually(60, || {
            cli = server.get("/health").json["cli"].clone();
            cli["probing"] == false
        }),
        "the probe of {claude} did not end: {cli}"
    );
    let version = cli["version"].as_str().unwrap_or_else(|| panic!("{claude} was not probed: {cli}")).to_string();
    let config: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    let mut own = std::process::Command::new(claude);
    own.arg("--version");
    for (k, v) in config["claudeEnv"].as_object().unwrap() {
        own.env(k, v.as_str().unwrap());
    }
    let said = String::from_utf8_lossy(&own.output().unwrap().stdout).into_owned();
    assert_eq!(said.split_whitespace().next(), Some(version.as_str()), "{claude} --version says {said:?}");
    eprintln!("claude {version} ({claude}): probed in {} ms", cli["probe_ms"]);
    version
}

#[test]
fn an_async_task_with_a_webhook_runs_the_real_cli() {
    let Some(claude) = real_claude("an_async_task_with_a_webhook_runs_the_real_cli") else { return };
    let mock = MockApi::start();
    let receiver = crate::support::Receiver::start(vec![]);
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

/// Every process whose parent chain leads to `root`.
fn processes_under(root: u32) -> Vec<u32> {
    let parent = |pid: u32| crate::support::parent_of(pid);
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

#[test]
fn live_processes_carry_a_three_turn_conversation_and_report_each_turns_own_cost() {
    let Some(claude) = real_claude("live processes with the real CLI") else { return };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({"liveCli": {"enabled": true, "spares": 0}}));
    let first = server.ask("My name is Ada.");
    assert_eq!(first.status, 200, "{}", first.text);
    let session = first.json["session_id"].as_str().unwrap().to_string();
    let mut turns = vec![first];
    for prompt in ["I like tea.", "What do you know about me?"] {
        let r = server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": prompt}));
        assert_eq!(r.status, 200, "{}", r.text);
        turns.push(r);
    }
    // One process took all three turns: ccs started one, and keeps it for the next turn.
    let log = server.log_text();
    assert_eq!(log.matches("started for session").count(), 1, "{log}");
    assert_eq!(server.get("/health").json["live"]["sessions"], 1);
    // Turn 3's request to the API carries turn 1.
    let last = mock.requests().into_iter().rev().find(|q| last_user_text(q) == "What do you know about me?");
    let conversation = last.map(|q| q["messages"].to_string()).unwrap_or_default();
    assert!(
        conversation.contains("My name is Ada.") && conversation.contains("echo: My name is Ada."),
        "{conversation}"
    );
    // The CLI reports a total over the process's life; each turn costs what its own tokens
    // cost (claude-sonnet-4-5: $3 per million input tokens, $15 per million output tokens),
    // and the turns add up to the session's (and the process's) total.
    let mut sum = 0.0;
    for r in &turns {
        let usage = &r.json["usage"];
        let own =
            (usage["input_tokens"].as_f64().unwrap() * 3.0 + usage["output_tokens"].as_f64().unwrap() * 15.0) / 1e6;
        let cost = r.json["cost_usd"].as_f64().unwrap();
        assert!((cost - own).abs() < 1e-9, "a turn's cost {cost} is not its own tokens' {own}: {}", r.text);
        sum += cost;
    }
    let total = server.get(&format!("/api/sessions/{session}")).json["session"]["total_cost_usd"].as_f64().unwrap();
    assert!((total - sum).abs() < 1e-9, "session total {total}, turns {sum}");
    assert!(turns[2].json["cost_usd"].as_f64().unwrap() > turns[0].json["cost_usd"].as_f64().unwrap());
}

#[test]
fn the_v1_apis_run_the_real_cli_plain_streamed_and_as_a_conversation() {
    let Some(claude) = real_claude("the_v1_apis_run_the_real_cli_plain_streamed_and_as_a_conversation") else {
        return;
    };
    let mock = MockApi::start();
    let (server, _cli_home) = server_for(&claude, &mock, json!({}));
    let chat = |messages: Value| {
        server.post("/v1/chat/completions", json!({"model": "claude-ccs-test-model", "messages": messages}))
    };
    let first =
        chat(json!([{"role": "system", "content": "Marker 51c2."}, {"role": "user", "content": "My name is Ada."}]));
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json["choices"][0]["message"]["content"], "echo: My name is Ada.");
    assert!(first.json["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{}", first.text);
    let request = mock.requests().into_iter().find(|q| last_user_text(q) == "My name is Ada.").expect("the API call");
    assert!(request["system"].to_string().contains("Marker 51c2."), "the system message is appended");
    let second = chat(
        json!([{"role": "system", "content": "Marker 51c2."}, {"role": "user", "content": "My name is Ada."},
                             {"role": "assistant", "content": "echo: My name is Ada."}, {"role": "user", "content": "Who am I?"}]),
    );
    assert_eq!((second.status, second.json["ccs"]["continued"].as_bool()), (200, Some(true)), "{}", second.text);
    let resumed = mock.requests().into_iter().rev().find(|q| last_user_text(q) == "Who am I?").expect("the API call");
    assert!(resumed["messages"].to_string().contains("echo: My name is Ada."), "the CLI resumed the conversation");
    // Streamed in Anthropic's events, from the real CLI's token deltas.
    let body = json!({"model": "claude-ccs-test-model", "stream": true, "messages": [{"role": "user", "content": "stream it"}]});
    let (_, events) = crate::support::sse_all(server.port, "POST", "/v1/messages", Some(&body));
    let text: String = events
        .iter()
        .filter(|e| e.event == "content_block_delta")
        .map(|e| e.data["delta"]["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(text, "echo: stream it", "{events:?}");
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("message_stop"));
}
