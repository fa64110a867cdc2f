//! Whether the installed claude CLI can run a turn as asked (issue 11). The CLI is probed once
//! per executable (`runner::probe`); a turn whose options need a flag it lacks is refused with a
//! message naming the flag, where it came from (a request field or a config key) and the CLI's
//! version, instead of failing in the CLI with `error: unknown option`. One flag is never a
//! reason to refuse: without `--max-budget-usd`, ccs leaves it out and checks the budget itself
//! (`runner::budget`).

use crate::config::Config;
use crate::error::Error;
use crate::model::TurnRequest;
use crate::money;
use crate::runner::caps::Caps;
use crate::runner::probe::Target;
use crate::runner::{argv, CliArgs, SessionFlag};

/// The CLI as the config makes a run start it (program and the environment ccs adds).
pub fn target(config: &Config) -> Target {
    Target { program: config.claude_path.clone(), env: config.child_env() }
}

/// Where a flag of the run comes from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// A request field: the caller can leave it out (400).
    Field(&'static str),
    /// A config key: only the operator can change it.
    Config(&'static str),
    /// ccs needs it for every run.
    Always,
}

/// Checks that the CLI takes every flag of a run with `args` (the run's options, built from the
/// request, its session and the config). `budget` is the run's cap.
pub fn check(caps: &Caps, config: &Config, req: &TurnRequest, args: &CliArgs, budget: f64) -> Result<(), Error> {
    let cli = format!("claude {}", caps.version);
    // Both session flags: a session's first turn creates, the later ones resume.
    let mut flags = argv::flags(args, &SessionFlag::Create(String::new()), req.stream);
    flags.push("--resume");
    for flag in flags.into_iter().filter(|flag| !caps.supports(flag)) {
        if flag == "--max-budget-usd" {
            continue; // checked by ccs after the run
        }
        return Err(match source(flag, config, req) {
            Source::Field(field) => Error::invalid(
                field,
                format!("{cli} does not support {flag} (field \"{field}\"); upgrade the CLI or leave the field out"),
            ),
            Source::Config(key) => cli_error(format!(
                "{cli} does not support {flag}, which the config's {key} asks for; upgrade the CLI \
                 (npm install -g @anthropic-ai/claude-code) or remove {key} from the config"
            )),
            Source::Always => cli_error(format!(
                "{cli} does not support {flag}, which ccs needs for every run; upgrade the CLI \
                 (npm install -g @anthropic-ai/claude-code)"
            )),
        });
    }
    if !caps.supports("--max-budget-usd") && money::to_micros(budget) == 0 {
        let why = format!(
            "{cli} has no --max-budget-usd, so ccs checks a run's cost when the run ends and cannot hold it to $0"
        );
        return Err(match req.max_budget_usd {
            Some(_) => {
                Error::invalid("max_budget_usd", format!("{why}; set max_budget_usd above 0 or upgrade the CLI"))
            }
            None => cli_error(format!("{why}; set maxBudgetUsd in the config above 0 or upgrade the CLI")),
        });
    }
    Ok(())
}

fn cli_error(message: String) -> Error {
    Error::CliFailed { message, task_id: None, session_id: None }
}

fn source(flag: &str, config: &Config, req: &TurnRequest) -> Source {
    match flag {
        "--model" => Source::Field("model"),
        "--system-prompt" => Source::Field("system_prompt"),
        "--append-system-prompt" => Source::Field("append_system_prompt"),
        "--max-turns" => Source::Field("max_turns"),
        "--agent" => Source::Field("agent"),
        "--verbose" | "--include-partial-messages" => Source::Field("stream"),
        "--mcp-config" if req.mcp_config.is_some() => Source::Field("mcp_config"),
        "--mcp-config" => Source::Config("mcp.configPath"),
        "--permission-mode" if req.permission_mode.is_some() => Source::Field("permission_mode"),
        "--permission-mode" => Source::Config("permissionMode"),
        "--allowedTools" if req.allowed_tools.is_some() => Source::Field("allowed_tools"),
        "--allowedTools" => Source::Config("allowedTools"),
        // The config's list always applies; the request's only adds to it.
        "--disallowedTools" if config.disallowed_tools.is_empty() => Source::Field("disallowed_tools"),
        "--disallowedTools" => Source::Config("disallowedTools"),
        _ => Source::Always,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::caps::Version;
    use std::path::Path;

    /// What claude 1.0.128 lists in `--help` (of the flags ccs uses).
    fn caps_1_0_128() -> Caps {
        let flags = [
            "-p",
            "--print",
            "--output-format",
            "--verbose",
            "--include-partial-messages",
            "--model",
            "--append-system-prompt",
            "--mcp-config",
            "--permission-mode",
            "--allowedTools",
            "--disallowedTools",
            "--session-id",
            "--resume",
        ];
        Caps { version: Version(1, 0, 128), flags: flags.iter().map(|f| f.to_string()).collect() }
    }

    fn config() -> Config {
        Config::defaults(Path::new("/h"), Path::new("/h"))
    }

    fn args(req: &TurnRequest, config: &Config) -> CliArgs {
        CliArgs {
            model: Some("sonnet".into()),
            max_budget_usd: Some(req.max_budget_usd.unwrap_or(config.max_budget_usd)),
            max_turns: req.max_turns,
            agent: req.agent.clone(),
            permission_mode: req.permission_mode.clone().or_else(|| config.permission_mode.clone()),
            ..CliArgs::default()
        }
    }

    fn check_req(req: TurnRequest, config: &Config) -> Result<(), Error> {
        let budget = req.max_budget_usd.unwrap_or(config.max_budget_usd);
        check(&caps_1_0_128(), config, &req, &args(&req, config), budget)
    }

    #[test]
    fn a_missing_budget_flag_is_no_reason_to_refuse() {
        assert!(check_req(TurnRequest::default(), &config()).is_ok());
        let hidden = TurnRequest { max_turns: Some(3), ..TurnRequest::default() };
        assert!(check_req(hidden, &config()).is_ok(), "--max-turns is hidden in the help, not missing");
    }

    #[test]
    fn a_request_field_needing_a_missing_flag_is_a_400_naming_all_three() {
        let req = TurnRequest { agent: Some("reviewer".into()), ..TurnRequest::default() };
        match check_req(req, &config()) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "agent");
                assert_eq!(
                    message,
                    "claude 1.0.128 does not support --agent (field \"agent\"); upgrade the CLI or leave the field out"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_config_default_needing_a_missing_flag_names_the_key() {
        let mut caps = caps_1_0_128();
        caps.flags.remove("--permission-mode");
        let mut config = config();
        config.permission_mode = Some("plan".into());
        let req = TurnRequest::default();
        let err = check(&caps, &config, &req, &args(&req, &config), 1.0).unwrap_err();
        assert!(matches!(&err, Error::CliFailed { .. }), "{err:?}");
        assert!(err.to_string().contains("--permission-mode, which the config's permissionMode asks for"), "{err}");
        let asked = TurnRequest { permission_mode: Some("plan".into()), ..TurnRequest::default() };
        let err = check(&caps, &config, &asked, &args(&asked, &config), 1.0).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "permission_mode"), "{err:?}");
    }

    #[test]
    fn a_cli_without_session_flags_cannot_run_anything() {
        let mut caps = caps_1_0_128();
        caps.flags.remove("--resume");
        let err = check(&caps, &config(), &TurnRequest::default(), &CliArgs::default(), 1.0).unwrap_err();
        assert!(err.to_string().contains("--resume, which ccs needs for every run"), "{err}");
    }

    #[test]
    fn a_zero_budget_cannot_be_held_without_the_flag() {
        let req = TurnRequest { max_budget_usd: Some(0.0), ..TurnRequest::default() };
        let err = check_req(req, &config()).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "max_budget_usd"), "{err:?}");
        let mut with_flag = caps_1_0_128();
        with_flag.flags.insert("--max-budget-usd".into());
        let req = TurnRequest { max_budget_usd: Some(0.0), ..TurnRequest::default() };
        assert!(check(&with_flag, &config(), &req, &args(&req, &config()), 0.0).is_ok(), "the CLI's own business");
    }
}
