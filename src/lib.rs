//! ccs: a small HTTP server that runs the Claude Code CLI (`claude -p`) as a REST API.
//!
//! Data flow: `http` (acceptor threads, routing, body limits) → `api` (one file per resource)
//! → `tasks` (submit, run, cancel, retry; the worker threads) → `queue` (priority heap,
//! per-session order), `runner` (the claude child process), `store` (records on disk),
//! `sessions` (turns, budgets) and `webhook` (the sender thread). The core modules never import
//! `http`; no module imports one that imports it back (README, "Who imports whom").
//!
//! No `unsafe` outside `sys`, the one module of raw system calls.

#![deny(unsafe_code)]

mod api;
mod app;
mod cli;
mod cli_support;
mod config;
mod daemon;
mod error;
mod events;
mod fsutil;
mod housekeeping;
mod http;
mod logging;
mod metrics;
mod model;
mod money;
mod project;
mod queue;
mod redis_link;
mod runner;
mod server;
mod sessions;
mod signals;
mod stats;
mod store;
mod sys;
mod tasks;
mod tui;
mod webhook;

/// What the benchmarks drive directly (`make bench`: the command line a run gets;
/// docs/spawn-cost: starting the CLI); everything else is private, so the compiler reports
/// what nothing uses.
#[doc(hidden)]
pub mod bench {
    pub use crate::config::Config;
    pub use crate::runner::argv::build as build_argv;
    pub use crate::runner::process::execute as execute_cli;
    pub use crate::runner::{Cancel, CliArgs, Invocation, SessionFlag};
}

/// Exit codes shared by every command (SPEC 1).
mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}

/// Runs the command line and returns the process exit code.
pub fn run(args: Vec<std::ffi::OsString>) -> i32 {
    if args.first().is_some_and(|first| first == runner::launch::RUN_IN) {
        return runner::launch::run_in(args.into_iter().skip(1));
    }
    runner::launch::this_is_ccs();
    cli::main(args)
}
