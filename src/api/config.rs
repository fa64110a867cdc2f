//! `GET /api/config` (secrets masked) and `PUT /api/config`: the keys sent are merged into the
//! config file, the result validated (400 naming the key, the running config untouched), saved
//! atomically and applied; keys that need a restart are listed in `restart_required`.

use serde_json::{json, Value};

use crate::app::App;
use crate::config::{self, mask, Config, RESTART_KEYS};
use crate::fsutil;
use crate::housekeeping;
use crate::http::{ApiError, Ctx, Reply};

fn shown(config: &Config) -> Value {
    mask::masked(&config.to_json())
}

pub fn get(app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({
        "success": true,
        "config": shown(&app.config()),
        "path": app.source.path,
        "restart_keys": RESTART_KEYS,
    })))
}

pub fn put(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let Some(Value::Object(_)) = &ctx.body else {
        return Err(ApiError::bad_request("body", "send a JSON object of the config keys to change"));
    };
    let mut change = ctx.body.clone().unwrap_or_default();
    // The file as it is (keys it leaves out keep their defaults), else the running config.
    let mut file = config::read_json(&app.source.path).unwrap_or_else(|_| app.config().to_json());
    mask::unmask(&mut change, &app.config().to_json());
    config::merge(&mut file, change);
    let (next, warnings) = config::from_value(&file, app.source.defaults())
        .map_err(|e| ApiError::bad_request(&e.key, format!("{e}; nothing was changed")))?;
    let next = app.source.override_cli(next);
    crate::server::refuse_open_bind(&next)
        .map_err(|e| ApiError::bad_request("host", format!("{e}; nothing was changed")))?;
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    fsutil::write_atomic(&app.source.path, text.as_bytes())
        .map_err(|e| ApiError::new(500, format!("cannot save {}: {e}", app.source.path.display())))?;
    *app.config_stamp.lock() = housekeeping::file_stamp(&app.source.path);
    for warning in &warnings {
        log::warn!("{warning}");
    }
    let restart = app.apply_config(next);
    log::info!(
        "config changed through the API{}",
        if restart.is_empty() { String::new() } else { format!("; restart needed for {}", restart.join(", ")) }
    );
    Ok(Reply::ok(json!({
        "success": true,
        "config": shown(&app.config()),
        "restart_required": restart,
        "warnings": warnings,
    })))
}
