//! What a handler sees of a request: path parameters, query, JSON body. Reading the body
//! enforces `maxBodyBytes` (413) from Content-Length before reading and on the bytes read.

use std::io::{ErrorKind, Read};

use serde_json::Value;

use super::auth::Caller;
use super::error::ApiError;

/// The parsed request, independent of tiny_http so handlers can be tested without a socket.
#[derive(Debug, Default, Clone)]
pub struct Ctx {
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// The JSON body; `None` when the body was empty.
    pub body: Option<Value>,
    /// Who sent it.
    pub caller: Caller,
    /// The request's `x-ccs-*` headers (names in lower case): ccs's extras on the `/v1/` APIs.
    pub headers: Vec<(String, String)>,
}

impl Ctx {
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The value of query parameter `name`; an empty one (`?limit=`) counts as absent. One given
    /// twice is a 400: which of them should count is anyone's guess.
    pub fn query(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(name, format!("\"{name}\" is given more than once; send it once")));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// The value of the `x-ccs-*` header `name` (lower case), when sent and not blank; one
    /// given twice is a 400, as a query parameter is.
    pub fn header(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(name, format!("header {name} is given more than once; send it once")));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// A non-negative integer query parameter, `default` when absent, at most `max`.
    pub fn query_number(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.query(name)? {
            None => Ok(default),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad_request(
                    name,
                    format!("\"{name}\" must be an integer from 0 to {max} (got \"{text}\")"),
                )),
            },
        }
    }
}

/// Reads at most `limit` bytes of body; more is a 413. The reader fails with `TimedOut` once
/// the body took longer than `http.readTimeoutMs` (`timeout_ms`): that is a 408.
pub fn read_body(reader: &mut dyn Read, limit: u64, timeout_ms: u64) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    reader.take(limit + 1).read_to_end(&mut body).map_err(|e| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ApiError::new(
            408,
            format!("the request body did not arrive within http.readTimeoutMs ({timeout_ms} ms); send it faster"),
        ),
        _ => ApiError::bad_request("body", format!("could not read the request body: {e}")),
    })?;
    if body.len() as u64 > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(body)
}

/// Parses a body as JSON; an empty body is `None`.
pub fn parse_json(body: &[u8]) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::bad_request("body", format!("request body is not valid JSON: {e}; send a JSON object")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_limit_is_checked_while_reading_and_a_slow_body_is_408() {
        let mut small: &[u8] = b"{}";
        assert_eq!(read_body(&mut small, 10, 1).unwrap(), b"{}");
        let mut big: &[u8] = &[b' '; 11];
        assert_eq!(read_body(&mut big, 10, 1).unwrap_err().status, 413);
        struct Stalled;
        impl Read for Stalled {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(ErrorKind::TimedOut.into())
            }
        }
        let err = read_body(&mut Stalled, 10, 30_000).unwrap_err();
        assert_eq!(err.status, 408);
        assert!(err.message.contains("http.readTimeoutMs"), "{}", err.message);
    }

    #[test]
    fn a_query_parameter_counts_once_an_empty_one_not_at_all() {
        let ctx = |pairs: &[(&str, &str)]| Ctx {
            query: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Ctx::default()
        };
        assert_eq!(ctx(&[("limit", "5"), ("q", "x")]).query("limit").unwrap(), Some("5"));
        assert_eq!(ctx(&[("limit", "")]).query("limit").unwrap(), None);
        assert_eq!(ctx(&[("limit", "")]).query_number("limit", 7, 10).unwrap(), 7);
        // `?limit=&limit=junk` once read as "absent" and answered with the default.
        for twice in [ctx(&[("limit", ""), ("limit", "junk")]), ctx(&[("limit", "5"), ("limit", "5")])] {
            let err = twice.query_number("limit", 7, 10).unwrap_err();
            assert_eq!((err.status, err.field.as_deref()), (400, Some("limit")));
            assert!(err.message.contains("more than once"), "{}", err.message);
        }
    }

    #[test]
    fn json_parsing() {
        assert_eq!(parse_json(b" \n").unwrap(), None);
        assert!(parse_json(b"{\"a\":1}").unwrap().is_some());
        let err = parse_json(b"{\"a\":").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("not valid JSON"));
    }
}
