//! The one reading of a request target. Routing, auth, rate limiting, metrics and the log all use
//! the `Target` made here and nothing else, so no part of the server can see a different path
//! than another (`//api/config` once skipped auth while the router served it).
//!
//! Normalising: empty segments are dropped (`//api//tasks/` is `/api/tasks`) and each segment is
//! percent-decoded exactly once. Refused with 400: a target that is not an absolute path, a
//! segment that decodes to `.`, `..`, or anything holding `/`, `\`, a control character or
//! invalid UTF-8. Case is kept: `/API/claude` is not a route (404, or 401 without a key). The
//! length of a target is bounded before it gets here (`http.maxUrlBytes`, 414).

use super::error::ApiError;

/// How much of a path a log line or an error message shows.
const SHOWN_CHARS: usize = 120;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `/` followed by the decoded segments joined with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
}

impl Target {
    pub fn parse(raw: &str) -> Result<Target, ApiError> {
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        if !path.starts_with('/') {
            return Err(bad_path(path, "the request target must be a path starting with /"));
        }
        let mut segments = Vec::new();
        for raw_segment in path.split('/').filter(|s| !s.is_empty()) {
            segments.push(segment(raw_segment).map_err(|why| bad_path(path, why))?);
        }
        Ok(Target { path: format!("/{}", segments.join("/")), query: query_pairs(query) })
    }

    /// The path as a log line or an error message may show it: bounded, printable.
    pub fn shown(&self) -> String {
        shown(&self.path)
    }
}

/// A path (or any client text) cut to a printable, bounded length for logs and messages.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(SHOWN_CHARS).map(|c| if c.is_control() { '?' } else { c }).collect();
    if text.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn segment(raw: &str) -> Result<String, &'static str> {
    let decoded = percent_decode(raw.as_bytes());
    let text = String::from_utf8(decoded).map_err(|_| "a path segment is not valid UTF-8")?;
    if text == "." || text == ".." {
        return Err("'.' and '..' segments are not allowed");
    }
    if text.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err("a path segment must not hold '/', '\\' or control characters (encoded or not)");
    }
    Ok(text)
}

fn bad_path(path: &str, why: &str) -> ApiError {
    ApiError::bad_request("path", format!("bad request path {}: {why}", shown(path)))
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_lossy(&k.replace('+', " ")), decode_lossy(&v.replace('+', " ")))
        })
        .collect()
}

fn decode_lossy(text: &str) -> String {
    String::from_utf8_lossy(&percent_decode(text.as_bytes())).into_owned()
}

/// Decodes `%XX` escapes; an invalid escape is kept as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(raw: &str) -> Result<String, u16> {
        Target::parse(raw).map(|t| t.path).map_err(|e| e.status)
    }

    #[test]
    fn every_spelling_of_a_route_reads_as_the_same_path() {
        for raw in ["/api/sessions", "//api/sessions", "/api//sessions", "///api///sessions///", "/api/sessions/"] {
            assert_eq!(path(raw), Ok("/api/sessions".into()), "{raw}");
        }
        assert_eq!(path("/metrics/"), Ok("/metrics".into()));
        assert_eq!(path("//metrics"), Ok("/metrics".into()));
        assert_eq!(path("/"), Ok("/".into()));
        assert_eq!(path("/%61pi/config"), Ok("/api/config".into()), "an encoded letter is that letter");
        assert_eq!(path("/api/sessions/abc%2Dd"), Ok("/api/sessions/abc-d".into()));
        assert_eq!(path("/API/claude"), Ok("/API/claude".into()), "case is kept, so it is no route");
    }

    #[test]
    fn dot_segments_encoded_separators_and_non_paths_are_400() {
        for raw in [
            "/api/./config",
            "/api/../api/config",
            "/x/..",
            "/api%2Fconfig",
            "/api%2fconfig",
            "/api/%2E%2E/config",
            "/api/%2e/config",
            "/api\\config",
            "/api/%5Cconfig",
            "/api/%00",
            "/api/%ff",
            "api/config",
            "*",
            "http://evil/api/config",
        ] {
            assert_eq!(path(raw), Err(400), "{raw}");
        }
    }

    #[test]
    fn messages_never_echo_a_long_path_whole() {
        let err = Target::parse(&format!("/{}%2F", "b".repeat(4000))).unwrap_err();
        assert!(err.message.len() < 400, "{}", err.message.len());
        assert!(shown("a\u{1b}[31mb").chars().all(|c| !c.is_control()));
    }

    #[test]
    fn query_pairs_are_decoded_once() {
        let t = Target::parse("/api/sessions?project_path=%2Ftmp%2Fmy+dir&limit=5&flag&x=%2541").unwrap();
        assert_eq!(t.query[0], ("project_path".to_string(), "/tmp/my dir".to_string()));
        assert_eq!(t.query[1], ("limit".to_string(), "5".to_string()));
        assert_eq!(t.query[2], ("flag".to_string(), String::new()));
        assert_eq!(t.query[3], ("x".to_string(), "%41".to_string()));
        assert_eq!(decode_lossy("100%"), "100%");
        assert_eq!(decode_lossy("%zz%41"), "%zzA");
        assert_eq!(decode_lossy("%E2%9C%93"), "✓");
    }
}
