//! The `Origin` check on the WebSocket upgrade, SSE and `POST`.
//!
//! Browsers attach cookies and credentials to cross-site WebSocket and EventSource requests and
//! never apply CORS to the WebSocket handshake, so a page on another site could otherwise read
//! or post into rooms as its visitor (cross-site WebSocket hijacking). The rule:
//! - no `Origin` header: a non-browser client (curl, websocat, the load tool) — allowed;
//! - `Origin` whose host and port equal the request's `Host`: same origin — allowed;
//! - `Origin` listed in `RELAY_ALLOWED_ORIGINS` (e.g. `http://127.0.0.1:8080` for `trunk
//!   serve`, whose proxy forwards the page's origin unchanged) — allowed;
//! - anything else, `null` included — 403 `forbidden_origin`.

use axum::http::{HeaderMap, header};
use protocol::ErrorCode;

use crate::error::ApiError;

#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Normalised (lower case, no trailing slash) origins allowed besides same-origin.
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new<S: AsRef<str>>(allowed: impl IntoIterator<Item = S>) -> OriginPolicy {
        OriginPolicy {
            allowed: allowed
                .into_iter()
                .map(|o| normalise(o.as_ref()))
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().map(normalise).unwrap_or_default();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.to_ascii_lowercase());
        let same_origin = match (authority(&origin), host) {
            (Some(origin_authority), Some(host)) => origin_authority == host,
            _ => false,
        };
        self.verdict(same_origin, &origin)
    }

    /// Allowed when same-origin (by the caller's rule) or listed; refused with how to allow it.
    fn verdict(&self, same_origin: bool, origin: &str) -> Result<(), ApiError> {
        if same_origin || self.allowed.iter().any(|allowed| allowed == origin) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::ForbiddenOrigin,
                format!(
                    "origin {origin:?} is not allowed; add it to RELAY_ALLOWED_ORIGINS to permit it"
                ),
            ))
        }
    }
}

impl OriginPolicy {
    /// The same rule for a WebTransport session, whose `authority` is the relay's UDP
    /// endpoint, never the page's origin. Same origin here is the page's origin as the relay
    /// serves it: the session's host name, on the relay's HTTP port (`http_port`) or on the
    /// scheme's default port (the relay behind a proxy on 80 or 443). Another port of the
    /// same host is another site, refused unless listed in `RELAY_ALLOWED_ORIGINS`.
    pub fn check_webtransport(
        &self,
        origin: Option<&str>,
        authority: &str,
        http_port: u16,
    ) -> Result<(), ApiError> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = normalise(origin);
        let session_host = split_port(&authority.to_ascii_lowercase()).0.to_owned();
        let same_site = origin.split_once("://").is_some_and(|(scheme, rest)| {
            let (host, port) = split_port(rest);
            let default = match scheme {
                "http" => 80,
                "https" => 443,
                _ => return false,
            };
            let port = port.unwrap_or(default);
            host == session_host && !rest.contains('/') && (port == http_port || port == default)
        });
        self.verdict(same_site, &origin)
    }
}

/// `host[:port]` → (`host`, port): `[::1]:4433` → (`[::1]`, 4433).
fn split_port(authority: &str) -> (&str, Option<u16>) {
    let (host, rest) = match authority.strip_prefix('[') {
        Some(_) => match authority.find(']') {
            Some(end) => authority.split_at(end + 1),
            None => return (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => return (host, port.parse().ok()),
            None => return (authority, None),
        },
    };
    (
        host,
        rest.strip_prefix(':').and_then(|port| port.parse().ok()),
    )
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `scheme://host[:port]` → `host[:port]`, the form the `Host` header carries. Browsers omit
/// default ports from both, so they compare directly.
fn authority(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            map.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        map
    }

    #[test]
    fn requests_without_origin_are_allowed() {
        assert!(
            OriginPolicy::default()
                .check(&headers(None, "relay:3000"))
                .is_ok()
        );
    }

    #[test]
    fn same_origin_is_allowed_whatever_the_case() {
        let policy = OriginPolicy::default();
        assert!(
            policy
                .check(&headers(Some("http://Relay:3000"), "relay:3000"))
                .is_ok()
        );
        assert!(
            policy
                .check(&headers(Some("https://chat.example"), "chat.example"))
                .is_ok()
        );
    }

    #[test]
    fn other_origins_are_refused_unless_listed() {
        let policy = OriginPolicy::new(["http://127.0.0.1:8080/"]);
        let err = policy
            .check(&headers(Some("http://evil.example"), "relay:3000"))
            .expect_err("cross-site");
        assert_eq!(err.code, ErrorCode::ForbiddenOrigin);
        assert!(
            policy
                .check(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:3000"))
                .is_ok()
        );
        // A different port is a different origin.
        assert!(
            policy
                .check(&headers(Some("http://127.0.0.1:8081"), "127.0.0.1:3000"))
                .is_err()
        );
    }

    #[test]
    fn opaque_and_malformed_origins_are_refused() {
        let policy = OriginPolicy::default();
        assert!(policy.check(&headers(Some("null"), "null")).is_err());
        assert!(
            policy
                .check(&headers(Some("relay:3000"), "relay:3000"))
                .is_err()
        );
    }

    #[test]
    fn a_webtransport_session_is_same_origin_with_the_page_the_relay_serves() {
        let policy = OriginPolicy::new(["http://dev.example:8080"]);
        let check = |origin| policy.check_webtransport(Some(origin), "127.0.0.1:4433", 3000);
        assert!(
            check("http://127.0.0.1:3000").is_ok(),
            "the relay's own page"
        );
        assert!(check("https://127.0.0.1").is_ok(), "behind a proxy on 443");
        assert!(check("http://127.0.0.1").is_ok(), "behind a proxy on 80");
        assert!(
            check("http://127.0.0.1:8080").is_err(),
            "another port of the host"
        );
        assert!(check("https://evil.example").is_err());
        assert!(check("null").is_err());
        assert!(
            policy
                .check_webtransport(Some("http://dev.example:8080"), "127.0.0.1:4433", 3000)
                .is_ok(),
            "listed"
        );
        assert!(
            policy
                .check_webtransport(None, "127.0.0.1:4433", 3000)
                .is_ok()
        );
        assert!(
            policy
                .check_webtransport(Some("http://[::1]:3000"), "[::1]:4433", 3000)
                .is_ok()
        );
    }
}
