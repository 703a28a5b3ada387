//! The router, and the gate every request passes before it.
//!
//! The gate is one middleware rather than one per concern: each layer added to an axum
//! router boxes every request's future once more, and a pending long poll or an open stream
//! keeps those boxes for as long as it lasts (a kilobyte or so each, at 10 000 connections).
//! In order, it refuses a `Host` the relay does not serve, names the client of an API request
//! and charges it to the client's request rate, runs the route, counts a refusal by its code,
//! and adds the security headers (see `headers`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::ErrorCode;
use protocol::api::{self, Endpoint};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::{MakeHeaderValue, SetResponseHeader};

use crate::error::ApiError;
use crate::headers;
use crate::state::AppState;
use crate::transport::{poll, presence, sse, stream, ws, wt};

/// All routes: the API under `/api`, health checks, and the page's static files for the rest,
/// behind the gate.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(Endpoint::Ws.route(), get(ws::upgrade))
        .route(Endpoint::Events.route(), get(sse::stream))
        .route(Endpoint::Stream.route(), get(stream::stream))
        .route(api::TRANSPORT_INFO, get(wt::info))
        .route(
            Endpoint::Messages.route(),
            get(poll::read).post(poll::publish),
        )
        .route(
            Endpoint::Presence.route(),
            get(presence::list).post(presence::update),
        )
        .route(Endpoint::Typing.route(), post(presence::typing))
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_frame_bytes));
    // With a metrics address of its own, `/metrics` is not on the public port at all.
    let public_metrics = if state.config.metrics_addr.is_some() {
        get(metrics_elsewhere)
    } else {
        get(metrics)
    };
    Router::new()
        .nest(api::PREFIX, api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", public_metrics)
        .fallback_service(page(
            &state.config.static_dir,
            state.webtransport.get().map(|advert| advert.port()),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// The router of `RELAY_METRICS_ADDR`: `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// See the module comment.
async fn gate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let page_file = headers::PageFile::of(request.uri().path());
    let mut response = match admit(&state, peer, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    };
    // `ApiError` marks its responses with their code, for this count.
    if let Some(code) = response.extensions().get::<ErrorCode>() {
        state.metrics.rejected(code.as_str());
    }
    let status = response.status();
    let answer = response.headers_mut();
    // A page file found unchanged (304) carries neither policy nor caching: the browser keeps
    // the headers it stored with the file, and a header sent here would replace them (the
    // document's policy with one that allows nothing, say, since a 304 has no Content-Type
    // to tell a document by).
    let revalidated = page_file.is_some() && status == StatusCode::NOT_MODIFIED;
    // The page sets its own policy; every other answer gets the one that allows nothing.
    if !revalidated {
        answer
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(headers::API_POLICY));
    }
    for (name, value) in headers::common() {
        answer.insert(name, value);
    }
    if let Some(file) = page_file
        && status.is_success()
    {
        let html = headers::is_html(answer);
        answer.insert(header::CACHE_CONTROL, file.cache_control(html));
        // The files come in Brotli, gzip or plain, by the request's Accept-Encoding: caches
        // between here and the browser must keep them apart.
        answer.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// The checks before a route: the `Host`, then, for the API, the client's request rate (and
/// its name, as a [`crate::client::ClientKey`] extension the handlers read).
fn admit(state: &AppState, peer: SocketAddr, request: &mut Request) -> Result<(), ApiError> {
    let host = request.headers().get(header::HOST);
    if let Some(host) = host.map(|value| value.to_str().unwrap_or_default())
        && !state.hosts.allows(host)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidHost,
            "this relay does not serve that host name; see RELAY_ALLOWED_HOSTS",
        ));
    }
    if request.uri().path().starts_with(api::PREFIX) {
        let client = state.proxies.client(peer, request.headers());
        request.extensions_mut().insert(client);
        state
            .budgets
            .requests
            .take(client, Instant::now())
            .map_err(|wait| {
                ApiError::new(
                    ErrorCode::RateLimited,
                    "too many requests from this address; slow down",
                )
                .retry_after(wait)
            })?;
    }
    Ok(())
}

/// The page's files; its document gets the policy that lets exactly its own scripts run.
/// (A policy only governs documents: the scripts, wasm and style get the short one the gate
/// gives every answer, rather than carrying the page's on every download.)
fn page(
    dir: &Path,
    webtransport: Option<u16>,
) -> SetResponseHeader<ServeDir<ServeFile>, PagePolicy> {
    // Read once: the policy hashes the inline loader of the index.html being served. A
    // missing page (an API-only relay) allows no inline script at all.
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap_or_default();
    let policy = HeaderValue::from_str(&headers::page_policy(&index, webtransport))
        .unwrap_or_else(|_| HeaderValue::from_static(headers::API_POLICY));
    SetResponseHeader::overriding(
        static_files(dir),
        header::CONTENT_SECURITY_POLICY,
        PagePolicy(policy),
    )
}

/// The page's policy, for its documents only.
#[derive(Clone)]
struct PagePolicy(HeaderValue);

impl<B> MakeHeaderValue<axum::http::Response<B>> for PagePolicy {
    fn make_header_value(&mut self, response: &axum::http::Response<B>) -> Option<HeaderValue> {
        headers::is_html(response.headers()).then(|| self.0.clone())
    }
}

/// The page's build output; unknown paths get `index.html` so that client-side URLs load.
/// `scripts/build-page.sh` writes a Brotli (`.br`) and a gzip (`.gz`) file next to each one,
/// compressed once at their best settings; each answer is the smallest the browser accepts.
fn static_files(dir: &Path) -> ServeDir<ServeFile> {
    ServeDir::new(dir)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(
            ServeFile::new(dir.join("index.html"))
                .precompressed_br()
                .precompressed_gzip(),
        )
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

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(state.bus.view()),
    )
}

async fn metrics_elsewhere() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "not found")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::bus::memory::MemoryBus;
    use crate::config::Config;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn readyz_is_unready_once_shutdown_begins() {
        let config = Config::defaults();
        let shutdown = CancellationToken::new();
        let bus = Bus::Memory(MemoryBus::new(config.room_limits()));
        let state = AppState::new(config, bus, shutdown.clone());
        assert!(readyz(State(state.clone())).await.is_ok(), "ready at first");
        shutdown.cancel();
        let refused = readyz(State(state)).await.err().expect("unready");
        assert_eq!(refused.code, ErrorCode::ShuttingDown);
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
