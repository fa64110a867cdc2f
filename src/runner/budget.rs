//! The budget of a run when the CLI has no `--max-budget-usd` (1.0.x; issue 11): ccs checks it
//! itself, from the cost the CLI reports. Pure, unit-tested.
//!
//! With the flag, the CLI checks its running cost after each API call and stops the run with
//! `subtype: "error_max_budget_usd"` (no `result`, the reason in `errors`) once the cap is
//! reached. Without it, the CLI reports its cost only at the end: `total_cost_usd` (`cost_usd`
//! in older versions) of the final result object, also in stream-json (its `assistant` events
//! carry token counts, never dollars). So ccs can only look after the run:
//! - before a run: a session that has spent its `max_budget_usd` takes no more turns (409; the
//!   same with or without the flag), and the run's cap is the request's (or `maxBudgetUsd`),
//!   never more than what is left of the session's budget;
//! - after a run that succeeded: if its cost is above that cap, the run ends as the CLI would
//!   have ended it: failed, `error_max_budget_usd`, `Reached maximum budget ($cap)` (the task
//!   keeps the answer in `result`: it was paid for, and the CLI's transcript has it for the next
//!   `--resume`). The cost counts in full for the session, so the next turn is refused.
//!
//! The limit: a run is never stopped part-way. It may spend more than its cap (as the CLI may
//! by one API call); ccs only makes sure the overrun is reported and that no later turn of the
//! session starts once its budget is spent.

use crate::money;

use super::{RunResult, RunStatus};

/// Marks `run` as over budget when it succeeded at a cost above `cap`; `why` says why ccs, not
/// the CLI, checked it. Returns whether it did.
pub fn enforce(run: &mut RunResult, cap: f64, why: &str) -> bool {
    let Some(report) = run.report.as_mut() else { return false };
    if run.status != RunStatus::Completed || money::to_micros(report.cost_usd) <= money::to_micros(cap) {
        return false;
    }
    let reason = format!("Reached maximum budget (${cap})");
    let message =
        format!("{reason}: the run cost ${}; {why} (the answer is kept in the task's result)", report.cost_usd);
    report.is_error = true;
    report.subtype = Some("error_max_budget_usd".into());
    report.errors = vec![reason];
    run.status = RunStatus::Failed;
    run.error = Some(message);
    true
}

#[cfg(test)]
mod tests {
    use super::super::Report;
    use super::*;

    fn run(status: RunStatus, cost: f64) -> RunResult {
        let report = Report { is_error: status != RunStatus::Completed, cost_usd: cost, ..Report::default() };
        RunResult { status, report: Some(report), error: None, exit_code: Some(0), duration_ms: 5 }
    }

    #[test]
    fn a_run_over_its_cap_fails_as_the_cli_would_fail_it() {
        let mut r = run(RunStatus::Completed, 0.0125);
        assert!(enforce(&mut r, 0.01, "claude 1.0.128 has no --max-budget-usd"));
        assert_eq!(r.status, RunStatus::Failed);
        let report = r.report.as_ref().unwrap();
        assert!(report.is_error);
        assert_eq!(report.subtype.as_deref(), Some("error_max_budget_usd"));
        assert_eq!(report.errors, ["Reached maximum budget ($0.01)"]);
        let error = r.error.unwrap();
        assert!(error.starts_with("Reached maximum budget ($0.01): the run cost $0.0125; claude 1.0.128"), "{error}");
    }

    #[test]
    fn a_run_within_or_at_its_cap_is_left_alone() {
        for cost in [0.0, 0.01, 0.0099999] {
            let mut r = run(RunStatus::Completed, cost);
            assert!(!enforce(&mut r, 0.01, "claude 1.0.128 has no --max-budget-usd"), "{cost}");
            assert_eq!(r.status, RunStatus::Completed);
        }
    }

    #[test]
    fn a_run_that_failed_anyway_keeps_its_own_error() {
        let mut r = run(RunStatus::Failed, 5.0);
        r.error = Some("API Error: 529".into());
        assert!(!enforce(&mut r, 0.01, "claude 1.0.128 has no --max-budget-usd"));
        assert_eq!(r.error.as_deref(), Some("API Error: 529"));
        let mut no_report = RunResult { report: None, ..run(RunStatus::Completed, 0.0) };
        assert!(!enforce(&mut no_report, 0.0, "claude 1.0.128 has no --max-budget-usd"));
    }
}
