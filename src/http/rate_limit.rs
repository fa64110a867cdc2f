//! Rate limiting of `/api/*` (SPEC 8): a fixed window of `rateLimit.windowMs` per API key (or per
//! client IP without auth), at most `rateLimit.maxRequests` requests in it. Windows are aligned
//! to the clock, so the table only holds the clients of the current window; past
//! `MAX_CLIENTS` distinct clients in one window, newcomers share one bucket. Memory is bounded.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::config::RateLimit;

const MAX_CLIENTS: usize = 50_000;
const OVERFLOW: &str = "(overflow)";

#[derive(Default)]
pub struct RateLimiter {
    state: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    length_ms: u64,
    index: u64,
    counts: HashMap<String, u64>,
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
    /// Counts a request of `client` at `now_ms` (ms since the epoch).
    pub fn check(&self, client: &str, rule: &RateLimit, now_ms: u64) -> Decision {
        self.count(client, rule, now_ms, 1)
    }

    /// What `check` would say of one more request, without counting one. A client not in a
    /// full table is allowed: the shared overflow bucket must not lock out everyone new (this
    /// is what the wrong-key limit asks before checking a key).
    pub fn peek(&self, client: &str, rule: &RateLimit, now_ms: u64) -> Decision {
        let decision = self.count(client, rule, now_ms, 0);
        let w = self.state.lock();
        let overflowing = w.counts.len() >= MAX_CLIENTS && !w.counts.contains_key(client);
        Decision { allowed: decision.allowed || overflowing, ..decision }
    }

    fn count(&self, client: &str, rule: &RateLimit, now_ms: u64, add: u64) -> Decision {
        let length = rule.window_ms.max(1);
        let index = now_ms / length;
        let mut w = self.state.lock();
        if w.length_ms != length || w.index != index {
            *w = Window { length_ms: length, index, counts: HashMap::new() };
        }
        let key = if w.counts.len() >= MAX_CLIENTS && !w.counts.contains_key(client) { OVERFLOW } else { client };
        let so_far = w.counts.get(key).copied().unwrap_or(0);
        let count = so_far + add.max(1);
        if add > 0 {
            w.counts.insert(key.to_string(), count);
        }
        let reset_ms = (index + 1) * length - now_ms;
        Decision {
            allowed: count <= rule.max_requests,
            limit: rule.max_requests,
            remaining: rule.max_requests.saturating_sub(count),
            reset_secs: reset_ms.div_ceil(1000),
            window_secs: length.div_ceil(1000),
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.state.lock().counts.len()
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
            let d = limiter.check("ip:1", &rule(3), start + i);
            assert!(d.allowed);
            assert_eq!(d.remaining, 3 - i);
        }
        let refused = limiter.check("ip:1", &rule(3), start + 4);
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_secs, refused.window_secs), (0, 50, 60));
        assert!(refused.headers().contains(&("Retry-After", "50".to_string())));
        assert!(limiter.check("ip:2", &rule(3), start + 5).allowed, "clients are counted apart");
        assert!(limiter.check("ip:1", &rule(3), start + 50_000).allowed, "a new window starts afresh");
    }

    #[test]
    fn peek_tells_without_counting() {
        let limiter = RateLimiter::default();
        for _ in 0..5 {
            assert!(limiter.peek("ip:1", &rule(2), 7).allowed);
        }
        limiter.check("ip:1", &rule(2), 7);
        limiter.check("ip:1", &rule(2), 8);
        assert!(!limiter.peek("ip:1", &rule(2), 9).allowed);
        assert_eq!(limiter.clients(), 1);
    }

    #[test]
    fn peek_lets_newcomers_of_a_full_table_through() {
        let limiter = RateLimiter::default();
        for i in 0..MAX_CLIENTS {
            limiter.check(&format!("ip:{i}"), &rule(1), 5);
        }
        for _ in 0..5 {
            limiter.check("ip:new-1", &rule(1), 5); // all counted in the overflow bucket
        }
        assert!(!limiter.check("ip:new-2", &rule(1), 5).allowed, "check counts the shared bucket");
        assert!(limiter.peek("ip:new-3", &rule(1), 5).allowed, "peek does not lock newcomers out");
        assert!(!limiter.peek("ip:7", &rule(1), 5).allowed, "a known client over its limit stays out");
    }

    #[test]
    fn memory_stays_bounded_however_many_clients() {
        let limiter = RateLimiter::default();
        for i in 0..MAX_CLIENTS + 1000 {
            limiter.check(&format!("ip:{i}"), &rule(1_000_000), 5);
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS + 1);
    }
}
