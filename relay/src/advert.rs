//! What pages are told about the WebTransport endpoint (`GET /api/transport-info`): where it
//! is and which certificate hashes to trust; and the handle that closes the endpoint when the
//! relay stops. Kept apart from `webtransport` (which serves the endpoint) so that the
//! relay's state can hold it without depending on the server.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protocol::WebTransportInfo;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wtransport::{Endpoint, VarInt};

use crate::sync::{lock, read, write};

/// The WebTransport server endpoint.
pub type Server = Endpoint<wtransport::endpoint::endpoint_side::Server>;

/// How long a stopping relay waits for its QUIC close packets to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub struct Advert {
    port: u16,
    /// Lowercase hex SHA-256 of the self-signed certificates a handshake may meet (the
    /// current one, and the one before it around a renewal); empty for a trusted one.
    hashes: RwLock<Vec<String>>,
    endpoint: Arc<Server>,
    /// Stops the accept loop, before the endpoint is closed.
    stop: CancellationToken,
    /// The accept loop, which must have stopped before the endpoint closes (wtransport's
    /// `accept` panics on a closed endpoint).
    accepting: Mutex<Option<JoinHandle<()>>>,
}

impl Advert {
    pub fn new(
        port: u16,
        hashes: Vec<String>,
        endpoint: Arc<Server>,
        stop: CancellationToken,
    ) -> Advert {
        Advert {
            port,
            hashes: RwLock::new(hashes),
            endpoint,
            stop,
            accepting: Mutex::new(None),
        }
    }

    /// The task accepting connections, to be stopped by [`Advert::close`].
    pub fn accepting(&self, task: JoinHandle<()>) {
        *lock(&self.accepting) = Some(task);
    }

    /// A new self-signed certificate is about to be presented: its hash goes first, the
    /// previous one stays listed for pages that asked just before.
    pub fn renewed(&self, hash: String) {
        let mut hashes = write(&self.hashes);
        let previous = hashes.first().cloned();
        *hashes = std::iter::once(hash).chain(previous).collect();
    }

    /// Closes the endpoint once the sessions are done (the relay is stopping): the accept
    /// loop stops, then the close goes out, within a bound.
    pub async fn close(&self) {
        self.stop.cancel();
        let accepting = lock(&self.accepting).take();
        if let Some(task) = accepting {
            let _ = task.await;
        }
        self.endpoint.close(VarInt::from_u32(0), b"relay stopped");
        let _ = tokio::time::timeout(CLOSE_WAIT, self.endpoint.wait_idle()).await;
    }

    /// The endpoint's UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The info for a page that reached the relay as `host` (its `Host` header): the same host
    /// name, the endpoint's port.
    pub fn info(&self, host: Option<&str>) -> WebTransportInfo {
        let host = host.map(host_name).unwrap_or("127.0.0.1");
        WebTransportInfo {
            url: format!("https://{host}:{}", self.port),
            cert_hashes: read(&self.hashes).clone(),
        }
    }
}

/// The host part of a `Host` header (`[::1]:3000` → `[::1]`, `example.org:80` → `example.org`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_drops_the_port_only() {
        assert_eq!(host_name("127.0.0.1:3000"), "127.0.0.1");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("chat.example"), "chat.example");
    }
}
