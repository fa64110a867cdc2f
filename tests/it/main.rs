//! The integration tests, one module per area, in one binary (built and linked once): each
//! starts the real `ccs` binary on 127.0.0.1 with the fake claude (`support/fake_claude.rs`),
//! or the real CLI from npm against a mock Anthropic API (`real_cli`).

mod support;

mod architecture;
mod claude_api;
mod cli_versions;
mod compat_api;
mod crash_recovery;
mod daemon;
mod http_edge;
mod live_cli;
mod operations;
mod real_cli;
mod redis_cluster;
mod sdk_clients;
mod server_lifecycle;
mod sessions_api;
mod streaming;
mod tasks_api;
mod tui;
mod webhooks;
