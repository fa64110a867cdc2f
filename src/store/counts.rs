//! Request counts per client in fixed windows aligned to the clock (the rate limit, SPEC 8).
//! On a shared store every server counts in one place, so a key's limit holds across all of
//! them (`RedisCounts`); `LocalCounts` keeps this server's counts in memory.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::{Op, StoreError};
use crate::redis_link::Link;

/// Counts of a window.
pub trait Counts: Send + Sync {
    /// Adds `add` to `client`'s count in window number `index` of windows `length_ms` long and
    /// returns the count (`add` 0: only reads it).
    fn add(&self, client: &str, length_ms: u64, index: u64, add: u64) -> Result<u64, StoreError>;
}

/// Past this many distinct clients in one window, newcomers share one count: memory is bounded.
pub const MAX_CLIENTS: usize = 50_000;
const OVERFLOW: &str = "(overflow)";

/// The current window's counts in memory; a new window starts afresh.
#[derive(Default)]
pub struct LocalCounts {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    length_ms: u64,
    index: u64,
    counts: HashMap<String, u64>,
}

impl Counts for LocalCounts {
    fn add(&self, client: &str, length_ms: u64, index: u64, add: u64) -> Result<u64, StoreError> {
        let mut w = self.window.lock();
        if w.length_ms != length_ms || w.index != index {
            *w = Window { length_ms, index, counts: HashMap::new() };
        }
        let known = w.counts.contains_key(client);
        if !known && w.counts.len() >= MAX_CLIENTS {
            if add == 0 {
                return Ok(0); // a newcomer has no count of its own: the shared one is not its
            }
            let shared = w.counts.entry(OVERFLOW.to_string()).or_default();
            *shared += add;
            return Ok(*shared);
        }
        if add == 0 {
            return Ok(w.counts.get(client).copied().unwrap_or(0));
        }
        let count = w.counts.entry(client.to_string()).or_default();
        *count += add;
        Ok(*count)
    }
}

impl LocalCounts {
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.window.lock().counts.len()
    }
}

/// Counts in Redis, one key per client and window that expires with it. The client (which may
/// hold an API key) is hashed: no secret becomes a key name.
pub struct RedisCounts {
    link: Arc<Link>,
}

const ADD: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n";

impl RedisCounts {
    pub fn new(link: Arc<Link>) -> RedisCounts {
        RedisCounts { link }
    }
}

impl Counts for RedisCounts {
    fn add(&self, client: &str, length_ms: u64, index: u64, add: u64) -> Result<u64, StoreError> {
        let digest = Sha256::digest(client.as_bytes());
        let hash: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let key = self.link.key(&format!("rate:{length_ms}:{index}:{hash}"));
        let result = if add == 0 {
            self.link.with(|c| redis::cmd("GET").arg(&key).query::<Option<u64>>(c)).map(Option::unwrap_or_default)
        } else {
            // The key outlives its window a little, so a slow clock elsewhere still finds it.
            let script = redis::Script::new(ADD);
            self.link.with(|c| script.key(&key).arg(add).arg(length_ms * 2).invoke::<u64>(c))
        };
        result.map_err(|e| StoreError::new(Op::Save, "rate limit", &client_kind(client), e.into(), super::redis::HINT))
    }
}

/// What a client id is, without the id itself (it may be an API key).
fn client_kind(client: &str) -> String {
    client.split_once(':').map_or("client", |(kind, _)| kind).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_start_afresh_each_window_and_stay_bounded() {
        let counts = LocalCounts::default();
        assert_eq!(counts.add("ip:1", 60_000, 7, 1).unwrap(), 1);
        assert_eq!(counts.add("ip:1", 60_000, 7, 1).unwrap(), 2);
        assert_eq!(counts.add("ip:1", 60_000, 7, 0).unwrap(), 2, "0 reads");
        assert_eq!(counts.add("ip:1", 60_000, 8, 1).unwrap(), 1, "a new window");
        for i in 0..MAX_CLIENTS + 100 {
            counts.add(&format!("ip:{i}"), 60_000, 9, 1).unwrap();
        }
        assert_eq!(counts.clients(), MAX_CLIENTS + 1, "newcomers share one count");
        assert_eq!(counts.add("ip:new", 60_000, 9, 0).unwrap(), 0, "a newcomer reads no count of its own");
    }

    #[test]
    fn redis_counts_are_shared_by_every_server_and_expire() {
        let redis = crate::redis_link::testing::RedisServer::start();
        let (a, b) = (RedisCounts::new(redis.link("ccs:")), RedisCounts::new(redis.link("ccs:")));
        assert_eq!(a.add("key:secret-key", 1_000, 5, 1).unwrap(), 1);
        assert_eq!(b.add("key:secret-key", 1_000, 5, 1).unwrap(), 2, "another server adds to the same count");
        assert_eq!(b.add("key:secret-key", 1_000, 5, 0).unwrap(), 2);
        assert_eq!(a.add("key:secret-key", 1_000, 6, 0).unwrap(), 0, "the next window starts afresh");
        let keys: Vec<String> = redis.link("ccs:").with(|c| redis::cmd("KEYS").arg("*").query(c)).unwrap();
        assert!(keys.iter().all(|k| !k.contains("secret")), "no API key in a key name: {keys:?}");
        let ttl: i64 = redis
            .link("ccs:")
            .with(|c| redis::cmd("PTTL").arg(keys.iter().find(|k| k.contains("rate:")).unwrap()).query(c))
            .unwrap();
        assert!(ttl > 0 && ttl <= 2_000, "the count expires after its window: {ttl}");
    }
}
