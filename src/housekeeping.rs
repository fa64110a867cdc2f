//! The housekeeping thread: reloads the config when its file changes (mtime poll) or on SIGHUP,
//! validating first and keeping the running config when the new one is wrong; notices a claude
//! CLI that was installed, upgraded or removed (and has it probed again); and removes sessions
//! and tasks past their retention; retires idle live CLI processes past `liveCli.keepMs` and
//! starts the spares that are missing; ends the tasks a dead server left in a shared queue.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::app::App;
use crate::config::{self, Config, LoadError};
use crate::{sessions, signals, tasks};

const POLL: Duration = Duration::from_millis(500);
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);

/// Starts the thread; it ends when `stop` gets a message or is dropped.
pub fn spawn(app: Arc<App>, stop: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("housekeeping".into()).spawn(move || run(&app, &stop))
}

fn run(app: &App, stop: &Receiver<()>) {
    let mut last_cleanup: Option<Instant> = None;
    loop {
        if last_cleanup.is_none_or(|t| t.elapsed() >= CLEANUP_EVERY) {
            cleanup(app);
            last_cleanup = Some(Instant::now());
        }
        // Live processes: idle ones past liveCli.keepMs end, missing spares start.
        app.live.expire();
        tasks::live::top_up_spares(app);
        tasks::settle_lost(app);
        tasks::hear_ends_from_elsewhere(app);
        match stop.recv_timeout(POLL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = file_stamp(&app.source.path);
        let hup = signals::take_reload_request();
        let changed = now != *app.config_stamp.lock();
        if hup || changed {
            *app.config_stamp.lock() = now;
            let why = if hup { "SIGHUP" } else { "the file changed" };
            if let Err(err) = reload(app) {
                log::error!("config not reloaded ({why}): {err}; the server keeps its running config");
            }
        }
        // A stat of the CLI's executable; a probe (on its own thread) only when it changed.
        app.probe_cli();
    }
}

/// (mtime, size) of a file; a rename-save replaces the file, and this follows the path.
pub fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads, validates and applies the config file; returns the changed keys that need a restart.
pub fn reload(app: &App) -> Result<Vec<&'static str>, LoadError> {
    let (next, warnings) = config::read_file(&app.source.path, app.source.defaults())?;
    let next = app.source.override_cli(next);
    if let Some(problem) = next.open_bind_problem(&app.bound_host) {
        return Err(LoadError::Unsafe(problem));
    }
    for warning in warnings {
        log::warn!("{warning}");
    }
    let restart = apply(app, next);
    if restart.is_empty() {
        log::info!("config reloaded from {}", app.source.path.display());
    } else {
        log::warn!(
            "config reloaded from {}; these keys change only after a restart: {}",
            app.source.path.display(),
            restart.join(", ")
        );
    }
    Ok(restart)
}

/// Swaps in a validated config and applies its live keys: the log level, the number of
/// workers, the live processes' limits (retiring idle ones if the CLI starts differently), the
/// CLI (probed again if it changed). Returns the keys that need a restart.
pub fn apply(app: &App, next: Config) -> Vec<&'static str> {
    crate::logging::set_level(next.log_level);
    let workers = next.task_queue.concurrency;
    tasks::live::configure(app, Some(&app.config()), &next);
    let restart = app.swap_config(next);
    tasks::worker::set_workers(app, workers);
    app.probe_cli();
    restart
}

fn cleanup(app: &App) {
    let (interrupted, requeued, cancelled) = tasks::settle_orphans(app);
    if interrupted + requeued + cancelled > 0 {
        log::warn!(
            "found unfinished tasks that no queue held: {interrupted} were running and are marked interrupted, \
             {requeued} waiting async task(s) are queued again, {cancelled} waiting sync task(s) are cancelled"
        );
    }
    match sessions::cleanup_expired(app, chrono::Utc::now()) {
        Ok((0, 0)) => {}
        Ok((s, t)) => log::info!("retention: removed {s} idle session(s) and {t} old task(s)"),
        Err(err) => log::error!("retention cleanup failed: {err}"),
    }
}
