//! The shared state of a running server, passed to every thread as one `Arc<App>`.
//! Locks here are held briefly, never across a child process or a network call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};

use crate::config::{Config, ConfigSource};
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::store::Store;

pub struct App {
    me: Weak<App>,
    config: RwLock<Arc<Config>>,
    pub source: ConfigSource,
    /// The host the server listens on (a reload may change `host` in the config, not the bind).
    pub bound_host: String,
    pub store: Store,
    /// The task queue (`queue::open`: in-process, or shared in Redis).
    pub queue: Box<dyn Queue>,
    /// The ends of tasks that HTTP requests wait for.
    pub ends: crate::events::Ends,
    /// Held by a priority change (`tasks::set_priority`): the record and the queue are two
    /// steps, and two changes interleaved (record A, record B, queue B, queue A) would leave
    /// them disagreeing.
    pub priority_change: Mutex<()>,
    /// Ids of webhook deliveries that are due now, for the sender thread (`webhook`).
    pub webhook_tx: Sender<String>,
    webhook_rx: Mutex<Option<Receiver<String>>>,
    /// The worker threads (`tasks::worker` starts and joins them).
    pub worker_threads: Mutex<Vec<JoinHandle<()>>>,
    pub metrics: Metrics,
    /// Live events of running tasks.
    pub events: Arc<crate::events::Hub>,
    /// The claude CLI's version and options, probed once per executable (`probe_cli`).
    pub cli: Arc<crate::runner::probe::Probes>,
    /// Live claude processes kept for their sessions' next turns, and spares (SPEC 13).
    pub live: crate::runner::live::Pool,
    /// (mtime, size) of the config file as last applied; the file watcher compares with it.
    pub config_stamp: Mutex<Option<(std::time::SystemTime, u64)>>,
    pub started: Instant,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(config: Config, source: ConfigSource, store: Store, queue: Box<dyn Queue>) -> Arc<App> {
        let (webhook_tx, webhook_rx) = crossbeam_channel::unbounded();
        Arc::new_cyclic(|me| App {
            me: me.clone(),
            bound_host: config.host.clone(),
            config: RwLock::new(Arc::new(config)),
            source,
            store,
            queue,
            ends: Default::default(),
            priority_change: Mutex::new(()),
            webhook_tx,
            webhook_rx: Mutex::new(Some(webhook_rx)),
            worker_threads: Mutex::new(Vec::new()),
            metrics: Metrics::default(),
            events: Arc::default(),
            cli: Arc::default(),
            live: Default::default(),
            config_stamp: Mutex::new(None),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
        })
    }

    /// For tests: the default config (of a home that does not exist), `store`, and an
    /// in-process queue with no workers.
    #[cfg(test)]
    pub fn for_tests(store: Store) -> Arc<App> {
        let home = std::path::Path::new("/nonexistent/ccs-home");
        let source = ConfigSource::new(home.into(), home.join("config.json"), None, None);
        App::new(source.defaults(), source, store, Box::new(crate::queue::LocalQueue::new(0)))
    }

    /// This app as an `Arc`, for work that outlives a borrow (a deferred HTTP answer).
    pub fn shared(&self) -> Option<Arc<App>> {
        self.me.upgrade()
    }

    /// The live config (a cheap snapshot: keep it for the whole of one request).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Swaps in a validated config; returns the keys whose change needs a restart. The caller
    /// applies the live keys (`housekeeping::apply`).
    pub fn swap_config(&self, next: Config) -> Vec<&'static str> {
        let restart = self.config().restart_required(&next);
        *self.config.write() = Arc::new(next);
        restart
    }

    /// Probes the configured claude CLI on a thread of its own, unless that one (same
    /// `claudePath`, environment and executable) is probed already. Never blocks; a run that
    /// needs the result waits for it.
    pub fn probe_cli(&self) {
        self.cli.refresh(crate::cli_support::target(&self.config()));
    }

    /// The receiving end of the webhook channel, for the sender thread (once).
    pub fn take_webhook_rx(&self) -> Option<Receiver<String>> {
        self.webhook_rx.lock().take()
    }

    /// Stops taking new tasks.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
