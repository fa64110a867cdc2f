//! Starting the CLI so that it dies with the server, without fork().
//!
//! `PR_SET_PDEATHSIG` has to be set in the child between fork and exec. In Rust that means a
//! `pre_exec` hook, and any hook makes std fork() the whole server instead of using posix_spawn:
//! measured on 2 cores, +1 to +4 ms a run once the server has its threads and heap. So the child
//! is this same executable, started with posix_spawn (std's fast path; the process group is set
//! there too): it sets the signal, checks that the server is still its parent, and execs the CLI.
//! The executable is `/proc/self/exe`, which still works after the binary was replaced on disk.
//! The launcher also enters the project folder: a `current_dir` would send std back to fork() in
//! the static build (its posix_spawn chdir needs a symbol a static glibc cannot look up).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first argument that makes `ccs` a launcher instead of parsing a command line.
const MARKER: &str = "__ccs-launch";
/// Exit code of a launcher that could not exec (as a shell's "cannot execute").
const CANNOT_EXEC: i32 = 127;

static THIS_EXECUTABLE_LAUNCHES: AtomicBool = AtomicBool::new(false);

/// Called by the `ccs` binary at start: runs its launcher part when it is one (returns the exit
/// code), and otherwise lets runs go through it from now on.
pub fn run_if_launcher(args: &[OsString]) -> Option<i32> {
    if args.first().map(OsString::as_os_str) != Some(OsStr::new(MARKER)) {
        THIS_EXECUTABLE_LAUNCHES.store(true, Ordering::Relaxed);
        return None;
    }
    Some(launch(&args[1..]))
}

/// The command that runs `program` in `cwd` with the environment `env` (on top of the server's).
/// The program is looked up on PATH here, so a missing one is an error now, not an exit code later.
pub fn command(program: &str, cwd: &Path, env: &[(String, String)]) -> io::Result<Command> {
    let program = resolve(program, env)?;
    if !THIS_EXECUTABLE_LAUNCHES.load(Ordering::Relaxed) {
        // A test binary that is not `ccs`: run directly (no parent-death signal).
        let mut command = Command::new(program);
        command.current_dir(cwd);
        return Ok(command);
    }
    let mut command = Command::new("/proc/self/exe");
    command.arg(MARKER).arg(std::process::id().to_string()).arg(cwd).arg(program);
    Ok(command)
}

/// `[server pid, folder, program, args...]`: arm the parent-death signal, enter the folder, then
/// become the program.
fn launch(args: &[OsString]) -> i32 {
    let [server, cwd, program, rest @ ..] = args else {
        eprintln!("ccs: {MARKER} is internal to ccs");
        return CANNOT_EXEC;
    };
    // SAFETY: prctl and getppid only read or set attributes of this (single-threaded) process.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            eprintln!("ccs: cannot arm the parent-death signal: {}", io::Error::last_os_error());
            return CANNOT_EXEC;
        }
        // The server died before the signal was armed: nobody would stop this CLI.
        if server.to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) != Some(libc::getppid()) {
            return CANNOT_EXEC;
        }
    }
    if let Err(err) = std::env::set_current_dir(cwd) {
        eprintln!("ccs: cannot enter the project folder {}: {err}", Path::new(cwd).display());
        return CANNOT_EXEC;
    }
    let err = Command::new(program).args(rest).exec();
    eprintln!("ccs: cannot start {}: {err}", Path::new(program).display());
    CANNOT_EXEC
}

/// `program` as a path: as given when it has a slash, else the first executable of that name
/// on the child's PATH (or the server's).
fn resolve(program: &str, env: &[(String, String)]) -> io::Result<PathBuf> {
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
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: access() only reads the NUL-terminated path it is given.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_the_childs_path_first() {
        let env = vec![("PATH".to_string(), "/nonexistent:/bin:/usr/bin".to_string())];
        let found = resolve("sh", &env).unwrap();
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        assert_eq!(resolve("no-such-program-ccs", &env).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(resolve("/nonexistent/bin/claude", &[]).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_file_without_the_execute_bit_is_refused() {
        let dir = std::env::temp_dir().join(format!("ccs-launcher-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("claude");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        let refused = resolve(file.to_str().unwrap(), &[]).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
        std::fs::remove_dir_all(dir).ok();
    }
}
