//! One claude child process, run to its end on the calling (worker) thread.
//!
//! std's `Command` starts it: the program looked up once on the child's PATH (which has
//! `nvmBin` first), in the project folder (entered by the launcher, `launch`), leading its own
//! process group, with piped stdin, stdout and stderr, and no `pre_exec` hook, so std uses its
//! posix_spawn path and never forks the server. Whoever
//! asked is told the group (`on_start`) before the prompt is written: a CLI can do
//! nothing without its prompt, so a crash before its group is recorded leaves a CLI that reads
//! an empty stdin and ends.
//!
//! Two reader threads move stdout and stderr to the calling thread over one channel (each pipe
//! ends with a message of its own); a prompt longer than what an empty pipe surely holds gets a
//! writer thread that closes stdin once it is written. The calling thread keeps stdout (capped,
//! each line to the stream sink as it arrives) and the tail of stderr, notices the exit
//! (`try_wait`: at each message, every `TICK` while the pipes are quiet, and with a backoff from
//! 50 µs once both have closed, so an exit is seen within about a millisecond of it), and on
//! timeout or cancel sends SIGTERM to the group, waits `kill_grace`, then SIGKILL; a shutdown
//! (interrupt) SIGKILLs at once. Whatever happens, the group is SIGKILLed once the leader is
//! gone, so no grandchild survives, and the pipes are drained for at most `PIPE_DRAIN` after.
//!
//! Nothing ties the CLI to the server's life: if the server is killed (`kill -9`, a crash), the
//! CLI runs on until the next start, which kills the recorded group (`leftovers`) and marks its
//! task `interrupted`; under systemd a stop kills the whole cgroup.

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{launch, Cancel, Invocation, LineSink, OnStart};
use crate::sys;

/// Most of stdout kept (a result bigger than this is reported as a failure).
pub const STDOUT_CAP: usize = 64 * 1024 * 1024;
/// The tail of stderr kept for error messages.
pub const STDERR_TAIL: usize = 16 * 1024;
/// How often the calling thread looks at the cancel flag and the leader while the pipes are quiet.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// The first wait for the leader's exit once its pipes have closed (doubled up to `TICK`).
const FIRST_BACKOFF: Duration = Duration::from_micros(50);
/// How long to read what is left in the pipes after the group was killed.
const PIPE_DRAIN: Duration = Duration::from_secs(2);
/// What a write into a new, empty pipe surely takes without blocking (one page, the least a
/// pipe holds): a prompt this short is written on the calling thread.
pub(crate) const PIPE_PAGE: usize = 4096;
/// Bytes per read of a pipe, and chunks in flight between a reader and the calling thread.
const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 64;
/// The helper threads only copy bytes.
pub(crate) const HELPER_STACK: usize = 64 * 1024;

/// What the process did, before any interpretation.
#[derive(Debug, Default)]
pub struct RawRun {
    pub stdout: Vec<u8>,
    pub stdout_overflow: bool,
    pub stderr_tail: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

/// Runs the invocation to its end; `Err` only when the process could not be started (or its
/// `on_start` refused it, in which case its group was killed before it got the prompt).
pub fn execute(inv: &Invocation, cancel: &Cancel, on_start: OnStart) -> io::Result<RawRun> {
    let started = Instant::now();
    let mut child = start(inv)?;
    let pgid = child.id() as i32;
    let prepared = Output::start_readers(&mut child, inv.lines.clone()).and_then(|output| {
        if !on_start(pgid) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the run was called off as it started"));
        }
        feed_prompt(child.stdin.take(), &inv.prompt)?;
        Ok(output)
    });
    let mut output = match prepared {
        Ok(output) => output,
        Err(e) => {
            kill_and_reap(&mut child, pgid);
            return Err(e);
        }
    };
    let mut run = RawRun::default();
    let status = wait_for_end(&mut child, pgid, inv, cancel, started, &mut output, &mut run);
    // The leader is gone; anything it left behind in its group goes too.
    signal_group(pgid, sys::SIGKILL);
    if let Some(status) = status {
        run.exit_code = status.code();
        run.signal = status.signal();
    }
    output.drain_until(Instant::now() + PIPE_DRAIN);
    output.finish(&mut run);
    run.duration = started.elapsed();
    Ok(run)
}

/// Starts the CLI in its own process group, the environment of the invocation on top of ours,
/// in its folder: through the launcher (`launch`), so the server itself never forks.
fn start(inv: &Invocation) -> io::Result<Child> {
    spawn_group(&inv.program, &inv.args, &inv.cwd, &inv.env)
}

/// Starts `program` (looked up on the child's PATH) in `cwd`, leading its own process group,
/// with `env` on top of ours and piped stdin, stdout and stderr.
pub(crate) fn spawn_group(
    program: &str,
    args: &[String],
    cwd: &std::path::Path,
    env: &[(String, String)],
) -> io::Result<Child> {
    let program = resolve(program, env)?;
    if !cwd.is_dir() {
        let message = format!("the folder {} does not exist (or is not a folder)", cwd.display());
        return Err(io::Error::new(io::ErrorKind::NotFound, message));
    }
    let mut command = match launch::through_launcher(cwd, &program) {
        Some(command) => command,
        None => {
            let mut command = Command::new(&program);
            command.current_dir(cwd);
            command
        }
    };
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Writes the prompt and closes stdin (EOF for the child): here when it is short, else on a
/// thread of its own, since a child that does not read must not block us.
fn feed_prompt(stdin: Option<ChildStdin>, prompt: &str) -> io::Result<()> {
    let Some(mut stdin) = stdin else { return Ok(()) };
    if prompt.len() <= PIPE_PAGE {
        // A child that exits without reading gives EPIPE, which is not our failure.
        let _ = stdin.write_all(prompt.as_bytes());
        return Ok(());
    }
    let prompt = prompt.as_bytes().to_vec();
    std::thread::Builder::new().name("cli-stdin".into()).stack_size(HELPER_STACK).spawn(move || {
        let _ = stdin.write_all(&prompt);
    })?;
    Ok(())
}

/// Waits for the leader's exit, applying the timeout, a cancel and an interrupt; its status, if
/// it could be had.
fn wait_for_end(
    child: &mut Child,
    pgid: i32,
    inv: &Invocation,
    cancel: &Cancel,
    started: Instant,
    output: &mut Output,
    run: &mut RawRun,
) -> Option<ExitStatus> {
    let deadline = started + inv.timeout;
    let mut kill_at: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if cancel.is_interrupt() {
            // The server is stopping and gave the run its grace already: no second one.
            run.cancelled = true;
            return kill_and_reap(child, pgid);
        }
        if kill_at.is_none() && (cancel.is_cancelled() || Instant::now() >= deadline) {
            run.cancelled = cancel.is_cancelled();
            run.timed_out = !run.cancelled;
            signal_group(pgid, sys::SIGTERM);
            kill_at = Some(Instant::now() + inv.kill_grace);
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            return kill_and_reap(child, pgid);
        }
        let until = kill_at.unwrap_or(deadline);
        let wait = TICK.min(until.saturating_duration_since(Instant::now()));
        if output.is_open() {
            output.receive(wait);
        } else {
            // The pipes are closed: the leader is exiting (or closed them and runs on).
            std::thread::sleep(backoff.min(wait));
            backoff = (backoff * 2).min(TICK);
        }
    }
}

/// SIGKILL to the whole group, then the leader's status.
fn kill_and_reap(child: &mut Child, pgid: i32) -> Option<ExitStatus> {
    signal_group(pgid, sys::SIGKILL);
    child.wait().ok()
}

pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // A group that is already gone (ESRCH) is what we wanted.
    let _ = sys::signal_group(pgid, signal);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// What a reader thread sends: bytes of its pipe, then the pipe's end.
enum Piece {
    Bytes(Stream, Vec<u8>),
    End,
}

/// What came out of the child, kept on the calling thread.
struct Output {
    pieces: Receiver<Piece>,
    /// Pipes that have not ended yet.
    open: usize,
    out: Vec<u8>,
    out_overflow: bool,
    err: Vec<u8>,
    lines: Option<LineSink>,
    partial_line: Vec<u8>,
}

impl Output {
    /// Takes the child's stdout and stderr, each to a reader thread.
    fn start_readers(child: &mut Child, lines: Option<LineSink>) -> io::Result<Output> {
        let (to_us, pieces) = crossbeam_channel::bounded(CHUNKS_IN_FLIGHT);
        let mut open = 0;
        if let Some(stdout) = child.stdout.take() {
            read_on_a_thread(stdout, Stream::Stdout, to_us.clone())?;
            open += 1;
        }
        if let Some(stderr) = child.stderr.take() {
            read_on_a_thread(stderr, Stream::Stderr, to_us)?;
            open += 1;
        }
        Ok(Output {
            pieces,
            open,
            out: Vec::new(),
            out_overflow: false,
            err: Vec::new(),
            lines,
            partial_line: Vec::new(),
        })
    }

    /// stdout or stderr may still bring something.
    fn is_open(&self) -> bool {
        self.open > 0
    }

    /// Waits up to `wait` for a piece, then takes every piece that is there.
    fn receive(&mut self, wait: Duration) {
        match self.pieces.recv_timeout(wait) {
            Ok(piece) => self.take(piece),
            Err(RecvTimeoutError::Timeout) => return,
            // Every reader is gone (each sends its pipe's end first, so only after a panic).
            Err(RecvTimeoutError::Disconnected) => self.open = 0,
        }
        while let Ok(piece) = self.pieces.try_recv() {
            self.take(piece);
        }
    }

    /// Reads until both pipes end, or `until`.
    fn drain_until(&mut self, until: Instant) {
        while self.is_open() && Instant::now() < until {
            self.receive(until.saturating_duration_since(Instant::now()));
        }
    }

    fn take(&mut self, piece: Piece) {
        match piece {
            Piece::Bytes(Stream::Stdout, bytes) => self.take_stdout(&bytes),
            Piece::Bytes(Stream::Stderr, bytes) => self.take_stderr(&bytes),
            Piece::End => self.open = self.open.saturating_sub(1),
        }
    }

    fn take_stdout(&mut self, chunk: &[u8]) {
        let room = STDOUT_CAP.saturating_sub(self.out.len());
        self.out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.out_overflow |= chunk.len() > room;
        if let Some(lines) = &self.lines {
            self.partial_line.extend_from_slice(chunk);
            while let Some(end) = self.partial_line.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial_line.drain(..=end).collect();
                (lines.0)(String::from_utf8_lossy(&line).trim_end());
            }
        }
    }

    fn take_stderr(&mut self, chunk: &[u8]) {
        self.err.extend_from_slice(chunk);
        if self.err.len() > STDERR_TAIL {
            self.err.drain(..self.err.len() - STDERR_TAIL);
        }
    }

    /// Hands over what came; a reader still blocked on a pipe (held open by a process that left
    /// the group) ends at its next read, as nobody takes its pieces any more.
    fn finish(mut self, run: &mut RawRun) {
        if let (Some(lines), false) = (&self.lines, self.partial_line.is_empty()) {
            (lines.0)(String::from_utf8_lossy(&self.partial_line).trim_end());
        }
        run.stdout = std::mem::take(&mut self.out);
        run.stdout_overflow = self.out_overflow;
        run.stderr_tail = String::from_utf8_lossy(&self.err).into_owned();
    }
}

/// Sends what `pipe` brings, then its end, until the pipe ends or nobody listens.
fn read_on_a_thread(mut pipe: impl Read + Send + 'static, stream: Stream, to_us: Sender<Piece>) -> io::Result<()> {
    let name = if stream == Stream::Stdout { "cli-stdout" } else { "cli-stderr" };
    std::thread::Builder::new().name(name.into()).stack_size(HELPER_STACK).spawn(move || {
        let mut chunk = vec![0; CHUNK];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if to_us.send(Piece::Bytes(stream, chunk[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = to_us.send(Piece::End);
    })?;
    Ok(())
}

/// `program` as a path: as given when it has a slash, else the first executable of that name
/// on the child's PATH (or the server's). Looked up here, once, rather than by `Command`, which
/// would search the server's PATH when the child's is not set.
pub(crate) fn resolve(program: &str, env: &[(String, String)]) -> io::Result<PathBuf> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, format!("{program} not found"));
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if path.is_file() { Ok(path) } else { Err(not_found()) };
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    std::env::split_paths(&path_var).map(|dir| dir.join(program)).find(|path| is_executable(path)).ok_or_else(not_found)
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn invocation(program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)], prompt: &str) -> Invocation {
        Invocation {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            prompt: prompt.into(),
            cwd: cwd.into(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            timeout: Duration::from_secs(10),
            kill_grace: Duration::from_millis(200),
            lines: None,
        }
    }

    fn run(inv: &Invocation) -> RawRun {
        execute(inv, &Cancel::default(), &mut |_| true).expect("the child starts")
    }

    #[test]
    fn the_child_gets_its_arguments_folder_environment_and_prompt() {
        let script = "read line; echo \"$line|$1|$(pwd)|$CCS_SPAWN_TEST\"; echo oops >&2; exit 3";
        let inv =
            invocation("sh", &["-c", script, "sh", "arg one"], Path::new("/tmp"), &[("CCS_SPAWN_TEST", "set")], "hi\n");
        let raw = run(&inv);
        assert_eq!(String::from_utf8_lossy(&raw.stdout), "hi|arg one|/tmp|set\n");
        assert_eq!(raw.stderr_tail, "oops\n");
        assert_eq!(raw.exit_code, Some(3));
    }

    #[test]
    fn a_long_prompt_reaches_a_child_that_reads_it_slowly() {
        let prompt = "x".repeat(1024 * 1024);
        let raw = run(&invocation("sh", &["-c", "sleep 0.2; wc -c"], Path::new("/"), &[], &prompt));
        assert_eq!(String::from_utf8_lossy(&raw.stdout).trim(), "1048576");
    }

    #[test]
    fn the_child_leads_its_own_group_with_default_signals() {
        let raw = run(&invocation("sh", &["-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"], Path::new("/"), &[], ""));
        let out = String::from_utf8_lossy(&raw.stdout);
        let ids: Vec<i32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(ids[0], ids[1], "the child's process group is its own pid: {out}");
        let raw = run(&invocation("sh", &["-c", "grep SigIgn /proc/$$/status"], Path::new("/"), &[], ""));
        let sig = String::from_utf8_lossy(&raw.stdout);
        // SIGPIPE (13) is not ignored in the child although Rust ignores it here.
        let ignored = u64::from_str_radix(sig.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{sig}");
    }

    #[test]
    fn on_start_gets_the_group_before_the_prompt_and_can_call_the_run_off() {
        let inv = invocation("sh", &["-c", "cut -d' ' -f5 /proc/$$/stat; cat"], Path::new("/"), &[], "p");
        let mut seen = None;
        let raw = execute(&inv, &Cancel::default(), &mut |pgid| {
            seen = Some(pgid);
            true
        })
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&raw.stdout), format!("{}\np", seen.unwrap()));
        let started = Instant::now();
        let refused = execute(&inv, &Cancel::default(), &mut |_| false).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(2), "the refused child was killed at once");
    }

    #[test]
    fn what_stops_a_start_is_an_error_not_an_exit_code() {
        let cancel = Cancel::default();
        let none = execute(&invocation("no-such-program-ccs", &[], Path::new("/"), &[], ""), &cancel, &mut |_| true)
            .unwrap_err();
        assert_eq!(none.kind(), io::ErrorKind::NotFound);
        let folder = execute(&invocation("sh", &[], Path::new("/nonexistent/folder"), &[], ""), &cancel, &mut |_| true)
            .unwrap_err();
        assert_eq!(folder.kind(), io::ErrorKind::NotFound, "{folder}");
        let dir = std::env::temp_dir().join(format!("ccs-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("claude");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        let refused =
            execute(&invocation(file.to_str().unwrap(), &[], Path::new("/"), &[], ""), &cancel, &mut |_| true)
                .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn programs_are_found_on_the_childs_path_first() {
        let env = vec![("PATH".to_string(), "/nonexistent:/bin:/usr/bin".to_string())];
        let found = resolve("sh", &env).unwrap();
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        assert_eq!(resolve("/nonexistent/bin/claude", &[]).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
