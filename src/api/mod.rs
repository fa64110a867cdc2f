//! The API (SPEC 6): the route table and one file per resource. Handlers are plain functions
//! of (app, request data) → reply; the `http` module does the I/O around them.

mod anthropic_messages;
mod chat_completions;
pub mod claude;
mod config;
mod conversation;
mod fields;
#[cfg(test)]
mod handler_tests;
mod health;
mod metrics;
mod models;
mod openapi;
mod sessions;
mod statistics;
mod stream;
mod tasks;

use serde_json::Value;

use crate::http::router::{Method, Router};
use crate::http::Handler;

/// Every route; literal paths come before `:id` ones.
pub fn routes() -> Router<Handler> {
    use Method::*;
    Router::<Handler>::default()
        .public(Get, "/health", health::get)
        .add(Get, "/metrics", metrics::get)
        .add(Get, "/openapi.json", openapi::get)
        .add(Get, "/api/config", config::get)
        .add(Put, "/api/config", config::put)
        .add(Get, "/api/statistics", statistics::overview)
        .add(Get, "/api/statistics/summary", statistics::summary)
        .add(Get, "/api/statistics/daily", statistics::daily)
        .add(Get, "/api/statistics/range", statistics::range)
        .add(Get, "/api/statistics/models", statistics::models)
        .add(Post, "/api/claude", claude::post)
        .add(Post, "/api/claude/batch", claude::batch)
        .add(Post, "/api/sessions", sessions::create)
        .add(Get, "/api/sessions", sessions::list)
        .add(Get, "/api/sessions/search", sessions::search)
        .add(Get, "/api/sessions/:id", sessions::get)
        .add(Delete, "/api/sessions/:id", sessions::delete)
        .add(Get, "/api/sessions/:id/stats", sessions::stats)
        .add(Post, "/api/sessions/:id/continue", sessions::continue_turn)
        .add(Patch, "/api/sessions/:id/status", sessions::set_status)
        .add(Post, "/api/tasks/async", tasks::create_async)
        .add(Get, "/api/tasks", tasks::list)
        .add(Get, "/api/tasks/queue/status", tasks::queue_status)
        .add(Get, "/api/tasks/:id", tasks::get)
        .add(Get, "/api/tasks/:id/events", stream::follow)
        .add(Delete, "/api/tasks/:id", tasks::cancel)
        .add(Patch, "/api/tasks/:id/priority", tasks::set_priority)
        .add(Post, "/api/tasks/:id/retry", tasks::retry)
        .add(Post, "/v1/chat/completions", chat_completions::post)
        .add(Post, "/v1/messages", anthropic_messages::post)
        .add(Get, "/v1/models", models::list)
        .add(Get, "/v1/models/:model", models::get)
}

/// The most JSON a list answer holds: tasks and sessions carry prompts, system prompts and
/// results of up to megabytes each, and `limit` goes to 1,000, so without a bound one request could make the server build (and
/// hold) gigabytes. At least one item is always given.
pub const MAX_LIST_BYTES: usize = 8 * 1024 * 1024;

/// A list answer `{success, <name>, count, total}` of the items from `offset` that fit in
/// `MAX_LIST_BYTES`; when some were left out, `truncated` and the `next_offset` to ask from.
pub(crate) fn page(name: &str, items: impl Iterator<Item = Value>, total: usize, offset: usize) -> Value {
    let (items, truncated) = within_budget(items);
    let count = items.len();
    let mut body = serde_json::json!({"success": true, name: items, "count": count, "total": total});
    if truncated {
        body["truncated"] = Value::Bool(true);
        body["next_offset"] = Value::from(offset + count);
    }
    body
}

/// The items that fit in `MAX_LIST_BYTES`, and whether some were left out.
pub(crate) fn within_budget(items: impl Iterator<Item = Value>) -> (Vec<Value>, bool) {
    let (mut kept, mut size) = (Vec::new(), 0);
    for item in items {
        size += item.to_string().len();
        if size > MAX_LIST_BYTES && !kept.is_empty() {
            return (kept, true);
        }
        kept.push(item);
    }
    (kept, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_list_stops_at_its_byte_budget_but_always_gives_one_item() {
        let big = || json!({"result": "x".repeat(MAX_LIST_BYTES / 3)});
        let (kept, truncated) = within_budget((0..5).map(|_| big()));
        assert_eq!((kept.len(), truncated), (2, true));
        let (kept, truncated) = within_budget(std::iter::once(json!({"result": "y".repeat(MAX_LIST_BYTES + 1)})));
        assert_eq!((kept.len(), truncated), (1, false));
        let (kept, truncated) = within_budget((0..3).map(|i| json!({"n": i})));
        assert_eq!((kept.len(), truncated), (3, false));
    }

    #[test]
    fn a_truncated_page_says_where_to_go_on() {
        let big = || json!({"result": "x".repeat(MAX_LIST_BYTES / 3)});
        let body = page("tasks", (0..5).map(|_| big()), 40, 10);
        assert_eq!((body["count"].clone(), body["total"].clone()), (json!(2), json!(40)));
        assert_eq!((body["truncated"].clone(), body["next_offset"].clone()), (json!(true), json!(12)));
        let whole = page("sessions", (0..3).map(|i| json!({"n": i})), 3, 0);
        assert_eq!(whole["sessions"].as_array().map(Vec::len), Some(3));
        assert!(whole.get("truncated").is_none());
    }
}
