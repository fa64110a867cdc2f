//! The tasks' side of live CLI processes (SPEC 13, `runner::live`): what a turn's process must
//! have been started with (`turn_for`), spares for the default options (`top_up_spares`, and a
//! new session of a plain request taking one: `claim_spare`), and the pool's limits from the
//! config, retiring every idle process when the way the CLI starts changed (`configure`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::app::App;
use crate::config::Config;
use crate::model::{Session, SessionStatus, TurnRequest};
use crate::runner::caps::Caps;
use crate::runner::live::{self, Start, Turn, TurnBudget, SPARES_PAUSE};
use crate::runner::{argv, leftovers, CliArgs, SessionFlag, TASK_ID_ENV};
use crate::{cli_support, money, project};

use super::execution::cli_args;

/// Whether the missing default folder was reported.
static FOLDER_WARNED: AtomicBool = AtomicBool::new(false);

/// The live turn for a task, or `None` when it runs as a one-off process (live processes off,
/// or a CLI without stream-json input).
pub(crate) struct TurnPlan<'a> {
    pub config: &'a Config,
    pub task_id: &'a str,
    pub session: &'a Session,
    /// The run's options (without `--max-budget-usd` when the CLI lacks it).
    pub args: &'a CliArgs,
    pub caps: Option<&'a Caps>,
    /// The per-turn cap before the session's own budget (the request's, else the config's).
    pub per_turn_budget: f64,
    pub prompt: &'a str,
    pub timeout: std::time::Duration,
    pub kill_grace: std::time::Duration,
    pub lines: Option<crate::runner::LineSink>,
}

pub(crate) fn turn_for(plan: &TurnPlan, flag: &SessionFlag) -> Option<Turn> {
    let caps = plan.caps?;
    if !plan.config.live_cli.enabled || !caps.supports("--input-format") {
        return None;
    }
    let session = plan.session;
    let session_left = session
        .max_budget_usd
        .map(|limit| money::to_usd(money::to_micros(limit).saturating_sub(money::to_micros(session.total_cost_usd))));
    let budget = plan.args.max_budget_usd.map(|cap| TurnBudget::new(cap, plan.per_turn_budget, session_left));
    Some(Turn {
        start: Arc::new(start_of(plan.config, caps, plan.args, &plan.session.project_path)),
        session_id: plan.session.id.clone(),
        flag: flag.clone(),
        budget,
        prompt: plan.prompt.to_string(),
        timeout: plan.timeout,
        kill_grace: plan.kill_grace,
        lines: plan.lines.clone(),
        markers: vec![
            (TASK_ID_ENV.to_string(), plan.task_id.to_string()),
            (live::SESSION_ID_ENV.to_string(), plan.session.id.clone()),
            leftovers::server_marker(&plan.config.data_dir),
        ],
    })
}

/// What a live process for `args` in `folder` is started with (the budget apart), by the CLI
/// `caps` were probed from.
fn start_of(config: &Config, caps: &Caps, args: &CliArgs, folder: &str) -> Start {
    let args = CliArgs { max_budget_usd: None, ..args.clone() };
    Start {
        program: config.claude_path.clone(),
        args: argv::build_live(&args),
        cwd: folder.into(),
        env: config.child_env(),
        version: Some(caps.version),
    }
}

/// A plain turn in the default folder (no option of its own) as a spare was started for it:
/// its start options and budget, or `None` when spares cannot serve (no probe yet, a CLI
/// without stream-json input or that takes a session id at start, or the default folder
/// missing).
fn default_turn(app: &App, config: &Config) -> Option<(Start, Option<TurnBudget>)> {
    let caps = app.cli.cached(&cli_support::target(config)).and_then(|p| p.caps.clone().ok())?;
    if !caps.supports("--input-format") || !live::spares_work_with(caps.version) {
        return None;
    }
    let folder = project::resolve_or_default(None, config).ok()?;
    let session = provisional_session(config, &folder);
    let mut args = cli_args(config, &TurnRequest::default(), &session, config.max_budget_usd);
    if !caps.supports("--max-budget-usd") {
        args.max_budget_usd = None;
    }
    let budget = args.max_budget_usd.map(|cap| TurnBudget::new(cap, cap, None));
    Some((start_of(config, &caps, &args, &folder), budget))
}

fn provisional_session(config: &Config, folder: &str) -> Session {
    let now = crate::model::now();
    Session {
        id: String::new(),
        project_path: folder.to_string(),
        model: config.default_model.clone(),
        system_prompt: None,
        max_budget_usd: None,
        created_at: now,
        updated_at: now,
        messages_count: 0,
        total_cost_usd: 0.0,
        status: SessionStatus::Active,
        metadata: serde_json::Value::Null,
        cli_started: false,
        conversation: None,
    }
}

/// Starts the spares that are missing (from the housekeeping thread: each start is a
/// posix_spawn of a few milliseconds; the CLI warms up on its own).
pub fn top_up_spares(app: &App) {
    let config = app.config();
    let default = default_turn(app, &config);
    // Spares started otherwise than a plain turn would start now (the CLI was upgraded in place:
    // another version) would never be taken: they end, and others start.
    app.live.retire_spares_unlike(default.as_ref().map(|(start, _)| start));
    let slots = app.live.spares_missing();
    if slots.is_empty() {
        return;
    }
    if let Err(err) = project::resolve_or_default(None, &config) {
        // Said once as a warning (a host without the default folder would hear it every 30 s).
        let level = if FOLDER_WARNED.swap(true, Ordering::Relaxed) { log::Level::Debug } else { log::Level::Warn };
        log::log!(level, "no spare claude process: {err}; spares are tried again every {} s", SPARES_PAUSE.as_secs());
        app.live.pause_spares(SPARES_PAUSE);
        return;
    }
    let Some((start, budget)) = default else { return };
    let start = Arc::new(start);
    for slot in slots {
        match live::spawn_spare(&app.live, start.clone(), budget, leftovers::server_marker(&config.data_dir)) {
            Ok(spare) => {
                log::debug!("spare claude process {} started for session id {}", spare.pgid, spare.session_id);
                app.live.add_spare(spare, slot);
            }
            Err(e) => {
                log::warn!(
                    "cannot start a spare claude process in {} ({e}); spares pause for {} s",
                    start.cwd.display(),
                    SPARES_PAUSE.as_secs()
                );
                app.live.pause_spares(SPARES_PAUSE);
                return;
            }
        }
    }
}

/// For a new session of a plain request (the default folder, model and options): the id of a
/// spare it takes (already started as that session), if one is there.
pub fn claim_spare(app: &App, config: &Config, req: &TurnRequest) -> Option<String> {
    let plain = req.model.as_ref().is_none_or(|m| *m == config.default_model)
        && req.system_prompt.is_none()
        && req.append_system_prompt.is_none()
        && req.max_budget_usd.is_none()
        && req.max_turns.is_none()
        && req.allowed_tools.is_none()
        && req.disallowed_tools.is_none()
        && req.permission_mode.is_none()
        && req.agent.is_none()
        && req.mcp_config.is_none();
    if !plain {
        return None;
    }
    let folder = project::resolve_or_default(req.project_path.as_deref(), config).ok()?;
    let (start, _) = default_turn(app, config)?;
    if start.cwd != std::path::Path::new(&folder) {
        return None;
    }
    let id = app.live.claim_spare(&start)?;
    log::info!("a new session takes spare claude process (session id {id})");
    Some(id)
}

/// Applies the `liveCli` limits of `next`; when what decides how the CLI starts changed since
/// `before`, every idle live process and spare is retired (busy ones when their turn ends).
pub fn configure(app: &App, before: Option<&Config>, next: &Config) {
    let limits = live::limits(&next.live_cli, next.task_queue.concurrency, live::mem_available());
    let retire = before.is_some_and(|old| starts_differently(old, next));
    if retire {
        log::info!("the way claude starts changed: idle live claude processes and spares are retired");
    }
    app.live.configure(limits, retire);
}

fn starts_differently(a: &Config, b: &Config) -> bool {
    a.claude_path != b.claude_path
        || a.nvm_bin != b.nvm_bin
        || a.claude_env != b.claude_env
        || a.default_model != b.default_model
        || a.default_project_path != b.default_project_path
        || a.permission_mode != b.permission_mode
        || a.allowed_tools != b.allowed_tools
        || a.disallowed_tools != b.disallowed_tools
        || a.mcp != b.mcp
        || a.max_budget_usd != b.max_budget_usd
        || a.live_cli.enabled != b.live_cli.enabled
}
