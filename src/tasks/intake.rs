//! A task comes in: `submit` checks the request, stores the task (on disk before anyone hears
//! its id), then queues it.

use std::sync::Arc;

use serde_json::Value;

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::model::{now, Mode, Session, Task, TaskStatus, TurnRequest};
use crate::queue::Entry;
use crate::store::Durable;
use crate::{cli_support, sessions};

use super::ends::end_without_running;
use super::execution::cli_args;

/// Checks, stores and queues a turn whose end nobody waits for here (async: a webhook tells;
/// streamed: its followers hear the end).
pub fn submit(app: &App, req: TurnRequest, mode: Mode) -> Result<Arc<Task>, Error> {
    queue_turn(app, req, mode, false)
}

/// Checks, stores and queues a sync turn whose request answers with its end: that end is kept
/// (`App::ends`) until the request listens for it.
pub fn submit_awaited(app: &App, req: TurnRequest) -> Result<Arc<Task>, Error> {
    queue_turn(app, req, Mode::Sync, true)
}

fn queue_turn(app: &App, mut req: TurnRequest, mode: Mode, keep_end: bool) -> Result<Arc<Task>, Error> {
    let config = app.config();
    check_caller_overrides(&config, &req)?;
    check_arguments(&req)?;
    if let Some(model) = &req.model {
        sessions::check_model(&config, model)?;
    }
    if app.is_shutting_down() {
        return Err(shutting_down());
    }
    let (waiting, _) = app.queue.counts()?;
    if waiting >= config.task_queue.max_pending {
        return Err(Error::Unavailable(format!(
            "the queue is full ({waiting} tasks waiting, taskQueue.maxPending); retry later or raise taskQueue.maxPending"
        )));
    }
    let spare = if req.session_id.is_none() { super::live::claim_spare(app, &config, &req) } else { None };
    let session = sessions::session_for(app, &config, &req, spare)?;
    sessions::check_takes_turns(&session)?;
    let budget = sessions::run_budget(&config, &req, &session)?;
    // With the CLI probed already, a flag it lacks is refused now; else when the task runs.
    if let Some(Ok(caps)) = app.cli.cached(&cli_support::target(&config)).map(|p| p.caps.clone()) {
        if let Err(err) = cli_support::check(&caps, &config, &req, &cli_args(&config, &req, &session, budget), budget) {
            if req.session_id.is_none() {
                let _ = sessions::delete(app, &session.id); // made for this request alone
            }
            return Err(err);
        }
    }
    req.session_id = Some(session.id.clone());
    let task = new_task(req, &session, mode, app.queue.next_seq()?);
    // An async task's id is answered at once, so it is on disk first. A sync task's client hears
    // only its end (written `Now`); if the server dies before, the client sees the connection
    // drop, and a restart cancels the task if it was saved by then.
    let durable = if mode == Mode::Async { Durable::Now } else { Durable::Soon };
    let task = app.store.tasks.put(&task.id.clone(), task, durable)?;
    if keep_end {
        app.ends.keep(&task.id);
    }
    // A sync turn is pinned to this server: its client, answer and live stream are here.
    if let Err(e) = app.queue.push(Entry { pinned: mode == Mode::Sync, ..entry_of(&task) }) {
        let err = Error::from(e);
        end_without_running(app, &task.id, TaskStatus::Failed, err.clone());
        app.ends.forget(&task.id);
        return Err(err);
    }
    log::info!("task {} queued ({}, priority {}, session {})", task.id, mode_name(mode), task.priority, session.id);
    log::debug!("task {} prompt: {}", task.id, task.prompt);
    Ok(task)
}

/// The queue entry of a task any server may run (`pinned` false).
pub(super) fn entry_of(task: &Task) -> Entry {
    Entry {
        task_id: task.id.clone(),
        priority: task.priority,
        seq: task.seq,
        session_id: task.session_id.clone(),
        pinned: false,
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Sync => "sync",
        Mode::Async => "async",
    }
}

fn new_task(request: TurnRequest, session: &Session, mode: Mode, seq: u64) -> Task {
    let at = now();
    Task {
        id: uuid::Uuid::new_v4().to_string(),
        status: TaskStatus::Pending,
        priority: request.priority,
        prompt: request.prompt.clone(),
        project_path: session.project_path.clone(),
        model: request.model.clone().unwrap_or_else(|| session.model.clone()),
        session_id: Some(session.id.clone()),
        created_at: at,
        updated_at: at,
        started_at: None,
        completed_at: None,
        result: None,
        error: None,
        cost_usd: None,
        duration_ms: None,
        num_turns: None,
        usage: Value::Null,
        exit_code: None,
        metadata: request.metadata.clone().unwrap_or_else(|| Value::Object(Default::default())),
        mode,
        webhook: None,
        seq,
        request,
        pgid: None,
    }
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

/// Every request field that goes on the command line can (`sessions::check_argument`).
fn check_arguments(req: &TurnRequest) -> Result<(), Error> {
    let texts = [
        ("model", &req.model),
        ("system_prompt", &req.system_prompt),
        ("append_system_prompt", &req.append_system_prompt),
        ("agent", &req.agent),
        ("mcp_config", &req.mcp_config),
    ];
    let lists = [("allowed_tools", &req.allowed_tools), ("disallowed_tools", &req.disallowed_tools)];
    let singles = texts.into_iter().filter_map(|(field, value)| Some((field, value.as_deref()?)));
    let items = lists.into_iter().flat_map(|(field, values)| values.iter().flatten().map(move |v| (field, v.as_str())));
    singles.chain(items).try_for_each(|(field, value)| sessions::check_argument(field, value))
}

pub(super) fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down; send the request again once it is back".into())
}
