//! `ccs serve`: load the config, open the store, start the HTTP acceptors and housekeeping, then
//! wait for SIGINT/SIGTERM and stop in order (acceptors with a grace period, then the rest).

use std::fmt;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::config::{Config, ConfigSource, StorageType};
use crate::daemon::pidfile;
use crate::store::{Store, StoreError};
use crate::{api, exit, housekeeping, http, logging, signals, tasks, webhook};

/// Why the server could not run.
#[derive(Debug)]
pub enum ServeError {
    /// The config is wrong (exit code 2).
    Config(String),
    /// Something at start-up failed (exit code 1).
    Start(String),
}

impl ServeError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Config(_) => exit::USAGE,
            ServeError::Start(_) => exit::FAILED,
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Config(m) | ServeError::Start(m) => f.write_str(m),
        }
    }
}

pub fn serve(source: ConfigSource) -> Result<(), ServeError> {
    // Stamped before reading, so an edit made while the server starts is reloaded, not missed.
    let stamp_before_load = housekeeping::file_stamp(&source.path);
    let (config, warnings) = source.load().map_err(|e| ServeError::Config(e.to_string()))?;
    let config_stamp = stamp_before_load.or_else(|| housekeeping::file_stamp(&source.path));
    config.refuse_open_bind().map_err(ServeError::Config)?;
    let to_stderr = std::env::var_os(crate::daemon::DAEMON_ENV).is_none();
    logging::init(&config.log_file, config.log_level, to_stderr)
        .map_err(|e| ServeError::Start(format!("cannot open the log file {}: {e}", config.log_file.display())))?;
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    for warning in warnings {
        log::warn!("{warning}");
    }
    log_open_files_limit(&config);
    let data = match config.storage_type {
        StorageType::Redis => format!(
            "Redis {} under the key prefix {:?}",
            crate::config::mask::mask_url_password(config.redis_url.as_deref().unwrap_or_default()),
            config.redis_key_prefix
        ),
        StorageType::File | StorageType::Memory => format!("the data folder {}", config.data_dir.display()),
    };
    let store = Store::open(&config).map_err(|e| ServeError::Start(format!("cannot open {data}: {e}")))?;
    let shutdown = signals::install().map_err(ServeError::Start)?;
    let addr = format!("{}:{}", config.host, config.port);
    // Arrival numbers continue after the highest one stored (a shared queue: across servers).
    let stored = store.tasks.all().map_err(|e| ServeError::Start(format!("cannot read the tasks from {data}: {e}")))?;
    let next_seq = stored.iter().map(|t| t.seq).max().unwrap_or(0);
    drop(stored);
    let queue = crate::queue::open(&config, next_seq).map_err(ServeError::Start)?;
    let app = App::new(config.clone(), source, store, queue);
    *app.config_stamp.lock() = config_stamp;
    app.probe_cli();
    let (interrupted, requeued, cancelled) = tasks::recover(&app);
    if interrupted + requeued + cancelled > 0 {
        log::warn!(
            "recovered from the last stop: {interrupted} task(s) were running and are marked interrupted, \
             {requeued} waiting async task(s) are queued again, {cancelled} waiting sync task(s) are cancelled"
        );
    }
    let webhook_rx = app.take_webhook_rx().ok_or_else(|| ServeError::Start("webhook channel already taken".into()))?;
    let (stop_webhooks, webhooks_stop) = crossbeam_channel::bounded::<()>(1);
    let webhooks = webhook::spawn(app.clone(), webhook_rx, webhooks_stop)
        .map_err(|e| ServeError::Start(format!("cannot start the webhook thread: {e}")))?;
    tasks::live::configure(&app, None, &config);
    tasks::worker::set_workers(&app, config.task_queue.concurrency);

    let mut server = http::HttpServer::start(app.clone(), api::routes(), &addr, config.http_threads, &config.http)
        .map_err(|e| {
        ServeError::Start(format!(
            "cannot listen on {addr}: {e}; is another server (ccs?) using the port? Pick another with --port or `port` in the config"
        ))
    })?;
    log::info!(
        "ccs {} listening on http://{addr} (config {}, data in {data}, {} sessions, {} tasks)",
        env!("CARGO_PKG_VERSION"),
        app.source.path.display(),
        count(app.store.sessions.len()),
        count(app.store.tasks.len())
    );
    claim_pid_file(&config)?;
    let (stop_housekeeping, housekeeping_stop) = crossbeam_channel::bounded::<()>(1);
    let housekeeping = housekeeping::spawn(app.clone(), housekeeping_stop)
        .map_err(|e| ServeError::Start(format!("cannot start the housekeeping thread: {e}")))?;

    let _ = shutdown.recv();
    stop(&app, &mut server);
    drop(stop_housekeeping);
    let _ = housekeeping.join();
    // A spare the housekeeping thread was starting (or an idle process it was retiring) as the
    // pool closed: wait for that one too.
    app.live.close(Duration::from_secs(3));
    let _ = stop_webhooks.send(());
    let _ = webhooks.join();
    app.store.close();
    pidfile::remove_if_ours(&config.pid_file, std::process::id());
    log::info!("stopped");
    Ok(())
}

/// `ccs copy-to-redis`: copies the file store under `dataDir` into the Redis of `redisUrl`
/// (what Redis lacks; nothing there is overwritten). Returns what it did, line by line.
pub fn copy_to_redis(source: &ConfigSource) -> Result<String, ServeError> {
    let (config, _) = source.load().map_err(|e| ServeError::Config(e.to_string()))?;
    let url = config.redis_url.as_deref().ok_or_else(|| {
        ServeError::Config("set redisUrl in the config (e.g. \"redis://127.0.0.1:6379/0\") to copy into it".into())
    })?;
    if config.storage_type == crate::config::StorageType::File {
        if let pidfile::State::Running(pid) = pidfile::state(&config.pid_file) {
            return Err(ServeError::Start(format!(
                "the server (pid {pid}) is writing the file store: stop it first (`ccs stop`), then copy"
            )));
        }
    }
    if !config.data_dir.join("tasks").is_dir() && !config.data_dir.join("sessions").is_dir() {
        return Err(ServeError::Start(format!("no file store in {} to copy", config.data_dir.display())));
    }
    let from =
        Store::with_backend(std::sync::Arc::new(crate::store::FileBackend::new(&config.data_dir).map_err(|e| {
            ServeError::Start(format!("cannot open the file store {}: {e}", config.data_dir.display()))
        })?))
        .map_err(|e| ServeError::Start(format!("cannot read the file store {}: {e}", config.data_dir.display())))?;
    let to = Store::open_redis(url, &config.redis_key_prefix).map_err(|e| ServeError::Config(e.to_string()))?;
    let copied = from.copy_into(&to).map_err(|e| ServeError::Start(e.to_string()));
    from.close();
    let mut report: Vec<String> = copied?.iter().map(ToString::to_string).collect();
    report.push(format!(
        "done: set \"storageType\": \"redis\" in {} and start the server(s); tasks that were waiting are queued at \
         the first start, tasks that were running are marked interrupted",
        source.path.display()
    ));
    Ok(report.join("\n"))
}

/// Raises the soft limit of open files to the hard one and says what both are: each connection
/// and each CLI run takes descriptors.
/// A count for the log, or `?` when the store cannot say.
fn count(n: Result<usize, StoreError>) -> String {
    n.map_or_else(|_| "?".to_string(), |n| n.to_string())
}

fn log_open_files_limit(config: &Config) {
    match crate::fsutil::raise_open_files_limit() {
        Ok((before, now, hard)) => {
            log::info!("open files: soft limit {now} (was {before}), hard limit {hard}");
            let needed = config.http.max_connections as u64 + 64 + 8 * config.task_queue.concurrency as u64;
            if now < needed {
                log::warn!(
                    "open files: the limit {now} is below what http.maxConnections ({}) and the workers may need \
                     (~{needed}); raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower http.maxConnections",
                    config.http.max_connections
                );
            }
        }
        Err(e) => log::warn!("open files: cannot read or raise the limit: {e}"),
    }
}

/// Writes our pid to the pid file, unless another live server owns it.
fn claim_pid_file(config: &Config) -> Result<(), ServeError> {
    if let pidfile::State::Running(pid) = pidfile::state(&config.pid_file) {
        if pid as u32 != std::process::id() {
            return Err(ServeError::Start(format!(
                "another ccs server (pid {pid}) owns the pid file {}; stop it with `ccs stop` first",
                config.pid_file.display()
            )));
        }
    }
    pidfile::write(&config.pid_file, std::process::id())
        .map_err(|e| ServeError::Start(format!("cannot write the pid file {}: {e}", config.pid_file.display())))
}

/// The graceful stop (SPEC 7): no new requests or tasks; waiting sync requests are answered 503;
/// running tasks get `killGraceMs` to finish, then their process groups are killed and they end
/// `interrupted`; waiting async tasks stay queued on disk for the next start; live CLI processes
/// end.
fn stop(app: &App, server: &mut http::HttpServer) {
    let grace = Duration::from_millis(app.config().task_queue.kill_grace_ms);
    log::info!("stopping: no new requests; running tasks get {} ms to finish", grace.as_millis());
    let deadline = Instant::now() + grace;
    app.begin_shutdown();
    // Acceptors only ever write answers; one stuck on a slow reader is left behind.
    server.stop_accepting(grace.clamp(Duration::from_millis(200), Duration::from_secs(1)));
    tasks::refuse_waiting(app, app.queue.close());
    while app.queue.running_here() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = app.queue.interrupt_running();
    if killed > 0 {
        log::warn!(
            "stopping: killed {killed} task(s) still running after {} ms; they are marked interrupted",
            grace.as_millis()
        );
    }
    tasks::worker::join_workers(app);
    // Idle live processes and spares end with the server (stdin closed, then their groups).
    app.live.close(Duration::from_secs(3));
    // The last answers (503s, killed runs) get a moment; a client that does not read them does
    // not hold the stop.
    server.flush(Duration::from_secs(1));
}
