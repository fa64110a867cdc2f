//! `POST /v1/chat/completions`: OpenAI's chat completions API over ccs turns, so any OpenAI
//! client can point its base URL at ccs. The messages become one turn (`conversation`); the
//! answer is a `chat.completion`, or with `stream` its `chat.completion.chunk` events ending in
//! `data: [DONE]`. Errors take OpenAI's shape (`http::Dialect`). Fields the CLI has no
//! equivalent for are checked and ignored (the README lists them).

use serde_json::{json, Value};

use super::conversation::{self, Conversation, Extras, Role, Usage};
use super::fields::{Fields, MAX_OBJECT_BYTES};
use super::stream::{self, Format, TextDeltas};
use crate::app::App;
use crate::http::{ApiError, Ctx, Dialect, Reply};
use crate::model::{Task, TaskStatus};

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
    "metadata",
    "store",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "ccs",
];

pub fn post(app: &App, ctx: &Ctx) -> Result<Reply, ApiError> {
    let f = Fields::new(ctx.body.as_ref(), FIELDS)?;
    let model = f.required_text("model")?;
    let mut conversation = read_messages(&f)?;
    check_ignored(&f)?;
    let include_usage = include_usage(&f)?;
    let metadata = metadata(&f)?;
    let extras = Extras::read(&f, ctx)?;
    let stream = f.boolean("stream")? == Some(true);
    if f.raw("stream_options").is_some() && !stream {
        return Err(ApiError::bad_request("stream_options", "\"stream_options\" is only taken with \"stream\": true"));
    }
    let (request, continued) = conversation::turn(app, &mut conversation, model.clone(), metadata, extras)?;
    if stream {
        return stream::run_as(app, request, move |task| {
            Box::new(Chunks {
                id: completion_id(task),
                created: task.created_at.timestamp(),
                model,
                conversation,
                continued,
                include_usage,
                text: TextDeltas::default(),
                headers: conversation::headers(task),
            })
        });
    }
    conversation::run_sync(app, request, conversation, move |task, answer| completion(task, &model, answer, continued))
}

/// `messages`: system and developer messages make the system prompt; user and assistant ones
/// the conversation.
fn read_messages(f: &Fields) -> Result<Conversation, ApiError> {
    let roles = ["system", "developer", "user", "assistant", "tool", "function"];
    let (mut system, mut turns) = (Vec::new(), Vec::new());
    for (i, (role, text)) in conversation::messages(f, &["role", "content", "name"], &roles)?.into_iter().enumerate() {
        match role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => turns.push((Role::User, text)),
            "assistant" => turns.push((Role::Assistant, text)),
            _ => return Err(ApiError::bad_request(&format!("messages[{i}].role"), TOOL_MESSAGES)),
        }
    }
    Conversation::new((!system.is_empty()).then(|| system.join("\n\n")), turns)
}

const TOOL_MESSAGES: &str = "tool and function messages are not supported: Claude Code runs its own tools \
                             in the project folder; send system, user and assistant messages";

/// Fields ccs takes but the CLI has nothing for: checked for their type, then ignored.
fn check_ignored(f: &Fields) -> Result<(), ApiError> {
    f.integer("max_tokens", 1, u32::MAX.into())?;
    f.integer("max_completion_tokens", 1, u32::MAX.into())?;
    conversation::ignored_number(f, "temperature", 0.0, 2.0)?;
    conversation::ignored_number(f, "top_p", 0.0, 1.0)?;
    for penalty in ["presence_penalty", "frequency_penalty"] {
        conversation::ignored_number(f, penalty, -2.0, 2.0)?;
    }
    if f.raw("seed").is_some_and(|s| !s.is_i64() && !s.is_u64()) {
        return Err(ApiError::bad_request("seed", "\"seed\" must be an integer"));
    }
    if f.integer("n", 1, 128)?.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("n", "\"n\" must be 1: ccs gives one answer per request"));
    }
    match f.raw("stop") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(stops)) if stops.len() <= 4 && stops.iter().all(Value::is_string) => {}
        Some(_) => return Err(ApiError::bad_request("stop", "\"stop\" must be a string or up to 4 strings")),
    }
    f.boolean("store")?;
    f.boolean("parallel_tool_calls")?;
    f.choice("tool_choice", &["none", "auto"])?;
    conversation::no_client_tools(f)
}

/// `stream_options.include_usage`: a last chunk with the usage.
fn include_usage(f: &Fields) -> Result<bool, ApiError> {
    let options = f.object("stream_options")?;
    let read = || {
        let o = Fields::new(options.as_ref(), &["include_usage", "include_obfuscation"])?;
        o.boolean("include_obfuscation")?;
        Ok(o.boolean("include_usage")? == Some(true))
    };
    read().map_err(|e| conversation::nested("stream_options", e))
}

/// The task's metadata: `metadata` (string values, as OpenAI's), and `user` when given.
fn metadata(f: &Fields) -> Result<Option<Value>, ApiError> {
    let mut metadata = f.object("metadata")?;
    if let Some(map) = metadata.as_ref().and_then(Value::as_object) {
        if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
            return Err(ApiError::bad_request("metadata", format!("\"metadata.{key}\" must be a string")));
        }
    }
    if let Some(user) = f.text("user")? {
        let with_user = metadata.get_or_insert_with(|| json!({}));
        with_user["user"] = Value::String(user);
        // Kept with the task and its session, as `metadata` is: within the same size.
        let size = with_user.to_string().len();
        if size > MAX_OBJECT_BYTES {
            return Err(ApiError::bad_request(
                "user",
                format!("\"user\" makes the metadata {size} bytes of JSON; at most {MAX_OBJECT_BYTES} are kept"),
            ));
        }
    }
    Ok(metadata)
}

fn completion_id(task: &Task) -> String {
    format!("chatcmpl-{}", task.id)
}

/// The `chat.completion` of a finished task.
fn completion(task: &Task, model: &str, answer: &str, continued: bool) -> Value {
    json!({
        "id": completion_id(task),
        "object": "chat.completion",
        "created": task.created_at.timestamp(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": answer, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": usage(task),
        "ccs": conversation::extension(task, continued),
    })
}

fn usage(task: &Task) -> Value {
    let u = Usage::of(&task.usage);
    json!({
        "prompt_tokens": u.prompt(),
        "completion_tokens": u.output,
        "total_tokens": u.prompt() + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    })
}

/// A streamed completion: `chat.completion.chunk` events (`data:` lines without names), the
/// last with `finish_reason` and ccs's figures, then the usage when asked, then `[DONE]`.
struct Chunks {
    id: String,
    created: i64,
    model: String,
    conversation: Conversation,
    continued: bool,
    include_usage: bool,
    text: TextDeltas,
    headers: Vec<(&'static str, String)>,
}

impl Chunks {
    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model, "choices": choices})
    }

    fn delta(&self, delta: Value, finish_reason: Option<&str>) -> String {
        let choice = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]);
        data(&self.chunk(choice))
    }
}

fn data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

impl Format for Chunks {
    fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.clone()
    }

    fn opening(&mut self, _task: &Task) -> String {
        self.delta(json!({"role": "assistant", "content": ""}), None)
    }

    fn line(&mut self, line: &str) -> String {
        match self.text.text_of(line) {
            text if text.is_empty() => text,
            text => self.delta(json!({"content": text}), None),
        }
    }

    fn ending(&mut self, app: &App, task: &Task) -> String {
        if task.status != TaskStatus::Completed {
            let error = super::claude::task_error(task).unwrap_or_else(|| ApiError::internal("the end of a stream"));
            return data(&error.render(Dialect::OpenAi).1) + "data: [DONE]\n\n";
        }
        let rest = self.text.rest(task.result.as_deref().unwrap_or_default());
        let mut text = if rest.is_empty() { rest } else { self.delta(json!({"content": rest}), None) };
        conversation::remember(app, &self.conversation, task, self.text.sent());
        let mut last = self.chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]));
        last["ccs"] = conversation::extension(task, self.continued);
        text += &data(&last);
        if self.include_usage {
            let mut usage_chunk = self.chunk(json!([]));
            usage_chunk["usage"] = usage(task);
            text += &data(&usage_chunk);
        }
        text + "data: [DONE]\n\n"
    }
}
