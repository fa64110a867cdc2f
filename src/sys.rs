//! The few operating-system calls std does not offer, and the only `unsafe` code of the crate
//! (`lib.rs` denies it everywhere else): sending signals to a process or a process group,
//! installing a signal handler that sets a flag, detaching a child into a session of its own,
//! and reading and raising the limit of open files. Each function is a thin, safe wrapper whose
//! arguments cannot make the call misbehave; errors come back as `io::Error`.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

pub use libc::{SIGHUP, SIGKILL, SIGTERM};

/// Sends `signal` to the process `pid`. `pid` must name one process: 0 and negative values
/// (which would reach a whole group, or every process we may signal) are refused.
pub fn signal_process(pid: i32, signal: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id")));
    }
    kill(pid, signal)
}

/// Sends `signal` to every process of the group `pgid`. 0 and 1 are refused (our own group,
/// and -1, which would reach every process we may signal).
pub fn signal_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{pgid} is not a process group id")));
    }
    kill(-pgid, signal)
}

fn kill(target: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) only sends a signal; it reads no memory of ours. The callers have checked
    // that `target` names one process or one group.
    if unsafe { libc::kill(target, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Calls `handler` on each `signal`. The handler runs in signal context: it may only do what is
/// async-signal-safe, such as storing to an atomic.
pub fn on_signal(signal: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: the handler is a plain function with the signature signal(2) expects.
    let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child `command` starts lead a new session (setsid), detached from our terminal.
pub fn start_in_new_session(command: &mut Command) -> &mut Command {
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: setsid is one, and the hook allocates nothing (the error is an errno).
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The limit of open files: (soft, hard).
pub fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets the soft limit of open files (at most the hard limit `hard`).
pub fn set_open_files_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_never_reach_more_than_the_one_process_or_group_named() {
        for pid in [0, -1, -42] {
            assert_eq!(signal_process(pid, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        for pgid in [0, 1, -1] {
            assert_eq!(signal_group(pgid, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
        assert!(signal_process(std::process::id() as i32, 0).is_ok(), "signal 0 only checks");
    }
}
