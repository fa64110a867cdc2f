//! `/api/statistics`: totals, per-day counters and models, from the durable day records.

use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};
use crate::stats;

pub fn overview(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let total = stats::totals(app)?;
    let recent: Vec<Value> = stats::recent(app, 7)?.iter().map(stats::Day::to_api).collect();
    Ok(Reply::ok(json!({
        "success": true,
        "statistics": {"summary": stats::summary(&total), "recent_daily": recent, "top_models": stats::top_models(&total, 5)},
    })))
}

pub fn summary(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({"success": true, "statistics": stats::summary(&stats::totals(app)?)})))
}

pub fn daily(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let limit = ctx.query_number("limit", 30, 3660)?.max(1);
    let days: Vec<Value> = stats::recent(app, limit as u64)?.iter().map(stats::Day::to_api).collect();
    Ok(Reply::ok(json!({"success": true, "statistics": days, "count": days.len()})))
}

pub fn range(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let date = |name: &str| -> Result<NaiveDate, ApiError> {
        let text = ctx
            .query(name)?
            .ok_or_else(|| ApiError::bad_request(name, format!("\"{name}\" is required (YYYY-MM-DD)")))?;
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(name, format!("\"{name}\" must be a date like 2026-01-31 (got \"{text}\")"))
        })
    };
    let (start, end) = (date("start")?, date("end")?);
    if start > end {
        return Err(ApiError::bad_request("start", "\"start\" must not be after \"end\""));
    }
    if (end - start).num_days() > 3660 {
        return Err(ApiError::bad_request("start", "a range covers at most 3660 days"));
    }
    let days: Vec<Value> = stats::days(app, start, end)?.iter().map(stats::Day::to_api).collect();
    Ok(Reply::ok(json!({"success": true, "statistics": days, "count": days.len()})))
}

pub fn models(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let limit = ctx.query_number("limit", 10, 1000)?;
    let models = stats::top_models(&stats::totals(app)?, limit);
    Ok(Reply::ok(json!({"success": true, "models": models, "count": models.len()})))
}
