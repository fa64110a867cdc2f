//! Tasks: one run of the CLI each, for a sync request or an async one (SPEC 6, 7). This module
//! owns a task's life: `submit` checks it, stores it (on disk before anyone hears its id) and
//! queues it; a worker calls `execute` to run it and record the end; `cancel`, `set_priority`
//! and `retry` act on it from the API; `recover` sorts out what a crash left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::{App, OnDone};
use crate::config::Config;
use crate::error::Error;
use crate::model::{now, Mode, Session, Task, TaskStatus, TurnRequest};
use crate::queue::{Cancelled, Entry};
use crate::runner::caps::Caps;
use crate::runner::{self, Cancel, CliArgs, Invocation, RunResult, RunStatus, SessionFlag, SpawnError};
use crate::store::{Durable, StoreError};
use crate::{cli_support, money, project, sessions, webhook};

/// Checks, stores and queues a turn. With `on_done`, that callback gets the end of the task.
pub fn submit(app: &App, mut req: TurnRequest, mode: Mode, on_done: Option<OnDone>) -> Result<Arc<Task>, Error> {
    let config = app.config();
    check_caller_overrides(&config, &req)?;
    if app.is_shutting_down() {
        return Err(shutting_down());
    }
    let (waiting, _) = app.queue.counts();
    if waiting >= config.task_queue.max_pending {
        return Err(Error::Unavailable(format!(
            "the queue is full ({waiting} tasks waiting, taskQueue.maxPending); retry later or raise taskQueue.maxPending"
        )));
    }
    let session = sessions::session_for(app, &config, &req)?;
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
    let task = new_task(req, &session, mode, app.queue.next_seq());
    // An async task's id is answered at once, so it is on disk first. A sync task's client hears
    // only its end (written `Now`); if the server dies before, the client sees the connection
    // drop, and a restart cancels the task if it was saved by then.
    let durable = if mode == Mode::Async { Durable::Now } else { Durable::Soon };
    let task = app.store.tasks.put(&task.id.clone(), task, durable)?;
    if let Some(on_done) = on_done {
        app.wait_for(&task.id, on_done);
    }
    app.queue.push(entry_of(&task));
    log::info!("task {} queued ({}, priority {}, session {})", task.id, mode_name(mode), task.priority, session.id);
    log::debug!("task {} prompt: {}", task.id, task.prompt);
    Ok(task)
}

fn entry_of(task: &Task) -> Entry {
    Entry { task_id: task.id.clone(), priority: task.priority, seq: task.seq, session_id: task.session_id.clone() }
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

pub fn get(app: &App, id: &str) -> Result<Arc<Task>, Error> {
    app.store
        .tasks
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("task {id} not found; list tasks with GET /api/tasks")))
}

/// Tasks with `status` (all when `None`) in queue order: priority first, then arrival.
pub fn list(app: &App, status: Option<TaskStatus>, limit: usize, offset: usize) -> (Vec<Arc<Task>>, usize) {
    let mut tasks: Vec<Arc<Task>> =
        app.store.tasks.all().into_iter().filter(|t| status.is_none_or(|s| t.status == s)).collect();
    tasks.sort_by(|a, b| {
        b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)).then_with(|| a.created_at.cmp(&b.created_at))
    });
    let total = tasks.len();
    (tasks.into_iter().skip(offset).take(limit).collect(), total)
}

/// Runs a task the queue handed out, records how it ended, and tells whoever waits.
pub fn execute(app: &App, task_id: &str, cancel: &Cancel) {
    let Some(task) = app.store.tasks.get(task_id) else { return };
    if task.status != TaskStatus::Pending {
        return; // cancelled while it waited
    }
    let config = app.config();
    let (session, budget, caps) = match prepare(app, &config, &task, cancel) {
        Ok(ready) => ready,
        Err(err) => return end_without_running(app, task_id, TaskStatus::Failed, err),
    };
    if cancel.is_cancelled() {
        let err = Error::Conflict(format!("task {task_id} was cancelled before it started"));
        return end_without_running(app, task_id, TaskStatus::Cancelled, err);
    }
    // The task is marked started, with its CLI's process group (a start after a crash kills
    // it), once that CLI runs and before it gets its prompt (so it can do nothing before). An
    // async task that was started is never started again by itself (after a crash it is
    // `interrupted`), so that is on disk before the prompt is sent. A sync one's client is told
    // only its end, and a restart cancels it whether it had started or not; `Soon` puts it in
    // the journal file within a few milliseconds, long before its CLI is up (0.3 s or more).
    let durable = if task.mode == Mode::Async { Durable::Now } else { Durable::Soon };
    log::info!("task {task_id} runs turn {} of session {}", session.messages_count + 1, session.id);
    let lines = task.request.stream.then(|| relay_lines(app, task_id));
    let mut start = None;
    let mut record_start = |pgid: i32| {
        let recorded = app.store.tasks.update(task_id, durable, |t| mark_started(t, pgid));
        let go_on = matches!(recorded, Ok(Some(_)));
        start = Some(recorded);
        go_on
    };
    let outcome = run_cli(&config, &task, &session, budget, caps.as_ref(), cancel, lines, &mut record_start);
    let started = match start {
        Some(Ok(Some(started))) => started,
        Some(Ok(None)) => return, // it ended meanwhile; its CLI was killed before its prompt
        Some(Err(e)) => return end_unsaved(app, task_id, e),
        // The CLI could not be started: the end goes on the task as it waited.
        None => task,
    };
    let cli_has_session = matches!(&outcome, Ok(run) if run.report.is_some());
    let at = now();
    let mut ended = (*started).clone();
    record_outcome(&mut ended, &outcome, cancel, at);
    // The statistics and the turn are written `Soon`, then the task's end `Now`: once anyone can
    // see that the task ended, all of it is on disk.
    crate::stats::record(app, &ended);
    if let Err(e) = sessions::record_turn(app, &session, &ended, cli_has_session) {
        log::error!("task {task_id}: the turn could not be saved: {e}");
    }
    let ended = app.store.tasks.update(task_id, Durable::Now, |t| {
        record_outcome(t, &outcome, cancel, at);
        true
    });
    let task = match ended {
        Ok(Some(task)) => task,
        Ok(None) => return,
        Err(e) => return end_unsaved(app, task_id, e),
    };
    log::info!("task {task_id} {}", describe(&task));
    if let Ok(run) = &outcome {
        app.metrics.observe_cli(run.duration_ms as f64 / 1000.0);
    }
    finished(app, task, None);
}

/// Marks a task started by its CLI of process group `pgid`; false when it no longer waits for
/// that (it ended meanwhile). A resume retry (a second CLI) only records its group.
fn mark_started(t: &mut Task, pgid: i32) -> bool {
    match t.status {
        TaskStatus::Pending => {
            t.status = TaskStatus::Processing;
            t.started_at = Some(now());
        }
        TaskStatus::Processing => {}
        _ => return false,
    }
    t.pgid = Some(pgid);
    t.updated_at = now();
    true
}

/// Sends each line of a stream-json run to the task's followers.
fn relay_lines(app: &App, task_id: &str) -> runner::LineSink {
    let (hub, id) = (app.events.clone(), task_id.to_string());
    runner::LineSink(Arc::new(move |line: &str| hub.publish(&id, line)))
}

/// The session as the previous turn left it, checked again (it may have changed while the task
/// waited), the budget of this run, and what the CLI accepts (`None` when its probe failed:
/// the run then passes its options unchecked).
fn prepare(
    app: &App,
    config: &Config,
    task: &Task,
    cancel: &Cancel,
) -> Result<(Arc<Session>, f64, Option<Caps>), Error> {
    let session_id = task.session_id.as_deref().unwrap_or_default();
    let session = sessions::get(app, session_id)?;
    sessions::check_takes_turns(&session)?;
    let budget = sessions::run_budget(config, &task.request, &session)?;
    // Checked again at the start: the folder may be gone, or outside roots narrowed meanwhile.
    project::resolve(&session.project_path, config).map_err(|err| match err {
        Error::Invalid { field, .. } => Error::invalid(
            &field,
            format!("project folder {} of session {} no longer exists; recreate it", session.project_path, session.id),
        ),
        other => other,
    })?;
    let caps = app.cli.get(&cli_support::target(config), cancel).caps.clone().ok();
    if let Some(caps) = &caps {
        cli_support::check(caps, config, &task.request, &cli_args(config, &task.request, &session, budget), budget)?;
    }
    Ok((session, budget, caps))
}

/// Changes a task record; logs (and returns `None`) when it cannot be saved.
fn update(app: &App, id: &str, durable: Durable, change: impl FnOnce(&mut Task) -> bool) -> Option<Arc<Task>> {
    match app.store.tasks.update(id, durable, change) {
        Ok(task) => task,
        Err(e) => {
            log::error!("task {id}: {e}");
            None
        }
    }
}

fn end_without_running(app: &App, task_id: &str, status: TaskStatus, err: Error) {
    log::info!("task {task_id} ended {} without running: {}", status.name(), err.to_string().escape_debug());
    let message = err.to_string();
    let task = app.store.tasks.update(task_id, Durable::Now, |t| {
        t.status = status;
        t.error = Some(message);
        t.updated_at = now();
        t.completed_at = Some(t.updated_at);
        true
    });
    match task {
        Ok(Some(task)) => finished(app, task, Some(err)),
        Ok(None) => {}
        Err(e) => end_unsaved(app, task_id, e),
    }
}

/// A change of a task's state could not be saved (a full disk, a read-only dataDir): the task
/// shows `failed` saying so, in memory only (a restart finds its last saved state), and whoever
/// waits hears it at once. No webhook: nothing unsaved is told.
fn end_unsaved(app: &App, task_id: &str, err: StoreError) {
    log::error!("task {task_id}: its state could not be saved: {err}");
    let Some(current) = app.store.tasks.get(task_id) else { return };
    let mut task = (*current).clone();
    task.status = TaskStatus::Failed;
    task.error = Some(format!("the task could not be saved: {err}"));
    task.updated_at = now();
    task.completed_at = Some(task.updated_at);
    let task = app.store.tasks.show_unsaved(task_id, task);
    app.events.end(task);
    if let Some(on_done) = app.take_waiter(task_id) {
        on_done(Err(Error::Storage(err)));
    }
}

/// Marks a task whose execution panicked as failed (the worker lives on).
pub fn fail_internally(app: &App, task_id: &str) {
    let err = Error::Unavailable(format!("task {task_id} failed with an internal error; the server log has details"));
    end_without_running(app, task_id, TaskStatus::Failed, err);
}

/// A task reached its final state: tell its followers, answer the waiting request, or send
/// the webhook.
fn finished(app: &App, task: Arc<Task>, error: Option<Error>) {
    app.events.end(task.clone());
    match app.take_waiter(&task.id) {
        Some(on_done) => on_done(error.map_or(Ok(task), Err)),
        None if task.mode == Mode::Async => webhook::notify(app, &task),
        None => {}
    }
}

/// DELETE of a task: a waiting one never runs; a running one has its process group killed and
/// ends `cancelled` (this waits, bounded, for that end); a finished one is a conflict.
pub fn cancel(app: &App, id: &str) -> Result<Arc<Task>, Error> {
    let deadline =
        Instant::now() + Duration::from_millis(app.config().task_queue.kill_grace_ms) + Duration::from_secs(5);
    loop {
        let task = get(app, id)?;
        if task.status.is_final() {
            return Err(Error::Conflict(format!(
                "task {id} is already {}; only pending or processing tasks can be cancelled",
                task.status.name()
            )));
        }
        match app.queue.cancel(id) {
            Cancelled::Pending => {
                let err = Error::Conflict(format!("task {id} was cancelled (DELETE /api/tasks/{id})"));
                end_without_running(app, id, TaskStatus::Cancelled, err);
                log::info!("task {id} cancelled before it ran");
                return get(app, id);
            }
            Cancelled::Running => return wait_until_final(app, id, deadline),
            // Between the store and the queue (being queued, or just taken): look again.
            Cancelled::NotQueued if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Cancelled::NotQueued => {
                return Err(Error::Conflict(format!("task {id} could not be cancelled; try again")))
            }
        }
    }
}

fn wait_until_final(app: &App, id: &str, deadline: Instant) -> Result<Arc<Task>, Error> {
    loop {
        let task = get(app, id)?;
        if task.status.is_final() || Instant::now() >= deadline {
            return Ok(task);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// PATCH priority of a waiting task; returns (old, new).
pub fn set_priority(app: &App, id: &str, priority: u8) -> Result<(u8, u8), Error> {
    let task = get(app, id)?;
    let not_pending =
        || Error::Conflict(format!("task {id} is no longer pending; only waiting tasks can change priority"));
    if task.status != TaskStatus::Pending || !app.queue.reprioritize(id, priority) {
        return Err(not_pending());
    }
    let mut old = task.priority;
    update(app, id, Durable::Now, |t| {
        old = t.priority;
        t.priority = priority;
        t.request.priority = priority;
        t.updated_at = now();
        true
    })
    .ok_or_else(|| Error::Unavailable(format!("task {id}: the new priority could not be saved")))?;
    log::info!("task {id} priority {old} -> {priority}");
    Ok((old, priority))
}

/// Queues a finished, unsuccessful task again as a new (async) task.
pub fn retry(app: &App, id: &str) -> Result<Arc<Task>, Error> {
    let task = get(app, id)?;
    let retryable = [TaskStatus::Failed, TaskStatus::Timeout, TaskStatus::Cancelled, TaskStatus::Interrupted];
    if !retryable.contains(&task.status) {
        return Err(Error::Conflict(format!(
            "task {id} is {}; only failed, timeout, cancelled or interrupted tasks can be retried",
            task.status.name()
        )));
    }
    let mut request = task.request.clone();
    if request.prompt.is_empty() {
        // A record from before requests were stored with tasks.
        request = TurnRequest {
            prompt: task.prompt.clone(),
            session_id: task.session_id.clone(),
            priority: task.priority,
            ..request
        };
    }
    let retried = submit(app, request, Mode::Async, None)?;
    log::info!("task {id} retried as task {}", retried.id);
    Ok(retried)
}

/// After a start: tasks that were running become `interrupted` (never re-run by themselves;
/// the CLI a crash left running is killed first),
/// waiting async tasks are queued again in their old order, and waiting sync tasks (whose
/// client is gone) are cancelled. Returns (interrupted, requeued, cancelled).
pub fn recover(app: &App) -> (usize, usize, usize) {
    let mut tasks: Vec<Arc<Task>> = app.store.tasks.all().into_iter().filter(|t| !t.status.is_final()).collect();
    tasks.sort_by_key(|t| t.seq);
    let (mut interrupted, mut requeued, mut cancelled) = (0, 0, 0);
    for task in tasks {
        // `Soon`: recovery can run again after another crash, with the same result.
        let end = |status: TaskStatus, message: &str| {
            update(app, &task.id, Durable::Soon, |t| {
                t.status = status;
                t.error = Some(message.to_string());
                t.updated_at = now();
                t.completed_at = Some(t.updated_at);
                true
            })
        };
        match (task.status, task.mode) {
            (TaskStatus::Processing, _) => {
                kill_leftover_cli(&task);
                let message = "the server stopped while this task ran; retry it (POST /api/tasks/<id>/retry) if its side effects allow";
                if let Some(task) = end(TaskStatus::Interrupted, message) {
                    finished(app, task, None);
                }
                interrupted += 1;
            }
            (_, Mode::Sync) => {
                end(
                    TaskStatus::Cancelled,
                    "the server stopped before this synchronous request got under way (its CLI had not started, \
                     or for a few milliseconds at most); its client was disconnected",
                );
                cancelled += 1;
            }
            (_, Mode::Async) => {
                app.queue.push(entry_of(&task));
                requeued += 1;
            }
        }
    }
    (interrupted, requeued, cancelled)
}

/// Kills the CLI a dead server left running for `task` (its recorded process group, if that
/// still carries the task's marker), and says so.
fn kill_leftover_cli(task: &Task) {
    let Some(pgid) = task.pgid else { return };
    match runner::leftovers::kill_if_ours(pgid, &task.id) {
        Ok(pids) if pids.is_empty() => {}
        Ok(pids) => log::warn!(
            "task {}: killed process group {pgid} (pids {pids:?}), the CLI the previous server left running",
            task.id
        ),
        Err(e) => log::error!("task {}: could not kill process group {pgid} of its CLI: {e}", task.id),
    }
}

/// At shutdown: waiting sync tasks (their clients are still connected) end `cancelled` with a 503.
pub fn refuse_waiting(app: &App, waiting: Vec<Entry>) {
    for entry in waiting {
        if app.store.tasks.get(&entry.task_id).is_some_and(|t| t.mode == Mode::Sync) {
            end_without_running(app, &entry.task_id, TaskStatus::Cancelled, shutting_down());
        }
    }
}

/// `GET /api/tasks/queue/status`.
pub fn queue_status(app: &App) -> Value {
    let tasks = app.store.tasks.all();
    let count = |status: TaskStatus| tasks.iter().filter(|t| t.status == status).count();
    let cost: u64 = tasks.iter().map(|t| money::to_micros(t.cost_usd.unwrap_or(0.0))).sum();
    let oldest_pending = tasks.iter().filter(|t| t.status == TaskStatus::Pending).map(|t| t.created_at).min();
    json!({
        "running": !app.is_shutting_down(),
        "concurrency": app.config().task_queue.concurrency,
        "total": tasks.len(),
        "pending": count(TaskStatus::Pending),
        "processing": count(TaskStatus::Processing),
        "completed": count(TaskStatus::Completed),
        "failed": count(TaskStatus::Failed),
        "cancelled": count(TaskStatus::Cancelled),
        "timeout": count(TaskStatus::Timeout),
        "interrupted": count(TaskStatus::Interrupted),
        "total_cost_usd": money::to_usd(cost),
        "oldest_pending_age_ms": oldest_pending.map(|at| (now() - at).num_milliseconds().max(0)),
    })
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

pub fn cli_args(config: &Config, req: &TurnRequest, session: &Session, budget: f64) -> CliArgs {
    let mut disallowed = config.disallowed_tools.clone();
    disallowed.extend(req.disallowed_tools.iter().flatten().filter(|t| !config.disallowed_tools.contains(t)).cloned());
    CliArgs {
        model: Some(req.model.clone().unwrap_or_else(|| session.model.clone())),
        system_prompt: req.system_prompt.clone().or_else(|| session.system_prompt.clone()),
        append_system_prompt: req.append_system_prompt.clone(),
        max_budget_usd: Some(budget),
        max_turns: req.max_turns,
        mcp_config: req
            .mcp_config
            .clone()
            .or_else(|| config.mcp.enabled.then(|| config.mcp.config_path.clone()).flatten()),
        permission_mode: req.permission_mode.clone().or_else(|| config.permission_mode.clone()),
        allowed_tools: req.allowed_tools.clone().unwrap_or_else(|| config.allowed_tools.clone()),
        disallowed_tools: disallowed,
        agent: req.agent.clone(),
    }
}

/// The environment the CLI gets on top of the server's: PATH with `nvmBin` first, and `claudeEnv`.
pub(crate) fn child_env(config: &Config) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(bin) = &config.nvm_bin {
        let path = std::env::var("PATH").unwrap_or_default();
        env.push(("PATH".to_string(), if path.is_empty() { bin.clone() } else { format!("{bin}:{path}") }));
    }
    env.extend(config.claude_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

type Outcome = Result<RunResult, SpawnError>;

/// Runs the CLI for `task` (its environment marked with the task's id); `on_start` is told the
/// process group of each CLI started.
#[allow(clippy::too_many_arguments)] // each from another step of `execute`
fn run_cli(
    config: &Config,
    task: &Task,
    session: &Session,
    budget: f64,
    caps: Option<&Caps>,
    cancel: &runner::Cancel,
    lines: Option<runner::LineSink>,
    on_start: runner::OnStart,
) -> Outcome {
    let req = &task.request;
    let mut args = cli_args(config, req, session, budget);
    // A CLI without --max-budget-usd gets no budget flag; ccs checks the cost after the run.
    let own_budget = caps.filter(|c| !c.supports("--max-budget-usd"));
    if own_budget.is_some() {
        args.max_budget_usd = None;
    }
    let flag = if session.cli_started {
        SessionFlag::Resume(session.id.clone())
    } else {
        SessionFlag::Create(session.id.clone())
    };
    let invocation = |flag: &SessionFlag| Invocation {
        program: config.claude_path.clone(),
        args: runner::argv::build(&args, flag, req.stream),
        prompt: req.prompt.clone(),
        cwd: session.project_path.clone().into(),
        env: [child_env(config), vec![(runner::TASK_ID_ENV.to_string(), task.id.clone())]].concat(),
        timeout: std::time::Duration::from_millis(req.timeout_ms.unwrap_or(config.task_queue.default_timeout)),
        kill_grace: std::time::Duration::from_millis(config.task_queue.kill_grace_ms),
        lines: lines.clone(),
    };
    let mut outcome = runner::run(&invocation(&flag), cancel, &mut *on_start)?;
    // A first turn that was killed after the CLI had saved the session leaves the id taken:
    // the conversation exists, so continue it instead.
    let id_taken = outcome.report.is_none() && outcome.error.as_deref().is_some_and(|e| e.contains("already in use"));
    if matches!(flag, SessionFlag::Create(_)) && outcome.status == RunStatus::Failed && id_taken {
        log::warn!("session {} already exists in the CLI; resuming it", session.id);
        outcome = runner::run(&invocation(&SessionFlag::Resume(session.id.clone())), cancel, on_start)?;
    }
    if let Some(caps) = own_budget {
        runner::budget::enforce(&mut outcome, budget, &format!("claude {}", caps.version));
    }
    Ok(outcome)
}

/// Fills in how a run ended. A task that was cancelled stays cancelled (and one stopped by a
/// shutdown is interrupted) whatever its process did after the signal.
fn record_outcome(task: &mut Task, outcome: &Outcome, cancel: &Cancel, at: chrono::DateTime<chrono::Utc>) {
    task.updated_at = at;
    task.completed_at = Some(at);
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
    if cancel.is_interrupt() {
        task.status = TaskStatus::Interrupted;
        task.error = Some(
            "the server stopped while this task ran; its process group was killed; retry it if its side effects allow"
                .into(),
        );
    } else if cancel.is_cancelled() {
        task.status = TaskStatus::Cancelled;
        task.error = Some("cancelled; the claude process group was killed".into());
    }
}

fn describe(task: &Task) -> String {
    match (&task.status, &task.error) {
        (TaskStatus::Completed, _) => format!("completed in {} ms", task.duration_ms.unwrap_or(0)),
        // The CLI's own text: escaped, so it cannot start a forged log line.
        (status, Some(error)) => format!("ended {}: {}", status.name(), error.escape_debug()),
        (status, None) => format!("ended {}", status.name()),
    }
}
