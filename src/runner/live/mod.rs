//! Live CLI processes (SPEC 13): a turn's CLI stays alive after its answer, owned by its
//! session, and takes the session's next turn on stdin (stream-json input, CLI.md) instead of a
//! cold `--resume` start; spares are started ahead for the default options and taken by new
//! sessions. `cli` is one process and its turns, `pool` holds them (bounded, least recently
//! used retired first), and `run` gives a turn a process: the session's own when it was started
//! the same way (`Start`) and its budget `fits`, else a new one (or, with no room, `None`: the
//! caller runs a one-off process as without live processes).
//!
//! From outside a turn is a cold run: the same `RunResult`, the cost of this turn alone (the
//! CLI reports a total over the process's life), the same timeout, cancel and kill of the
//! group. A prompt is written once: a process found dead before the write is replaced (the
//! turn runs cold, nothing lost); one that dies after is the turn's failure.
//!
//! Budgets: a live process checks `--max-budget-usd` against everything it spent since it
//! started (measured), so a turn's cap cannot be handed to it per turn. A process takes a turn
//! while what it has left is at least the turn's cap (never stricter than a cold run) and at most
//! the turn's `ceiling`: `HEADROOM` times the per-turn cap, and never more than what the
//! session's own budget has left (so a session's budget is never overrun); it is started with
//! that ceiling.
//! ccs checks each live turn's cost against the cap when it ends (`budget::enforce`).

pub mod cli;
pub mod pool;

use std::sync::Arc;
use std::time::Duration;

pub use cli::{LiveCli, Start, TurnEnd};
pub use pool::{Lease, Limits, Pool, SPARES_PAUSE};

use super::caps::Version;
use super::{argv, budget, interpret, Cancel, LineSink, OnStart, RunResult, SessionFlag, SpawnError};
use crate::config::{Amount, LiveCli as LiveConfig};
use crate::money;

/// The memory a live process is reckoned at when sizing the pool (`auto`): measured idle RSS is
/// about 160 MB (2.1.x), and a turn takes it to 200-290 MB.
pub const RESERVED_PER_PROCESS: u64 = 256 << 20;
/// `auto` spares: one when at least this much memory is available at start.
pub const SPARE_NEEDS_AVAILABLE: u64 = 1536 << 20;
/// The environment entry that marks a live process (and its group) as a session's:
/// `CCS_SESSION_ID=<id>`; a start after a crash kills a recorded group only if it carries it.
pub const SESSION_ID_ENV: &str = "CCS_SESSION_ID";

/// The pool's limits from the config: `auto` spares are 1 with `SPARE_NEEDS_AVAILABLE` of
/// memory available (else 0); `auto` max processes are what half the available memory holds at
/// `RESERVED_PER_PROCESS` each, never more than `concurrency` + spares. Disabled: nothing.
pub fn limits(config: &LiveConfig, concurrency: usize, mem_available: Option<u64>) -> Limits {
    let available = mem_available.unwrap_or(0);
    let spares = match config.spares {
        Amount::Count(n) => n,
        Amount::Auto => usize::from(available >= SPARE_NEEDS_AVAILABLE),
    };
    let max = match config.max_processes {
        Amount::Count(n) => n,
        Amount::Auto => ((available / 2 / RESERVED_PER_PROCESS) as usize).min(concurrency + spares),
    };
    if !config.enabled {
        return Limits { keep: Duration::ZERO, spares: 0, max: 0 };
    }
    Limits { keep: Duration::from_millis(config.keep_ms), spares: spares.min(max), max }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether spares can be started for this CLI version: a spare is started with `--session-id`
/// and may end before the session that took it gets its first answer (other options, idle too
/// long, the cap, a config change), so its id must stay free until a message comes. Measured:
/// 1.0.128, 2.1.197 and 2.1.332 write a session with its first message; 2.0.77 writes its
/// empty transcript at start, after which `--session-id` says "already in use" and `--resume`
/// "No conversation found", and the session that took the spare could never start.
pub fn spares_work_with(version: Version) -> bool {
    !(version.0 == 2 && version.1 == 0)
}

/// How far past its cap a live turn may spend before the CLI stops it (a cold run stops after
/// the API call that crosses the cap): the more, the longer a process serves its session before
/// its budget runs out and a new one starts; 1.25 bounds the overrun to a quarter of the cap
/// and still lets a $10-cap process answer $2.50 of turns.
pub const HEADROOM: f64 = 1.25;

/// A turn's budget: its cap, and the most a process that takes it may have left (`ceiling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnBudget {
    pub cap: f64,
    pub ceiling: f64,
}

impl TurnBudget {
    /// For a turn capped at `cap`: the lesser of `per_turn` (the request's or the config's) and
    /// `session_left` (what the session's own budget has left, if it has one). A process may
    /// have left up to `HEADROOM` times `per_turn`, and never more than `session_left`.
    pub fn new(cap: f64, per_turn: f64, session_left: Option<f64>) -> TurnBudget {
        let most = per_turn * HEADROOM;
        let ceiling = session_left.map_or(most, |left| left.min(most)).max(cap);
        TurnBudget { cap, ceiling }
    }

    /// The `--max-budget-usd` a new process starts with for this turn.
    pub fn start_value(&self) -> f64 {
        self.ceiling
    }
}

/// Whether a process started with `--max-budget-usd process` (none: the CLI has no such flag)
/// that has spent `spent` can take a turn with `turn`'s budget: what it has left is at least the
/// turn's cap (no stricter than a cold run) and at most its ceiling (a turn spends at most
/// `HEADROOM` times its cap before the CLI stops it, and never more than its session has left).
pub fn fits(process: Option<f64>, spent: f64, turn: Option<TurnBudget>) -> bool {
    let (process, turn) = match (process, turn) {
        (None, None) => return true,
        (Some(process), Some(turn)) => (process, turn),
        _ => return false,
    };
    let left = money::to_micros(process).saturating_sub(money::to_micros(spent));
    (money::to_micros(turn.cap)..=money::to_micros(turn.ceiling)).contains(&left)
}

/// One turn for the pool.
#[derive(Debug, Clone)]
pub struct Turn {
    pub start: Arc<Start>,
    pub session_id: String,
    /// How a new process joins the session: `--session-id` for its first turn, else `--resume`.
    pub flag: SessionFlag,
    /// `None` when the CLI has no `--max-budget-usd` (ccs then checks after the run).
    pub budget: Option<TurnBudget>,
    pub prompt: String,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub lines: Option<LineSink>,
    /// Environment entries that mark a new process as this turn's (task and session ids) and
    /// this server's (`leftovers::server_marker`).
    pub markers: Vec<(String, String)>,
}

/// Runs `turn` on a live process; `None` when the pool has no room (every process busy at its
/// cap, or live processes are off): the caller runs a one-off process.
pub fn run(pool: &Pool, turn: &Turn, cancel: &Cancel, on_start: OnStart) -> Option<Result<RunResult, SpawnError>> {
    // At most twice: the session's idle process found dead before the write, then a new one.
    for _ in 0..2 {
        let fits_turn = |cli: &mut LiveCli| *cli.start == *turn.start && fits(cli.budget, cli.spent, turn.budget);
        let (mut cli, busy, started_now) = match pool.lease(&turn.session_id, fits_turn) {
            Lease::Warm(cli, busy) => (cli, busy, false),
            Lease::Room(busy) => match spawn(pool, turn) {
                Ok(cli) => (cli, busy, true),
                Err(source) => return Some(Err(SpawnError { program: turn.start.program.clone(), source })),
            },
            Lease::Full => return None,
        };
        let end = cli.turn(&turn.prompt, turn.timeout, turn.kill_grace, cancel, turn.lines.as_ref(), &mut *on_start);
        let raw = match end {
            TurnEnd::Answered(raw) => raw,
            TurnEnd::Ended(raw) => return Some(Ok(interpret(&raw, turn.timeout))),
            TurnEnd::NotUsable => {
                log::info!(
                    "live claude process {} of session {} had ended; starting another",
                    cli.pgid,
                    turn.session_id
                );
                drop(busy);
                pool.retire(cli); // tracked, so a stop waits for it
                continue;
            }
            TurnEnd::CalledOff => {
                if started_now {
                    // As a cold run's: killed before its prompt, so it holds no session id (a
                    // 2.0.x CLI takes it at start) and nothing lingers for a turn that ended.
                    cli.kill();
                    drop(busy);
                } else {
                    pool.give_back(cli, busy);
                }
                let source =
                    std::io::Error::new(std::io::ErrorKind::Interrupted, "the run was called off as it started");
                return Some(Err(SpawnError { program: turn.start.program.clone(), source }));
            }
        };
        let mut result = interpret(&raw, turn.timeout);
        // The process lives on, so it has no exit code: the turn gets the one a one-shot run
        // exits with for this result (CLI.md: 1 for an error result, else 0).
        result.exit_code = result.report.as_ref().map(|r| i32::from(r.is_error));
        if let Some(report) = result.report.as_mut() {
            (report.cost_usd, cli.spent) = turn_cost(cli.spent, report.cost_usd);
        }
        if let Some(budget) = turn.budget {
            let why = "a live claude process checks its budget over its whole life, so ccs checked this turn's cost \
                       when it ended";
            budget::enforce(&mut result, budget.cap, why);
        }
        pool.give_back(cli, busy);
        return Some(Ok(result));
    }
    None
}

/// A turn's own cost from the process's running total as of its result, and what the process
/// has spent since: the total never goes down (a result without one, read as 0, must not make
/// the next turn pay for every earlier one; what it did not report comes with the next total).
fn turn_cost(spent: f64, total: f64) -> (f64, f64) {
    let (spent, total) = (money::to_micros(spent), money::to_micros(total));
    (money::to_usd(total.saturating_sub(spent)), money::to_usd(spent.max(total)))
}

/// Starts a process for `turn` (its session flag, budget and markers).
fn spawn(pool: &Pool, turn: &Turn) -> std::io::Result<LiveCli> {
    let flag_args = argv::session_args(&turn.flag);
    let budget = turn.budget.map(|b| b.start_value());
    let cli =
        LiveCli::spawn(turn.start.clone(), &turn.session_id, &flag_args, budget, &turn.markers, pool.generation())?;
    log::info!("live claude process {} started for session {} ({})", cli.pgid, turn.session_id, flag_args.join(" "));
    Ok(cli)
}

/// Starts a spare: a process for `start` with a session id of its own, which the session that
/// claims it takes; `server` is the server's marker (`leftovers::server_marker`).
pub fn spawn_spare(
    pool: &Pool,
    start: Arc<Start>,
    budget: Option<TurnBudget>,
    server: (String, String),
) -> std::io::Result<LiveCli> {
    let session_id = uuid::Uuid::new_v4().to_string();
    let markers = vec![(SESSION_ID_ENV.to_string(), session_id.clone()), server];
    let flag_args = argv::session_args(&SessionFlag::Create(session_id.clone()));
    let mut spare =
        LiveCli::spawn(start, &session_id, &flag_args, budget.map(|b| b.start_value()), &markers, pool.generation())?;
    // Started ahead: found ended when its first turn comes, it is replaced (the turn runs on a
    // new process, nothing lost), as an idle one would be.
    spare.started_for_turn = false;
    Ok(spare)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enabled: bool, spares: Amount, max: Amount) -> LiveConfig {
        LiveConfig { enabled, keep_ms: 1000, spares, max_processes: max }
    }

    #[test]
    fn auto_sizes_follow_the_memory_available() {
        let auto = config(true, Amount::Auto, Amount::Auto);
        let gib = 1u64 << 30;
        assert_eq!(limits(&auto, 3, Some(24 * gib)), Limits { keep: Duration::from_secs(1), spares: 1, max: 4 });
        // 1 GiB: no spare, two processes of 256 MiB in half of it.
        assert_eq!(limits(&auto, 3, Some(gib)).spares, 0);
        assert_eq!(limits(&auto, 3, Some(gib)).max, 2);
        assert_eq!(limits(&auto, 3, None).max, 0, "memory unknown: no live processes");
        let fixed = config(true, Amount::Count(3), Amount::Count(2));
        assert_eq!(limits(&fixed, 8, Some(gib)).spares, 2, "never more spares than processes");
        assert_eq!(limits(&config(false, Amount::Count(3), Amount::Count(9)), 3, Some(24 * gib)).max, 0);
    }

    #[test]
    fn a_turn_costs_what_the_running_total_grew_by_and_the_total_never_goes_down() {
        assert_eq!(turn_cost(0.0, 0.0125), (0.0125, 0.0125));
        assert_eq!(turn_cost(0.0125, 0.0375), (0.025, 0.0375));
        // An API error: the total did not move.
        assert_eq!(turn_cost(0.0375, 0.0375), (0.0, 0.0375));
        // A result without a total (read as 0): nothing now, and the next turn pays its own.
        assert_eq!(turn_cost(0.0375, 0.0), (0.0, 0.0375));
        assert_eq!(turn_cost(0.0375, 0.05), (0.0125, 0.05));
    }

    #[test]
    fn no_spares_for_a_cli_that_takes_its_session_id_at_start() {
        assert!(!spares_work_with(Version(2, 0, 77)));
        assert!(spares_work_with(Version(1, 0, 128)));
        assert!(spares_work_with(Version(2, 1, 197)));
        assert!(spares_work_with(Version(3, 0, 0)));
    }

    #[test]
    fn a_budget_fits_when_the_process_is_never_stricter_than_a_cold_run_nor_looser_than_its_ceiling() {
        // No session budget: a $10 cap, a process started with $12.50; it takes turns while
        // $10 to $12.50 is left.
        assert_eq!(TurnBudget::new(10.0, 10.0, None).start_value(), 12.5);
        let ten = Some(TurnBudget::new(10.0, 10.0, None));
        assert!(fits(Some(12.5), 0.0, ten));
        assert!(fits(Some(12.5), 2.5, ten));
        assert!(!fits(Some(12.5), 2.51, ten));
        let five = Some(TurnBudget::new(5.0, 5.0, None));
        assert!(!fits(Some(12.5), 0.0, five), "$12.50 left would let a $5 turn spend $12.50");
        assert!(fits(Some(12.5), 6.5, five));
        // A session with $50 left and a $10 cap per turn: $10 to $12.50 left, as without.
        let budget = |left: f64| TurnBudget::new(left.min(10.0), 10.0, Some(left));
        let session = |left: f64| Some(budget(left));
        assert_eq!(budget(50.0).start_value(), 12.5);
        assert!(fits(Some(12.5), 1.0, session(49.0)));
        // Near its end: never more than the session has left.
        assert!(!fits(Some(12.5), 1.0, session(11.0)));
        assert_eq!(budget(11.0).start_value(), 11.0);
        // Less than a cap left: exactly what is left.
        assert_eq!(budget(0.75).start_value(), 0.75);
        assert!(fits(Some(1.0), 0.25, session(0.75)));
        assert!(!fits(Some(1.0), 0.25, session(0.5)));
        // A CLI without --max-budget-usd.
        assert!(fits(None, 3.0, None));
        assert!(!fits(None, 0.0, ten));
    }
}
