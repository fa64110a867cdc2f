//! Probing the claude CLI (issue 11): `claude --version` and `claude --help`, run once per
//! executable and cached, so a run never passes a flag the installed CLI lacks.
//!
//! The probe runs the CLI exactly as a run does (same program lookup, the same environment on
//! top of the server's: PATH with `nvmBin` first, and `claudeEnv`; never a shell), each call with
//! a timeout after which its process group is killed. The cache holds one entry, for the current
//! `claudePath` and environment; it is stale once either changes (a config reload) or once the
//! executable it resolved to changes on disk (another path, mtime or size: an `npm update`), and
//! the next run (or `refresh`) probes again. `/health` only ever reads the cache.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::caps::Caps;
use super::{process, Cancel, Invocation, SpawnError};

/// How long each of `--version` and `--help` may take (the JS CLIs take about 1 s on 2 cores).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The CLI as a run would start it: `claudePath` and the environment ccs adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub program: String,
    pub env: Vec<(String, String)>,
}

/// The executable a target resolved to, as it was on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
}

/// `None` when the program cannot be found (the probe then fails, and says so).
fn stamp(target: &Target) -> Option<Stamp> {
    let found = process::resolve(&target.program, &target.env).ok()?;
    let path = fs::canonicalize(&found).unwrap_or(found);
    let meta = fs::metadata(&path).ok()?;
    Some(Stamp { path, modified: meta.modified().ok(), len: meta.len() })
}

/// The end of one probe.
#[derive(Debug, Clone)]
pub struct Probed {
    /// What the CLI accepts, or why that could not be learned.
    pub caps: Result<Caps, String>,
    /// Both calls together.
    pub took: Duration,
}

/// Runs `--version`, then `--help`, each within `timeout`; `cancel` kills them (a stop).
pub fn probe(target: &Target, timeout: Duration, cancel: &Cancel) -> Probed {
    let started = Instant::now();
    let run = || {
        call(target, "--version", timeout, cancel)
            .and_then(|version| Ok((version, call(target, "--help", timeout, cancel)?)))
            .and_then(|(version, help)| Caps::from_output(&version, &help))
    };
    // A panic must not leave the cache `Running` for good (every run would wait on it).
    let caps = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err("the probe of the claude CLI failed with an internal error".to_string()));
    Probed { caps, took: started.elapsed() }
}

/// One call of the CLI with a single option; its stdout, or what went wrong.
fn call(target: &Target, flag: &str, timeout: Duration, cancel: &Cancel) -> Result<String, String> {
    let invocation = Invocation {
        program: target.program.clone(),
        args: vec![flag.to_string()],
        prompt: String::new(), // stdin is closed at once
        cwd: PathBuf::from("/"),
        env: target.env.clone(),
        timeout,
        kill_grace: Duration::from_millis(500),
        lines: None,
    };
    let raw = process::execute(&invocation, cancel, &mut |_| true)
        .map_err(|source| SpawnError { program: target.program.clone(), source }.to_string())?;
    let program = &target.program;
    if raw.cancelled {
        return Err(format!("`{program} {flag}` was stopped: the run that waited for it was cancelled"));
    }
    if raw.timed_out {
        return Err(format!("`{program} {flag}` did not finish within {} s and was killed", timeout.as_secs_f64()));
    }
    let stdout = String::from_utf8_lossy(&raw.stdout).into_owned();
    if raw.exit_code != Some(0) {
        let how = match (raw.exit_code, raw.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "failed".to_string(),
        };
        let said: String = raw.stderr_tail.trim().chars().take(300).collect();
        return Err(format!("`{program} {flag}` {how}: {said}"));
    }
    Ok(stdout)
}

/// What `/health` shows of the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `claudePath` as configured.
    pub path: String,
    pub version: Option<String>,
    pub error: Option<String>,
    /// A probe is under way (version and error are then those of no probe yet).
    pub probing: bool,
    pub probe_ms: Option<u64>,
}

/// The cache of probes: one entry, for the CLI the config names now.
#[derive(Default)]
pub struct Probes {
    slot: Mutex<Slot>,
    changed: Condvar,
}

#[derive(Default)]
struct Slot {
    target: Option<Target>,
    stamp: Option<Stamp>,
    state: State,
}

#[derive(Default)]
enum State {
    #[default]
    Empty,
    Running,
    Done(Arc<Probed>),
}

impl Slot {
    fn holds(&self, target: &Target, stamp: &Option<Stamp>) -> bool {
        self.target.as_ref() == Some(target) && &self.stamp == stamp && !matches!(self.state, State::Empty)
    }
}

impl Probes {
    /// Probes `target` on a thread of its own, unless the cache has it or is getting it already.
    /// At start-up and after a config reload; never blocks.
    pub fn refresh(self: &Arc<Self>, target: Target) {
        let stamp = stamp(&target);
        if !self.claim(&target, &stamp) {
            return;
        }
        let me = self.clone();
        let (t, s) = (target.clone(), stamp.clone());
        let spawned = std::thread::Builder::new()
            .name("cli-probe".into())
            .spawn(move || me.finish(&t, &s, probe(&t, PROBE_TIMEOUT, &Cancel::default())));
        if let Err(e) = spawned {
            let failed = Probed { caps: Err(format!("cannot start the probe thread: {e}")), took: Duration::ZERO };
            self.finish(&target, &stamp, failed);
        }
    }

    /// What a run of `target` may use: the cached probe, or the end of the one under way
    /// (waited for, bounded), or a probe made now on this thread. A failed probe is returned
    /// too; the run then goes ahead as before probing existed (and the CLI's own error, such
    /// as a missing executable, is what the caller sees). `cancel` (the run's: a stop or a
    /// DELETE) ends the wait, and the probe made here, at once.
    pub fn get(&self, target: &Target, cancel: &Cancel) -> Arc<Probed> {
        let stamp = stamp(target);
        // Both calls at their timeout, each with its kill grace and pipe drain, and some margin.
        let deadline = Instant::now() + PROBE_TIMEOUT * 2 + Duration::from_secs(10);
        let mut slot = self.slot.lock();
        loop {
            if !slot.holds(target, &stamp) {
                break;
            }
            match &slot.state {
                State::Done(probed) => return probed.clone(),
                State::Running if cancel.is_cancelled() => {
                    let stopped = "the run was cancelled while the claude CLI was being probed".to_string();
                    return Arc::new(Probed { caps: Err(stopped), took: Duration::ZERO });
                }
                State::Running if Instant::now() < deadline => {
                    // In slices, so a cancel is seen within one.
                    let slice = (Instant::now() + Duration::from_millis(100)).min(deadline);
                    self.changed.wait_until(&mut slot, slice);
                }
                _ => {
                    let waited = "the probe of the claude CLI did not finish in time".to_string();
                    return Arc::new(Probed { caps: Err(waited), took: Duration::ZERO });
                }
            }
        }
        *slot = Slot { target: Some(target.clone()), stamp: stamp.clone(), state: State::Running };
        drop(slot);
        let probed = probe(target, PROBE_TIMEOUT, cancel);
        if cancel.is_cancelled() {
            // Cut short: not what the CLI accepts; the next run probes again.
            self.forget(target, &stamp);
            return Arc::new(probed);
        }
        self.finish(target, &stamp, probed)
    }

    /// Empties the slot of a probe that was cut short, and wakes those who wait for it.
    fn forget(&self, target: &Target, stamp: &Option<Stamp>) {
        let mut slot = self.slot.lock();
        if slot.target.as_ref() == Some(target) && &slot.stamp == stamp {
            slot.state = State::Empty;
        }
        drop(slot);
        self.changed.notify_all();
    }

    /// The cached probe of `target`, if it is done and still current; never waits or probes.
    pub fn cached(&self, target: &Target) -> Option<Arc<Probed>> {
        let stamp = stamp(target);
        let slot = self.slot.lock();
        match &slot.state {
            State::Done(probed) if slot.holds(target, &stamp) => Some(probed.clone()),
            _ => None,
        }
    }

    /// The CLI as last probed, for `/health`; never waits or probes.
    pub fn status(&self, configured: &str) -> Status {
        let slot = self.slot.lock();
        let mut status =
            Status { path: configured.to_string(), version: None, error: None, probing: false, probe_ms: None };
        if slot.target.as_ref().is_none_or(|t| t.program != configured) {
            status.probing = true; // a reload changed claudePath; its probe starts now
            return status;
        }
        match &slot.state {
            State::Empty | State::Running => status.probing = true,
            State::Done(probed) => {
                status.probe_ms = Some(probed.took.as_millis() as u64);
                match &probed.caps {
                    Ok(caps) => status.version = Some(caps.version.to_string()),
                    Err(e) => status.error = Some(e.clone()),
                }
            }
        }
        status
    }

    /// Takes the slot for a new probe of `target`; false when it has (or is getting) that one.
    fn claim(&self, target: &Target, stamp: &Option<Stamp>) -> bool {
        let mut slot = self.slot.lock();
        if slot.holds(target, stamp) {
            return false;
        }
        *slot = Slot { target: Some(target.clone()), stamp: stamp.clone(), state: State::Running };
        true
    }

    /// Stores a probe's end (unless the slot moved on to another CLI meanwhile) and wakes waiters.
    fn finish(&self, target: &Target, stamp: &Option<Stamp>, probed: Probed) -> Arc<Probed> {
        log_probe(target, &probed);
        let probed = Arc::new(probed);
        let mut slot = self.slot.lock();
        if slot.target.as_ref() == Some(target) && &slot.stamp == stamp {
            slot.state = State::Done(probed.clone());
        }
        drop(slot);
        self.changed.notify_all();
        probed
    }
}

fn log_probe(target: &Target, probed: &Probed) {
    let took = probed.took.as_secs_f64();
    match &probed.caps {
        Ok(caps) => {
            let budget = if caps.supports("--max-budget-usd") {
                ""
            } else {
                "; it has no --max-budget-usd, so ccs checks budgets itself from the costs it reports"
            };
            log::info!("claude CLI {} is version {} (probed in {took:.2} s){budget}", target.program, caps.version);
        }
        Err(e) => log::warn!(
            "claude CLI {}: its version and options could not be probed ({e}; {took:.2} s); runs pass their options unchecked",
            target.program
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn target(program: String) -> Target {
        Target { program, env: vec![("CCS_PROBE_TEST".into(), "1".into())] }
    }

    #[test]
    fn a_cli_that_hangs_is_killed_at_the_timeout() {
        let dir = TempDir::new("probe-hang");
        let program = script(dir.path(), "claude", "sleep 30");
        let started = Instant::now();
        let probed = probe(&target(program), Duration::from_millis(300), &Cancel::default());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let err = probed.caps.unwrap_err();
        assert!(err.contains("--version` did not finish within 0.3 s and was killed"), "{err}");
    }

    #[test]
    fn a_missing_cli_is_an_error_that_names_claude_path() {
        let probed = probe(&target("/nonexistent/claude".into()), PROBE_TIMEOUT, &Cancel::default());
        let err = probed.caps.unwrap_err();
        assert!(err.contains("claudePath is \"/nonexistent/claude\""), "{err}");
    }

    #[test]
    fn the_environment_reaches_the_probe_and_a_failure_quotes_stderr() {
        let dir = TempDir::new("probe-env");
        let body = "[ \"$CCS_PROBE_TEST\" = 1 ] || { echo 'no env' >&2; exit 3; }\n\
                    case \"$1\" in --version) echo '1.0.128 (Claude Code)';; \
                    *) echo 'error: unknown option' >&2; exit 1;; esac";
        let program = script(dir.path(), "claude", body);
        let err = probe(&target(program.clone()), PROBE_TIMEOUT, &Cancel::default()).caps.unwrap_err();
        assert!(err.contains("--help` exited with code 1: error: unknown option"), "{err}");
        let bare = Target { program, env: Vec::new() };
        assert!(probe(&bare, PROBE_TIMEOUT, &Cancel::default())
            .caps
            .unwrap_err()
            .contains("exited with code 3: no env"));
    }

    #[test]
    fn a_cancelled_run_stops_its_probe_at_once_and_leaves_nothing_cached() {
        let dir = TempDir::new("probe-cancel");
        let program = script(dir.path(), "claude", "sleep 5; echo '1.0.128 (Claude Code)'");
        let probes = Arc::new(Probes::default());
        let t = target(program.clone());
        let cancel = Cancel::default();
        let stopper = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stopper.interrupt();
        });
        let started = Instant::now();
        let probed = probes.get(&t, &cancel);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(probed.caps.as_ref().unwrap_err().contains("was stopped"), "{:?}", probed.caps);
        assert!(probes.cached(&t).is_none(), "a probe cut short is not what the CLI accepts");
    }

    #[test]
    fn the_cache_probes_again_when_the_executable_changes() {
        let dir = TempDir::new("probe-cache");
        let help = "echo '  -p, --print  Print'";
        let body = |v: &str| format!("case \"$1\" in --version) echo '{v} (Claude Code)';; *) {help};; esac");
        let program = script(dir.path(), "claude", &body("1.0.128"));
        let probes = Arc::new(Probes::default());
        let t = target(program.clone());
        assert!(probes.status(&program).probing);
        assert!(probes.cached(&t).is_none());
        probes.refresh(t.clone());
        let first = probes.get(&t, &Cancel::default());
        assert_eq!(first.caps.as_ref().unwrap().version.to_string(), "1.0.128");
        assert!(Arc::ptr_eq(&first, &probes.get(&t, &Cancel::default())), "a second run uses the cache");
        assert_eq!(probes.status(&program).version.as_deref(), Some("1.0.128"));
        // An upgrade in place: another size (and mtime).
        script(dir.path(), "claude", &format!("{}\n# upgraded", body("2.1.332")));
        assert!(probes.cached(&t).is_none(), "the stamp changed");
        assert_eq!(probes.get(&t, &Cancel::default()).caps.as_ref().unwrap().version.to_string(), "2.1.332");
        // Another environment is another target.
        let other = Target { program: program.clone(), env: Vec::new() };
        assert!(probes.cached(&other).is_none());
    }
}
