//! Reading what the CLI printed (CLI.md): one JSON object, or an array / NDJSON of events whose
//! `type == "result"` element counts. Success is `is_error == false`, never the exit code, with
//! one exception: an `error_*` subtype is a failure whatever `is_error` says (2.0.77 stops at its
//! budget with `subtype: "error_max_budget_usd", is_error: false`, no `result`, `errors: []`,
//! exit 0). Pure: no I/O, unit-tested against every documented shape.

use serde_json::Value;

/// The fields of the CLI's result object that ccs uses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub is_error: bool,
    pub subtype: Option<String>,
    pub result: Option<String>,
    pub errors: Vec<String>,
    pub session_id: Option<String>,
    pub cost_usd: f64,
    pub duration_ms: Option<u64>,
    pub num_turns: Option<u64>,
    pub usage: Value,
    pub model: Option<String>,
    pub api_error_status: Option<Value>,
}

impl Report {
    /// The text to show for a failed run: `result`, else the `errors` list, else what the
    /// subtype means.
    pub fn error_text(&self) -> String {
        if let Some(result) = self.result.as_ref().filter(|r| !r.is_empty()) {
            return result.clone();
        }
        if !self.errors.is_empty() {
            return self.errors.join("; ");
        }
        let subtype = self.subtype.as_deref().unwrap_or("no details");
        match subtype {
            "error_max_budget_usd" => format!("Reached maximum budget (claude stopped the run: {subtype})"),
            "error_max_turns" => format!("Reached maximum number of turns (claude stopped the run: {subtype})"),
            _ => format!("claude reported an error ({subtype})"),
        }
    }
}

/// Finds the result object in stdout; `None` when there is none (empty output or garbage).
pub fn parse(stdout: &str) -> Option<Report> {
    let text = stdout.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return find_result(&value).map(to_report);
    }
    // NDJSON: the last line that is a result event.
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find_map(|value| find_result(&value).map(to_report))
}

fn find_result(value: &Value) -> Option<&Value> {
    match value {
        Value::Array(items) => items.iter().rev().find(|item| is_result(item)),
        Value::Object(_) if is_result(value) => Some(value),
        _ => None,
    }
}

fn is_result(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("result")
        || (value.get("type").is_none() && value.get("is_error").is_some())
}

fn to_report(v: &Value) -> Report {
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let cost = v
        .get("total_cost_usd")
        .and_then(Value::as_f64)
        .or_else(|| v.get("cost_usd").and_then(Value::as_f64))
        .unwrap_or(0.0);
    let subtype = text("subtype");
    let error_subtype = subtype.as_deref().is_some_and(|s| s.starts_with("error"));
    Report {
        is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(true) || error_subtype,
        subtype,
        result: text("result"),
        errors: v
            .get("errors")
            .and_then(Value::as_array)
            .map(|errs| errs.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string)).collect())
            .unwrap_or_default(),
        session_id: text("session_id"),
        cost_usd: cost,
        duration_ms: v.get("duration_ms").and_then(Value::as_u64),
        num_turns: v.get("num_turns").and_then(Value::as_u64),
        usage: v.get("usage").cloned().unwrap_or(Value::Null),
        model: v
            .get("modelUsage")
            .and_then(Value::as_object)
            .and_then(|models| models.keys().next().cloned())
            .or_else(|| text("model")),
        api_error_status: v.get("api_error_status").cloned().filter(|s| !s.is_null()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":111,"duration_api_ms":22,"num_turns":1,"result":"hello","stop_reason":"end_turn","session_id":"743eb495-b308-4ccd-bd22-c677a47bf2be","total_cost_usd":0.09745,"usage":{"input_tokens":19440,"output_tokens":10},"modelUsage":{"claude-opus-4-8[1m]":{"inputTokens":19440,"outputTokens":10,"costUSD":0.09745}},"permission_denials":[],"uuid":"8d1e7490"}"#;

    #[test]
    fn success_object() {
        let r = parse(SUCCESS).unwrap();
        assert!(!r.is_error);
        assert_eq!(r.result.as_deref(), Some("hello"));
        assert_eq!(r.session_id.as_deref(), Some("743eb495-b308-4ccd-bd22-c677a47bf2be"));
        assert_eq!(r.cost_usd, 0.09745);
        assert_eq!(r.duration_ms, Some(111));
        assert_eq!(r.num_turns, Some(1));
        assert_eq!(r.usage["input_tokens"], 19440);
        assert_eq!(r.model.as_deref(), Some("claude-opus-4-8[1m]"));
    }

    #[test]
    fn api_error_is_an_error_despite_success_subtype() {
        let out = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"result":"API Error: 529 Overloaded","total_cost_usd":0,"session_id":"s"}"#;
        let r = parse(out).unwrap();
        assert!(r.is_error);
        assert_eq!(r.api_error_status, Some(serde_json::json!(529)));
        assert_eq!(r.error_text(), "API Error: 529 Overloaded");
    }

    #[test]
    fn limit_errors_have_no_result_but_errors() {
        let out = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":2,"errors":["Reached maximum number of turns (1)"],"session_id":"s","total_cost_usd":0.01}"#;
        let r = parse(out).unwrap();
        assert!(r.is_error && r.result.is_none());
        assert_eq!(r.error_text(), "Reached maximum number of turns (1)");
        let bare = r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true}"#;
        assert!(parse(bare).unwrap().error_text().contains("error_max_budget_usd"));
    }

    #[test]
    fn an_error_subtype_fails_even_when_is_error_is_false() {
        // What claude 2.0.77 prints (exit 0) when --max-budget-usd stops it.
        let out = r#"{"type":"result","subtype":"error_max_budget_usd","duration_ms":158,"duration_api_ms":0,"is_error":false,"num_turns":1,"session_id":"3551e81a-ac2c-4586-818f-58a0faa99990","total_cost_usd":0.055353000000000006,"usage":{"input_tokens":0,"output_tokens":0},"modelUsage":{"claude-sonnet-4-5-20250929":{"inputTokens":18426,"outputTokens":5,"costUSD":0.055353000000000006}},"permission_denials":[],"uuid":"c6c76dc2","errors":[]}"#;
        let r = parse(out).unwrap();
        assert!(r.is_error);
        assert_eq!(r.error_text(), "Reached maximum budget (claude stopped the run: error_max_budget_usd)");
        assert_eq!(r.cost_usd, 0.055353000000000006);
    }

    #[test]
    fn older_cost_field_is_read() {
        let out = r#"{"type":"result","subtype":"success","is_error":false,"result":"x","cost_usd":0.5}"#;
        assert_eq!(parse(out).unwrap().cost_usd, 0.5);
    }

    #[test]
    fn array_and_ndjson_take_the_result_event() {
        let array =
            format!(r#"[{{"type":"system","subtype":"init"}},{{"type":"assistant","message":{{}}}},{SUCCESS}]"#);
        assert_eq!(parse(&array).unwrap().result.as_deref(), Some("hello"));
        let ndjson = format!("{{\"type\":\"system\",\"subtype\":\"init\"}}\n{{\"type\":\"assistant\"}}\n{SUCCESS}\n");
        assert_eq!(parse(&ndjson).unwrap().result.as_deref(), Some("hello"));
    }

    #[test]
    fn empty_and_garbage_have_no_report() {
        assert!(parse("").is_none());
        assert!(parse("  \n").is_none());
        assert!(parse("Segmentation fault (core dumped)\n<html>").is_none());
        assert!(parse(r#"{"type":"assistant"}"#).is_none());
        assert!(parse("[1,2,3]").is_none());
    }
}
