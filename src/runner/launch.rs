//! The launcher: `ccs` started again as `ccs __run-in <folder> <program> [args...]`, which
//! enters the project folder and execs the CLI in its own place (same pid, so the same process
//! group, environment and pipes).
//!
//! Why: std's `Command` starts a child without copying the server (posix_spawn, which shares
//! its memory until the exec) unless it must change the child's folder in a static build (the
//! `make release` one), where it falls back to fork(): a copy of the page tables of a server
//! with many threads, 1.2 to 6.7 ms measured (docs/benchmarks.md), during which the server's
//! other threads cannot fault pages in. The launcher changes folder itself, so the server never
//! forks; it costs one exec of the (small, static) ccs binary, and no `unsafe` anywhere.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first argument that makes `ccs` the launcher (not a command users type).
pub const RUN_IN: &str = "__run-in";

/// Exit code of a launcher that could not run the program, as a shell's "cannot execute".
const CANNOT_RUN: i32 = 127;

/// Set by the `ccs` binary: the running executable is one that understands `RUN_IN` (a test
/// harness or a benchmark linking the library is not).
static IN_CCS: AtomicBool = AtomicBool::new(false);

/// Says that this process is the `ccs` binary, so its children may be started through it.
pub fn this_is_ccs() {
    IN_CCS.store(true, Ordering::SeqCst);
}

/// How the server starts `program` in `folder` through the launcher, when this process is
/// `ccs` and can find its executable again (`/proc/self/exe`, even if replaced on disk).
pub fn through_launcher(folder: &Path, program: &Path) -> Option<Command> {
    let me = Path::new("/proc/self/exe");
    if !IN_CCS.load(Ordering::SeqCst) || !me.exists() {
        return None;
    }
    let mut command = Command::new(me);
    command.arg(RUN_IN).arg(folder).arg(program);
    Some(command)
}

/// The launcher itself (in the child): `args` are what follows `__run-in`. Returns only when
/// it could not run the program, with the exit code to end with.
pub fn run_in(mut args: impl Iterator<Item = OsString>) -> i32 {
    let (Some(folder), Some(program)) = (args.next(), args.next()) else {
        eprintln!("ccs: {RUN_IN} needs a folder and a program");
        return CANNOT_RUN;
    };
    if let Err(e) = std::env::set_current_dir(&folder) {
        eprintln!("ccs: cannot enter the project folder {}: {e}", Path::new(&folder).display());
        return CANNOT_RUN;
    }
    let err = Command::new(&program).args(args).exec();
    eprintln!("ccs: cannot run {}: {err}", Path::new(&program).display());
    CANNOT_RUN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launcher_that_cannot_enter_the_folder_ends_as_a_shell_would() {
        let args = ["/nonexistent/project", "/bin/true"].map(OsString::from);
        assert_eq!(run_in(args.into_iter()), CANNOT_RUN);
        assert_eq!(run_in(std::iter::empty()), CANNOT_RUN);
    }

    #[test]
    fn only_the_ccs_binary_starts_children_through_itself() {
        // A test harness is not ccs: it would take `__run-in` for a test filter.
        assert!(through_launcher(Path::new("/tmp"), Path::new("/bin/true")).is_none());
    }
}
