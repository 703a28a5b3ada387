//! Accepting and serving connections: HTTP/1.1 through hyper's connection builder, so that
//! every limit on a socket is the relay's to set (axum's `serve` exposes none of them).
//!
//! - Each accepted socket is wrapped in [`io::Guarded`], which enforces the head, idle and
//!   send time limits on every transport, upgraded WebSockets included.
//! - Request heads are capped at [`MAX_HEAD_BYTES`] (hyper answers 431 beyond it).
//! - At most `RELAY_MAX_SOCKETS` sockets are open at once. When a new one arrives at the cap,
//!   the socket that has waited longest for its first request head is closed to make room
//!   (those are the trickling ones of a slowloris attack; a real client sends its head within
//!   milliseconds); if none is waiting, the new socket is closed. So sockets that never send a
//!   request cannot exhaust file descriptors, and `/healthz` keeps answering.
//! - Only HTTP/1.1: browsers speak it to the relay (TLS, and with it HTTP/2, ends at a proxy),
//!   and it keeps one code path with no protocol detection stage that could be stalled.
//! - Bodiless `GET`/`HEAD` requests (the page, polls, SSE streams) are read and answered by
//!   `lean`, which keeps no buffers between requests; the first request that needs more (a
//!   body, a WebSocket upgrade) hands the connection to hyper for the rest of its life.

mod body;
pub mod io;
pub mod lean;
mod sockets;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use bytes::BytesMut;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use self::body::TrackedBody;
use self::io::{ConnPhase, Guarded, IoLimits};
use self::sockets::{Slot, SlotHandle, Sockets};
use crate::client::TrustedProxies;
use crate::metrics::Metrics;

/// Largest request head. Browsers send well under 4 KiB; 16 KiB leaves room for long cookies
/// set by other applications on the same host, and bounds what a client can make the relay
/// buffer before any handler runs.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long the accept loop pauses after an error such as running out of file descriptors,
/// so that it does not spin; connections closing meanwhile make room.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The socket limits of one listener.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    pub io: IoLimits,
    pub max_sockets: usize,
    pub max_sockets_per_client: usize,
    /// Peers whose sockets count against no client's share.
    pub proxies: Arc<TrustedProxies>,
}

/// Serves `app` on `listener` until `shutdown`, then lets open connections finish (streams
/// end on the same token) and returns once every connection is closed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: SocketLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let sockets = Sockets::new(
        limits.max_sockets,
        limits.max_sockets_per_client,
        limits.proxies.clone(),
        metrics,
    );
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Per-connection errors (a client that reset before accept) need nothing;
                // running out of descriptors needs a pause, not a spin.
                tracing::debug!(%err, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let Some(slot) = sockets.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        connections.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            limits.io,
            slot,
            shutdown.clone(),
        ));
    }
    // New connections are refused from here on (a load balancer moves on at once).
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: IoLimits,
    slot: Slot,
    shutdown: CancellationToken,
) {
    // Off by default: see `RELAY_TCP_NODELAY` (and docs/BENCHMARKS.md for what it trades).
    if limits.nodelay {
        let _ = tcp.set_nodelay(true);
    }
    let phase = ConnPhase::new(limits.header);
    let handle = slot.handle();
    let evicted = handle.evicted();
    // The socket's place is held by the socket itself: given back when it closes, whoever
    // owns it then (a WebSocket session, after an upgrade).
    let mut io = Guarded::new(tcp, limits, phase.clone(), Box::new(slot));
    // The lean path, for as long as the client asks only what it answers.
    let mut buffer = BytesMut::new();
    loop {
        let head = tokio::select! {
            head = lean::read_head(&mut io, &mut buffer, peer) => head,
            _ = shutdown.cancelled() => return,
            _ = evicted.cancelled() => {
                tracing::debug!(%peer, "closed a socket waiting for a request, to make room");
                return;
            }
        };
        match head {
            Ok(lean::Head::Request(request)) => {
                handle.busy();
                phase.request_started();
                let kept = match lean::answer(&mut io, &app, request, &mut buffer).await {
                    Ok(lean::Answered::Done(kept)) => Ok(kept),
                    Ok(lean::Answered::Takeover(takeover)) => {
                        // The stream serves the socket from here on, and holds its place
                        // until it ends.
                        let (tcp, held, _) = io.into_parts();
                        takeover.run(tcp).await;
                        drop(held);
                        return;
                    }
                    Err(err) => Err(err),
                };
                phase.request_ended();
                if !buffer.is_empty() {
                    phase.head_started();
                }
                match kept {
                    Ok(true) if !shutdown.is_cancelled() => {
                        handle.idle();
                        continue;
                    }
                    Ok(_) => return,
                    Err(err) => {
                        tracing::debug!(%peer, %err, "connection ended with an error");
                        return;
                    }
                }
            }
            Ok(lean::Head::Hyper(read)) => {
                io.replay(read);
                break;
            }
            Ok(lean::Head::Close) => return,
            Err(err) => {
                tracing::debug!(%peer, %err, "connection ended with an error");
                return;
            }
        }
    }
    drop(buffer);
    // Boxed: a connection that never leaves the lean path does not carry hyper's state
    // (about a kilobyte) in its task.
    Box::pin(serve_with_hyper(io, peer, app, phase, handle, shutdown)).await;
}

/// Serves the rest of a connection through hyper: requests with bodies, WebSocket upgrades,
/// anything the lean path does not answer.
async fn serve_with_hyper(
    io: Guarded<TcpStream>,
    peer: SocketAddr,
    app: Router,
    phase: Arc<ConnPhase>,
    slot: SlotHandle,
    shutdown: CancellationToken,
) {
    let evicted = slot.evicted();
    let io = TokioIo::new(io);
    let service = {
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            slot.busy();
            phase.request_started();
            request.extensions_mut().insert(ConnectInfo(peer));
            // A `Router` is always ready (`poll_ready` returns at once), so it is called
            // directly; the clone is a reference count.
            let mut app = app.clone();
            let (phase, slot) = (phase.clone(), slot.clone());
            async move {
                let response = app.call(request).await?;
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    phase.upgraded();
                }
                Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, phase, slot)))
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        // The head limit is enforced by `Guarded`, from accept, for every request.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            // Answers in progress finish (streams end on the same token); idle keep-alive
            // connections close now.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                _ = evicted.cancelled() => Ok(()),
            }
        }
        _ = evicted.cancelled() => {
            tracing::debug!(%peer, "closed a socket waiting for a request, to make room");
            Ok(())
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "connection ended with an error");
    }
}
