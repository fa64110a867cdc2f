//! One claude child process, run to its end on the calling (worker) thread with no helper
//! threads: one poll loop writes the prompt to its stdin, reads stdout (capped; each line to
//! the stream sink as it arrives) and stderr (its tail), notices the exit, and on timeout or
//! cancel sends SIGTERM to its process group, waits a grace period, then SIGKILL. Whatever
//! happens, the group is SIGKILLed once the leader is gone, so no grandchild survives, and the
//! CLI gets SIGKILL if the server dies (even `kill -9`; see `spawn`): after a restart its task
//! is `interrupted`, so it must not still be changing files.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::{spawn, Cancel, Invocation, LineSink};

/// Most of stdout kept (a result bigger than this is reported as a failure).
pub const STDOUT_CAP: usize = 64 * 1024 * 1024;
/// The tail of stderr kept for error messages.
pub const STDERR_TAIL: usize = 16 * 1024;
/// How often the loop looks at the cancel flag and the leader while the pipes are quiet.
const TICK: Duration = Duration::from_millis(50);
/// How long to read what is left in the pipes after the group was killed.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

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

/// Runs the invocation to its end; `Err` only when the process could not be started.
pub fn execute(inv: &Invocation, cancel: &Cancel) -> io::Result<RawRun> {
    let started = Instant::now();
    let child = spawn::spawn(&inv.program, &inv.args, &inv.cwd, &inv.env)?;
    let pgid = child.pid;
    let mut io = match ChildIo::new(child.stdin, child.stdout, child.stderr, inv.prompt.as_bytes(), inv.lines.clone()) {
        Ok(io) => io,
        Err(e) => {
            signal_group(pgid, libc::SIGKILL);
            spawn::wait(pgid);
            return Err(e);
        }
    };
    let deadline = started + inv.timeout;
    let mut run = RawRun::default();
    let mut kill_at: Option<Instant> = None;
    let mut backoff = Duration::from_micros(50);
    let status = loop {
        if let Some(status) = exited(pgid) {
            break Some(status);
        }
        if cancel.is_interrupt() {
            // The server is stopping and gave the run its grace already: no second one.
            run.cancelled = true;
            signal_group(pgid, libc::SIGKILL);
            break spawn::wait(pgid);
        }
        if kill_at.is_none() && (cancel.is_cancelled() || Instant::now() >= deadline) {
            run.cancelled = cancel.is_cancelled();
            run.timed_out = !run.cancelled;
            signal_group(pgid, libc::SIGTERM);
            kill_at = Some(Instant::now() + inv.kill_grace);
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            signal_group(pgid, libc::SIGKILL);
            break spawn::wait(pgid);
        }
        let until = kill_at.unwrap_or(deadline);
        let wait = TICK.min(until.saturating_duration_since(Instant::now()));
        if io.is_open() {
            io.pump(wait);
        } else {
            // The pipes are closed: the leader is exiting (or closed them and runs on).
            std::thread::sleep(backoff.min(wait));
            backoff = (backoff * 2).min(TICK);
        }
    };
    // The leader is gone; anything it left behind in its group goes too.
    signal_group(pgid, libc::SIGKILL);
    if let Some(status) = status {
        run.exit_code = status.code();
        run.signal = status.signal();
    }
    let drain_until = Instant::now() + PIPE_DRAIN;
    while io.is_open() && Instant::now() < drain_until {
        io.pump(drain_until.saturating_duration_since(Instant::now()));
    }
    io.finish(&mut run);
    run.duration = started.elapsed();
    Ok(run)
}

/// The leader's exit status, if it has exited (reaping it).
fn exited(pid: libc::pid_t) -> Option<ExitStatus> {
    let mut status = 0;
    // SAFETY: polls our own child without blocking.
    (unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid).then(|| ExitStatus::from_raw(status))
}

/// Our ends of the child's pipes and what came through them.
struct ChildIo<'a> {
    stdin: Option<File>,
    prompt: &'a [u8],
    stdout: Option<File>,
    stderr: Option<File>,
    out: Vec<u8>,
    out_overflow: bool,
    err: Vec<u8>,
    lines: Option<LineSink>,
    partial_line: Vec<u8>,
    chunk: Vec<u8>,
}

impl<'a> ChildIo<'a> {
    fn new(stdin: File, stdout: File, stderr: File, prompt: &'a [u8], lines: Option<LineSink>) -> io::Result<Self> {
        // The prompt goes in as the child reads it; a child that does not read must not block us.
        // SAFETY: sets O_NONBLOCK on a descriptor we own.
        if unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let stdin = (!prompt.is_empty()).then_some(stdin);
        Ok(ChildIo {
            stdin,
            prompt,
            stdout: Some(stdout),
            stderr: Some(stderr),
            out: Vec::new(),
            out_overflow: false,
            err: Vec::new(),
            lines,
            partial_line: Vec::new(),
            chunk: vec![0; 64 * 1024],
        })
    }

    /// stdout or stderr may still bring something.
    fn is_open(&self) -> bool {
        self.stdout.is_some() || self.stderr.is_some()
    }

    /// Waits up to `wait` for the pipes, then moves what is ready.
    fn pump(&mut self, wait: Duration) {
        let mut fds = Vec::with_capacity(3);
        for (file, events) in [(&self.stdin, libc::POLLOUT), (&self.stdout, libc::POLLIN), (&self.stderr, libc::POLLIN)]
        {
            let fd = file.as_ref().map_or(-1, |f| f.as_raw_fd());
            fds.push(libc::pollfd { fd, events, revents: 0 });
        }
        let timeout = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd; negative fds are ignored by poll.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                // Not expected with valid descriptors; wait as the poll would have, then go on.
                log::warn!("poll on the CLI's pipes failed: {err}");
                std::thread::sleep(wait);
            }
            return;
        }
        if fds[0].revents != 0 {
            self.write_prompt();
        }
        if fds[1].revents != 0 {
            self.read_stdout();
        }
        if fds[2].revents != 0 {
            self.read_stderr();
        }
    }

    fn write_prompt(&mut self) {
        let Some(stdin) = self.stdin.as_mut() else { return };
        match stdin.write(self.prompt) {
            Ok(n) => self.prompt = &self.prompt[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => return,
            // A child that exits without reading gives EPIPE, which is not our failure.
            Err(_) => self.prompt = &[],
        }
        if self.prompt.is_empty() {
            self.stdin = None; // EOF for the child
        }
    }

    fn read_stdout(&mut self) {
        let Some(n) = read_some(&mut self.stdout, &mut self.chunk) else { return };
        let chunk = &self.chunk[..n];
        let room = STDOUT_CAP.saturating_sub(self.out.len());
        self.out.extend_from_slice(&chunk[..n.min(room)]);
        self.out_overflow |= n > room;
        if let Some(lines) = &self.lines {
            self.partial_line.extend_from_slice(chunk);
            while let Some(end) = self.partial_line.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial_line.drain(..=end).collect();
                (lines.0)(String::from_utf8_lossy(&line).trim_end());
            }
        }
    }

    fn read_stderr(&mut self) {
        let Some(n) = read_some(&mut self.stderr, &mut self.chunk) else { return };
        self.err.extend_from_slice(&self.chunk[..n]);
        if self.err.len() > STDERR_TAIL {
            self.err.drain(..self.err.len() - STDERR_TAIL);
        }
    }

    fn finish(mut self, run: &mut RawRun) {
        if let (Some(lines), false) = (&self.lines, self.partial_line.is_empty()) {
            (lines.0)(String::from_utf8_lossy(&self.partial_line).trim_end());
        }
        run.stdout = std::mem::take(&mut self.out);
        run.stdout_overflow = self.out_overflow;
        run.stderr_tail = String::from_utf8_lossy(&self.err).into_owned();
    }
}

/// Reads what `pipe` has; at its end (or on an error) closes it. `None`: nothing read.
fn read_some(pipe: &mut Option<File>, chunk: &mut [u8]) -> Option<usize> {
    match pipe.as_mut()?.read(chunk) {
        Ok(0) => {
            *pipe = None;
            None
        }
        Ok(n) => Some(n),
        Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => None,
        Err(_) => {
            *pipe = None;
            None
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH, ignored.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
