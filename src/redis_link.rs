//! The link to Redis that the shared store and queue use (`storageType: "redis"`, SPEC 12): a
//! few synchronous connections with timeouts (no async runtime), the key prefix every key of
//! ccs carries, and whether Redis answers now (`fault`, which `/health` shows).
//!
//! A call that fails on the connection drops it and marks Redis down; the next call connects
//! again, so Redis coming back needs nothing from anyone. Nothing here retries a command: the
//! caller decides (a request answers 503, a worker waits and tries again).

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before the connection counts as broken.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept open between calls (more are opened when threads need them at once).
const IDLE_CONNECTIONS: usize = 16;
/// The key (under the prefix) that says the prefix belongs to ccs.
const MARKER: &str = "owner";
const MARKER_VALUE: &str = "ccs (https://github.com/ccs) shared store, format 1";

/// Redis did not answer, or answered an error.
#[derive(Debug, Clone)]
pub struct LinkError(pub String);

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LinkError {}

impl From<LinkError> for std::io::Error {
    fn from(e: LinkError) -> std::io::Error {
        std::io::Error::other(e.0)
    }
}

pub struct Link {
    client: redis::Client,
    /// `redisUrl` with its password masked, for messages.
    shown_url: String,
    prefix: String,
    /// Open connections between calls.
    idle: Mutex<Vec<redis::Connection>>,
    /// Why the last call failed, until one succeeds again.
    down: Mutex<Option<String>>,
}

impl Link {
    /// Connects to `url` and checks that keys under `prefix` are ccs's (or that there are none).
    /// Every error says what to fix.
    ///
    /// One link per Redis and prefix in a process: the store and the queue share it, so both
    /// know at once when Redis is down (`/health`).
    pub fn open(url: &str, prefix: &str) -> Result<Arc<Link>, LinkError> {
        static OPEN: Mutex<Vec<(String, String, Weak<Link>)>> = Mutex::new(Vec::new());
        let mut open = OPEN.lock();
        open.retain(|(_, _, link)| link.strong_count() > 0);
        if let Some(link) = open.iter().find(|(u, p, _)| u == url && p == prefix).and_then(|(_, _, l)| l.upgrade()) {
            return Ok(link);
        }
        let link = Link::connect_new(url, prefix)?;
        open.push((url.to_string(), prefix.to_string(), Arc::downgrade(&link)));
        Ok(link)
    }

    fn connect_new(url: &str, prefix: &str) -> Result<Arc<Link>, LinkError> {
        let shown_url = crate::config::mask::mask_url_password(url);
        let client = redis::Client::open(url).map_err(|e| {
            LinkError(format!(
                "redisUrl {shown_url:?} is not a Redis URL ({e}); write it as redis://[:password@]host:port[/db]"
            ))
        })?;
        let link = Link {
            client,
            shown_url,
            prefix: prefix.to_string(),
            idle: Mutex::new(Vec::new()),
            down: Mutex::new(None),
        };
        link.with(|c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| LinkError(format!("{e}; start Redis or correct redisUrl in the config")))?;
        link.claim_prefix()?;
        Ok(Arc::new(link))
    }

    /// `prefix` + `name`: every key ccs touches.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    #[allow(dead_code)] // for the shared queue, which comes next
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs `call` on a connection. A failure of the connection (refused, reset, timed out)
    /// drops it and marks Redis down until a call succeeds.
    pub fn with<R>(&self, call: impl Fn(&mut redis::Connection) -> redis::RedisResult<R>) -> Result<R, LinkError> {
        let idle = self.idle.lock().pop();
        let (mut conn, pooled) = match idle {
            Some(conn) => (conn, true),
            None => (self.connect()?, false),
        };
        let mut result = call(&mut conn);
        // A kept connection may have died with a Redis that restarted since: the command never
        // reached the new one, so it goes once more on a new connection. (Had Redis died while
        // answering it, it is down now and the new connection fails.) Not after a timeout: that
        // Redis is alive and may have run the command (a take, a write) or run it still.
        if pooled && result.as_ref().is_err_and(|e| is_connection_failure(e) && !e.is_timeout()) {
            conn = self.connect()?;
            result = call(&mut conn);
        }
        match result {
            Ok(value) => {
                *self.down.lock() = None;
                self.give_back(conn);
                Ok(value)
            }
            Err(e) if is_connection_failure(&e) => Err(self.mark_down(&e)),
            Err(e) => {
                // Redis answered (a script or type error): the connection is fine.
                self.give_back(conn);
                Err(LinkError(format!("Redis at {} refused a command: {e}", self.shown_url)))
            }
        }
    }

    fn give_back(&self, conn: redis::Connection) {
        let mut idle = self.idle.lock();
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// A connection of its own (for a subscriber that blocks on it), with `read_timeout`.
    #[allow(dead_code)] // for the shared queue, which comes next
    pub fn dedicated(&self, read_timeout: Duration) -> Result<redis::Connection, LinkError> {
        let conn = self.connect()?;
        conn.set_read_timeout(Some(read_timeout)).map_err(|e| self.mark_down(&e))?;
        Ok(conn)
    }

    /// Why Redis is not usable now (`None`: the last call worked).
    pub fn fault(&self) -> Option<String> {
        self.down.lock().clone()
    }

    /// Writes the prefix's marker again if it is gone (a Redis that restarted without its data):
    /// else the next server to start would take ccs's own keys for another program's.
    pub fn keep_claim(&self) -> Result<(), LinkError> {
        let marker = self.key(MARKER);
        self.with(|c| redis::cmd("SET").arg(&marker).arg(MARKER_VALUE).arg("NX").query::<Option<String>>(c))?;
        Ok(())
    }

    fn connect(&self) -> Result<redis::Connection, LinkError> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| self.mark_down(&e))?;
        conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| self.mark_down(&e))?;
        conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| self.mark_down(&e))?;
        Ok(conn)
    }

    fn mark_down(&self, e: &redis::RedisError) -> LinkError {
        let why = format!("Redis at {} is not reachable ({e})", self.shown_url);
        *self.down.lock() = Some(why.clone());
        self.idle.lock().clear();
        LinkError(why)
    }

    /// Marks the prefix as ccs's, or refuses it when keys that are not ccs's are under it:
    /// another program's keys are never touched.
    fn claim_prefix(&self) -> Result<(), LinkError> {
        let marker = self.key(MARKER);
        let claimed: Option<String> = self.with(|c| redis::cmd("GET").arg(&marker).query(c))?;
        match claimed {
            Some(value) if value == MARKER_VALUE => return Ok(()),
            Some(value) => {
                return Err(LinkError(format!(
                    "the Redis key {marker:?} holds {value:?}, not ccs's marker: the prefix {:?} belongs to another \
                     program; set redisKeyPrefix to a prefix of ccs's own",
                    self.prefix
                )))
            }
            None => {}
        }
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let other: Option<String> =
            self.with(|c| redis::TypedCommands::scan_match::<_, String>(c, &pattern)?.next().transpose())?;
        if let Some(other) = other {
            return Err(LinkError(format!(
                "Redis holds keys under the prefix {:?} that ccs did not write (e.g. {other:?}); ccs leaves them \
                 alone: set redisKeyPrefix to a prefix of ccs's own",
                self.prefix
            )));
        }
        self.keep_claim()
    }
}

fn is_connection_failure(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// `*`, `?`, `[`, `]` and `\` of a prefix escaped for SCAN's MATCH.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for ch in prefix.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_the_prefix_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn a_url_that_is_not_redis_fails_with_what_to_write() {
        let err = Link::open("http://localhost:1", "ccs:").err().unwrap();
        assert!(err.0.contains("redis://"), "{err}");
    }

    #[test]
    fn another_programs_keys_under_the_prefix_are_refused_and_left_alone() {
        let redis = testing::RedisServer::start();
        let other = redis.link("other:");
        other.with(|c| redis::cmd("SET").arg("app:x").arg("theirs").query::<()>(c)).unwrap();
        let err = Link::open(&redis.url(), "app:").err().unwrap();
        assert!(err.0.contains("redisKeyPrefix") && err.0.contains("app:x"), "{err}");
        let theirs: String = other.with(|c| redis::cmd("GET").arg("app:x").query(c)).unwrap();
        assert_eq!(theirs, "theirs");
        // A prefix of its own is claimed once and opens again.
        redis.link("ccs:");
        redis.link("ccs:");
    }

    /// A command that timed out may have run: it is not sent again (a `take` sent twice takes two
    /// tasks, of which one never runs). A fake Redis that never answers the first INCR.
    #[test]
    fn a_command_that_timed_out_is_not_sent_again() {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://127.0.0.1:{}/", listener.local_addr().unwrap().port());
        let incrs = Arc::new(AtomicUsize::new(0));
        let seen = incrs.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut lines = BufReader::new(stream).lines();
                    while let Some(Ok(line)) = lines.next() {
                        // A RESP array: the command's name is its first bulk string.
                        let Some(n) = line.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else { continue };
                        let parts: Vec<String> = (0..n * 2).filter_map(|_| lines.next()?.ok()).collect();
                        let name = parts.get(1).cloned().unwrap_or_default().to_uppercase();
                        let reply: &[u8] = match name.as_str() {
                            "INCR" if seen.fetch_add(1, Ordering::SeqCst) == 0 => continue, // stalls
                            "INCR" => b":2\r\n",
                            "PING" => b"+PONG\r\n",
                            _ => b"+OK\r\n",
                        };
                        let _ = writer.write_all(reply);
                    }
                });
            }
        });
        let link = Link {
            client: redis::Client::open(url.as_str()).unwrap(),
            shown_url: url,
            prefix: "ccs:".into(),
            idle: Mutex::new(Vec::new()),
            down: Mutex::new(None),
        };
        link.with(|c| redis::cmd("PING").query::<String>(c)).unwrap(); // leaves a kept connection
        let incr = link.with(|c| redis::cmd("INCR").arg("n").query::<i64>(c));
        assert!(incr.is_err(), "{incr:?}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(incrs.load(Ordering::SeqCst), 1, "the INCR that timed out was sent again");
    }

    #[test]
    fn an_unreachable_redis_fails_at_once_with_what_to_do() {
        let err = Link::open("redis://127.0.0.1:1/", "ccs:").err().unwrap();
        assert!(err.0.contains("not reachable") && err.0.contains("start Redis"), "{err}");
    }
}

/// For tests: a redis-server of the test's own on a free 127.0.0.1 port, in a temp folder,
/// stopped (and its folder removed) on drop.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Link;

    pub struct RedisServer {
        pub port: u16,
        dir: PathBuf,
        child: Child,
    }

    impl RedisServer {
        pub fn start() -> RedisServer {
            // The listener is gone before redis-server binds the port.
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            RedisServer::start_on(port)
        }

        /// On `port` (a Redis that comes back where one was stopped).
        pub fn start_on(port: u16) -> RedisServer {
            let dir = std::env::temp_dir().join(format!("ccs-redis-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is not installed (apt-get install redis-server)");
            let server = RedisServer { port, dir, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
                std::thread::sleep(Duration::from_millis(10));
            }
            server
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        /// A link under a prefix of its own.
        pub fn link(&self, prefix: &str) -> Arc<Link> {
            Link::open(&self.url(), prefix).unwrap()
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
