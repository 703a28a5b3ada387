//! The load tool's WebTransport client, on the crate the relay serves with: it asks
//! `/api/transport-info` where the endpoint is and which certificate hash to trust (as the
//! page does), opens a session and its one bidirectional stream, and yields what the relay
//! writes as chunks of NDJSON.

use std::pin::Pin;

use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, stream};
use protocol::TransportInfo;
use protocol::api::{Endpoint, PREFIX, TRANSPORT_INFO};
use wtransport::endpoint::endpoint_side;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, SendStream};

/// Chunks of bytes a stream delivered; an error ends it.
pub type Chunks = Pin<Box<dyn Stream<Item = anyhow::Result<Bytes>> + Send>>;

/// An open session: dropping it closes the session.
pub struct Session {
    _endpoint: wtransport::Endpoint<endpoint_side::Client>,
    _connection: Connection,
    /// The page's direction of the stream (send frames), unused by receivers but held open.
    _send: SendStream,
}

/// Opens `/api/rooms/{room}/wt?{query}` on the relay whose HTTP side is `http_base`.
pub async fn open(
    http: &reqwest::Client,
    http_base: &str,
    room: &str,
    query: &str,
) -> anyhow::Result<(Session, Chunks)> {
    let info: TransportInfo = http
        .get(format!("{http_base}{PREFIX}{TRANSPORT_INFO}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let info = info
        .webtransport
        .context("the relay does not offer WebTransport (RELAY_WT_ADDR)")?;
    let hashes = info
        .cert_hashes
        .iter()
        .map(|hex| digest(hex))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes(hashes)
        .build();
    let endpoint = wtransport::Endpoint::client(config)?;
    let url = format!("{}{}?{query}", info.url, Endpoint::Wt.path(room));
    let connection = endpoint.connect(url).await?;
    let (send, recv) = connection.open_bi().await?.await?;
    let chunks = stream::unfold(Some(recv), |recv| async move {
        let mut recv = recv?;
        let mut buffer = vec![0u8; 16 * 1024];
        match recv.read(&mut buffer).await {
            Ok(Some(n)) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(recv)))
            }
            Ok(None) => None,
            Err(err) => Some((Err(err.into()), None)),
        }
    });
    let session = Session {
        _endpoint: endpoint,
        _connection: connection,
        _send: send,
    };
    Ok((session, Box::pin(chunks)))
}

fn digest(hex: &str) -> anyhow::Result<Sha256Digest> {
    anyhow::ensure!(hex.len() == 64, "a certificate hash is 64 hex digits");
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(Sha256Digest::new(bytes))
}
