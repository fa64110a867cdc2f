//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint, `openapi.json` beside this
//! file, kept by hand and built into the binary. It is the API's contract, held to the code from
//! both sides: the tests here check that it lists exactly the routes of `api::routes()` (method and
//! path), and `make api-test` checks a running server's answers against it (schemathesis).
//!
//! Served like any other route: without a key only while the server has no keys.

use crate::app::App;
use crate::http::{ApiError, Ctx, Reply};

/// The document, as written in `openapi.json`.
const DOCUMENT: &str = include_str!("openapi.json");

pub fn get(_app: &App, _ctx: &Ctx) -> Result<Reply, ApiError> {
    // The tests parse the same text, so this cannot fail in a build that passed them.
    let document = serde_json::from_str(DOCUMENT).map_err(|e| {
        log::error!("the built-in openapi.json is not JSON: {e}");
        ApiError::internal("GET /openapi.json")
    })?;
    Ok(Reply::ok(document))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::http::router::{Match, Method};

    /// Documented operations whose routes are being added on main (issue 15: the OpenAI and
    /// Anthropic endpoints). Until then the router lacks exactly these; delete this list when
    /// merging, the test then wants them routed.
    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("src/api/openapi.json is JSON")
    }

    /// (METHOD, path) of every documented operation.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                METHODS.iter().filter(|m| item.get(**m).is_some()).map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect()
    }

    /// A router pattern as an OpenAPI path: `/api/tasks/:id` is `/api/tasks/{id}`.
    fn openapi_path(pattern: &str) -> String {
        pattern
            .split('/')
            .map(|s| s.strip_prefix(':').map_or_else(|| s.to_string(), |name| format!("{{{name}}}")))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn routed() -> BTreeSet<(String, String)> {
        super::super::routes().routes().map(|(m, pattern)| (m.name().to_string(), openapi_path(pattern))).collect()
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let (documented, routed) = (documented(&document()), routed());
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routes missing from src/api/openapi.json: {undocumented:?}");
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(unrouted.is_empty(), "documented operations that api::routes() lacks: {unrouted:?}");
    }

    #[test]
    fn only_the_public_routes_are_documented_without_security() {
        let doc = document();
        let routes = super::super::routes();
        for (method, path) in documented(&doc) {
            let operation = &doc["paths"][&path][method.to_lowercase()];
            let without_key = operation.get("security").is_some_and(|s| s == &Value::Array(Vec::new()));
            // A sample path: every `{param}` as `x`.
            let sample = path.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>();
            let public = match routes.find(Method::parse(&method), &sample.join("/")) {
                Match::Found(route, _) => route.public,
                _ => panic!("{method} {path} is documented but not routed"),
            };
            assert_eq!(without_key, public, "{method} {path}: `security: []` in the document iff a public route");
        }
        assert!(doc["security"].as_array().is_some_and(|s| s.len() == 2), "Bearer or X-API-Key by default");
    }

    #[test]
    fn the_document_is_openapi_3_1_of_this_version() {
        let doc = document();
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1."), "openapi: {version}");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version follows Cargo.toml");
        let reply = get(&App::for_tests(crate::store::Store::in_memory()), &Ctx::default()).unwrap();
        assert_eq!((reply.status, &reply.body), (200, &doc));
    }

    /// Every `$ref` points at something in the document, and every `{param}` of a path is
    /// declared as a path parameter.
    #[test]
    fn references_resolve_and_path_parameters_are_declared() {
        let doc = document();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 100, "{} refs", refs.len());
        for r in refs {
            let target = r.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
            assert!(target.is_some(), "$ref {r} points at nothing");
        }
        let resolve = |p: &Value| match p["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).cloned().unwrap_or_default(),
            None => p.clone(),
        };
        for (method, path) in documented(&doc) {
            let item = &doc["paths"][&path];
            let declared: BTreeSet<String> = [&item["parameters"], &item[method.to_lowercase()]["parameters"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .map(resolve)
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).map(str::to_string))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}");
        }
    }

    /// What the server writes has the properties the document lists, no more, no fewer: a
    /// config key or a record field added to the code fails here until the document has it.
    #[test]
    fn the_config_tasks_and_sessions_have_the_documented_properties() {
        let doc = document();
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let config = App::for_tests(crate::store::Store::in_memory()).config().to_json();
        same_properties(&doc, "Config", &schema("Config"), &config, true);
        same_properties(&doc, "ConfigChange", &schema("ConfigChange"), &config, false);
        let app = App::for_tests(crate::store::Store::in_memory());
        let project = std::env::temp_dir().to_string_lossy().into_owned();
        let body = serde_json::json!({"prompt": "x", "project_path": project, "webhook_url": "http://127.0.0.1:9/x"});
        let reply = super::super::tasks::create_async(&app, &Ctx { body: Some(body), ..Ctx::default() }).unwrap();
        let task = &reply.body["task"];
        same_properties(&doc, "Task", &schema("Task"), task, true);
        let session_id = task["session_id"].as_str().unwrap();
        let session = app.store.sessions.get(session_id).unwrap().unwrap().to_api();
        same_properties(&doc, "SessionFields", &schema("SessionFields"), &session, true);
    }

    /// `schema`'s properties (and `required`, when every one is) are `value`'s keys, in every
    /// nested object the schema describes property by property.
    fn same_properties(doc: &Value, name: &str, schema: &Value, value: &Value, required: bool) {
        let schema = match schema["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).unwrap_or(&Value::Null),
            None => schema,
        };
        let Some(properties) = schema["properties"].as_object() else { return };
        let keys: BTreeSet<&str> =
            value.as_object().map_or(BTreeSet::new(), |o| o.keys().map(String::as_str).collect());
        let documented: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(documented, keys, "{name}: the documented properties against what the server writes");
        if required {
            let listed: BTreeSet<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            assert_eq!(listed, keys, "{name}: `required` against what the server always writes");
        }
        for (key, inner) in value.as_object().into_iter().flatten().filter(|(_, v)| v.is_object()) {
            same_properties(doc, &format!("{name}.{key}"), &properties[key], inner, required);
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
