//! A stand-in for the `claude` CLI in headless mode that follows ../shared/CLI.md: `-p` with the
//! prompt on stdin (and/or after `--`), `--output-format json|stream-json`, sessions stored per
//! working directory (`--session-id` works once, `--resume` only from the folder the session was
//! made in), the documented result shapes and error cases.
//!
//! Two ways to run, as the real CLI:
//! - one-shot (no `--input-format`, or `text`): read all of stdin, answer that one prompt, exit
//!   (0, or 1 for an error result).
//! - live (`--input-format stream-json`, which needs `--output-format stream-json` and
//!   `--verbose`): open the session once at start (`--session-id` in use: exit 1 at once), then
//!   read stdin line by line, one user message each
//!   (`{"type":"user","message":{"role":"user","content":[{"type":"text","text":"..."}]}}`, or
//!   `content` a plain string; blank lines skipped, a non-JSON line: stderr and exit 1). Each
//!   message is one turn, exactly as a one-shot `--resume` run would answer it, printed as
//!   `system`/`init`, the `stream_event` deltas (with `--include-partial-messages`), `assistant`
//!   and one `result`. `total_cost_usd` and `modelUsage` add up over the process's life, `usage`
//!   and `duration_ms` are per message. Error results (`@@fail=api|max_turns|budget`) do not end
//!   the process; `@@fail=usage` exits 1, `@@fail=crash` aborts, EOF on stdin exits 0.
//!   `--max-budget-usd` is checked against the running total: a message that brings it to the
//!   budget answers `error_max_budget_usd` (its answer still goes into the transcript), and once
//!   spent every later message gets that error at once, at no cost (its prompt is still recorded,
//!   as the real CLI records a message before it checks).
//!
//! Switches in the prompt (or in a live message) drive the test cases:
//!   @@sleep=SECS      wait before answering          @@ignore-term   ignore SIGTERM (from then on)
//!   @@grandchild      start `sleep 300` in the group  @@stderr=N      write N bytes to stderr first
//!   @@fail=api        is_error API error (exit 1)     @@fail=max_turns / @@fail=budget  limit errors
//!   @@fail=usage      usage error: empty stdout       @@fail=crash    abort (killed by SIGABRT)
//!   @@garbage         non-JSON output                 @@array / @@ndjson  event-list output
//!   @@old-cost        `cost_usd` instead of `total_cost_usd`
//!   @@big=N           a result of N bytes             @@drip=N        (stream-json) N deltas, 0.3 s apart
//! (`@@garbage`, `@@array` and `@@ndjson` do nothing in live mode.)
//!
//! With FAKE_CLAUDE_LOG set, it appends one JSON line per event with its pid and time: a run's
//! `start` (argv, cwd, the prompt as `stdin`, PATH and every CCS_TEST_* variable) and `end`,
//! `grandchild`, and `probe` for `--version` / `--help`. In live mode a run is a message: the
//! process logs `spawn` (argv, cwd, ...) when it starts, then `start` (with `"live": true`) and
//! `end` per message, and `exit` at EOF; so `start`/`end` always bound one turn.
//!
//! `--version` prints `2.1.197 (Claude Code)` and `--help` lists the options it takes. With
//! FAKE_CLAUDE_VERSION=1.0.x it is that older CLI, as the real 1.0.128 is: no `--max-budget-usd`
//! and no `--agent` in its help, and either option fails the run with `error: unknown option
//! '--max-budget-usd'` on stderr, exit 1, empty stdout. With FAKE_CLAUDE_VERSION=2.0.x a live
//! process started with `--session-id` writes its empty transcript at once, as the real 2.0.77
//! does: the id is in use from then on, and `--resume` finds no conversation in an empty
//! transcript. FAKE_CLAUDE_PROBE_SLEEP_MS makes `--version` and `--help` take that long (a slow
//! probe).

use std::io::{BufRead, IsTerminal, Read, Write};
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
    input_format: Option<String>,
    session_id: Option<String>,
    resume: Option<String>,
    model: Option<String>,
    mcp_config: Option<String>,
    permission_mode: Option<String>,
    max_budget_usd: Option<f64>,
    prompt_args: Vec<String>,
}

/// What every turn of a run shares: fixed for the process's life.
struct Run<'a> {
    args: &'a Args,
    format: String,
    model: String,
    session_id: String,
    transcript: PathBuf,
    /// Live mode (`--input-format stream-json`): many turns, a cumulative budget.
    live: bool,
}

/// What the process has spent so far (the real CLI's `total_cost_usd` and `modelUsage`).
#[derive(Default)]
struct Totals {
    cost: f64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Totals {
    fn add(&mut self, (input, output): (u64, u64)) {
        self.cost += COST_PER_CALL;
        self.input_tokens += input;
        self.output_tokens += output;
    }
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
    if args.input_format.as_deref() == Some("stream-json") {
        live(&args, &argv);
    }
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

/// 2.0.x (measured: 2.0.77) writes a live process's empty transcript when it starts with
/// `--session-id`, so the id is in use even if no message ever came (and `--resume` finds no
/// conversation in it); 1.0.x and 2.1.x write it with the first message.
fn takes_the_id_at_start() -> bool {
    version().starts_with("2.0.")
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
        (
            "--input-format <format>",
            "Input format (only works with --print): \"text\" (default), or \"stream-json\" (realtime streaming input) (choices: \"text\", \"stream-json\")",
        ),
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
            "--replay-user-messages" => {}
            "--output-format" => args.output_format = Some(value()?),
            "--input-format" => {
                let format = value()?;
                if format != "text" && format != "stream-json" {
                    return Err(format!(
                        "error: option '--input-format <format>' argument '{format}' is invalid. Allowed choices are text, stream-json."
                    ));
                }
                args.input_format = Some(format);
            }
            "--session-id" => args.session_id = Some(value()?),
            "-r" | "--resume" => args.resume = Some(value()?),
            "--model" => args.model = Some(value()?),
            "--mcp-config" => args.mcp_config = Some(value()?),
            "--permission-mode" => args.permission_mode = Some(value()?),
            // Only live mode checks the budget (a one-shot run makes one call and never stops at it).
            "--max-budget-usd" => args.max_budget_usd = value()?.parse().ok(),
            // Every turn is one API call here, so --max-turns never bites.
            "--system-prompt" | "--append-system-prompt" | "--max-turns" | "--agent" => {
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

/// The output format, once `-p` and `--verbose` (for stream-json) are checked.
fn output_format(args: &Args) -> String {
    if !args.print {
        usage_error("Error: fake-claude only supports print mode (-p)");
    }
    let format = args.output_format.clone().unwrap_or_else(|| "text".into());
    if format == "stream-json" && !args.verbose {
        usage_error("Error: When using --print, --output-format=stream-json requires --verbose");
    }
    format
}

/// The checks of the MCP config and of root with bypassed permissions.
fn check_setup(args: &Args) {
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
}

/// Opens the session of this process (or fails it with the usage error).
fn start_run<'a>(args: &'a Args, format: String, live: bool) -> (Run<'a>, Vec<String>) {
    let (session_id, earlier) = match open_session(args) {
        Ok(found) => found,
        Err(message) => usage_error(&message),
    };
    let transcript = transcript_path(&session_id, &cwd());
    if live && args.session_id.is_some() && takes_the_id_at_start() {
        // 2.0.x: the session's (empty) transcript is there before any message.
        append_transcript_bytes(&transcript, b"");
    }
    let model = args.model.clone().unwrap_or_else(|| "claude-sonnet-4-5".into());
    (Run { args, format, model, session_id, transcript, live }, earlier)
}

/// One-shot mode: the prompt from stdin and argv, one answer.
fn run(args: &Args, stdin: &str) -> i32 {
    let format = output_format(args);
    let prompt = [stdin.to_string(), args.prompt_args.join(" ")]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if prompt.trim().is_empty() {
        usage_error("Error: Input must be provided either through stdin or as a prompt argument when using --print");
    }
    check_setup(args);
    if switch(&prompt, "fail").as_deref() == Some("usage") {
        usage_error("Error: Input validation failed: the request was rejected");
    }
    let (run, earlier) = start_run(args, format, false);
    turn(&run, &prompt, &earlier, &mut Totals::default())
}

/// Live mode (`--input-format stream-json`): one turn per user message on stdin until EOF.
fn live(args: &Args, argv: &[String]) -> ! {
    log_event(json!({"event": "spawn", "argv": argv}));
    if args.output_format.as_deref() != Some("stream-json") {
        usage_error("Error: --input-format=stream-json requires output-format=stream-json.");
    }
    let format = output_format(args);
    check_setup(args);
    let (run, mut earlier) = start_run(args, format, true);
    let mut totals = Totals::default();
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&line);
        if line.trim().is_empty() {
            continue;
        }
        let prompt = match user_message(line.trim()) {
            Ok(prompt) => prompt,
            Err(message) => usage_error(&message),
        };
        // A message is a run, as a one-shot process is: `start` (with the process's argv and the
        // prompt as `stdin`) and `end`.
        log_event(json!({"event": "start", "argv": argv, "stdin": prompt, "live": true}));
        if switch(&prompt, "fail").as_deref() == Some("usage") {
            usage_error("Error: Input validation failed: the request was rejected");
        }
        turn(&run, &prompt, &earlier, &mut totals);
        log_event(json!({"event": "end"}));
        earlier.push(prompt);
    }
    log_event(json!({"event": "exit"}));
    std::process::exit(0);
}

/// The text of one stream-json input line: its text blocks joined with newlines.
fn user_message(line: &str) -> Result<String, String> {
    let message: Value = serde_json::from_str(line)
        .map_err(|e| format!("Error: Error parsing streaming input line: {line}: SyntaxError: {e}"))?;
    if message["type"] != "user" {
        return Err(format!("Error: Expected message type 'user', got '{}'", message["type"].as_str().unwrap_or("")));
    }
    match &message["message"]["content"] {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => Ok(blocks
            .iter()
            .filter(|block| block["type"] == "text")
            .filter_map(|block| block["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")),
        _ => Err(format!("Error: Invalid user message (no content): {line}")),
    }
}

/// One turn for `prompt`, the session having had `earlier` user prompts and the process having
/// spent `totals` (updated here): records it, prints its events and result, returns the exit
/// code a one-shot run ends with.
fn turn(run: &Run, prompt: &str, earlier: &[String], totals: &mut Totals) -> i32 {
    let switch = |name: &str| switch(prompt, name);
    let (session_id, model) = (run.session_id.as_str(), run.model.as_str());
    append_transcript(&run.transcript, "user", prompt);

    let started = Instant::now();
    if run.format == "stream-json" {
        // The real CLI says hello at once (2.1.197: before every message), then streams.
        emit(&init_event(session_id, model));
    }
    let budget = run.args.max_budget_usd.filter(|_| run.live);
    if let Some(budget) = budget.filter(|budget| totals.cost >= *budget) {
        // Spent already: refused before any call, at no cost.
        emit(&budget_error(session_id, model, budget, totals));
        return 1;
    }
    if run.format == "stream-json" {
        if let Some(n) = switch("drip").and_then(|n| n.parse::<usize>().ok()) {
            for i in 0..n {
                emit(&delta_event(session_id, &format!("drip {i} ")));
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
        None => answer(prompt, earlier),
    };
    let elapsed = started.elapsed().as_millis() as u64;
    let (mut result, mut code) = match switch("fail").as_deref() {
        Some("api") => (api_error(session_id, model, elapsed, totals), 1),
        Some("max_turns") => {
            totals.add((100, 20));
            (limit_error(session_id, model, "error_max_turns", "Reached maximum number of turns (1)", totals), 1)
        }
        Some("budget") => {
            totals.add((100, 20));
            (limit_error(session_id, model, "error_max_budget_usd", "Reached maximum budget ($0.01)", totals), 1)
        }
        _ => {
            append_transcript(&run.transcript, "assistant", &text);
            let usage = (prompt.len() as u64, (text.len() as u64).div_ceil(4));
            totals.add(usage);
            (success(session_id, model, &text, elapsed, usage, totals, switch("old-cost").is_some()), 0)
        }
    };
    if let Some(budget) = budget.filter(|budget| code == 0 && totals.cost >= *budget) {
        // Soft limit, checked after the call: the answer stands in the transcript, the run fails.
        (result, code) = (budget_error(session_id, model, budget, totals), 1);
    }
    if run.format == "stream-json" && run.args.partial {
        for word in text.split_inclusive(' ') {
            emit(&delta_event(session_id, word));
        }
    }
    let odd_output = |name: &str| !run.live && switch(name).is_some();
    print_output(
        &run.format,
        &result,
        session_id,
        model,
        &text,
        odd_output("garbage"),
        odd_output("array"),
        odd_output("ndjson"),
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

/// A successful result: `usage` is this call's (input, output) tokens, the cost and `modelUsage`
/// the process's totals.
fn success(
    session_id: &str,
    model: &str,
    text: &str,
    elapsed: u64,
    (input, output): (u64, u64),
    totals: &Totals,
    old_cost: bool,
) -> Value {
    let mut result = json!({
        "type": "result", "subtype": "success", "is_error": false, "api_error_status": null,
        "duration_ms": elapsed, "duration_api_ms": elapsed, "num_turns": 1, "result": text,
        "stop_reason": "end_turn", "session_id": session_id, "total_cost_usd": totals.cost,
        "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": output, "service_tier": "standard"},
        "modelUsage": {model: {"inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
                               "costUSD": totals.cost, "contextWindow": 200000, "maxOutputTokens": 64000}},
        "permission_denials": [], "terminal_reason": "completed", "uuid": uuid::Uuid::new_v4().to_string(),
    });
    if old_cost {
        let map = result.as_object_mut().expect("an object");
        map.remove("total_cost_usd");
        map.insert("cost_usd".into(), json!(totals.cost));
    }
    result
}

/// An API error: this call cost nothing, so the totals are what the process spent before (0 and
/// no `modelUsage` for a one-shot run).
fn api_error(session_id: &str, model: &str, elapsed: u64, totals: &Totals) -> Value {
    let (total, model_usage) = if totals.cost == 0.0 {
        (json!(0), json!({}))
    } else {
        (
            json!(totals.cost),
            json!({model: {"inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
                           "costUSD": totals.cost, "contextWindow": 200000, "maxOutputTokens": 64000}}),
        )
    };
    json!({
        "type": "result", "subtype": "success", "is_error": true, "api_error_status": 529,
        "duration_ms": elapsed, "duration_api_ms": 0, "num_turns": 1,
        "result": "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        "stop_reason": null, "session_id": session_id, "total_cost_usd": total,
        "usage": {"input_tokens": 0, "output_tokens": 0}, "modelUsage": model_usage, "permission_denials": [],
        "uuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// A limit error: no `result`, zero `usage`, the process's totals in the cost and `modelUsage`.
fn limit_error(session_id: &str, model: &str, subtype: &str, reason: &str, totals: &Totals) -> Value {
    json!({
        "type": "result", "subtype": subtype, "is_error": true, "duration_ms": 5, "duration_api_ms": 4,
        "num_turns": 2, "session_id": session_id, "total_cost_usd": totals.cost,
        "usage": {"input_tokens": 0, "output_tokens": 0},
        "modelUsage": {model: {"inputTokens": totals.input_tokens, "outputTokens": totals.output_tokens,
                               "costUSD": totals.cost}},
        "permission_denials": [], "errors": [reason], "uuid": uuid::Uuid::new_v4().to_string(),
    })
}

/// What `--max-budget-usd` stops a live process with once its total reaches the budget.
fn budget_error(session_id: &str, model: &str, budget: f64, totals: &Totals) -> Value {
    let reason = format!("Reached maximum budget (${budget})");
    limit_error(session_id, model, "error_max_budget_usd", &reason, totals)
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
        let Some(text) = std::fs::read_to_string(&path).ok().filter(|t| !t.is_empty()) else {
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
    let line = format!("{}\n", json!({"role": role, "content": content}));
    append_transcript_bytes(path, line.as_bytes());
}

fn append_transcript_bytes(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(bytes);
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
    if event["event"] == "start" || event["event"] == "spawn" {
        event["cwd"] = json!(cwd());
        event["path"] = json!(std::env::var("PATH").unwrap_or_default());
        event["env"] = Value::Object(test_env);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(format!("{event}\n").as_bytes());
    }
}
