//! The one place where errors become HTTP statuses and JSON error bodies: ccs's own
//! `{"success": false, "error": "...", "field": ...}`, or on the `/v1/...` paths the shape of the
//! API they speak (`Dialect`), so OpenAI's and Anthropic's client libraries raise their own
//! exceptions.

use serde_json::{json, Value};

use crate::error::Error;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub field: Option<String>,
    /// More fields of the body (e.g. `task_id` of a failed run).
    pub extra: Vec<(&'static str, Value)>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), field: None, extra: Vec::new(), headers: Vec::new() }
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError { field: Some(field.to_string()), ..ApiError::new(400, message) }
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            413,
            format!("request body is larger than maxBodyBytes ({limit} bytes); send less or raise maxBodyBytes in the config"),
        )
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(404, format!("no such endpoint: {path}; see the README for the API"))
    }

    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> ApiError {
        let mut err = ApiError::new(405, format!("{path} does not take {method}; it takes {}", allowed.join(", ")));
        err.headers.push(("Allow", allowed.join(", ")));
        err
    }

    pub fn internal(what: &str) -> ApiError {
        ApiError::new(500, format!("internal error while handling {what}; the server log has the details"))
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> ApiError {
        self.extra.push((key, value.into()));
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({"success": false, "error": self.message});
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        for (k, v) in &self.extra {
            body[*k] = v.clone();
        }
        body
    }
}

/// Whose error shape an answer takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Ccs,
    /// `{"error": {"message", "type", "param", "code"}}` (OpenAI's API).
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}` (Anthropic's API; 503 is its 529).
    Anthropic,
}

impl Dialect {
    /// The dialect of a request to `path`: `/v1/messages` is Anthropic's, the rest of `/v1/`
    /// OpenAI's, but for paths both APIs have (`/v1/models`) when an Anthropic client says so
    /// with its `anthropic-version` header.
    pub fn of(path: &str, anthropic_version_header: bool) -> Dialect {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        if under("/v1/messages") {
            Dialect::Anthropic
        } else if under("/v1/chat") {
            Dialect::OpenAi
        } else if under("/v1") {
            if anthropic_version_header {
                Dialect::Anthropic
            } else {
                Dialect::OpenAi
            }
        } else {
            Dialect::Ccs
        }
    }
}

impl ApiError {
    /// The status and body of this error in `dialect`.
    pub fn render(&self, dialect: Dialect) -> (u16, Value) {
        match dialect {
            Dialect::Ccs => (self.status, self.body()),
            Dialect::OpenAi => (self.status, self.openai_body()),
            Dialect::Anthropic => {
                let status = if self.status == 503 { 529 } else { self.status };
                let mut body =
                    json!({"type": "error", "error": {"type": anthropic_type(status), "message": self.message}});
                if !self.extra.is_empty() {
                    body["ccs"] = self.extra_object();
                }
                (status, body)
            }
        }
    }

    fn openai_body(&self) -> Value {
        let (kind, code) = match self.status {
            401 => ("authentication_error", Some("invalid_api_key")),
            403 => ("permission_error", None),
            404 => ("not_found_error", None),
            409 => ("conflict_error", None),
            429 => ("rate_limit_error", Some("rate_limit_exceeded")),
            502 => ("server_error", Some("cli_failed")),
            504 => ("server_error", Some("timeout")),
            s if s >= 500 => ("server_error", None),
            _ => ("invalid_request_error", None),
        };
        let mut error = json!({"message": self.message, "type": kind, "param": self.field, "code": code});
        if !self.extra.is_empty() {
            error["ccs"] = self.extra_object();
        }
        json!({ "error": error })
    }

    fn extra_object(&self) -> Value {
        Value::Object(self.extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }
}

/// The `error.type` Anthropic's API gives with `status`.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// A failed read or write of the store: 503, as `Error::Storage`.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        Error::from(e).into()
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        let message = err.to_string();
        match err {
            Error::Invalid { field, .. } => ApiError::bad_request(&field, message),
            Error::Forbidden { field, .. } => ApiError { field: Some(field), ..ApiError::new(403, message) },
            Error::NotFound(_) => ApiError::new(404, message),
            Error::Conflict(_) => ApiError::new(409, message),
            Error::Unavailable(_) => ApiError::new(503, message),
            Error::CliFailed { task_id, session_id, .. } => {
                ApiError::new(502, message).with("task_id", task_id).with("session_id", session_id)
            }
            Error::CliTimeout { task_id, session_id, .. } => {
                ApiError::new(504, message).with("task_id", task_id).with("session_id", session_id)
            }
            // The store refuses writes until it can save again (GET /health says so): retry later.
            Error::Storage(e) => {
                log::error!("{e}");
                ApiError::new(503, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;

    #[test]
    fn each_kind_has_its_status() {
        let cases: Vec<(Error, u16)> = vec![
            (Error::invalid("prompt", "x"), 400),
            (Error::forbidden("agent", "x"), 403),
            (Error::NotFound("x".into()), 404),
            (Error::Conflict("x".into()), 409),
            (Error::Unavailable("x".into()), 503),
            (Error::CliFailed { message: "x".into(), task_id: None, session_id: None }, 502),
            (Error::CliTimeout { message: "x".into(), task_id: "t".into(), session_id: None }, 504),
            (Error::from(StoreError::new(Op::Save, "tasks", "t", std::io::Error::other("x"), "")), 503),
            (Error::from(StoreError::new(Op::Read, "tasks", "", std::io::Error::other("x"), "")), 503),
        ];
        for (err, status) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status, status);
            assert_eq!(api.body()["success"], false);
        }
        assert_eq!(ApiError::from(Error::invalid("prompt", "bad")).body()["field"], "prompt");
    }

    #[test]
    fn each_path_speaks_its_dialect() {
        assert_eq!(Dialect::of("/api/claude", true), Dialect::Ccs);
        assert_eq!(Dialect::of("/v1x", false), Dialect::Ccs);
        assert_eq!(Dialect::of("/v1/chat/completions", true), Dialect::OpenAi);
        assert_eq!(Dialect::of("/v1/messages", false), Dialect::Anthropic);
        assert_eq!(Dialect::of("/v1/messages/count_tokens", false), Dialect::Anthropic);
        assert_eq!(Dialect::of("/v1/models", false), Dialect::OpenAi);
        assert_eq!(Dialect::of("/v1/models", true), Dialect::Anthropic);
        assert_eq!(Dialect::of("/v1/nothing", false), Dialect::OpenAi);
    }

    #[test]
    fn errors_take_the_shape_of_the_api_called() {
        let err = ApiError::bad_request("model", "no such model").with("task_id", "t-1");
        let (status, body) = err.render(Dialect::OpenAi);
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["message"], "no such model");
        assert_eq!(body["error"]["ccs"]["task_id"], "t-1");
        let (status, body) = ApiError::new(503, "the queue is full").render(Dialect::Anthropic);
        assert_eq!(
            (status, body["type"].as_str(), body["error"]["type"].as_str()),
            (529, Some("error"), Some("overloaded_error"))
        );
        let (status, body) = ApiError::new(401, "key").render(Dialect::OpenAi);
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_api_key")));
        assert_eq!(ApiError::new(429, "slow down").render(Dialect::Anthropic).1["error"]["type"], "rate_limit_error");
        assert_eq!(ApiError::new(400, "x").render(Dialect::Ccs).1["success"], false);
    }
}
