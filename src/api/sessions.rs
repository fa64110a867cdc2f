//! `/api/sessions`: create, list, search, read, continue, change status, delete.

use serde_json::{json, Value};

use super::claude::{answer_turn, turn_request, TURN_FIELDS};
use super::fields::Fields;
use super::{page, within_budget};
use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};
use crate::model::{Session, SessionStatus, TurnRequest};
use crate::sessions::{self, Filter, NewSession};
use crate::store::Durable;
use crate::tasks;

const CREATE_FIELDS: &[&str] = &["project_path", "model", "system_prompt", "max_budget_usd", "metadata"];

pub fn create(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), CREATE_FIELDS)?;
    let mut new = NewSession {
        id: None,
        project_path: f.required_text("project_path")?,
        model: f.text("model")?,
        system_prompt: f.text("system_prompt")?,
        max_budget_usd: f.number("max_budget_usd", 0.0)?,
        metadata: f.object("metadata")?,
    };
    // A session with nothing of its own takes a spare live CLI, as a first turn would.
    let as_turn = TurnRequest {
        project_path: Some(new.project_path.clone()),
        model: new.model.clone(),
        system_prompt: new.system_prompt.clone(),
        max_budget_usd: new.max_budget_usd,
        ..TurnRequest::default()
    };
    new.id = tasks::live::claim_spare(app, &app.config(), &as_turn);
    let session = sessions::create(app, new, Durable::Now)?;
    Ok(Reply::created(json!({"success": true, "session": session.to_api()})))
}

pub fn list(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let status = match ctx.query("status")? {
        None => None,
        Some(name) => Some(SessionStatus::parse(name).ok_or_else(|| {
            ApiError::bad_request("status", format!("\"status\" must be one of {}", SessionStatus::NAMES.join(", ")))
        })?),
    };
    let filter = Filter {
        status,
        project_path: ctx.query("project_path")?.map(str::to_string),
        limit: ctx.query_number("limit", 50, 1000)?,
        offset: ctx.query_number("offset", 0, usize::MAX)?,
    };
    let (found, total) = sessions::list(app, &filter)?;
    Ok(Reply::ok(page("sessions", found.iter().map(|s| s.to_api()), total, filter.offset)))
}

pub fn search(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let q = ctx.query("q")?.ok_or_else(|| {
        ApiError::bad_request("q", "\"q\" is required: GET /api/sessions/search?q=<text in the id or metadata>")
    })?;
    let limit = ctx.query_number("limit", 20, 1000)?;
    let (sessions, truncated) = within_budget(sessions::search(app, q, limit)?.iter().map(|s| s.to_api()));
    let mut body = json!({"success": true, "sessions": sessions, "count": sessions.len()});
    if truncated {
        body["truncated"] = json!(true); // ask again with a narrower q or a smaller limit
    }
    Ok(Reply::ok(body))
}

pub fn get(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let id = ctx.param("id");
    let mut session = sessions::get(app, id)?.to_api();
    let turns: Vec<Value> =
        sessions::turns(app, id)?.iter().map(|t| serde_json::to_value(&**t).unwrap_or_default()).collect();
    session["turns"] = Value::Array(turns);
    Ok(Reply::ok(json!({"success": true, "session": session})))
}

pub fn stats(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let s = sessions::get(app, ctx.param("id"))?;
    Ok(Reply::ok(json!({"success": true, "stats": stats_of(&s)})))
}

fn stats_of(s: &Session) -> Value {
    json!({
        "id": s.id,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "messages_count": s.messages_count,
        "total_cost_usd": s.total_cost_usd,
        "max_budget_usd": s.max_budget_usd,
        "model": s.model,
        "project_path": s.project_path,
        "status": s.status,
    })
}

pub fn continue_turn(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let allowed: Vec<&str> =
        TURN_FIELDS.iter().copied().filter(|f| !matches!(*f, "session_id" | "project_path")).collect();
    let f = Fields::new(ctx.body.as_ref(), &allowed)?;
    let mut request = turn_request(&f)?;
    request.session_id = Some(ctx.param("id").to_string());
    answer_turn(app, request, f.boolean("async")? == Some(true))
}

pub fn set_status(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), &["status"])?;
    let name = f
        .choice("status", SessionStatus::NAMES)?
        .ok_or_else(|| ApiError::bad_request("status", "\"status\" is required (active, archived or closed)"))?;
    let status = SessionStatus::parse(&name).unwrap_or(SessionStatus::Active);
    let session = sessions::set_status(app, ctx.param("id"), status)?;
    Ok(Reply::ok(json!({"success": true, "session": session.to_api()})))
}

pub fn delete(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    sessions::delete(app, ctx.param("id"))?;
    Ok(Reply::ok(json!({"success": true})))
}
