//! Requests a web page made the browser send. ccs is an API for programs and has no browser UI,
//! so a page the user visits must not be able to drive it: a page can POST to
//! `http://localhost:5546` without any preflight, and with DNS rebinding it can even read the
//! answers. Refused with 403, before routing:
//! - an `Origin` that is not the server itself (`null` included), or `Sec-Fetch-Site:
//!   cross-site`/`same-site` (what browsers add to every request a page makes);
//! - without API keys (a loopback-only server), a `Host` that is not a loopback name or address:
//!   a rebinding page's requests carry its own name.
//!
//! Programs (curl, SDKs, cron jobs) send no `Origin` and address the server as they reach it.

use super::error::ApiError;

/// The browser-related headers of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headers<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
}

pub fn check(headers: Headers<'_>, keys_configured: bool) -> Result<(), ApiError> {
    if let Some(site) = headers.sec_fetch_site.map(str::trim) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Err(refused(format!(
                "the browser says this request comes from another site (Sec-Fetch-Site: {site})"
            )));
        }
    }
    if let Some(origin) = headers.origin.map(str::trim) {
        let authority = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
        let same = authority.zip(headers.host).is_some_and(|(a, host)| a.eq_ignore_ascii_case(host.trim()));
        if !same {
            return Err(refused(format!(
                "Origin {} is not this server ({})",
                super::target::shown(origin),
                super::target::shown(headers.host.unwrap_or("no Host"))
            )));
        }
    }
    match headers.host {
        Some(host) if !keys_configured && !is_loopback_host(host) => Err(ApiError::new(
            403,
            format!(
                "the Host header {} is not this machine: without API keys ccs answers only requests addressed \
                 to localhost or a loopback address (set auth.apiKeys to serve other names)",
                super::target::shown(host)
            ),
        )),
        _ => Ok(()),
    }
}

fn refused(why: String) -> ApiError {
    ApiError::new(403, format!("requests made by web pages are refused: {why}; ccs is an API for programs"))
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return crate::config::is_loopback(host);
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(inside, _)| inside),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.ends_with(".localhost") || crate::config::is_loopback(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(host: Option<&str>, origin: Option<&str>, site: Option<&str>, keys: bool) -> u16 {
        check(Headers { host, origin, sec_fetch_site: site }, keys).map_or_else(|e| e.status, |()| 200)
    }

    #[test]
    fn programs_pass_and_pages_of_other_sites_do_not() {
        assert_eq!(status(Some("127.0.0.1:5546"), None, None, false), 200, "curl");
        assert_eq!(status(None, None, None, false), 200, "HTTP/1.0 without Host");
        assert_eq!(status(Some("localhost:5546"), Some("http://localhost:5546"), Some("same-origin"), false), 200);
        assert_eq!(status(Some("localhost:5546"), Some("https://evil.example"), None, false), 403);
        assert_eq!(status(Some("localhost:5546"), Some("null"), None, false), 403);
        assert_eq!(status(Some("localhost:5546"), None, Some("cross-site"), false), 403);
        assert_eq!(status(Some("localhost:5546"), None, Some("same-site"), true), 403, "keys or not");
    }

    #[test]
    fn without_keys_only_loopback_hosts_are_answered() {
        for host in [
            "localhost",
            "localhost:5546",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1:5546",
            "127.1.2.3",
            "[::1]:5546",
            "::1",
        ] {
            assert_eq!(status(Some(host), None, None, false), 200, "{host}");
        }
        for host in ["rebind.evil.example:5546", "evil.example", "10.0.0.1:5546", "[::2]:1", "localhost.evil.example"] {
            assert_eq!(status(Some(host), None, None, false), 403, "{host}");
            assert_eq!(status(Some(host), None, None, true), 200, "with keys the key protects: {host}");
        }
    }
}
