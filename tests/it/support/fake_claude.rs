//! A stand-in for the `claude` CLI in headless mode that follows ../shared/CLI.md: `-p` with the
//! prompt on stdin (and/or after `--`), `--output-format json|stream-json`, sessions stored per
//! working directory (`--session-id` works once, `--resume` only from the folder the session was
//! made in), the documented result shapes and error cases.
//!
//! Switches in the prompt drive the test cases:
//!   @@sleep=SECS      wait before answering          @@ignore-term   ignore SIGTERM
//!   @@grandchild      start `sleep 300` in the group  @@stderr=N      write N bytes to stderr first
//!   @@fail=api        is_error API error (exit 1)     @@fail=max_turns / @@fail=budget  limit errors
//!   @@fail=usage      usage error: empty stdout       @@fail=crash    abort (killed by SIGABRT)
//!   @@garbage         non-JSON output                 @@array / @@ndjson  event-list output
//!   @@old-cost        `cost_usd` instead of `total_cost_usd`
//!   @@big=N           a result of N bytes             @@drip=N        (stream-json) N deltas, 0.3 s apart
//!
//! With FAKE_CLAUDE_LOG set, it appends one JSON line per event (start, grandchild, end; probe
//! for `--version` / `--help`) with its argv, cwd, stdin, PATH and every CCS_TEST_* variable, so
//! tests can assert what they got.
//!
//! `--version` prints `2.1.197 (Claude Code)` and `--help` lists the options it takes. With
//! FAKE_CLAUDE_VERSION=1.0.x it is that older CLI, as the real 1.0.128 is: no `--max-budget-usd`
//! and no `--agent` in its help, and either option fails the run with `error: unknown option
//! '--max-budget-usd'` on stderr, exit 1, empty stdout. FAKE_CLAUDE_PROBE_SLEEP_MS makes
//! `--version` and `--help` take that long (a slow probe).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const COST_PER_CALL: f64 = 0.0125;
const DEFAULT_VERSION: &str = "2.1.197";
/// Options the 1.0.x CLI does not have (its commander rejects them before doing anything).
const MISSING_IN_1_0: &[&str] = &["--max-budget-usd", "--agent"];

#[derive(Default)]
struct Args {
    print: bool,
    verbose: bool,
    partial: bool,
    fork: bool,
    output_format: Option<String>,
    session_id: Option<String>,
    resume: Option<String>,
    model: Option<String>,
    mcp_config: Option<String>,
    permission_mode: Option<String>,
    prompt_args: Vec<String>,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(first @ ("--version" | "-v" | "--help" | "-h")) = argv.first().map(String::as_str) {
        probe_answer(first, &argv);
    }
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(message) => usage_error(&message),
    };
    let mut stdin = String::new();
    if !std::io::stdin().is_terminal() {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    log_event(json!({"event": "start", "argv": argv, "stdin": stdin}));
    let outcome = run(&args, &stdin);
    log_event(json!({"event": "end"}));
    std::process::exit(outcome);
}

fn version() -> String {
    std::env::var("FAKE_CLAUDE_VERSION").unwrap_or_else(|_| DEFAULT_VERSION.into())
}

fn is_1_0() -> bool {
    version().starts_with("1.0.")
}

/// `--version` or `--help`, as the real CLI prints them.
fn probe_answer(flag: &str, argv: &[String]) -> ! {
    log_event(json!({"event": "probe", "argv": argv}));
    if let Some(ms) = std::env::var("FAKE_CLAUDE_PROBE_SLEEP_MS").ok().and_then(|ms| ms.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if flag == "--version" || flag == "-v" {
        println!("{} (Claude Code)", version());
        std::process::exit(0);
    }
    let options = [
        ("-d, --debug [filter]", "Enable debug mode"),
        ("--verbose", "Override verbose mode setting from config"),
        ("-p, --print", "Print response and exit (useful for pipes)."),
        ("--output-format <format>", "Output format (only works with --print): \"text\" (default), \"json\""),
        ("--include-partial-messages", "Include partial message chunks as they arrive (only works with --print and"),
        ("--max-budget-usd <amount>", "Maximum dollar amount to spend on API calls (only works with --print)"),
        ("--allowedTools, --allowed-tools <tools...>", "Comma or space-separated list of tool names to allow"),
        ("--disallowedTools, --disallowed-tools <tools...>", "Comma or space-separated list of tool names to deny"),
        ("--mcp-config <configs...>", "Load MCP servers from JSON files or strings (space-separated)"),
        ("--system-prompt <prompt>", "System prompt to use for the session"),
        ("--append-system-prompt <prompt>", "Append a system prompt to the default system prompt"),
        ("--permission-mode <mode>", "Permission mode to use for the session"),
        ("-r, --resume [value]", "Resume a conversation by session ID"),
        ("--fork-session", "When resuming, create a new session ID instead of reusing the original"),
        ("--model <model>", "Model for the current session."),
        ("--agent <agent>", "Agent for the current session."),
        ("--session-id <uuid>", "Use a specific session ID for the conversation (must be a valid UUID)"),
        ("-v, --version", "Output the version number"),
        ("-h, --help", "Display help for command"),
    ];
    let mut help = String::from("Usage: claude [options] [command] [prompt]\n\nClaude Code - starts an interactive session by default, use -p/--print for\nnon-interactive output\n\nArguments:\n  prompt                    Your prompt\n\nOptions:\n");
    for (spec, text) in options {
        let name = spec.split([',', ' ']).find(|w| w.starts_with("--")).unwrap_or(spec);
        // 1.0.x lists --system-prompt nowhere (it takes it, hidden) and lacks the others.
        if is_1_0() && (MISSING_IN_1_0.contains(&name) || name == "--system-prompt") {
            continue;
        }
        help.push_str(&format!("  {spec:<50}{text}\n"));
    }
    help.push_str("\nCommands:\n  config                    Manage configuration\n");
    print!("{help}");
    std::process::exit(0);
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i).cloned().ok_or_else(|| format!("error: option '{flag} <value>' argument missing"))
        };
        if is_1_0() && MISSING_IN_1_0.contains(&flag) {
            let hint = if flag == "--agent" { "\n(Did you mean --agents?)" } else { "" };
            return Err(format!("error: unknown option '{flag}'{hint}"));
        }
        match flag {
            "-p" | "--print" => args.print = true,
            "--verbose" => args.verbose = true,
            "--include-partial-messages" => args.partial = true,
            "--fork-session" => args.fork = true,
            "--output-format" => args.output_format = Some(value()?),
            "--session-id" => args.session_id = Some(value()?),
            "-r" | "--resume" => args.resume = Some(value()?),
            "--model" => args.model = Some(value()?),
            "--mcp-config" => args.mcp_config = Some(value()?),
            "--permission-mode" => args.permission_mode = Some(value()?),
            "--system-prompt" | "--append-system-prompt" | "--max-turns" | "--max-budget-usd" | "--agent" => {
                value()?;
            }
            "--allowedTools" | "--disallowedTools" => {
                while argv.get(i + 1).is_some_and(|next| !next.starts_with('-')) {
                    i += 1;
                }
            }
            "--" => {
                args.prompt_args.extend(argv[i + 1..].iter().cloned());
                break;
            }
            _ if flag.starts_with('-') => return Err(format!("error: unknown option '{flag}'")),
            _ => args.prompt_args.push(arg.to_string()),
        }
        i += 1;
    }
    Ok(args)
}

fn run(args: &Args, stdin: &str) -> i32 {
    if !args.print {
        usage_error("Error: fake-claude only supports print mode (-p)");
    }
    let format = args.output_format.clone().unwrap_or_else(|| "text".into());
    if format == "stream-json" && !args.verbose {
        usage_error("Error: When using --print, --output-format=stream-json requires --verbose");
    }
    let prompt = [stdin.to_string(), args.prompt_args.join(" ")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if prompt.trim().is_empty() {
        usage_error("Error: Input must be provided either through stdin or as a prompt argument when using --print");
    }
    if let Some(mcp) = &args.mcp_config {
        if !mcp.trim_start().starts_with('{') && !Path::new(mcp).exists() {
            usage_error(&format!("Error: Invalid MCP configuration: MCP config file not found: {mcp}"));
        }
    }
    let bypass = args.permission_mode.as_deref() == Some("bypassPermissions");
    // SAFETY: geteuid has no preconditions.
    if bypass && unsafe { libc::geteuid() } == 0 && std::env::var("IS_SANDBOX").as_deref() != Ok("1") {
        usage_error("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons");
    }
    let switch = |name: &str| switch(&prompt, name);
    if switch("fail").as_deref() == Some("usage") {
        usage_error("Error: Input validation failed: the request was rejected");
    }

    let (session_id, earlier) = match open_session(args) {
        Ok(found) => found,
        Err(message) => usage_error(&message),
    };
    let transcript = transcript_path(&session_id, &cwd());
    append_transcript(&transcript, "user", &prompt);

    let started = Instant::now();
    let model = args.model.clone().unwrap_or_else(|| "claude-sonnet-4-5".into());
    if format == "stream-json" {
        // The real CLI says hello at once, then streams.
        emit(&init_event(&session_id, &model));
        if let Some(n) = switch("drip").and_then(|n| n.parse::<usize>().ok()) {
            for i in 0..n {
                emit(&delta_event(&session_id, &format!("drip {i} ")));
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
    if switch("ignore-term").is_some() {
        // SAFETY: setting a signal's disposition to ignore has no preconditions.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    if switch("grandchild").is_some() {
        if let Ok(child) = std::process::Command::new("sleep").arg("300").spawn() {
            log_event(json!({"event": "grandchild", "grandchild_pid": child.id()}));
        }
    }
    if let Some(n) = switch("stderr").and_then(|n| n.parse::<usize>().ok()) {
        let _ = std::io::stderr().write_all(&vec![b'e'; n]);
    }
    if let Some(secs) = switch("sleep").and_then(|s| s.parse::<f64>().ok()) {
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
    if switch("fail").as_deref() == Some("crash") {
        eprintln!("fatal: the fake CLI crashed on purpose");
        std::process::abort();
    }

    let text = match switch("big").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => "x".repeat(n),
        None => answer(&prompt, &earlier),
    };
    let elapsed = started.elapsed().as_millis() as u64;
    let (result, code) = match switch("fail").as_deref() {
        Some("api") => (api_error(&session_id, elapsed), 1),
        Some("max_turns") => {
            (limit_error(&session_id, &model, "error_max_turns", "Reached maximum number of turns (1)"), 1)
        }
        Some("budget") => {
            (limit_error(&session_id, &model, "error_max_budget_usd", "Reached maximum budget ($0.01)"), 1)
        }
        _ => {
            append_transcript(&transcript, "assistant", &text);
            (success(&session_id, &model, &prompt, &text, elapsed, switch("old-cost").is_some()), 0)
        }
    };
    if format == "stream-json" && args.partial {
        for word in text.split_inclusive(' ') {
            emit(&delta_event(&session_id, word));
        }
    }
    print_output(
        &format,
        &result,
        &session_id,
        &model,
        &text,
        switch("garbage").is_some(),
        switch("array").is_some(),
        switch("ndjson").is_some(),
    );
    code
}

fn emit(event: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{event}\n").as_bytes());
    let _ = out.flush();
}

fn init_event(session_id: &str, model: &str) -> Value {
    json!({"type": "system", "subtype": "init", "cwd": cwd(), "session_id": session_id, "tools": ["Bash", "Read"],
           "mcp_servers": [], "model": model, "permissionMode": "default"})
}

fn delta_event(session_id: &str, text: &str) -> Value {
    json!({"type": "stream_event", "session_id": session_id,
           "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}})
}

/// The value of `@@name=value` (or "" for a bare `@@name`) in the prompt.
fn switch(prompt: &str, name: &str) -> Option<String> {
    prompt.split_whitespace().find_map(|word| {
        let rest = word.strip_prefix("@@")?;
        match rest.split_once('=') {
            Some((n, v)) if n == name => Some(v.to_string()),
            None if rest == name => Some(String::new()),
            _ => None,
        }
    })
}

fn answer(prompt: &str, earlier: &[String]) -> String {
    if earlier.is_empty() {
        format!("You said: {prompt}")
    } else {
        format!("You said: {prompt} (turn {}; earlier: {})", earlier.len() + 1, earlier.join(" | "))
    }
}

fn success(session_id: &str, model: &str, prompt: &str, text: &str, elapsed: u64, old_cost: bool) -> Value {
    let (input, output) = (prompt.len() as u64, (text.len() as u64).div_ceil(4));
    let mut result = json!({
        "type": "result", "subtype": "success", "is_error": false, "api_error_status": null,
        "duration_ms": elapsed, "duration_api_ms": elapsed, "num_turns": 1, "result": text,
        "stop_reason": "end_turn", "session_id": session_id, "total_cost_usd": COST_PER_CALL,
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": output, "service_tier": "standard"},
        "modelUsage": {model: {"inputTokens": input, "outputTokens": output, "costUSD": COST_PER_CALL,
                               "contextWindow": 200000, "maxOutputTokens": 64000}},
        "permission_denials": [], "terminal_reason": "completed", "uuid": uuid::Uuid::new_v4().to_string(),
    });
    if old_cost {
        let map = result.as_object_mut().expect("an object");
        map.remove("total_cost_usd");
        map.insert("cost_usd".into(), json!(COST_PER_CALL));
    }
    result
}

fn api_error(session_id: &str, elapsed: u64) -> Value {
    json!({
        "type": "result", "subtype": "success", "is_error": true, "api_error_status": 529,
        "duration_ms": elapsed, "duration_api_ms": 0, "num_turns": 1,
        "result": "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        "stop_reason": null, "session_id": session_id, "total_cost_usd": 0,
        "usage": {"input_tokens": 0, "output_tokens": 0}, "modelUsage": {}, "permission_denials": [],
        "uuid": uuid::Uuid::new_v4().to_string(),
    })
}

fn limit_error(session_id: &str, model: &str, subtype: &str, reason: &str) -> Value {
    json!({
        "type": "result", "subtype": subtype, "is_error": true, "duration_ms": 5, "duration_api_ms": 4,
        "num_turns": 2, "session_id": session_id, "total_cost_usd": COST_PER_CALL,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "modelUsage": {model: {"inputTokens": 100, "outputTokens": 20, "costUSD": COST_PER_CALL}},
        "permission_denials": [], "errors": [reason], "uuid": uuid::Uuid::new_v4().to_string(),
    })
}

#[allow(clippy::too_many_arguments)]
fn print_output(
    format: &str,
    result: &Value,
    session_id: &str,
    model: &str,
    text: &str,
    garbage: bool,
    array: bool,
    ndjson: bool,
) {
    let mut out = std::io::stdout().lock();
    let init = init_event(session_id, model);
    let assistant = json!({"type": "assistant", "session_id": session_id,
                           "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}});
    let printed = if garbage {
        "Segmentation fault (not really)\n<html>not json</html>\n".to_string()
    } else if array {
        format!("{}\n", json!([init, assistant, result]))
    } else if format == "stream-json" {
        format!("{assistant}\n{result}\n") // the init event went out first
    } else if ndjson {
        format!("{init}\n{assistant}\n{result}\n")
    } else if format == "json" {
        format!("{result}\n")
    } else {
        format!("{}\n", result.get("result").and_then(Value::as_str).unwrap_or(""))
    };
    let _ = out.write_all(printed.as_bytes());
    let _ = out.flush();
}

/// The session this run belongs to and the user prompts it had before.
fn open_session(args: &Args) -> Result<(String, Vec<String>), String> {
    let dir = project_dir(&cwd());
    if let Some(id) = &args.session_id {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err("Error: Invalid session ID. Must be a valid UUID.".into());
        }
        if session_exists_anywhere(id) {
            return Err(format!("Error: Session ID {id} is already in use."));
        }
        return Ok((id.clone(), Vec::new()));
    }
    if let Some(id) = &args.resume {
        let path = dir.join(format!("{id}.jsonl"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Err(format!("No conversation found with session ID: {id}"));
        };
        let earlier = user_prompts(&text);
        if args.fork {
            let new_id = uuid::Uuid::new_v4().to_string();
            let _ = std::fs::write(dir.join(format!("{new_id}.jsonl")), text);
            return Ok((new_id, earlier));
        }
        return Ok((id.clone(), earlier));
    }
    Ok((uuid::Uuid::new_v4().to_string(), Vec::new()))
}

fn user_prompts(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["role"] == "user")
        .filter_map(|entry| entry["content"].as_str().map(str::to_string))
        .collect()
}

fn claude_home() -> PathBuf {
    match std::env::var_os("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".claude"),
    }
}

fn project_dir(cwd: &str) -> PathBuf {
    let name: String = cwd.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    claude_home().join("projects").join(name)
}

fn transcript_path(session_id: &str, cwd: &str) -> PathBuf {
    project_dir(cwd).join(format!("{session_id}.jsonl"))
}

fn session_exists_anywhere(id: &str) -> bool {
    let Ok(projects) = std::fs::read_dir(claude_home().join("projects")) else {
        return false;
    };
    projects.flatten().any(|p| p.path().join(format!("{id}.jsonl")).exists())
}

fn append_transcript(path: &Path, role: &str, content: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let line = format!("{}\n", json!({"role": role, "content": content}));
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(line.as_bytes());
    }
}

fn cwd() -> String {
    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
}

fn usage_error(message: &str) -> ! {
    eprintln!("{message}");
    log_event(json!({"event": "end"}));
    std::process::exit(1);
}

fn log_event(mut event: Value) {
    let Some(path) = std::env::var_os("FAKE_CLAUDE_LOG") else {
        return;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let test_env: serde_json::Map<String, Value> =
        std::env::vars().filter(|(k, _)| k.starts_with("CCS_TEST_")).map(|(k, v)| (k, json!(v))).collect();
    event["pid"] = json!(std::process::id());
    event["t_ms"] = json!(now);
    if event["event"] == "start" {
        event["cwd"] = json!(cwd());
        event["path"] = json!(std::env::var("PATH").unwrap_or_default());
        event["env"] = Value::Object(test_env);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(format!("{event}\n").as_bytes());
    }
}
