//! What a handler sees of a request: path parameters, query, JSON body. Reading the body
//! enforces `maxBodyBytes` (413) from Content-Length before reading and on the bytes read.

use std::io::Read;

use serde_json::Value;

use super::error::ApiError;

/// The parsed request, independent of tiny_http so handlers can be tested without a socket.
#[derive(Debug, Default, Clone)]
pub struct Ctx {
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// The JSON body; `None` when the body was empty.
    pub body: Option<Value>,
}

impl Ctx {
    pub fn param(&self, name: &str) -> &str {
        self.params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// A non-negative integer query parameter, `default` when absent, at most `max`.
    pub fn query_number(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.query(name) {
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

/// Splits a request target into its path and decoded query pairs.
pub fn split_url(url: &str) -> (&str, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect();
    (path, pairs)
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads at most `limit` bytes of body; more is a 413.
pub fn read_body(declared: Option<usize>, reader: &mut dyn Read, limit: u64) -> Result<Vec<u8>, ApiError> {
    if declared.is_some_and(|len| len as u64 > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut body = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::bad_request("body", format!("could not read the request body: {e}")))?;
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
    fn query_pairs_are_decoded() {
        let (path, q) = split_url("/api/sessions?project_path=%2Ftmp%2Fmy+dir&limit=5&flag");
        assert_eq!(path, "/api/sessions");
        assert_eq!(q[0], ("project_path".to_string(), "/tmp/my dir".to_string()));
        assert_eq!(q[1], ("limit".to_string(), "5".to_string()));
        assert_eq!(q[2], ("flag".to_string(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn body_limit_is_checked_before_and_while_reading() {
        let mut small: &[u8] = b"{}";
        assert_eq!(read_body(Some(2), &mut small, 10).unwrap(), b"{}");
        let mut big: &[u8] = &[b' '; 11];
        assert_eq!(read_body(None, &mut big, 10).unwrap_err().status, 413);
        let mut never_read: &[u8] = b"";
        assert_eq!(read_body(Some(11), &mut never_read, 10).unwrap_err().status, 413);
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
