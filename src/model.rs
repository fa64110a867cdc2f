//! The records ccs keeps: sessions, their turns, and tasks (one run of the CLI each).
//! These are the on-disk format: fields are only ever added, with `#[serde(default)]`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl Session {
    /// The session as the API shows it (internal bookkeeping left out).
    pub fn to_api(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("cli_started");
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
    pub priority: u8,
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

/// One run of the CLI, sync or async.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub status: TaskStatus,
    pub priority: u8,
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
