//! Logging to the log file and stderr. Loggers are built once at `Trace` and the live level is
//! the global `log::max_level`, so a config reload can change `logLevel` without a restart.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal};
use std::path::Path;

use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

use crate::config::LogLevel;

/// Starts logging to `log_file` (appended), and to stderr when `to_stderr`, at `level`.
pub fn init(log_file: &Path, level: LogLevel, to_stderr: bool) -> io::Result<()> {
    if let Some(dir) = log_file.parent() {
        crate::fsutil::create_private_dir(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(log_file)?;
    let config = ConfigBuilder::new()
        .add_filter_allow_str("ccs")
        // The HTTP layer says when it cannot accept (out of descriptors) or start a thread.
        .add_filter_allow_str("tiny_http")
        .set_time_format_rfc3339()
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .build();
    let color = if io::stderr().is_terminal() { ColorChoice::Auto } else { ColorChoice::Never };
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(LevelFilter::Trace, config.clone(), file)];
    if to_stderr {
        loggers.push(TermLogger::new(LevelFilter::Trace, config, TerminalMode::Stderr, color));
    }
    // A second init in the same process (tests) keeps the first logger; that is fine.
    let _ = CombinedLogger::init(loggers);
    set_level(level);
    Ok(())
}

/// Changes the live log level.
pub fn set_level(level: LogLevel) {
    log::set_max_level(level.filter());
}
