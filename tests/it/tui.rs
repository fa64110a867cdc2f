//! The TUI in a real terminal: tmux runs `ccs --home TMP` at 120x40, send-keys drives it,
//! capture-pane reads the screen. Needs tmux (.ci/run installs it).

use std::process::Command;
use std::time::Duration;

use crate::support::{eventually, free_port, http, TempDir, CCS, FAKE_CLAUDE};
use serde_json::{json, Value};

/// Menu positions (Home, then Down this many times).
const SESSIONS: usize = 3;
const TASKS: usize = 4;
const LOGS: usize = 6;
const CONFIGURATION: usize = 8;
/// The fields of the configuration form (`tui::view_model::CONFIG_FIELDS`).
const CONFIG_FIELD_COUNT: usize = 14;
const TEST_API: usize = 9;

struct Tui {
    home: TempDir,
    session: String,
    port: u16,
}

fn tmux(args: &[&str]) -> std::process::Output {
    Command::new("tmux").args(args).output().expect("tmux is needed for the TUI tests (apt-get install tmux)")
}

impl Tui {
    fn open() -> Tui {
        let home = TempDir::new("tui");
        let port = free_port();
        std::fs::create_dir_all(home.path().join("state")).unwrap();
        std::fs::create_dir_all(home.path().join("project")).unwrap();
        let config = json!({
            "port": port,
            "claudePath": FAKE_CLAUDE,
            "rateLimit": {"enabled": false},
            "taskQueue": {"killGraceMs": 500},
            "claudeEnv": {"CLAUDE_CONFIG_DIR": home.path().join("claude").display().to_string()},
        });
        std::fs::write(home.path().join("state/config.json"), config.to_string()).unwrap();
        let session = format!("ccs-tui-{}", uuid::Uuid::new_v4().simple());
        let command =
            format!("env HOME={} {CCS} --home {}", home.path().display(), home.path().join("state").display());
        let out = tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "40", &command]);
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        // If the TUI ends (or dies), keep its last screen for the failure message.
        tmux(&["set-option", "-t", &session, "remain-on-exit", "on"]);
        let tui = Tui { home, session, port };
        tui.expect("Start service");
        tui
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &self.session]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            tmux(&["send-keys", "-t", &self.session, key]);
            if *key == "Escape" {
                // A key right after Escape would read as Alt+key (an escape sequence).
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    }

    /// Types text literally (no key names).
    fn type_text(&self, text: &str) {
        tmux(&["send-keys", "-t", &self.session, "-l", text]);
    }

    /// Waits until `text` is on screen; panics with the screen if it never is.
    fn expect(&self, text: &str) {
        let found = eventually(20, || self.screen().contains(text));
        assert!(found, "{text:?} never appeared; the screen:\n{}", self.screen());
    }

    fn open_menu_item(&self, position: usize) {
        self.keys(&["Escape", "Escape", "Escape", "Home"]);
        for _ in 0..position {
            self.keys(&["Down"]);
        }
        self.keys(&["Enter"]);
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> crate::support::Response {
        let body = body.map(|b| b.to_string());
        http(self.port, method, path, body.as_deref().map(str::as_bytes), &[])
    }

    fn start_service(&self) {
        self.open_menu_item(0);
        self.expect("ccs running (pid");
        self.keys(&["Escape"]);
        self.expect("● running at");
    }

    /// Whether the TUI process still runs in its pane.
    fn alive(&self) -> bool {
        let out = tmux(&["display-message", "-p", "-t", &self.session, "#{pane_dead}"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0"
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.session]);
        if let Ok(pid) = std::fs::read_to_string(self.home.path().join("state/server.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                crate::support::kill_if_ours(pid, &self.home.path().to_string_lossy());
            }
        }
    }
}

#[test]
fn the_menu_shows_every_item_says_the_server_is_down_and_q_quits() {
    let tui = Tui::open();
    let screen = tui.screen();
    for item in [
        "Start service",
        "Stop service",
        "Status",
        "Sessions",
        "Tasks",
        "Statistics",
        "Logs",
        "API documentation",
        "Configuration",
        "Test API",
        "Quit",
    ] {
        assert!(screen.contains(item), "{item} missing:\n{screen}");
    }
    tui.expect("○ not running at");
    tui.open_menu_item(SESSIONS);
    tui.expect("does not answer"); // a clear message, not a crash
    tui.keys(&["Escape"]);
    tui.keys(&["q"]);
    assert!(eventually(5, || !tui.alive()), "q did not quit:\n{}", tui.screen());
}

#[test]
fn start_from_the_menu_then_sessions_and_tasks_created_by_the_api_are_listed() {
    let tui = Tui::open();
    tui.start_service();
    let project = tui.home.path().join("project");
    let answer = tui.api("POST", "/api/claude", Some(json!({"prompt": "hello tui", "project_path": project})));
    assert_eq!(answer.status, 200, "{}", answer.text);
    let session_id = answer.json["session_id"].as_str().unwrap().to_string();
    let task = tui.api(
        "POST",
        "/api/tasks/async",
        Some(json!({"prompt": "queued from the api", "project_path": project, "priority": 8})),
    );
    let task_id = task.json["task"]["id"].as_str().unwrap().to_string();

    tui.open_menu_item(SESSIONS);
    tui.expect("Sessions (");
    tui.expect(&session_id[..8]);
    tui.keys(&["End", "Enter"]); // the oldest: the session of "hello tui"
    tui.expect("> hello tui");
    tui.expect("< You said: hello tui");

    tui.open_menu_item(TASKS);
    tui.expect("in queue order");
    tui.expect(&task_id[..8]);
    tui.expect("queue:");
    tui.expect("queued from the api");
}

#[test]
fn the_log_screen_searches_without_a_shell() {
    let tui = Tui::open();
    tui.start_service();
    let project = tui.home.path().join("project");
    tui.api("POST", "/api/claude", Some(json!({"prompt": "find me", "project_path": project})));
    tui.open_menu_item(LOGS);
    tui.expect("Logs: ");
    tui.expect("Search:");
    tui.expect("listening on");
    tui.type_text("$(touch /tmp/ccs-tui-pwned) task");
    tui.expect("Search: $(touch /tmp/ccs-tui-pwned) task");
    // Nothing matches that literally, so the lines are gone; no shell ran it.
    assert!(eventually(5, || !tui.screen().contains("listening on")), "{}", tui.screen());
    assert!(!std::path::Path::new("/tmp/ccs-tui-pwned").exists());
    for _ in 0.."$(touch /tmp/ccs-tui-pwned) task".len() {
        tui.keys(&["BSpace"]);
    }
    tui.type_text("RUNS TURN");
    tui.expect("Search: RUNS TURN");
    tui.expect("runs turn 1 of session"); // any case matches
    assert!(!tui.screen().contains("listening on"), "{}", tui.screen());
}

#[test]
fn a_config_change_is_saved_and_visible_in_the_api() {
    let tui = Tui::open();
    tui.start_service();
    tui.open_menu_item(CONFIGURATION);
    tui.expect("Configuration (Ctrl-S saves)");
    tui.expect("claude-sonnet-4-5");
    // Port, Host, claude path, Default project folder, Default model.
    tui.keys(&["Down", "Down", "Down", "Down", "End"]);
    for _ in 0.."claude-sonnet-4-5".len() {
        tui.keys(&["BSpace"]);
    }
    tui.type_text("claude-opus-4-1");
    tui.keys(&["C-s"]);
    tui.expect("Saved and applied.");
    let config = tui.api("GET", "/api/config", None);
    assert_eq!(config.json["config"]["defaultModel"], "claude-opus-4-1");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(tui.home.path().join("state/config.json")).unwrap()).unwrap();
    assert_eq!(saved["defaultModel"], "claude-opus-4-1");

    // A wrong value is refused with the server's reason, and nothing is saved.
    tui.keys(&["Escape"]);
    tui.open_menu_item(CONFIGURATION);
    tui.expect("Configuration (Ctrl-S saves)");
    tui.expect("Concurrency");
    for _ in 0..6 {
        tui.keys(&["Down"]);
    }
    tui.keys(&["End", "BSpace", "BSpace"]);
    tui.type_text("99");
    tui.keys(&["C-s"]);
    tui.expect("taskQueue.concurrency");
    assert_eq!(tui.api("GET", "/api/config", None).json["config"]["taskQueue"]["concurrency"], 3);
}

#[test]
fn a_file_only_key_changed_in_the_tui_goes_to_the_file_and_the_server_reloads_it() {
    let tui = Tui::open();
    tui.start_service();
    tui.open_menu_item(CONFIGURATION);
    tui.expect("Configuration (Ctrl-S saves)");
    tui.expect("Default webhook URL");
    // The last field: the default webhook URL, which never changes over HTTP.
    tui.keys(&["End"]);
    for _ in 0..CONFIG_FIELD_COUNT - 1 {
        tui.keys(&["Down"]);
    }
    tui.type_text("http://127.0.0.1:9/hook");
    tui.keys(&["C-s"]);
    tui.expect("the running server reloads it");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(tui.home.path().join("state/config.json")).unwrap()).unwrap();
    assert_eq!(saved["webhook"]["defaultUrl"], "http://127.0.0.1:9/hook");
    assert!(crate::support::eventually(10, || {
        tui.api("GET", "/api/config", None).json["config"]["webhook"]["defaultUrl"] == "http://127.0.0.1:9/hook"
    }));
}

#[test]
fn test_api_sends_a_prompt_and_shows_the_answer() {
    let tui = Tui::open();
    tui.start_service();
    tui.open_menu_item(TEST_API);
    // Text only the dialog has (the menu behind it shows "● running at" too).
    tui.expect("Test API (Enter sends)");
    tui.expect("Project folder");
    tui.keys(&["Down", "End"]);
    // The project field holds defaultProjectPath; point it at the test project.
    for _ in 0..200 {
        tui.keys(&["BSpace"]);
    }
    tui.type_text(&tui.home.path().join("project").display().to_string());
    tui.keys(&["Up"]);
    tui.type_text("ping from the tui");
    tui.keys(&["Enter"]);
    tui.expect("You said: ping from the tui");
    tui.expect("cost $0.0125");
    std::thread::sleep(Duration::from_millis(100));
}
