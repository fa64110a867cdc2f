//! The one place where errors become HTTP statuses and the JSON error body
//! `{"success": false, "error": "...", "field": ...}`.

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
}
