//! The chat relay: one ordered stream of messages per room, readable over WebSocket,
//! Server-Sent Events, long polling and short polling, all with the same cursor.
//!
//! # Layout
//! Public (what `main.rs` and the integration tests use; everything else is private, so the
//! compiler reports what is unused):
//! - [`config`]: flags and `RELAY_*` variables.
//! - [`healthcheck`]: the `relay healthcheck` subcommand for container health checks.
//! - [`logging`]: the non-blocking log writer, its formats, and the summary of refusals.
//! - [`shutdown`]: turning SIGINT/SIGTERM into the token every stream watches.
//! - [`serve`]: runs the relay on an already-bound listener until that token is cancelled.
//! - `fuzzing` (hidden): entry points for the fuzz targets in `fuzz/`.
//! - `conformance` (hidden): an echo server of the relay's WebSocket parts, for Autobahn.
//!
//! Private, in dependency order (each depends only on those above it, and on `protocol`,
//! which holds every rule the page shares: limits, paths, event shapes):
//! - `clock`: the wall clock in Unix milliseconds (message timestamps, delivery lag).
//! - `sync`: the poison-tolerant lock every short critical section uses.
//! - `validate`: room names, sender names and text, checked once at the boundary; a leaf
//!   with its own error type.
//! - `event`: the one encoder of server events (JSON, SSE frames).
//! - `bus`: ids, bounded history, epochs, resume and live fan-out; `bus::memory` is the
//!   in-process implementation, `bus::redis` the one several relays share. Transports depend
//!   on the interface only.
//! - `error`: the single error type at the HTTP boundary (`ApiError`), converting validation
//!   and bus errors.
//! - `origin`, `host` and `rate`: the cross-site check, the `Host` allow-list (DNS
//!   rebinding) and send-rate limits.
//! - `headers`: the security headers of every answer (the page's Content-Security-Policy).
//! - `metrics`: counters for `GET /metrics`.
//! - `drain` and `admission`: when each stream closes once a shutdown began (the paced
//!   drain, `RELAY_DRAIN_WINDOW`), and how many new streams open per second
//!   (`RELAY_ACCEPT_RATE`); both tell clients when to come back.
//! - `server`: accepting sockets and serving HTTP/1.1 on them with the time limits every
//!   connection obeys (request head, idle, send) and the socket cap.
//! - `presence`: who is in each room and who is typing (members, their grace, the signals
//!   that tell the room), on every transport and, with Redis, across relays.
//! - `state`: the handle every handler gets, and admission of long-lived connections.
//! - `transport`: one module per way of following a room (`ws`, `sse`, `poll`, which also
//!   holds `POST` publishing), sharing one stream handshake (`transport::check_stream` and `StreamRequest::open`).
//! - `webtransport`: the UDP endpoint for WebTransport sessions, and its certificate;
//!   `advert`: what pages are told about it, held in the state.
//! - `app`: the router, the health endpoints, and the gate every request passes (host check,
//!   client and request rate, refusal counts, security headers).
//! - this file: building the bus and [`serve`].
//!
//! # The path of a message
//! A client publishes (`POST …/messages`, or a text frame on its WebSocket). The handler
//! checks the origin, the rate and the text, then `bus::Bus::publish` assigns the room's next
//! id, serializes the message once into a `bus::Envelope`, appends it to the room's history
//! and hands it to the room's live queue. Every subscriber (a WebSocket session, an SSE stream,
//! a pending long poll) receives the same `Arc<Envelope>` and writes its shared bytes; pollers
//! read the same envelopes out of history. A WebSocket or SSE subscriber that is caught up
//! lends its socket to the room (`bus::Outlet`): the room then writes each new message's
//! pre-encoded frame to it directly, one non-blocking `write` (a `writev` for a batch), without
//! waking the connection's task; a socket that cannot take it goes back to its task, which
//! continues from the room's queue or history like any subscriber that fell behind.

// Public: what the binary (`main.rs`) and the integration tests use. The rest is private, so
// that the compiler reports anything unused.
pub mod config;
#[doc(hidden)]
pub mod conformance;
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod logging;
pub mod shutdown;

mod admission;
mod advert;
mod app;
mod budget;
mod bus;
mod client;
mod clock;
mod drain;
mod error;
mod event;
mod headers;
mod host;
mod metrics;
mod origin;
mod presence;
mod rate;
mod server;
mod state;
mod sync;
mod transport;
mod validate;
mod webtransport;
mod wsframe;

use std::io;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::config::Config;
use crate::state::AppState;

/// Builds the bus the configuration asks for: Redis when `redis_url` is set, else in memory.
/// Must run within a Tokio runtime (the Redis bus starts its listener).
fn bus(config: &Config) -> io::Result<Bus> {
    let limits = config.room_limits();
    // An empty RELAY_REDIS_URL (as compose files often leave it) means "not set".
    let Some(url) = config.redis_url.as_deref().filter(|url| !url.is_empty()) else {
        return Ok(Bus::Memory(MemoryBus::new(limits)));
    };
    RedisBus::new(url, limits, config.redis_timeout)
        .map(Bus::Redis)
        .map_err(|err| {
            // Not the URL itself: it may hold a password.
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("RELAY_REDIS_URL is not a usable Redis URL: {err}"),
            )
        })
}

/// Descriptors kept for what is not a client socket: Redis connections, the metrics
/// listener, files served.
const RESERVED_FDS: u64 = 64;

/// `RELAY_MAX_SOCKETS`, lowered if the process may not open that many files. The soft limit
/// is raised to the hard one first: it is often 1024 by default, which a relay reaches fast.
fn max_sockets(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(%err, "cannot read the file-descriptor limit");
            return configured;
        }
    };
    let fit = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if fit < configured {
        tracing::warn!(
            max_sockets = fit,
            configured,
            "RELAY_MAX_SOCKETS lowered to fit the file-descriptor limit"
        );
    }
    configured.min(fit).max(1)
}

/// Serves on an already-bound listener until `shutdown` is cancelled, then stops accepting,
/// closes every stream at its turn over `drain_window` (WebSockets get 1012, SSE streams a
/// `reconnect` event, long polls an answer; each with the time to come back) and returns
/// once all are gone or `shutdown_deadline` has passed, whichever is first.
pub async fn serve(
    listener: TcpListener,
    mut config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // What decides the default host policy is where the relay really listens.
    config.addr = listener.local_addr()?;
    // The drain must end within the deadline, with time left for the last close frames. A
    // deadline set short before the drain existed keeps working: the window shrinks to fit.
    if config.drain_window >= config.shutdown_deadline {
        let fitted = config.shutdown_deadline / 2;
        tracing::warn!(
            drain_window = ?config.drain_window,
            shutdown_deadline = ?config.shutdown_deadline,
            ?fitted,
            "RELAY_DRAIN_WINDOW is not shorter than RELAY_SHUTDOWN_DEADLINE; using half the deadline"
        );
        config.drain_window = fitted;
    }
    config
        .validate()
        .map_err(|invalid| io::Error::new(io::ErrorKind::InvalidInput, invalid))?;
    let deadline = config.shutdown_deadline;
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(
            static_dir = %config.static_dir.display(),
            "no index.html in the static directory: the API works, but / has no page to serve \
             (build it with `trunk build --release`, or set RELAY_STATIC_DIR)"
        );
    }
    let state = AppState::new(config.clone(), bus(&config)?, shutdown.clone());
    if let Some(addr) = config.metrics_addr {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics listening");
        let server = axum::serve(listener, app::metrics_router(state.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(%err, "the metrics listener failed");
            }
        });
    }
    tokio::spawn(logging::summarize_refusals(
        state.metrics.clone(),
        config.log_summary,
        shutdown.clone(),
    ));
    let mut webtransport = None;
    if let Some(addr) = config.wt_addr {
        let advert = webtransport::start(addr, state.clone(), shutdown.clone()).await?;
        let _ = state.webtransport.set(advert.clone());
        webtransport = Some(advert);
    }
    let sessions = state.sessions.clone();
    let metrics = state.metrics.clone();
    let limits = config.socket_limits(max_sockets(config.max_sockets));
    let server = server::run(
        listener,
        app::router(state),
        limits,
        metrics,
        shutdown.clone(),
    );
    let drained = async {
        server.await;
        sessions.close();
        sessions.wait().await;
        // Every WebTransport session has ended (it is one of the sessions): close the
        // endpoint, so that its close packets go out before the process ends.
        if let Some(webtransport) = &webtransport {
            webtransport.close().await;
        }
        Ok(())
    };
    tokio::select! {
        result = drained => result,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(deadline).await } => {
            tracing::warn!(?deadline, "shutdown deadline passed with connections still open; exiting");
            Ok(())
        }
    }
}
