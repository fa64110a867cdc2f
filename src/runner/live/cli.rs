//! One live claude process (`claude -p --input-format stream-json --output-format stream-json`,
//! CLI.md): started once, then given one turn at a time on stdin, each answered by stdout
//! events that end with one `result` event; closing stdin ends it.
//!
//! A reader thread turns stdout into lines for whoever runs a turn (none arrive while it is
//! idle: an idle process that printed, or ended, is not used again); another keeps the tail of
//! stderr. A turn writes its prompt once, then reads lines until the `result` (kept alive),
//! the end of stdout (the process died mid-turn: the turn fails as a crashed cold run would,
//! and is never written again), or its timeout or a cancel (SIGTERM to the group, `kill_grace`,
//! SIGKILL, as a cold run). Whatever ends a `LiveCli` (retired, dropped, killed) reaps its
//! leader and then kills its group, so no grandchild outlives it.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::super::caps::Version;
use super::super::process::{self, RawRun, HELPER_STACK, PIPE_PAGE, STDERR_TAIL, STDOUT_CAP, TICK};
use super::super::{Cancel, LineSink, OnStart};
use crate::sys;

/// How long a retired process gets to end by itself once its stdin is closed.
const END_BY_ITSELF: Duration = Duration::from_secs(2);
/// How long a turn whose process died waits for the rest of its stderr (the group is killed by
/// then; only a process that left it can hold the pipe open).
const STDERR_DRAIN: Duration = Duration::from_secs(2);
/// What a process may print while it waits, kept for its next turn; more, and it is not used
/// again (the CLI prints nothing between a result and the next message).
const EARLY_CAP: usize = 1 << 20;
/// Lines in flight between the stdout reader and a turn.
const LINES_IN_FLIGHT: usize = 256;

/// How to start one: everything fixed for the process's life.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub program: String,
    /// The argv without the session flag (`--session-id`/`--resume`), which `session` gives.
    pub args: Vec<String>,
    pub cwd: std::path::PathBuf,
    /// The environment on top of the server's (without the markers, which `spawn` adds).
    pub env: Vec<(String, String)>,
    /// The CLI's version as probed (the same `program` may be another CLI after an upgrade).
    pub version: Option<Version>,
}

/// What the stderr reader keeps: the last `STDERR_TAIL` bytes, how many came in all (so a turn
/// reports only its own), and whether the pipe ended.
#[derive(Default)]
struct Stderr {
    tail: Vec<u8>,
    total: u64,
    ended: bool,
}

impl Stderr {
    /// What came after the first `mark` bytes (as much of it as the tail holds).
    fn since(&self, mark: u64) -> &[u8] {
        let new = usize::try_from(self.total.saturating_sub(mark)).unwrap_or(usize::MAX);
        &self.tail[self.tail.len().saturating_sub(new)..]
    }
}

/// What a stdout reader sends: a whole line, a line longer than `STDOUT_CAP`, or the end.
enum Line {
    Text(Vec<u8>),
    TooLong,
    Closed,
}

/// A running live process.
pub struct LiveCli {
    /// `None` once reaped: its group id may then belong to someone else.
    child: Option<Child>,
    pub pgid: i32,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    /// Lines it printed while waiting, for the next turn.
    early: Vec<Vec<u8>>,
    stderr: Arc<Mutex<Stderr>>,
    /// How much it had written to stderr when its current turn began.
    stderr_mark: u64,
    pub start: Arc<Start>,
    pub session_id: String,
    /// The `--max-budget-usd` it was started with, if any.
    pub budget: Option<f64>,
    /// Its cumulative `total_cost_usd` as of its last result.
    pub spent: f64,
    pub last_used: Instant,
    /// Turns it answered.
    pub answered: u32,
    /// It was started for the turn it is about to take (not ahead as a spare, nor for an
    /// earlier turn): if it ends before that turn's prompt is written, that is the turn's end
    /// (a bad flag, a session id in use), not a process to replace.
    pub started_for_turn: bool,
    /// The pool's generation when it started (a config change retires older ones).
    pub generation: u64,
}

/// How a turn on a live process ended.
pub enum TurnEnd {
    /// It answered (success or an error result): the process lives on, `raw.stdout` holds
    /// this turn's lines, and its cost is the cumulative total (`LiveCli::spent` before it).
    Answered(RawRun),
    /// The process is gone (died, timed out, cancelled); the turn's end is in `raw`.
    Ended(RawRun),
    /// Nothing was written: the process had already ended (or printed while idle). Run cold.
    NotUsable,
    /// `on_start` called the turn off before its prompt was written; the process is unused.
    CalledOff,
}

impl LiveCli {
    /// Starts a process for `session` (`--session-id <id>` or `--resume=<id>` in `flag_args`),
    /// with `markers` (e.g. `CCS_SESSION_ID=<id>`) in its environment.
    pub fn spawn(
        start: Arc<Start>,
        session_id: &str,
        flag_args: &[String],
        budget: Option<f64>,
        markers: &[(String, String)],
        generation: u64,
    ) -> io::Result<LiveCli> {
        let mut args = start.args.clone();
        if let Some(budget) = budget {
            args.extend(["--max-budget-usd".to_string(), budget.to_string()]);
        }
        args.extend(flag_args.iter().cloned());
        let env = [start.env.clone(), markers.to_vec()].concat();
        let mut child = process::spawn_group(&start.program, &args, &start.cwd, &env)?;
        let pgid = child.id() as i32;
        let readers = (|| {
            let (to_turns, lines) = crossbeam_channel::bounded(LINES_IN_FLIGHT);
            let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout pipe"))?;
            read_lines(stdout, to_turns)?;
            let stderr = Arc::new(Mutex::new(Stderr::default()));
            if let Some(pipe) = child.stderr.take() {
                keep_tail(pipe, stderr.clone())?;
            }
            Ok::<_, io::Error>((lines, stderr))
        })();
        let stdin = child.stdin.take();
        let mut cli = LiveCli {
            child: Some(child),
            pgid,
            stdin,
            lines: crossbeam_channel::never(),
            early: Vec::new(),
            stderr: Arc::default(),
            stderr_mark: 0,
            start,
            session_id: session_id.to_string(),
            budget,
            spent: 0.0,
            last_used: Instant::now(),
            answered: 0,
            started_for_turn: true,
            generation,
        };
        let (lines, stderr) = readers?; // on error, dropping `cli` ends the process
        cli.lines = lines;
        cli.stderr = stderr;
        Ok(cli)
    }

    /// Whether it can take a turn: still running, and printed nothing since its last result
    /// but events a process may print while it waits (a `system` event at start), which the
    /// next turn gets first.
    pub fn is_usable(&mut self) -> bool {
        let running = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if !running || self.stdin.is_none() {
            return false;
        }
        while let Ok(line) = self.lines.try_recv() {
            match line {
                Line::Text(text) if !is_result_event(&text) && self.early_bytes() + text.len() < EARLY_CAP => {
                    self.early.push(text)
                }
                _ => {
                    self.stdin = None; // something went wrong while it waited: never used again
                    return false;
                }
            }
        }
        true
    }

    /// What the lines kept while waiting take (each with its newline).
    fn early_bytes(&self) -> usize {
        self.early.iter().map(|line| line.len() + 1).sum()
    }

    /// Runs one turn: `on_start` is told the group first, then the prompt is written once.
    pub fn turn(
        &mut self,
        prompt: &str,
        timeout: Duration,
        kill_grace: Duration,
        cancel: &Cancel,
        sink: Option<&LineSink>,
        on_start: OnStart,
    ) -> TurnEnd {
        let started = Instant::now();
        // A new process that ended before its first turn failed at start (a bad flag, a
        // session id in use): that is this turn's end, as for a cold run.
        let fresh = std::mem::replace(&mut self.started_for_turn, false);
        if !self.is_usable() {
            return if fresh { self.died(RawRun::default(), started) } else { TurnEnd::NotUsable };
        }
        if !on_start(self.pgid) {
            return TurnEnd::CalledOff;
        }
        // A failed turn reports its own stderr (and a new process's, what it said as it started).
        if !fresh {
            self.stderr_mark = self.stderr.lock().total;
        }
        if self.write_prompt(prompt).is_err() {
            // A closed pipe: it ended before it could read a byte of this prompt.
            return if fresh { self.died(RawRun::default(), started) } else { TurnEnd::NotUsable };
        }
        let mut run = RawRun::default();
        let deadline = started + timeout;
        let mut kill_at: Option<Instant> = None;
        loop {
            if cancel.is_interrupt() {
                run.cancelled = true;
                return self.killed(run, started);
            }
            if kill_at.is_none() && (cancel.is_cancelled() || Instant::now() >= deadline) {
                run.cancelled = cancel.is_cancelled();
                run.timed_out = !run.cancelled;
                process::signal_group(self.pgid, sys::SIGTERM);
                kill_at = Some(Instant::now() + kill_grace);
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                return self.killed(run, started);
            }
            let wait = TICK.min(kill_at.unwrap_or(deadline).saturating_duration_since(Instant::now()));
            let next = if self.early.is_empty() {
                self.lines.recv_timeout(wait)
            } else {
                Ok(Line::Text(self.early.remove(0)))
            };
            match next {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(Line::Text(line)) => {
                    if let Some(sink) = sink {
                        (sink.0)(String::from_utf8_lossy(&line).trim_end());
                    }
                    // Kept: the first line (what a turn that ends without a result printed
                    // first, for its error) and results (the last one counts). The events in
                    // between are not (a line is at most STDOUT_CAP): a long turn takes no more
                    // memory than a cold run's answer, and does not overflow where a cold run's
                    // JSON would not.
                    let is_result = is_result_event(&line);
                    if is_result || run.stdout.is_empty() {
                        run.stdout.extend_from_slice(&line);
                        run.stdout.push(b'\n');
                    }
                    if is_result && kill_at.is_none() {
                        run.duration = started.elapsed();
                        self.last_used = Instant::now();
                        self.answered += 1;
                        return TurnEnd::Answered(run);
                    }
                }
                Ok(Line::TooLong) => {
                    // A line above STDOUT_CAP (a cold run's whole output limit): the turn fails
                    // as a cold run that printed that much does, now rather than at its
                    // timeout, and the process, in a state nobody knows, goes.
                    run.stdout_overflow = true;
                    return self.killed(run, started);
                }
                Ok(Line::Closed) | Err(RecvTimeoutError::Disconnected) => return self.died(run, started),
            }
        }
    }

    /// The prompt as one stream-json user message: here when short, else on a thread of its
    /// own (a process that stops reading must not block the turn's timeout).
    fn write_prompt(&mut self, prompt: &str) -> io::Result<()> {
        let message = serde_json::json!({
            "type": "user",
            "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
        });
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        if line.len() <= PIPE_PAGE {
            return stdin.write_all(&line);
        }
        let fd = std::os::fd::AsFd::as_fd(stdin).try_clone_to_owned()?;
        let mut copy = std::fs::File::from(fd);
        std::thread::Builder::new().name("live-stdin".into()).stack_size(HELPER_STACK).spawn(move || {
            let _ = copy.write_all(&line);
        })?;
        Ok(())
    }

    /// The process ended mid-turn by itself: its exit and this turn's stderr say how (read to
    /// its end: the reader may not have taken the last bytes when the leader is reaped, and a
    /// session id in use is known only from them).
    fn died(&mut self, mut run: RawRun, started: Instant) -> TurnEnd {
        let status = self.reap(END_BY_ITSELF);
        record_exit(&mut run, status);
        let deadline = Instant::now() + STDERR_DRAIN;
        while !self.stderr.lock().ended && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        run.stderr_tail = String::from_utf8_lossy(self.stderr.lock().since(self.stderr_mark)).into_owned();
        run.duration = started.elapsed();
        TurnEnd::Ended(run)
    }

    /// Kills the group now (the timeout's grace is over, or the server stops).
    fn killed(&mut self, mut run: RawRun, started: Instant) -> TurnEnd {
        process::signal_group(self.pgid, sys::SIGKILL);
        let status = self.reap(END_BY_ITSELF);
        record_exit(&mut run, status);
        run.duration = started.elapsed();
        TurnEnd::Ended(run)
    }

    /// Closes stdin (the process ends by itself), waits up to `wait` for the leader, then kills
    /// whatever is left of the group and reaps the leader.
    fn reap(&mut self, wait: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        let mut child = self.child.take()?;
        let deadline = Instant::now() + wait;
        let mut status = None;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        // The leader is gone or overdue: the group goes (the leader is not reaped yet, so the
        // group id is still ours), then the leader is reaped.
        process::signal_group(self.pgid, sys::SIGKILL);
        status.or_else(|| child.wait().ok())
    }

    /// Ends it: stdin closed, then (on a thread of its own, bounded) reaped and its group killed.
    pub fn retire(mut self) -> Option<std::thread::JoinHandle<()>> {
        self.child.as_ref()?;
        std::thread::Builder::new()
            .name("live-retire".into())
            .stack_size(HELPER_STACK)
            .spawn(move || {
                self.reap(END_BY_ITSELF);
            })
            .ok()
    }

    /// Ends it now: SIGKILL to its group, and its leader reaped.
    pub fn kill(mut self) {
        process::signal_group(self.pgid, sys::SIGKILL);
        self.reap(END_BY_ITSELF);
    }

    /// The end of what it wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let stderr = self.stderr.lock();
        String::from_utf8_lossy(&stderr.tail[stderr.tail.len().saturating_sub(300)..]).trim().to_string()
    }
}

impl Drop for LiveCli {
    fn drop(&mut self) {
        // On every path (a panic included) the process is ended and reaped.
        if self.child.is_some() {
            self.reap(END_BY_ITSELF);
        }
    }
}

fn record_exit(run: &mut RawRun, status: Option<ExitStatus>) {
    if let Some(status) = status {
        run.exit_code = status.code();
        run.signal = status.signal();
    }
}

/// Whether a stdout line is the `result` event that ends a turn.
fn is_result_event(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    // Cheap test first: most lines (token deltas) are not results.
    let has_word = line.windows(8).any(|w| w == b"\"result\"");
    has_word && serde_json::from_slice::<Event>(line).is_ok_and(|e| e.kind == Some("result"))
}

/// Sends each line of `pipe` (a line above `STDOUT_CAP` as `TooLong`), then `Closed`.
fn read_lines(mut pipe: impl Read + Send + 'static, to_turns: Sender<Line>) -> io::Result<()> {
    std::thread::Builder::new().name("live-stdout".into()).stack_size(HELPER_STACK).spawn(move || {
        let mut chunk = vec![0; 64 * 1024];
        let mut partial: Vec<u8> = Vec::new();
        let mut too_long = false;
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut rest = &chunk[..n];
            while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                let line = if too_long {
                    Line::TooLong
                } else {
                    partial.extend_from_slice(&rest[..end]);
                    Line::Text(std::mem::take(&mut partial))
                };
                too_long = false;
                partial.clear();
                if to_turns.send(line).is_err() {
                    return;
                }
                rest = &rest[end + 1..];
            }
            if !too_long {
                partial.extend_from_slice(rest);
                if partial.len() > STDOUT_CAP {
                    too_long = true;
                    partial = Vec::new();
                }
            }
        }
        if !partial.is_empty() && !too_long {
            let _ = to_turns.send(Line::Text(partial));
        }
        let _ = to_turns.send(Line::Closed);
    })?;
    Ok(())
}

/// Keeps the last `STDERR_TAIL` bytes of `pipe` in `stderr`, counts them all, and says when
/// the pipe ended.
fn keep_tail(mut pipe: impl Read + Send + 'static, stderr: Arc<Mutex<Stderr>>) -> io::Result<()> {
    std::thread::Builder::new().name("live-stderr".into()).stack_size(HELPER_STACK).spawn(move || {
        let mut chunk = vec![0; 16 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let mut stderr = stderr.lock();
                    stderr.tail.extend_from_slice(&chunk[..n]);
                    stderr.total += n as u64;
                    if stderr.tail.len() > STDERR_TAIL {
                        let extra = stderr.tail.len() - STDERR_TAIL;
                        stderr.tail.drain(..extra);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        stderr.lock().ended = true;
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live "CLI" made of a shell script (its arguments after the script are ignored).
    fn script(text: &str) -> LiveCli {
        let start = Start {
            program: "sh".into(),
            args: vec!["-c".into(), text.into(), "sh".into()],
            cwd: std::env::temp_dir(),
            env: Vec::new(),
            version: None,
        };
        LiveCli::spawn(Arc::new(start), "s", &[], None, &[], 0).expect("sh starts")
    }

    fn turn(cli: &mut LiveCli, prompt: &str) -> TurnEnd {
        let timeout = Duration::from_secs(10);
        cli.turn(prompt, timeout, Duration::from_millis(100), &Cancel::default(), None, &mut |_| true)
    }

    const RESULT: &str = r#"{"type":"result","is_error":false,"result":"one","total_cost_usd":0.5}"#;

    #[test]
    fn a_turn_that_dies_reports_its_own_stderr_not_earlier_turns() {
        let mut cli = script(&format!(
            "read l; echo 'noise of turn 1' >&2; echo '{RESULT}'; read l; echo 'Error: turn 2 failed' >&2; exit 3"
        ));
        assert!(matches!(turn(&mut cli, "one"), TurnEnd::Answered(_)));
        // (What turn 1 wrote to stderr is its own once read: stderr is another pipe.)
        let deadline = Instant::now() + Duration::from_secs(5);
        while cli.stderr.lock().total == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        match turn(&mut cli, "two") {
            TurnEnd::Ended(raw) => {
                assert_eq!(raw.stderr_tail, "Error: turn 2 failed\n");
                assert_eq!(raw.exit_code, Some(3));
            }
            _ => panic!("turn 2 did not end with the process"),
        }
    }

    #[test]
    fn a_process_that_ends_at_start_says_why_every_time() {
        // Its stderr is read to the end before the turn ends: the reader thread may not have
        // taken it yet when the leader is reaped (and "already in use" is only known from it).
        for _ in 0..100 {
            let mut cli = script("echo 'Error: Session ID s is already in use.' >&2; exit 1");
            match turn(&mut cli, "hello") {
                TurnEnd::Ended(raw) => assert_eq!(raw.stderr_tail, "Error: Session ID s is already in use.\n"),
                _ => panic!("the turn did not end with the process"),
            }
        }
    }

    #[test]
    fn a_turn_keeps_its_first_line_and_its_result_not_the_events_between() {
        // 80 MB of events (more than STDOUT_CAP), then the result: answered, no overflow.
        let events = r#"{"type":"stream_event","event":{"delta":{"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}"#;
        let mut cli = script(&format!(
            "read l; echo '{{\"type\":\"system\"}}'; yes '{events}' | head -n 700000; echo '{RESULT}'; read l"
        ));
        match turn(&mut cli, "one") {
            TurnEnd::Answered(raw) => {
                assert!(!raw.stdout_overflow);
                assert_eq!(String::from_utf8_lossy(&raw.stdout), format!("{{\"type\":\"system\"}}\n{RESULT}\n"));
            }
            _ => panic!("no answer"),
        }
    }

    #[test]
    fn a_line_longer_than_the_output_cap_fails_the_turn_at_once_and_ends_the_process() {
        // 65 MiB on one line (a result that big), then the process would wait for ever.
        let mut cli = script("read l; head -c 68157440 /dev/zero | tr '\\0' x; echo; exec sleep 30");
        let pgid = cli.pgid;
        let started = Instant::now();
        match turn(&mut cli, "one") {
            TurnEnd::Ended(raw) => assert!(raw.stdout_overflow),
            _ => panic!("the turn did not end with the process"),
        }
        assert!(started.elapsed() < Duration::from_secs(9), "it waited for the timeout");
        assert!(super::super::super::leftovers::group_members(pgid).unwrap().is_empty());
    }

    #[test]
    fn an_idle_process_that_prints_more_than_a_little_is_not_used_again() {
        let mut cli =
            script(&format!("read l; echo '{RESULT}'; head -c 2000000 /dev/zero | tr '\\0' x | fold -w 1000; read l"));
        assert!(matches!(turn(&mut cli, "one"), TurnEnd::Answered(_)));
        let deadline = Instant::now() + Duration::from_secs(5);
        while cli.is_usable() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!cli.is_usable(), "2 MB printed while idle (2000 lines), and it would be used again");
    }

    #[test]
    fn a_process_that_prints_garbage_without_a_newline_and_exits_fails_its_turn() {
        let mut cli = script("read l; printf 'Segmentation fault'; exit 2");
        match turn(&mut cli, "one") {
            TurnEnd::Ended(raw) => {
                assert_eq!(raw.stdout, b"Segmentation fault\n");
                assert_eq!(raw.exit_code, Some(2));
            }
            _ => panic!("the turn did not end with the process"),
        }
    }

    #[test]
    fn a_process_that_never_reads_its_prompt_times_out_and_is_killed() {
        let mut cli = script("exec sleep 30");
        let pgid = cli.pgid;
        let started = Instant::now();
        let big = "x".repeat(1 << 20); // more than a pipe holds: written on a thread of its own
        let end = cli.turn(
            &big,
            Duration::from_millis(300),
            Duration::from_millis(100),
            &Cancel::default(),
            None,
            &mut |_| true,
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        match end {
            TurnEnd::Ended(raw) => assert!(raw.timed_out),
            _ => panic!("the turn did not time out"),
        }
        assert!(crate::runner::leftovers::group_members(pgid).unwrap().is_empty(), "its group lives on");
    }

    #[test]
    fn a_process_that_ended_before_its_prompt_is_the_turns_end_only_if_started_for_it() {
        for started_for_turn in [true, false] {
            let mut cli = script("echo 'Error: Session ID s is already in use.' >&2; exit 1");
            cli.started_for_turn = started_for_turn;
            let deadline = Instant::now() + Duration::from_secs(5);
            while cli.child.as_mut().unwrap().try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            match (started_for_turn, turn(&mut cli, "hello")) {
                (true, TurnEnd::Ended(raw)) => assert_eq!(raw.exit_code, Some(1)),
                (false, TurnEnd::NotUsable) => {}
                _ => panic!("started for the turn: {started_for_turn}, and the wrong end"),
            }
        }
    }

    #[test]
    fn a_prompt_is_one_json_line_whatever_it_holds() {
        // The script echoes the line it read inside a result; the line must parse back to the
        // prompt (newlines, quotes, control characters, a JSON-looking text, > a pipe's size).
        let mut prompt = String::from("a\nb\r\n\"quoted\" \\ {\"type\":\"result\"}\n\u{1}\u{1b}[1m\u{7f}\u{2028}");
        while prompt.len() < 200_000 {
            prompt.push_str(" more\n");
        }
        let mut cli = script(
            r#"IFS= read -r l; printf '{"type":"result","is_error":false,"result":"ok","line":%s}\n' "$l"; read l"#,
        );
        match turn(&mut cli, &prompt) {
            TurnEnd::Answered(raw) => {
                let out: serde_json::Value = serde_json::from_slice(raw.stdout.trim_ascii()).expect("one JSON result");
                assert_eq!(out["line"]["message"]["content"][0]["text"], prompt.as_str());
                assert_eq!(out["line"]["type"], "user");
            }
            _ => panic!("no answer"),
        }
    }
}
