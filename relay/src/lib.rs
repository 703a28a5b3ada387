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
//! - `server`: accepting sockets and serving HTTP/1.1 on them with the time limits every
//!   connection obeys (request head, idle, send) and the socket cap.
//! - `state`: the handle every handler gets, and admission of long-lived connections.
//! - `transport`: one module per way of following a room (`ws`, `sse`, `poll`, which also
//!   holds `POST` publishing), sharing one stream handshake (`transport::open_stream`).
//! - this file: the router, health endpoints, and [`serve`].
//!
//! # The path of a message
//! A client publishes (`POST …/messages`, or a text frame on its WebSocket). The handler
//! checks the origin, the rate and the text, then `bus::Bus::publish` assigns the room's next
//! id, serializes the message once into a `bus::Envelope`, appends it to the room's history
//! and hands it to the room's live queue. Every subscriber (a WebSocket session, an SSE body,
//! a pending long poll) receives the same `Arc<Envelope>` and writes its shared bytes; pollers
//! read the same envelopes out of history.

// Public: what the binary (`main.rs`) and the integration tests use. The rest is private, so
// that the compiler reports anything unused.
pub mod config;
pub mod healthcheck;
pub mod logging;
pub mod shutdown;

mod budget;
mod bus;
mod client;
mod clock;
mod error;
mod event;
mod headers;
mod host;
mod metrics;
mod origin;
mod rate;
mod server;
mod state;
mod sync;
mod transport;
mod validate;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::ErrorCode;
use protocol::api::{self, Endpoint};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};

use crate::bus::Bus;
use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::{poll, sse, ws};

/// All routes: the API under `/api`, health checks, and the page's static files for the rest.
fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(Endpoint::Ws.route(), get(ws::upgrade))
        .route(Endpoint::Events.route(), get(sse::stream))
        .route(
            Endpoint::Messages.route(),
            get(poll::read).post(poll::publish),
        )
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_frame_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            identify_client,
        ));
    // With a metrics address of its own, `/metrics` is not on the public port at all.
    let public_metrics = if state.config.metrics_addr.is_some() {
        get(metrics_elsewhere)
    } else {
        get(metrics)
    };
    let mut router = Router::new()
        .nest(api::PREFIX, api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", public_metrics)
        .fallback_service(page(&state.config.static_dir))
        // Around every route, so that it covers the page and unknown paths too.
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_rejections,
        ))
        // The page sets its own policy; every other answer gets the one that allows nothing.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(headers::API_POLICY),
        ));
    for (name, value) in headers::common() {
        router = router.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    router.with_state(state)
}

/// The page's files, with the policy that lets exactly its own scripts run.
fn page(dir: &Path) -> SetResponseHeader<ServeDir<ServeFile>, HeaderValue> {
    // Read once: the policy hashes the inline loader of the index.html being served. A
    // missing page (an API-only relay) allows no inline script at all.
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap_or_default();
    let policy = HeaderValue::from_str(&headers::page_policy(&index))
        .unwrap_or_else(|_| HeaderValue::from_static(headers::API_POLICY));
    SetResponseHeader::overriding(static_files(dir), header::CONTENT_SECURITY_POLICY, policy)
}

/// The page's build output; unknown paths get `index.html` so that client-side URLs load.
fn static_files(dir: &Path) -> ServeDir<ServeFile> {
    ServeDir::new(dir)
        .precompressed_gzip()
        .fallback(ServeFile::new(dir.join("index.html")))
}

async fn api_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such API endpoint; see docs/PROTOCOL.md",
    )
}

async fn api_method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// Names the client of every API request (a [`client::ClientKey`] extension the handlers
/// read) and charges the request to its budget.
async fn identify_client(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = state.proxies.client(peer, request.headers());
    request.extensions_mut().insert(client);
    if let Err(wait) = state.budgets.requests.take(client, Instant::now()) {
        return ApiError::new(
            ErrorCode::RateLimited,
            "too many requests from this address; slow down",
        )
        .retry_after(wait)
        .into_response();
    }
    next.run(request).await
}

/// Refuses requests whose `Host` the policy does not allow (see `host`).
async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or_default());
    match host {
        Some(host) if !state.hosts.allows(host) => ApiError::new(
            ErrorCode::InvalidHost,
            "this relay does not serve that host name; see RELAY_ALLOWED_HOSTS",
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Counts every refused request by its error code (`ApiError` marks its responses).
async fn count_rejections(State(state): State<AppState>, response: Response) -> Response {
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.rejected(code.as_str());
    }
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let rooms = state.bus.rooms();
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(rooms, state.bus.connected()),
    )
}

async fn metrics_elsewhere() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "not found")
}

/// The router of `RELAY_METRICS_ADDR`: `/metrics` only.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    ([("content-type", "application/json")], r#"{"status":"ok"}"#)
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "shutting down"));
    }
    if !state.bus.ready().await {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "message bus unreachable",
        ));
    }
    Ok((
        StatusCode::OK,
        [("content-type", "application/json")],
        r#"{"status":"ready"}"#,
    ))
}

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
/// lets every stream end (WebSockets get 1001, SSE bodies end, long polls answer) and returns
/// once all are gone or `shutdown_deadline` has passed, whichever is first.
pub async fn serve(
    listener: TcpListener,
    mut config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // What decides the default host policy is where the relay really listens.
    config.addr = listener.local_addr()?;
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
        let server = axum::serve(listener, metrics_router(state.clone()))
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
    let sessions = state.sessions.clone();
    let metrics = state.metrics.clone();
    let limits = config.socket_limits(max_sockets(config.max_sockets));
    let server = server::run(listener, router(state), limits, metrics, shutdown.clone());
    let drained = async {
        server.await;
        sessions.close();
        sessions.wait().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_is_unready_once_shutdown_begins() {
        let config = Config::defaults();
        let shutdown = CancellationToken::new();
        let bus = bus(&config).expect("the memory bus");
        let state = AppState::new(config, bus, shutdown.clone());
        assert!(readyz(State(state.clone())).await.is_ok(), "ready at first");
        shutdown.cancel();
        let refused = readyz(State(state)).await.err().expect("unready");
        assert_eq!(refused.code, ErrorCode::ShuttingDown);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
