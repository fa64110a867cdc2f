//! The screens of the TUI. Each opens at once (with "Loading…" where it waits for the server)
//! and fills in when its background call returns; Esc or Back closes it.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use cursive::event::{Event, Key};
use cursive::theme::{BaseColor, Color};
use cursive::traits::*;
use cursive::utils::markup::StyledString;
use cursive::views::{Checkbox, Dialog, EditView, LinearLayout, ListView, OnEventView, SelectView, TextView};
use cursive::Cursive;
use serde_json::{json, Value};

use super::view_model::{self, Kind, CONFIG_FIELDS};
use super::{in_background, ui};
use crate::{config, daemon, fsutil};

/// How much of the log file the Logs screen reads (its end).
const LOG_TAIL_BYTES: u64 = 1 << 20;

fn closable<V: View>(view: V) -> OnEventView<V> {
    OnEventView::new(view).on_event(Key::Esc, |s| {
        s.pop_layer();
    })
}

fn show(s: &mut Cursive, title: &str, text: impl Into<String>) {
    s.add_layer(closable(Dialog::text(text.into()).title(title).dismiss_button("OK")));
}

/// A dialog that waits; `fill` replaces it, unless the user closed it meanwhile.
fn loading(s: &mut Cursive, name: &'static str, title: &str, what: &str) {
    let text = TextView::new(format!("{what}…")).with_name(name);
    s.add_layer(closable(Dialog::around(text).title(title).dismiss_button("Back")));
}

fn fill<V: View>(s: &mut Cursive, name: &str, view: V) {
    if s.find_name::<TextView>(name).is_some() {
        s.pop_layer();
        s.add_layer(closable(view));
    }
}

fn failed(title: &str, error: &str) -> Dialog {
    Dialog::text(error.to_string()).title(title).dismiss_button("Back")
}

pub fn start_service(s: &mut Cursive) {
    let source = ui(s).source.clone();
    loading(s, "start", "Start service", "Starting the server");
    in_background(s, move || daemon::start(&source).text(), |s, text| fill(s, "start", failed("Start service", &text)));
}

pub fn stop_service(s: &mut Cursive) {
    let source = ui(s).source.clone();
    loading(s, "stop", "Stop service", "Stopping the server (running tasks get their grace time)");
    in_background(s, move || daemon::stop(&source).text(), |s, text| fill(s, "stop", failed("Stop service", &text)));
}

pub fn status(s: &mut Cursive) {
    let source = ui(s).source.clone();
    loading(s, "status", "Status", "Asking the server");
    in_background(s, move || daemon::status(&source).text(), |s, text| fill(s, "status", failed("Status", &text)));
}

pub fn sessions(s: &mut Cursive) {
    let client = ui(s).client.clone();
    loading(s, "sessions", "Sessions", "Loading sessions");
    in_background(
        s,
        move || client.get("/api/sessions?limit=500"),
        |s, result| match result {
            Ok(json) => {
                let sessions = json["sessions"].as_array().cloned().unwrap_or_default();
                let title = format!("Sessions ({} of {}, newest first)", sessions.len(), json["total"]);
                if sessions.is_empty() {
                    return fill(s, "sessions", failed(&title, "No sessions yet."));
                }
                let mut list = SelectView::<String>::new();
                for session in &sessions {
                    list.add_item(view_model::session_row(session), session["id"].as_str().unwrap_or("").to_string());
                }
                list.set_on_submit(|s, id: &String| session_detail(s, id.clone()));
                fill(s, "sessions", Dialog::around(list.scrollable()).title(title).dismiss_button("Back"));
            }
            Err(e) => fill(s, "sessions", failed("Sessions", &e)),
        },
    );
}

fn session_detail(s: &mut Cursive, id: String) {
    let client = ui(s).client.clone();
    loading(s, "session", "Session", "Loading the session");
    let path = format!("/api/sessions/{id}");
    in_background(
        s,
        move || client.get(&path),
        move |s, result| match result {
            Ok(json) => {
                let text = TextView::new(view_model::session_detail(&json["session"])).scrollable();
                let dialog = Dialog::around(text)
                    .title("Session")
                    .button("Delete", move |s| confirm_delete_session(s, id.clone()))
                    .dismiss_button("Back");
                fill(s, "session", dialog);
            }
            Err(e) => fill(s, "session", failed("Session", &e)),
        },
    );
}

fn confirm_delete_session(s: &mut Cursive, id: String) {
    let question = format!("Delete session {id} and all its turns?");
    let dialog = Dialog::text(question).title("Delete session").dismiss_button("Cancel").button("Delete", move |s| {
        s.pop_layer();
        let client = ui(s).client.clone();
        let path = format!("/api/sessions/{id}");
        in_background(
            s,
            move || client.delete(&path),
            |s, result| match result {
                Ok(_) => {
                    s.pop_layer(); // the session
                    s.pop_layer(); // the old list
                    sessions(s);
                    show(s, "Delete session", "Deleted.");
                }
                Err(e) => show(s, "Delete session", e),
            },
        );
    });
    s.add_layer(closable(dialog));
}

pub fn tasks(s: &mut Cursive) {
    let client = ui(s).client.clone();
    loading(s, "tasks", "Tasks", "Loading tasks");
    in_background(
        s,
        move || Ok::<_, String>((client.get("/api/tasks?limit=500")?, client.get("/api/tasks/queue/status")?)),
        |s, result| match result {
            Ok((json, queue)) => {
                let tasks = json["tasks"].as_array().cloned().unwrap_or_default();
                let mut list = SelectView::<String>::new();
                for task in &tasks {
                    list.add_item(view_model::task_row(task), task["id"].as_str().unwrap_or("").to_string());
                }
                list.set_on_submit(|s, id: &String| task_detail(s, id.clone()));
                let layout = LinearLayout::vertical()
                    .child(TextView::new(format!("{}\n", view_model::queue_line(&queue["queue"]))))
                    .child(if tasks.is_empty() {
                        Box::new(TextView::new("No tasks yet.")) as Box<dyn View>
                    } else {
                        Box::new(list.scrollable())
                    });
                let title = format!("Tasks ({} of {}, in queue order)", tasks.len(), json["total"]);
                fill(s, "tasks", Dialog::around(layout).title(title).dismiss_button("Back"));
            }
            Err(e) => fill(s, "tasks", failed("Tasks", &e)),
        },
    );
}

fn task_detail(s: &mut Cursive, id: String) {
    let client = ui(s).client.clone();
    loading(s, "task", "Task", "Loading the task");
    let path = format!("/api/tasks/{id}");
    in_background(
        s,
        move || client.get(&path),
        move |s, result| match result {
            Ok(json) => {
                let (cancel_id, priority_id) = (id.clone(), id.clone());
                let dialog = Dialog::around(TextView::new(view_model::task_detail(&json["task"])).scrollable())
                    .title("Task")
                    .button("Cancel task", move |s| act_on_task(s, "DELETE", cancel_id.clone(), None))
                    .button("Priority", move |s| ask_priority(s, priority_id.clone()))
                    .dismiss_button("Back");
                fill(s, "task", dialog);
            }
            Err(e) => fill(s, "task", failed("Task", &e)),
        },
    );
}

fn ask_priority(s: &mut Cursive, id: String) {
    let dialog = Dialog::around(
        LinearLayout::vertical()
            .child(TextView::new("New priority (1-10, higher runs first):"))
            .child(EditView::new().with_name("priority").fixed_width(6)),
    )
    .title("Change priority")
    .dismiss_button("Cancel")
    .button("Set", move |s| {
        let text =
            s.call_on_name("priority", |v: &mut EditView| v.get_content()).map(|c| c.to_string()).unwrap_or_default();
        match text.trim().parse::<u8>() {
            Ok(p) if (1..=10).contains(&p) => {
                s.pop_layer();
                act_on_task(s, "PATCH", id.clone(), Some(p));
            }
            _ => show(s, "Change priority", format!("\"{text}\" is not a priority: use a whole number from 1 to 10")),
        }
    });
    s.add_layer(closable(dialog));
}

/// Cancels a task or changes its priority, then shows it again.
fn act_on_task(s: &mut Cursive, method: &'static str, id: String, priority: Option<u8>) {
    let client = ui(s).client.clone();
    let path = format!("/api/tasks/{id}");
    in_background(
        s,
        move || match priority {
            Some(p) => client.patch(&format!("{path}/priority"), &json!({"priority": p})),
            None if method == "DELETE" => client.delete(&path),
            None => Err("unknown action".into()),
        },
        move |s, result| match result {
            Ok(_) => {
                s.pop_layer();
                task_detail(s, id);
            }
            Err(e) => show(s, "Task", e),
        },
    );
}

pub fn statistics(s: &mut Cursive) {
    let client = ui(s).client.clone();
    loading(s, "statistics", "Statistics", "Loading statistics");
    in_background(
        s,
        move || client.get("/api/statistics"),
        |s, result| match result {
            Ok(json) => {
                let text = TextView::new(view_model::stats_text(&json["statistics"])).scrollable();
                fill(s, "statistics", Dialog::around(text).title("Statistics").dismiss_button("Back"));
            }
            Err(e) => fill(s, "statistics", failed("Statistics", &e)),
        },
    );
}

/// The end of the log file, whole lines only.
fn read_log_tail(path: &Path) -> Result<Vec<String>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // cut in the middle
    }
    Ok(lines)
}

fn styled_log(lines: &[&str]) -> StyledString {
    let mut out = StyledString::new();
    for line in lines {
        let line = format!("{line}\n");
        match view_model::log_level(&line) {
            Some("ERROR") => out.append_styled(line, Color::Dark(BaseColor::Red)),
            Some("WARN") => out.append_styled(line, Color::Dark(BaseColor::Yellow)),
            Some("DEBUG" | "TRACE") => out.append_styled(line, Color::Light(BaseColor::Black)),
            _ => out.append_plain(line),
        }
    }
    out
}

pub fn logs(s: &mut Cursive) {
    let path = ui(s).config.log_file.clone();
    loading(s, "logs", "Logs", "Reading the log");
    in_background(
        s,
        move || read_log_tail(&path).map(|lines| (path, lines)),
        |s, result| match result {
            Ok((path, lines)) => {
                let lines = Arc::new(lines);
                let all: Vec<&str> = lines.iter().map(String::as_str).collect();
                let shown = styled_log(&view_model::search_log(&all, "", 500));
                let search = EditView::new().on_edit(move |s, query, _| {
                    let all: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let found = view_model::search_log(&all, query, 500);
                    let text = styled_log(&found);
                    s.call_on_name("log-lines", |v: &mut TextView| v.set_content(text));
                });
                let layout = LinearLayout::vertical()
                    .child(
                        LinearLayout::horizontal()
                            .child(TextView::new("Search: "))
                            .child(search.with_name("log-search").full_width()),
                    )
                    .child(
                        TextView::new(shown)
                            .with_name("log-lines")
                            .scrollable()
                            .scroll_strategy(cursive::view::ScrollStrategy::StickToBottom)
                            .full_height(),
                    );
                let dialog = Dialog::around(layout).title(format!("Logs: {}", path.display())).dismiss_button("Back");
                fill(s, "logs", dialog.full_screen());
            }
            Err(e) => fill(s, "logs", failed("Logs", &e)),
        },
    );
}

const API_DOCS: &str = "\
All answers are JSON: {\"success\": true, ...} or {\"success\": false, \"error\": \"...\"}.
With auth.apiKeys set, send 'Authorization: Bearer <key>' (or X-API-Key) to /api/* and /metrics.

GET    /health                         status, uptime, version, queue (no key needed)
POST   /api/claude                     {prompt, project_path, model, session_id, system_prompt,
                                        append_system_prompt, max_budget_usd, max_turns, timeout_ms,
                                        disallowed_tools, priority, metadata, async, webhook_url, stream}
                                       sync: the answer; async: 202 with task_id; stream: SSE events
POST   /api/claude/batch               {prompts: [1..10], project_path, model, async}
POST   /api/sessions                   {project_path, model, system_prompt, max_budget_usd, metadata}
GET    /api/sessions                   ?status&project_path&limit&offset, newest first
GET    /api/sessions/search            ?q&limit  (id and metadata)
GET    /api/sessions/:id               the session and its turns
GET    /api/sessions/:id/stats         its counters
POST   /api/sessions/:id/continue      the next turn (same fields as /api/claude)
PATCH  /api/sessions/:id/status        {status: active|archived|closed}
DELETE /api/sessions/:id               the session and its turns
POST   /api/tasks/async                same fields as /api/claude; 201 with the task
GET    /api/tasks                      ?status&limit&offset, in queue order
GET    /api/tasks/:id                  one task: status, result, error, cost, webhook, ...
GET    /api/tasks/:id/events           follow a task's events (Server-Sent Events)
PATCH  /api/tasks/:id/priority         {priority: 1..10} while pending
DELETE /api/tasks/:id                  cancel: waiting never runs, running is killed
POST   /api/tasks/:id/retry            run a failed/timeout/cancelled/interrupted task again
GET    /api/tasks/queue/status         counts by status, concurrency, oldest waiting
GET    /api/statistics                 summary, last 7 days, top models
GET    /api/statistics/summary         totals
GET    /api/statistics/daily           ?limit=30
GET    /api/statistics/range           ?start=YYYY-MM-DD&end=YYYY-MM-DD
GET    /api/statistics/models          ?limit=10
GET    /api/config                     the config, secrets masked
PUT    /api/config                     {keys to change}: validated, saved, applied
GET    /metrics                        Prometheus text

Errors: 400 bad field (with \"field\"), 401 key, 403 forbidden, 404 unknown, 405 method,
409 state, 413 body too large, 429 rate limit, 502 CLI failed, 503 queue full, 504 CLI timeout.
";

pub fn api_docs(s: &mut Cursive) {
    s.add_layer(closable(
        Dialog::around(TextView::new(API_DOCS).scrollable()).title("API documentation").dismiss_button("Back"),
    ));
}

pub fn configuration(s: &mut Cursive) {
    let client = ui(s).client.clone();
    let running_config = ui(s).config.to_json();
    loading(s, "configuration", "Configuration", "Loading the configuration");
    in_background(
        s,
        move || match client.get("/api/config") {
            Ok(json) => (json["config"].clone(), true),
            Err(_) => (running_config, false),
        },
        |s, (current, live)| {
            let mut form = ListView::new();
            for (key, label, kind) in CONFIG_FIELDS {
                let value = view_model::field_value(&current, key);
                let name = format!("cfg:{key}");
                match kind {
                    Kind::Bool => form.add_child(*label, Checkbox::new().with_checked(value == "true").with_name(name)),
                    _ => form.add_child(*label, EditView::new().content(value).with_name(name).min_width(40)),
                }
            }
            let note = if live {
                "Saved changes apply at once through the running server (some need a restart: it says which)."
            } else {
                "The server is not running: changes are checked and saved to the file, and apply when it starts."
            };
            let layout = LinearLayout::vertical().child(TextView::new(format!("{note}\n"))).child(form.scrollable());
            let saved = current.clone();
            let dialog = Dialog::around(layout)
                .title("Configuration (Ctrl-S saves)")
                .button("Save", move |s| save_configuration(s, &current, live))
                .dismiss_button("Back");
            let view =
                OnEventView::new(dialog).on_event(Event::CtrlChar('s'), move |s| save_configuration(s, &saved, live));
            fill(s, "configuration", view);
        },
    );
}

fn save_configuration(s: &mut Cursive, current: &Value, live: bool) {
    let values: Vec<(&str, String)> = CONFIG_FIELDS
        .iter()
        .map(|(key, _, kind)| {
            let name = format!("cfg:{key}");
            let text = match kind {
                Kind::Bool => s.call_on_name(&name, |c: &mut Checkbox| c.is_checked().to_string()),
                _ => s.call_on_name(&name, |e: &mut EditView| e.get_content().to_string()),
            };
            (*key, text.unwrap_or_default())
        })
        .collect();
    let change = match view_model::form_change(current, &values) {
        Ok(change) if change.as_object().is_some_and(|o| o.is_empty()) => {
            return show(s, "Configuration", "Nothing changed.")
        }
        Ok(change) => change,
        Err(e) => return show(s, "Configuration", e),
    };
    let client = ui(s).client.clone();
    let source = ui(s).source.clone();
    in_background(
        s,
        // Keys that never change over HTTP are the operator's to change in the file, which this
        // terminal can write (the running server reloads it).
        move || {
            if live && !config::touches_file_only_keys(&change) {
                saved_live(&client, &change)
            } else {
                saved_to_file(&source, change, live)
            }
        },
        |s, result| match result {
            Ok(text) => {
                s.pop_layer();
                show(s, "Configuration", text);
            }
            Err(e) => show(s, "Configuration", format!("Not saved: {e}")),
        },
    );
}

fn saved_live(client: &super::Client, change: &Value) -> Result<String, String> {
    let answer = client.put("/api/config", change)?;
    let restart: Vec<&str> =
        answer["restart_required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    Ok(if restart.is_empty() {
        "Saved and applied.".to_string()
    } else {
        format!("Saved. Applied now except {}: restart the service for those.", restart.join(", "))
    })
}

/// Checks the change like the server would, then writes the file (the server is down, or the
/// change has file-only keys: a running server reloads the file).
fn saved_to_file(source: &config::ConfigSource, change: Value, running: bool) -> Result<String, String> {
    let mut file = config::read_json(&source.path).map_err(|e| e.to_string())?;
    config::merge(&mut file, change);
    config::from_value(&file, source.defaults()).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    fsutil::write_private(&source.path, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(if running {
        format!(
            "Saved to {}; the running server reloads it in a moment (host and port need a restart).",
            source.path.display()
        )
    } else {
        format!("Saved to {}; the server uses it when it starts.", source.path.display())
    })
}

pub fn test_api(s: &mut Cursive) {
    let client = ui(s).client.clone();
    let project = ui(s).config.default_project_path.clone();
    let form = ListView::new()
        .child("Prompt", EditView::new().on_submit(|s, _| send_test_prompt(s)).with_name("test-prompt").min_width(60))
        .child("Project folder", EditView::new().content(project).with_name("test-project").min_width(60));
    let layout = LinearLayout::vertical()
        .child(TextView::new("Checking the server…").with_name("test-health"))
        .child(form)
        .child(TextView::new("").with_name("test-answer").scrollable());
    let dialog =
        Dialog::around(layout).title("Test API (Enter sends)").button("Send", send_test_prompt).dismiss_button("Back");
    s.add_layer(closable(dialog));
    in_background(
        s,
        move || (client.get("/health"), client.base().to_string()),
        |s, (health, base)| {
            let line = view_model::status_line(&health, &base);
            s.call_on_name("test-health", |v: &mut TextView| v.set_content(format!("{line}\n")));
        },
    );
}

fn send_test_prompt(s: &mut Cursive) {
    let read = |s: &mut Cursive, name: &str| {
        s.call_on_name(name, |e: &mut EditView| e.get_content().to_string()).unwrap_or_default()
    };
    let (prompt, project) = (read(s, "test-prompt"), read(s, "test-project"));
    if prompt.trim().is_empty() {
        return show(s, "Test API", "Type a prompt first.");
    }
    s.call_on_name("test-answer", |v: &mut TextView| {
        v.set_content("\nRunning… (the answer comes when claude is done)")
    });
    let client = ui(s).client.clone();
    in_background(
        s,
        move || client.post_and_wait("/api/claude", &json!({"prompt": prompt, "project_path": project})),
        |s, result| {
            let text = match result {
                Ok(a) => format!(
                    "\n{}\n\ncost ${:.4}   {} ms   session {}",
                    a["result"].as_str().unwrap_or(""),
                    a["cost_usd"].as_f64().unwrap_or(0.0),
                    a["duration_ms"],
                    a["session_id"].as_str().unwrap_or("")
                ),
                Err(e) => format!("\nFailed: {e}"),
            };
            s.call_on_name("test-answer", |v: &mut TextView| v.set_content(text));
        },
    );
}
