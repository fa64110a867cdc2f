//! `GET /api/config` (secrets masked) and `PUT /api/config`: the keys sent are merged into the
//! config file, the result validated (400 naming the key, the running config untouched), saved
//! atomically and applied; keys that need a restart are listed in `restart_required`.
//!
//! Who may PUT: a caller with an admin key (`auth.adminKeys`); with no admin keys, only a caller
//! on this machine (loopback) while auth is off. `FILE_ONLY_KEYS` (what runs on the host, where
//! data goes, who gets in) never change over HTTP: 403 naming the key.

use serde_json::{json, Value};

use crate::app::App;
use crate::config::{self, mask, Config, FILE_ONLY_KEYS, RESTART_KEYS};
use crate::fsutil;
use crate::housekeeping;
use crate::http::{ApiError, Caller, Ctx, Reply};

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
    may_change_config(&app.config(), &ctx.caller)?;
    let Some(Value::Object(_)) = &ctx.body else {
        return Err(ApiError::bad_request("body", "send a JSON object of the config keys to change"));
    };
    let mut change = ctx.body.clone().unwrap_or_default();
    // GET shows `--host`/`--port` from the command line; sent back unchanged they are no change.
    if let Some(keys) = change.as_object_mut() {
        let cli = &app.source;
        if cli.host.as_deref().is_some_and(|h| keys.get("host").and_then(Value::as_str) == Some(h)) {
            keys.remove("host");
        }
        if cli.port.is_some_and(|p| keys.get("port").and_then(Value::as_u64) == Some(u64::from(p))) {
            keys.remove("port");
        }
    }
    // The file as it is (keys it leaves out keep their defaults), else the running config.
    let before = config::read_json(&app.source.path).unwrap_or_else(|_| app.config().to_json());
    let mut file = before.clone();
    mask::unmask(&mut change, &app.config().to_json());
    config::merge(&mut file, change);
    let (next, warnings) = config::from_value(&file, app.source.defaults())
        .map_err(|e| ApiError::bad_request(&e.key, format!("{e}; nothing was changed")))?;
    let (old, old_warnings) = config::from_value(&before, app.source.defaults())
        .map_or_else(|_| (app.config().to_json(), Vec::new()), |(c, w)| (c.to_json(), w));
    // A typo is a 400 here, not a key saved to the file and warned about at every reload.
    if let Some(typo) = warnings.iter().find(|w| !old_warnings.contains(w)) {
        return Err(ApiError::bad_request("body", format!("{typo}; nothing was changed")));
    }
    refuse_file_only_changes(&old, &next.to_json())?;
    let next = app.source.override_cli(next);
    if let Some(problem) = next.open_bind_problem(&app.bound_host) {
        return Err(ApiError::bad_request("host", format!("{problem}; nothing was changed")));
    }
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    fsutil::write_private(&app.source.path, text.as_bytes())
        .map_err(|e| ApiError::new(500, format!("cannot save {}: {e}", app.source.path.display())))?;
    *app.config_stamp.lock() = housekeeping::file_stamp(&app.source.path);
    for warning in &warnings {
        log::warn!("{warning}");
    }
    let restart = housekeeping::apply(app, next);
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

/// Admin keys when there are any; else only from this machine, and only while auth is off.
fn may_change_config(config: &Config, caller: &Caller) -> Result<(), ApiError> {
    let refusal = if !config.auth.admin_keys.is_empty() {
        (!caller.admin).then_some(
            "changing the config over HTTP needs an admin key (one of auth.adminKeys); this key may only use the API",
        )
    } else if config.auth.has_keys() {
        Some("changing the config over HTTP needs an admin key: add one to auth.adminKeys in the config file")
    } else {
        (!caller.loopback).then_some(
            "changing the config over HTTP without keys is allowed only from this machine (127.0.0.1); \
             add auth.adminKeys to the config file to change it from elsewhere",
        )
    };
    refusal.map_or(Ok(()), |message| Err(ApiError::new(403, message)))
}

/// 403 naming the first key of `FILE_ONLY_KEYS` that this change would change.
fn refuse_file_only_changes(old: &Value, new: &Value) -> Result<(), ApiError> {
    let Some(pointer) = FILE_ONLY_KEYS.iter().find(|p| old.pointer(p) != new.pointer(p)) else {
        return Ok(());
    };
    let key = pointer.trim_start_matches('/').replace('/', ".");
    Err(ApiError {
        field: Some(key.clone()),
        ..ApiError::new(
            403,
            format!(
                "\"{key}\" cannot be changed over HTTP (it decides what runs on this machine, where data goes or \
                 who gets in); edit the config file on the server instead; nothing was changed"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn only_admins_may_change_the_config_and_without_keys_only_from_loopback() {
        let mut config = Config::defaults(Path::new("/h"), Path::new("/h"));
        let local = Caller { loopback: true, ..Caller::default() };
        assert!(may_change_config(&config, &local).is_ok());
        assert_eq!(may_change_config(&config, &Caller::default()).unwrap_err().status, 403);
        config.auth.api_keys = vec!["user".into()];
        let user = Caller { key: Some("user".into()), loopback: true, admin: false };
        assert!(may_change_config(&config, &user).unwrap_err().message.contains("auth.adminKeys"));
        config.auth.admin_keys = vec!["root".into()];
        assert_eq!(may_change_config(&config, &user).unwrap_err().status, 403);
        let admin = Caller { key: Some("root".into()), loopback: false, admin: true };
        assert!(may_change_config(&config, &admin).is_ok());
    }

    #[test]
    fn file_only_keys_are_refused_only_when_they_would_change() {
        let config = Config::defaults(Path::new("/h"), Path::new("/h")).to_json();
        assert!(refuse_file_only_changes(&config, &config).is_ok());
        for (pointer, value, field) in [
            ("/claudePath", json!("/bin/echo"), "claudePath"),
            ("/allowCallerOverrides", json!(true), "allowCallerOverrides"),
            ("/auth/apiKeys", json!(["x"]), "auth"),
            ("/mcp/enabled", json!(true), "mcp"),
            ("/claudeEnv", json!({"PATH": "/tmp"}), "claudeEnv"),
            ("/host", json!("0.0.0.0"), "host"),
            ("/webhook/defaultUrl", json!("http://evil.example/collect"), "webhook.defaultUrl"),
            ("/webhook/enabled", json!(true), "webhook.enabled"),
        ] {
            let mut changed = config.clone();
            *changed.pointer_mut(pointer).unwrap() = value;
            let err = refuse_file_only_changes(&config, &changed).unwrap_err();
            assert_eq!(err.status, 403, "{pointer}");
            assert_eq!(err.field.as_deref(), Some(field), "{pointer}");
        }
        let mut live = config.clone();
        live["defaultModel"] = json!("claude-opus-4-1");
        assert!(refuse_file_only_changes(&config, &live).is_ok());
    }
}
