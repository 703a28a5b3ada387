//! The `Host` allow-list, against DNS rebinding.
//!
//! A page on `attacker.example` can make its own name resolve to 127.0.0.1; the browser then
//! treats a developer's local relay as same-origin with the attacker's page (the `Origin`
//! check passes: both say `attacker.example`). Only the `Host` header gives it away. So:
//! - `RELAY_ALLOWED_HOSTS` set: exactly those `host[:port]` entries (`*` for any; an entry
//!   without a port matches any port);
//! - unset, listening on a loopback address: only loopback names (`localhost`, `127.0.0.1`,
//!   `[::1]`), any port — what a browser on the same machine sends;
//! - unset, listening on any other address: any host. A public relay is reached under names
//!   the relay cannot know (its DNS name, a proxy's, a container's), and rebinding attacks
//!   target what the victim's browser can reach but the attacker cannot, which a public
//!   relay is not. Deployers who know their names should list them.
//!
//! A request without `Host` (HTTP/1.0 tools) is not a browser and is let through. Any other
//! `Host` gets 421 `invalid_host`, on every path including the page (the router's
//! `check_host` layer applies this policy).

use std::net::SocketAddr;

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    Any,
    /// Allowed `(host, port)` pairs, lower case; no port means any.
    Only(Vec<(String, Option<u16>)>),
}

impl HostPolicy {
    pub fn new(allowed: &[String], listening: SocketAddr) -> HostPolicy {
        let entries: Vec<&str> = allowed
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .collect();
        if entries.contains(&"*") || (entries.is_empty() && !listening.ip().is_loopback()) {
            return HostPolicy::Any;
        }
        let entries = if entries.is_empty() {
            LOOPBACK_NAMES.to_vec()
        } else {
            entries
        };
        HostPolicy::Only(
            entries
                .into_iter()
                .filter_map(|entry| {
                    let entry = entry.to_ascii_lowercase();
                    split(&entry).map(|(host, port)| (host.to_owned(), port))
                })
                .collect(),
        )
    }

    pub fn allows(&self, host: &str) -> bool {
        let HostPolicy::Only(allowed) = self else {
            return true;
        };
        // Compared without changing case in a copy: this runs for every request.
        let Some((name, port)) = split(host.trim()) else {
            return false;
        };
        allowed.iter().any(|(allowed, allowed_port)| {
            allowed.eq_ignore_ascii_case(name) && allowed_port.is_none_or(|p| Some(p) == port)
        })
    }
}

/// `host[:port]` → (host, port), with IPv6 literals in brackets; `None` when malformed.
fn split(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        (&authority[..end], authority[end..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], listening: &str) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(&allowed, listening.parse().expect("an address"))
    }

    #[test]
    fn a_loopback_relay_serves_loopback_names_on_any_port() {
        let policy = policy(&[], "127.0.0.1:3000");
        for host in [
            "localhost",
            "localhost:3000",
            "127.0.0.1:8080",
            "[::1]:3000",
            "LOCALHOST:1",
        ] {
            assert!(policy.allows(host), "{host}");
        }
        for host in [
            "attacker.example:3000",
            "127.0.0.2:3000",
            "localhost.attacker.example",
            "",
            "[::1",
        ] {
            assert!(!policy.allows(host), "{host}");
        }
    }

    #[test]
    fn a_public_relay_serves_any_host_unless_told_otherwise() {
        assert_eq!(policy(&[], "0.0.0.0:3000"), HostPolicy::Any);
        assert_eq!(policy(&["*"], "127.0.0.1:3000"), HostPolicy::Any);
        let listed = policy(&["chat.example", "relay.internal:3000"], "0.0.0.0:3000");
        assert!(listed.allows("chat.example"));
        assert!(listed.allows("Chat.Example:443"));
        assert!(listed.allows("relay.internal:3000"));
        assert!(!listed.allows("relay.internal:3001"));
        assert!(!listed.allows("localhost"));
    }
}
