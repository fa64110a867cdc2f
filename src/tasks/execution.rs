//! A worker runs a task: `execute` checks it again, starts the CLI with the session's options,
//! and records how the run ended (the turn, the statistics, then the task's end).

use std::sync::Arc;

use crate::app::App;
use crate::config::Config;
use crate::error::Error;
use crate::model::{now, Mode, Session, SessionStatus, Task, TaskStatus, TurnRequest};
use crate::runner::caps::Caps;
use crate::runner::{self, Cancel, CliArgs, Invocation, RunResult, RunStatus, SessionFlag, SpawnError};
use crate::store::{Durable, StoreError};
use crate::{cli_support, project, sessions};

use super::ends::{end_unsaved, end_without_running, finished};
use super::live;

/// Runs a task the queue handed out, records how it ended, and tells whoever waits. While the
/// store cannot be reached (Redis down) before the CLI has the prompt, the task waits to start
/// and is then started as if just taken: an accepted task is never failed for an outage it
/// could wait out. False: it did not start and is still pending, because the server stops or
/// lost its claim on the queue meanwhile (`Cancel::is_interrupt`): the caller queues it again.
pub fn execute(app: &App, task_id: &str, cancel: &Cancel) -> bool {
    let mut pause = std::time::Duration::from_millis(100);
    while let Err(e) = start_and_run(app, task_id, cancel) {
        if cancel.is_interrupt() || app.is_shutting_down() {
            log::warn!("{e}; task {task_id} did not start and waits in the queue again");
            return false;
        }
        if pause.as_millis() == 100 {
            log::warn!("task {task_id} waits to start until the store can be reached: {e}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
    true
}

/// Whether `err` is a store out of reach (`StoreError::is_unreachable`), which may come back.
fn store_unreachable(err: &Error) -> bool {
    matches!(err, Error::Storage(e) if e.is_unreachable())
}

/// `execute` once: `Err` when the store could not be reached before the CLI got the prompt
/// (nothing of the task was saved: it is still pending).
fn start_and_run(app: &App, task_id: &str, cancel: &Cancel) -> Result<(), Error> {
    let task = match app.store.tasks.get(task_id) {
        Ok(Some(task)) => task,
        Ok(None) => return Ok(()),
        Err(e) if e.is_unreachable() => return Err(e.into()),
        // Left pending in the store (the next start's recovery queues it again): nothing else
        // can be done with a task whose record cannot be read.
        Err(e) => {
            log::error!("{e}; task {task_id} is not run now");
            return Ok(());
        }
    };
    if task.status != TaskStatus::Pending {
        return Ok(()); // cancelled while it waited
    }
    let config = app.config();
    let (session, budget, caps) = match prepare(app, &config, &task, cancel) {
        Ok(ready) => ready,
        Err(err) if store_unreachable(&err) => return Err(err),
        Err(err) => {
            end_without_running(app, task_id, TaskStatus::Failed, err);
            return Ok(());
        }
    };
    if cancel.is_cancelled() {
        let err = Error::Conflict(format!("task {task_id} was cancelled before it started"));
        end_without_running(app, task_id, TaskStatus::Cancelled, err);
        return Ok(());
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
    let outcome = run_cli(app, &config, &task, &session, budget, caps.as_ref(), cancel, lines, &mut record_start);
    let started = match start {
        Some(Ok(Some(started))) => started,
        Some(Ok(None)) => return Ok(()), // it ended meanwhile; its CLI was killed before its prompt
        // Its CLI was killed before its prompt: the task waits to start again.
        Some(Err(e)) if e.is_unreachable() => return Err(e.into()),
        Some(Err(e)) => {
            end_unsaved(app, task_id, e.into(), Some(&task));
            return Ok(());
        }
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
    // A session archived, closed or deleted while this turn ran takes no more turns: the live
    // process the turn gave back ends now (archiving retired only an idle one).
    if !sessions::get(app, &session.id).is_ok_and(|s| s.status == SessionStatus::Active) {
        app.live.retire_session(&session.id);
    }
    let ended = save_end(app, task_id, |t| record_outcome(t, &outcome, cancel, at));
    let task = match ended {
        Ok(Some(task)) => task,
        Ok(None) => return Ok(()),
        Err(e) => {
            end_unsaved(app, task_id, e.into(), Some(&started));
            return Ok(());
        }
    };
    log::info!("task {task_id} {}", describe(&task));
    if let Ok(run) = &outcome {
        app.metrics.observe_cli(run.duration_ms as f64 / 1000.0);
    }
    finished(app, task, None);
    Ok(())
}

/// Writes a run's end with `record`. While the store cannot be reached (Redis down) it waits
/// and tries again, so the answer the run produced is kept, not replaced by a failure; a store
/// that refuses the write (a full disk) fails at once, as does a server that is stopping.
fn save_end(app: &App, task_id: &str, record: impl Fn(&mut Task)) -> Result<Option<Arc<Task>>, StoreError> {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        // Another server may have ended it meanwhile (its claim ran out while the store was down).
        let saved = app.store.tasks.update(task_id, Durable::Now, |t| {
            if t.status.is_final() {
                return false;
            }
            record(t);
            true
        });
        match saved {
            Err(e) if e.is_unreachable() && !app.is_shutting_down() => {
                log::warn!("task {task_id}: its end waits until it can be saved: {e}");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            saved => return saved,
        }
    }
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

/// Marks a task whose execution panicked as failed (the worker lives on).
pub fn fail_internally(app: &App, task_id: &str) {
    let err = Error::Unavailable(format!("task {task_id} failed with an internal error; the server log has details"));
    end_without_running(app, task_id, TaskStatus::Failed, err);
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

type Outcome = Result<RunResult, SpawnError>;

/// Runs the CLI for `task`: on a live process (the session's own, a spare it took, or a new
/// one that stays for the next turn) when live processes are on, else a one-off process (its
/// environment marked with the task's id). `on_start` is told the process group of each CLI
/// the turn is given to.
#[allow(clippy::too_many_arguments)] // each from another step of `execute`
fn run_cli(
    app: &App,
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
    let timeout = std::time::Duration::from_millis(req.timeout_ms.unwrap_or(config.task_queue.default_timeout));
    let kill_grace = std::time::Duration::from_millis(config.task_queue.kill_grace_ms);
    let plan = live::TurnPlan {
        config,
        task_id: &task.id,
        session,
        args: &args,
        caps,
        per_turn_budget: req.max_budget_usd.unwrap_or(config.max_budget_usd),
        prompt: &req.prompt,
        timeout,
        kill_grace,
        lines: lines.clone(),
    };
    let mut run_once = |flag: &SessionFlag| -> Outcome {
        if let Some(turn) = live::turn_for(&plan, flag) {
            if let Some(outcome) = runner::live::run(&app.live, &turn, cancel, &mut *on_start) {
                return outcome;
            }
        }
        let invocation = Invocation {
            program: config.claude_path.clone(),
            args: runner::argv::build(&args, flag, req.stream),
            prompt: req.prompt.clone(),
            cwd: session.project_path.clone().into(),
            env: [config.child_env(), vec![(runner::TASK_ID_ENV.to_string(), task.id.clone())]].concat(),
            timeout,
            kill_grace,
            lines: lines.clone(),
        };
        runner::run(&invocation, cancel, &mut *on_start)
    };
    let mut outcome = run_once(&flag)?;
    // A first turn that was killed after the CLI had saved the session leaves the id taken:
    // the conversation exists, so continue it instead. Only on the CLI's own words at start
    // (all versions measured: "Session ID <id> is already in use."): a turn that ran and
    // crashed may have printed "already in use" of something else (a folder's name in a live
    // process's events, a tool's "address already in use"), and must not run again.
    let taken = format!("Session ID {} is already in use", session.id);
    let id_taken = outcome.report.is_none() && outcome.error.as_deref().is_some_and(|e| e.contains(&taken));
    if matches!(flag, SessionFlag::Create(_)) && outcome.status == RunStatus::Failed && id_taken {
        log::warn!("session {} already exists in the CLI; resuming it", session.id);
        outcome = run_once(&SessionFlag::Resume(session.id.clone()))?;
    }
    if let Some(caps) = own_budget {
        let why =
            format!("claude {} has no --max-budget-usd, so ccs checked the cost when the run ended", caps.version);
        runner::budget::enforce(&mut outcome, budget, &why);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_panic_after_the_end_was_recorded_leaves_the_final_state_as_it_is() {
        let app = App::for_tests(Store::in_memory());
        let request = TurnRequest { prompt: "p".into(), project_path: Some("/tmp".into()), ..TurnRequest::default() };
        let task = crate::tasks::submit(&app, request, Mode::Async).unwrap();
        // The run ended and was recorded; then something after it (telling who waits) panicked.
        app.store
            .tasks
            .update(&task.id, Durable::Now, |t| {
                t.status = TaskStatus::Completed;
                true
            })
            .unwrap();
        fail_internally(&app, &task.id);
        assert_eq!(app.store.tasks.get(&task.id).unwrap().unwrap().status, TaskStatus::Completed);
    }
}
