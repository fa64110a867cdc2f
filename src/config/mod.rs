//! The configuration (SPEC 3): the keys of the original server plus ccs's own, their defaults,
//! validation that names the offending key, and which keys need a restart.
//!
//! `Config` is immutable once built; a reload builds a new one and swaps the `Arc` whole.

mod file;
pub mod mask;
mod parse;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use file::{load_or_create, merge, read_file, read_json, LoadError};
pub use parse::{from_value, ConfigError};
pub use source::ConfigSource;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub port: u16,
    pub host: String,
    pub claude_path: String,
    pub nvm_bin: Option<String>,
    pub default_project_path: String,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
    pub data_dir: PathBuf,
    pub session_retention_days: u32,
    pub task_queue: TaskQueue,
    pub webhook: Webhook,
    pub rate_limit: RateLimit,
    pub default_model: String,
    /// The models callers may ask for (empty: see `Config::allows_model`).
    pub models: Vec<String>,
    pub max_budget_usd: f64,
    pub statistics: Statistics,
    pub mcp: Mcp,
    pub log_level: LogLevel,
    pub storage_type: StorageType,
    pub redis_url: Option<String>,
    /// Every key ccs writes in Redis starts with it (default `ccs:`).
    pub redis_key_prefix: String,
    /// How long a server's claim on a running task holds without its heartbeat (ms); then the
    /// other servers mark the task interrupted.
    pub redis_lease_ms: u64,
    pub auth: Auth,
    pub allowed_project_roots: Vec<String>,
    pub max_body_bytes: u64,
    pub task_retention_days: u32,
    pub claude_env: BTreeMap<String, String>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub allow_caller_overrides: bool,
    pub http_threads: usize,
    pub http: Http,
    pub live_cli: LiveCli,
}

/// Live CLI processes (SPEC 13): a session's CLI kept running for its next turn, and spares
/// started ahead for new sessions (`runner::live`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCli {
    /// `false`: every turn starts its own CLI and ends it, as before live processes.
    pub enabled: bool,
    /// How long an idle live process waits for its session's next turn.
    pub keep_ms: u64,
    /// Processes started ahead for the default options (`auto`: from the memory available).
    pub spares: Amount,
    /// Live and spare processes at most (`auto`: from the memory available).
    pub max_processes: Amount,
}

/// A count, or `"auto"`: decided from the host's memory when the server starts or reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Auto,
    Count(usize),
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Auto => serializer.serialize_str("auto"),
            Amount::Count(n) => serializer.serialize_u64(*n as u64),
        }
    }
}

/// What one client may hold of the HTTP edge (see the README's "Security").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    /// The whole request head, and then the whole body, must arrive within this.
    pub read_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this.
    pub keep_alive_ms: u64,
    /// Each write of an answer must go through within this.
    pub write_timeout_ms: u64,
    /// Open connections at most; at the cap a newcomer closes the longest-idle one, or waits in
    /// the kernel's queue when none is idle.
    pub max_connections: usize,
    /// Request line and headers at most (431 above).
    pub max_head_bytes: usize,
    /// Request line at most (414 above).
    pub max_url_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskQueue {
    pub concurrency: usize,
    pub default_timeout: u64,
    pub max_pending: usize,
    pub kill_grace_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub enabled: bool,
    pub default_url: Option<String>,
    pub timeout: u64,
    pub retries: u32,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub enabled: bool,
    pub window_ms: u64,
    pub max_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mcp {
    pub enabled: bool,
    pub config_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    pub api_keys: Vec<String>,
    /// Keys that may also change the config over HTTP.
    pub admin_keys: Vec<String>,
}

impl Auth {
    /// Whether requests need a key.
    pub fn has_keys(&self) -> bool {
        !self.api_keys.is_empty() || !self.admin_keys.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const NAMES: &'static [&'static str] = &["error", "warn", "info", "debug", "trace"];

    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    File,
    Memory,
    Redis,
}

/// The keys a running server cannot change without a restart.
pub const RESTART_KEYS: &[&str] = &[
    "port",
    "host",
    "dataDir",
    "storageType",
    "redisUrl",
    "redisKeyPrefix",
    "redisLeaseMs",
    "httpThreads",
    "http",
    "logFile",
    "pidFile",
];

/// The CLI's model aliases (it resolves them; CLI.md), offered when `models` is not set.
pub const MODEL_ALIASES: &[&str] = &["sonnet", "opus", "haiku"];

impl Config {
    /// The models this server offers (`GET /v1/models`): `models`, or when it is empty the
    /// CLI's aliases and `defaultModel`.
    pub fn offered_models(&self) -> Vec<String> {
        if !self.models.is_empty() {
            return self.models.clone();
        }
        let mut offered: Vec<String> = MODEL_ALIASES.iter().map(|m| m.to_string()).collect();
        if !offered.contains(&self.default_model) {
            offered.push(self.default_model.clone());
        }
        offered
    }

    /// Whether a caller may ask for `model`: one of `models` when that is set; else one of the
    /// offered models or a full Claude model id (`claude-...`), which the CLI passes on as it is.
    pub fn allows_model(&self, model: &str) -> bool {
        if !self.models.is_empty() {
            return self.models.iter().any(|m| m == model);
        }
        self.offered_models().iter().any(|m| m == model)
            || model.strip_prefix("claude-").is_some_and(|id| !id.is_empty() && id.bytes().all(is_model_id_byte))
    }
}

fn is_model_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b'@')
}

/// Keys that decide what runs on the host, where data goes (results sent to a webhook
/// included), or who gets in: changed only by editing the config file, never over HTTP
/// (`PUT /api/config` answers 403 naming them).
pub const FILE_ONLY_KEYS: &[&str] = &[
    "/claudePath",
    "/nvmBin",
    "/claudeEnv",
    "/mcp",
    "/permissionMode",
    "/allowedTools",
    "/disallowedTools",
    "/allowCallerOverrides",
    "/allowedProjectRoots",
    "/auth",
    "/dataDir",
    "/storageType",
    "/redisUrl",
    "/redisKeyPrefix",
    "/logFile",
    "/pidFile",
    "/host",
    "/webhook/enabled",
    "/webhook/defaultUrl",
    "/webhook/secret",
];

/// Whether a change (a JSON object of config keys) touches one of `FILE_ONLY_KEYS`.
pub fn touches_file_only_keys(change: &serde_json::Value) -> bool {
    FILE_ONLY_KEYS.iter().any(|pointer| change.pointer(pointer).is_some())
}

impl Config {
    /// The environment the CLI gets on top of the server's: PATH with `nvmBin` first, and `claudeEnv`.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(bin) = &self.nvm_bin {
            let path = std::env::var("PATH").unwrap_or_default();
            env.push(("PATH".to_string(), if path.is_empty() { bin.clone() } else { format!("{bin}:{path}") }));
        }
        env.extend(self.claude_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// The full default config for a state folder `home`; `user_home` is the user's `$HOME`.
    pub fn defaults(home: &Path, user_home: &Path) -> Config {
        Config {
            port: 5546,
            host: "127.0.0.1".into(),
            claude_path: "claude".into(),
            nvm_bin: None,
            default_project_path: user_home.join("workspace").to_string_lossy().into_owned(),
            log_file: home.join("logs").join("server.log"),
            pid_file: home.join("server.pid"),
            data_dir: home.join("data"),
            session_retention_days: 30,
            task_queue: TaskQueue {
                concurrency: 3,
                default_timeout: 300_000,
                max_pending: 10_000,
                kill_grace_ms: 5_000,
            },
            webhook: Webhook { enabled: false, default_url: None, timeout: 5_000, retries: 3, secret: None },
            rate_limit: RateLimit { enabled: true, window_ms: 60_000, max_requests: 100 },
            default_model: "claude-sonnet-4-5".into(),
            models: Vec::new(),
            max_budget_usd: 10.0,
            statistics: Statistics { enabled: true },
            mcp: Mcp { enabled: false, config_path: None },
            log_level: LogLevel::Info,
            storage_type: StorageType::File,
            redis_url: None,
            redis_key_prefix: "ccs:".into(),
            redis_lease_ms: 15_000,
            auth: Auth { api_keys: Vec::new(), admin_keys: Vec::new() },
            allowed_project_roots: Vec::new(),
            max_body_bytes: 1024 * 1024,
            task_retention_days: 30,
            claude_env: BTreeMap::new(),
            permission_mode: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            allow_caller_overrides: false,
            http_threads: 8,
            http: Http {
                read_timeout_ms: 30_000,
                keep_alive_ms: 10_000,
                write_timeout_ms: 30_000,
                max_connections: 1_024,
                max_head_bytes: 64 * 1024,
                max_url_bytes: 8 * 1024,
            },
            live_cli: LiveCli { enabled: true, keep_ms: 300_000, spares: Amount::Auto, max_processes: Amount::Auto },
        }
    }

    /// The config as JSON, the way it is written to `config.json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The keys whose change needs a restart, comparing `self` (running) with `next`.
    pub fn restart_required(&self, next: &Config) -> Vec<&'static str> {
        let (old, new) = (self.to_json(), next.to_json());
        RESTART_KEYS.iter().copied().filter(|key| old.get(key) != new.get(key)).collect()
    }

    /// Refuses a config that would listen on a non-loopback address without any key (SPEC 8).
    pub fn refuse_open_bind(&self) -> Result<(), String> {
        self.open_bind_problem(&self.host).map_or(Ok(()), Err)
    }

    /// Why this config must not serve a server bound to `bound_host` (the running bind, which a
    /// reload does not change): a non-loopback address without any key (SPEC 8).
    pub fn open_bind_problem(&self, bound_host: &str) -> Option<String> {
        let open = !is_loopback(&self.host) || !is_loopback(bound_host);
        if !open || self.auth.has_keys() {
            return None;
        }
        let host = if is_loopback(&self.host) { bound_host } else { &self.host };
        Some(format!(
            "refusing to listen on {host} without an API key: anyone who can reach it could run claude on this machine. \
             Add a key to auth.apiKeys in the config (e.g. \"auth\": {{\"apiKeys\": [\"<a long random string>\"]}}) \
             or set host to 127.0.0.1"
        ))
    }
}

/// Whether `host` (a name or an address, without a port) is this machine's loopback, where
/// running without an API key is safe.
pub fn is_loopback(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_validation_without_warnings() {
        let defaults = Config::defaults(Path::new("/h/.ccs"), Path::new("/h"));
        let (parsed, warnings) = from_value(&defaults.to_json(), defaults.clone()).unwrap();
        assert_eq!(parsed, defaults);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_open_bind_needs_a_key_whether_the_config_or_the_running_server_has_it() {
        let mut c = Config::defaults(Path::new("/h/.ccs"), Path::new("/h"));
        assert_eq!(c.open_bind_problem("127.0.0.1"), None);
        assert!(c.open_bind_problem("0.0.0.0").is_some(), "a reload on an open server must keep a key");
        c.host = "0.0.0.0".into();
        assert!(c.open_bind_problem("127.0.0.1").unwrap().contains("0.0.0.0"));
        c.auth.admin_keys = vec!["k".into()];
        assert_eq!(c.open_bind_problem("0.0.0.0"), None);
    }

    #[test]
    fn a_change_touches_file_only_keys_at_any_depth() {
        assert!(touches_file_only_keys(&serde_json::json!({"claudePath": "/x"})));
        assert!(touches_file_only_keys(&serde_json::json!({"webhook": {"defaultUrl": "http://x"}})));
        assert!(!touches_file_only_keys(&serde_json::json!({"webhook": {"timeout": 100}, "defaultModel": "m"})));
    }

    #[test]
    fn restart_keys_are_reported() {
        let a = Config::defaults(Path::new("/h/.ccs"), Path::new("/h"));
        let mut b = a.clone();
        b.port = 6000;
        b.task_queue.concurrency = 5;
        assert_eq!(a.restart_required(&b), vec!["port"]);
    }
}
