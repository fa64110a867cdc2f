//! A handler's answer: status, JSON body and headers now, or a promise to answer later (a sync
//! request whose task runs on a worker: the acceptor thread goes back to accepting).

use serde_json::Value;

use super::error::ApiError;

/// Sends the answer of a deferred request; call it exactly once, from any thread.
pub type Respond = Box<dyn FnOnce(Result<Reply, ApiError>) + Send>;

/// Given the `Respond` of its request, arranges for it to be called.
pub type Later = Box<dyn FnOnce(Respond) + Send>;

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    pub later: Option<Later>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::with_status(200, body)
    }

    pub fn created(body: Value) -> Reply {
        Reply::with_status(201, body)
    }

    pub fn with_status(status: u16, body: Value) -> Reply {
        Reply { status, body, headers: Vec::new(), later: None }
    }

    /// An answer that `later` will give once it has it.
    pub fn later(later: impl FnOnce(Respond) + Send + 'static) -> Reply {
        Reply { status: 0, body: Value::Null, headers: Vec::new(), later: Some(Box::new(later)) }
    }
}
