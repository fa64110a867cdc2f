//! The command line: global options, the subcommand, and the exit code of each outcome.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::config::ConfigSource;
use crate::exit;

const USAGE: &str = "\
ccs - run the Claude Code CLI (claude -p) as a REST API

Usage: ccs [OPTIONS] <COMMAND>

Commands:
  tui        The menu TUI (also what plain `ccs` opens in a terminal)
  serve      Run the server in the foreground (Ctrl-C or SIGTERM stops it gracefully)
  start      Start the server in the background and wait until it answers
  stop       Stop the background server (graceful, then forced after a bounded wait)
  status     Show whether it runs, its address, uptime and queue (exit 3 when stopped)
  restart    Stop, then start
  copy-to-redis  Copy the file store (dataDir) into the Redis of redisUrl, then switch
                 storageType to redis (README: Several servers on one Redis)

Options:
  --home DIR       State folder (env CCS_HOME) [default: ~/.claude-code-server]
  --config FILE    Config file (env CCS_CONFIG) [default: <home>/config.json]
  --host ADDR      Listen address for `serve`/`start` (overrides the config's `host`)
  --port N         Listen port for `serve`/`start` (overrides the config's `port`)
  -h, --help       Print this help
  -V, --version    Print the version

The first start writes the full default config to <home>/config.json; edit it and the running
server picks the change up (or send it SIGHUP). Exit codes: 0 ok, 1 failed, 2 usage or config
error, 3 not running (status).";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Tui,
    Serve,
    Start,
    Stop,
    Status,
    Restart,
    CopyToRedis,
    Help,
    Version,
}

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct Options {
    pub command: Command,
    /// `--home`, `--config`, `--host`, `--port`: where the config comes from.
    pub source: ConfigSource,
}

/// Parses the arguments; the error is a usage message (exit code 2).
pub fn parse(args: Vec<OsString>) -> Result<Options, String> {
    let mut args = pico_args::Arguments::from_vec(args);
    let help = args.contains(["-h", "--help"]);
    let version = args.contains(["-V", "--version"]);
    let home: Option<PathBuf> = args.opt_value_from_str("--home").map_err(describe)?;
    let config: Option<PathBuf> = args.opt_value_from_str("--config").map_err(describe)?;
    let host: Option<String> = args.opt_value_from_str("--host").map_err(describe)?;
    let port: Option<u16> =
        args.opt_value_from_fn("--port", |s| s.parse::<u16>()).map_err(|e| format!("--port: {}", describe(e)))?;
    let rest = args.finish();
    if let Some(flag) = rest.iter().find(|a| a.to_string_lossy().starts_with('-')) {
        return Err(format!("unknown option '{}'", flag.to_string_lossy()));
    }
    let words: Vec<String> = rest.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let command = if help {
        Command::Help
    } else if version {
        Command::Version
    } else {
        match words.first().map(String::as_str) {
            // Without a terminal there is nothing to draw on: help instead.
            None | Some("tui") if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => Command::Tui,
            None => Command::Help,
            Some("tui") => return Err("`ccs tui` needs a terminal".into()),
            Some("serve") => Command::Serve,
            Some("start") => Command::Start,
            Some("stop") => Command::Stop,
            Some("status") => Command::Status,
            Some("restart") => Command::Restart,
            Some("copy-to-redis") => Command::CopyToRedis,
            Some("help") => Command::Help,
            Some(other) => return Err(format!("unknown command '{other}'")),
        }
    };
    if words.len() > 1 {
        return Err(format!("unexpected argument '{}'", words[1]));
    }
    let home = match home.or_else(|| env_path("CCS_HOME")) {
        Some(home) => home,
        None => default_home()?,
    };
    let config = config.or_else(|| env_path("CCS_CONFIG")).unwrap_or_else(|| home.join("config.json"));
    Ok(Options { command, source: ConfigSource::new(home, config, host, port) })
}

fn describe(err: pico_args::Error) -> String {
    match err {
        pico_args::Error::OptionWithoutAValue(opt) => format!("{opt} needs a value"),
        pico_args::Error::Utf8ArgumentParsingFailed { value, .. } => {
            format!("'{value}' is not valid")
        }
        pico_args::Error::ArgumentParsingFailed { cause } => cause,
        other => other.to_string(),
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn default_home() -> Result<PathBuf, String> {
    env_path("HOME")
        .map(|home| home.join(".claude-code-server"))
        .ok_or_else(|| "HOME is not set: pass --home DIR or set CCS_HOME".to_string())
}

/// Runs the parsed command line and returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("ccs: {message}\nRun 'ccs --help' for usage.");
            return exit::USAGE;
        }
    };
    match options.command {
        Command::Help => {
            println!("{USAGE}");
            exit::OK
        }
        Command::Version => {
            println!("ccs {}", env!("CARGO_PKG_VERSION"));
            exit::OK
        }
        Command::Tui => crate::tui::run(&options.source),
        Command::Start => crate::daemon::start(&options.source).print(),
        Command::Stop => crate::daemon::stop(&options.source).print(),
        Command::Status => crate::daemon::status(&options.source).print(),
        Command::Restart => crate::daemon::restart(&options.source).print(),
        Command::CopyToRedis => match crate::server::copy_to_redis(&options.source) {
            Ok(report) => {
                println!("{report}");
                exit::OK
            }
            Err(err) => {
                eprintln!("ccs: {err}");
                err.exit_code()
            }
        },
        Command::Serve => match crate::server::serve(options.source) {
            Ok(()) => exit::OK,
            Err(err) => {
                eprintln!("ccs: {err}");
                err.exit_code()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn global_options_may_come_before_the_command() {
        let o = parse_str(&["--home", "/tmp/h", "--port", "7000", "serve"]).unwrap();
        assert_eq!(o.command, Command::Serve);
        assert_eq!(o.source.home, PathBuf::from("/tmp/h"));
        assert_eq!(o.source.path, PathBuf::from("/tmp/h/config.json"));
        assert_eq!(o.source.port, Some(7000));
    }

    #[test]
    fn unknown_command_and_option_are_usage_errors() {
        assert!(parse_str(&["--home", "/h", "frobnicate"]).unwrap_err().contains("unknown command"));
        assert!(parse_str(&["--home", "/h", "serve", "--frob"]).unwrap_err().contains("--frob"));
        assert!(parse_str(&["--home", "/h", "--port", "99999", "serve"]).unwrap_err().contains("--port"));
    }

    #[test]
    fn no_command_means_help() {
        assert_eq!(parse_str(&["--home", "/h"]).unwrap().command, Command::Help);
    }
}
