//! Server-Sent Events: `GET /api/rooms/{room}/events?name=&after=&epoch=&limit=&client=`.
//!
//! The stream opens with `retry:` and a `welcome` event, then carries `message` events (with
//! `id:`, `EPOCH:ID`), `reset`, `presence` and `typing` events, and a `: keep-alive` comment
//! every `RELAY_SSE_HEARTBEAT` so that proxies and the browser see the connection alive. In
//! the drain a `reconnect` event says when to come back; EventSource then reconnects with
//! `Last-Event-ID`. The body itself is [`super::http_stream`]'s.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use protocol::Transport;

use super::{StreamQuery, check_stream, http_stream};
use crate::bus::Framing;
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::event;
use crate::state::AppState;

pub async fn stream(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = check_stream(&state, &room, &headers, query)?
        .open(&state, Transport::Sse, peer, client, Some(&headers))
        .await?;
    let opening = format!(
        "retry: {}\n{}",
        state.config.sse_retry.as_millis(),
        event::sse(None, &stream.welcome())
    );
    let mut response = http_stream::respond(
        state,
        stream,
        Framing::Sse,
        Bytes::from(opening),
        "text/event-stream",
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
