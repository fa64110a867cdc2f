//! API keys (SPEC 8): with `auth.apiKeys` set, `/api/*` and `/metrics` need
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are compared in constant time and
//! never logged.

use super::error::ApiError;
use crate::config::Config;

/// Whether `path` needs a key when keys are configured.
pub fn is_protected(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == "/metrics"
}

/// Checks the presented key (from either header) against the configured ones.
pub fn check(config: &Config, bearer: Option<&str>, api_key: Option<&str>) -> Result<(), ApiError> {
    if config.auth.api_keys.is_empty() {
        return Ok(());
    }
    let presented = bearer.and_then(|h| h.strip_prefix("Bearer ")).or(api_key).map(str::trim);
    let accepted = presented.is_some_and(|key| {
        // Every key is compared, so the time taken does not tell which one nearly matched.
        config.auth.api_keys.iter().fold(false, |found, k| constant_time_eq(k.as_bytes(), key.as_bytes()) | found)
    });
    if accepted {
        return Ok(());
    }
    let mut err = ApiError::new(
        401,
        if presented.is_some() {
            "the API key is not valid; send one of auth.apiKeys from the server's config"
        } else {
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        },
    );
    err.headers.push(("WWW-Authenticate", "Bearer".into()));
    Err(err)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as usize;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn keys_are_checked_only_when_configured() {
        let mut config = Config::defaults(Path::new("/h"), Path::new("/h"));
        assert!(check(&config, None, None).is_ok());
        config.auth.api_keys = vec!["s3cret".into(), "other".into()];
        assert_eq!(check(&config, None, None).unwrap_err().status, 401);
        assert!(check(&config, Some("Bearer s3cret"), None).is_ok());
        assert!(check(&config, None, Some("other")).is_ok());
        assert!(check(&config, Some("Bearer s3cre"), None).is_err());
        assert!(check(&config, Some("s3cret"), None).is_err());
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(is_protected("/api/claude") && is_protected("/metrics") && !is_protected("/health"));
    }
}
