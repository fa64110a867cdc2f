//! Rate limiting of `/api/*` (SPEC 8): a fixed window of `rateLimit.windowMs` per API key (or per
//! client IP without auth), at most `rateLimit.maxRequests` requests in it. Windows are aligned
//! to the clock. The counting is the store's (`store::Counts`): in memory and bounded for a
//! local store, shared by every server for Redis, so a key's limit holds across all of them.

use std::sync::Arc;

use crate::config::RateLimit;
use crate::store::{Counts, LocalCounts, StoreError};

pub struct RateLimiter {
    counts: Arc<dyn Counts>,
}

impl Default for RateLimiter {
    /// Counts in this server's memory.
    fn default() -> RateLimiter {
        RateLimiter::over(Arc::new(LocalCounts::default()))
    }
}

/// The verdict on one request, with what the RateLimit headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window ends.
    pub reset_secs: u64,
    pub window_secs: u64,
}

impl Decision {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("RateLimit-Policy", format!("{};w={}", self.limit, self.window_secs)),
            ("RateLimit-Limit", self.limit.to_string()),
            ("RateLimit-Remaining", self.remaining.to_string()),
            ("RateLimit-Reset", self.reset_secs.to_string()),
        ];
        if !self.allowed {
            headers.push(("Retry-After", self.reset_secs.to_string()));
        }
        headers
    }
}

impl RateLimiter {
    pub fn over(counts: Arc<dyn Counts>) -> RateLimiter {
        RateLimiter { counts }
    }

    /// Counts a request of `client` at `now_ms` (ms since the epoch).
    pub fn check(&self, client: &str, rule: &RateLimit, now_ms: u64) -> Result<Decision, StoreError> {
        self.count(client, rule, now_ms, 1)
    }

    /// What `check` would say of one more request, without counting one (this is what the
    /// wrong-key limit asks before checking a key).
    pub fn peek(&self, client: &str, rule: &RateLimit, now_ms: u64) -> Result<Decision, StoreError> {
        self.count(client, rule, now_ms, 0)
    }

    fn count(&self, client: &str, rule: &RateLimit, now_ms: u64, add: u64) -> Result<Decision, StoreError> {
        let length = rule.window_ms.max(1);
        let index = now_ms / length;
        let count = self.counts.add(client, length, index, add)? + u64::from(add == 0);
        let reset_ms = (index + 1) * length - now_ms;
        Ok(Decision {
            allowed: count <= rule.max_requests,
            limit: rule.max_requests,
            remaining: rule.max_requests.saturating_sub(count),
            reset_secs: reset_ms.div_ceil(1000),
            window_secs: length.div_ceil(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(max: u64) -> RateLimit {
        RateLimit { enabled: true, window_ms: 60_000, max_requests: max }
    }

    #[test]
    fn the_request_after_the_limit_is_refused_until_the_next_window() {
        let limiter = RateLimiter::default();
        let start = 1_800_000_000_000 / 60_000 * 60_000 + 10_000; // 10 s into a window
        for i in 1..=3 {
            let d = limiter.check("ip:1", &rule(3), start + i).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, 3 - i);
        }
        let refused = limiter.check("ip:1", &rule(3), start + 4).unwrap();
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_secs, refused.window_secs), (0, 50, 60));
        assert!(refused.headers().contains(&("Retry-After", "50".to_string())));
        assert!(limiter.check("ip:2", &rule(3), start + 5).unwrap().allowed, "clients are counted apart");
        assert!(limiter.check("ip:1", &rule(3), start + 50_000).unwrap().allowed, "a new window starts afresh");
    }

    #[test]
    fn peek_tells_without_counting() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(limiter.peek("ip:1", &rule(2), 7).unwrap().allowed);
        }
        limiter.check("ip:1", &rule(2), 7).unwrap();
        limiter.check("ip:1", &rule(2), 8).unwrap();
        assert!(!limiter.peek("ip:1", &rule(2), 9).unwrap().allowed);
    }

    #[test]
    fn peek_lets_newcomers_of_a_full_table_through() {
        let limiter = RateLimiter::default();
        for i in 0..crate::store::MAX_CLIENTS {
            limiter.check(&format!("ip:{i}"), &rule(1), 5).unwrap();
        }
        for _ in 0..5 {
            limiter.check("ip:new-1", &rule(1), 5).unwrap(); // all counted in the overflow bucket
        }
        assert!(!limiter.check("ip:new-2", &rule(1), 5).unwrap().allowed, "check counts the shared bucket");
        assert!(limiter.peek("ip:new-3", &rule(1), 5).unwrap().allowed, "peek does not lock newcomers out");
        assert!(!limiter.peek("ip:7", &rule(1), 5).unwrap().allowed, "a known client over its limit stays out");
    }
}
