//! Starting the CLI process. std's `Command` can arm `PR_SET_PDEATHSIG` (so the CLI dies with
//! the server, even on `kill -9`) only through a `pre_exec` hook, which makes it fork() the whole
//! server; and the static build forks for any `current_dir`. Measured on 2 cores: fork() cost
//! 1-4 ms a run once the server had its threads and heap; exec'ing a launcher in between,
//! 0.5-1 ms. So this does what posix_spawn does, plus that one call: `clone(CLONE_VM |
//! CLONE_VFORK)`, and in the child: default signal handlers, its own process group, the
//! parent-death signal, the pipes as stdin/stdout/stderr, the project folder, exec.
//!
//! The child shares the server's memory until it execs (the calling thread is suspended until
//! then), so it only makes system calls on data prepared beforehand: no allocation, no locks.
//! Signals are blocked around the clone, and the child resets every handler before unblocking
//! them, so no handler of the server ever runs in it.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::ptr;

use libc::{c_char, c_int, c_void};

/// The child's stack until it execs (the kernel copies argv and the environment itself).
const CHILD_STACK: usize = 64 * 1024;
/// Exit code of a child that could not exec (as a shell's "cannot execute").
const CANNOT_EXEC: c_int = 127;

/// A started child: its pid (also its process group) and our ends of its pipes.
pub struct Child {
    pub pid: libc::pid_t,
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
}

/// Starts `program` (looked up on the child's PATH) with `args`, in `cwd`, with the server's
/// environment plus `env`. An error is what stopped it: no such program, a folder that cannot
/// be entered, an exec failure.
pub fn spawn(program: &str, args: &[String], cwd: &Path, env: &[(String, String)]) -> io::Result<Child> {
    let path = resolve(program, env)?;
    let c_path = c_string(path.as_os_str())?;
    let argv: Vec<CString> = std::iter::once(Ok(c_path.clone()))
        .chain(args.iter().map(|a| c_string(OsStr::new(a))))
        .collect::<io::Result<_>>()?;
    let envp = environment(env)?;
    let c_cwd = c_string(cwd.as_os_str())?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let mut plan = Plan {
        path: c_path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        cwd: c_cwd.as_ptr(),
        fds: [raw(&stdin_r), raw(&stdout_w), raw(&stderr_w)],
        server: std::process::id() as libc::pid_t,
        error: 0,
    };
    let pid = clone_child(&mut plan)?;
    drop((stdin_r, stdout_w, stderr_w));
    // SAFETY: the child has exec'd or exited (CLONE_VFORK); `error` is no longer written.
    let error = unsafe { ptr::read_volatile(&plan.error) };
    if error != 0 {
        wait(pid);
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(Child { pid, stdin: stdin_w.into(), stdout: stdout_r.into(), stderr: stderr_r.into() })
}

/// Everything the child needs, prepared by the parent.
#[repr(C)]
struct Plan {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    /// Become the child's stdin, stdout and stderr.
    fds: [c_int; 3],
    server: libc::pid_t,
    /// The errno of the step that failed, written by the child.
    error: c_int,
}

fn clone_child(plan: &mut Plan) -> io::Result<libc::pid_t> {
    let mut stack = vec![0u8; CHILD_STACK];
    // SAFETY: the stack grows down from its (16-byte aligned) end and outlives the child's use
    // of it (CLONE_VFORK returns once the child has exec'd or exited). Signals are blocked in
    // this thread around the clone so nothing runs in the child before it resets the handlers;
    // the old mask is restored whatever happened.
    unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16) as *mut c_void;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        let pid = libc::clone(child_main, top, flags, plan as *mut Plan as *mut c_void);
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        Ok(pid)
    }
}

/// The child, until exec. Only system calls on the prepared plan.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `Plan`, alive and untouched by the suspended parent; every
    // call below is async-signal-safe.
    unsafe {
        let plan = &mut *(arg as *mut Plan);
        default_signal_handlers();
        if libc::setpgid(0, 0) != 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(plan);
        }
        // The server died before the signal was armed: nobody would ever stop this CLI.
        if libc::getppid() != plan.server {
            libc::_exit(CANNOT_EXEC);
        }
        for (target, fd) in plan.fds.into_iter().enumerate() {
            if libc::dup2(fd, target as c_int) < 0 {
                return fail(plan);
            }
        }
        if libc::chdir(plan.cwd) != 0 {
            return fail(plan);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        libc::execve(plan.path, plan.argv, plan.envp);
        fail(plan)
    }
}

/// Handlers of the server become the default (exec would do that, but only later); ignored
/// signals stay ignored, except SIGPIPE, which Rust ignores for itself (as std's `Command` does).
unsafe fn default_signal_handlers() {
    let mut default: libc::sigaction = std::mem::zeroed();
    default.sa_sigaction = libc::SIG_DFL;
    for signal in 1..65 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        let known = libc::sigaction(signal, ptr::null(), &mut current) == 0;
        if known && (current.sa_sigaction != libc::SIG_IGN || signal == libc::SIGPIPE) {
            libc::sigaction(signal, &default, ptr::null_mut());
        }
    }
}

unsafe fn fail(plan: &mut Plan) -> c_int {
    ptr::write_volatile(&mut plan.error, *libc::__errno_location());
    libc::_exit(CANNOT_EXEC)
}

/// Waits for the child `pid` to exit (retrying interrupted waits) and reaps it.
pub fn wait(pid: libc::pid_t) -> Option<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Some(ExitStatus::from_raw(status));
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// A pipe (read end, write end), close-on-exec, both above 0-2 so that putting them in place
/// as stdin/stdout/stderr never overwrites one another.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 fills the two descriptors, which we then own.
    let (r, w) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if raw(&fd) > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicates a descriptor we own into a new one we then own.
    let moved = unsafe { libc::fcntl(raw(&fd), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `moved` is a fresh descriptor of our own.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

fn raw(fd: &OwnedFd) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an argument with a NUL byte"))
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(ptr::null())).collect()
}

/// The server's environment with `env` set on top.
fn environment(env: &[(String, String)]) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(OsString, OsString)> =
        std::env::vars_os().filter(|(k, _)| !env.iter().any(|(name, _)| OsStr::new(name) == k)).collect();
    vars.extend(env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    vars.iter()
        .map(|(k, v)| {
            let mut pair = k.clone();
            pair.push("=");
            pair.push(v);
            c_string(&pair)
        })
        .collect()
}

/// `program` as a path: as given when it has a slash, else the first executable of that name
/// on the child's PATH (or the server's).
pub(crate) fn resolve(program: &str, env: &[(String, String)]) -> io::Result<PathBuf> {
    let not_found = || io::Error::new(io::ErrorKind::NotFound, format!("{program} not found"));
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if path.is_file() { executable(path) } else { Err(not_found()) };
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file() && executable(candidate.clone()).is_ok())
        .ok_or_else(not_found)
}

fn executable(path: PathBuf) -> io::Result<PathBuf> {
    let c_path = c_string(path.as_os_str())?;
    // SAFETY: access() only reads the NUL-terminated path it is given.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn run(program: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)], stdin: &str) -> (String, String, c_int) {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut child = spawn(program, &args, cwd, &env).unwrap();
        child.stdin.write_all(stdin.as_bytes()).unwrap();
        drop(child.stdin);
        let (mut out, mut err) = (String::new(), String::new());
        child.stdout.read_to_string(&mut out).unwrap();
        child.stderr.read_to_string(&mut err).unwrap();
        (out, err, wait(child.pid).and_then(|status| status.code()).unwrap_or(-1))
    }

    #[test]
    fn the_child_gets_its_arguments_folder_environment_and_pipes() {
        let script = "read line; echo \"$line|$1|$(pwd)|$CCS_SPAWN_TEST\"; echo oops >&2; exit 3";
        let (out, err, code) =
            run("sh", &["-c", script, "sh", "arg one"], Path::new("/tmp"), &[("CCS_SPAWN_TEST", "set")], "hello\n");
        assert_eq!(out, "hello|arg one|/tmp|set\n");
        assert_eq!(err, "oops\n");
        assert_eq!(code, 3);
    }

    #[test]
    fn the_child_leads_its_own_group_with_default_signals() {
        let (out, _, _) = run("sh", &["-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"], Path::new("/"), &[], "");
        let ids: Vec<i32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(ids[0], ids[1], "the child's process group is its own pid: {out}");
        let (sig, _, _) = run("sh", &["-c", "grep SigIgn /proc/$$/status"], Path::new("/"), &[], "");
        // SIGPIPE (13) is not ignored in the child although Rust ignores it here.
        let ignored = u64::from_str_radix(sig.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{sig}");
    }

    #[test]
    fn what_stops_a_start_is_an_error_not_an_exit_code() {
        let none = spawn("no-such-program-ccs", &[], Path::new("/"), &[]).err().unwrap();
        assert_eq!(none.kind(), io::ErrorKind::NotFound);
        let folder = spawn("sh", &[], Path::new("/nonexistent/folder"), &[]).err().unwrap();
        assert_eq!(folder.kind(), io::ErrorKind::NotFound, "{folder}");
        let dir = crate::fsutil::TempDir::new("spawn");
        let file = dir.join("claude");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        let refused = spawn(file.to_str().unwrap(), &[], Path::new("/"), &[]).err().unwrap();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
    }

    #[test]
    fn programs_are_found_on_the_childs_path_first() {
        let env = vec![("PATH".to_string(), "/nonexistent:/bin:/usr/bin".to_string())];
        let found = resolve("sh", &env).unwrap();
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        assert_eq!(resolve("/nonexistent/bin/claude", &[]).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
