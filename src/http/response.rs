//! A successful answer: status, JSON body, extra headers.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    pub fn created(body: Value) -> Reply {
        Reply {
            status: 201,
            body,
            headers: Vec::new(),
        }
    }
}
