//! The binary as an operator meets it: arguments and exit codes, the first-start config, hot
//! reload (file change and SIGHUP) with validate-then-swap, refusing an open bind without a key,
//! API keys, and a graceful stop on SIGTERM.

use std::process::{Command, Stdio};

use crate::support::{eventually, http, Server, TempDir, CCS};
use serde_json::{json, Value};

fn ccs(home: &TempDir, args: &[&str]) -> std::process::Output {
    Command::new(CCS)
        .arg("--home")
        .arg(home.path().join("state"))
        .args(args)
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run ccs")
}

#[test]
fn help_version_and_usage_errors() {
    let home = TempDir::new("cli");
    let help = ccs(&home, &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("ccs [OPTIONS] <COMMAND>"));
    let version = ccs(&home, &["-V"]);
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("ccs {}", env!("CARGO_PKG_VERSION")));
    for args in [&["frobnicate"][..], &["serve", "--frob"], &["--port", "notaport", "serve"], &["serve", "extra"]] {
        let out = ccs(&home, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("ccs --help"), "{args:?}");
    }
}

#[test]
fn first_start_writes_the_full_default_config() {
    let server = Server::start();
    // The harness wrote a partial config; a fresh home gets every key.
    let fresh = TempDir::new("fresh");
    let port = crate::support::free_port();
    let mut child = Command::new(CCS)
        .args(["--home", fresh.path().join("state").to_str().unwrap(), "--port", &port.to_string(), "serve"])
        .env("HOME", fresh.path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(crate::support::wait_healthy(port, &mut child));
    let _ = child.kill();
    let _ = child.wait();
    let config: Value =
        serde_json::from_slice(&std::fs::read(fresh.path().join("state/config.json")).unwrap()).unwrap();
    assert_eq!(config["port"], 5546);
    assert_eq!(config["host"], "127.0.0.1");
    assert_eq!(config["claudePath"], "claude");
    assert_eq!(
        config["taskQueue"],
        json!({"concurrency": 3, "defaultTimeout": 300000, "maxPending": 10000, "killGraceMs": 5000})
    );
    assert_eq!(config["rateLimit"], json!({"enabled": true, "windowMs": 60000, "maxRequests": 100}));
    assert_eq!(config["webhook"]["retries"], 3);
    assert_eq!(config["defaultModel"], "claude-sonnet-4-5");
    assert_eq!(config["maxBodyBytes"], 1048576);
    assert_eq!(config["defaultProjectPath"], fresh.path().join("workspace").display().to_string());
    assert_eq!(config["dataDir"], fresh.path().join("state/data").display().to_string());
    assert!(fresh.path().join("state/logs/server.log").exists());
    drop(server);
}

#[test]
fn a_wrong_config_value_is_an_error_naming_the_key() {
    let home = TempDir::new("badcfg");
    std::fs::create_dir_all(home.path().join("state")).unwrap();
    std::fs::write(home.path().join("state/config.json"), r#"{"taskQueue": {"concurrency": 0}}"#).unwrap();
    let out = ccs(&home, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("taskQueue.concurrency") && err.contains("from 1 to 64"), "{err}");

    std::fs::write(home.path().join("state/config.json"), "{\"port\": 5546,,}").unwrap();
    let out = ccs(&home, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
}

#[test]
fn unknown_config_keys_are_warned_about_not_fatal() {
    let server = Server::start_with(json!({"maxBudgetUSD": 3}));
    assert!(
        eventually(5, || server.log_text().contains("unknown config key \"maxBudgetUSD\"")),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_second_server_on_the_same_port_fails_with_advice() {
    let server = Server::start();
    let other_home = TempDir::new("port");
    let out = ccs(&other_home, &["--port", &server.port.to_string(), "serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen") && err.contains("--port"), "{err}");
}

#[test]
fn a_second_server_on_the_same_home_leaves_the_first_ones_state_alone() {
    // The file store's lock (servers on one Redis share their state on purpose: redis_cluster.rs).
    let server = Server::start_with(json!({"storageType": "file"}));
    let running =
        server.post_in_background("/api/claude", json!({"prompt": "@@sleep=2", "project_path": server.project}));
    server.wait_for_runs(1);
    let other_port = crate::support::free_port();
    let out =
        server.command().args(["--port", &other_port.to_string(), "serve"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another ccs server is using this data folder"), "{err}");
    // The first server's run was not declared interrupted by the second.
    assert_eq!(running.join().unwrap().status, 200);
}

#[test]
fn open_bind_without_an_api_key_is_refused() {
    let home = TempDir::new("open");
    let out = ccs(&home, &["--host", "0.0.0.0", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.apiKeys") && err.contains("0.0.0.0"), "{err}");
}

#[test]
fn config_changes_apply_live_and_a_bad_edit_keeps_the_running_config() {
    let server = Server::start();
    let model_of_last_run = |server: &Server| -> String {
        let argv = server.starts().last().unwrap()["argv"].clone();
        let argv: Vec<String> = serde_json::from_value(argv).unwrap();
        argv.windows(2).find(|w| w[0] == "--model").map(|w| w[1].clone()).unwrap()
    };
    assert_eq!(server.ask("a").status, 200);
    assert_eq!(model_of_last_run(&server), "claude-sonnet-4-5");

    server.edit_config(json!({"defaultModel": "claude-opus-4-1"}));
    assert!(eventually(10, || server.log_text().contains("config reloaded")), "{}", server.log_text());
    assert_eq!(server.ask("b").status, 200);
    assert_eq!(model_of_last_run(&server), "claude-opus-4-1");

    // Invalid: the old config stays, and the log says why.
    server.edit_config(json!({"defaultModel": "claude-haiku-4-5", "taskQueue": {"concurrency": 500}}));
    assert!(eventually(10, || server.log_text().contains("config not reloaded")), "{}", server.log_text());
    assert!(server.log_text().contains("taskQueue.concurrency"));
    assert_eq!(server.ask("c").status, 200);
    assert_eq!(model_of_last_run(&server), "claude-opus-4-1");

    // A key that needs a restart is reported, not applied.
    // (`port` would not do: the harness passes --port, which wins over the file.)
    server.edit_config(json!({"taskQueue": {"concurrency": 2}, "dataDir": "/tmp/ccs-elsewhere"}));
    assert!(eventually(10, || server.log_text().contains("only after a restart: dataDir")), "{}", server.log_text());
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn sighup_reloads_the_config() {
    let server = Server::start();
    let path = server.config_path();
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["maxBodyBytes"] = json!(1024);
    // Same size and mtime as before, so only the signal can make the server look.
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(before).unwrap();
    crate::support::signal(server.pid(), libc::SIGHUP);
    let big = json!({"prompt": "x".repeat(2000), "project_path": server.project}).to_string();
    assert!(eventually(10, || http(server.port, "POST", "/api/claude", Some(big.as_bytes()), &[]).status == 413));
}

#[test]
fn api_keys_guard_the_api_but_not_health() {
    let server = Server::start_with(json!({"auth": {"apiKeys": ["k-123456"]}}));
    assert_eq!(server.get("/health").status, 200);
    let r = server.get("/api/sessions");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(http(server.port, "GET", "/api/sessions", None, &[("Authorization", "Bearer wrong")]).status, 401);
    assert_eq!(http(server.port, "GET", "/api/sessions", None, &[("Authorization", "Bearer k-123456")]).status, 200);
    assert_eq!(http(server.port, "GET", "/api/sessions", None, &[("X-API-Key", "k-123456")]).status, 200);
    assert!(!server.log_text().contains("k-123456"), "keys are never logged");
}

#[test]
fn sigterm_stops_gracefully_and_lets_a_running_request_finish() {
    // A grace period far longer than the run, so a slow machine still finishes it in time.
    let mut server = Server::start_with(json!({"taskQueue": {"killGraceMs": 15000}}));
    let running = server
        .post_in_background("/api/claude", json!({"prompt": "finishing @@sleep=0.5", "project_path": server.project}));
    server.wait_for_runs(1);
    assert_eq!(server.terminate(), Some(0));
    let answer = running.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(server.log_text().contains("stopped"));
}

#[test]
fn sigterm_kills_a_run_that_outlasts_the_grace_period() {
    let mut server = Server::start(); // killGraceMs 500 in the test config
    let running =
        server.post_in_background("/api/claude", json!({"prompt": "@@sleep=60", "project_path": server.project}));
    server.wait_for_runs(1);
    let cli_pid = server.starts()[0]["pid"].as_u64().unwrap() as u32;
    let started = std::time::Instant::now();
    assert_eq!(server.terminate(), Some(0));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(running.join().unwrap().status, 503);
    assert!(!crate::support::alive(cli_pid));
}

#[test]
fn sigterm_does_not_give_a_cli_that_ignores_sigterm_a_second_grace() {
    let mut server = Server::start_with(json!({"taskQueue": {"killGraceMs": 3000}}));
    let id = server.submit(json!({"prompt": "@@ignore-term @@sleep=60"}));
    server.wait_for_runs(1);
    let cli_pid = server.starts()[0]["pid"].as_u64().unwrap() as u32;
    let started = std::time::Instant::now();
    assert_eq!(server.terminate(), Some(0));
    let took = started.elapsed();
    // The grace once (3 s), then SIGKILL at once; not the grace again for SIGTERM -> SIGKILL.
    assert!(took < std::time::Duration::from_millis(5500), "stopped after {took:?}");
    assert!(!crate::support::alive(cli_pid));
    server.launch();
    assert_eq!(server.get(&format!("/api/tasks/{id}")).json["task"]["status"], "interrupted");
}

#[test]
fn hot_reloaded_concurrency_changes_how_many_clis_run_at_once() {
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let batch = |server: &Server| {
        let prompts: Vec<String> = (0..3).map(|i| format!("{i} @@sleep=0.4")).collect();
        let r = server.post("/api/claude/batch", json!({"prompts": prompts, "project_path": server.project}));
        assert_eq!(r.json["summary"]["successful"], 3, "{}", r.text);
    };
    batch(&server);
    assert_eq!(crate::support::max_overlap(&server.calls()), 1);
    std::fs::remove_file(&server.calls_log).unwrap();
    server.edit_config(json!({"taskQueue": {"concurrency": 3}}));
    assert!(eventually(10, || server.log_text().contains("config reloaded")));
    batch(&server);
    assert_eq!(crate::support::max_overlap(&server.calls()), 3);
    // And back down: surplus workers leave.
    std::fs::remove_file(&server.calls_log).unwrap();
    server.edit_config(json!({"taskQueue": {"concurrency": 1}}));
    assert!(eventually(10, || server.log_text().matches("config reloaded").count() >= 2));
    batch(&server);
    assert_eq!(crate::support::max_overlap(&server.calls()), 1);
}

#[test]
fn log_level_is_honoured_and_changes_live() {
    let server = Server::start_with(json!({"logLevel": "warn"}));
    assert_eq!(server.ask("quiet").status, 200);
    assert!(!server.log_text().contains("POST /api/claude 200"), "{}", server.log_text());
    server.edit_config(json!({"logLevel": "info"}));
    assert!(eventually(10, || {
        server.ask("loud");
        server.log_text().contains("POST /api/claude 200")
    }));
}
