//! Sessions and their turns (SPEC 5): creating, listing and changing sessions, and running one
//! turn — the CLI call with `--session-id` on the first turn and `--resume=<id>` after, in the
//! session's own folder, strictly one turn at a time per session, within the session's budget.

use std::sync::Arc;

use chrono::{DateTime, Duration as Days, Utc};
use serde_json::Value;

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::model::{Session, SessionStatus, Task, TaskStatus, Turn};
use crate::money;
use crate::project;
use crate::runner::{self, CliArgs, Invocation, RunResult, RunStatus, SessionFlag, SpawnError};

/// What a new session starts with.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub project_path: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub max_budget_usd: Option<f64>,
    pub metadata: Option<Value>,
}

/// One prompt to run, with every option a caller may set.
#[derive(Debug, Clone, Default)]
pub struct TurnRequest {
    pub prompt: String,
    pub session_id: Option<String>,
    pub project_path: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub append_system_prompt: Option<String>,
    pub max_budget_usd: Option<f64>,
    pub max_turns: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub allowed_tools: Option<Vec<String>>,
    pub disallowed_tools: Option<Vec<String>>,
    pub permission_mode: Option<String>,
    pub agent: Option<String>,
    pub mcp_config: Option<String>,
    pub metadata: Option<Value>,
    pub priority: u8,
}

/// Filters of a session listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<SessionStatus>,
    pub project_path: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

pub fn create(app: &App, new: NewSession) -> Result<Arc<Session>, Error> {
    let config = app.config();
    let project_path = project::resolve(&new.project_path, &config)?;
    let now = crate::model::now();
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        project_path,
        model: new.model.unwrap_or_else(|| config.default_model.clone()),
        system_prompt: new.system_prompt,
        max_budget_usd: new.max_budget_usd,
        created_at: now,
        updated_at: now,
        messages_count: 0,
        total_cost_usd: 0.0,
        status: SessionStatus::Active,
        metadata: new
            .metadata
            .unwrap_or_else(|| Value::Object(Default::default())),
        cli_started: false,
    };
    log::info!("session {} created in {}", session.id, session.project_path);
    Ok(app.store.sessions.put(&session.id.clone(), session)?)
}

pub fn get(app: &App, id: &str) -> Result<Arc<Session>, Error> {
    app.store.sessions.get(id).ok_or_else(|| {
        Error::NotFound(format!(
            "session {id} not found; list sessions with GET /api/sessions"
        ))
    })
}

/// The turns of a session, oldest first.
pub fn turns(app: &App, id: &str) -> Vec<Arc<Turn>> {
    app.store.turns.scan(&format!("{id}."))
}

/// Sessions matching `filter`, newest first, and how many matched in all.
pub fn list(app: &App, filter: &Filter) -> (Vec<Arc<Session>>, usize) {
    let mut all: Vec<Arc<Session>> = app
        .store
        .sessions
        .all()
        .into_iter()
        .filter(|s| filter.status.is_none_or(|status| s.status == status))
        .filter(|s| {
            filter
                .project_path
                .as_ref()
                .is_none_or(|p| &s.project_path == p)
        })
        .collect();
    newest_first(&mut all);
    let total = all.len();
    (
        all.into_iter()
            .skip(filter.offset)
            .take(filter.limit)
            .collect(),
        total,
    )
}

/// Sessions whose id or metadata contains `q` (case-insensitive), newest first.
pub fn search(app: &App, q: &str, limit: usize) -> Vec<Arc<Session>> {
    let needle = q.to_lowercase();
    let mut found: Vec<Arc<Session>> = app
        .store
        .sessions
        .all()
        .into_iter()
        .filter(|s| {
            s.id.contains(&needle) || s.metadata.to_string().to_lowercase().contains(&needle)
        })
        .collect();
    newest_first(&mut found);
    found.truncate(limit);
    found
}

fn newest_first(sessions: &mut [Arc<Session>]) {
    sessions.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

pub fn set_status(app: &App, id: &str, status: SessionStatus) -> Result<Arc<Session>, Error> {
    let _turns_wait = app.gate.enter(id);
    let mut session = (*get(app, id)?).clone();
    session.status = status;
    session.updated_at = crate::model::now();
    Ok(app.store.sessions.put(id, session)?)
}

pub fn delete(app: &App, id: &str) -> Result<(), Error> {
    get(app, id)?;
    if app.gate.is_busy(id) {
        return Err(Error::Conflict(format!(
            "session {id} has a turn running; wait for it to finish, then delete"
        )));
    }
    remove_with_turns(app, id)?;
    log::info!("session {id} deleted");
    Ok(())
}

fn remove_with_turns(app: &App, id: &str) -> Result<(), Error> {
    // The session goes first: a crash in between leaves orphan turns, never a session without them.
    app.store.sessions.remove(id)?;
    for turn in turns(app, id) {
        app.store.turns.remove(&Turn::key(id, turn.seq))?;
    }
    Ok(())
}

/// Removes sessions idle for longer than `sessionRetentionDays` and finished tasks older than
/// `taskRetentionDays`; returns (sessions, tasks) removed.
pub fn cleanup_expired(app: &App, now: DateTime<Utc>) -> Result<(usize, usize), Error> {
    let config = app.config();
    let session_cutoff = now - Days::days(config.session_retention_days.into());
    let mut sessions = 0;
    for session in app.store.sessions.all() {
        if session.updated_at < session_cutoff && !app.gate.is_busy(&session.id) {
            remove_with_turns(app, &session.id)?;
            sessions += 1;
        }
    }
    let task_cutoff = now - Days::days(config.task_retention_days.into());
    let mut tasks = 0;
    for task in app.store.tasks.all() {
        if task.status.is_final() && task.updated_at < task_cutoff {
            app.store.tasks.remove(&task.id)?;
            tasks += 1;
        }
    }
    Ok((sessions, tasks))
}

/// Marks tasks that were running when the server died as `interrupted`; returns how many.
pub fn recover_interrupted(app: &App) -> Result<usize, Error> {
    let mut count = 0;
    for task in app.store.tasks.all() {
        if task.status == TaskStatus::Processing {
            let mut task = (*task).clone();
            task.status = TaskStatus::Interrupted;
            task.error = Some(
                "the server stopped while this task ran; retry it if its side effects allow".into(),
            );
            task.updated_at = crate::model::now();
            task.completed_at = Some(task.updated_at);
            app.store.tasks.put(&task.id.clone(), task)?;
            count += 1;
        }
    }
    Ok(count)
}

/// Runs one turn to its end and records it. `Ok` holds the finished task whatever its status
/// (completed, failed, timeout, cancelled); `Err` means nothing ran.
pub fn run_turn(app: &App, req: TurnRequest) -> Result<Task, Error> {
    let config = app.config();
    check_caller_overrides(&config, &req)?;
    if app.is_shutting_down() {
        return Err(shutting_down());
    }
    let session = session_for(app, &config, &req)?;
    let _my_turn = app.gate.enter(&session.id);
    let session = get(app, &session.id)?; // as the previous turn left it
    check_takes_turns(&session)?;
    let budget = run_budget(&config, &req, &session)?;
    if !std::path::Path::new(&session.project_path).is_dir() {
        return Err(Error::invalid(
            "project_path",
            format!(
                "project folder {} of session {} no longer exists; recreate it",
                session.project_path, session.id
            ),
        ));
    }

    let slot = app.slots.acquire().ok_or_else(shutting_down)?;
    let mut task = new_task(&req, &session);
    app.store.tasks.put(&task.id.clone(), task.clone())?;
    let cancel = app.track_run(&task.id);
    log::info!(
        "task {} runs turn {} of session {}",
        task.id,
        session.messages_count + 1,
        session.id
    );
    log::debug!("task {} prompt: {}", task.id, req.prompt);
    let outcome = run_cli(&config, &req, &session, budget, &cancel);
    app.untrack_run(&task.id);
    drop(slot);

    record_outcome(&mut task, &outcome);
    log::info!("task {} {}", task.id, describe(&task));
    app.store.tasks.put(&task.id.clone(), task.clone())?;
    record_turn(app, &session, &task, &outcome)?;
    Ok(task)
}

/// The session a turn belongs to: the one named by `session_id`, else a new one.
fn session_for(app: &App, config: &Config, req: &TurnRequest) -> Result<Arc<Session>, Error> {
    match &req.session_id {
        Some(id) => {
            let session = get(app, id)?;
            if let Some(path) = &req.project_path {
                if project::resolve(path, config)? != session.project_path {
                    return Err(Error::invalid(
                        "project_path",
                        format!(
                            "session {id} belongs to project folder {}; leave project_path out",
                            session.project_path
                        ),
                    ));
                }
            }
            Ok(session)
        }
        None => create(
            app,
            NewSession {
                project_path: project::resolve_or_default(req.project_path.as_deref(), config)?,
                model: req.model.clone(),
                system_prompt: req.system_prompt.clone(),
                max_budget_usd: None,
                metadata: req.metadata.clone(),
            },
        ),
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down; send the request again once it is back".into())
}

fn check_caller_overrides(config: &Config, req: &TurnRequest) -> Result<(), Error> {
    if config.allow_caller_overrides {
        return Ok(());
    }
    let given = [
        ("mcp_config", req.mcp_config.is_some()),
        ("agent", req.agent.is_some()),
        ("allowed_tools", req.allowed_tools.is_some()),
        ("permission_mode", req.permission_mode.is_some()),
    ];
    match given.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(Error::forbidden(
            field,
            format!(
                "\"{field}\" is refused: it can make the CLI launch programs or widen its powers; \
                 set allowCallerOverrides to true in the config to let callers set it"
            ),
        )),
        None => Ok(()),
    }
}

fn check_takes_turns(session: &Session) -> Result<(), Error> {
    if session.status != SessionStatus::Active {
        return Err(Error::Conflict(format!(
            "session {} is {}; only active sessions take new turns (PATCH /api/sessions/{}/status with {{\"status\":\"active\"}})",
            session.id,
            session.status.name(),
            session.id
        )));
    }
    Ok(())
}

/// The `--max-budget-usd` of this run: the request's (or the config's) cap, never more than what
/// is left of the session's own budget.
fn run_budget(config: &Config, req: &TurnRequest, session: &Session) -> Result<f64, Error> {
    let cap = req.max_budget_usd.unwrap_or(config.max_budget_usd);
    let Some(limit) = session.max_budget_usd else {
        return Ok(cap);
    };
    let left = money::to_usd(
        money::to_micros(limit).saturating_sub(money::to_micros(session.total_cost_usd)),
    );
    if left <= 0.0 {
        return Err(Error::Conflict(format!(
            "session {} has spent ${} of its ${} budget and takes no more turns; start a new session",
            session.id, session.total_cost_usd, limit
        )));
    }
    Ok(cap.min(left))
}

fn new_task(req: &TurnRequest, session: &Session) -> Task {
    let now = crate::model::now();
    Task {
        id: uuid::Uuid::new_v4().to_string(),
        status: TaskStatus::Processing,
        priority: req.priority,
        prompt: req.prompt.clone(),
        project_path: session.project_path.clone(),
        model: req.model.clone().unwrap_or_else(|| session.model.clone()),
        session_id: Some(session.id.clone()),
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        completed_at: None,
        result: None,
        error: None,
        cost_usd: None,
        duration_ms: None,
        num_turns: None,
        usage: Value::Null,
        exit_code: None,
        metadata: req
            .metadata
            .clone()
            .unwrap_or_else(|| Value::Object(Default::default())),
    }
}

/// The CLI options of one turn: the request's, then the session's, then the config's defaults.
pub fn cli_args(config: &Config, req: &TurnRequest, session: &Session, budget: f64) -> CliArgs {
    let mut disallowed = config.disallowed_tools.clone();
    disallowed.extend(
        req.disallowed_tools
            .iter()
            .flatten()
            .filter(|t| !config.disallowed_tools.contains(t))
            .cloned(),
    );
    CliArgs {
        model: Some(req.model.clone().unwrap_or_else(|| session.model.clone())),
        system_prompt: req
            .system_prompt
            .clone()
            .or_else(|| session.system_prompt.clone()),
        append_system_prompt: req.append_system_prompt.clone(),
        max_budget_usd: Some(budget),
        max_turns: req.max_turns,
        mcp_config: req.mcp_config.clone().or_else(|| {
            config
                .mcp
                .enabled
                .then(|| config.mcp.config_path.clone())
                .flatten()
        }),
        permission_mode: req
            .permission_mode
            .clone()
            .or_else(|| config.permission_mode.clone()),
        allowed_tools: req
            .allowed_tools
            .clone()
            .unwrap_or_else(|| config.allowed_tools.clone()),
        disallowed_tools: disallowed,
        agent: req.agent.clone(),
    }
}

/// The environment the CLI gets on top of the server's: PATH with `nvmBin` first, and `claudeEnv`.
fn child_env(config: &Config) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(bin) = &config.nvm_bin {
        let path = std::env::var("PATH").unwrap_or_default();
        env.push((
            "PATH".to_string(),
            if path.is_empty() {
                bin.clone()
            } else {
                format!("{bin}:{path}")
            },
        ));
    }
    env.extend(
        config
            .claude_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    env
}

type Outcome = Result<RunResult, SpawnError>;

fn run_cli(
    config: &Config,
    req: &TurnRequest,
    session: &Session,
    budget: f64,
    cancel: &runner::Cancel,
) -> Outcome {
    let flag = if session.cli_started {
        SessionFlag::Resume(session.id.clone())
    } else {
        SessionFlag::Create(session.id.clone())
    };
    let invocation = |flag: &SessionFlag| Invocation {
        program: config.claude_path.clone(),
        args: runner::argv::build(&cli_args(config, req, session, budget), flag),
        prompt: req.prompt.clone(),
        cwd: session.project_path.clone().into(),
        env: child_env(config),
        timeout: std::time::Duration::from_millis(
            req.timeout_ms.unwrap_or(config.task_queue.default_timeout),
        ),
        kill_grace: std::time::Duration::from_millis(config.task_queue.kill_grace_ms),
    };
    let outcome = runner::run(&invocation(&flag), cancel)?;
    // A first turn that was killed after the CLI had saved the session leaves the id taken:
    // the conversation exists, so continue it instead.
    let id_taken = outcome.report.is_none()
        && outcome
            .error
            .as_deref()
            .is_some_and(|e| e.contains("already in use"));
    if matches!(flag, SessionFlag::Create(_)) && outcome.status == RunStatus::Failed && id_taken {
        log::warn!(
            "session {} already exists in the CLI; resuming it",
            session.id
        );
        return runner::run(
            &invocation(&SessionFlag::Resume(session.id.clone())),
            cancel,
        );
    }
    Ok(outcome)
}

fn record_outcome(task: &mut Task, outcome: &Outcome) {
    let now = crate::model::now();
    task.updated_at = now;
    task.completed_at = Some(now);
    match outcome {
        Err(spawn) => {
            task.status = TaskStatus::Failed;
            task.error = Some(spawn.to_string());
        }
        Ok(run) => {
            task.status = match run.status {
                RunStatus::Completed => TaskStatus::Completed,
                RunStatus::Failed => TaskStatus::Failed,
                RunStatus::Timeout => TaskStatus::Timeout,
                RunStatus::Cancelled => TaskStatus::Cancelled,
            };
            task.error = run.error.clone();
            task.exit_code = run.exit_code;
            task.duration_ms = Some(run.duration_ms);
            if let Some(report) = &run.report {
                task.result = report.result.clone();
                task.cost_usd = Some(report.cost_usd);
                task.num_turns = report.num_turns;
                task.usage = report.usage.clone();
                if let Some(model) = &report.model {
                    task.model = model.clone();
                }
            }
        }
    }
}

fn describe(task: &Task) -> String {
    match (&task.status, &task.error) {
        (TaskStatus::Completed, _) => format!("completed in {} ms", task.duration_ms.unwrap_or(0)),
        (status, Some(error)) => format!("ended {}: {error}", status.name()),
        (status, None) => format!("ended {}", status.name()),
    }
}

fn record_turn(app: &App, session: &Session, task: &Task, outcome: &Outcome) -> Result<(), Error> {
    let seq = session.messages_count + 1;
    let now = crate::model::now();
    let turn = Turn {
        session_id: session.id.clone(),
        seq,
        task_id: task.id.clone(),
        prompt: task.prompt.clone(),
        status: task.status,
        result: task.result.clone(),
        error: task.error.clone(),
        cost_usd: task.cost_usd.unwrap_or(0.0),
        duration_ms: task.duration_ms.unwrap_or(0),
        num_turns: task.num_turns,
        usage: task.usage.clone(),
        created_at: task.created_at,
        completed_at: now,
    };
    app.store.turns.put(&Turn::key(&session.id, seq), turn)?;
    let mut next = session.clone();
    next.messages_count = seq;
    next.total_cost_usd = money::add_usd(session.total_cost_usd, task.cost_usd.unwrap_or(0.0));
    next.updated_at = now;
    // The CLI printed a result object: it has the session now, so later turns resume it.
    next.cli_started |= matches!(outcome, Ok(run) if run.report.is_some());
    app.store.sessions.put(&session.id, next)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ConfigSource;
    use crate::config::StorageType;
    use crate::store::Store;
    use std::path::Path;

    fn app() -> App {
        let home = Path::new("/nonexistent/ccs-home");
        let source = ConfigSource {
            path: home.join("config.json"),
            home: home.into(),
            user_home: home.into(),
            host: None,
            port: None,
        };
        let config = source.defaults();
        App::new(
            config,
            source,
            Store::open(StorageType::Memory, home).unwrap(),
        )
    }

    fn session(app: &App, id: &str, idle_days: i64) {
        let at = now() - Days::days(idle_days);
        let s = Session {
            id: id.into(),
            project_path: "/tmp".into(),
            model: "m".into(),
            system_prompt: None,
            max_budget_usd: None,
            created_at: at,
            updated_at: at,
            messages_count: 1,
            total_cost_usd: 0.0,
            status: SessionStatus::Active,
            metadata: Value::Null,
            cli_started: true,
        };
        app.store.sessions.put(id, s).unwrap();
        let turn = Turn {
            session_id: id.into(),
            seq: 1,
            task_id: format!("task-{id}"),
            prompt: "p".into(),
            status: TaskStatus::Completed,
            result: None,
            error: None,
            cost_usd: 0.0,
            duration_ms: 1,
            num_turns: None,
            usage: Value::Null,
            created_at: at,
            completed_at: at,
        };
        app.store.turns.put(&Turn::key(id, 1), turn).unwrap();
    }

    fn now() -> DateTime<Utc> {
        crate::model::now()
    }

    #[test]
    fn retention_removes_idle_sessions_with_their_turns_but_not_busy_or_recent_ones() {
        let app = app(); // sessionRetentionDays 30
        session(&app, "old", 31);
        session(&app, "busy-old", 31);
        session(&app, "recent", 29);
        let _running = app.gate.enter("busy-old");
        let (removed, _) = cleanup_expired(&app, now()).unwrap();
        assert_eq!(removed, 1);
        assert!(app.store.sessions.get("old").is_none());
        assert!(turns(&app, "old").is_empty());
        assert!(app.store.sessions.get("busy-old").is_some());
        assert_eq!(turns(&app, "recent").len(), 1);
    }
}
