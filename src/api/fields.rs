//! Validation of JSON request bodies (SPEC 6): unknown fields are rejected the way the original
//! did (`"foo" is not allowed`), types are strict (priority `5.5` or `"7"` is an error), and every
//! error names its field. `null` counts as absent.

use crate::model::Priority;
use serde_json::{Map, Value};

use crate::http::ApiError;

/// The largest `metadata` object taken, as JSON.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024;

pub struct Fields<'a> {
    map: &'a Map<String, Value>,
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

fn bad(field: &str, message: String) -> ApiError {
    ApiError::bad_request(field, message)
}

impl<'a> Fields<'a> {
    /// The body as an object whose keys are all in `allowed` (an empty body is `{}`).
    pub fn new(body: Option<&'a Value>, allowed: &[&str]) -> Result<Fields<'a>, ApiError> {
        let map = match body {
            None => EMPTY.get_or_init(Map::new),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(bad("body", "the request body must be a JSON object".into())),
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let hint = match closest(unknown, allowed) {
                Some(near) => format!("did you mean \"{near}\"?"),
                None => format!("allowed fields: {}", allowed.join(", ")),
            };
            return Err(bad(unknown, format!("\"{unknown}\" is not allowed; {hint}")));
        }
        Ok(Fields { map })
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// The field as sent (`null` counts as absent), for shapes the helpers here do not know.
    pub fn raw(&self, name: &str) -> Option<&'a Value> {
        self.get(name)
    }

    /// A required string with something other than whitespace in it.
    pub fn required_text(&self, name: &str) -> Result<String, ApiError> {
        self.text(name)?.ok_or_else(|| bad(name, format!("\"{name}\" is required")))
    }

    /// An optional non-empty string.
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad(name, format!("\"{name}\" must be a non-empty string"))),
        }
    }

    /// An optional integer in `min..=max`; fractions and numeric strings are refused. `5.0` is
    /// the integer 5, as JSON (and JSON Schema, and the original server's JavaScript) reads it:
    /// a client that keeps its numbers as floats sends it so.
    pub fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let whole = |v: &Value| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=max as f64).contains(f)).map(|f| f as u64))
        };
        match self.get(name) {
            None => Ok(None),
            Some(v) => match whole(v) {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(bad(name, format!("\"{name}\" must be an integer from {min} to {max}"))),
            },
        }
    }

    /// An optional task priority (`Priority::MIN` to `Priority::MAX`).
    pub fn priority(&self) -> Result<Option<Priority>, ApiError> {
        let n = self.integer("priority", Priority::MIN.into(), Priority::MAX.into())?;
        Ok(n.and_then(Priority::new))
    }

    /// An optional finite number `>= min`.
    pub fn number(&self, name: &str, min: f64) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if v.is_number() && n.is_finite() && n >= min => Ok(Some(n)),
                _ => Err(bad(name, format!("\"{name}\" must be a number >= {min}"))),
            },
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(name, format!("\"{name}\" must be true or false"))),
        }
    }

    /// An optional list of tool names: non-empty strings that cannot be read as CLI flags.
    pub fn tool_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let message = || format!("\"{name}\" must be an array of tool names (non-empty strings not starting with '-')");
        let items = value.as_array().ok_or_else(|| bad(name, message()))?;
        items
            .iter()
            .map(|item| match item.as_str() {
                Some(s) if !s.trim().is_empty() && !s.starts_with('-') => Ok(s.to_string()),
                _ => Err(bad(name, message())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional list of 1..=max non-empty strings.
    pub fn text_list(&self, name: &str, max: usize) -> Result<Option<Vec<String>>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let message = || format!("\"{name}\" must be an array of 1 to {max} non-empty strings");
        let items = value.as_array().filter(|a| !a.is_empty() && a.len() <= max).ok_or_else(|| bad(name, message()))?;
        items
            .iter()
            .map(|item| {
                item.as_str().filter(|s| !s.trim().is_empty()).map(str::to_string).ok_or_else(|| bad(name, message()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An optional object of at most `MAX_OBJECT_BYTES` as JSON (it is kept with every record
    /// that carries it, in memory and on disk).
    pub fn object(&self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => {
                let size = v.to_string().len();
                if size > MAX_OBJECT_BYTES {
                    return Err(bad(
                        name,
                        format!("\"{name}\" is {size} bytes of JSON; at most {MAX_OBJECT_BYTES} are kept"),
                    ));
                }
                Ok(Some(v.clone()))
            }
            Some(_) => Err(bad(name, format!("\"{name}\" must be an object"))),
        }
    }

    /// An optional string from a fixed set.
    pub fn choice(&self, name: &str, choices: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if choices.contains(&s.as_str()) => Ok(Some(s.clone())),
            Some(_) => Err(bad(name, format!("\"{name}\" must be one of {}", choices.join(", ")))),
        }
    }

    /// An optional http(s) URL of at least 10 characters (characters, as the OpenAPI document's
    /// `minLength` counts them, not bytes).
    pub fn url(&self, name: &str) -> Result<Option<String>, ApiError> {
        let url = self.text(name)?;
        if let Some(u) = &url {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.chars().count() < 10 {
                return Err(bad(name, format!("\"{name}\" must be an http:// or https:// URL")));
            }
        }
        Ok(url)
    }

    /// A string, or an object that is passed on as its JSON text (e.g. `mcp_config`).
    pub fn text_or_json(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
            Some(Value::String(_)) | None => self.text(name),
            Some(_) => Err(bad(name, format!("\"{name}\" must be a string (file path or JSON) or an object"))),
        }
    }
}

/// The allowed name within two edits of `name` (a typo), if there is one.
fn closest<'n>(name: &str, allowed: &[&'n str]) -> Option<&'n str> {
    allowed.iter().map(|a| (edit_distance(name, a), *a)).filter(|(d, _)| *d <= 2).min().map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: Value, f: impl Fn(&Fields) -> Result<(), ApiError>) -> ApiError {
        let fields = Fields::new(Some(&body), &["prompt", "priority", "tools", "budget", "flag", "meta"]).unwrap();
        f(&fields).unwrap_err()
    }

    #[test]
    fn unknown_fields_are_named() {
        let body = json!({"prompt": "x", "promt": "y"});
        let e = Fields::new(Some(&body), &["prompt"]).err().unwrap();
        assert_eq!((e.status, e.field.as_deref()), (400, Some("promt")));
        assert_eq!(e.message, "\"promt\" is not allowed; did you mean \"prompt\"?");
        let body = json!({"colour": 1});
        let e = Fields::new(Some(&body), &["prompt", "model"]).err().unwrap();
        assert_eq!(e.message, "\"colour\" is not allowed; allowed fields: prompt, model");
        assert!(Fields::new(Some(&json!([1])), &["prompt"]).is_err());
        assert!(Fields::new(None, &["prompt"]).is_ok());
    }

    #[test]
    fn priority_must_be_a_real_integer_in_range() {
        for bad_value in [json!(5.5), json!("7"), json!(0), json!(11), json!(-1), json!(true)] {
            let e = err(json!({"priority": bad_value}), |f| f.integer("priority", 1, 10).map(|_| ()));
            assert_eq!(e.message, "\"priority\" must be an integer from 1 to 10");
        }
        for (good, n) in [(json!(7), 7), (json!(7.0), 7), (json!(1), 1), (json!(10.0), 10)] {
            let body = json!({"priority": good});
            let fields = Fields::new(Some(&body), &["priority"]).unwrap();
            assert_eq!(fields.integer("priority", 1, 10).unwrap(), Some(n), "{good}");
        }
        for huge in [json!(1e20), json!(-0.5), json!(f64::MAX)] {
            let body = json!({"timeout_ms": huge});
            let fields = Fields::new(Some(&body), &["timeout_ms"]).unwrap();
            assert!(fields.integer("timeout_ms", 100, 86_400_000).is_err(), "{huge}");
        }
    }

    #[test]
    fn strings_lists_and_numbers() {
        assert_eq!(err(json!({}), |f| f.required_text("prompt").map(|_| ())).message, "\"prompt\" is required");
        assert!(err(json!({"prompt": "  "}), |f| f.required_text("prompt").map(|_| ())).message.contains("non-empty"));
        assert!(err(json!({"prompt": 3}), |f| f.required_text("prompt").map(|_| ())).message.contains("non-empty"));
        assert!(err(json!({"tools": ["--dangerous"]}), |f| f.tool_list("tools").map(|_| ()))
            .message
            .contains("tool names"));
        assert!(err(json!({"tools": "Bash"}), |f| f.tool_list("tools").map(|_| ())).message.contains("array"));
        assert!(err(json!({"budget": -0.5}), |f| f.number("budget", 0.0).map(|_| ())).message.contains(">= 0"));
        assert!(err(json!({"flag": "yes"}), |f| f.boolean("flag").map(|_| ())).message.contains("true or false"));
        assert!(err(json!({"meta": [1]}), |f| f.object("meta").map(|_| ())).message.contains("object"));
        let big = json!({"meta": {"k": "x".repeat(MAX_OBJECT_BYTES)}});
        assert!(err(big, |f| f.object("meta").map(|_| ())).message.contains("at most 16384"));
        let url =
            |u: &str| Fields::new(Some(&json!({"hook": u})), &["hook"]).unwrap().url("hook").map_err(|e| e.status);
        assert_eq!(url("http://a.b"), Ok(Some("http://a.b".into())));
        assert_eq!(url("https://é"), Err(400), "9 characters (10 bytes) is too short");
        assert_eq!(url("ftp://example.com"), Err(400));
        let nulls = json!({"prompt": null});
        assert_eq!(Fields::new(Some(&nulls), &["prompt"]).unwrap().text("prompt").unwrap(), None);
    }
}
