//! A WebTransport client of the relay, on the same crate the relay serves with: it asks
//! `/api/transport-info` where the endpoint is and which certificate hash to trust, as the
//! page does, opens a session and its one bidirectional stream, and reads NDJSON lines.

use bytes::Bytes;
use futures_util::stream;
use protocol::TransportInfo;
use protocol::api::{Endpoint, PREFIX, TRANSPORT_INFO};
use wtransport::endpoint::ConnectOptions;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, SendStream};

use super::{Client, Ndjson, http, within};

pub struct Wt {
    _endpoint: wtransport::Endpoint<wtransport::endpoint::endpoint_side::Client>,
    _connection: Connection,
    send: SendStream,
    pub lines: Ndjson,
}

/// What `/api/transport-info` says.
pub async fn transport_info(relay: &Client) -> TransportInfo {
    let url = relay.url(&format!("{PREFIX}{TRANSPORT_INFO}"));
    let response = within("transport-info", http().get(url).send())
        .await
        .expect("transport-info answers");
    assert!(response.status().is_success());
    response.json().await.expect("transport-info is JSON")
}

fn digest(hex: &str) -> Sha256Digest {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    Sha256Digest::new(bytes.try_into().expect("32 bytes"))
}

/// Opens a session at `/api/rooms/{room}/wt?{query}` and nothing more (no stream): what the
/// relay must not wait for forever.
pub async fn session_only(relay: &Client, room: &str, query: &str) -> Connection {
    let info = transport_info(relay)
        .await
        .webtransport
        .expect("webtransport is on");
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes(info.cert_hashes.iter().map(|h| digest(h)))
        .build();
    let endpoint = wtransport::Endpoint::client(config).expect("a client endpoint");
    let url = format!("{}{}?{query}", info.url, Endpoint::Wt.path(room));
    within("the WebTransport session", endpoint.connect(url))
        .await
        .expect("the session opens")
}

impl Wt {
    /// Opens a session at `/api/rooms/{room}/wt?{query}` with `origin` (none: a non-browser
    /// client); `Err` with the reason when the session is refused.
    pub async fn connect(
        relay: &Client,
        room: &str,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Wt, String> {
        Wt::connect_trusting(relay, room, query, origin, |hashes| hashes.to_vec()).await
    }

    /// As `connect`, trusting only the certificate hashes `trust` picks from those the relay
    /// advertises.
    pub async fn connect_trusting(
        relay: &Client,
        room: &str,
        query: &str,
        origin: Option<&str>,
        trust: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Result<Wt, String> {
        Wt::open(
            relay,
            &format!("{}?{query}", Endpoint::Wt.path(room)),
            origin,
            trust,
        )
        .await
    }

    /// Opens a session at any path (and query) of the endpoint, as a non-browser client.
    pub async fn connect_path(
        relay: &Client,
        path_and_query: &str,
        origin: Option<&str>,
    ) -> Result<Wt, String> {
        Wt::open(relay, path_and_query, origin, |hashes| hashes.to_vec()).await
    }

    async fn open(
        relay: &Client,
        path_and_query: &str,
        origin: Option<&str>,
        trust: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Result<Wt, String> {
        let info = transport_info(relay)
            .await
            .webtransport
            .expect("webtransport is on");
        let trusted = trust(&info.cert_hashes);
        let config = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes(trusted.iter().map(|h| digest(h)))
            .build();
        let endpoint = wtransport::Endpoint::client(config).expect("a client endpoint");
        let url = format!("{}{path_and_query}", info.url);
        let mut options = ConnectOptions::builder(url);
        if let Some(origin) = origin {
            options = options.add_header("origin", origin);
        }
        let connection = within(
            "the WebTransport session",
            endpoint.connect(options.build()),
        )
        .await
        .map_err(|err| err.to_string())?;
        let opening = within("a bidirectional stream", connection.open_bi())
            .await
            .map_err(|err| err.to_string())?;
        let (send, recv) = within("the stream", opening)
            .await
            .map_err(|err| err.to_string())?;
        let chunks = stream::unfold(Some(recv), |recv| async move {
            let mut recv = recv?;
            let mut buffer = vec![0u8; 16 * 1024];
            match recv.read(&mut buffer).await {
                Ok(Some(n)) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), Some(recv)))
                }
                Ok(None) => None,
                Err(err) => Some((Err(err.to_string()), None)),
            }
        });
        Ok(Wt {
            _endpoint: endpoint,
            _connection: connection,
            send,
            lines: Ndjson::over(Box::pin(chunks)),
        })
    }

    /// Writes bytes as they are (no line end added).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        within("bytes to be written", self.send.write_all(bytes))
            .await
            .expect("the bytes are written");
    }

    /// Writes one line (a send frame).
    pub async fn send_line(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        within("a line to be written", self.send.write_all(&bytes))
            .await
            .expect("the line is written");
    }
}
