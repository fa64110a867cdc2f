//! Sessions and their turns (SPEC 5): creating, listing, changing and removing sessions, the
//! checks a new turn must pass (active, within budget), and recording a finished turn. Running a
//! turn is a task (see `tasks`); the queue runs a session's turns one at a time, in order.

use std::sync::Arc;

use chrono::{DateTime, Duration as Days, Utc};
use serde_json::Value;

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::model::{Session, SessionStatus, Task, Turn, TurnRequest};
use crate::money;
use crate::project;
use crate::runner::argv;
use crate::store::Durable;

/// What a new session starts with.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The id to take (a spare live CLI was started with it), else a new one.
    pub id: Option<String>,
    pub project_path: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub max_budget_usd: Option<f64>,
    pub metadata: Option<Value>,
}

/// Filters of a session listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<SessionStatus>,
    pub project_path: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

/// Creates a session; `durable` says when it must be on disk (`Soon` when it comes with a turn,
/// whose task record is written `Now` before anyone hears of either).
pub fn create(app: &App, new: NewSession, durable: Durable) -> Result<Arc<Session>, Error> {
    let config = app.config();
    if let Some(model) = &new.model {
        check_model(&config, model)?;
    }
    // Both go on the command line of each of its turns.
    for (field, value) in [("model", &new.model), ("system_prompt", &new.system_prompt)] {
        value.as_deref().map_or(Ok(()), |v| check_argument(field, v))?;
    }
    let project_path = project::resolve(&new.project_path, &config)?;
    let now = crate::model::now();
    let session = Session {
        id: new.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        project_path,
        model: new.model.unwrap_or_else(|| config.default_model.clone()),
        system_prompt: new.system_prompt,
        max_budget_usd: new.max_budget_usd,
        created_at: now,
        updated_at: now,
        messages_count: 0,
        total_cost_usd: 0.0,
        status: SessionStatus::Active,
        metadata: new.metadata.unwrap_or_else(|| Value::Object(Default::default())),
        cli_started: false,
        conversation: None,
    };
    log::info!("session {} created in {}", session.id, session.project_path);
    Ok(app.store.sessions.put(&session.id.clone(), session, durable)?)
}

/// Refuses a request value that goes on the claude command line and cannot (a NUL character,
/// or more than one argument may hold): a 400 naming the field, not a CLI that fails to start
/// (502) for what is the caller's mistake.
pub(crate) fn check_argument(field: &str, value: &str) -> Result<(), Error> {
    if !argv::passable(value) {
        return Err(Error::invalid(
            field,
            format!("\"{field}\" must not contain a NUL character (\\u0000): it goes on the claude command line"),
        ));
    }
    if value.len() > argv::MAX_ARG_BYTES {
        return Err(Error::invalid(
            field,
            format!(
                "\"{field}\" is {} bytes; the claude CLI takes it as one argument, at most {} bytes \
                 (a system prompt is one: on /v1 its system messages); shorten it, or send long context in \
                 the prompt (the messages) instead",
                value.len(),
                argv::MAX_ARG_BYTES
            ),
        ));
    }
    Ok(())
}

pub fn get(app: &App, id: &str) -> Result<Arc<Session>, Error> {
    app.store.sessions.get(id)?.ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("session {id} not found; list sessions with GET /api/sessions"))
}

/// The turns of a session, oldest first.
pub fn turns(app: &App, id: &str) -> Result<Vec<Arc<Turn>>, Error> {
    Ok(app.store.turns.scan(&format!("{id}."))?)
}

/// Sessions matching `filter`, newest first, and how many matched in all.
pub fn list(app: &App, filter: &Filter) -> Result<(Vec<Arc<Session>>, usize), Error> {
    let mut all: Vec<Arc<Session>> = app
        .store
        .sessions
        .all()?
        .into_iter()
        .filter(|s| filter.status.is_none_or(|status| s.status == status))
        .filter(|s| filter.project_path.as_ref().is_none_or(|p| &s.project_path == p))
        .collect();
    newest_first(&mut all);
    let total = all.len();
    Ok((all.into_iter().skip(filter.offset).take(filter.limit).collect(), total))
}

/// Sessions whose id or metadata contains `q` (case-insensitive), newest first.
pub fn search(app: &App, q: &str, limit: usize) -> Result<Vec<Arc<Session>>, Error> {
    let needle = q.to_lowercase();
    let mut found: Vec<Arc<Session>> = app
        .store
        .sessions
        .all()?
        .into_iter()
        .filter(|s| s.id.contains(&needle) || s.metadata.to_string().to_lowercase().contains(&needle))
        .collect();
    newest_first(&mut found);
    found.truncate(limit);
    Ok(found)
}

fn newest_first(sessions: &mut [Arc<Session>]) {
    sessions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
}

pub fn set_status(app: &App, id: &str, status: SessionStatus) -> Result<Arc<Session>, Error> {
    let changed = app.store.sessions.update(id, Durable::Now, |session| {
        session.status = status;
        session.updated_at = crate::model::now();
        true
    })?;
    if status != SessionStatus::Active {
        app.live.retire_session(id); // it takes no turn now: its live CLI ends
    }
    changed.ok_or_else(|| not_found(id))
}

pub fn delete(app: &App, id: &str) -> Result<(), Error> {
    get(app, id)?;
    if app.queue.session_busy(id)? {
        return Err(Error::Conflict(format!(
            "session {id} has a turn waiting or running; wait for it (or cancel it with DELETE /api/tasks/<task id>), then delete"
        )));
    }
    remove_with_turns(app, id)?;
    log::info!("session {id} deleted");
    Ok(())
}

fn remove_with_turns(app: &App, id: &str) -> Result<(), Error> {
    // The session goes first: a crash in between leaves orphan turns, never a session without them.
    let conversation = app.store.sessions.get(id)?.and_then(|s| s.conversation.clone());
    app.store.sessions.remove(id, Durable::Now)?;
    app.live.retire_session(id);
    if let Some(digest) = conversation {
        forget_conversation(app, &digest, id)?;
    }
    for turn in turns(app, id)? {
        app.store.turns.remove(&Turn::key(id, turn.seq), Durable::Soon)?;
    }
    Ok(())
}

/// Removes the conversation link `digest` if it is still session `id`'s: another session
/// with the same history may have taken the digest over since.
pub(crate) fn forget_conversation(app: &App, digest: &str, id: &str) -> Result<(), Error> {
    if app.store.conversations.get(digest)?.is_some_and(|link| link.session_id == id) {
        app.store.conversations.remove(digest, Durable::Soon)?;
    }
    Ok(())
}

/// Removes sessions idle for longer than `sessionRetentionDays` and finished tasks older than
/// `taskRetentionDays`; returns (sessions, tasks) removed.
pub fn cleanup_expired(app: &App, now: DateTime<Utc>) -> Result<(usize, usize), Error> {
    let config = app.config();
    let session_cutoff = now - Days::days(config.session_retention_days.into());
    let mut sessions = 0;
    for session in app.store.sessions.all()? {
        if session.updated_at < session_cutoff && !app.queue.session_busy(&session.id)? {
            remove_with_turns(app, &session.id)?;
            sessions += 1;
        }
    }
    let task_cutoff = now - Days::days(config.task_retention_days.into());
    let mut tasks = 0;
    for task in app.store.tasks.all()? {
        if task.status.is_final() && task.updated_at < task_cutoff {
            app.store.tasks.remove(&task.id, Durable::Soon)?;
            tasks += 1;
        }
    }
    Ok((sessions, tasks))
}

/// The session a turn belongs to: the one named by `session_id`, else a new one.
/// `new_id` is the id a new session takes (a spare's), if any.
pub(crate) fn session_for(
    app: &App,
    config: &Config,
    req: &TurnRequest,
    new_id: Option<String>,
) -> Result<Arc<Session>, Error> {
    match &req.session_id {
        Some(id) => {
            let session = get(app, id)?;
            // The roots (and the models) may have narrowed since the session began: every turn
            // is checked.
            project::resolve(&session.project_path, config)?;
            if req.model.is_none() && session.model != config.default_model {
                check_model(config, &session.model).map_err(|_| session_model_refused(config, &session))?;
            }
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
                id: new_id,
                project_path: project::resolve_or_default(req.project_path.as_deref(), config)?,
                model: req.model.clone(),
                system_prompt: req.system_prompt.clone(),
                max_budget_usd: None,
                metadata: req.metadata.clone(),
            },
            Durable::Soon,
        ),
    }
}

/// With `models` in the config, only those models run (and `defaultModel`, when nobody named
/// one): a session or a turn that names another is refused.
pub(crate) fn check_model(config: &Config, model: &str) -> Result<(), Error> {
    if config.models.is_empty() || config.allows_model(model) {
        return Ok(());
    }
    Err(Error::invalid(
        "model",
        format!(
            "model \"{model}\" is not offered by this server; use one of: {} (the config's \"models\")",
            config.models.join(", ")
        ),
    ))
}

fn session_model_refused(config: &Config, session: &Session) -> Error {
    Error::invalid(
        "model",
        format!(
            "session {} runs model \"{}\", which this server does not offer; send \"model\" with one of: {} \
             (the config's \"models\")",
            session.id,
            session.model,
            config.models.join(", ")
        ),
    )
}

pub(crate) fn check_takes_turns(session: &Session) -> Result<(), Error> {
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
pub(crate) fn run_budget(config: &Config, req: &TurnRequest, session: &Session) -> Result<f64, Error> {
    let cap = req.max_budget_usd.unwrap_or(config.max_budget_usd);
    let Some(limit) = session.max_budget_usd else {
        return Ok(cap);
    };
    let left = money::to_usd(money::to_micros(limit).saturating_sub(money::to_micros(session.total_cost_usd)));
    if left <= 0.0 {
        return Err(Error::Conflict(format!(
            "session {} has spent ${} of its ${} budget and takes no more turns; start a new session",
            session.id, session.total_cost_usd, limit
        )));
    }
    Ok(cap.min(left))
}

/// Records a finished turn and what it cost; `cli_has_session` when the CLI printed a result
/// (so it saved the conversation and later turns must `--resume` it). Written `Soon`: the
/// caller then writes the task's end `Now`, which makes the turn durable before anyone hears.
pub(crate) fn record_turn(app: &App, session: &Session, task: &Task, cli_has_session: bool) -> Result<(), Error> {
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
    app.store.turns.put(&Turn::key(&session.id, seq), turn, Durable::Soon)?;
    // Only the counters change here, on the stored record: a status set meanwhile stays.
    app.store.sessions.update(&session.id, Durable::Soon, |next| {
        next.messages_count = seq;
        next.total_cost_usd = money::add_usd(next.total_cost_usd, task.cost_usd.unwrap_or(0.0));
        next.updated_at = now;
        next.cli_started |= cli_has_session;
        true
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;
    use crate::store::Store;

    fn app() -> Arc<App> {
        App::for_tests(Store::in_memory())
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
            conversation: None,
        };
        app.store.sessions.put(id, s, Durable::Now).unwrap();
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
        app.store.turns.put(&Turn::key(id, 1), turn, Durable::Now).unwrap();
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
        app.queue
            .push(crate::queue::Entry {
                task_id: "t".into(),
                priority: crate::model::Priority::DEFAULT,
                seq: 1,
                session_id: Some("busy-old".into()),
                pinned: false,
            })
            .unwrap();
        let (removed, _) = cleanup_expired(&app, now()).unwrap();
        assert_eq!(removed, 1);
        assert!(app.store.sessions.get("old").unwrap().is_none());
        assert!(turns(&app, "old").unwrap().is_empty());
        assert!(app.store.sessions.get("busy-old").unwrap().is_some());
        assert_eq!(turns(&app, "recent").unwrap().len(), 1);
    }

    #[test]
    fn retention_removes_old_finished_tasks_only() {
        let app = app(); // taskRetentionDays 30
        let task = |id: &str, status: TaskStatus, age_days: i64| {
            let at = now() - Days::days(age_days);
            let json = serde_json::json!({
                "id": id, "status": status, "priority": 5, "prompt": "p", "project_path": "/tmp", "model": "m",
                "session_id": null, "created_at": at, "updated_at": at, "started_at": null, "completed_at": null,
                "result": null, "error": null, "cost_usd": null, "duration_ms": null, "num_turns": null,
                "exit_code": null,
            });
            app.store.tasks.put(id, serde_json::from_value(json).unwrap(), Durable::Now).unwrap();
        };
        task("old-done", TaskStatus::Completed, 31);
        task("old-pending", TaskStatus::Pending, 31);
        task("new-done", TaskStatus::Failed, 1);
        let (_, removed) = cleanup_expired(&app, now()).unwrap();
        assert_eq!(removed, 1);
        assert!(app.store.tasks.get("old-done").unwrap().is_none());
        assert!(
            app.store.tasks.get("old-pending").unwrap().is_some() && app.store.tasks.get("new-done").unwrap().is_some()
        );
    }
}
