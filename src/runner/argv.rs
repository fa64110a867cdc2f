//! The claude command line for one run (SPEC 4, CLI.md). Pure: no I/O, unit-tested.
//! The prompt is never in argv: it goes to stdin, so it can never be read as a flag.

/// The most bytes one argument of a program may have on Linux (`MAX_ARG_STRLEN`, less its NUL).
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;

/// Whether `value` can be an element of the command line: no OS passes a NUL character in an
/// argument (the CLI would not even start).
pub fn passable(value: &str) -> bool {
    !value.contains('\0')
}

/// How a run relates to a CLI session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionFlag {
    /// The first turn: `--session-id <id>` creates the session with our id.
    Create(String),
    /// A later turn: `--resume=<id>` continues it.
    Resume(String),
}

/// Everything that becomes a CLI option.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliArgs {
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub append_system_prompt: Option<String>,
    pub max_budget_usd: Option<f64>,
    pub max_turns: Option<u32>,
    pub mcp_config: Option<String>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub agent: Option<String>,
}

/// One option of the command line: a flag and its values (`--resume=<id>` is one element).
struct Opt {
    flag: &'static str,
    values: Vec<String>,
    inline: bool,
}

/// What the CLI reads and prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The prompt on stdin, one JSON result.
    Json,
    /// The prompt on stdin, every event as NDJSON.
    Stream,
    /// A live process: user messages as NDJSON on stdin, every event as NDJSON.
    Live,
}

/// The options of a run, in argv order.
fn options(args: &CliArgs, session: Option<&SessionFlag>, format: Format) -> Vec<Opt> {
    let opt = |flag, values: Vec<String>| Opt { flag, values, inline: false };
    let mut opts = vec![opt("-p", vec![])];
    if format == Format::Live {
        opts.push(opt("--input-format", vec!["stream-json".into()]));
    }
    if format != Format::Json {
        opts.push(opt("--output-format", vec!["stream-json".into()]));
        opts.push(opt("--verbose", vec![]));
        opts.push(opt("--include-partial-messages", vec![]));
    } else {
        opts.push(opt("--output-format", vec!["json".into()]));
    }
    let singles = [
        ("--model", args.model.clone()),
        ("--system-prompt", args.system_prompt.clone()),
        ("--append-system-prompt", args.append_system_prompt.clone()),
        ("--max-budget-usd", args.max_budget_usd.map(|b| b.to_string())),
        ("--max-turns", args.max_turns.map(|t| t.to_string())),
        ("--mcp-config", args.mcp_config.clone()),
        ("--permission-mode", args.permission_mode.clone()),
        ("--agent", args.agent.clone()),
    ];
    opts.extend(singles.into_iter().filter_map(|(flag, value)| Some(opt(flag, vec![value?]))));
    for (flag, tools) in [("--allowedTools", &args.allowed_tools), ("--disallowedTools", &args.disallowed_tools)] {
        if !tools.is_empty() {
            opts.push(opt(flag, tools.clone()));
        }
    }
    opts.extend(session.map(session_opt));
    opts
}

fn session_opt(session: &SessionFlag) -> Opt {
    match session {
        SessionFlag::Create(id) => Opt { flag: "--session-id", values: vec![id.clone()], inline: false },
        SessionFlag::Resume(id) => Opt { flag: "--resume", values: vec![id.clone()], inline: true },
    }
}

fn format_of(stream: bool) -> Format {
    if stream {
        Format::Stream
    } else {
        Format::Json
    }
}

fn to_argv(opts: Vec<Opt>) -> Vec<String> {
    let mut argv = Vec::new();
    for opt in opts {
        if opt.inline {
            argv.push(format!("{}={}", opt.flag, opt.values.join(" ")));
        } else {
            argv.push(opt.flag.to_string());
            argv.extend(opt.values);
        }
    }
    argv
}

/// The argv (without the program) for `claude -p`: one JSON result, or with `stream` the
/// NDJSON event stream (`stream-json`, which needs `--verbose`) with token-level events.
pub fn build(args: &CliArgs, session: &SessionFlag, stream: bool) -> Vec<String> {
    to_argv(options(args, Some(session), format_of(stream)))
}

/// The argv of a live process (SPEC 13): user messages on stdin and every event on stdout,
/// both NDJSON, without the session flag (`session_args`), which differs per process.
pub fn build_live(args: &CliArgs) -> Vec<String> {
    to_argv(options(args, None, Format::Live))
}

/// The session flag as argv elements.
pub fn session_args(session: &SessionFlag) -> Vec<String> {
    to_argv(vec![session_opt(session)])
}

/// The flags `build` puts on the command line for these arguments, in argv order, so they can
/// be checked against what the CLI accepts (`caps`).
pub fn flags(args: &CliArgs, session: &SessionFlag, stream: bool) -> Vec<&'static str> {
    options(args, Some(session), format_of(stream)).into_iter().map(|opt| opt.flag).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_turn() -> SessionFlag {
        SessionFlag::Create("s-1".into())
    }

    #[test]
    fn minimal_run_is_print_with_json_output() {
        let argv = build(&CliArgs::default(), &first_turn(), false);
        assert_eq!(argv, ["-p", "--output-format", "json", "--session-id", "s-1"]);
    }

    #[test]
    fn first_turn_creates_and_later_turns_resume() {
        let id = "743eb495-b308-4ccd-bd22-c677a47bf2be".to_string();
        let first = build(&CliArgs::default(), &SessionFlag::Create(id.clone()), false);
        assert_eq!(&first[3..], ["--session-id", id.as_str()]);
        let later = build(&CliArgs::default(), &SessionFlag::Resume(id.clone()), false);
        assert_eq!(later.last().unwrap(), &format!("--resume={id}"));
        assert!(!later.contains(&"--session-id".to_string()));
    }

    #[test]
    fn every_option_is_its_own_element() {
        let args = CliArgs {
            model: Some("opus".into()),
            system_prompt: Some("be brief; rm -rf /".into()),
            append_system_prompt: Some("--also".into()),
            max_budget_usd: Some(0.5),
            max_turns: Some(3),
            mcp_config: Some("/etc/mcp.json".into()),
            permission_mode: Some("plan".into()),
            allowed_tools: vec!["Bash(git log:*)".into(), "Read".into()],
            disallowed_tools: vec!["Edit".into()],
            agent: Some("reviewer".into()),
        };
        let argv = build(&args, &first_turn(), false);
        let expected = [
            "-p",
            "--output-format",
            "json",
            "--model",
            "opus",
            "--system-prompt",
            "be brief; rm -rf /",
            "--append-system-prompt",
            "--also",
            "--max-budget-usd",
            "0.5",
            "--max-turns",
            "3",
            "--mcp-config",
            "/etc/mcp.json",
            "--permission-mode",
            "plan",
            "--agent",
            "reviewer",
            "--allowedTools",
            "Bash(git log:*)",
            "Read",
            "--disallowedTools",
            "Edit",
            "--session-id",
            "s-1",
        ];
        assert_eq!(argv, expected);
    }

    #[test]
    fn streaming_asks_for_every_event() {
        let argv = build(&CliArgs::default(), &first_turn(), true);
        let expected =
            ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages", "--session-id", "s-1"];
        assert_eq!(argv, expected);
    }

    #[test]
    fn flags_are_those_of_the_built_argv() {
        let args = CliArgs {
            model: Some("--max-turns".into()),
            max_turns: Some(2),
            allowed_tools: vec!["Read".into()],
            ..CliArgs::default()
        };
        let session = SessionFlag::Resume("s".into());
        let flags = flags(&args, &session, true);
        let expected = [
            "-p",
            "--output-format",
            "--verbose",
            "--include-partial-messages",
            "--model",
            "--max-turns",
            "--allowedTools",
            "--resume",
        ];
        assert_eq!(flags, expected);
        // A value that looks like a flag is a value, not a flag of the run.
        assert_eq!(build(&args, &session, true)[5..7], ["--model", "--max-turns"]);
    }

    #[test]
    fn a_live_process_reads_messages_and_prints_every_event_and_takes_its_session_apart() {
        let args = CliArgs { model: Some("opus".into()), ..CliArgs::default() };
        let expected = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--model",
            "opus",
        ];
        assert_eq!(build_live(&args), expected);
        assert_eq!(session_args(&SessionFlag::Resume("s".into())), ["--resume=s"]);
        assert_eq!(session_args(&first_turn()), ["--session-id", "s-1"]);
    }

    #[test]
    fn whole_dollar_budget_prints_without_fraction() {
        let args = CliArgs { max_budget_usd: Some(10.0), ..CliArgs::default() };
        assert_eq!(&build(&args, &first_turn(), false)[3..5], ["--max-budget-usd", "10"]);
    }
}
