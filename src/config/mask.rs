//! Secrets in the config as the API shows them: API keys keep their last 4 characters, the
//! webhook secret, `claudeEnv` values and a password in `redisUrl` become `****`. A `PUT` that
//! sends a masked value back keeps the stored one, so a GET-edit-PUT round trip loses nothing.

use serde_json::Value;

const MASK: &str = "****";

fn mask_key(key: &str) -> String {
    if key.chars().count() >= 12 {
        let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("{MASK}{tail}")
    } else {
        MASK.to_string()
    }
}

/// `redis://user:secret@host` → `redis://user:****@host`, and a socket's
/// `redis+unix:///path?pass=secret` → `?pass=****` (never show or log a password). The
/// userinfo ends at the last `@`, as URL parsers read it: a password may hold an `@`.
pub fn mask_url_password(url: &str) -> String {
    let url = match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.rsplit_once('@')?))) {
        Some((scheme, (userinfo, host))) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:{MASK}@{host}")
        }
        None => url.to_string(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| if p.starts_with("pass=") { format!("pass={MASK}") } else { p.to_string() })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url,
    }
}

fn is_masked(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.starts_with(MASK) || s.contains(&format!(":{MASK}@")) || s.contains(&format!("pass={MASK}")))
}

/// The lists of keys, shown by their last four characters.
const KEY_LISTS: [&str; 2] = ["/auth/apiKeys", "/auth/adminKeys"];

/// The config JSON with its secrets masked.
pub fn masked(config: &Value) -> Value {
    let mut c = config.clone();
    for pointer in KEY_LISTS {
        if let Some(keys) = c.pointer_mut(pointer).and_then(Value::as_array_mut) {
            for key in keys.iter_mut() {
                *key = Value::String(mask_key(key.as_str().unwrap_or_default()));
            }
        }
    }
    if let Some(secret) = c.pointer_mut("/webhook/secret").filter(|s| s.is_string()) {
        *secret = Value::String(MASK.into());
    }
    if let Some(env) = c.pointer_mut("/claudeEnv").and_then(Value::as_object_mut) {
        env.values_mut().for_each(|v| *v = Value::String(MASK.into()));
    }
    if let Some(url) = c.pointer_mut("/redisUrl").filter(|u| u.is_string()) {
        *url = Value::String(mask_url_password(url.as_str().unwrap_or_default()));
    }
    c
}

/// Puts the stored secret back wherever `incoming` carries a masked one.
pub fn unmask(incoming: &mut Value, stored: &Value) {
    for pointer in KEY_LISTS {
        let Some(keys) = incoming.pointer_mut(pointer).and_then(Value::as_array_mut) else { continue };
        let stored_keys: Vec<&str> = stored
            .pointer(pointer)
            .and_then(Value::as_array)
            .map_or(Vec::new(), |k| k.iter().filter_map(Value::as_str).collect());
        for key in keys.iter_mut().filter(|k| is_masked(k)) {
            if let Some(original) = stored_keys.iter().find(|s| mask_key(s) == key.as_str().unwrap_or_default()) {
                *key = Value::String(original.to_string());
            }
        }
    }
    for pointer in ["/webhook/secret", "/redisUrl"] {
        if incoming.pointer(pointer).is_some_and(is_masked) {
            if let (Some(slot), Some(original)) = (incoming.pointer_mut(pointer), stored.pointer(pointer)) {
                *slot = original.clone();
            }
        }
    }
    if let Some(env) = incoming.pointer_mut("/claudeEnv").and_then(Value::as_object_mut) {
        for (name, value) in env.iter_mut().filter(|(_, v)| is_masked(v)) {
            if let Some(original) = stored.pointer(&format!("/claudeEnv/{name}")) {
                *value = original.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_part_of_a_redis_password_is_masked() {
        assert_eq!(mask_url_password("redis://:p@ss@host:6379/0"), "redis://:****@host:6379/0");
        assert_eq!(
            mask_url_password("redis+unix:///run/r.sock?db=1&pass=s3cret"),
            "redis+unix:///run/r.sock?db=1&pass=****"
        );
        assert_eq!(mask_url_password("redis://host:6379/0"), "redis://host:6379/0");
    }

    #[test]
    fn secrets_are_masked_and_a_round_trip_restores_them() {
        let stored = json!({
            "auth": {"apiKeys": ["a-very-long-secret-key-1234", "short"], "adminKeys": ["the-admin-key-9876"]},
            "webhook": {"secret": "whsec_abc", "timeout": 5000},
            "claudeEnv": {"ANTHROPIC_API_KEY": "sk-ant-xyz"},
            "redisUrl": "redis://user:pa55@localhost:6379/0",
            "port": 5546
        });
        let shown = masked(&stored);
        assert_eq!(shown["auth"]["apiKeys"], json!(["****1234", "****"]));
        assert_eq!(shown["auth"]["adminKeys"], json!(["****9876"]));
        assert_eq!(shown["webhook"]["secret"], "****");
        assert_eq!(shown["claudeEnv"]["ANTHROPIC_API_KEY"], "****");
        assert_eq!(shown["redisUrl"], "redis://user:****@localhost:6379/0");
        assert!(!shown.to_string().contains("pa55") && !shown.to_string().contains("sk-ant"));
        let mut back = shown.clone();
        back["port"] = json!(6000);
        unmask(&mut back, &stored);
        let mut expected = stored.clone();
        expected["port"] = json!(6000);
        assert_eq!(back, expected);
    }

    #[test]
    fn new_secrets_are_kept_as_sent() {
        let stored = json!({"auth": {"apiKeys": ["old-key-abcdefgh"]}, "webhook": {"secret": "old"}});
        let mut incoming = json!({"auth": {"apiKeys": ["****efgh", "brand-new-key"]}, "webhook": {"secret": "new"}});
        unmask(&mut incoming, &stored);
        assert_eq!(incoming["auth"]["apiKeys"], json!(["old-key-abcdefgh", "brand-new-key"]));
        assert_eq!(incoming["webhook"]["secret"], "new");
    }
}
