//! The pid file: written by a running server, read by `start`/`stop`/`status`. A pid file whose
//! process is gone (or is not a ccs server any more) is stale.

use std::io;
use std::path::Path;

use crate::fsutil;

/// The pid in the file, if there is a readable one.
pub fn read(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok().filter(|pid| *pid > 0)
}

pub fn write(path: &Path, pid: u32) -> io::Result<()> {
    fsutil::write_atomic(path, format!("{pid}\n").as_bytes())
}

/// Removes the file if it still names `pid` (a newer server's file is left alone).
pub fn remove_if_ours(path: &Path, pid: u32) {
    if read(path) == Some(pid as i32) {
        let _ = fsutil::remove_durable(path);
    }
}

/// Whether `pid` is a live `ccs serve` process.
pub fn is_ccs_server(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let zombie = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z");
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let program_is_ccs =
        args.first().and_then(|a| Path::new(a).file_name()).is_some_and(|n| n.to_string_lossy().starts_with("ccs"));
    !zombie && program_is_ccs && args.iter().any(|a| a == "serve")
}

/// What the pid file says about the server.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    Running(i32),
    /// The file names a process that is gone.
    Stale(i32),
    Stopped,
}

pub fn state(path: &Path) -> State {
    match read(path) {
        Some(pid) if is_ccs_server(pid) => State::Running(pid),
        Some(pid) => State::Stale(pid),
        None => State::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_naming_a_dead_or_foreign_process_is_stale() {
        let dir = crate::fsutil::TempDir::new("pid");
        let path = dir.join("server.pid");
        assert_eq!(state(&path), State::Stopped);
        write(&path, std::process::id()).unwrap();
        // This test binary is not `ccs serve`.
        assert_eq!(state(&path), State::Stale(std::process::id() as i32));
        remove_if_ours(&path, 1);
        assert!(path.exists(), "another pid's file is left alone");
        remove_if_ours(&path, std::process::id());
        assert!(!path.exists());
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(state(&path), State::Stopped);
    }
}
