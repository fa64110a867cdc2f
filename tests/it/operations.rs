//! Operating a server: rate limits, project roots, statistics that sum what the CLI reported,
//! `/metrics`, and changing the config live through `PUT /api/config` or the file (in place and
//! by rename).

use std::collections::HashMap;

use crate::support::{eventually, http, Server};
use serde_json::{json, Value};

#[test]
fn the_request_after_the_limit_is_429_with_headers_until_the_window_ends() {
    let server = Server::start_with(json!({"rateLimit": {"enabled": true, "maxRequests": 3, "windowMs": 4000}}));
    // Start at the beginning of a window, so all four requests fall into the same one.
    let now = chrono::Utc::now().timestamp_millis() as u64;
    std::thread::sleep(std::time::Duration::from_millis(4000 - now % 4000 + 20));
    for remaining in [2, 1, 0] {
        let r = server.get("/api/sessions");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("RateLimit-Limit"), Some("3"));
        assert_eq!(r.header("RateLimit-Remaining"), Some(remaining.to_string().as_str()));
        assert_eq!(r.header("RateLimit-Policy"), Some("3;w=4"));
        assert!(r.header("RateLimit-Reset").is_some());
    }
    let limited = server.get("/api/sessions");
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.json["success"], false);
    let retry_after: u64 = limited.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry_after));
    assert_eq!(limited.json["retryAfter"], retry_after);
    assert!(limited.error().contains("at most 3 per 4 s"));
    // /health is never limited; a new window starts afresh.
    assert_eq!(server.get("/health").status, 200);
    assert!(server.get("/health").header("RateLimit-Limit").is_none());
    std::thread::sleep(std::time::Duration::from_millis(retry_after * 1000 + 50));
    assert_eq!(server.get("/api/sessions").status, 200);
}

#[test]
fn each_api_key_has_its_own_budget() {
    let server = Server::start_with(
        json!({"auth": {"apiKeys": ["key-one-123456", "key-two-123456"]}, "rateLimit": {"enabled": true, "maxRequests": 2, "windowMs": 86400000}}),
    );
    let get = |key: &str| http(server.port, "GET", "/api/sessions", None, &[("X-API-Key", key)]).status;
    assert_eq!([get("key-one-123456"), get("key-one-123456"), get("key-one-123456")], [200, 200, 429]);
    assert_eq!(get("key-two-123456"), 200);
}

#[test]
fn project_folders_outside_the_allowed_roots_are_403() {
    let server = Server::start_with(json!({}));
    server.edit_config(json!({"allowedProjectRoots": [server.project]}));
    assert!(eventually(10, || server.log_text().contains("config reloaded")));
    assert_eq!(server.ask("inside").status, 200);
    let outside = server.post("/api/claude", json!({"prompt": "x", "project_path": server.home.path()}));
    assert_eq!((outside.status, outside.json["field"].as_str()), (403, Some("project_path")));
    assert!(outside.error().contains("allowedProjectRoots"), "{}", outside.error());
}

#[test]
fn narrowing_the_allowed_roots_stops_existing_sessions_outside_them() {
    let server = Server::start_with(json!({}));
    let session = server.new_session(json!({"project_path": server.project}));
    let turn = |prompt: &str| server.post(&format!("/api/sessions/{session}/continue"), json!({"prompt": prompt}));
    assert_eq!(turn("before").status, 200);
    let elsewhere = server.home.path().join("workspace");
    server.edit_config(json!({"allowedProjectRoots": [elsewhere]}));
    assert!(eventually(10, || server.log_text().contains("config reloaded")));
    let refused = turn("after");
    assert_eq!((refused.status, refused.json["field"].as_str()), (403, Some("project_path")), "{}", refused.text);
    assert!(refused.error().contains("allowedProjectRoots"), "{}", refused.error());
    let by_id = server.post("/api/claude", json!({"prompt": "again", "session_id": session}));
    assert_eq!(by_id.status, 403, "{}", by_id.text);
    assert_eq!(server.starts().len(), 1, "the CLI ran only before the roots narrowed");
}

#[test]
fn statistics_sum_exactly_what_the_cli_reported() {
    let server = Server::start();
    let mut expected_input = 0;
    let mut expected_output = 0;
    for prompt in ["one", "two", "three", "@@fail=api"] {
        let r = server.ask(prompt);
        let task = server.get(&format!("/api/tasks/{}", r.json["task_id"].as_str().unwrap())).json["task"].clone();
        expected_input += task["usage"]["input_tokens"].as_u64().unwrap_or(0);
        expected_output += task["usage"]["output_tokens"].as_u64().unwrap_or(0);
    }
    let model =
        server.post("/api/claude", json!({"prompt": "other model", "project_path": server.project, "model": "opus"}));
    expected_input += model.json["usage"]["input_tokens"].as_u64().unwrap();
    expected_output += model.json["usage"]["output_tokens"].as_u64().unwrap();

    let s = server.get("/api/statistics/summary").json["statistics"].clone();
    assert_eq!(s["requests"], json!({"total": 5, "successful": 4, "failed": 1}));
    assert_eq!(s["costs"]["total_usd"], 0.05, "4 × 0.0125 from the fake, the API error cost nothing");
    assert_eq!(s["tokens"], json!({"total_input": expected_input, "total_output": expected_output}));
    assert_eq!(s["models"]["claude-sonnet-4-5"]["count"], 4);
    assert_eq!(s["models"]["opus"], json!({"count": 1, "cost_usd": 0.0125}));
    assert!(s["avg_duration_ms"].is_u64());

    let today = chrono::Utc::now().date_naive().to_string();
    let daily = server.get("/api/statistics/daily?limit=3").json["statistics"].clone();
    assert_eq!(daily.as_array().unwrap().len(), 3);
    assert_eq!(daily[0]["date"], today.as_str());
    assert_eq!(daily[0]["total_requests"], 5);
    assert_eq!(daily[0]["total_cost_usd"], 0.05);
    assert_eq!(daily[1]["total_requests"], 0);
    let range = server.get(&format!("/api/statistics/range?start={today}&end={today}")).json["statistics"].clone();
    assert_eq!(range[0]["successful_requests"], 4);
    assert_eq!(server.get("/api/statistics/range?start=2026-13-01&end=2026-01-02").status, 400);
    assert_eq!(server.get("/api/statistics/range?start=2026-02-01&end=2026-01-01").status, 400);
    let models = server.get("/api/statistics/models?limit=1").json["models"].clone();
    assert_eq!(models, json!([{"model": "claude-sonnet-4-5", "count": 4, "cost_usd": 0.0375}]));
    let overview = server.get("/api/statistics").json["statistics"].clone();
    assert_eq!(overview["recent_daily"].as_array().unwrap().len(), 7);
    assert_eq!(overview["top_models"][0]["model"], "claude-sonnet-4-5");
    assert_eq!(overview["summary"]["requests"]["total"], 5);
}

#[test]
fn statistics_survive_a_restart() {
    let mut server = Server::start();
    server.ask("counted");
    server.restart();
    assert_eq!(server.get("/api/statistics/summary").json["statistics"]["requests"]["total"], 1);
}

/// Parses Prometheus text: every sample line is `name{labels} value` with a numeric value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {l}"));
            (name.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {l}")))
        })
        .collect()
}

#[test]
fn metrics_parse_as_prometheus_text_and_move() {
    let server = Server::start();
    let before = server.get("/metrics");
    assert_eq!(before.status, 200);
    assert!(before.header("Content-Type").unwrap().starts_with("text/plain"));
    let m0 = samples(&before.text);
    server.ask("metered");
    server.ask("@@fail=api");
    let m1 = samples(&server.get("/metrics").text);
    assert_eq!(m1["ccs_cli_runs_total{outcome=\"success\"}"] - m0["ccs_cli_runs_total{outcome=\"success\"}"], 1.0);
    assert_eq!(m1["ccs_cli_runs_total{outcome=\"failure\"}"] - m0["ccs_cli_runs_total{outcome=\"failure\"}"], 1.0);
    assert_eq!(m1["ccs_cost_usd_total"], 0.0125);
    assert_eq!(m1["ccs_tasks{status=\"completed\"}"], 1.0);
    assert_eq!(m1["ccs_cli_duration_seconds_count"], 2.0);
    assert_eq!(m1["ccs_cli_duration_seconds_bucket{le=\"+Inf\"}"], 2.0);
    assert_eq!(m1["ccs_http_requests_total{method=\"POST\",route=\"/api/claude\",status=\"200\"}"], 1.0);
    assert_eq!(m1["ccs_http_requests_total{method=\"POST\",route=\"/api/claude\",status=\"502\"}"], 1.0);
    assert!(m1["ccs_tokens_total{type=\"input\"}"] > 0.0);
    assert_eq!(m1["ccs_workers"], 3.0);
    let secured = Server::start_with(json!({"auth": {"apiKeys": ["metrics-key-123"]}}));
    assert_eq!(secured.get("/metrics").status, 401);
    let with_key = http(secured.port, "GET", "/metrics", None, &[("X-API-Key", "metrics-key-123")]);
    // A refused request is counted under the route it asked for.
    assert_eq!(
        samples(&with_key.text)["ccs_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}"],
        1.0
    );
}

#[test]
fn get_config_masks_secrets_and_put_changes_behaviour_live() {
    let server = Server::start_with(json!({
        "auth": {"apiKeys": ["super-secret-key-4242"], "adminKeys": ["the-admin-key-7777"]},
        "webhook": {"secret": "whsec_topsecret"},
    }));
    let key = [("Authorization", "Bearer the-admin-key-7777")];
    let got = http(server.port, "GET", "/api/config", None, &key);
    assert_eq!(got.status, 200);
    let shown = got.json["config"].clone();
    assert_eq!(shown["auth"]["apiKeys"], json!(["****4242"]));
    assert_eq!(shown["auth"]["adminKeys"], json!(["****7777"]));
    assert!(!got.text.contains("the-admin-key"));
    assert_eq!(shown["webhook"]["secret"], "****");
    assert_eq!(shown["claudeEnv"]["FAKE_CLAUDE_LOG"], "****");
    assert!(!got.text.contains("super-secret") && !got.text.contains("topsecret"));

    // PUT the masked config back with two changes: the secrets survive, the changes apply.
    let mut edited = shown.clone();
    edited["defaultModel"] = json!("claude-opus-4-1");
    edited["maxBodyBytes"] = json!(2048);
    let put = http(server.port, "PUT", "/api/config", Some(edited.to_string().as_bytes()), &key);
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json["restart_required"], json!([]));
    let saved: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    assert_eq!(saved["auth"]["apiKeys"], json!(["super-secret-key-4242"]));
    assert_eq!(saved["auth"]["adminKeys"], json!(["the-admin-key-7777"]));
    assert_eq!(saved["webhook"]["secret"], "whsec_topsecret");
    assert_eq!(saved["defaultModel"], "claude-opus-4-1");
    assert!(saved.get("port").is_none(), "the server's --port is not written to the file: {saved}");
    let body = json!({"prompt": "x".repeat(3000), "project_path": server.project}).to_string();
    assert_eq!(http(server.port, "POST", "/api/claude", Some(body.as_bytes()), &key).status, 413);
    let body = json!({"prompt": "which model", "project_path": server.project}).to_string();
    let r = http(server.port, "POST", "/api/claude", Some(body.as_bytes()), &key);
    assert_eq!(r.json["model"], "claude-opus-4-1", "{}", r.text);

    // An invalid change is refused whole and the running config keeps working.
    let bad = json!({"defaultModel": "claude-haiku-4-5", "rateLimit": {"maxRequests": -5}}).to_string();
    let refused = http(server.port, "PUT", "/api/config", Some(bad.as_bytes()), &key);
    assert_eq!(
        (refused.status, refused.json["field"].as_str()),
        (400, Some("rateLimit.maxRequests")),
        "{}",
        refused.text
    );
    let saved_after: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    assert_eq!(saved_after, saved);
    let r = http(server.port, "POST", "/api/claude", Some(body.as_bytes()), &key);
    assert_eq!(r.json["model"], "claude-opus-4-1");

    // Keys that need a restart are saved and reported.
    let restart = json!({"httpThreads": 4}).to_string();
    let r = http(server.port, "PUT", "/api/config", Some(restart.as_bytes()), &key);
    assert_eq!(r.json["restart_required"], json!(["httpThreads"]), "{}", r.text);
    // Keys are file-only: a PUT cannot rotate them (403), an edit of the file can, at once.
    let rotate = json!({"auth": {"apiKeys": ["rotated-key-000001"]}}).to_string();
    let refused = http(server.port, "PUT", "/api/config", Some(rotate.as_bytes()), &key);
    assert_eq!((refused.status, refused.json["field"].as_str()), (403, Some("auth")), "{}", refused.text);
    server.edit_config(json!({"auth": {"apiKeys": ["rotated-key-000001"]}}));
    let user = [("Authorization", "Bearer super-secret-key-4242")];
    assert!(eventually(10, || http(server.port, "GET", "/api/sessions", None, &user).status == 401));
    assert_eq!(http(server.port, "GET", "/api/sessions", None, &[("X-API-Key", "rotated-key-000001")]).status, 200);
}

#[test]
fn rate_limit_changes_apply_live() {
    let server = Server::start_with(json!({"rateLimit": {"enabled": true, "maxRequests": 1000}}));
    assert_eq!(server.get("/api/sessions").header("RateLimit-Limit"), Some("1000"));
    let r = http(server.port, "PUT", "/api/config", Some(br#"{"rateLimit": {"maxRequests": 7}}"#), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.get("/api/sessions").header("RateLimit-Limit"), Some("7"));
    http(server.port, "PUT", "/api/config", Some(br#"{"rateLimit": {"enabled": false}}"#), &[]);
    assert!(server.get("/api/sessions").header("RateLimit-Limit").is_none());
}

#[test]
fn a_rename_save_of_the_config_file_is_picked_up() {
    let server = Server::start();
    assert_eq!(server.ask("before").json["model"], "claude-sonnet-4-5");
    // What editors do: write a new file beside it, then rename it over the old one.
    let mut config: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    config["defaultModel"] = json!("claude-opus-4-1");
    let temp = server.state_dir().join("config.json.swp");
    std::fs::write(&temp, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    std::fs::rename(&temp, server.config_path()).unwrap();
    assert!(eventually(10, || server.ask("after").json["model"] == "claude-opus-4-1"));
    // And it keeps watching after the rename.
    server.edit_config(json!({"defaultModel": "claude-haiku-4-5"}));
    assert!(eventually(10, || server.ask("again").json["model"] == "claude-haiku-4-5"));
}
