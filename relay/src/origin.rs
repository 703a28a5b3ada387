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
        if same_origin || self.allowed.contains(&origin) {
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
    /// endpoint: another port of the host that served the page. So "same origin" here is the
    /// same host name, any port — the host the operator runs the relay on.
    pub fn check_webtransport(
        &self,
        origin: Option<&str>,
        authority: &str,
    ) -> Result<(), ApiError> {
        let Some(origin) = origin else {
            return Ok(());
        };
        let origin = normalise(origin);
        let same_host = authority_host(&origin)
            .is_some_and(|host| host == authority_host_of(&authority.to_ascii_lowercase()));
        if same_host || self.allowed.contains(&origin) {
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

/// The host name of an origin, without its port.
fn authority_host(origin: &str) -> Option<String> {
    authority(origin).map(authority_host_of)
}

/// `host[:port]` → `host` (`[::1]:4433` → `[::1]`).
fn authority_host_of(authority: &str) -> String {
    let host = if authority.starts_with('[') {
        authority
            .find(']')
            .map_or(authority, |end| &authority[..=end])
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    };
    host.to_owned()
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
}
