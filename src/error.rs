//! The core's error: what went wrong in terms a caller can act on. The HTTP layer maps each
//! kind to a status in one place (`http::error`).

use std::fmt;
use std::sync::Arc;

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub enum Error {
    /// A request value is wrong (400); `field` names it.
    Invalid { field: String, message: String },
    /// A request value is not permitted by the config (403).
    Forbidden { field: String, message: String },
    /// No such record (404).
    NotFound(String),
    /// The record's state does not allow this now (409).
    Conflict(String),
    /// The server cannot take this now (503).
    Unavailable(String),
    /// The CLI could not run or failed (502); the task it ran as, if any.
    CliFailed { message: String, task_id: Option<String>, session_id: Option<String> },
    /// The CLI ran out of time (504).
    CliTimeout { message: String, task_id: String, session_id: Option<String> },
    /// Writing state failed, or the store refuses writes until it can save again (503).
    Storage(Arc<StoreError>),
}

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid { field: field.to_string(), message: message.into() }
    }

    pub fn forbidden(field: &str, message: impl Into<String>) -> Error {
        Error::Forbidden { field: field.to_string(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { message, .. } | Error::Forbidden { message, .. } => f.write_str(message),
            Error::NotFound(m) | Error::Conflict(m) | Error::Unavailable(m) => f.write_str(m),
            Error::CliFailed { message, .. } | Error::CliTimeout { message, .. } => f.write_str(message),
            Error::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The shared queue is out of reach: the request can be sent again (ccs reconnects by itself).
impl From<crate::queue::QueueError> for Error {
    fn from(e: crate::queue::QueueError) -> Error {
        Error::Unavailable(format!("{e}; send the request again in a moment"))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Storage(Arc::new(e))
    }
}
