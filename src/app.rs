//! The shared state of a running server, passed to every thread as one `Arc<App>`.
//! Locks here are held briefly, never across a child process or a network call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::config::Config;
use crate::gate::Gate;
use crate::runner::Cancel;
use crate::slots::Slots;
use crate::store::Store;

/// Where the config came from, so a reload reads it the same way.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub home: PathBuf,
    pub user_home: PathBuf,
    /// `--host` / `--port` given on the command line; they win over the file on every reload.
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl ConfigSource {
    pub fn defaults(&self) -> Config {
        Config::defaults(&self.home, &self.user_home)
    }

    /// Applies the command-line overrides to a config read from the file.
    pub fn override_cli(&self, mut config: Config) -> Config {
        if let Some(host) = &self.host {
            config.host = host.clone();
        }
        if let Some(port) = self.port {
            config.port = port;
        }
        config
    }
}

pub struct App {
    config: RwLock<Arc<Config>>,
    pub source: ConfigSource,
    pub store: Store,
    /// Orders the turns of each session.
    pub gate: Gate,
    /// Bounds the number of claude processes.
    pub slots: Slots,
    /// Cancel flags of the runs in progress, by task id.
    running: Mutex<HashMap<String, Cancel>>,
    pub started: Instant,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(config: Config, source: ConfigSource, store: Store) -> App {
        App {
            slots: Slots::new(config.task_queue.concurrency),
            config: RwLock::new(Arc::new(config)),
            source,
            store,
            gate: Gate::default(),
            running: Mutex::new(HashMap::new()),
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The live config (a cheap snapshot: keep it for the whole of one request).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Swaps in a validated config and applies its live keys; returns the keys that need a restart.
    pub fn apply_config(&self, next: Config) -> Vec<&'static str> {
        let restart = self.config().restart_required(&next);
        self.slots.set_limit(next.task_queue.concurrency);
        crate::logging::set_level(next.log_level);
        *self.config.write() = Arc::new(next);
        restart
    }

    /// Registers a run so shutdown can cancel it.
    pub fn track_run(&self, task_id: &str) -> Cancel {
        let cancel = Cancel::default();
        self.running
            .lock()
            .insert(task_id.to_string(), cancel.clone());
        cancel
    }

    pub fn untrack_run(&self, task_id: &str) {
        self.running.lock().remove(task_id);
    }

    /// Stops taking new runs; waiting requests are refused.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.slots.close();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Kills every run in progress (they end as cancelled).
    pub fn cancel_all_runs(&self) -> usize {
        let running = self.running.lock();
        running.values().for_each(Cancel::cancel);
        running.len()
    }
}
