//! The shared implementation of `Records` (`storageType: "redis"`): one kind of record in
//! Redis, for any number of ccs servers over one Redis. It owns these keys under the link's
//! prefix (the link refuses a prefix that holds another program's keys, and nothing here
//! touches a key outside it):
//! - `{kind}:{id}`: a record, as JSON;
//! - `{kind}`: the kind's index, a sorted set of its ids, all scored 0 so that Redis orders
//!   them by their bytes (id order, as `scan` and `all` promise);
//! - `lock:{kind}:{id}`: the lock of the record's writer, a random token that expires.
//!
//! Invariants:
//! - A record and its index entry change together (one script).
//! - Every write of a record (put, update, upsert, remove) takes the record's lock, on every
//!   server alike, then reads, then writes only if it still holds the lock (a script compares
//!   the token, writes and releases). So `update` loses no other server's change and calls
//!   `change` at most once. A lock left by a server that died expires after `LOCK_TTL`.
//! - Nothing is cached: every read asks Redis, and a read that fails is a `StoreError`. The one
//!   exception is what this server showed unsaved (`show_unsaved`): it sees that record as shown
//!   (in `get`, `scan`, `all` and as the start of an `update`) until it writes it again.
//! - A record that does not parse is logged and skipped, never deleted; an `upsert` that must
//!   start it afresh first copies it to `corrupt:{kind}:{id}`.
//!
//! Durability: `Durable::Now` and `Durable::Soon` are alike here, a write Redis acknowledged.
//! Whether an acknowledged write survives Redis's own crash is Redis's `appendonly` and
//! `appendfsync` setting (`appendfsync always` keeps "durable before anyone is told").

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::table::{is_safe_id, unsafe_id};
use super::{Durable, Op, Records, StoreError};
use crate::redis_link::{Link, LinkError};

/// How long a record's lock lasts if its holder never releases it (a server that died).
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long a writer waits for a record's lock before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(12);
/// Records per `MGET` of a listing: large enough for few round trips, small enough not to
/// block Redis for long.
const CHUNK: usize = 500;

pub(super) const HINT: &str =
    "the store is in Redis: check that Redis runs, has memory left and that redisUrl is right; ccs \
                    connects again by itself, GET /health says when Redis answers";
const LOCK_HINT: &str = "another ccs server kept the record locked; a lock whose server died expires by itself";

/// Writes (3 arguments) or removes (2) a record and its index entry, only while the lock
/// holds the token, and releases the lock. KEYS: lock, record, index; ARGV: token, id, JSON.
const WRITE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV == 3 then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], 0, ARGV[2])
else
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
";

/// Releases the lock if it still holds the token. KEYS: lock; ARGV: token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// One kind of record in Redis.
pub struct RedisRecords<T> {
    kind: &'static str,
    link: Arc<Link>,
    /// `{prefix}{kind}`, the index.
    index: String,
    /// What this server showed without saving it, by id, until it writes that record again.
    unsaved: Mutex<HashMap<String, Arc<T>>>,
    write: redis::Script,
    release: redis::Script,
}

/// A record as read from Redis.
enum Found<T> {
    Record(Arc<T>),
    Missing,
    /// Bytes that do not parse as a record (logged).
    Corrupt(Vec<u8>),
}

/// A record's lock, held: released on drop unless the write released it.
struct Held<'a> {
    link: &'a Link,
    release: &'a redis::Script,
    key: String,
    token: String,
    /// The write released it.
    released: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Best effort: a lock that cannot be released now expires by itself.
        let _ = self.link.with(|c| self.release.key(&self.key).arg(&self.token).invoke::<i64>(c));
    }
}

impl<T: Serialize + DeserializeOwned> RedisRecords<T> {
    pub fn new(kind: &'static str, link: Arc<Link>) -> RedisRecords<T> {
        RedisRecords {
            kind,
            index: link.key(kind),
            link,
            unsaved: Mutex::new(HashMap::new()),
            write: redis::Script::new(WRITE),
            release: redis::Script::new(RELEASE),
        }
    }

    fn record_key(&self, id: &str) -> String {
        self.link.key(&format!("{}:{id}", self.kind))
    }

    fn failed(&self, op: Op, id: &str, e: LinkError) -> StoreError {
        // Down (the link says so) or refused: `StoreError::is_unreachable` tells them apart.
        let kind = if self.link.fault().is_some() { io::ErrorKind::NotConnected } else { io::ErrorKind::Other };
        StoreError::new(op, self.kind, id, io::Error::new(kind, e.0), HINT)
    }

    fn parse(&self, id: &str, bytes: &[u8]) -> Option<T> {
        match serde_json::from_slice(bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                log::warn!("{} record {id} in Redis does not parse ({e}); skipped, left as it is", self.kind);
                None
            }
        }
    }

    /// The record as this server shows it: what it showed unsaved, else what Redis holds.
    fn find(&self, id: &str) -> Result<Found<T>, StoreError> {
        if let Some(shown) = self.unsaved.lock().get(id) {
            return Ok(Found::Record(shown.clone()));
        }
        let key = self.record_key(id);
        let bytes: Option<Vec<u8>> =
            self.link.with(|c| redis::cmd("GET").arg(&key).query(c)).map_err(|e| self.failed(Op::Read, id, e))?;
        Ok(match bytes {
            None => Found::Missing,
            Some(bytes) => match self.parse(id, &bytes) {
                Some(record) => Found::Record(Arc::new(record)),
                None => Found::Corrupt(bytes),
            },
        })
    }

    /// Takes the lock of record `id`, waiting while another writer (of any server) holds it.
    fn lock(&self, op: Op, id: &str) -> Result<Held<'_>, StoreError> {
        let key = self.link.key(&format!("lock:{}:{id}", self.kind));
        let token = uuid::Uuid::new_v4().to_string();
        let ttl_ms = LOCK_TTL.as_millis() as u64;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            let taken: Option<String> = self
                .link
                .with(|c| redis::cmd("SET").arg(&key).arg(&token).arg("NX").arg("PX").arg(ttl_ms).query(c))
                .map_err(|e| self.failed(op, id, e))?;
            if taken.is_some() {
                return Ok(Held { link: &self.link, release: &self.release, key, token, released: false });
            }
            if Instant::now() >= deadline {
                let why = format!("its lock was still taken after {} s", LOCK_WAIT.as_secs());
                return Err(StoreError::new(
                    op,
                    self.kind,
                    id,
                    io::Error::new(io::ErrorKind::TimedOut, why),
                    LOCK_HINT,
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Writes `record` (or removes the record when `None`) under the held lock, and releases it.
    fn write_locked(&self, mut held: Held<'_>, id: &str, record: Option<&T>) -> Result<(), StoreError> {
        let op = if record.is_some() { Op::Save } else { Op::Remove };
        let mut call = self.write.prepare_invoke();
        call.key(&held.key).key(self.record_key(id)).key(&self.index).arg(&held.token).arg(id);
        if let Some(record) = record {
            call.arg(serde_json::to_string(record).map_err(|e| StoreError::new(op, self.kind, id, e.into(), ""))?);
        }
        let written: i64 = self.link.with(|c| call.invoke(c)).map_err(|e| self.failed(op, id, e))?;
        if written == 0 {
            let why = format!(
                "its lock expired before the write (held longer than {} s); nothing was written",
                LOCK_TTL.as_secs()
            );
            return Err(StoreError::new(op, self.kind, id, io::Error::other(why), HINT));
        }
        held.released = true;
        self.unsaved.lock().remove(id);
        Ok(())
    }

    /// Keeps the bytes of a record that does not parse before a write replaces them.
    fn set_aside(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let to = self.link.key(&format!("corrupt:{}:{id}", self.kind));
        self.link
            .with(|c| redis::cmd("SET").arg(&to).arg(bytes).query::<()>(c))
            .map_err(|e| self.failed(Op::Save, id, e))?;
        log::warn!(
            "{} record {id} did not parse; copied it to the Redis key {to:?} before starting it afresh",
            self.kind
        );
        Ok(())
    }

    /// The records of `ids` (from the index), in that order, with what this server showed
    /// unsaved among those whose id starts with `prefix`.
    fn fetch(&self, prefix: &str, ids: Vec<String>) -> Result<Vec<Arc<T>>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.record_key(id)).collect();
            let values: Vec<Option<Vec<u8>>> =
                self.link.with(|c| redis::cmd("MGET").arg(&keys).query(c)).map_err(|e| self.failed(Op::Read, "", e))?;
            for (id, bytes) in chunk.iter().zip(values) {
                // `None`: removed since the index was read.
                if let Some(record) = bytes.and_then(|bytes| self.parse(id, &bytes)) {
                    found.push((id.clone(), Arc::new(record)));
                }
            }
        }
        let unsaved = self.unsaved.lock();
        if unsaved.is_empty() {
            return Ok(found.into_iter().map(|(_, record)| record).collect());
        }
        let mut merged: BTreeMap<String, Arc<T>> = found.into_iter().collect();
        for (id, shown) in unsaved.iter().filter(|(id, _)| id.starts_with(prefix)) {
            merged.insert(id.clone(), shown.clone());
        }
        Ok(merged.into_values().collect())
    }
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync> Records<T> for RedisRecords<T> {
    fn get(&self, id: &str) -> Result<Option<Arc<T>>, StoreError> {
        if !is_safe_id(id) {
            return Ok(None);
        }
        Ok(match self.find(id)? {
            Found::Record(record) => Some(record),
            Found::Missing | Found::Corrupt(_) => None,
        })
    }

    fn put(&self, id: &str, record: T, _durable: Durable) -> Result<Arc<T>, StoreError> {
        if !is_safe_id(id) {
            return Err(unsafe_id(self.kind, id));
        }
        // Locked like any write, so a put never lands inside another server's update.
        let held = self.lock(Op::Save, id)?;
        self.write_locked(held, id, Some(&record))?;
        Ok(Arc::new(record))
    }

    fn update_with(
        &self,
        id: &str,
        _durable: Durable,
        change: &mut dyn FnMut(&mut T) -> bool,
    ) -> Result<Option<Arc<T>>, StoreError> {
        if !is_safe_id(id) {
            return Ok(None);
        }
        let held = self.lock(Op::Save, id)?;
        let Found::Record(current) = self.find(id)? else { return Ok(None) };
        let mut next = (*current).clone();
        if !change(&mut next) {
            return Ok(None);
        }
        self.write_locked(held, id, Some(&next))?;
        Ok(Some(Arc::new(next)))
    }

    fn upsert_with(
        &self,
        id: &str,
        _durable: Durable,
        fresh: &mut dyn FnMut() -> T,
        change: &mut dyn FnMut(&mut T),
    ) -> Result<Arc<T>, StoreError> {
        if !is_safe_id(id) {
            return Err(unsafe_id(self.kind, id));
        }
        let held = self.lock(Op::Save, id)?;
        let mut next = match self.find(id)? {
            Found::Record(current) => (*current).clone(),
            Found::Missing => fresh(),
            Found::Corrupt(bytes) => {
                self.set_aside(id, &bytes)?;
                fresh()
            }
        };
        change(&mut next);
        self.write_locked(held, id, Some(&next))?;
        Ok(Arc::new(next))
    }

    fn show_unsaved(&self, id: &str, record: T) -> Arc<T> {
        let record = Arc::new(record);
        self.unsaved.lock().insert(id.to_string(), record.clone());
        record
    }

    fn save_shown(&self, id: &str, stored_stands: &mut dyn FnMut(&T) -> bool) -> Result<bool, StoreError> {
        let Some(shown) = self.unsaved.lock().get(id).cloned() else { return Ok(false) };
        let held = self.lock(Op::Save, id)?;
        // What Redis holds, not what is shown here.
        let key = self.record_key(id);
        let bytes: Option<Vec<u8>> =
            self.link.with(|c| redis::cmd("GET").arg(&key).query(c)).map_err(|e| self.failed(Op::Read, id, e))?;
        match bytes.map(|bytes| self.parse(id, &bytes)) {
            // Removed meanwhile, or replaced by a record that stands.
            None => {}
            Some(Some(stored)) if stored_stands(&stored) => {}
            Some(_) => return self.write_locked(held, id, Some(&shown)).map(|()| true),
        }
        self.unsaved.lock().remove(id);
        Ok(true)
    }

    fn remove(&self, id: &str, _durable: Durable) -> Result<(), StoreError> {
        if !is_safe_id(id) {
            return Ok(()); // no such record can exist
        }
        let held = self.lock(Op::Remove, id)?;
        self.write_locked(held, id, None)
    }

    fn scan(&self, prefix: &str) -> Result<Vec<Arc<T>>, StoreError> {
        // Ids are ASCII, so `prefix` + 0xff is past every id that starts with `prefix`.
        let (from, to) = match prefix {
            "" => (b"-".to_vec(), b"+".to_vec()),
            _ => ([b"[", prefix.as_bytes()].concat(), [b"(", prefix.as_bytes(), b"\xff"].concat()),
        };
        let ids: Vec<String> = self
            .link
            .with(|c| redis::cmd("ZRANGE").arg(&self.index).arg(&from).arg(&to).arg("BYLEX").query(c))
            .map_err(|e| self.failed(Op::Read, "", e))?;
        self.fetch(prefix, ids)
    }

    fn all(&self) -> Result<Vec<Arc<T>>, StoreError> {
        self.scan("")
    }

    fn len(&self) -> Result<usize, StoreError> {
        self.link.with(|c| redis::cmd("ZCARD").arg(&self.index).query(c)).map_err(|e| self.failed(Op::Read, "", e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{json, Value};

    use super::*;
    use crate::model::Day;
    use crate::redis_link::testing::RedisServer;
    use crate::store::Store;

    fn things(link: &Arc<Link>) -> Box<dyn Records<Value>> {
        Box::new(RedisRecords::new("things", link.clone()))
    }

    fn numbers(records: Vec<Arc<Value>>) -> Vec<i64> {
        records.iter().map(|v| v["n"].as_i64().unwrap()).collect()
    }

    #[test]
    fn records_are_json_keys_under_the_prefix_listed_in_id_order() {
        let redis = RedisServer::start();
        let link = redis.link("ccs:");
        link.with(|c| redis::cmd("SET").arg("theirs").arg("kept").query::<()>(c)).unwrap();
        let t = things(&link);
        for (id, n) in [("b.1", 3), ("a.2", 2), ("a.10", 10), ("a.1", 1)] {
            t.put(id, json!({"n": n}), Durable::Now).unwrap();
        }
        assert_eq!(*t.get("a.2").unwrap().unwrap(), json!({"n": 2}));
        assert!(t.get("a.3").unwrap().is_none());
        assert!(t.get("../x").unwrap().is_none());
        assert!(t.put("../x", json!(1), Durable::Now).is_err());
        assert_eq!(numbers(t.scan("a.").unwrap()), [1, 10, 2], "byte order of the ids");
        assert_eq!(numbers(t.all().unwrap()), [1, 10, 2, 3]);
        assert_eq!(t.len().unwrap(), 4);
        t.remove("a.10", Durable::Now).unwrap();
        assert_eq!(numbers(t.scan("a.").unwrap()), [1, 2]);
        assert_eq!(t.len().unwrap(), 3);

        let raw: String = link.with(|c| redis::cmd("GET").arg("ccs:things:a.1").query(c)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), json!({"n": 1}));
        let theirs: String = link.with(|c| redis::cmd("GET").arg("theirs").query(c)).unwrap();
        assert_eq!(theirs, "kept", "a key outside the prefix is left alone");
        let locks: Vec<String> = link.with(|c| redis::cmd("KEYS").arg("ccs:lock:*").query(c)).unwrap();
        assert!(locks.is_empty(), "every lock was released: {locks:?}");
    }

    #[test]
    fn updates_from_two_servers_lose_nothing_and_call_change_once_each() {
        let redis = RedisServer::start();
        let servers = [Arc::new(Store::on_redis(redis.link("ccs:"))), Arc::new(Store::on_redis(redis.link("ccs:")))];
        servers[0].statistics.put("2026-01-31", Day::default(), Durable::Now).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (store, calls) = (servers[i % 2].clone(), calls.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let counted = store.statistics.update("2026-01-31", Durable::Now, |day| {
                            calls.fetch_add(1, Ordering::SeqCst);
                            day.total_requests += 1;
                            true
                        });
                        assert!(counted.unwrap().is_some());
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 400);
        for store in &servers {
            assert_eq!(store.statistics.get("2026-01-31").unwrap().unwrap().total_requests, 400);
        }
    }

    #[test]
    fn a_lock_left_by_a_dead_server_expires() {
        let redis = RedisServer::start();
        let link = redis.link("ccs:");
        let t = things(&link);
        t.put("x", json!(1), Durable::Now).unwrap();
        link.with(|c| redis::cmd("SET").arg("ccs:lock:things:x").arg("dead").arg("PX").arg(300).query::<()>(c))
            .unwrap();
        let started = Instant::now();
        t.update("x", Durable::Now, |v| {
            *v = json!(2);
            true
        })
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the lock");
        assert_eq!(*t.get("x").unwrap().unwrap(), json!(2));
    }

    #[test]
    fn what_was_shown_unsaved_is_seen_here_until_the_record_is_written() {
        let redis = RedisServer::start();
        let (here, there) = (things(&redis.link("ccs:")), things(&redis.link("ccs:")));
        here.put("t", json!({"n": 1}), Durable::Now).unwrap();
        here.show_unsaved("t", json!({"n": 2}));
        assert_eq!(*here.get("t").unwrap().unwrap(), json!({"n": 2}));
        assert_eq!(numbers(here.all().unwrap()), [2]);
        assert_eq!(*there.get("t").unwrap().unwrap(), json!({"n": 1}), "another server sees what was saved");
        here.put("t", json!({"n": 3}), Durable::Now).unwrap();
        there.put("t", json!({"n": 4}), Durable::Now).unwrap();
        assert_eq!(*here.get("t").unwrap().unwrap(), json!({"n": 4}), "the write replaced what was shown");
    }

    #[test]
    fn what_was_shown_unsaved_is_saved_later_unless_the_stored_record_stands() {
        let redis = RedisServer::start();
        let (here, there) = (things(&redis.link("ccs:")), things(&redis.link("ccs:")));
        here.put("t", json!({"n": 1}), Durable::Now).unwrap();
        assert!(!here.save_shown("t", &mut |_| false).unwrap(), "nothing was shown unsaved");
        here.show_unsaved("t", json!({"n": 2}));
        assert!(here.save_shown("t", &mut |_| false).unwrap());
        assert_eq!(*there.get("t").unwrap().unwrap(), json!({"n": 2}), "saved for every server");
        assert!(!here.save_shown("t", &mut |_| false).unwrap(), "once");

        here.show_unsaved("t", json!({"n": 3}));
        there.put("t", json!({"n": 9}), Durable::Now).unwrap();
        assert!(here.save_shown("t", &mut |stored| stored["n"] == 9).unwrap());
        assert_eq!(*there.get("t").unwrap().unwrap(), json!({"n": 9}), "the record that stands is kept");
        assert_eq!(*here.get("t").unwrap().unwrap(), json!({"n": 9}), "and shown here again");
    }

    #[test]
    fn a_record_that_does_not_parse_is_skipped_and_kept() {
        let redis = RedisServer::start();
        let link = redis.link("ccs:");
        let t = things(&link);
        t.put("good", json!(1), Durable::Now).unwrap();
        t.put("bad", json!(2), Durable::Now).unwrap();
        link.with(|c| redis::cmd("SET").arg("ccs:things:bad").arg("{\"half\": ").query::<()>(c)).unwrap();
        assert_eq!(t.all().unwrap().len(), 1);
        assert!(t.get("bad").unwrap().is_none());
        assert!(t.update("bad", Durable::Now, |_| true).unwrap().is_none());
        let raw: String = link.with(|c| redis::cmd("GET").arg("ccs:things:bad").query(c)).unwrap();
        assert_eq!(raw, "{\"half\": ", "left as it was");
        t.upsert("bad", Durable::Now, || json!(0), |v| *v = json!(5)).unwrap();
        let kept: String = link.with(|c| redis::cmd("GET").arg("ccs:corrupt:things:bad").query(c)).unwrap();
        assert_eq!(kept, "{\"half\": ", "copied aside before it was started afresh");
    }

    #[test]
    fn a_new_store_finds_the_records_and_with_redis_down_reads_and_writes_fail() {
        let redis = RedisServer::start();
        let before = Store::on_redis(redis.link("ccs:"));
        before.statistics.put("2026-01-31", Day::default(), Durable::Now).unwrap();
        drop(before); // a restart of ccs
        let store = Store::on_redis(redis.link("ccs:"));
        assert_eq!(store.statistics.all().unwrap().len(), 1);
        assert!(store.faults().is_empty());

        drop(redis);
        let read = store.statistics.get("2026-01-31").unwrap_err().to_string();
        assert!(
            read.contains("could not read statistics record 2026-01-31") && read.contains("not reachable"),
            "{read}"
        );
        assert!(store.statistics.scan("2026").is_err());
        assert!(store.statistics.all().unwrap_err().to_string().contains("could not read the statistics records"));
        assert!(store.statistics.len().is_err());
        let write = store.statistics.put("2026-02-01", Day::default(), Durable::Now).unwrap_err().to_string();
        assert!(write.contains("could not save statistics record 2026-02-01") && write.contains("Redis"), "{write}");
        assert!(store.statistics.update("2026-01-31", Durable::Now, |_| true).is_err());
        assert!(store.statistics.remove("2026-01-31", Durable::Now).is_err());
        assert!(store.faults().iter().any(|f| f.contains("not reachable")), "{:?}", store.faults());
    }

    #[test]
    fn opening_an_unreachable_redis_says_what_to_fix() {
        let mut config =
            crate::config::Config::defaults(std::path::Path::new("/nonexistent"), std::path::Path::new("/nonexistent"));
        config.storage_type = crate::config::StorageType::Redis;
        config.redis_url = Some("redis://127.0.0.1:1/".into());
        let err = Store::open(&config).err().unwrap().to_string();
        assert!(err.contains("start Redis or correct redisUrl"), "{err}");
    }
}
