//! What the TUI shows, as plain text from the API's JSON: pure functions, tested without a
//! terminal. The views only put these strings on screen.

use serde_json::{json, Map, Value};

/// At most `n` characters of `text` on one line (newlines become spaces), with `…` when cut.
pub fn truncate(text: &str, n: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= n {
        flat
    } else {
        let mut cut: String = flat.chars().take(n.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn short_id(v: &Value) -> String {
    s(v, "id").chars().take(8).collect()
}

/// `2026-11-21T12:21:58.336Z` → `2026-11-21 12:21`.
pub fn when(timestamp: &str) -> String {
    timestamp.get(..16).map(|t| t.replace('T', " ")).unwrap_or_else(|| timestamp.to_string())
}

fn usd(v: &Value) -> String {
    format!("${:.4}", v.as_f64().unwrap_or(0.0))
}

/// One line of the sessions list.
pub fn session_row(session: &Value) -> String {
    format!(
        "{}  {}  {:<8} {:>3} turns  {:>9}  {}",
        short_id(session),
        when(s(session, "created_at")),
        s(session, "status"),
        session["messages_count"].as_u64().unwrap_or(0),
        usd(&session["total_cost_usd"]),
        truncate(s(session, "project_path"), 40)
    )
}

/// A session with its turns, for the detail view.
pub fn session_detail(session: &Value) -> String {
    let mut out = format!(
        "Session {}\nstatus {}   model {}   cost {}   turns {}\nfolder {}\ncreated {}   updated {}\n",
        s(session, "id"),
        s(session, "status"),
        s(session, "model"),
        usd(&session["total_cost_usd"]),
        session["messages_count"].as_u64().unwrap_or(0),
        s(session, "project_path"),
        when(s(session, "created_at")),
        when(s(session, "updated_at")),
    );
    for turn in session["turns"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n#{} [{}] {} {} ms  task {}\n> {}\n",
            turn["seq"],
            s(turn, "status"),
            usd(&turn["cost_usd"]),
            turn["duration_ms"].as_u64().unwrap_or(0),
            s(turn, "task_id"),
            s(turn, "prompt")
        ));
        match (turn["result"].as_str(), turn["error"].as_str()) {
            (Some(result), _) => out.push_str(&format!("< {result}\n")),
            (None, Some(error)) => out.push_str(&format!("! {error}\n")),
            _ => {}
        }
    }
    out
}

/// One line of the tasks list.
pub fn task_row(task: &Value) -> String {
    format!(
        "{}  {:<11} p{:<2} {}  {}",
        short_id(task),
        s(task, "status"),
        task["priority"].as_u64().unwrap_or(0),
        when(s(task, "created_at")),
        truncate(s(task, "prompt"), 50)
    )
}

/// A task with everything the API tells about it.
pub fn task_detail(task: &Value) -> String {
    let mut out = format!(
        "Task {}\nstatus {}   priority {}   mode {}   model {}\nsession {}\nfolder {}\ncreated {}   started {}   ended {}\ncost {}   duration {} ms   exit code {}\n\nPrompt:\n{}\n",
        s(task, "id"),
        s(task, "status"),
        task["priority"],
        s(task, "mode"),
        s(task, "model"),
        s(task, "session_id"),
        s(task, "project_path"),
        when(s(task, "created_at")),
        when(s(task, "started_at")),
        when(s(task, "completed_at")),
        usd(&task["cost_usd"]),
        task["duration_ms"].as_u64().map_or("-".into(), |d| d.to_string()),
        task["exit_code"].as_i64().map_or("-".into(), |c| c.to_string()),
        s(task, "prompt"),
    );
    if let Some(result) = task["result"].as_str() {
        out.push_str(&format!("\nResult:\n{result}\n"));
    }
    if let Some(error) = task["error"].as_str() {
        out.push_str(&format!("\nError:\n{error}\n"));
    }
    if let Some(hook) = task["webhook"].as_object() {
        out.push_str(&format!(
            "\nWebhook: {} ({}, {} attempts)\n",
            hook.get("url").and_then(Value::as_str).unwrap_or(""),
            hook.get("status").and_then(Value::as_str).unwrap_or(""),
            hook.get("attempts").and_then(Value::as_u64).unwrap_or(0)
        ));
    }
    out
}

/// The queue in one line.
pub fn queue_line(queue: &Value) -> String {
    format!(
        "queue: {} pending, {} processing, {} completed, {} failed, {} cancelled (concurrency {})",
        queue["pending"],
        queue["processing"],
        queue["completed"],
        queue["failed"],
        queue["cancelled"],
        queue["concurrency"]
    )
}

/// The statistics screen from `GET /api/statistics`.
pub fn stats_text(stats: &Value) -> String {
    let summary = &stats["summary"];
    let mut out = format!(
        "Requests: {} ({} successful, {} failed)\nCost: {}   Tokens: {} in, {} out   Average: {} ms\n\nLast 7 days\n",
        summary["requests"]["total"],
        summary["requests"]["successful"],
        summary["requests"]["failed"],
        usd(&summary["costs"]["total_usd"]),
        summary["tokens"]["total_input"],
        summary["tokens"]["total_output"],
        summary["avg_duration_ms"],
    );
    for day in stats["recent_daily"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {}  {:>5} runs  {:>5} ok  {:>5} failed  {:>10}\n",
            s(day, "date"),
            day["total_requests"],
            day["successful_requests"],
            day["failed_requests"],
            usd(&day["total_cost_usd"])
        ));
    }
    out.push_str("\nTop models\n");
    for model in stats["top_models"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<30} {:>5} runs  {:>10}\n",
            s(model, "model"),
            model["count"],
            usd(&model["cost_usd"])
        ));
    }
    out
}

/// The status line: the server's state, or that it is not reachable.
pub fn status_line(health: &Result<Value, String>, base: &str) -> String {
    match health {
        Ok(h) => {
            let mut line = format!(
                "● running at {base}  v{}  up {}  |  queue: {} pending, {} processing",
                s(h, "version"),
                crate::daemon::uptime(h["uptime"].as_f64().unwrap_or(0.0)),
                h["queue"]["pending"],
                h["queue"]["processing"]
            );
            let live = &h["live"];
            if live.is_object() {
                let mb = live["rss_bytes"].as_u64().unwrap_or(0) / 1_000_000;
                line.push_str(&format!(
                    "  |  live claude: {} session(s), {} spare(s), {mb} MB",
                    live["sessions"], live["spares"]
                ));
            }
            if h["status"] == "degraded" {
                line.push_str(&format!("  |  DEGRADED: {}", s(&h["store"], "reason")));
            }
            line
        }
        Err(_) => format!("○ not running at {base}  (Start service from the menu)"),
    }
}

/// The level of a log line (`[INFO]`, `[WARN]`, ...).
pub fn log_level(line: &str) -> Option<&'static str> {
    ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].into_iter().find(|level| line.contains(&format!("[{level}]")))
}

/// Log lines that contain `query` (any case), at most `limit` of the newest, oldest first.
pub fn search_log<'a>(lines: &[&'a str], query: &str, limit: usize) -> Vec<&'a str> {
    let needle = query.to_lowercase();
    let found: Vec<&str> =
        lines.iter().copied().filter(|l| needle.is_empty() || l.to_lowercase().contains(&needle)).collect();
    found[found.len().saturating_sub(limit)..].to_vec()
}

/// What kind of value a config form field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Number,
    Bool,
}

/// The keys the configuration form edits: (dotted key, label, kind).
pub const CONFIG_FIELDS: &[(&str, &str, Kind)] = &[
    ("port", "Port", Kind::Integer),
    ("host", "Host", Kind::Text),
    ("claudePath", "claude path", Kind::Text),
    ("defaultProjectPath", "Default project folder", Kind::Text),
    ("defaultModel", "Default model", Kind::Text),
    ("maxBudgetUsd", "Budget per run (USD)", Kind::Number),
    ("taskQueue.concurrency", "Concurrency", Kind::Integer),
    ("taskQueue.defaultTimeout", "Timeout (ms)", Kind::Integer),
    ("logLevel", "Log level", Kind::Text),
    ("rateLimit.enabled", "Rate limit on", Kind::Bool),
    ("rateLimit.maxRequests", "Requests per window", Kind::Integer),
    ("rateLimit.windowMs", "Window (ms)", Kind::Integer),
    ("webhook.enabled", "Default webhook on", Kind::Bool),
    ("webhook.defaultUrl", "Default webhook URL", Kind::Text),
];

/// The current text of a form field.
pub fn field_value(config: &Value, key: &str) -> String {
    let pointer = format!("/{}", key.replace('.', "/"));
    match config.pointer(&pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The config change a filled-in form makes: only fields whose value differs from `config`,
/// typed by their kind. An error names the field.
pub fn form_change(config: &Value, values: &[(&str, String)]) -> Result<Value, String> {
    let mut change = Value::Object(Map::new());
    for (key, text) in values {
        let Some((_, label, kind)) = CONFIG_FIELDS.iter().find(|(k, _, _)| k == key) else { continue };
        if field_value(config, key) == *text {
            continue;
        }
        let text = text.trim();
        let value = match kind {
            Kind::Text if text.is_empty() => Value::Null,
            Kind::Text => json!(text),
            Kind::Integer => {
                json!(text.parse::<u64>().map_err(|_| format!("{label}: \"{text}\" is not a whole number"))?)
            }
            Kind::Number => json!(text.parse::<f64>().map_err(|_| format!("{label}: \"{text}\" is not a number"))?),
            Kind::Bool => json!(text == "true"),
        };
        // `a.b` becomes {"a": {"b": value}}, merged with the other changes.
        let nested = key.rsplit('.').fold(value, |inner, part| json!({ part: inner }));
        crate::config::merge(&mut change, nested);
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_one_line_and_cut_long_text() {
        let session = json!({"id": "dc6a9416-5a04-47d7", "created_at": "2026-11-21T12:21:58.336Z", "status": "active",
                             "messages_count": 2, "total_cost_usd": 0.025, "project_path": "/tmp/myproject"});
        assert_eq!(session_row(&session), "dc6a9416  2026-11-21 12:21  active     2 turns    $0.0250  /tmp/myproject");
        let task = json!({"id": "b09ee572-f102", "status": "pending", "priority": 9, "created_at": "2026-11-21T12:35:06.237Z",
                          "prompt": "Write the changelog\nwith every change since the last release and more words here"});
        let row = task_row(&task);
        assert!(row.starts_with("b09ee572  pending     p9  2026-11-21 12:35  Write the changelog with every"), "{row}");
        assert!(row.ends_with('…') && !row.contains('\n'));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn details_show_turns_results_and_errors() {
        let session = json!({"id": "s1", "status": "active", "model": "m", "total_cost_usd": 0.01, "messages_count": 2,
            "project_path": "/p", "created_at": "2026-11-21T12:00:00Z", "updated_at": "2026-11-21T12:01:00Z",
            "turns": [{"seq": 1, "status": "completed", "cost_usd": 0.01, "duration_ms": 5, "task_id": "t1", "prompt": "hi", "result": "hello", "error": null},
                      {"seq": 2, "status": "failed", "cost_usd": 0, "duration_ms": 1, "task_id": "t2", "prompt": "again", "result": null, "error": "API Error"}]});
        let text = session_detail(&session);
        assert!(text.contains("#1 [completed]") && text.contains("> hi\n< hello"));
        assert!(text.contains("#2 [failed]") && text.contains("! API Error"));
        let task = json!({"id": "t1", "status": "completed", "result": "done", "webhook": {"url": "http://x", "status": "delivered", "attempts": 2}});
        let text = task_detail(&task);
        assert!(text.contains("Result:\ndone") && text.contains("Webhook: http://x (delivered, 2 attempts)"));
    }

    #[test]
    fn status_line_says_when_the_server_is_down() {
        let up = status_line(
            &Ok(json!({"version": "0.1.0", "uptime": 125.0, "queue": {"pending": 1, "processing": 2}})),
            "http://h:1",
        );
        assert_eq!(up, "● running at http://h:1  v0.1.0  up 2m 5s  |  queue: 1 pending, 2 processing");
        let live = json!({"version": "0.1.0", "uptime": 1.0, "queue": {"pending": 0, "processing": 0},
                          "live": {"sessions": 2, "spares": 1, "rss_bytes": 480_000_000u64}});
        assert!(status_line(&Ok(live), "http://h:1").ends_with("|  live claude: 2 session(s), 1 spare(s), 480 MB"));
        assert!(status_line(&Err("refused".into()), "http://h:1").starts_with("○ not running at http://h:1"));
    }

    #[test]
    fn log_search_is_a_plain_case_insensitive_substring_match() {
        let lines = ["2026 [INFO] task a queued", "2026 [WARN] slow $(rm -rf /)", "2026 [ERROR] Task B failed", "x"];
        assert_eq!(search_log(&lines, "task", 10), ["2026 [INFO] task a queued", "2026 [ERROR] Task B failed"]);
        assert_eq!(search_log(&lines, "$(rm -rf /)", 10), ["2026 [WARN] slow $(rm -rf /)"]);
        assert_eq!(search_log(&lines, "", 2), ["2026 [ERROR] Task B failed", "x"]);
        assert_eq!(log_level(lines[1]), Some("WARN"));
        assert_eq!(log_level("x"), None);
    }

    #[test]
    fn the_form_sends_only_changed_fields_with_their_types() {
        let config = json!({"port": 5546, "defaultModel": "m", "taskQueue": {"concurrency": 3}, "rateLimit": {"enabled": true},
                            "webhook": {"defaultUrl": null}});
        let values = vec![
            ("port", "5546".to_string()),
            ("defaultModel", "opus".to_string()),
            ("taskQueue.concurrency", "5".to_string()),
            ("rateLimit.enabled", "false".to_string()),
            ("webhook.defaultUrl", "".to_string()),
        ];
        let change = form_change(&config, &values).unwrap();
        assert_eq!(
            change,
            json!({"defaultModel": "opus", "taskQueue": {"concurrency": 5}, "rateLimit": {"enabled": false}})
        );
        let err = form_change(&config, &[("taskQueue.concurrency", "lots".to_string())]).unwrap_err();
        assert_eq!(err, "Concurrency: \"lots\" is not a whole number");
        assert_eq!(field_value(&config, "taskQueue.concurrency"), "3");
        assert_eq!(field_value(&config, "webhook.defaultUrl"), "");
    }
}
