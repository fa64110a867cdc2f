//! `POST /v1/messages`: Anthropic's Messages API over ccs turns, so any Anthropic client can
//! point its base URL at ccs. The messages become one turn (`conversation`); the answer is a
//! `message`, or with `stream` Anthropic's events (`message_start`, `content_block_start`,
//! `content_block_delta`..., `message_stop`). Errors take Anthropic's shape (`http::Dialect`).
//! Fields the CLI has no equivalent for are checked and ignored (the README lists them).

use serde_json::{json, Value};

use super::conversation::{self, Conversation, Extras, Role, Usage};
use super::fields::Fields;
use super::stream::{self, event, Format, TextDeltas};
use crate::app::App;
use crate::http::{ApiError, Ctx, Dialect, Reply};
use crate::model::{Task, TaskStatus};

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "ccs",
];

pub fn post(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), FIELDS)?;
    let model = f.required_text("model")?;
    let mut conversation = read_conversation(&f)?;
    check_ignored(&f)?;
    let metadata = metadata(&f)?;
    let extras = Extras::read(&f, ctx)?;
    let stream = f.boolean("stream")? == Some(true);
    let (request, continued) = conversation::turn(app, &mut conversation, model.clone(), metadata, extras)?;
    if stream {
        return stream::run_as(app, request, move |task| {
            Box::new(Events {
                model,
                conversation,
                continued,
                text: TextDeltas::default(),
                headers: conversation::headers(task),
            })
        });
    }
    conversation::run_sync(app, request, conversation, move |task, answer| message(task, &model, answer, continued))
}

/// `system` and `messages` (user and assistant, text content).
fn read_conversation(f: &Fields) -> Result<Conversation, ApiError> {
    let system = f.raw("system").map(|s| conversation::content_text(s, "system")).transpose()?;
    let turns = conversation::messages(f, &["role", "content"], &["user", "assistant"])?
        .into_iter()
        .map(|(role, text)| (if role == "user" { Role::User } else { Role::Assistant }, text))
        .collect();
    Conversation::new(system, turns)
}

/// Fields ccs takes but the CLI has nothing for: checked for their type, then ignored.
fn check_ignored(f: &Fields) -> Result<(), ApiError> {
    f.integer("max_tokens", 1, u32::MAX.into())?;
    conversation::ignored_number(f, "temperature", 0.0, 1.0)?;
    conversation::ignored_number(f, "top_p", 0.0, 1.0)?;
    f.integer("top_k", 0, u32::MAX.into())?;
    f.text_list("stop_sequences", 8191).or_else(|e| match f.raw("stop_sequences") {
        Some(Value::Array(empty)) if empty.is_empty() => Ok(None),
        _ => Err(e),
    })?;
    f.object("thinking")?;
    f.object("tool_choice")?;
    f.text("service_tier")?;
    conversation::no_client_tools(f)
}

/// The task's metadata: Anthropic's `metadata` (`user_id` only).
fn metadata(f: &Fields) -> Result<Option<Value>, ApiError> {
    let metadata = f.object("metadata")?;
    let m = Fields::new(metadata.as_ref(), &["user_id"]).map_err(|e| conversation::nested("metadata", e))?;
    m.text("user_id").map_err(|e| conversation::nested("metadata", e))?;
    Ok(metadata)
}

/// A message id: `msg_` and the task id's hex digits.
fn message_id(task: &Task) -> String {
    format!("msg_{}", task.id.replace('-', ""))
}

/// The `message` of a finished task.
fn message(task: &Task, model: &str, answer: &str, continued: bool) -> Value {
    json!({
        "id": message_id(task),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage(task),
        "ccs": conversation::extension(task, continued),
    })
}

fn usage(task: &Task) -> Value {
    let u = Usage::of(&task.usage);
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_creation,
        "cache_read_input_tokens": u.cache_read,
    })
}

/// A streamed message: one text block, its deltas as they come, then the usage and ccs's
/// figures in `message_delta`, then `message_stop`; or an `error` event.
struct Events {
    model: String,
    conversation: Conversation,
    continued: bool,
    text: TextDeltas,
    headers: Vec<(&'static str, String)>,
}

fn text_delta(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
    event("content_block_delta", &delta.to_string())
}

impl Format for Events {
    fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.clone()
    }

    fn opening(&mut self, task: &Task) -> String {
        let start = json!({"type": "message_start", "message": {
            "id": message_id(task), "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 0, "output_tokens": 0},
        }});
        let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
        event("message_start", &start.to_string()) + &event("content_block_start", &block.to_string())
    }

    fn line(&mut self, line: &str) -> String {
        text_delta(&self.text.text_of(line))
    }

    fn ending(&mut self, app: &App, task: &Task) -> String {
        if task.status != TaskStatus::Completed {
            let error = super::claude::task_error(task).unwrap_or_else(|| ApiError::internal("the end of a stream"));
            return event("error", &error.render(Dialect::Anthropic).1.to_string());
        }
        let mut text = text_delta(&self.text.rest(task.result.as_deref().unwrap_or_default()));
        conversation::remember(app, &self.conversation, task, self.text.sent());
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                           "usage": usage(task), "ccs": conversation::extension(task, self.continued)});
        text += &event("content_block_stop", &json!({"type": "content_block_stop", "index": 0}).to_string());
        text += &event("message_delta", &delta.to_string());
        text + &event("message_stop", &json!({"type": "message_stop"}).to_string())
    }
}
