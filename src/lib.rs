//! ccs: a small HTTP server that runs the Claude Code CLI (`claude -p`) as a REST API.
//!
//! Data flow: `http` (acceptor threads, routing, body limits) → `api` (one file per resource)
//! → `tasks` (submit, cancel, retry) → `queue` (priority heap, per-session order, workers) →
//! `runner` (the claude child process) → `store` (records on disk), `sessions` (turns, budgets)
//! and `webhook` (the sender thread). The core modules never import `http`.
//!
//! No `unsafe` outside `sys`, the one module of raw system calls.

#![deny(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod cli_support;
pub mod config;
pub mod daemon;
pub mod error;
pub mod events;
pub mod fsutil;
pub mod housekeeping;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod money;
pub mod project;
pub mod queue;
pub mod runner;
pub mod server;
pub mod sessions;
pub mod signals;
pub mod stats;
pub mod store;
pub mod sys;
pub mod tasks;
pub mod tui;
pub mod webhook;

/// Exit codes shared by every command (SPEC 1).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}

/// Runs the command line and returns the process exit code.
pub fn run(args: Vec<std::ffi::OsString>) -> i32 {
    cli::main(args)
}
