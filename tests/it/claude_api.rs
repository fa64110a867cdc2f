//! `POST /api/claude` and `/api/claude/batch` against the real binary and the fake CLI: what
//! reaches the CLI, every way a run can end, and every validation error.

use crate::support::{alive, eventually, http, max_overlap, parent_of, Server};
use serde_json::json;

#[test]
fn sync_prompt_returns_the_cli_answer_and_runs_it_in_the_project_folder() {
    let server = Server::start();
    let r = server.ask("hello there");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["success"], true);
    assert_eq!(r.json["result"], "You said: hello there");
    assert_eq!(r.json["cost_usd"], 0.0125);
    assert_eq!(r.json["num_turns"], 1);
    assert_eq!(r.json["usage"]["input_tokens"], 11);
    assert_eq!(r.json["model"], "claude-sonnet-4-5");
    assert!(r.json["task_id"].as_str().is_some_and(|id| id.len() == 36));
    let session_id = r.json["session_id"].as_str().unwrap();

    let starts = server.starts();
    assert_eq!(starts.len(), 1);
    let call = &starts[0];
    assert_eq!(call["cwd"], server.project.display().to_string());
    assert_eq!(call["stdin"], "hello there");
    let argv = crate::support::argv(call);
    if crate::support::live_cli_in_tests() {
        // A live process: messages in and events out as NDJSON, started with 1.25 times the turn's
        // cap (ccs checks each turn's own cost against the cap).
        assert_eq!(&argv[..3], ["-p", "--input-format", "stream-json"]);
        assert!(crate::support::has_option(&argv, "--max-budget-usd", "12.5"), "{argv:?}");
    } else {
        assert_eq!(&argv[..3], ["-p", "--output-format", "json"]);
        assert!(crate::support::has_option(&argv, "--max-budget-usd", "10"), "{argv:?}");
    }
    assert!(crate::support::has_option(&argv, "--model", "claude-sonnet-4-5"), "{argv:?}");
    assert!(crate::support::has_option(&argv, "--session-id", session_id), "{argv:?}");
}

#[test]
fn prompts_reach_the_cli_verbatim_on_stdin_never_in_argv() {
    let server = Server::start();
    let tricky = [
        "--dangerously-skip-permissions --help",
        "$(touch /tmp/ccs-pwned) `id` ; rm -rf ~ && echo \"$HOME\" | cat > x 'q' \\ * ? [a] {b} <c> !d #e",
        "multi\nline\n\twith tabs and ünïcödé ✓",
    ];
    for prompt in tricky {
        let r = server.ask(prompt);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["result"], format!("You said: {prompt}"));
    }
    let starts = server.starts();
    for (call, prompt) in starts.iter().zip(tricky) {
        assert_eq!(call["stdin"], prompt);
        let argv = call["argv"].as_array().unwrap();
        assert!(argv.iter().all(|a| a.as_str().unwrap() != prompt), "the prompt leaked into argv: {argv:?}");
    }
    assert!(!std::path::Path::new("/tmp/ccs-pwned").exists());
}

#[test]
fn request_options_become_cli_flags_and_config_env_reaches_the_cli() {
    let server = Server::start_with(json!({
        "allowCallerOverrides": true,
        "nvmBin": "/opt/ccs-test-nvm/bin",
        "claudeEnv": {"CCS_TEST_MARK": "from-config"},
        "disallowedTools": ["WebFetch"],
    }));
    let r = server.post(
        "/api/claude",
        json!({
            "prompt": "options", "project_path": server.project, "model": "opus",
            "system_prompt": "be terse", "append_system_prompt": "and kind", "max_budget_usd": 0.5,
            "max_turns": 3, "allowed_tools": ["Bash(git log:*)", "Read"], "disallowed_tools": ["Edit"],
            "permission_mode": "plan", "agent": "reviewer", "mcp_config": {"mcpServers": {}},
            "metadata": {"ticket": 42}, "priority": 7, "timeout_ms": 60000
        }),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let call = &server.starts()[0];
    let argv = crate::support::argv(call);
    for pair in [
        ["--model", "opus"],
        ["--system-prompt", "be terse"],
        ["--append-system-prompt", "and kind"],
        ["--max-budget-usd", if crate::support::live_cli_in_tests() { "0.625" } else { "0.5" }],
        ["--max-turns", "3"],
        ["--permission-mode", "plan"],
        ["--agent", "reviewer"],
        ["--mcp-config", "{\"mcpServers\":{}}"],
    ] {
        assert!(crate::support::has_option(&argv, pair[0], pair[1]), "{pair:?} missing from {argv:?}");
    }
    assert!(argv.windows(3).any(|w| w == ["--allowedTools", "Bash(git log:*)", "Read"]), "{argv:?}");
    assert!(argv.windows(3).any(|w| w == ["--disallowedTools", "WebFetch", "Edit"]), "{argv:?}");
    assert_eq!(call["env"]["CCS_TEST_MARK"], "from-config");
    assert!(call["path"].as_str().unwrap().starts_with("/opt/ccs-test-nvm/bin:"), "{}", call["path"]);
}

#[test]
fn every_documented_cli_failure_is_a_clear_error() {
    let server = Server::start();
    let cases = [
        ("@@fail=api", 502, "API Error: 529"),
        ("@@fail=max_turns", 502, "Reached maximum number of turns (1)"),
        ("@@fail=budget", 502, "Reached maximum budget"),
        ("@@fail=usage", 502, "Error: Input validation failed"),
        ("@@garbage", 502, "printed no JSON result: Segmentation fault (not really)"),
        ("@@fail=crash", 502, "killed by signal 6"),
    ];
    for (prompt, status, text) in cases {
        if prompt == "@@garbage" && crate::support::live_cli_in_tests() {
            continue; // a live process prints events; the fake has no garbage for it
        }
        let r = server.ask(prompt);
        assert_eq!(r.status, status, "{prompt}: {}", r.text);
        assert_eq!(r.json["success"], false);
        assert!(r.error().contains(text), "{prompt}: {}", r.error());
        assert!(r.json["task_id"].as_str().is_some(), "{prompt}: {}", r.text);
    }
    // The server is still fine after all that.
    assert_eq!(server.ask("still there?").status, 200);
}

#[test]
fn other_output_shapes_are_understood() {
    let server = Server::start();
    for prompt in ["@@array", "@@ndjson", "@@old-cost"] {
        let r = server.ask(prompt);
        assert_eq!(r.status, 200, "{prompt}: {}", r.text);
        assert_eq!(r.json["result"], format!("You said: {prompt}"));
        assert_eq!(r.json["cost_usd"], 0.0125, "{prompt}");
    }
    let big = server.ask("@@big=3000000");
    assert_eq!(big.status, 200, "{}", &big.text[..big.text.len().min(300)]);
    assert_eq!(
        big.json["result"].as_str().map(str::len),
        Some(3_000_000),
        "{} ... {}",
        &big.text[..200.min(big.text.len())],
        big.text.len()
    );
    let chatty = server.ask("@@stderr=1000000");
    assert_eq!(chatty.status, 200, "a child filling stderr must not deadlock: {}", chatty.text);
    // A prompt bigger than a pipe's buffer (64 KiB) goes in whole while the output comes out.
    let long = "z".repeat(300_000);
    let answer = server.ask(&long);
    assert_eq!(answer.status, 200, "{}", &answer.text[..answer.text.len().min(300)]);
    assert_eq!(answer.json["result"].as_str().map(str::len), Some("You said: ".len() + long.len()));
}

#[test]
fn missing_cli_names_the_claude_path_it_tried() {
    let server = Server::start_with(json!({"claudePath": "/nonexistent/bin/claude"}));
    let r = server.ask("hi");
    assert_eq!(r.status, 502);
    assert!(r.error().contains("claude CLI not found"), "{}", r.error());
    assert!(r.error().contains("\"/nonexistent/bin/claude\""), "{}", r.error());
}

#[test]
fn missing_or_relative_project_folder_is_a_400() {
    let server = Server::start();
    let r = server.post("/api/claude", json!({"prompt": "hi", "project_path": "/no/such/folder"}));
    assert_eq!((r.status, r.json["field"].as_str()), (400, Some("project_path")));
    assert!(r.error().contains("does not exist"), "{}", r.error());
    let r = server.post("/api/claude", json!({"prompt": "hi", "project_path": "relative/dir"}));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("absolute"), "{}", r.error());
    assert!(server.starts().is_empty(), "the CLI must not run");
}

#[test]
fn default_project_path_is_used_when_none_is_given() {
    let server = Server::start();
    let r = server.post("/api/claude", json!({"prompt": "where am I"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.starts()[0]["cwd"], server.home.path().join("workspace").display().to_string());
}

#[test]
fn timeout_kills_the_whole_process_group_and_answers_504() {
    let server = Server::start();
    let r = server.post(
        "/api/claude",
        json!({"prompt": "@@grandchild @@ignore-term @@sleep=60", "project_path": server.project, "timeout_ms": 1000}),
    );
    assert_eq!(r.status, 504, "{}", r.text);
    assert!(r.error().contains("1000 ms"), "{}", r.error());
    let calls = server.calls();
    let cli_pid = calls.iter().find(|c| c["event"] == "start").and_then(|c| c["pid"].as_u64()).unwrap() as u32;
    let grandchild = calls.iter().find_map(|c| c["grandchild_pid"].as_u64()).expect("grandchild started") as u32;
    // The CLI ignored SIGTERM; the SIGKILL after the grace period got it and its grandchild.
    assert!(eventually(5, || !alive(cli_pid) && !alive(grandchild)), "a process of the run survived");
    // No zombie of the CLI is left under the server.
    assert_ne!(parent_of(cli_pid), Some(server.pid()));
    let task = &server.ask("after the timeout");
    assert_eq!(task.status, 200);
}

#[test]
fn validation_errors_name_the_field() {
    let server = Server::start();
    let p = server.project.display().to_string();
    let cases = [
        (json!({}), "prompt", "\"prompt\" is required"),
        (json!({"prompt": ""}), "prompt", "non-empty string"),
        (json!({"prompt": 42}), "prompt", "non-empty string"),
        (json!({"prompt": "x", "promt": "typo"}), "promt", "\"promt\" is not allowed"),
        (json!({"prompt": "x", "priority": 5.5}), "priority", "integer from 1 to 10"),
        (json!({"prompt": "x", "priority": "7"}), "priority", "integer from 1 to 10"),
        (json!({"prompt": "x", "priority": 11}), "priority", "integer from 1 to 10"),
        (json!({"prompt": "x", "max_budget_usd": -1}), "max_budget_usd", ">= 0"),
        (json!({"prompt": "x", "max_turns": 0}), "max_turns", "integer"),
        (json!({"prompt": "x", "timeout_ms": "fast"}), "timeout_ms", "integer"),
        (json!({"prompt": "x", "disallowed_tools": "Bash"}), "disallowed_tools", "array"),
        (json!({"prompt": "x", "disallowed_tools": ["--evil"]}), "disallowed_tools", "not starting with '-'"),
        (json!({"prompt": "x", "metadata": "tag"}), "metadata", "object"),
        (json!({"prompt": "x", "metadata": {"k": "v".repeat(20_000)}}), "metadata", "at most 16384"),
        (json!({"prompt": "x", "async": "yes"}), "async", "true or false"),
        (json!({"prompt": "x", "webhook_url": "ftp://x.example"}), "webhook_url", "http"),
        (json!({"prompt": "x", "project_path": 7}), "project_path", "non-empty string"),
    ];
    for (body, field, text) in cases {
        let mut body = body;
        if body.get("project_path").is_none() {
            body["project_path"] = json!(p);
        }
        let r = server.post("/api/claude", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_eq!(r.json["success"], false);
        assert_eq!(r.json["field"], field, "{body}: {}", r.text);
        assert!(r.error().contains(text), "{body}: {}", r.error());
    }
    assert!(server.starts().is_empty(), "no invalid request may run the CLI");
}

#[test]
fn power_widening_fields_are_refused_unless_the_config_allows_them() {
    let server = Server::start();
    for (field, value) in [
        ("mcp_config", json!("/etc/mcp.json")),
        ("agent", json!("x")),
        ("allowed_tools", json!(["Bash"])),
        ("permission_mode", json!("bypassPermissions")),
    ] {
        let r = server.post("/api/claude", json!({"prompt": "x", "project_path": server.project, field: value}));
        assert_eq!((r.status, r.json["field"].as_str()), (403, Some(field)), "{}", r.text);
        assert!(r.error().contains("allowCallerOverrides"), "{}", r.error());
    }
}

#[test]
fn http_errors_are_json_with_the_right_status() {
    let server = Server::start_with(json!({"maxBodyBytes": 2048}));
    let r = server.get("/api/nothing");
    assert_eq!((r.status, r.json["success"].as_bool()), (404, Some(false)));
    let r = server.get("/api/claude");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    assert_eq!(r.json["success"], false);
    let r = http(server.port, "POST", "/api/claude", Some(b"{\"prompt\": "), &[]);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not valid JSON"), "{}", r.text);
    let r = http(server.port, "POST", "/api/claude", Some(b"[1,2]"), &[]);
    assert_eq!(r.status, 400);
    let big = format!("{{\"prompt\": \"{}\"}}", "x".repeat(4096));
    let r = http(server.port, "POST", "/api/claude", Some(big.as_bytes()), &[]);
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.error().contains("maxBodyBytes"));
    assert_eq!(r.header("Content-Type"), Some("application/json; charset=utf-8"));
}

#[test]
fn chunked_bodies_are_capped_too() {
    use std::io::Write;
    let server = Server::start_with(json!({"maxBodyBytes": 2048}));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let head =
        "POST /api/claude HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = "y".repeat(1000);
    for _ in 0..4 {
        let _ = stream.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let r = crate::support::read_response(&mut stream);
    assert_eq!(r.status, 413, "{}", r.text);
}

#[test]
fn batch_runs_prompts_in_order_within_the_concurrency_limit() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 2}}));
    let prompts: Vec<String> = (1..=5).map(|i| format!("item {i} @@sleep=0.4")).collect();
    let r = server.post("/api/claude/batch", json!({"prompts": prompts, "project_path": server.project}));
    assert_eq!(r.status, 200, "{}", r.text);
    let results = r.json["results"].as_array().unwrap();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["success"], true);
        assert_eq!(result["result"], format!("You said: item {} @@sleep=0.4", i + 1));
    }
    assert_eq!(r.json["summary"]["total"], 5);
    assert_eq!(r.json["summary"]["successful"], 5);
    assert_eq!(r.json["summary"]["failed"], 0);
    assert_eq!(r.json["summary"]["total_cost_usd"], 0.0625);
    assert_eq!(max_overlap(&server.calls()), 2, "at most `concurrency` CLI processes, and they do run side by side");
}

#[test]
fn batch_reports_failures_per_prompt_and_validates_the_list() {
    let server = Server::start();
    let r =
        server.post("/api/claude/batch", json!({"prompts": ["fine", "@@fail=api"], "project_path": server.project}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["results"][0]["success"], true);
    assert_eq!(r.json["results"][1]["success"], false);
    assert!(r.json["results"][1]["error"].as_str().unwrap().contains("API Error"));
    assert_eq!(r.json["summary"]["failed"], 1);
    for prompts in [json!([]), json!(vec!["a"; 11]), json!(["ok", ""]), json!("one")] {
        let r = server.post("/api/claude/batch", json!({"prompts": prompts, "project_path": server.project}));
        assert_eq!((r.status, r.json["field"].as_str()), (400, Some("prompts")), "{}", r.text);
    }
    let r = server.post("/api/claude/batch", json!({"prompts": ["x"], "project_path": "/no/such"}));
    assert_eq!(r.status, 400);
}

#[test]
fn health_reports_status_and_queue() {
    let server = Server::start();
    let r = server.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ok");
    assert_eq!(r.json["version"], env!("CARGO_PKG_VERSION"));
    assert!(r.json["uptime"].as_f64().is_some());
    assert!(r.json["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r.json["queue"], json!({"pending": 0, "processing": 0, "reason": null}));
}

#[test]
fn a_missing_default_project_folder_says_which_setting_to_change() {
    let server = Server::start_with(json!({"defaultProjectPath": "/no/such/workspace"}));
    let r = server.post("/api/claude", json!({"prompt": "hi"}));
    assert_eq!((r.status, r.json["field"].as_str()), (400, Some("project_path")));
    assert!(r.error().contains("defaultProjectPath \"/no/such/workspace\""), "{}", r.error());
}
