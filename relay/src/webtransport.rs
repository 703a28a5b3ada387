//! The WebTransport endpoint (`RELAY_WT_ADDR`): HTTP/3 over QUIC on a UDP port, beside the
//! HTTP listener. Sessions are served by `transport::wt`; this module binds the port, admits
//! connections, and owns the certificate.
//!
//! Certificate: `RELAY_WT_CERT` + `RELAY_WT_KEY` (one a browser trusts), or else a
//! self-signed ECDSA P-256 certificate valid for `RELAY_WT_CERT_VALIDITY` (at most 14 days,
//! from now: browsers accept a self-signed certificate only through
//! `serverCertificateHashes`, and only under those terms). A self-signed certificate is
//! replaced after two thirds of its validity by reloading the endpoint's configuration: the
//! socket and the sessions already open are kept; new handshakes get the new certificate,
//! and `/api/transport-info` the new hash.
//!
//! Budgets: QUIC's own limits are set low (a session needs one bidirectional stream, and
//! HTTP/3 three unidirectional ones), so one client cannot make the relay buffer much; past
//! `RELAY_MAX_CONNECTIONS` QUIC connections, new ones are refused before their handshake.
//! Sessions are then admitted like every stream (`RELAY_MAX_CONNECTIONS_PER_CLIENT`,
//! `RELAY_ACCEPT_RATE`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use wtransport::config::QuicTransportConfig;
use wtransport::quinn::VarInt as QuicVarInt;
use wtransport::quinn::crypto::HandshakeTokenKey;
use wtransport::{Endpoint, Identity, ServerConfig};

use crate::client::ClientKey;
use crate::config::Config;
use crate::state::AppState;

use crate::advert::{Advert, Server};

/// How often the renewal task compares the wall clock with the renewal's due time.
const CLOCK_CHECK: Duration = Duration::from_secs(60);

/// Names the self-signed certificate is made for. A browser that trusts it by hash does not
/// check them; other clients may.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Bidirectional streams a client may have open on one connection: the session's CONNECT
/// and the one stream it uses, with room for a reconnecting page's overlap.
const MAX_BIDI_STREAMS: u32 = 4;
/// Unidirectional streams: HTTP/3's control stream and QPACK's two, and a little room.
const MAX_UNI_STREAMS: u32 = 8;
/// Bytes a client may have in flight to the relay on one stream, and on its connection:
/// send frames are small (`RELAY_MAX_FRAME_BYTES` bounds a line anyway).
const STREAM_RECEIVE_WINDOW: u32 = 64 * 1024;
const RECEIVE_WINDOW: u32 = 256 * 1024;
/// Bytes the relay keeps queued for one connection: past this, writes wait, and a reader
/// that takes nothing for `RELAY_SEND_TIMEOUT` is let go.
const SEND_WINDOW: u64 = 256 * 1024;
/// Datagrams a client may have queued at the relay: the relay reads none, and QUIC datagrams
/// have no flow control, so quinn's default (1.25 MB per connection) would be memory any
/// client could fill. Kept (not disabled) because browsers expect HTTP/3 datagram support.
const DATAGRAM_BUFFER: usize = 2 * 1024;
/// QUIC keep-alive, so that NATs keep an idle session's mapping.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Binds the endpoint and starts serving it: accepting sessions until `shutdown`, and (for a
/// self-signed certificate) renewing the certificate.
pub async fn start(
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> io::Result<Arc<Advert>> {
    let config = state.config.clone();
    let (identity, self_signed) = match (&config.wt_cert, &config.wt_key) {
        (Some(cert), Some(key)) => (
            Identity::load_pemfiles(cert, key)
                .await
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?,
            false,
        ),
        _ => (self_signed(config.wt_cert_validity)?, true),
    };
    let token_key = token_key()?;
    let endpoint = Endpoint::server(server_config(addr, &config, &identity, &token_key))?;
    let bound = endpoint.local_addr()?;
    let endpoint = Arc::new(endpoint);
    let stop = CancellationToken::new();
    let hashes = if self_signed {
        vec![hash(&identity)]
    } else {
        Vec::new()
    };
    let advert = Arc::new(Advert::new(
        bound.port(),
        hashes,
        endpoint.clone(),
        stop.clone(),
    ));
    tracing::info!(addr = %bound, self_signed, "webtransport listening");
    if self_signed {
        tokio::spawn(renew(
            endpoint.clone(),
            addr,
            state.clone(),
            advert.clone(),
            stop.clone(),
            token_key,
        ));
    }
    advert.accepting(tokio::spawn(accept(endpoint, state, shutdown, stop)));
    Ok(advert)
}

/// Accepts connections; after `shutdown`, refuses new ones (open sessions end in the drain).
/// Each connection's address is validated first (Retry), then spends a request token and
/// counts against its `RELAY_MAX_CONNECTIONS_PER_CLIENT` from before its handshake, so that
/// one address can neither hold every handshake slot nor loop through handshakes.
async fn accept(
    endpoint: Arc<Server>,
    state: AppState,
    shutdown: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        // Stops before the endpoint closes (`accept` on a closed endpoint panics).
        let incoming = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            incoming = endpoint.accept() => incoming,
        };
        // An address is only charged (or counted in the metrics) once it has shown that it
        // receives at it (a Retry round trip, RFC 9000 §8.1): otherwise spoofed Initials from
        // invented addresses would fill every budget below without a real client behind them.
        if !incoming.remote_address_validated() {
            incoming.retry();
            continue;
        }
        if shutdown.is_cancelled() || endpoint.open_connections() >= state.config.max_connections {
            state
                .metrics
                .rejected(crate::metrics::reason::WEBTRANSPORT_FULL);
            incoming.refuse();
            continue;
        }
        let client = ClientKey::of(incoming.remote_address().ip());
        // Every connection spends a token of the address's request budget before its
        // handshake (the signature is the costly part), as every HTTP request does at the
        // gate; what the client does not get here it cannot be told on a session, so it is
        // refused at the QUIC level.
        if state
            .budgets
            .requests
            .take(client, std::time::Instant::now())
            .is_err()
        {
            state
                .metrics
                .rejected(protocol::ErrorCode::RateLimited.as_str());
            incoming.refuse();
            continue;
        }
        let Some(handshake) = state.budgets.open_connection(client) else {
            state
                .metrics
                .rejected(protocol::ErrorCode::TooManyConnections.as_str());
            incoming.refuse();
            continue;
        };
        state.sessions.spawn(crate::transport::wt::session(
            state.clone(),
            incoming,
            client,
            handshake,
        ));
    }
}

/// Replaces the self-signed certificate after two thirds of its validity, for as long as the
/// relay runs. The new hash is advertised (beside the old one) before the endpoint presents
/// the new certificate, so that a page that asks in between trusts either.
async fn renew(
    endpoint: Arc<Server>,
    addr: SocketAddr,
    state: AppState,
    advert: Arc<Advert>,
    stop: CancellationToken,
    token_key: TokenKey,
) {
    let validity = state.config.wt_cert_validity;
    let mut due = SystemTime::now() + validity * 2 / 3;
    loop {
        // Due by the wall clock, looked at every minute: tokio's timers stop while the host
        // is suspended, and the certificate's validity does not.
        let left = due.duration_since(SystemTime::now()).unwrap_or_default();
        if !left.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(left.min(CLOCK_CHECK)) => continue,
                _ = stop.cancelled() => return,
            }
        }
        // Advertised first (see above). `reload_config` without a rebind does not fail
        // today; if it did, the next try would advertise its own hash beside this one.
        let renewed = self_signed(validity).and_then(|identity| {
            advert.renewed(hash(&identity));
            let config = server_config(addr, &state.config, &identity, &token_key);
            endpoint.reload_config(config, false)
        });
        match renewed {
            Ok(()) => {
                tracing::info!("webtransport certificate renewed");
                due = SystemTime::now() + validity * 2 / 3;
            }
            // The old certificate serves until it expires; try again a tenth of its validity
            // later (the remaining third leaves room for three more tries).
            Err(err) => {
                tracing::error!(%err, "cannot renew the webtransport certificate");
                due = SystemTime::now() + validity / 10;
            }
        }
    }
}

fn self_signed(validity: Duration) -> io::Result<Identity> {
    let validity = wtransport::tls::self_signed::time::Duration::try_from(validity)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    Identity::self_signed_builder()
        .subject_alt_names(SELF_SIGNED_NAMES)
        .from_now_utc()
        .offset_from_not_before(validity)
        .build()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
}

/// The SHA-256 of the identity's (first) certificate, as lowercase hex.
fn hash(identity: &Identity) -> String {
    let der = identity
        .certificate_chain()
        .as_slice()
        .first()
        .map(|cert| cert.der().to_vec())
        .unwrap_or_default();
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key that seals Retry tokens. One for the endpoint's life: a configuration built
/// without one gets a fresh random key, and a renewal would then turn away every client
/// caught between its Retry and its answer (their tokens no longer open).
type TokenKey = Arc<dyn HandshakeTokenKey>;

fn token_key() -> io::Result<TokenKey> {
    let mut master = [0u8; 64];
    ring::rand::SystemRandom::new()
        .fill(&mut master)
        .map_err(|_| io::Error::other("no randomness for the Retry token key"))?;
    Ok(Arc::new(
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&master),
    ))
}

fn server_config(
    addr: SocketAddr,
    config: &Config,
    identity: &Identity,
    token_key: &TokenKey,
) -> ServerConfig {
    let mut transport = QuicTransportConfig::default();
    transport
        .max_concurrent_bidi_streams(QuicVarInt::from_u32(MAX_BIDI_STREAMS))
        .max_concurrent_uni_streams(QuicVarInt::from_u32(MAX_UNI_STREAMS))
        .stream_receive_window(QuicVarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(QuicVarInt::from_u32(RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(config.idle_timeout.try_into().ok());
    let mut server = ServerConfig::builder()
        .with_bind_address(addr)
        .with_custom_transport(identity.clone_identity(), transport)
        .build();
    server.quic_config_mut().token_key(token_key.clone());
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest validity browsers accept for a self-signed certificate given by hash.
    const MAX_SELF_SIGNED_VALIDITY: Duration =
        Duration::from_secs(protocol::limits::MAX_HASHED_CERT_VALIDITY_SECS);

    #[test]
    fn a_self_signed_certificate_is_what_browsers_accept_by_hash() {
        let identity = self_signed(MAX_SELF_SIGNED_VALIDITY).expect("made");
        let hex = hash(&identity);
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(
            hex,
            hash(&self_signed(Duration::from_secs(60)).expect("made"))
        );
    }

    #[test]
    fn a_self_signed_certificate_is_ecdsa_p256_valid_from_now_for_at_most_14_days() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let identity = self_signed(MAX_SELF_SIGNED_VALIDITY).expect("made");
        let der = identity.certificate_chain().as_slice()[0].der().to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
        // ecdsa-with-SHA256, an EC key on P-256 (prime256v1): what browsers accept by hash.
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.2"
        );
        let key = cert.public_key();
        assert_eq!(key.algorithm.algorithm.to_id_string(), "1.2.840.10045.2.1");
        let curve = key
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("a named curve");
        assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        assert!(
            (now..=now + 60).contains(&not_before),
            "valid from when it was made, not backdated: {not_before} vs {now}"
        );
        assert_eq!(not_after - not_before, 14 * 24 * 3600, "14 days, no more");
    }
}
