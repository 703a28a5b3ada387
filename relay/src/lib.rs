//! The chat relay: one ordered stream of messages per room, readable over WebSocket,
//! Server-Sent Events, long polling and short polling, all with the same cursor.
//!
//! # Layout
//! - [`config`]: flags and `RELAY_*` variables.
//! - [`validate`]: room names, sender names and text, checked once at the boundary.
//! - [`bus`]: ids, bounded history, epochs, resume and live fan-out; [`bus::memory`] is the
//!   in-process implementation, [`bus::redis`] the one several relays share. Transports
//!   depend on the interface only.
//! - [`transport`]: one module per way of following a room ([`transport::ws`],
//!   [`transport::sse`], [`transport::poll`], which also holds `POST` publishing).
//! - [`origin`] and [`rate`]: the cross-site check and send-rate limits.
//! - [`state`]: the handle every handler gets, and admission of long-lived connections.
//! - [`error`]: the single error type at the HTTP boundary.
//! - [`metrics`]: counters for `GET /metrics`.
//! - [`healthcheck`]: the `relay healthcheck` subcommand for container health checks.
//! - [`shutdown`]: turning SIGINT/SIGTERM into the token every stream watches.
//!
//! # The path of a message
//! A client publishes (`POST …/messages`, or a text frame on its WebSocket). The handler
//! checks the origin, the rate and the text, then [`bus::Bus::publish`] assigns the room's next
//! id, serializes the message once into an [`bus::Envelope`], appends it to the room's history
//! and hands it to the room's live queue. Every subscriber (a WebSocket session, an SSE body,
//! a pending long poll) receives the same `Arc<Envelope>` and writes its shared bytes; pollers
//! read the same envelopes out of history.

pub mod bus;
pub mod config;
pub mod error;
pub mod healthcheck;
pub mod metrics;
pub mod origin;
pub mod rate;
pub mod shutdown;
pub mod state;
pub mod transport;
pub mod validate;

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::ErrorCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

use crate::bus::Bus;
use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;
use crate::transport::{poll, sse, ws};

/// All routes: the API under `/api`, health checks, and the page's static files for the rest.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/rooms/{room}/ws", get(ws::upgrade))
        .route("/rooms/{room}/events", get(sse::stream))
        .route(
            "/rooms/{room}/messages",
            get(poll::read).post(poll::publish),
        )
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_frame_bytes));
    Router::new()
        .nest("/api", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback_service(static_files(&state.config.static_dir))
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_rejections,
        ))
        .with_state(state)
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

/// Counts every refused request by its error code (`ApiError` marks its responses).
async fn count_rejections(State(state): State<AppState>, response: Response) -> Response {
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.rejected(code.as_str());
    }
    response
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let rooms = state.bus.rooms().await;
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(rooms, state.bus.connected()),
    )
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
pub fn bus(config: &Config) -> io::Result<Bus> {
    let history = config.history as usize;
    // An empty RELAY_REDIS_URL (as compose files often leave it) means "not set".
    let Some(url) = config.redis_url.as_deref().filter(|url| !url.is_empty()) else {
        return Ok(Bus::Memory(MemoryBus::new(history, config.max_rooms)));
    };
    RedisBus::new(url, history, config.max_rooms, config.redis_timeout)
        .map(Bus::Redis)
        .map_err(|err| {
            // Not the URL itself: it may hold a password.
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("RELAY_REDIS_URL is not a usable Redis URL: {err}"),
            )
        })
}

/// Serves on an already-bound listener until `shutdown` is cancelled, then stops accepting,
/// lets every stream end (WebSockets get 1001, SSE bodies end, long polls answer) and returns
/// once all are gone or `shutdown_deadline` has passed, whichever is first.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let deadline = config.shutdown_deadline;
    if !config.static_dir.join("index.html").is_file() {
        tracing::warn!(
            static_dir = %config.static_dir.display(),
            "no index.html in the static directory: the API works, but / has no page to serve \
             (build it with `trunk build --release`, or set RELAY_STATIC_DIR)"
        );
    }
    let state = AppState::new(config.clone(), bus(&config)?, shutdown.clone());
    let sessions = state.sessions.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let drained = async {
        server.await?;
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
