//! Running the claude CLI once (SPEC 4): build the command line (`argv`), run the child process
//! (`process`: std's `Command`, the CLI leading its own process group, which is killed whole on
//! a timeout, a cancel or a stop), and turn what it printed into a `RunResult`; knowing which
//! CLI that is (`probe`, `caps`: its version and options, so no run passes a flag it lacks, and
//! `budget` where it has no `--max-budget-usd`); and, at a start after a crash, killing what the
//! dead server left running (`leftovers`: a recorded group, only if it still carries the task's
//! `CCS_TASK_ID`). Knows nothing of HTTP, sessions or storage.

pub mod argv;
pub mod budget;
pub mod caps;
pub mod launch;
pub mod leftovers;
pub mod live;
pub mod output;
pub mod probe;
pub mod process;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use argv::{CliArgs, SessionFlag};
pub use output::Report;

/// One run of the CLI, fully resolved.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub prompt: String,
    pub cwd: PathBuf,
    /// Environment set on top of the server's own (PATH already includes `nvmBin`).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Gets each line of stdout as it arrives (streaming), besides the result buffer.
    pub lines: Option<LineSink>,
}

/// The variable that marks a CLI (and whatever it starts) as a task's: `CCS_TASK_ID=<id>`.
/// A restart kills a recorded process group only if one of its processes carries it.
pub const TASK_ID_ENV: &str = "CCS_TASK_ID";

/// A callback for stdout lines, called on the thread that runs the CLI (so every line is
/// delivered before the run returns).
#[derive(Clone)]
pub struct LineSink(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for LineSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineSink")
    }
}

/// A flag another thread sets to stop a run (its process group is killed), with the reason.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicU8>);

const CANCELLED: u8 = 1;
const INTERRUPTED: u8 = 2;

impl Cancel {
    /// Someone cancelled the task: it ends `cancelled`.
    pub fn cancel(&self) {
        let _ = self.0.compare_exchange(0, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The server is stopping: the task ends `interrupted`, even one already being cancelled
    /// (whose CLI then gets no second grace period).
    pub fn interrupt(&self) {
        self.0.fetch_max(INTERRUPTED, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }

    pub fn is_interrupt(&self) -> bool {
        self.0.load(Ordering::SeqCst) == INTERRUPTED
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    Failed,
    Timeout,
    Cancelled,
}

/// The interpreted end of a run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: RunStatus,
    /// The CLI's result object, when it printed one.
    pub report: Option<Report>,
    /// What went wrong, for every status but `Completed`.
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
}

/// The CLI could not be started at all.
#[derive(Debug)]
pub struct SpawnError {
    pub program: String,
    pub source: std::io::Error,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.kind() == std::io::ErrorKind::NotFound {
            write!(
                f,
                "claude CLI not found: claudePath is \"{}\"; install it (npm install -g @anthropic-ai/claude-code) \
                 or set claudePath (or nvmBin) in the config to where it is",
                self.program
            )
        } else {
            write!(f, "cannot start the claude CLI (claudePath \"{}\"): {}", self.program, self.source)
        }
    }
}

/// Called with the process group id (the child's pid) of a CLI that was just started, on the
/// thread that runs it, before the prompt is written. `false` calls the run off: the group is
/// killed and the run ends with an `Interrupted` error.
pub type OnStart<'a> = &'a mut dyn FnMut(i32) -> bool;

/// Runs the CLI and interprets the outcome; `on_start` is told its process group first.
pub fn run(inv: &Invocation, cancel: &Cancel, on_start: OnStart) -> Result<RunResult, SpawnError> {
    let raw = process::execute(inv, cancel, on_start)
        .map_err(|source| SpawnError { program: inv.program.clone(), source })?;
    Ok(interpret(&raw, inv.timeout))
}

/// Maps a finished process to a result. Success is `is_error == false` in the result object.
pub fn interpret(raw: &process::RawRun, timeout: Duration) -> RunResult {
    let stdout = String::from_utf8_lossy(&raw.stdout);
    let report = output::parse(&stdout);
    let stderr = raw.stderr_tail.trim();
    let (status, error) = if raw.cancelled {
        (RunStatus::Cancelled, Some("cancelled; the claude process group was killed".to_string()))
    } else if raw.timed_out {
        let message = format!(
            "claude did not finish within {} ms and was killed; raise timeout_ms (or taskQueue.defaultTimeout)",
            timeout.as_millis()
        );
        (RunStatus::Timeout, Some(message))
    } else if raw.stdout_overflow {
        let message =
            format!("claude printed more than {} bytes of output; the run is treated as failed", process::STDOUT_CAP);
        (RunStatus::Failed, Some(message))
    } else {
        match &report {
            Some(r) if !r.is_error => (RunStatus::Completed, None),
            Some(r) => (RunStatus::Failed, Some(r.error_text())),
            None => (RunStatus::Failed, Some(failure_without_report(raw, &stdout, stderr))),
        }
    };
    RunResult { status, report, error, exit_code: raw.exit_code, duration_ms: raw.duration.as_millis() as u64 }
}

fn failure_without_report(raw: &process::RawRun, stdout: &str, stderr: &str) -> String {
    let how = match (raw.exit_code, raw.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".to_string(),
    };
    let stdout = stdout.trim();
    let mut message = if stdout.is_empty() {
        format!("claude {how} without a result")
    } else {
        let head: String = stdout.chars().take(200).collect();
        format!("claude {how} and printed no JSON result: {head}")
    };
    if !stderr.is_empty() {
        message.push_str(": ");
        message.push_str(last_chars(stderr, 2000));
    }
    message
}

fn last_chars(text: &str, n: usize) -> &str {
    let start = text.char_indices().rev().nth(n.saturating_sub(1)).map_or(0, |(i, _)| i);
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::process::RawRun;
    use super::*;

    fn raw(stdout: &str, stderr: &str, code: i32) -> RawRun {
        RawRun {
            stdout: stdout.as_bytes().to_vec(),
            stderr_tail: stderr.into(),
            exit_code: Some(code),
            ..RawRun::default()
        }
    }

    #[test]
    fn usage_error_uses_the_stderr_line() {
        let r = interpret(&raw("", "Error: Session ID abc is already in use.\n", 1), Duration::from_secs(1));
        assert_eq!(r.status, RunStatus::Failed);
        assert_eq!(
            r.error.unwrap(),
            "claude exited with code 1 without a result: Error: Session ID abc is already in use."
        );
    }

    #[test]
    fn exit_code_does_not_decide_success() {
        let ok = r#"{"type":"result","is_error":false,"result":"fine"}"#;
        assert_eq!(interpret(&raw(ok, "", 1), Duration::from_secs(1)).status, RunStatus::Completed);
        let bad = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 401"}"#;
        let r = interpret(&raw(bad, "", 0), Duration::from_secs(1));
        assert_eq!((r.status, r.error.as_deref()), (RunStatus::Failed, Some("API Error: 401")));
    }

    #[test]
    fn garbage_is_a_failure_that_quotes_it() {
        let r = interpret(&raw("<html>oops</html>", "", 0), Duration::from_secs(1));
        assert_eq!(r.status, RunStatus::Failed);
        assert!(r.error.unwrap().contains("<html>oops"));
    }

    #[test]
    fn timeout_and_cancel_win_over_output() {
        let mut t = raw("", "", 143);
        t.timed_out = true;
        assert_eq!(interpret(&t, Duration::from_millis(1500)).status, RunStatus::Timeout);
        let mut c = raw("", "", 143);
        c.cancelled = true;
        assert_eq!(interpret(&c, Duration::from_secs(1)).status, RunStatus::Cancelled);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(last_chars("héllo", 3), "llo");
        assert_eq!(last_chars("ab", 5), "ab");
    }
}
