//! Turning a JSON document into a `Config`, key by key, so every error names the key that is
//! wrong and what it should be. Keys not given keep the value of the `base` config.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::{Amount, Config, LogLevel, StorageType};

/// A config value that is wrong: the dotted key and what it must be.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config key \"{}\" {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.into() }
}

/// Builds a config from `value` on top of `base`; returns it with warnings about unknown keys.
pub fn from_value(value: &Value, base: Config) -> Result<(Config, Vec<String>), ConfigError> {
    let root = value.as_object().ok_or_else(|| bad("(root)", "must be a JSON object"))?;
    let mut c = base;
    let mut warnings = Vec::new();
    for (key, v) in root {
        let k = key.as_str();
        match k {
            "port" => c.port = int(k, v, 1, 65_535)? as u16,
            "host" => c.host = non_empty(k, v)?,
            "claudePath" => c.claude_path = non_empty(k, v)?,
            "nvmBin" => c.nvm_bin = opt_string(k, v)?,
            "defaultProjectPath" => c.default_project_path = non_empty(k, v)?,
            "logFile" => c.log_file = non_empty(k, v)?.into(),
            "pidFile" => c.pid_file = non_empty(k, v)?.into(),
            "dataDir" => c.data_dir = non_empty(k, v)?.into(),
            "sessionRetentionDays" => c.session_retention_days = int(k, v, 1, 36_500)? as u32,
            "taskQueue" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    let q = &mut c.task_queue;
                    match sub.as_str() {
                        "concurrency" => q.concurrency = int(key, v, 1, 64)? as usize,
                        "defaultTimeout" => q.default_timeout = int(key, v, 1_000, 86_400_000)?,
                        "maxPending" => q.max_pending = int(key, v, 1, 10_000_000)? as usize,
                        "killGraceMs" => q.kill_grace_ms = int(key, v, 0, 600_000)?,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "webhook" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    let w = &mut c.webhook;
                    match sub.as_str() {
                        "enabled" => w.enabled = boolean(key, v)?,
                        "defaultUrl" => w.default_url = opt_url(key, v)?,
                        "timeout" => w.timeout = int(key, v, 100, 600_000)?,
                        "retries" => w.retries = int(key, v, 0, 20)? as u32,
                        "secret" => w.secret = opt_string(key, v)?,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "rateLimit" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    let r = &mut c.rate_limit;
                    match sub.as_str() {
                        "enabled" => r.enabled = boolean(key, v)?,
                        "windowMs" => r.window_ms = int(key, v, 1, 86_400_000)?,
                        "maxRequests" => r.max_requests = int(key, v, 1, u32::MAX as u64)?,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "defaultModel" => c.default_model = non_empty(k, v)?,
            "models" => c.models = strings(k, v)?,
            "maxBudgetUsd" => c.max_budget_usd = number(k, v, 0.0)?,
            "statistics" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    match sub.as_str() {
                        "enabled" => c.statistics.enabled = boolean(key, v)?,
                        // The original server's flush interval: ccs writes each run's figures as it ends.
                        "collectionInterval" => warnings.push(format!(
                            "config key \"{key}\" is ignored: ccs records statistics as each run ends; remove it"
                        )),
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "mcp" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    match sub.as_str() {
                        "enabled" => c.mcp.enabled = boolean(key, v)?,
                        "configPath" => c.mcp.config_path = opt_string(key, v)?,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "logLevel" => c.log_level = log_level(k, v)?,
            "storageType" => c.storage_type = storage_type(k, v)?,
            "redisUrl" => c.redis_url = opt_string(k, v)?,
            "redisKeyPrefix" => c.redis_key_prefix = non_empty(k, v)?,
            "redisLeaseMs" => c.redis_lease_ms = int(k, v, 1_000, 3_600_000)?,
            "auth" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    match sub.as_str() {
                        "apiKeys" => c.auth.api_keys = strings(&key, v)?,
                        "adminKeys" => c.auth.admin_keys = strings(&key, v)?,
                        _ => warnings.push(unknown(&key)),
                    }
                }
            }
            "allowedProjectRoots" => c.allowed_project_roots = strings(k, v)?,
            "maxBodyBytes" => c.max_body_bytes = int(k, v, 1_024, 1 << 30)?,
            "taskRetentionDays" => c.task_retention_days = int(k, v, 1, 36_500)? as u32,
            "claudeEnv" => c.claude_env = string_map(k, v)?,
            "permissionMode" => c.permission_mode = opt_string(k, v)?,
            "allowedTools" => c.allowed_tools = strings(k, v)?,
            "disallowedTools" => c.disallowed_tools = strings(k, v)?,
            "allowCallerOverrides" => c.allow_caller_overrides = boolean(k, v)?,
            "httpThreads" => c.http_threads = int(k, v, 1, 256)? as usize,
            "http" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    let h = &mut c.http;
                    match sub.as_str() {
                        "readTimeoutMs" => h.read_timeout_ms = int(key, v, 100, 3_600_000)?,
                        "keepAliveMs" => h.keep_alive_ms = int(key, v, 100, 3_600_000)?,
                        "writeTimeoutMs" => h.write_timeout_ms = int(key, v, 100, 3_600_000)?,
                        "maxConnections" => h.max_connections = int(key, v, 1, 1_000_000)? as usize,
                        "maxHeadBytes" => h.max_head_bytes = int(key, v, 1_024, 16 << 20)? as usize,
                        "maxUrlBytes" => h.max_url_bytes = int(key, v, 256, 1 << 20)? as usize,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            "liveCli" => {
                for (sub, v) in section(k, v)? {
                    let key = format!("{k}.{sub}");
                    let key = key.as_str();
                    let l = &mut c.live_cli;
                    match sub.as_str() {
                        "enabled" => l.enabled = boolean(key, v)?,
                        "keepMs" => l.keep_ms = int(key, v, 0, 86_400_000)?,
                        "spares" => l.spares = amount(key, v, 16)?,
                        "maxProcesses" => l.max_processes = amount(key, v, 256)?,
                        _ => warnings.push(unknown(key)),
                    }
                }
            }
            _ => warnings.push(unknown(k)),
        }
    }
    if c.mcp.enabled && c.mcp.config_path.is_none() {
        return Err(bad("mcp.configPath", "must be set when mcp.enabled is true"));
    }
    if c.storage_type == StorageType::Redis && c.redis_url.is_none() {
        return Err(bad("redisUrl", "must be set when storageType is \"redis\" (e.g. \"redis://127.0.0.1:6379/0\")"));
    }
    Ok((c, warnings))
}

fn unknown(key: &str) -> String {
    format!("unknown config key \"{key}\" (check its spelling)")
}

fn section<'a>(key: &str, v: &'a Value) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object().ok_or_else(|| bad(key, "must be an object"))
}

fn int(key: &str, v: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(key, format!("must be an integer from {min} to {max} (got {v})"))),
    }
}

/// `"auto"` or a count from 0 to `max`.
fn amount(key: &str, v: &Value, max: u64) -> Result<Amount, ConfigError> {
    match (v.as_str(), v.as_u64()) {
        (Some("auto"), _) => Ok(Amount::Auto),
        (_, Some(n)) if n <= max => Ok(Amount::Count(n as usize)),
        _ => Err(bad(key, format!("must be \"auto\" or an integer from 0 to {max} (got {v})"))),
    }
}

fn number(key: &str, v: &Value, min: f64) -> Result<f64, ConfigError> {
    match v.as_f64() {
        Some(n) if n >= min && n.is_finite() => Ok(n),
        _ => Err(bad(key, format!("must be a number >= {min} (got {v})"))),
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| bad(key, format!("must be true or false (got {v})")))
}

fn non_empty(key: &str, v: &Value) -> Result<String, ConfigError> {
    match v.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(bad(key, format!("must be a non-empty string (got {v})"))),
    }
}

fn opt_string(key: &str, v: &Value) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(key, format!("must be a string or null (got {v})"))),
    }
}

fn opt_url(key: &str, v: &Value) -> Result<Option<String>, ConfigError> {
    let url = opt_string(key, v)?;
    match &url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(bad(key, format!("must be an http:// or https:// URL (got \"{u}\")")))
        }
        _ => Ok(url),
    }
}

fn strings(key: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    let items = v.as_array().ok_or_else(|| bad(key, "must be a list of strings"))?;
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(bad(key, format!("must hold only non-empty strings (got {item})"))),
        })
        .collect()
}

fn string_map(key: &str, v: &Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let map = v.as_object().ok_or_else(|| bad(key, "must be an object of string values"))?;
    map.iter()
        .map(|(name, value)| match value.as_str() {
            Some(s) if !name.is_empty() && !name.contains('=') => Ok((name.clone(), s.to_string())),
            _ => Err(bad(&format!("{key}.{name}"), "must be a string (and the name must not contain '=')")),
        })
        .collect()
}

fn log_level(key: &str, v: &Value) -> Result<LogLevel, ConfigError> {
    let levels = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];
    let name = v.as_str().unwrap_or_default();
    LogLevel::NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| levels[i])
        .ok_or_else(|| bad(key, format!("must be one of {} (got {v})", LogLevel::NAMES.join(", "))))
}

fn storage_type(key: &str, v: &Value) -> Result<StorageType, ConfigError> {
    match v.as_str() {
        Some("file") => Ok(StorageType::File),
        Some("memory") => Ok(StorageType::Memory),
        Some("redis") => Ok(StorageType::Redis),
        _ => Err(bad(key, format!("must be \"file\", \"memory\" or \"redis\" (got {v})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn base() -> Config {
        Config::defaults(Path::new("/h/.ccs"), Path::new("/h"))
    }

    #[test]
    fn partial_config_keeps_defaults_for_missing_keys() {
        let (c, w) = from_value(&json!({"port": 7000, "taskQueue": {"concurrency": 5}}), base()).unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.task_queue.concurrency, 5);
        assert_eq!(c.task_queue.default_timeout, 300_000);
        assert!(w.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (json!({"port": "80"}), "port"),
            (json!({"port": 0}), "port"),
            (json!({"taskQueue": {"concurrency": 65}}), "taskQueue.concurrency"),
            (json!({"taskQueue": {"concurrency": 2.5}}), "taskQueue.concurrency"),
            (json!({"taskQueue": 3}), "taskQueue"),
            (json!({"logLevel": "verbose"}), "logLevel"),
            (json!({"maxBudgetUsd": -1}), "maxBudgetUsd"),
            (json!({"webhook": {"defaultUrl": "ftp://x"}}), "webhook.defaultUrl"),
            (json!({"claudeEnv": {"A": 1}}), "claudeEnv.A"),
            (json!({"storageType": "sql"}), "storageType"),
            (json!({"mcp": {"enabled": true}}), "mcp.configPath"),
            (json!([1]), "(root)"),
        ];
        for (value, key) in cases {
            let err = from_value(&value, base()).unwrap_err();
            assert_eq!(err.key, key, "for {value}");
            assert!(err.to_string().contains(key));
        }
    }

    #[test]
    fn the_statistics_interval_of_the_original_server_is_ignored_with_a_warning() {
        let (c, w) = from_value(&json!({"statistics": {"collectionInterval": 5000}}), base()).unwrap();
        assert_eq!(c, base());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("\"statistics.collectionInterval\" is ignored"), "{w:?}");
    }

    #[test]
    fn unknown_keys_are_warnings_not_errors() {
        let (c, w) = from_value(&json!({"prot": 1, "taskQueue": {"concurency": 9}}), base()).unwrap();
        assert_eq!(c, base());
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("\"prot\""), "{w:?}");
        assert!(w[1].contains("\"taskQueue.concurency\""), "{w:?}");
    }

    #[test]
    fn null_clears_optional_keys() {
        let (c, _) = from_value(&json!({"nvmBin": null, "webhook": {"secret": null}}), base()).unwrap();
        assert_eq!(c.nvm_bin, None);
        assert_eq!(c.webhook.secret, None);
    }
}
