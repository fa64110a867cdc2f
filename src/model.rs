//! The records ccs keeps: sessions, their turns, tasks (one run of the CLI each), webhook
//! deliveries and the statistics of each day.
//! These are the on-disk format: fields are only ever added, with `#[serde(default)]`.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::money;

/// The current time at the millisecond precision records keep (`2026-11-21T12:19:31.910Z`).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Now as the API writes it: RFC 3339, milliseconds, UTC.
pub fn now_iso() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Active,
    Archived,
    Closed,
}

impl SessionStatus {
    pub const NAMES: &'static [&'static str] = &["active", "archived", "closed"];

    pub fn parse(name: &str) -> Option<SessionStatus> {
        match name {
            "active" => Some(SessionStatus::Active),
            "archived" => Some(SessionStatus::Archived),
            "closed" => Some(SessionStatus::Closed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Archived => "archived",
            SessionStatus::Closed => "closed",
        }
    }
}

/// A conversation in one project folder; its id is also the CLI's session id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub project_path: String,
    pub model: String,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub max_budget_usd: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub messages_count: u64,
    pub total_cost_usd: f64,
    pub status: SessionStatus,
    #[serde(default)]
    pub metadata: Value,
    /// Whether the CLI already has this session (later turns then `--resume` it).
    #[serde(default)]
    pub cli_started: bool,
    /// The digest of the conversation a `/v1/` client holds of this session, as of its last
    /// turn (the id of its `ConversationLink`; `api::conversation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
}

/// A conversation a `/v1/` client holds, as a digest of its messages (the id), and the session
/// that continues it, as of that session's `messages_count` then: a client that sends the same
/// messages and one more gets that session resumed instead of the history replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationLink {
    pub id: String,
    pub session_id: String,
    pub messages_count: u64,
    pub created_at: DateTime<Utc>,
}

impl Session {
    /// The session as the API shows it (internal bookkeeping left out).
    pub fn to_api(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("cli_started");
            map.remove("conversation");
        }
        value
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Timeout,
    Cancelled,
    Interrupted,
}

impl TaskStatus {
    pub fn name(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Timeout => "timeout",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Interrupted => "interrupted",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Processing)
    }
}

/// One prompt and its answer within a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub session_id: String,
    pub seq: u64,
    pub task_id: String,
    pub prompt: String,
    pub status: TaskStatus,
    pub result: Option<String>,
    pub error: Option<String>,
    pub cost_usd: f64,
    pub duration_ms: u64,
    #[serde(default)]
    pub num_turns: Option<u64>,
    #[serde(default)]
    pub usage: Value,
    pub created_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

impl Turn {
    /// The store id of turn `seq` of a session: sorts in order within the session.
    pub fn key(session_id: &str, seq: u64) -> String {
        format!("{session_id}.{seq:08}")
    }
}

/// Everything a caller asked for in one turn; stored with its task, so a task that waits in the
/// queue across a restart still runs with every option it was given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TurnRequest {
    pub prompt: String,
    pub session_id: Option<String>,
    pub project_path: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub append_system_prompt: Option<String>,
    pub max_budget_usd: Option<f64>,
    pub max_turns: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub allowed_tools: Option<Vec<String>>,
    pub disallowed_tools: Option<Vec<String>>,
    pub permission_mode: Option<String>,
    pub agent: Option<String>,
    pub mcp_config: Option<String>,
    pub metadata: Option<Value>,
    pub priority: Priority,
    pub webhook_url: Option<String>,
    /// Run the CLI in stream-json mode, so its events can be followed as they come.
    pub stream: bool,
}

/// Whether a caller waits on the HTTP request for the answer (sync) or comes back for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Sync,
    Async,
}

/// Where a task's webhook stands (SPEC 9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookState {
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A task's priority: from `MIN` (1) to `MAX` (10), `DEFAULT` 5; higher runs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 10;
    pub const DEFAULT: Priority = Priority(5);

    /// `n` as a priority, if it is within the bounds.
    pub fn new(n: u64) -> Option<Priority> {
        (u64::from(Priority::MIN)..=u64::from(Priority::MAX)).contains(&n).then_some(Priority(n as u8))
    }
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::DEFAULT
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One run of the CLI, sync or async.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    pub priority: Priority,
    pub prompt: String,
    pub project_path: String,
    pub model: String,
    pub session_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub cost_usd: Option<f64>,
    pub duration_ms: Option<u64>,
    pub num_turns: Option<u64>,
    #[serde(default)]
    pub usage: Value,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub webhook: Option<WebhookState>,
    /// Arrival order, for FIFO within a priority (also across restarts).
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub request: TurnRequest,
    /// The process group of its CLI (the CLI's pid), recorded when it starts: a start after a
    /// crash kills that group if it still carries this task's `CCS_TASK_ID`. Never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgid: Option<i32>,
}

impl Task {
    /// The task as the API shows it (the stored request, arrival number and process group left
    /// out).
    pub fn to_api(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("request");
            map.remove("seq");
            map.remove("pgid");
        }
        value
    }
}

/// A webhook waiting to be delivered (removed once delivered or given up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook-id`: the same on every attempt.
    pub id: String,
    pub task_id: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// The counters of one day (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Day {
    pub date: String,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    pub cost_micros: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
    pub models: BTreeMap<String, ModelCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelCount {
    pub count: u64,
    pub cost_micros: u64,
}

impl Day {
    /// Adds the counters of `other` (one run, or another day).
    pub fn add(&mut self, other: &Day) {
        self.total_requests += other.total_requests;
        self.successful_requests += other.successful_requests;
        self.failed_requests += other.failed_requests;
        self.cost_micros += other.cost_micros;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.duration_ms += other.duration_ms;
        for (name, m) in &other.models {
            let mine = self.models.entry(name.clone()).or_default();
            mine.count += m.count;
            mine.cost_micros += m.cost_micros;
        }
    }

    pub fn avg_duration_ms(&self) -> u64 {
        self.duration_ms.checked_div(self.total_requests).unwrap_or(0)
    }

    /// The day as the API shows it.
    pub fn to_api(&self) -> Value {
        let models: BTreeMap<&String, u64> = self.models.iter().map(|(k, m)| (k, m.count)).collect();
        json!({
            "date": self.date,
            "total_requests": self.total_requests,
            "successful_requests": self.successful_requests,
            "failed_requests": self.failed_requests,
            "total_cost_usd": money::to_usd(self.cost_micros),
            "total_input_tokens": self.input_tokens,
            "total_output_tokens": self.output_tokens,
            "avg_duration_ms": self.avg_duration_ms(),
            "models": models,
        })
    }
}
