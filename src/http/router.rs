//! Routing by method and path. Patterns are `/`-separated with `:name` segments; the first
//! pattern that matches wins, so literal routes go before `:id` ones. A path that matches a
//! pattern under another method is a 405 (with the methods it takes), not a 404.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Other,
}

impl Method {
    pub fn parse(name: &str) -> Method {
        match name {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Other => "OTHER",
        }
    }

    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

pub struct Router<H> {
    routes: Vec<(Method, Vec<String>, H, String)>,
}

/// The outcome of routing one request.
pub enum Match<'a, H> {
    /// The handler, the path parameters, and the route pattern (a metrics label).
    Found(&'a H, Vec<(String, String)>, &'a str),
    /// The path exists; these are the methods it takes.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    pub fn add(mut self, method: Method, pattern: &str, handler: H) -> Self {
        self.routes.push((method, segments(pattern).map(str::to_string).collect(), handler, pattern.to_string()));
        self
    }

    pub fn find(&self, method: Method, path: &str) -> Match<'_, H> {
        let parts: Vec<&str> = segments(path).collect();
        let mut allowed = BTreeSet::new();
        for (route_method, pattern, handler, label) in &self.routes {
            let Some(params) = match_pattern(pattern, &parts) else {
                continue;
            };
            if *route_method == method {
                return Match::Found(handler, params, label);
            }
            allowed.insert(*route_method);
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            Match::WrongMethod(allowed.into_iter().map(Method::name).collect())
        }
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn match_pattern(pattern: &[String], parts: &[&str]) -> Option<Vec<(String, String)>> {
    if pattern.len() != parts.len() {
        return None;
    }
    let mut params = Vec::new();
    for (want, got) in pattern.iter().zip(parts) {
        match want.strip_prefix(':') {
            Some(name) => params.push((name.to_string(), super::request::percent_decode(got))),
            None if want == got => {}
            None => return None,
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::default()
            .add(Method::Get, "/health", "health")
            .add(Method::Get, "/api/sessions/search", "search")
            .add(Method::Get, "/api/sessions/:id", "get")
            .add(Method::Delete, "/api/sessions/:id", "delete")
            .add(Method::Patch, "/api/sessions/:id/status", "status")
    }

    #[test]
    fn literal_beats_param_and_params_are_captured() {
        let r = router();
        assert!(matches!(
            r.find(Method::Get, "/api/sessions/search"),
            Match::Found(&"search", _, "/api/sessions/search")
        ));
        match r.find(Method::Get, "/api/sessions/abc-1/") {
            Match::Found(h, params, _) => {
                assert_eq!(*h, "get");
                assert_eq!(params, vec![("id".to_string(), "abc-1".to_string())]);
            }
            _ => panic!("no match"),
        }
    }

    #[test]
    fn wrong_method_is_distinguished_from_unknown_path() {
        let r = router();
        match r.find(Method::Post, "/api/sessions/x") {
            Match::WrongMethod(allowed) => assert_eq!(allowed, ["GET", "DELETE"]),
            _ => panic!("expected 405"),
        }
        assert!(matches!(r.find(Method::Get, "/api/nothing"), Match::NotFound));
        assert!(matches!(r.find(Method::Get, "/api/sessions/x/status/more"), Match::NotFound));
    }
}
