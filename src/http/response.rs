//! A handler's answer: status, JSON body and headers now; or "answer when these tasks end"
//! (`AfterTasks`: a sync run, a batch, a cancel waiting for the kill), which the HTTP layer
//! keeps with the request while the acceptor moves on; or a stream written as it is made.

use serde_json::Value;

use super::error::ApiError;
use crate::app::App;
use crate::error::Error;
use crate::events::TaskEnd;

/// Writes a whole streamed answer (status line and headers included) to the connection.
pub type Streamer = Box<dyn FnOnce(Box<dyn std::io::Write + Send>) + Send>;

/// The end of one awaited task; an `Err` for one that failed before it became a task.
pub type Awaited = Result<TaskEnd, Error>;

/// Shapes the answer from the ends of the awaited tasks, in their order (called once).
pub type ShapeAnswer = Box<dyn FnOnce(Vec<Awaited>) -> Result<Reply, ApiError> + Send>;

/// Answer when every one of these tasks has ended.
pub struct AfterTasks {
    /// The tasks, in answer order; an `Err` is one that failed before it became a task.
    pub tasks: Vec<Result<String, Error>>,
    pub answer: ShapeAnswer,
    /// What a client leaving before its answer does to each task (a sync run is cancelled),
    /// called on a thread of its own.
    pub on_gone: Option<fn(&App, &str)>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    pub after: Option<AfterTasks>,
    pub stream: Option<Streamer>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::with_status(200, body)
    }

    pub fn created(body: Value) -> Reply {
        Reply::with_status(201, body)
    }

    pub fn with_status(status: u16, body: Value) -> Reply {
        Reply { status, body, headers: Vec::new(), after: None, stream: None }
    }

    /// An answer given when the tasks have ended.
    pub fn after_tasks(after: AfterTasks) -> Reply {
        Reply { status: 0, body: Value::Null, headers: Vec::new(), after: Some(after), stream: None }
    }

    /// An answer written as it is made (Server-Sent Events), on a thread of its own.
    pub fn stream(stream: impl FnOnce(Box<dyn std::io::Write + Send>) + Send + 'static) -> Reply {
        Reply { status: 200, body: Value::Null, headers: Vec::new(), after: None, stream: Some(Box::new(stream)) }
    }
}
