//! Budgets per client (an address, or an IPv6 /64; see `client`), so that one client can
//! never spend what others need:
//! - open connections (`RELAY_MAX_CONNECTIONS_PER_CLIENT`): WebSockets, streams and pending
//!   long polls together;
//! - publishing (`RELAY_CLIENT_RATE` / `RELAY_CLIENT_BURST`): one budget shared by all of a
//!   client's WebSockets and `POST`s, on top of each sender's own (`RELAY_RATE`: per
//!   WebSocket, and per client for `POST`, which has no connection to hang a bucket on);
//! - requests (`RELAY_REQUEST_RATE` / `RELAY_REQUEST_BURST`): every API request, short polls
//!   included;
//! - new rooms (`RELAY_NEW_ROOMS_PER_CLIENT` a minute).
//!
//! Rate tables forget the least recently seen client when full (`rate::MAX_TRACKED_CLIENTS`);
//! connection counts hold only clients with a connection open, so they are bounded by the
//! connection limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::client::ClientKey;
use crate::config::Config;
use crate::rate::{KeyedLimiter, RateLimit};
use crate::sync::lock;

#[derive(Debug)]
pub struct Budgets {
    /// `POST` publishing per client, at the per-sender rate (`RELAY_RATE`).
    pub post: KeyedLimiter<ClientKey>,
    /// All publishing per client (`RELAY_CLIENT_RATE`).
    pub publish: KeyedLimiter<ClientKey>,
    /// Every API request per client (`RELAY_REQUEST_RATE`).
    pub requests: KeyedLimiter<ClientKey>,
    /// Rooms a client may bring into being (`RELAY_NEW_ROOMS_PER_CLIENT` a minute).
    pub new_rooms: KeyedLimiter<ClientKey>,
    connections: Mutex<HashMap<ClientKey, usize>>,
    max_connections: usize,
}

impl Budgets {
    pub fn new(config: &Config) -> Arc<Budgets> {
        let per_minute = config.new_rooms_per_client as f64;
        Arc::new(Budgets {
            post: KeyedLimiter::new(config.rate_limit()),
            publish: KeyedLimiter::new(RateLimit {
                per_second: config.client_rate,
                burst: config.client_burst,
            }),
            requests: KeyedLimiter::new(RateLimit {
                per_second: config.request_rate,
                burst: config.request_burst,
            }),
            new_rooms: KeyedLimiter::new(RateLimit {
                per_second: per_minute / 60.0,
                burst: per_minute,
            }),
            connections: Mutex::new(HashMap::new()),
            max_connections: config.max_connections_per_client,
        })
    }

    /// Counts one more open connection for `client`, unless it has its maximum already.
    pub fn open_connection(self: &Arc<Budgets>, client: ClientKey) -> Option<ClientConnection> {
        let mut counts = lock(&self.connections);
        let count = counts.entry(client).or_default();
        if *count >= self.max_connections {
            return None;
        }
        *count += 1;
        Some(ClientConnection {
            budgets: self.clone(),
            client,
        })
    }

    #[cfg(test)]
    fn open(&self, client: ClientKey) -> usize {
        lock(&self.connections).get(&client).copied().unwrap_or(0)
    }
}

/// One open connection counted against its client; dropping it gives the place back.
#[derive(Debug)]
pub struct ClientConnection {
    budgets: Arc<Budgets>,
    client: ClientKey,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut counts = lock(&self.budgets.connections);
        if let Some(count) = counts.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_client_and_given_back_on_drop() {
        let mut config = Config::defaults();
        config.max_connections_per_client = 2;
        let budgets = Budgets::new(&config);
        let a = ClientKey::of([192, 0, 2, 1].into());
        let b = ClientKey::of([192, 0, 2, 2].into());
        let first = budgets.open_connection(a).expect("1 of 2");
        let _second = budgets.open_connection(a).expect("2 of 2");
        assert!(budgets.open_connection(a).is_none(), "a is at its cap");
        assert!(budgets.open_connection(b).is_some(), "b is not");
        drop(first);
        assert_eq!(budgets.open(a), 1);
        assert!(
            budgets.open_connection(a).is_some(),
            "a place was given back"
        );
        assert_eq!(budgets.open(b), 0, "b's connection was dropped at once");
    }
}
