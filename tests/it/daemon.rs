//! `ccs start|stop|status|restart` through the real binary: the daemon lifecycle, the pid file,
//! stale pid files and a start that fails.

use std::process::{Command, Output, Stdio};

use crate::support::{free_port, TempDir, CCS, FAKE_CLAUDE};
use serde_json::json;

/// A home for a daemon; whatever still runs from it is killed on drop.
struct Daemon {
    home: TempDir,
    port: u16,
}

impl Daemon {
    fn new() -> Daemon {
        let home = TempDir::new("daemon");
        let port = free_port();
        std::fs::create_dir_all(home.path().join("state")).unwrap();
        let config = json!({"port": port, "claudePath": FAKE_CLAUDE, "taskQueue": {"killGraceMs": 500}});
        std::fs::write(home.path().join("state/config.json"), config.to_string()).unwrap();
        Daemon { home, port }
    }

    fn ccs(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = Command::new(CCS)
            .arg("--home")
            .arg(self.home.path().join("state"))
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    fn pid_file(&self) -> std::path::PathBuf {
        self.home.path().join("state/server.pid")
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            crate::support::kill_if_ours(pid, &self.home.path().to_string_lossy());
        }
    }
}

#[test]
fn start_status_stop_lifecycle() {
    let d = Daemon::new();
    let (code, out, err) = d.ccs(&["start"]);
    assert_eq!(code, 0, "{out}{err}");
    let pid = d.pid().expect("pid file written");
    assert_eq!(out.trim(), format!("ccs running (pid {pid}) on http://127.0.0.1:{}", d.port));
    assert!(crate::support::alive(pid));
    // Detached: its own session, not a child of the `ccs start` that ended.
    assert_eq!(crate::support::http(d.port, "GET", "/health", None, &[]).status, 200);

    let (code, out, _) = d.ccs(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("ccs running (pid {pid}) on http://127.0.0.1:{}", d.port)), "{out}");
    assert!(out.contains("uptime") && out.contains("queue: 0 pending, 0 processing"), "{out}");
    let shows_cli = || d.ccs(&["status"]).1.contains(&format!("claude CLI: 2.1.197 ({})", crate::support::FAKE_CLAUDE));
    assert!(crate::support::eventually(10, shows_cli), "{}", d.ccs(&["status"]).1);

    let (code, out, _) = d.ccs(&["start"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("already running (pid {pid})")), "{out}");

    let (code, out, _) = d.ccs(&["stop"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ccs stopped (pid {pid})"));
    assert!(!crate::support::alive(pid), "the server process is gone");
    assert!(!d.pid_file().exists(), "the pid file is removed");

    let (code, out, _) = d.ccs(&["status"]);
    assert_eq!(code, 3);
    assert_eq!(out.trim(), "ccs is not running");
    let (code, out, _) = d.ccs(&["stop"]);
    assert_eq!((code, out.trim()), (0, "ccs is not running"));
}

#[test]
fn restart_gives_a_new_process_that_keeps_the_state() {
    let d = Daemon::new();
    assert_eq!(d.ccs(&["start"]).0, 0);
    let project = d.home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let body = json!({"prompt": "hello", "project_path": project}).to_string();
    let r = crate::support::http(d.port, "POST", "/api/claude", Some(body.as_bytes()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    let first = d.pid().unwrap();
    let (code, out, err) = d.ccs(&["restart"]);
    assert_eq!(code, 0, "{out}{err}");
    let second = d.pid().unwrap();
    assert_ne!(first, second);
    assert!(out.contains("ccs stopped") && out.contains("ccs running"), "{out}");
    let sessions = crate::support::http(d.port, "GET", "/api/sessions", None, &[]);
    assert_eq!(sessions.json["count"], 1);
    assert_eq!(d.ccs(&["stop"]).0, 0);
}

#[test]
fn a_stale_pid_file_is_detected_and_cleaned() {
    let d = Daemon::new();
    std::fs::write(d.pid_file(), "999999\n").unwrap();
    let (code, out, _) = d.ccs(&["status"]);
    assert_eq!(code, 3);
    assert!(out.contains("stale pid file for pid 999999"), "{out}");
    let (code, out, err) = d.ccs(&["start"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("removing a stale pid file"), "{out}");
    assert_ne!(d.pid(), Some(999999));
    assert_eq!(d.ccs(&["stop"]).0, 0);
}

#[test]
fn a_failed_start_prints_the_end_of_the_log() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    let d = Daemon::new();
    let (code, out, err) = d.ccs(&["--port", &taken.to_string(), "start"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the server exited during start"), "{err}");
    assert!(err.contains("cannot listen") && err.contains("Address already in use"), "{err}");
    assert!(!d.pid_file().exists());
}

#[test]
fn a_config_error_stops_start_with_exit_2() {
    let d = Daemon::new();
    std::fs::write(d.home.path().join("state/config.json"), r#"{"taskQueue": {"concurrency": "many"}}"#).unwrap();
    let (code, _, err) = d.ccs(&["start"]);
    assert_eq!(code, 2);
    assert!(err.contains("taskQueue.concurrency"), "{err}");
}
