//! The HTTP edge as a hostile client sees it (issue 11): one reading of the path for routing,
//! auth, rate limits and metrics; who may change the config; failed keys rate limited; bounded
//! heads, bodies, connections and time; a stop that no client can hold up.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{eventually, http, Response, Server};

const KEY: &str = "user-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";

fn secured() -> Server {
    Server::start_with(json!({"auth": {"apiKeys": [KEY], "adminKeys": [ADMIN]}}))
}

fn with_key(key: &str) -> [(&str, &str); 1] {
    [("X-API-Key", key)]
}

/// Sends raw bytes and reads whatever comes back until the server closes (or `secs` pass).
fn raw(port: u16, bytes: &[u8], secs: u64) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(text: &str) -> u16 {
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn no_spelling_of_a_protected_path_gets_in_without_a_key() {
    let server = secured();
    for path in [
        "/api/sessions",
        "//api/sessions",
        "//api//tasks",
        "///api///tasks///",
        "//api/config",
        "/api/config/",
        "//metrics",
        "/metrics/",
        "/api",
        "//api",
        "/%61pi/sessions",
        "/api/%73essions",
        "/API/sessions",
        "/Metrics",
        "/no/such/thing",
    ] {
        let r = http(server.port, "GET", path, None, &[]);
        assert_eq!(r.status, 401, "GET {path} without a key: {}", r.text);
        assert_eq!(r.json["success"], false);
    }
    // With the key, every spelling of a route is that route.
    for path in ["//api/sessions", "/api/sessions/", "///api///sessions///", "/%61pi/sessions"] {
        assert_eq!(http(server.port, "GET", path, None, &with_key(KEY)).status, 200, "{path}");
    }
    // Dot segments, encoded separators and non-paths are refused outright.
    for path in ["/./api/sessions", "/api/../api/config", "/api%2Fsessions", "/api/%2e%2e/config", "/api\\sessions"] {
        let r = http(server.port, "GET", path, None, &with_key(KEY));
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.error().contains("bad request path"), "{}", r.error());
    }
    assert_eq!(server.get("/health").status, 200, "/health needs no key");
    assert_eq!(server.get("//health/").status, 200);
}

#[test]
fn nothing_runs_and_no_config_changes_without_the_right_key() {
    let server = secured();
    let echo = json!({"claudePath": "/bin/echo"}).to_string();
    let prompt = json!({"prompt": "hi", "project_path": server.project}).to_string();
    // The chain that once ran /bin/echo: PUT //api/config, then POST //api/claude.
    for path in ["//api/config", "/api/config/", "/api//config"] {
        assert_eq!(http(server.port, "PUT", path, Some(echo.as_bytes()), &[]).status, 401, "{path}");
    }
    assert_eq!(http(server.port, "POST", "//api/claude", Some(prompt.as_bytes()), &[]).status, 401);
    assert_eq!(http(server.port, "POST", "/api//claude/", Some(prompt.as_bytes()), &[]).status, 401);
    // A key holder is not an admin; an admin cannot change what runs either.
    let r = http(server.port, "PUT", "//api/config", Some(echo.as_bytes()), &with_key(KEY));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.error().contains("admin key"), "{}", r.error());
    let r = http(server.port, "PUT", "/api/config", Some(echo.as_bytes()), &with_key(ADMIN));
    assert_eq!((r.status, r.json["field"].as_str()), (403, Some("claudePath")), "{}", r.text);
    assert!(r.error().contains("edit the config file"), "{}", r.error());
    assert!(server.calls().is_empty(), "the CLI never ran");
    let saved: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    assert_ne!(saved["claudePath"], "/bin/echo");
    // With the key, a prompt runs the configured CLI, not /bin/echo.
    let r = http(server.port, "POST", "//api/claude", Some(prompt.as_bytes()), &with_key(KEY));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(server.starts().len(), 1);
}

#[test]
fn only_an_admin_key_changes_the_config_and_never_the_file_only_keys() {
    let server = secured();
    let put = |body: Value, key: &str| {
        http(server.port, "PUT", "/api/config", Some(body.to_string().as_bytes()), &with_key(key))
    };
    let r = put(json!({"defaultModel": "claude-opus-4-1"}), KEY);
    assert_eq!(r.status, 403, "{}", r.text);
    let r = put(json!({"defaultModel": "claude-opus-4-1"}), ADMIN);
    assert_eq!(r.status, 200, "{}", r.text);
    for (body, key) in [
        (json!({"allowCallerOverrides": true}), "allowCallerOverrides"),
        (json!({"auth": {"apiKeys": []}}), "auth"),
        (json!({"auth": {"adminKeys": ["mine-now-0123456789"]}}), "auth"),
        (json!({"claudeEnv": {"PATH": "/tmp"}}), "claudeEnv"),
        (json!({"nvmBin": "/tmp"}), "nvmBin"),
        (json!({"mcp": {"enabled": true, "configPath": "/tmp/x.json"}}), "mcp"),
        (json!({"permissionMode": "bypassPermissions"}), "permissionMode"),
        (json!({"allowedTools": ["Bash"]}), "allowedTools"),
        (json!({"allowedProjectRoots": ["/"]}), "allowedProjectRoots"),
        (json!({"dataDir": "/tmp/elsewhere"}), "dataDir"),
        (json!({"logFile": "/tmp/x.log"}), "logFile"),
        (json!({"pidFile": "/tmp/x.pid"}), "pidFile"),
        (json!({"host": "0.0.0.0"}), "host"),
    ] {
        let r = put(body.clone(), ADMIN);
        assert_eq!((r.status, r.json["field"].as_str()), (403, Some(key)), "{body}: {}", r.text);
    }
    // The GET -> edit -> PUT round trip works: unchanged file-only keys are no change.
    let mut shown = http(server.port, "GET", "/api/config", None, &with_key(ADMIN)).json["config"].clone();
    shown["defaultModel"] = json!("claude-haiku-4-5");
    let r = put(shown, ADMIN);
    assert_eq!(r.status, 200, "{}", r.text);
    let saved: Value = serde_json::from_slice(&std::fs::read(server.config_path()).unwrap()).unwrap();
    assert_eq!(saved["auth"]["apiKeys"], json!([KEY]));
    assert_eq!(saved["defaultModel"], "claude-haiku-4-5");
}

#[test]
fn without_keys_the_config_changes_only_from_loopback_and_a_reload_cannot_open_the_door() {
    let server = Server::start_with(json!({"auth": {"apiKeys": [KEY]}}));
    // Keys but no admin key: nobody changes the config over HTTP.
    let r = http(server.port, "PUT", "/api/config", Some(br#"{"defaultModel":"m"}"#), &with_key(KEY));
    assert_eq!(r.status, 403);
    assert!(r.error().contains("auth.adminKeys"), "{}", r.error());
    // A reload that would leave a server on 0.0.0.0 without a key is refused like a PUT.
    server.edit_config(json!({"host": "0.0.0.0", "auth": {"apiKeys": []}}));
    assert!(eventually(10, || server.log_text().contains("refusing to listen on 0.0.0.0 without an API key")));
    assert_eq!(server.get("/api/sessions").status, 401, "the running config keeps its key");
    let open = Server::start();
    let r = http(open.port, "PUT", "/api/config", Some(br#"{"defaultModel":"m"}"#), &[]);
    assert_eq!(r.status, 200, "auth off, from 127.0.0.1: {}", r.text);
}

#[test]
fn wrong_keys_are_rate_limited_per_address() {
    let server = secured();
    for i in 0..10 {
        let r = http(server.port, "GET", "/api/sessions", None, &with_key(&format!("guess-{i}")));
        assert_eq!(r.status, 401);
    }
    let r = http(server.port, "GET", "/api/sessions", None, &with_key("guess-10"));
    assert_eq!(r.status, 429, "{}", r.text);
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(r.error().contains("wrong API key"), "{}", r.error());
    // Even the right key waits: guessing must not go on at full speed.
    assert_eq!(http(server.port, "GET", "/api/sessions", None, &with_key(KEY)).status, 429);
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn a_made_up_key_does_not_get_a_fresh_rate_limit_budget() {
    let server = Server::start_with(
        json!({"auth": {"apiKeys": [KEY]}, "rateLimit": {"enabled": true, "maxRequests": 2, "windowMs": 86400000}}),
    );
    let get = |key: &str| http(server.port, "GET", "/api/sessions", None, &with_key(key)).status;
    assert_eq!([get(KEY), get(KEY), get(KEY)], [200, 200, 429]);
    // Path spellings share the one budget too.
    assert_eq!(http(server.port, "GET", "//api//sessions", None, &with_key(KEY)).status, 429);
}

#[test]
fn metrics_labels_come_from_a_fixed_set() {
    let server = Server::start();
    for i in 0..40 {
        let text = raw(
            server.port,
            format!("FOO{i} /made/up/{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            5,
        );
        assert!(status_of(&text) >= 400, "{text}");
        server.get(&format!("/nothing/{i}"));
    }
    let metrics = server.get("/metrics").text;
    let series: Vec<&str> = metrics.lines().filter(|l| l.starts_with("ccs_http_requests_total{")).collect();
    assert!(series.len() < 10, "{series:#?}");
    assert!(series.iter().all(|l| !l.contains("FOO") && !l.contains("made") && !l.contains("nothing")), "{series:#?}");
    assert!(series.iter().any(|l| l.contains("method=\"other\",route=\"other\"")), "{series:#?}");
    assert!(series.iter().any(|l| l.contains("method=\"GET\",route=\"other\",status=\"404\"")), "{series:#?}");
}

#[test]
fn a_long_path_is_not_echoed_or_logged_whole() {
    let server = Server::start();
    let path = format!("/{}", "p".repeat(6000));
    let r: Response = server.get(&path);
    assert_eq!(r.status, 404);
    assert!(r.text.len() < 500, "{}", r.text.len());
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains("pppp")).expect("the request is logged");
    assert!(line.len() < 400, "{}", line.len());
}

/// Waits until `check` holds, polling; panics with `what` after `secs`.
#[allow(dead_code)]
fn within(secs: u64, what: &str, check: impl FnMut() -> bool) {
    let started = Instant::now();
    assert!(eventually(secs, check), "{what} (after {:?})", started.elapsed());
}
