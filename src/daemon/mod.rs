//! `ccs start|stop|status|restart` (SPEC 1): the server as a background service. `start` runs
//! `ccs serve` detached (a new session, no terminal, output to the log), waits for `/health`,
//! and on failure prints the end of the log. The running server owns the pid file.

pub mod pidfile;

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::config::ConfigSource;
use crate::exit;
use pidfile::State;

/// Exit code of `status` when the server is not running (LSB).
pub const NOT_RUNNING: i32 = 3;

/// Set in the environment of a daemonized `serve`: log to the file only (stderr goes there too).
pub const DAEMON_ENV: &str = "CCS_DAEMON";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What a command has to say, and its exit code: printed by the CLI, shown by the TUI.
#[derive(Debug, Default)]
pub struct Report {
    pub code: i32,
    pub out: Vec<String>,
    pub err: Vec<String>,
}

impl Report {
    fn say(&mut self, line: impl Into<String>) {
        self.out.push(line.into());
    }

    fn fail(&mut self, code: i32, line: impl Into<String>) -> i32 {
        self.err.push(line.into());
        code
    }

    /// Prints it (stdout, stderr) and returns the exit code.
    pub fn print(self) -> i32 {
        self.out.iter().for_each(|l| println!("{l}"));
        self.err.iter().for_each(|l| eprintln!("{l}"));
        self.code
    }

    /// All of it as one text.
    pub fn text(&self) -> String {
        self.out.iter().chain(&self.err).cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Loads the config, reads the pid file, and runs `command` with both; the report collects what
/// it says (a config error ends it early, with exit code 2).
fn with_server(source: &ConfigSource, command: impl FnOnce(&Config, State, &mut Report) -> i32) -> Report {
    let mut r = Report::default();
    r.code = match load(source, &mut r) {
        Ok(config) => command(&config, pidfile::state(&config.pid_file), &mut r),
        Err(code) => code,
    };
    r
}

fn load(source: &ConfigSource, r: &mut Report) -> Result<Config, i32> {
    let loaded =
        source.load().map_err(|e| e.to_string()).and_then(|(config, _)| config.refuse_open_bind().map(|_| config));
    loaded.map_err(|err| r.fail(exit::USAGE, format!("ccs: {err}")))
}

/// The address clients use to reach the server (a wildcard bind is reached on loopback).
pub fn base_url(config: &Config) -> String {
    let host = match config.host.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "[::1]",
        host => host,
    };
    format!("http://{host}:{}", config.port)
}

/// GET /health of the server; the parsed body.
pub fn health(config: &Config) -> Result<Value, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).proxy(None).build(),
    );
    let mut response = agent.get(format!("{}/health", base_url(config))).call().map_err(|e| e.to_string())?;
    let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

pub fn start(source: &ConfigSource) -> Report {
    with_server(source, |config, state, r| start_into(source, config, state, r))
}

fn start_into(source: &ConfigSource, config: &Config, state: State, r: &mut Report) -> i32 {
    match state {
        State::Running(pid) => {
            r.say(format!("ccs is already running (pid {pid}) on {}", base_url(config)));
            return exit::OK;
        }
        State::Stale(pid) => {
            r.say(format!("removing a stale pid file (pid {pid} is not running)"));
            let _ = std::fs::remove_file(&config.pid_file);
        }
        State::Stopped => {}
    }
    match spawn_detached(source, config) {
        Ok(pid) => wait_until_up(config, pid, r),
        Err(err) => r.fail(exit::FAILED, format!("ccs: cannot start the server: {err}")),
    }
}

fn spawn_detached(source: &ConfigSource, config: &Config) -> std::io::Result<u32> {
    if let Some(dir) = config.log_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let log = OpenOptions::new().create(true).append(true).open(&config.log_file)?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--home")
        .arg(std::path::absolute(&source.home)?)
        .arg("--config")
        .arg(std::path::absolute(&source.path)?);
    if let Some(host) = &source.host {
        command.args(["--host", host]);
    }
    if let Some(port) = source.port {
        command.args(["--port", &port.to_string()]);
    }
    command.arg("serve").env(DAEMON_ENV, "1").current_dir("/");
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // Its own session: no terminal of ours, and a Ctrl-C here does not reach it.
    crate::sys::start_in_new_session(&mut command);
    // The daemon is not waited for: once this command exits, init adopts it.
    Ok(command.spawn()?.id())
}

fn wait_until_up(config: &Config, pid: u32, r: &mut Report) -> i32 {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        let own_pid_file = pidfile::read(&config.pid_file) == Some(pid as i32);
        if own_pid_file && health(config).is_ok() {
            r.say(format!("ccs running (pid {pid}) on {}", base_url(config)));
            return exit::OK;
        }
        if !pidfile::is_ccs_server(pid as i32) {
            r.fail(
                exit::FAILED,
                format!("ccs: the server exited during start; the end of {}:", config.log_file.display()),
            );
            return r.fail(exit::FAILED, log_tail(&config.log_file, 20));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    r.fail(
        exit::FAILED,
        format!(
            "ccs: the server (pid {pid}) did not answer on {} within {} s; the end of {}:",
            base_url(config),
            START_TIMEOUT.as_secs(),
            config.log_file.display()
        ),
    );
    r.fail(exit::FAILED, log_tail(&config.log_file, 20))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn stop(source: &ConfigSource) -> Report {
    with_server(source, stop_into)
}

fn stop_into(config: &Config, state: State, r: &mut Report) -> i32 {
    let pid = match state {
        State::Running(pid) => pid,
        State::Stale(pid) => {
            let _ = std::fs::remove_file(&config.pid_file);
            r.say(format!("ccs is not running (removed a stale pid file for pid {pid})"));
            return exit::OK;
        }
        State::Stopped => {
            r.say("ccs is not running");
            return exit::OK;
        }
    };
    signal(pid, crate::sys::SIGTERM);
    let grace = Duration::from_millis(config.task_queue.kill_grace_ms) + Duration::from_secs(15);
    if !wait_gone(pid, grace) {
        r.err.push(format!("ccs: pid {pid} did not stop within {} s; killing it", grace.as_secs()));
        signal(pid, crate::sys::SIGKILL);
        wait_gone(pid, Duration::from_secs(5));
    }
    pidfile::remove_if_ours(&config.pid_file, pid as u32);
    r.say(format!("ccs stopped (pid {pid})"));
    exit::OK
}

fn signal(pid: i32, sig: i32) {
    // A server that is already gone is what we wanted.
    let _ = crate::sys::signal_process(pid, sig);
}

fn wait_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pidfile::is_ccs_server(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !pidfile::is_ccs_server(pid)
}

pub fn status(source: &ConfigSource) -> Report {
    with_server(source, status_into)
}

fn status_into(config: &Config, state: State, r: &mut Report) -> i32 {
    let pid = match state {
        State::Running(pid) => pid,
        State::Stale(pid) => {
            r.say(format!("ccs is not running (stale pid file for pid {pid}; `ccs start` cleans it up)"));
            return NOT_RUNNING;
        }
        State::Stopped => {
            r.say("ccs is not running");
            return NOT_RUNNING;
        }
    };
    match health(config) {
        Ok(h) => {
            r.say(format!("ccs running (pid {pid}) on {}", base_url(config)));
            r.say(format!(
                "version {}, uptime {}",
                h["version"].as_str().unwrap_or("?"),
                uptime(h["uptime"].as_f64().unwrap_or(0.0))
            ));
            match h["queue"]["reason"].as_str() {
                Some(reason) => r.say(format!("queue: degraded: {reason}")),
                None => {
                    r.say(format!("queue: {} pending, {} processing", h["queue"]["pending"], h["queue"]["processing"]))
                }
            }
            r.say(cli_line(&h["cli"]));
            if let Some(reason) = h["store"]["reason"].as_str() {
                r.say(format!("store: degraded: {reason}"));
            }
            exit::OK
        }
        Err(err) => {
            r.say(format!("ccs (pid {pid}) is running but does not answer on {}: {err}", base_url(config)));
            exit::FAILED
        }
    }
}

/// The claude CLI as `/health` shows it, in one line.
fn cli_line(cli: &Value) -> String {
    let path = cli["path"].as_str().unwrap_or("?");
    match (cli["version"].as_str(), cli["error"].as_str()) {
        (Some(version), _) => format!("claude CLI: {version} ({path})"),
        (None, Some(error)) => format!("claude CLI: unusable ({path}): {error}"),
        // An older server's /health has no `cli`.
        (None, None) if cli.is_null() => "claude CLI: not shown by this server".to_string(),
        (None, None) => format!("claude CLI: being probed ({path})"),
    }
}

pub fn uptime(secs: f64) -> String {
    let s = secs as u64;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, sec) => format!("{sec}s"),
        (0, 0, m, sec) => format!("{m}m {sec}s"),
        (0, h, m, _) => format!("{h}h {m}m"),
        (d, h, _, _) => format!("{d}d {h}h"),
    }
}

pub fn restart(source: &ConfigSource) -> Report {
    let mut stopped = stop(source);
    if stopped.code != exit::OK {
        return stopped;
    }
    let started = start(source);
    stopped.out.extend(started.out);
    stopped.err.extend(started.err);
    stopped.code = started.code;
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uptime_reads_like_a_person_would_say_it() {
        assert_eq!(uptime(42.7), "42s");
        assert_eq!(uptime(125.0), "2m 5s");
        assert_eq!(uptime(3.0 * 3600.0 + 61.0), "3h 1m");
        assert_eq!(uptime(2.0 * 86_400.0 + 7200.0), "2d 2h");
    }

    #[test]
    fn the_cli_line_says_version_error_or_probing() {
        let line = |v: Value| cli_line(&v);
        assert_eq!(line(json!({"path": "claude", "version": "2.1.197"})), "claude CLI: 2.1.197 (claude)");
        assert_eq!(
            line(json!({"path": "/x/claude", "version": null, "error": "claude CLI not found"})),
            "claude CLI: unusable (/x/claude): claude CLI not found"
        );
        assert_eq!(
            line(json!({"path": "claude", "version": null, "probing": true})),
            "claude CLI: being probed (claude)"
        );
        assert_eq!(line(Value::Null), "claude CLI: not shown by this server");
    }

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        let mut config = Config::defaults(Path::new("/h"), Path::new("/h"));
        config.host = "0.0.0.0".into();
        assert_eq!(base_url(&config), "http://127.0.0.1:5546");
    }
}
