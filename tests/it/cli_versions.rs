//! Issue 11: ccs probes the claude CLI (`--version`, `--help`) and never passes a flag it lacks.
//! The fake CLI plays the 1.0.x CLI with FAKE_CLAUDE_VERSION (no `--max-budget-usd`, no
//! `--agent`, and either one is `error: unknown option`, exit 1, as with the real 1.0.128).

use std::time::{Duration, Instant};

use crate::support::{eventually, Server};
use serde_json::{json, Value};

/// A server whose fake CLI is claude 1.0.128.
fn old_cli_server(extra: Value) -> Server {
    let mut config = json!({"claudeEnv": {"FAKE_CLAUDE_VERSION": "1.0.128"}});
    crate::support::merge(&mut config, extra);
    Server::start_with(config)
}

/// `/health`'s `cli` once its probe has ended.
fn probed_cli(server: &Server) -> Value {
    let mut cli = Value::Null;
    let done = eventually(15, || {
        cli = server.get("/health").json["cli"].clone();
        cli["probing"] == false
    });
    assert!(done, "the probe did not end: {cli}");
    cli
}

#[test]
fn health_shows_the_cli_version() {
    let server = Server::start();
    let cli = probed_cli(&server);
    assert_eq!(cli["version"], "2.1.197", "{cli}");
    assert_eq!(cli["path"], crate::support::FAKE_CLAUDE);
    assert!(cli["error"].is_null() && cli["probe_ms"].is_u64(), "{cli}");
    let old = old_cli_server(json!({}));
    assert_eq!(probed_cli(&old)["version"], "1.0.128");
}

#[test]
fn an_old_cli_never_gets_max_budget_usd_and_answers() {
    let server = old_cli_server(json!({}));
    let r = server.ask("hello old cli");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], "You said: hello old cli");
    let argv = crate::support::argv(&server.starts()[0]);
    assert!(!argv.iter().any(|a| a.starts_with("--max-budget-usd")), "{argv:?}");
    assert!(crate::support::has_option(&argv, "--model", "claude-sonnet-4-5"), "the other flags stay: {argv:?}");
    // Flags the 1.0 CLI takes without listing them still go through.
    let r = server.post(
        "/api/claude",
        json!({"prompt": "hidden flags", "project_path": server.project, "max_turns": 3, "system_prompt": "terse"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let argv = crate::support::argv(&server.starts()[1]);
    assert!(
        crate::support::has_option(&argv, "--max-turns", "3")
            && crate::support::has_option(&argv, "--system-prompt", "terse")
    );
}

#[test]
fn a_new_cli_gets_max_budget_usd() {
    let server = Server::start();
    assert_eq!(server.ask("hello").status, 200);
    // A live process starts with 1.25 times the turn's cap (see runner::live).
    let cap = if crate::support::live_cli_in_tests() { "12.5" } else { "10" };
    assert!(crate::support::has_option(&crate::support::argv(&server.starts()[0]), "--max-budget-usd", cap));
}

#[test]
fn a_field_needing_a_flag_the_cli_lacks_is_a_400_naming_flag_field_and_version() {
    let server = old_cli_server(json!({"allowCallerOverrides": true}));
    probed_cli(&server);
    let body = json!({"prompt": "as an agent", "project_path": server.project, "agent": "reviewer"});
    for path in ["/api/claude", "/api/tasks/async"] {
        let r = server.post(path, body.clone());
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.json["field"], "agent");
        assert_eq!(
            r.error(),
            "claude 1.0.128 does not support --agent (field \"agent\"); upgrade the CLI or leave the field out"
        );
    }
    assert!(server.starts().is_empty(), "the CLI never ran");
    let sessions = server.get("/api/sessions").json;
    assert_eq!(sessions["count"], 0, "no session is left behind by a refused request: {sessions}");
    // The same field with a CLI that has the flag.
    let new = Server::start_with(json!({"allowCallerOverrides": true}));
    let r = new.post("/api/claude", json!({"prompt": "as an agent", "project_path": new.project, "agent": "reviewer"}));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_run_over_its_budget_fails_with_the_budget_error_when_ccs_checks_it() {
    let server = old_cli_server(json!({}));
    // The fake reports $0.0125 a run.
    let r =
        server.post("/api/claude", json!({"prompt": "pricey", "project_path": server.project, "max_budget_usd": 0.01}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.error().starts_with("Reached maximum budget ($0.01): the run cost $0.0125; claude 1.0.128"),
        "{}",
        r.error()
    );
    let task = server.get(&format!("/api/tasks/{}", r.json["task_id"].as_str().unwrap())).json["task"].clone();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["cost_usd"], 0.0125, "the cost is recorded");
    assert_eq!(task["result"], "You said: pricey", "the paid-for answer is kept");
    let within =
        server.post("/api/claude", json!({"prompt": "cheap", "project_path": server.project, "max_budget_usd": 0.02}));
    assert_eq!(within.status, 200, "{}", within.text);
    let zero =
        server.post("/api/claude", json!({"prompt": "free", "project_path": server.project, "max_budget_usd": 0}));
    assert_eq!((zero.status, zero.json["field"].as_str()), (400, Some("max_budget_usd")), "{}", zero.text);
}

#[test]
fn a_session_over_its_budget_gets_the_budget_error_then_takes_no_more_turns() {
    let server = old_cli_server(json!({}));
    let id = server.new_session(json!({"project_path": server.project, "max_budget_usd": 0.02}));
    let turn = |prompt: &str| server.post(&format!("/api/sessions/{id}/continue"), json!({"prompt": prompt}));
    assert_eq!(turn("a").status, 200, "$0.0125 of $0.02");
    // $0.0075 is left: the run's $0.0125 goes over it.
    let over = turn("b");
    assert_eq!(over.status, 502, "{}", over.text);
    assert!(over.error().starts_with("Reached maximum budget ($0.0075)"), "{}", over.error());
    let session = server.get(&format!("/api/sessions/{id}")).json["session"].clone();
    assert_eq!(session["total_cost_usd"], 0.025, "{session}");
    let refused = turn("c");
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.error().contains("has spent $0.025 of its $0.02 budget"), "{}", refused.error());
    assert_eq!(server.starts().len(), 2, "the refused turn never ran");
    for call in server.starts() {
        assert!(!crate::support::argv(&call).iter().any(|a| a == "--max-budget-usd"));
    }
}

#[test]
fn a_missing_cli_shows_in_health_and_requests_keep_their_clear_error() {
    let server = Server::start_with(json!({"claudePath": "/nonexistent/bin/claude"}));
    let cli = probed_cli(&server);
    assert!(cli["version"].is_null(), "{cli}");
    let error = cli["error"].as_str().unwrap_or_default();
    assert!(error.contains("claude CLI not found: claudePath is \"/nonexistent/bin/claude\""), "{cli}");
    let r = server.ask("anyone there?");
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.error().starts_with("claude CLI not found: claudePath is \"/nonexistent/bin/claude\""), "{}", r.error());
}

#[test]
fn health_stays_fast_while_a_slow_probe_runs_and_the_first_run_waits_for_it() {
    // Each probe call sleeps 4 s: /health must not wait for it (a loaded CI box gets 2 s).
    let server = old_cli_server(json!({"claudeEnv": {"FAKE_CLAUDE_PROBE_SLEEP_MS": "4000"}}));
    let started = Instant::now();
    let health = server.get("/health");
    assert!(started.elapsed() < Duration::from_secs(2), "/health took {:?}", started.elapsed());
    assert_eq!(health.json["cli"]["probing"], true, "{}", health.text);
    // Sent while the probe runs: it waits for it, so it already knows the CLI has no budget flag.
    let r = server.ask("right away");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!crate::support::argv(&server.starts()[0]).contains(&"--max-budget-usd".to_string()));
    let probes: Vec<Value> = server.probes().iter().map(|c| c["argv"].clone()).collect();
    assert_eq!(probes, [json!(["--version"]), json!(["--help"])], "one probe, not one per run");
}

#[test]
fn a_config_reload_that_changes_the_cli_probes_it_again() {
    let server = Server::start();
    assert_eq!(probed_cli(&server)["version"], "2.1.197");
    server.edit_config(json!({"claudeEnv": {"FAKE_CLAUDE_VERSION": "1.0.128"}}));
    assert!(
        eventually(15, || server.get("/health").json["cli"]["version"] == "1.0.128"),
        "{}",
        server.get("/health").text
    );
    assert_eq!(server.ask("after the reload").status, 200);
    assert!(!crate::support::argv(&server.starts()[0]).contains(&"--max-budget-usd".to_string()));
}

#[test]
fn a_cli_installed_while_the_server_runs_is_probed_without_a_reload() {
    let dir = crate::support::TempDir::new("late-cli");
    let claude = dir.path().join("claude");
    let server = Server::start_with(json!({"claudePath": claude.display().to_string()}));
    let not_found = || server.get("/health").json["cli"]["error"].as_str().is_some_and(|e| e.contains("not found"));
    assert!(eventually(15, not_found), "{}", server.get("/health").text);
    std::os::unix::fs::symlink(crate::support::FAKE_CLAUDE, &claude).unwrap();
    assert!(
        eventually(15, || server.get("/health").json["cli"]["version"] == "2.1.197"),
        "{}",
        server.get("/health").text
    );
}
