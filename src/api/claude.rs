//! `POST /api/claude` (one prompt) and `POST /api/claude/batch` (up to 10 at once). Both run
//! synchronously here: the answer comes when the CLI is done.

use serde_json::{json, Value};

use super::fields::Fields;
use crate::app::App;
use crate::error::Error;
use crate::http::{ApiError, Ctx, Reply};
use crate::model::{Task, TaskStatus};
use crate::money;
use crate::project;
use crate::sessions::{self, TurnRequest};

/// Every field `/api/claude` takes; `/continue` takes the same but `session_id` and `project_path`.
pub const TURN_FIELDS: &[&str] = &[
    "prompt",
    "project_path",
    "model",
    "session_id",
    "system_prompt",
    "append_system_prompt",
    "max_budget_usd",
    "max_turns",
    "timeout_ms",
    "allowed_tools",
    "disallowed_tools",
    "permission_mode",
    "agent",
    "mcp_config",
    "async",
    "priority",
    "webhook_url",
    "stream",
    "metadata",
];

const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// Reads and validates the fields of one turn.
pub fn turn_request(f: &Fields) -> Result<TurnRequest, ApiError> {
    let request = TurnRequest {
        prompt: f.required_text("prompt")?,
        session_id: f.text("session_id")?,
        project_path: f.text("project_path")?,
        model: f.text("model")?,
        system_prompt: f.text("system_prompt")?,
        append_system_prompt: f.text("append_system_prompt")?,
        max_budget_usd: f.number("max_budget_usd", 0.0)?,
        max_turns: f.integer("max_turns", 1, 10_000)?.map(|n| n as u32),
        timeout_ms: f.integer("timeout_ms", 100, 86_400_000)?,
        allowed_tools: f.tool_list("allowed_tools")?,
        disallowed_tools: f.tool_list("disallowed_tools")?,
        permission_mode: f.choice("permission_mode", PERMISSION_MODES)?,
        agent: f.text("agent")?,
        mcp_config: f.text_or_json("mcp_config")?,
        metadata: f.object("metadata")?,
        priority: f.integer("priority", 1, 10)?.unwrap_or(5) as u8,
    };
    f.url("webhook_url")?;
    refuse_not_yet_supported(f)?;
    Ok(request)
}

fn refuse_not_yet_supported(f: &Fields) -> Result<(), ApiError> {
    if f.boolean("async")? == Some(true) {
        return Err(ApiError::new(
            501,
            "\"async\": true is not supported by this version yet; send the request without it",
        ));
    }
    if f.boolean("stream")? == Some(true) {
        return Err(ApiError::new(
            501,
            "\"stream\": true is not supported by this version yet; send the request without it",
        ));
    }
    Ok(())
}

pub fn post(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let fields = Fields::new(ctx.body.as_ref(), TURN_FIELDS)?;
    let request = turn_request(&fields)?;
    let task = sessions::run_turn(app, request)?;
    task_reply(task)
}

/// The answer to a sync run: 200 with the result, or the error status of how it ended.
pub fn task_reply(task: Task) -> Result<Reply, ApiError> {
    let message = task.error.clone().unwrap_or_default();
    let (task_id, session_id) = (task.id.clone(), task.session_id.clone());
    let error = match task.status {
        TaskStatus::Completed => return Ok(Reply::ok(success_body(&task))),
        TaskStatus::Timeout => Error::CliTimeout {
            message,
            task_id,
            session_id,
        },
        TaskStatus::Cancelled => {
            return Err(ApiError::new(503, message)
                .with("task_id", task_id)
                .with("session_id", session_id))
        }
        _ => Error::CliFailed {
            message,
            task_id: Some(task_id),
            session_id,
        },
    };
    Err(ApiError::from(error).with("exit_code", task.exit_code))
}

fn success_body(task: &Task) -> Value {
    json!({
        "success": true,
        "result": task.result,
        "duration_ms": task.duration_ms,
        "cost_usd": task.cost_usd.unwrap_or(0.0),
        "session_id": task.session_id,
        "task_id": task.id,
        "num_turns": task.num_turns,
        "usage": task.usage,
        "model": task.model,
    })
}

const BATCH_FIELDS: &[&str] = &["prompts", "project_path", "model", "async"];

/// Runs every prompt (each in a session of its own) within the worker limit; answers in order.
pub fn batch(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), BATCH_FIELDS)?;
    let prompts = f
        .text_list("prompts", 10)?
        .ok_or_else(|| ApiError::bad_request("prompts", "\"prompts\" is required"))?;
    let model = f.text("model")?;
    if f.boolean("async")? == Some(true) {
        return Err(ApiError::new(
            501,
            "\"async\": true is not supported by this version yet; send the batch without it",
        ));
    }
    let config = app.config();
    let project_path = project::resolve_or_default(f.text("project_path")?.as_deref(), &config)?;
    let outcomes: Vec<Result<Task, Error>> = std::thread::scope(|scope| {
        let runs: Vec<_> = prompts
            .into_iter()
            .map(|prompt| {
                let request = TurnRequest {
                    prompt,
                    project_path: Some(project_path.clone()),
                    model: model.clone(),
                    priority: 5,
                    ..TurnRequest::default()
                };
                scope.spawn(move || sessions::run_turn(app, request))
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join().unwrap_or_else(|_| {
                    Err(Error::Unavailable(
                        "this prompt's run failed internally".into(),
                    ))
                })
            })
            .collect()
    });
    Ok(Reply::ok(batch_body(&outcomes)))
}

fn batch_body(outcomes: &[Result<Task, Error>]) -> Value {
    let (mut successful, mut cost, mut duration) = (0, 0u64, 0u64);
    let results: Vec<Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(task) if task.status == TaskStatus::Completed => {
                successful += 1;
                cost += money::to_micros(task.cost_usd.unwrap_or(0.0));
                duration += task.duration_ms.unwrap_or(0);
                success_body(task)
            }
            Ok(task) => {
                cost += money::to_micros(task.cost_usd.unwrap_or(0.0));
                duration += task.duration_ms.unwrap_or(0);
                json!({"success": false, "error": task.error, "status": task.status, "task_id": task.id, "session_id": task.session_id})
            }
            Err(err) => json!({"success": false, "error": err.to_string()}),
        })
        .collect();
    json!({
        "success": true,
        "results": results,
        "summary": {
            "total": outcomes.len(),
            "successful": successful,
            "failed": outcomes.len() - successful,
            "total_cost_usd": money::to_usd(cost),
            "total_duration_ms": duration,
        },
    })
}
