//! HTTP streaming: `GET /api/rooms/{room}/stream?name=&after=&epoch=&limit=&client=`.
//!
//! One long response of NDJSON (`application/x-ndjson`): each line is one event as JSON —
//! the same events, in the same order, as on SSE (`welcome` first, then `message`, `reset`,
//! `presence`, `typing`, and `reconnect` in the drain), with a `{"type":"ping"}` line every
//! `RELAY_SSE_HEARTBEAT`. A page reads it with `fetch` and a `ReadableStream`; it sends with
//! `POST …/messages`. Resuming is the URL's `after` and `epoch`, as for polls: unlike
//! EventSource, nothing reconnects by itself, so there is no `Last-Event-ID`.
//!
//! The head forbids transformation (`no-transform`) and buffering (`X-Accel-Buffering: no`),
//! so that a proxy passes each line on as it comes; the relay never compresses it (a
//! compressor holds bytes back until it has enough). The body is [`super::http_stream`]'s.

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

/// The stream's media type: newline-delimited JSON.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

pub async fn stream(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let stream = check_stream(&state, &room, &headers, query)?
        .open(&state, Transport::Stream, peer, client, None)
        .await?;
    let opening = Bytes::from(event::ndjson(&stream.welcome()));
    let mut response = http_stream::respond(state, stream, Framing::Ndjson, opening, CONTENT_TYPE);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    Ok(response)
}
