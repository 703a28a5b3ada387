//! Who a request comes from: the client address every per-client budget is keyed by.
//!
//! - Directly connected, the client is the socket's peer.
//! - Behind a proxy listed in `RELAY_TRUSTED_PROXIES`, the client is the rightmost address of
//!   `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
//!   saw, so everything left of that can be forged by the client), else the same from the
//!   `for=` parameters of `Forwarded`. A peer that is not trusted cannot choose its address.
//! - IPv6 clients are counted per /64: one subscriber usually gets a whole /64, and rotating
//!   through it must not multiply anyone's budget. IPv4-mapped IPv6 addresses are IPv4.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// A client as the budgets see it: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(addr: IpAddr) -> ClientKey {
        let addr = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
            v4 => v4,
        };
        ClientKey(addr)
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(prefix) => write!(f, "{prefix}/64"),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `RELAY_TRUSTED_PROXIES` entries: CIDRs (`10.0.0.0/8`) or single addresses.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for entry in entries
            .iter()
            .map(|e| e.as_ref().trim())
            .filter(|e| !e.is_empty())
        {
            let network = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{entry:?} is not an address or a CIDR like 10.0.0.0/8"))?;
            networks.push(network);
        }
        Ok(TrustedProxies { networks })
    }

    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|network| network.contains(&addr))
    }

    /// The client a request comes from.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> ClientKey {
        if !self.trusts(peer.ip()) {
            return ClientKey::of(peer.ip());
        }
        let forwarded = self
            .rightmost_untrusted(x_forwarded_for(headers))
            .or_else(|| self.rightmost_untrusted(forwarded_for(headers)));
        ClientKey::of(forwarded.unwrap_or(peer.ip()))
    }

    /// Walks a hop list from the right (nearest hop first) past trusted proxies. A hop that
    /// does not parse ends the walk: what lies left of it cannot be trusted either.
    fn rightmost_untrusted(&self, hops: Vec<&str>) -> Option<IpAddr> {
        for hop in hops.into_iter().rev() {
            let addr = parse_hop(hop)?;
            if !self.trusts(addr) {
                return Some(addr);
            }
        }
        None
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
}

/// Every hop of every `X-Forwarded-For` header, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    header_values(headers, &HeaderName::from_static("x-forwarded-for"))
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect()
}

/// Every `for=` of every `Forwarded` header (RFC 7239), left to right.
fn forwarded_for(headers: &HeaderMap) -> Vec<&str> {
    header_values(headers, &HeaderName::from_static("forwarded"))
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then_some(value.trim())
            })
        })
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
/// `"[2001:db8::1]"` (quoted, in `Forwarded`), or a bare IPv6 address.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let inner = hop.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn peer(addr: &str) -> SocketAddr {
        SocketAddr::new(addr.parse().expect("an address"), 40000)
    }

    fn key(addr: &str) -> ClientKey {
        ClientKey::of(addr.parse().expect("an address"))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).expect("parses");
        let forged = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            trusted.client(peer("203.0.113.9"), &forged),
            key("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client(peer("10.0.0.1"), &forged),
            key("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.1"]).expect("parses");
        // The client forged "6.6.6.6"; the first proxy appended what it saw (198.51.100.7);
        // a second, trusted proxy appended the first.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(
            trusted.client(peer("192.168.1.1"), &chain),
            key("198.51.100.7")
        );
        // Several headers are one list.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            trusted.client(peer("10.0.0.2"), &split),
            key("198.51.100.7")
        );
        // No header, or only trusted hops: the proxy itself.
        assert_eq!(
            trusted.client(peer("10.0.0.2"), &HeaderMap::new()),
            key("10.0.0.2")
        );
        let inner = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(trusted.client(peer("10.0.0.2"), &inner), key("10.0.0.2"));
        // Garbage stops the walk rather than being skipped over.
        let garbage = headers(&[("x-forwarded-for", "6.6.6.6, nonsense, 10.1.1.1")]);
        assert_eq!(trusted.client(peer("10.0.0.2"), &garbage), key("10.0.0.2"));
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let trusted = TrustedProxies::parse(&["127.0.0.1"]).expect("parses");
        let standard = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=127.0.0.1",
        )]);
        assert_eq!(
            trusted.client(peer("127.0.0.1"), &standard),
            key("2001:db8:cafe::1")
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn proxies_parse_as_cidrs_or_addresses() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8", "::1", " 192.168.0.1 "]).is_ok());
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal"]).is_err());
    }
}
