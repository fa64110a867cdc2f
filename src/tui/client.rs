//! The TUI's way to the server: its HTTP API with the configured API key, like any client.

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::daemon;

#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    quick: ureq::Agent,
    slow: ureq::Agent,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).proxy(None).build(),
    )
}

impl Client {
    pub fn new(config: &Config) -> Client {
        Client {
            base: daemon::base_url(config),
            // The operator's own terminal: the admin key when there is one (it may change the config).
            key: config.auth.admin_keys.first().or(config.auth.api_keys.first()).cloned(),
            quick: agent(Duration::from_secs(10)),
            slow: agent(Duration::from_secs(3600)),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.call("GET", path, None, false)
    }

    pub fn delete(&self, path: &str) -> Result<Value, String> {
        self.call("DELETE", path, None, false)
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call("PUT", path, Some(body), false)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call("PATCH", path, Some(body), false)
    }

    /// A POST that may run a CLI to its end (minutes).
    pub fn post_and_wait(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call("POST", path, Some(body), true)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>, slow: bool) -> Result<Value, String> {
        let agent = if slow { &self.slow } else { &self.quick };
        let url = format!("{}{path}", self.base);
        let mut request =
            ureq::http::Request::builder().method(method).uri(&url).header("content-type", "application/json");
        if let Some(key) = &self.key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = request.body(body).map_err(|e| e.to_string())?;
        let mut response = agent
            .run(request)
            .map_err(|e| format!("the server does not answer at {} ({e}); start it from the menu", self.base))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            return Err(json["error"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), |e| format!("{e} (HTTP {status})")));
        }
        Ok(json)
    }
}
