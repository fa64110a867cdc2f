//! A handler's answer: status, JSON body and headers now, or a promise to answer later (a sync
//! request whose task runs on a worker: the acceptor thread goes back to accepting; if its
//! client hangs up first, the work is stopped).

use serde_json::Value;

use super::error::ApiError;

/// Sends the answer of a deferred request; call it exactly once, from any thread.
pub type Respond = Box<dyn FnOnce(Result<Reply, ApiError>) + Send>;

/// Stops the work of a deferred request whose client went away before its answer.
pub type OnGone = Box<dyn FnOnce() + Send>;

/// Given the `Respond` of its request, arranges for it to be called; returns what stops the
/// work if the client leaves first.
pub type Later = Box<dyn FnOnce(Respond) -> Option<OnGone> + Send>;

/// Writes a whole streamed answer (status line and headers included) to the connection.
pub type Streamer = Box<dyn FnOnce(Box<dyn std::io::Write + Send>) + Send>;

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    pub later: Option<Later>,
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
        Reply { status, body, headers: Vec::new(), later: None, stream: None }
    }

    /// An answer that `later` will give once it has it.
    pub fn later(later: impl FnOnce(Respond) -> Option<OnGone> + Send + 'static) -> Reply {
        Reply { status: 0, body: Value::Null, headers: Vec::new(), later: Some(Box::new(later)), stream: None }
    }

    /// An answer written as it is made (Server-Sent Events), on a thread of its own.
    pub fn stream(stream: impl FnOnce(Box<dyn std::io::Write + Send>) + Send + 'static) -> Reply {
        Reply { status: 200, body: Value::Null, headers: Vec::new(), later: None, stream: Some(Box::new(stream)) }
    }
}
