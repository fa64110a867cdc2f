//! What one claude CLI accepts, read from what it prints for `--version` and `--help` (issue 11).
//! Pure: no I/O, unit-tested against the real outputs of 1.0.128, 2.0.77 and 2.1.x.
//!
//! `--help` is the source of truth, with one exception: a few options work without being listed
//! (commander's hidden options). Those are in `HIDDEN`, with the oldest version that was measured
//! to take them, so a CLI is never refused a flag it has.

use std::collections::BTreeSet;
use std::fmt;

/// A CLI version, `major.minor.patch` (a pre-release suffix is ignored for comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// The first word of `text` that reads as `N.N.N` (`1.0.128 (Claude Code)` gives 1.0.128).
    pub fn find(text: &str) -> Option<Version> {
        text.split_whitespace().find_map(|word| {
            let core = word.split(['-', '+']).next()?;
            let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
            let version = Version(parts.next()??, parts.next()??, parts.next()??);
            parts.next().is_none().then_some(version)
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// Options the CLI takes without listing them in `--help`, and the oldest version known to.
/// Measured (an unknown option makes the CLI exit 1 with `error: unknown option '--x'` before it
/// does anything): `--max-turns` is hidden in 1.0.128, 2.0.77, 2.1.197 and 2.1.332 and taken by
/// all; `--system-prompt` is hidden in 1.0.128 (listed from 2.0.x). Both are in the headless docs
/// of the first 1.0 releases, so 1.0.0 is assumed, not measured.
const HIDDEN: &[(&str, Version)] = &[("--max-turns", Version(1, 0, 0)), ("--system-prompt", Version(1, 0, 0))];

/// What one CLI executable accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// As the CLI printed it (`1.0.128`).
    pub version: Version,
    /// Every option `--help` lists, long and short forms (`--print`, `-p`, `--allowedTools`, ...).
    pub flags: BTreeSet<String>,
}

impl Caps {
    /// Reads the outputs of `--version` and `--help`; an error says what was missing.
    pub fn from_output(version_out: &str, help_out: &str) -> Result<Caps, String> {
        let version = Version::find(version_out).ok_or_else(|| {
            format!("`--version` printed no version number: {:?}", version_out.chars().take(200).collect::<String>())
        })?;
        let flags = help_flags(help_out);
        if !flags.contains("--print") && !flags.contains("-p") {
            return Err(format!(
                "`--help` of claude {version} lists no --print option; is claudePath really the claude CLI?"
            ));
        }
        Ok(Caps { version, flags })
    }

    /// Whether the CLI takes `flag` (a long or short option, without its value).
    pub fn supports(&self, flag: &str) -> bool {
        self.flags.contains(flag) || HIDDEN.iter().any(|(hidden, since)| *hidden == flag && self.version >= *since)
    }
}

/// The options listed in commander-style help: lines that start with two spaces and a dash
/// (`  -r, --resume [value]   Resume a conversation...`). Description lines, even when they
/// start with an option name, are indented further and are skipped.
pub fn help_flags(help: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let Some(rest) = line.strip_prefix("  ") else { continue };
        if !rest.starts_with('-') {
            continue;
        }
        // The option part ends where the description starts (two spaces) or at the line end.
        let spec = rest.split("  ").next().unwrap_or(rest);
        for word in spec.split([',', ' ']) {
            let name = word.split(['=', '[', '<']).next().unwrap_or("");
            let is_flag =
                name.starts_with('-') && name.len() > 1 && name.trim_start_matches('-').chars().all(flag_char);
            if is_flag {
                flags.insert(name.to_string());
            }
        }
    }
    flags
}

fn flag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of the real `claude --help` of 1.0.128 (no --max-budget-usd, --agent, and
    /// --system-prompt / --max-turns hidden).
    const HELP_1_0_128: &str = "Usage: claude [options] [command] [prompt]

Claude Code - starts an interactive session by default, use -p/--print for
non-interactive output

Arguments:
  prompt                                            Your prompt

Options:
  -d, --debug [filter]                              Enable debug mode with optional category filtering (e.g., \"api,hooks\" or \"!statsig,!file\")
  --verbose                                         Override verbose mode setting from config
  -p, --print                                       Print response and exit (useful for pipes).
  --output-format <format>                          Output format (only works with --print): \"text\" (default), \"json\" (single result), or \"stream-json\" (realtime streaming) (choices: \"text\", \"json\", \"stream-json\")
  --include-partial-messages                        Include partial message chunks as they arrive (only works with --print and --output-format=stream-json)
  --allowedTools, --allowed-tools <tools...>        Comma or space-separated list of tool names to allow (e.g. \"Bash(git:*) Edit\")
  --disallowedTools, --disallowed-tools <tools...>  Comma or space-separated list of tool names to deny (e.g. \"Bash(git:*) Edit\")
  --mcp-config <configs...>                         Load MCP servers from JSON files or strings (space-separated)
  --append-system-prompt <prompt>                   Append a system prompt to the default system prompt
  --permission-mode <mode>                          Permission mode to use for the session (choices: \"acceptEdits\", \"bypassPermissions\", \"default\", \"plan\")
  -r, --resume [sessionId]                          Resume a conversation - provide a session ID or interactively select a conversation to resume
  --model <model>                                   Model for the current session.
  --session-id <uuid>                               Use a specific session ID for the conversation (must be a valid UUID)
  --agents <json>                                   JSON object defining custom agents
  -v, --version                                     Output the version number
  -h, --help                                        Display help for command

Commands:
  config                                            Manage configuration (eg. claude config set -g theme dark)
";

    /// Lines of the real 2.1.197 help: long option specs on a line of their own, description
    /// lines that start with an option name.
    const HELP_2_1_197: &str = "Options:
  --agent <agent>                       Agent for the current session. Overrides
                                        the 'agent' setting.
  --allowedTools, --allowed-tools <tools...>
                                        Comma or space-separated list of tool
  --bare                                Minimal mode: skip hooks, LSP, plugin
                                        via: --system-prompt[-file],
                                        --append-system-prompt[-file], --add-dir
      with --system-prompt). (default: false)
  --max-budget-usd <amount>             Maximum dollar amount to spend on API
  -p, --print                           Print response and exit (useful for
  -r, --resume [value]                  Resume a conversation by session ID, or
";

    #[test]
    fn version_is_the_first_number_word() {
        assert_eq!(Version::find("1.0.128 (Claude Code)\n"), Some(Version(1, 0, 128)));
        assert_eq!(Version::find("claude 2.1.332-beta.1"), Some(Version(2, 1, 332)));
        assert_eq!(Version::find("Claude Code v2"), None);
        assert_eq!(Version::find(""), None);
        assert!(Version(2, 0, 77) > Version(1, 0, 128) && Version(2, 1, 197) < Version(2, 1, 332));
        assert_eq!(Version(1, 0, 128).to_string(), "1.0.128");
    }

    #[test]
    fn help_of_1_0_128_lacks_the_budget_and_agent_flags() {
        let caps = Caps::from_output("1.0.128 (Claude Code)", HELP_1_0_128).unwrap();
        for flag in ["-p", "--print", "--output-format", "--verbose", "--include-partial-messages", "--session-id"] {
            assert!(caps.supports(flag), "{flag}");
        }
        for flag in ["--resume", "-r", "--allowedTools", "--allowed-tools", "--disallowedTools", "--mcp-config"] {
            assert!(caps.supports(flag), "{flag}");
        }
        assert!(caps.supports("--append-system-prompt") && caps.supports("--permission-mode"));
        assert!(!caps.supports("--max-budget-usd"));
        assert!(!caps.supports("--agent"), "--agents is another option");
        assert!(!caps.flags.contains("prompt") && !caps.flags.contains("config"));
    }

    #[test]
    fn hidden_options_count_from_their_version() {
        let caps = Caps::from_output("1.0.128 (Claude Code)", HELP_1_0_128).unwrap();
        assert!(!caps.flags.contains("--max-turns") && caps.supports("--max-turns"));
        assert!(caps.supports("--system-prompt"));
        let ancient = Caps { version: Version(0, 2, 9), flags: caps.flags.clone() };
        assert!(!ancient.supports("--max-turns"));
    }

    #[test]
    fn wrapped_help_reads_only_option_lines() {
        let flags = help_flags(HELP_2_1_197);
        let expected = [
            "--agent",
            "--allowed-tools",
            "--allowedTools",
            "--bare",
            "--max-budget-usd",
            "--print",
            "--resume",
            "-p",
            "-r",
        ];
        assert_eq!(flags.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn output_that_is_not_the_cli_is_an_error() {
        assert!(Caps::from_output("no version here", HELP_1_0_128).unwrap_err().contains("no version number"));
        let err = Caps::from_output("2.0.0", "Usage: something else\n  -x  an option\n").unwrap_err();
        assert!(err.contains("no --print"), "{err}");
    }
}
