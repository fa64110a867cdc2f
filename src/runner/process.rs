//! One claude child process: spawned in its own process group with the prompt on stdin,
//! stdout/stderr drained on their own threads (capped), waited on with a timeout and a cancel
//! flag, and on timeout or cancel stopped with SIGTERM to the group, a grace period, then SIGKILL.
//! Whatever happens, the group is SIGKILLed once the leader is gone, so no grandchild survives,
//! and the CLI gets SIGKILL if the server dies (even `kill -9`; see `spawn`): after a restart
//! its task is `interrupted`, so it must not still be changing files.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use super::{spawn, Cancel, Invocation, LineSink};

/// Most of stdout kept (a result bigger than this is reported as a failure).
pub const STDOUT_CAP: usize = 64 * 1024 * 1024;
/// The tail of stderr kept for error messages.
pub const STDERR_TAIL: usize = 16 * 1024;
/// How often the wait loop looks at the cancel flag.
const TICK: Duration = Duration::from_millis(50);
/// How long to wait for the pipes to close after the group was killed.
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
    feed_stdin(child.stdin, inv.prompt.clone());
    let stdout = drain(Some(child.stdout), keep_head(STDOUT_CAP), inv.lines.clone());
    let stderr = drain(Some(child.stderr), keep_tail(STDERR_TAIL), None);
    let exited = wait_on_thread(child.pid);

    let deadline = started + inv.timeout;
    let mut run = RawRun::default();
    let status = loop {
        match exited.recv_timeout(TICK.min(deadline.saturating_duration_since(Instant::now()))) {
            Ok(status) => break status,
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {
                run.cancelled = cancel.is_cancelled();
                run.timed_out = !run.cancelled && Instant::now() >= deadline;
                if run.cancelled || run.timed_out {
                    break stop_group(pgid, inv.kill_grace, &exited);
                }
            }
        }
    };
    // The leader is gone; anything it left behind in its group goes too.
    signal_group(pgid, libc::SIGKILL);
    if let Some(status) = status {
        record_exit(&mut run, status);
    }
    let (out, overflow) = stdout.recv_timeout(PIPE_DRAIN).unwrap_or_default();
    run.stdout = out;
    run.stdout_overflow = overflow;
    let (err, _) = stderr.recv_timeout(PIPE_DRAIN).unwrap_or_default();
    run.stderr_tail = String::from_utf8_lossy(&err).into_owned();
    run.duration = started.elapsed();
    Ok(run)
}

fn record_exit(run: &mut RawRun, status: ExitStatus) {
    run.exit_code = status.code();
    run.signal = status.signal();
}

/// SIGTERM to the group, up to `grace` for the leader to exit, then SIGKILL.
fn stop_group(pgid: i32, grace: Duration, exited: &Receiver<Option<ExitStatus>>) -> Option<ExitStatus> {
    signal_group(pgid, libc::SIGTERM);
    if let Ok(status) = exited.recv_timeout(grace) {
        return status;
    }
    signal_group(pgid, libc::SIGKILL);
    exited.recv().ok().flatten()
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH, ignored.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

fn feed_stdin(mut stdin: File, prompt: String) {
    // A child that exits without reading gives EPIPE here, which is not our failure.
    thread::spawn(move || {
        let _ = stdin.write_all(prompt.as_bytes());
    });
}

fn wait_on_thread(pid: libc::pid_t) -> Receiver<Option<ExitStatus>> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let mut status = 0;
        let exited = loop {
            // SAFETY: waits for our own child (each is waited for once, here).
            if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
                break Some(ExitStatus::from_raw(status));
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break None;
            }
        };
        let _ = tx.send(exited);
    });
    rx
}

fn keep_head(cap: usize) -> impl Fn(&mut Vec<u8>, &[u8], &mut bool) + Send + 'static {
    move |buf, chunk, overflow| {
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        *overflow |= chunk.len() > room;
    }
}

fn keep_tail(cap: usize) -> impl Fn(&mut Vec<u8>, &[u8], &mut bool) + Send + 'static {
    move |buf, chunk, overflow| {
        buf.extend_from_slice(chunk);
        if buf.len() > cap {
            buf.drain(..buf.len() - cap);
            *overflow = true;
        }
    }
}

/// Reads `pipe` to its end on a thread of its own, keeping what `keep` keeps, and sending each
/// complete line to `lines` as soon as it is read.
fn drain<R, F>(pipe: Option<R>, keep: F, lines: Option<LineSink>) -> Receiver<(Vec<u8>, bool)>
where
    R: Read + Send + 'static,
    F: Fn(&mut Vec<u8>, &[u8], &mut bool) + Send + 'static,
{
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        let (mut buf, mut overflow) = (Vec::new(), false);
        let mut partial: Vec<u8> = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        keep(&mut buf, &chunk[..n], &mut overflow);
                        if let Some(lines) = &lines {
                            partial.extend_from_slice(&chunk[..n]);
                            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = partial.drain(..=end).collect();
                                (lines.0)(String::from_utf8_lossy(&line).trim_end());
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        if let (Some(lines), false) = (&lines, partial.is_empty()) {
            (lines.0)(String::from_utf8_lossy(&partial).trim_end());
        }
        let _ = tx.send((buf, overflow));
    });
    rx
}
