//! What a server that died (`kill -9`, a crash, the OOM killer) left running. Nothing ties a
//! CLI to the server's life, so its process group runs on; the task records the group id, and
//! the next start kills it before it marks the task `interrupted`.
//!
//! A pid, and so a group id, can be reused once its processes are gone, so a recorded group is
//! killed only while one of its processes still carries the task's marker
//! (`CCS_TASK_ID=<id>` in `/proc/<pid>/environ`, which every process of the CLI inherits; a live
//! process, started by an earlier turn, carries its session's `CCS_SESSION_ID=<id>` too).
//! Processes of other users cannot be read, and are never taken for ours.
//!
//! Live CLI processes (SPEC 13) outlive their turns: an idle one ends by itself when a killed
//! server's end of its stdin closes, but what it started (a tool's background process, ...)
//! would run on, and no task records its group. So every process of a live CLI carries
//! `CCS_LIVE_SERVER=<server pid>:<data folder>`, and a start kills the marked processes of a
//! server of the same data folder that no longer runs (`kill_live_leftovers`).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::TASK_ID_ENV;
use crate::sys;

/// How long to wait for the killed processes to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// Kills the process group `pgid` if it is still the CLI of task `task_id` (or, a live process,
/// of its session `session_id`: `CCS_SESSION_ID=<id>`), and waits (bounded) until it is gone.
/// Returns the pids it had (empty: nothing of ours was left).
pub fn kill_if_ours(pgid: i32, task_id: &str, session_id: Option<&str>) -> io::Result<Vec<i32>> {
    let members = group_members(pgid)?;
    let mut markers = vec![format!("{TASK_ID_ENV}={task_id}")];
    markers.extend(session_id.map(|id| format!("{}={id}", super::live::SESSION_ID_ENV)));
    if !members.iter().any(|pid| markers.iter().any(|marker| carries(*pid, marker))) {
        return Ok(Vec::new());
    }
    sys::signal_group(pgid, sys::SIGKILL)?;
    let deadline = Instant::now() + GONE_WITHIN;
    while group_members(pgid).is_ok_and(|left| !left.is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(members)
}

/// The environment entry that marks every process of a live CLI as a server's:
/// `CCS_LIVE_SERVER=<server pid>:<data folder>` (`server_marker`).
pub const LIVE_SERVER_ENV: &str = "CCS_LIVE_SERVER";

/// The marker of this server's live CLI processes.
pub fn server_marker(data_dir: &Path) -> (String, String) {
    (LIVE_SERVER_ENV.to_string(), format!("{}:{}", std::process::id(), data_dir.display()))
}

/// Kills what the live CLI processes of a server of `data_dir` that no longer runs left behind:
/// every process carrying its `server_marker` (the pid of a server that is not running, and not
/// us), and the process groups those lead; waits (bounded) until they are gone. Returns their pids.
pub fn kill_live_leftovers(data_dir: &Path) -> io::Result<Vec<i32>> {
    let me = std::process::id() as i32;
    let own_group = fs::read_to_string("/proc/self/stat").ok().and_then(|s| stat_of(&s)).map(|s| s.group);
    let prefix = format!("{LIVE_SERVER_ENV}=");
    let dir = data_dir.display().to_string();
    let mut found: Vec<(i32, i32)> = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else { continue };
        let Some(value) = environ.split(|b| *b == 0).find_map(|e| e.strip_prefix(prefix.as_bytes())) else { continue };
        let Some((server, of)) = std::str::from_utf8(value).ok().and_then(|v| v.split_once(':')) else { continue };
        let Ok(server) = server.parse::<i32>() else { continue };
        if of != dir || server == me || is_running(server) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if let Some(stat) = stat_of(&stat).filter(|s| s.state != "Z") {
            found.push((pid, stat.group));
        }
    }
    for &(pid, group) in &found {
        // A marked leader's group is the one ccs made for that CLI; a marked process elsewhere
        // goes alone (it may have joined a group that is not ours).
        if pid == group && Some(group) != own_group {
            let _ = sys::signal_group(group, sys::SIGKILL);
        }
        let _ = sys::signal_process(pid, sys::SIGKILL);
    }
    let deadline = Instant::now() + GONE_WITHIN;
    while found.iter().any(|(pid, _)| is_running(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(found.into_iter().map(|(pid, _)| pid).collect())
}

/// Whether `pid` is a process that has not ended (a zombie has).
fn is_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat_of(&stat).is_some_and(|s| s.state != "Z"))
}

/// The live (not zombie) processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> io::Result<Vec<i32>> {
    Ok(running()?.into_iter().filter(|(_, stat)| stat.group == pgid).map(|(pid, _)| pid).collect())
}

/// The resident memory of every process in the process groups `groups` (pages of 4 KiB).
pub(crate) fn groups_rss(groups: &[i32]) -> u64 {
    if groups.is_empty() {
        return 0;
    }
    let Ok(all) = running() else { return 0 };
    all.into_iter().filter(|(_, stat)| groups.contains(&stat.group)).map(|(_, stat)| stat.rss_pages * 4096).sum()
}

/// Every process that has not ended (zombies left out), with what its `stat` says; one that
/// ends meanwhile is left out too.
fn running() -> io::Result<Vec<(i32, Stat)>> {
    Ok(fs::read_dir("/proc")?
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = stat_of(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
            (stat.state != "Z").then_some((pid, stat))
        })
        .collect())
}

/// What ccs reads of a `/proc/<pid>/stat` line.
#[derive(Debug, PartialEq)]
struct Stat {
    state: String,
    group: i32,
    rss_pages: u64,
}

/// A `/proc/<pid>/stat` line: `pid (comm) state ppid pgrp ... rss ...` (rss is field 24), where
/// comm may hold spaces and parentheses (so the fields start after the last `)`).
fn stat_of(line: &str) -> Option<Stat> {
    let fields: Vec<&str> = line.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.to_string(),
        group: fields.get(2)?.parse().ok()?,
        rss_pages: fields.get(21).and_then(|r| r.parse().ok()).unwrap_or(0),
    })
}

/// Whether the environment of `pid` holds exactly the entry `marker`.
fn carries(pid: i32, marker: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|b| *b == 0).any(|entry| entry == marker.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    fn sleeper(marker: Option<&str>) -> Child {
        let mut command = Command::new("sh");
        // The group: sh and a sleep it starts, which outlives it unless the group is killed.
        command.args(["-c", "sleep 30 & wait"]).process_group(0);
        if let Some(task_id) = marker {
            command.env(TASK_ID_ENV, task_id);
        }
        command.spawn().expect("sh starts")
    }

    fn wait_for_members(pgid: i32, n: usize) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let members = group_members(pgid).unwrap();
            if members.len() >= n || Instant::now() > deadline {
                return members;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_group_that_carries_the_tasks_marker_is_killed_whole() {
        let mut child = sleeper(Some("task-1"));
        let pgid = child.id() as i32;
        assert_eq!(wait_for_members(pgid, 2).len(), 2, "sh and its sleep");
        let killed = kill_if_ours(pgid, "task-1", None).unwrap();
        assert_eq!(killed.len(), 2, "{killed:?}");
        let _ = child.wait();
        assert!(group_members(pgid).unwrap().is_empty(), "a process of the group survived");
    }

    #[test]
    fn a_recorded_group_without_the_marker_is_left_alone() {
        for marker in [None, Some("another-task")] {
            let mut child = sleeper(marker);
            let pgid = child.id() as i32;
            assert_eq!(wait_for_members(pgid, 2).len(), 2);
            assert!(kill_if_ours(pgid, "task-1", None).unwrap().is_empty());
            std::thread::sleep(Duration::from_millis(50));
            assert!(child.try_wait().unwrap().is_none(), "a group that is not ours was killed");
            assert_eq!(group_members(pgid).unwrap().len(), 2);
            sys::signal_group(pgid, sys::SIGKILL).unwrap();
            let _ = child.wait();
        }
    }

    #[test]
    fn the_marked_processes_of_a_server_that_is_gone_are_killed_and_no_others() {
        // A pid that ran and ended: the dead server.
        let mut gone = Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let dir = std::env::temp_dir().join(format!("ccs-leftovers-{}", uuid::Uuid::new_v4()));
        let marked = |value: String| {
            let mut command = Command::new("sh");
            command.args(["-c", "sleep 30 & wait"]).process_group(0).env(LIVE_SERVER_ENV, value);
            command.spawn().expect("sh starts")
        };
        let mut left = marked(format!("{dead}:{}", dir.display()));
        let mut ours = marked(format!("{}:{}", std::process::id(), dir.display()));
        let mut elsewhere = marked(format!("{dead}:{}/other", dir.display()));
        for child in [&left, &ours, &elsewhere] {
            assert_eq!(wait_for_members(child.id() as i32, 2).len(), 2);
        }
        let killed = kill_live_leftovers(&dir).unwrap();
        assert_eq!(killed.len(), 2, "sh and its sleep: {killed:?}");
        let _ = left.wait();
        assert!(group_members(left.id() as i32).unwrap().is_empty(), "a process of the dead server's CLI survived");
        for child in [&mut ours, &mut elsewhere] {
            assert!(child.try_wait().unwrap().is_none(), "a process of a running server or another folder was killed");
            sys::signal_group(child.id() as i32, sys::SIGKILL).unwrap();
            let _ = child.wait();
        }
    }

    #[test]
    fn stat_lines_with_odd_command_names_are_read() {
        let stat =
            stat_of("42 (a (b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 9 1000 250 18446744073709551615");
        assert_eq!(stat, Some(Stat { state: "S".into(), group: 42, rss_pages: 250 }));
        assert_eq!(stat_of("garbage"), None);
    }
}
