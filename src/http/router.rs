//! Routing by method and canonical path (`target::Target`, already decoded: nothing here decodes
//! again). Patterns are `/`-separated with `:name` segments. A path is the resource of its most
//! specific matching pattern, a literal segment beating a `:name` one whatever the order the
//! routes were added in: `/api/sessions/search` is the search, never the session "search". A
//! method that resource lacks is a 405 with the methods it takes, not a 404. Every route needs
//! a key when keys are set, but those added with `public`.

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

    /// The method's name; every method ccs does not know is `other` (a fixed set of metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Other => "other",
        }
    }

    pub fn has_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

pub struct Router<H> {
    routes: Vec<Route<H>>,
}

pub struct Route<H> {
    method: Method,
    segments: Vec<String>,
    pub handler: H,
    /// The pattern as written: a metrics label.
    pub pattern: String,
    /// Served without a key.
    pub public: bool,
}

/// The outcome of routing one request.
pub enum Match<'a, H> {
    /// The route and the path parameters.
    Found(&'a Route<H>, Vec<(String, String)>),
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
    pub fn add(self, method: Method, pattern: &str, handler: H) -> Self {
        self.push(method, pattern, handler, false)
    }

    /// A route anyone may call, key or not (only `/health`).
    pub fn public(self, method: Method, pattern: &str, handler: H) -> Self {
        self.push(method, pattern, handler, true)
    }

    fn push(mut self, method: Method, pattern: &str, handler: H, public: bool) -> Self {
        let segments = segments(pattern).map(str::to_string).collect();
        self.routes.push(Route { method, segments, handler, pattern: pattern.to_string(), public });
        self
    }

    /// Every route as (method, pattern), in the order they were added: the tests hold the OpenAPI
    /// document (`api::openapi`) to this list.
    #[cfg(test)]
    pub fn routes(&self) -> impl Iterator<Item = (Method, &str)> {
        self.routes.iter().map(|route| (route.method, route.pattern.as_str()))
    }

    /// The route for `method` on `path`; HEAD is served by the GET route (without its body).
    pub fn find(&self, method: Method, path: &str) -> Match<'_, H> {
        let method = if method == Method::Head { Method::Get } else { method };
        let parts: Vec<&str> = segments(path).collect();
        let matches = |route: &&Route<H>| match_pattern(&route.segments, &parts).is_some();
        // Only the routes of the most specific pattern answer: they are the path's resource.
        let Some(resource) = self.routes.iter().filter(matches).map(Route::shape).min() else {
            return Match::NotFound;
        };
        let mut allowed = BTreeSet::new();
        for route in self.routes.iter().filter(|route| route.shape() == resource) {
            let Some(params) = match_pattern(&route.segments, &parts) else {
                continue;
            };
            if route.method == method {
                return Match::Found(route, params);
            }
            allowed.insert(route.method);
        }
        Match::WrongMethod(allowed.into_iter().map(Method::name).collect())
    }
}

impl<H> Route<H> {
    /// Which segments are `:params`: of two patterns that match a path, the smaller shape is the
    /// more specific (a literal segment, `false`, sorts before a parameter).
    fn shape(&self) -> Vec<bool> {
        self.segments.iter().map(|s| s.starts_with(':')).collect()
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
            Some(name) => params.push((name.to_string(), got.to_string())),
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
            .public(Method::Get, "/health", "health")
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
            Match::Found(Route { handler: "search", public: false, .. }, _)
        ));
        match r.find(Method::Get, "/api/sessions/abc-1") {
            Match::Found(route, params) => {
                assert_eq!((route.handler, route.pattern.as_str()), ("get", "/api/sessions/:id"));
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

    #[test]
    fn params_are_taken_as_given_and_only_public_routes_say_so() {
        let r = router();
        match r.find(Method::Get, "/api/sessions/%41") {
            Match::Found(route, params) => {
                assert!(!route.public);
                assert_eq!(params[0].1, "%41", "the target was decoded once already");
            }
            _ => panic!("no match"),
        }
        assert!(matches!(r.find(Method::Get, "/health"), Match::Found(Route { public: true, .. }, _)));
        assert!(matches!(r.find(Method::Head, "/health"), Match::Found(Route { handler: "health", .. }, _)));
    }

    #[test]
    fn a_literal_path_is_a_resource_of_its_own() {
        // DELETE /api/sessions/:id does not make `search` deletable: 405 saying GET, not DELETE.
        match router().find(Method::Delete, "/api/sessions/search") {
            Match::WrongMethod(allowed) => assert_eq!(allowed, ["GET"]),
            _ => panic!("expected 405"),
        }
        let param_first = Router::default().add(Method::Get, "/a/:id", "param").add(Method::Get, "/a/x", "literal");
        assert!(matches!(param_first.find(Method::Get, "/a/x"), Match::Found(Route { handler: "literal", .. }, _)));
        assert!(matches!(param_first.find(Method::Get, "/a/y"), Match::Found(Route { handler: "param", .. }, _)));
    }

    #[test]
    fn routes_are_listed_as_written_in_order() {
        let r = router();
        let listed: Vec<(Method, &str)> = r.routes().collect();
        assert_eq!(listed.len(), 5);
        assert_eq!(listed[0], (Method::Get, "/health"));
        assert_eq!(listed[4], (Method::Patch, "/api/sessions/:id/status"));
    }
}
