//! OpenAI's and Anthropic's official Python client libraries against ccs, offline (the fake
//! CLI): tests/python/sdk_*.py make plain, streamed and failing calls and a two-call
//! conversation; here each runs against a server of its own, and the fake CLI's log shows that
//! the conversation's second call continued its session (`--resume`, or the same live process)
//! with the new message only, never a replay.
//!
//! The libraries live in the venv `make pyenv` makes (target/pyenv, pinned in
//! tests/python/requirements.txt); `make test` passes it as CCS_TEST_PYTHON. Without it, these
//! tests print SKIPPED.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{argv, Server};

const KEY: &str = "sdk-test-key";

/// The venv's python, or `None` (and a note) when there is none.
fn python(test: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CCS_TEST_PYTHON") {
        assert!(PathBuf::from(&path).exists(), "CCS_TEST_PYTHON={path} does not exist (run `make pyenv`)");
        return Some(PathBuf::from(path));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    eprintln!("SKIPPED {test}: no Python venv with the client libraries (run `make pyenv`, or `make test`)");
    None
}

/// Runs `tests/python/<script>` against a server of its own; returns the server and the
/// script's RESULT object.
fn run_script(python: PathBuf, script: &str) -> (Server, Value) {
    let server = Server::start_with(json!({"auth": {"apiKeys": [KEY]}}));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let out = Command::new(python)
        .arg(&path)
        .env("CCS_BASE", format!("http://127.0.0.1:{}", server.port))
        .env("CCS_KEY", KEY)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}\nserver log:\n{}", server.log_text());
    let result = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a RESULT line");
    (server, serde_json::from_str(result).unwrap())
}

/// The session's runs in order: (pid, argv, prompt).
fn runs_of(server: &Server, session: &str) -> Vec<(u64, Vec<String>, String)> {
    let spawned: Vec<(u64, Vec<String>)> =
        server.spawns().iter().map(|s| (s["pid"].as_u64().unwrap_or(0), argv(s))).collect();
    server
        .starts()
        .iter()
        .filter_map(|start| {
            let pid = start["pid"].as_u64().unwrap_or(0);
            // A live run's argv is its process's.
            let args = match start["live"].as_bool() {
                Some(true) => spawned.iter().find(|(p, _)| *p == pid)?.1.clone(),
                _ => argv(start),
            };
            args.iter()
                .any(|a| a.contains(session))
                .then(|| (pid, args, start["stdin"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// The conversation's second call ran the new message alone, in the first call's session.
fn assert_continued_not_replayed(server: &Server, session: &str) {
    let runs = runs_of(server, session);
    assert!(runs.len() >= 2, "the session ran {} turns: {runs:?}", runs.len());
    let (first_pid, first_args, first_prompt) = &runs[0];
    let (second_pid, second_args, second_prompt) = &runs[1];
    assert_eq!(first_prompt, "my name is Ada");
    assert_eq!(second_prompt, "what is my name?", "only the new message, not the history replayed");
    let resumed = second_args.iter().any(|a| a == &format!("--resume={session}"));
    assert!(resumed || second_pid == first_pid, "neither --resume nor the same live process: {second_args:?}");
    assert!(first_args.iter().any(|a| a == "--session-id"), "the first call made the session: {first_args:?}");
}

#[test]
fn the_openai_python_library_works_against_ccs() {
    let Some(python) = python("the_openai_python_library_works_against_ccs") else { return };
    let (server, result) = run_script(python, "sdk_openai.py");
    assert_continued_not_replayed(&server, result["conversation_session"].as_str().unwrap());
    assert!(result["rate_limited_after"].as_u64().unwrap() <= 10, "{result}");
}

#[test]
fn the_anthropic_python_library_works_against_ccs() {
    let Some(python) = python("the_anthropic_python_library_works_against_ccs") else { return };
    let (server, result) = run_script(python, "sdk_anthropic.py");
    assert_continued_not_replayed(&server, result["conversation_session"].as_str().unwrap());
    assert!(result["rate_limited_after"].as_u64().unwrap() <= 10, "{result}");
}
