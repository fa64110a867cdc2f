//! What the `/v1/` APIs (OpenAI chat completions, Anthropic messages) share: a client's whole
//! conversation in, one ccs turn out, and the answer's figures back in their terms.
//!
//! A client sends its whole history each time. ccs continues the session that holds it (one
//! `--resume`, or its live process, with only the new user message as the prompt) when it knows
//! that session: by the id the client sends back (`ccs.session_id` or the `x-ccs-session-id`
//! header, as every answer gives it), or by the exact history. After each answer ccs keeps a
//! digest of the conversation as the client now holds it (system prompt, messages, the answer)
//! with the session (`ConversationLink`, one per session); a request whose earlier messages have
//! that digest continues the session, provided the session has not gone on since. The digest
//! also covers the caller's API key and the project folder: two clients that happen to hold the
//! same history (the same first question, the same answer) never continue each other's session,
//! nor one in another folder. Any other history (edited, shortened, from elsewhere) becomes the
//! first prompt of a new session.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::fields::Fields;
use crate::app::App;
use crate::http::{AfterTasks, ApiError, Ctx, Reply};
use crate::model::{now, ConversationLink, SessionStatus, Task, TurnRequest};
use crate::project;
use crate::store::Durable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// A client's conversation, split where ccs's turn begins.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// The system prompt: OpenAI's system and developer messages, Anthropic's `system`.
    pub system: Option<String>,
    /// Every message up to the last assistant one: what the session already holds, if ccs knows it.
    pub history: Vec<(Role, String)>,
    /// The user messages after the last assistant one, joined: the prompt of this turn.
    pub new: String,
    /// The API key of the client that holds it (`None` without keys), set by `turn`: its
    /// digests are of this key's conversations only.
    caller: Option<String>,
}

impl Conversation {
    /// Splits `messages` (the last must be the user's) at the last assistant message.
    pub fn new(system: Option<String>, messages: Vec<(Role, String)>) -> Result<Conversation, ApiError> {
        if messages.last().map(|(role, _)| *role) != Some(Role::User) {
            return Err(ApiError::bad_request(
                "messages",
                "the last message must be the user's: it is what ccs answers (an assistant prefill is not supported)",
            ));
        }
        let split = messages.iter().rposition(|(role, _)| *role == Role::Assistant).map_or(0, |i| i + 1);
        let mut history = messages;
        let new: Vec<String> = history.split_off(split).into_iter().map(|(_, text)| text).collect();
        let new = new.join("\n\n");
        if new.trim().is_empty() {
            return Err(ApiError::bad_request("messages", "the last user message has no text; send what to ask"));
        }
        let system = system.filter(|s| !s.trim().is_empty());
        Ok(Conversation { system, history, new, caller: None })
    }

    /// The digest of what the client held before this request (system prompt and history), in
    /// the canonical project folder `project`.
    pub fn held_digest(&self, project: &str) -> String {
        self.digest(project, self.history.iter().map(|(r, t)| (*r, t.as_str())))
    }

    /// The digest of what the client holds once it has `answer`, in `project`: its next
    /// request's history.
    pub fn digest_with(&self, answer: &str, project: &str) -> String {
        let now = [(Role::User, self.new.as_str()), (Role::Assistant, answer)];
        self.digest(project, self.history.iter().map(|(r, t)| (*r, t.as_str())).chain(now))
    }

    /// SHA-256, as hex (a store id), of the caller, the project folder, the system prompt and
    /// `messages`; text compared without surrounding blanks.
    fn digest<'a>(&self, project: &str, messages: impl Iterator<Item = (Role, &'a str)>) -> String {
        let messages: Vec<Value> = messages.map(|(role, text)| json!([role == Role::User, text.trim()])).collect();
        let canonical = json!([self.caller, project, self.system.as_deref().map(str::trim), messages]).to_string();
        Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The whole conversation as the first prompt of a new session.
    fn replayed(&self) -> String {
        let mut prompt = String::from("Here is our conversation so far:\n\n");
        for (role, text) in &self.history {
            let tag = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            prompt.push_str(&format!("<{tag}>\n{text}\n</{tag}>\n\n"));
        }
        prompt.push_str("Answer my next message:\n\n");
        prompt.push_str(&self.new);
        prompt
    }
}

/// The text of a message's content: a string, or a list of text parts (`{"type": "text",
/// "text": ...}`), joined by newlines. Other parts (images, files, tool calls) are refused.
pub fn content_text(content: &Value, field: &str) -> Result<String, ApiError> {
    match content {
        Value::String(text) => Ok(text.clone()),
        Value::Array(parts) => {
            let texts = parts
                .iter()
                .map(|part| match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(text))) => Ok(text.as_str()),
                    (Some(kind), _) if kind != "text" => Err(ApiError::bad_request(
                        field,
                        format!("content of type \"{kind}\" is not supported: ccs passes text to Claude Code; send text parts"),
                    )),
                    _ => Err(ApiError::bad_request(field, format!("each part of \"{field}\" must be {{\"type\": \"text\", \"text\": \"...\"}}"))),
                })
                .collect::<Result<Vec<&str>, ApiError>>()?;
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::bad_request(field, format!("\"{field}\" must be a string or a list of text parts"))),
    }
}

/// The `messages` of a request: a non-empty array of objects with only the `allowed` fields,
/// each with a `role` from `roles` and a `content` (`content_text`); errors name the path
/// (`messages[2].role`). Returns each message's role and text, in order.
pub fn messages(f: &Fields, allowed: &[&str], roles: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let messages = match f.raw("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(_) => return Err(ApiError::bad_request("messages", "\"messages\" must be a non-empty array of messages")),
        None => return Err(ApiError::bad_request("messages", "\"messages\" is required")),
    };
    let required = |field: String| ApiError::bad_request(&field, format!("\"{field}\" is required"));
    let mut read = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        if !message.is_object() {
            let roles = roles.join(", ");
            return Err(ApiError::bad_request(
                &field,
                format!("\"{field}\" must be an object with \"role\" ({roles}) and \"content\""),
            ));
        }
        let m = Fields::new(Some(message), allowed).map_err(|e| nested(&field, e))?;
        if m.raw("name").is_some_and(|name| !name.is_string()) {
            return Err(ApiError::bad_request(&format!("{field}.name"), format!("\"{field}.name\" must be a string")));
        }
        let role =
            m.choice("role", roles).map_err(|e| nested(&field, e))?.ok_or_else(|| required(format!("{field}.role")))?;
        let content = m.raw("content").ok_or_else(|| required(format!("{field}.content")))?;
        read.push((role, content_text(content, &format!("{field}.content"))?));
    }
    Ok(read)
}

/// The fields of the `ccs` extension object, which both APIs take.
const CCS_FIELDS: &[&str] = &["session_id", "project_path", "priority", "timeout_ms", "max_turns", "max_budget_usd"];

/// What a `/v1/` request asks of ccs beyond the API it speaks: the `ccs` object of its body and
/// its `x-ccs-session-id` / `x-ccs-project-path` headers (the body wins).
#[derive(Debug, Default)]
pub struct Extras {
    /// The caller's API key, whose conversations alone a history may continue.
    caller: Option<String>,
    session_id: Option<String>,
    project_path: Option<String>,
    template: TurnRequest,
}

impl Extras {
    pub fn read(f: &Fields, ctx: &Ctx) -> Result<Extras, ApiError> {
        let ccs = f.object("ccs")?;
        let mut extras = Extras::from_object(ccs.as_ref()).map_err(|e| nested("ccs", e))?;
        extras.caller = ctx.caller.key.clone();
        if extras.session_id.is_none() {
            extras.session_id = ctx.header("x-ccs-session-id")?.map(str::to_string);
        }
        if extras.project_path.is_none() {
            extras.project_path = ctx.header("x-ccs-project-path")?.map(str::to_string);
        }
        Ok(extras)
    }

    fn from_object(ccs: Option<&Value>) -> Result<Extras, ApiError> {
        let c = Fields::new(ccs, CCS_FIELDS)?;
        Ok(Extras {
            caller: None,
            session_id: c.text("session_id")?,
            project_path: c.text("project_path")?,
            template: TurnRequest {
                priority: c.priority()?.unwrap_or_default(),
                timeout_ms: c.integer("timeout_ms", 100, 86_400_000)?,
                max_turns: c.integer("max_turns", 1, 10_000)?.map(|n| n as u32),
                max_budget_usd: c.number("max_budget_usd", 0.0)?,
                ..TurnRequest::default()
            },
        })
    }
}

/// An error about a field of a nested object, named by its path (`ccs.priority`, `messages[0].role`).
pub fn nested(object: &str, mut err: ApiError) -> ApiError {
    if let Some(field) = err.field.take() {
        err.message = err.message.replacen(&format!("\"{field}\""), &format!("\"{object}.{field}\""), 1);
        err.field = Some(format!("{object}.{field}"));
    }
    err
}

/// The turn that answers `conversation` (from now on the caller's), and whether it continues
/// a session.
pub fn turn(
    app: &App,
    conversation: &mut Conversation,
    model: String,
    metadata: Option<Value>,
    extras: Extras,
) -> Result<(TurnRequest, bool), ApiError> {
    let config = app.config();
    if !config.allows_model(&model) {
        return Err(ApiError::bad_request(
            "model",
            format!(
                "model \"{model}\" is not offered by this server; use one of: {} (GET /v1/models lists them)",
                config.offered_models().join(", ")
            ),
        ));
    }
    conversation.caller = extras.caller;
    let known = match extras.session_id {
        Some(id) => Some(id),
        None => known_session(app, conversation, extras.project_path.as_deref())?,
    };
    let prompt = match known {
        Some(_) => conversation.new.clone(),
        None if conversation.history.is_empty() => conversation.new.clone(),
        None => conversation.replayed(),
    };
    let continued = known.is_some();
    let request = TurnRequest {
        prompt,
        session_id: known,
        project_path: extras.project_path,
        model: Some(model),
        append_system_prompt: conversation.system.clone(),
        metadata,
        ..extras.template
    };
    Ok((request, continued))
}

/// The session holding exactly `conversation`'s history in the project folder asked for (or
/// the default one), if ccs answered its last message.
fn known_session(app: &App, conversation: &Conversation, project: Option<&str>) -> Result<Option<String>, ApiError> {
    if conversation.history.is_empty() {
        return Ok(None);
    }
    let project = project::resolve_or_default(project, &app.config())?;
    let Some(link) = app.store.conversations.get(&conversation.held_digest(&project))? else { return Ok(None) };
    let session = app.store.sessions.get(&link.session_id)?;
    // A session that went on since (another client, or /api) no longer holds this history.
    Ok(session
        .filter(|s| s.messages_count == link.messages_count && s.status == SessionStatus::Active)
        .map(|s| s.id.clone()))
}

/// Keeps the digest of the conversation as the client holds it after `answer`, with its
/// session, in place of the session's earlier one. A failure is logged: the next request then
/// replays the history instead of resuming.
pub fn remember(app: &App, conversation: &Conversation, task: &Task, answer: &str) {
    let Some(session_id) = task.session_id.as_deref() else { return };
    if let Err(e) = link(app, conversation.digest_with(answer, &task.project_path), session_id) {
        log::warn!(
            "session {session_id}: could not keep its conversation's digest ({e}); its next turn will replay it"
        );
    }
}

fn link(app: &App, digest: String, session_id: &str) -> Result<(), crate::error::Error> {
    let Some(session) = app.store.sessions.get(session_id)? else { return Ok(()) };
    let link = ConversationLink {
        id: digest.clone(),
        session_id: session_id.to_string(),
        messages_count: session.messages_count,
        created_at: now(),
    };
    app.store.conversations.put(&digest, link, Durable::Soon)?;
    let mut earlier = None;
    // Soon: a link lost in a crash only makes the next request replay its history.
    app.store.sessions.update(session_id, Durable::Soon, |s| {
        earlier = s.conversation.replace(digest.clone()).filter(|d| *d != digest);
        true
    })?;
    if let Some(earlier) = earlier {
        crate::sessions::forget_conversation(app, &earlier, session_id)?;
    }
    Ok(())
}

/// Queues a `/v1/` turn answered when it ends: `body(task, answer)` with the `x-ccs-*` headers,
/// or its error; the conversation is remembered for its next request. A client that leaves
/// first has the task cancelled.
pub fn run_sync(
    app: &App,
    request: TurnRequest,
    conversation: Conversation,
    body: impl FnOnce(&Task, &str) -> Value + Send + 'static,
) -> Result<Reply, ApiError> {
    let app = app.shared().ok_or_else(|| ApiError::new(503, "the server is shutting down"))?;
    let task = crate::tasks::submit_awaited(&app, request)?;
    Ok(Reply::after_tasks(AfterTasks {
        tasks: vec![Ok(task.id.clone())],
        answer: Box::new(move |ends| {
            let task = super::claude::completed(ends)?;
            let answer = task.result.clone().unwrap_or_default();
            remember(&app, &conversation, &task, &answer);
            let mut reply = Reply::ok(body(&task, &answer));
            reply.headers = headers(&task);
            Ok(reply)
        }),
        on_gone: Some(super::claude::cancel_run),
    }))
}

/// The CLI's token counts of a turn.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
}

impl Usage {
    /// From the CLI's `usage` (missing counts are 0).
    pub fn of(usage: &Value) -> Usage {
        let n = |key: &str| usage.get(key).and_then(Value::as_u64).unwrap_or(0);
        Usage {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_creation: n("cache_creation_input_tokens"),
            cache_read: n("cache_read_input_tokens"),
        }
    }

    /// Every input token, cached or not (what OpenAI counts as the prompt).
    pub fn prompt(&self) -> u64 {
        self.input + self.cache_creation + self.cache_read
    }
}

/// ccs's figures of a turn, added to the answers of both APIs as `ccs`.
pub fn extension(task: &Task, continued: bool) -> Value {
    json!({
        "task_id": task.id,
        "session_id": task.session_id,
        "project_path": task.project_path,
        "cost_usd": task.cost_usd.unwrap_or(0.0),
        "duration_ms": task.duration_ms.unwrap_or(0),
        "num_turns": task.num_turns,
        "continued": continued,
    })
}

/// The `x-ccs-*` headers of an answer.
pub fn headers(task: &Task) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-ccs-task-id", task.id.clone())];
    if let Some(session) = &task.session_id {
        headers.push(("x-ccs-session-id", session.clone()));
    }
    headers
}

/// Checks a field the CLI has no equivalent for: taken if it has the type its API gives it,
/// and ignored (the README says which).
pub fn ignored_number(f: &Fields, name: &str, min: f64, max: f64) -> Result<(), ApiError> {
    match f.number(name, min)? {
        Some(n) if n > max => {
            Err(ApiError::bad_request(name, format!("\"{name}\" must be a number from {min} to {max}")))
        }
        _ => Ok(()),
    }
}

/// `tools` must be absent or empty: Claude Code runs its own tools (`allowed_tools` in ccs's
/// config), it cannot call the client's functions.
pub fn no_client_tools(f: &Fields) -> Result<(), ApiError> {
    match f.raw("tools") {
        None => Ok(()),
        Some(Value::Array(tools)) if tools.is_empty() => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            "tools",
            "client-side tools are not supported: Claude Code runs its own tools (Read, Edit, Bash...) in the \
             project folder, as the server's config allows; leave \"tools\" out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> (Role, String) {
        (Role::User, text.to_string())
    }

    fn assistant(text: &str) -> (Role, String) {
        (Role::Assistant, text.to_string())
    }

    #[test]
    fn a_conversation_splits_after_the_last_answer() {
        let c =
            Conversation::new(Some("Be brief.".into()), vec![user("a"), assistant("b"), user("c"), user("d")]).unwrap();
        assert_eq!(c.history, vec![user("a"), assistant("b")]);
        assert_eq!(c.new, "c\n\nd");
        let first = Conversation::new(None, vec![user("hello")]).unwrap();
        assert!(first.history.is_empty());
        assert_eq!(first.new, "hello");
        assert_eq!(Conversation::new(None, vec![user("a"), assistant("b")]).unwrap_err().status, 400);
        assert_eq!(Conversation::new(None, vec![]).unwrap_err().status, 400);
        assert_eq!(Conversation::new(None, vec![user("  ")]).unwrap_err().field.as_deref(), Some("messages"));
    }

    #[test]
    fn the_next_request_of_a_conversation_has_the_digest_kept_after_its_answer() {
        let first = Conversation::new(Some("sys".into()), vec![user("2+2?")]).unwrap();
        let kept = first.digest_with("4", "/p");
        let next = Conversation::new(Some("sys".into()), vec![user("2+2?"), assistant("4"), user("and 3+3?")]).unwrap();
        assert_eq!(next.held_digest("/p"), kept);
        let edited = Conversation::new(Some("sys".into()), vec![user("2+2?"), assistant("5"), user("sure?")]).unwrap();
        assert_ne!(edited.held_digest("/p"), kept, "an edited answer is another conversation");
        let other_system = Conversation::new(None, vec![user("2+2?"), assistant("4"), user("and 3+3?")]).unwrap();
        assert_ne!(other_system.held_digest("/p"), kept, "so is another system prompt");
        let swapped =
            Conversation::new(Some("sys".into()), vec![(Role::Assistant, "2+2?".into()), user("4"), user("x")]);
        assert_ne!(swapped.unwrap().held_digest("/p"), kept, "roles count");
        assert_eq!(kept.len(), 64);
    }

    #[test]
    fn the_same_history_is_another_conversation_for_another_key_or_folder() {
        let next = || Conversation::new(None, vec![user("hello"), assistant("Hi!"), user("next")]).unwrap();
        let kept = Conversation::new(None, vec![user("hello")]).unwrap().digest_with("Hi!", "/p");
        assert_eq!(next().held_digest("/p"), kept);
        assert_ne!(next().held_digest("/q"), kept, "another project folder");
        let other_key = Conversation { caller: Some("k-2".into()), ..next() };
        assert_ne!(other_key.held_digest("/p"), kept, "another API key");
    }

    #[test]
    fn an_unknown_history_is_replayed_in_the_first_prompt() {
        let c = Conversation::new(None, vec![user("my name is Ada"), assistant("Hello Ada"), user("what is my name?")])
            .unwrap();
        let prompt = c.replayed();
        assert!(prompt.contains("<user>\nmy name is Ada\n</user>"), "{prompt}");
        assert!(prompt.contains("<assistant>\nHello Ada\n</assistant>"), "{prompt}");
        assert!(prompt.ends_with("what is my name?"), "{prompt}");
    }

    #[test]
    fn content_is_a_string_or_text_parts() {
        assert_eq!(content_text(&json!("hi"), "c").unwrap(), "hi");
        let parts = json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {}}]);
        assert_eq!(content_text(&parts, "c").unwrap(), "a\nb");
        let image = json!([{"type": "image_url", "image_url": {"url": "x"}}]);
        assert!(content_text(&image, "messages[0].content").unwrap_err().message.contains("image_url"));
        assert_eq!(content_text(&json!(5), "c").unwrap_err().status, 400);
        assert_eq!(content_text(&json!([{"type": "text"}]), "c").unwrap_err().status, 400);
    }

    #[test]
    fn a_message_that_is_not_an_object_is_named_by_its_path() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}, null]});
        let f = Fields::new(Some(&body), &["messages"]).unwrap();
        let err = messages(&f, &["role", "content"], &["user", "assistant"]).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("messages[1]"));
        assert_eq!(err.message, "\"messages[1]\" must be an object with \"role\" (user, assistant) and \"content\"");
        let body = json!({"messages": [{"content": "hi"}]});
        let f = Fields::new(Some(&body), &["messages"]).unwrap();
        let err = messages(&f, &["role", "content"], &["user"]).unwrap_err();
        assert_eq!(
            (err.field.as_deref(), err.message.as_str()),
            (Some("messages[0].role"), "\"messages[0].role\" is required")
        );
    }

    #[test]
    fn usage_counts_every_input_token_in_the_prompt() {
        let u = Usage::of(
            &json!({"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5}),
        );
        assert_eq!((u.prompt(), u.output, u.cache_read), (115, 3, 100));
        assert_eq!(Usage::of(&Value::Null), Usage::default());
    }

    #[test]
    fn a_nested_field_error_names_its_path() {
        let err = nested("ccs", ApiError::bad_request("priority", "\"priority\" must be an integer from 1 to 10"));
        assert_eq!(err.field.as_deref(), Some("ccs.priority"));
        assert!(err.message.starts_with("\"ccs.priority\""), "{}", err.message);
    }
}
