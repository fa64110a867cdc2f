//! `GET /v1/models` and `GET /v1/models/:model`: the models this server offers (the config's
//! `models`, or the CLI's aliases and `defaultModel`), in a list both OpenAI's and Anthropic's
//! clients read (each takes the fields it knows).

use serde_json::{json, Value};

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};

/// When the offered models are said to be made: a fixed time (they are names the CLI resolves).
const CREATED: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

pub fn list(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    let offered = app.config().offered_models();
    let data: Vec<Value> = offered.iter().map(|id| model(id)).collect();
    Ok(Reply::ok(json!({
        "object": "list",
        "data": data,
        "has_more": false,
        "first_id": offered.first(),
        "last_id": offered.last(),
    })))
}

pub fn get(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let id = ctx.param("model");
    if !app.config().offered_models().iter().any(|m| m == id) {
        return Err(ApiError::new(
            404,
            format!("model \"{id}\" is not offered by this server; GET /v1/models lists them"),
        ));
    }
    Ok(Reply::ok(model(id)))
}

fn model(id: &str) -> Value {
    json!({
        "id": id,
        "object": "model",
        "type": "model",
        "created": CREATED,
        "created_at": "2025-01-01T00:00:00Z",
        "owned_by": "anthropic",
        "display_name": id,
    })
}
