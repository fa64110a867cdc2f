//! API keys (SPEC 8). With `auth.apiKeys` or `auth.adminKeys` set, every route but `/health`
//! needs `Authorization: Bearer <key>` or `X-API-Key: <key>`. An admin key may do what an API key
//! may, and change the config over HTTP (`PUT /api/config`). Keys are compared in constant
//! time and never logged. Wrong keys are counted per client address by the caller
//! (`http::EdgeState::failures`), which answers 429 once there were too many.

use super::error::ApiError;
use crate::config::Config;

/// Failed key checks one client address may make in `FAILURE_WINDOW_MS` before it gets 429.
pub const MAX_FAILURES: u64 = 10;
pub const FAILURE_WINDOW_MS: u64 = 60_000;

/// Who sent a request, as far as its key tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The key it presented and that was accepted (`None` when no keys are configured).
    pub key: Option<String>,
    /// The key is one of `auth.adminKeys`.
    pub admin: bool,
    /// It connected from a loopback address.
    pub loopback: bool,
}

/// Checks the presented key (from either header) against the configured ones.
pub fn check(config: &Config, bearer: Option<&str>, api_key: Option<&str>) -> Result<Caller, ApiError> {
    let auth = &config.auth;
    if !auth.has_keys() {
        return Ok(Caller::default());
    }
    let presented = bearer.and_then(bearer_token).or(api_key).map(str::trim);
    if let Some(key) = presented {
        let admin = any_equal(&auth.admin_keys, key);
        if admin || any_equal(&auth.api_keys, key) {
            return Ok(Caller { key: Some(key.to_string()), admin, loopback: false });
        }
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

/// The token of `Authorization: Bearer <token>` (the scheme name in any case).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// The 429 for a client address that failed the key check too often.
pub fn too_many_failures(retry_after_secs: u64) -> ApiError {
    let mut err = ApiError::new(
        429,
        format!(
            "too many requests with a wrong API key from this address \
             (at most {MAX_FAILURES} a minute); retry in {retry_after_secs} s with a valid key"
        ),
    )
    .with("retryAfter", retry_after_secs);
    err.headers.push(("Retry-After", retry_after_secs.to_string()));
    err
}

/// Whether `key` equals one of `keys`; every key is compared, so the time taken does not tell
/// which one nearly matched.
fn any_equal(keys: &[String], key: &str) -> bool {
    keys.iter().fold(false, |found, k| constant_time_eq(k.as_bytes(), key.as_bytes()) | found)
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
        assert_eq!(check(&config, None, None).unwrap(), Caller::default());
        config.auth.api_keys = vec!["s3cret".into(), "other".into()];
        assert_eq!(check(&config, None, None).unwrap_err().status, 401);
        let caller = check(&config, Some("Bearer s3cret"), None).unwrap();
        assert_eq!((caller.key.as_deref(), caller.admin), (Some("s3cret"), false));
        assert!(check(&config, None, Some("other")).is_ok());
        assert!(check(&config, Some("Bearer s3cre"), None).is_err());
        assert!(check(&config, Some("s3cret"), None).is_err());
        assert!(check(&config, Some("bearer s3cret"), None).is_ok(), "the scheme is case-insensitive");
        assert!(check(&config, Some("Basic s3cret"), None).is_err());
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn an_admin_key_is_a_key_and_says_it_is_admin() {
        let mut config = Config::defaults(Path::new("/h"), Path::new("/h"));
        config.auth.admin_keys = vec!["root-key".into()];
        assert_eq!(check(&config, None, None).unwrap_err().status, 401, "admin keys alone turn auth on");
        assert!(check(&config, None, Some("root-key")).unwrap().admin);
        config.auth.api_keys = vec!["user-key".into()];
        assert!(!check(&config, None, Some("user-key")).unwrap().admin);
        assert_eq!(too_many_failures(30).status, 429);
    }
}
