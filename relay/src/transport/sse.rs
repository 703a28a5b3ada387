//! Server-Sent Events: `GET /api/rooms/{room}/events?name=&after=&epoch=&limit=`.
//!
//! The body is written by hand rather than through axum's `Sse` so that each message's
//! pre-built SSE frame (`Envelope::sse`) goes out as shared bytes, with no per-receiver
//! formatting. The stream opens with `retry:` and a `welcome` event, then carries `message`
//! events (with `id:`), `reset` events, and a `: keep-alive` comment every
//! `RELAY_SSE_HEARTBEAT` so that proxies and the browser see the connection alive. It ends
//! cleanly when the relay shuts down; EventSource then reconnects with `Last-Event-ID`.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use protocol::{ErrorCode, ServerEvent, Transport, Welcome};
use tokio::time::{Interval, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::{StreamQuery, join_limit};
use crate::bus::{Delivery, Subscription};
use crate::error::ApiError;
use crate::state::{AppState, Connection};
use crate::validate::RoomName;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Most events written as one chunk; see the WebSocket transport's `WRITE_BATCH`.
const WRITE_BATCH: usize = 64;

pub async fn stream(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.origins.check(&headers)?;
    let room = RoomName::parse(&room)?;
    let Query(mut query) = query?;
    if let Some(name) = &query.name {
        state.limits.name(name)?;
    }
    // EventSource's own reconnection sends the last id it saw in this header; an explicit
    // `after` wins because the page sets it deliberately when switching transports.
    if query.after.is_none() {
        query.after = last_event_id(&headers)?;
    }
    let conn = state.admit(Transport::Sse, &room, peer)?;
    let sub = state
        .bus
        .subscribe(&room, &query.cursor(), join_limit(&state, query.limit))
        .await?;

    let welcome = ServerEvent::Welcome(Welcome {
        transport: Transport::Sse,
        room: room.to_string(),
        epoch: sub.epoch().to_owned(),
        last_id: sub.head(),
    });
    let opening = format!(
        "retry: {}\n{}",
        state.config.sse_retry.as_millis(),
        event_text("welcome", &welcome)
    );
    let period = state.config.sse_heartbeat;
    let mut heartbeat = interval_at(tokio::time::Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let body = Stream {
        opening: Some(Bytes::from(opening)),
        sub,
        heartbeat,
        shutdown: state.shutdown.clone(),
        conn,
    };
    let mut response = Body::from_stream(body.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "Last-Event-ID must be a message id (an integer)",
        )
    })
}

/// Everything one SSE response needs; dropping it (client gone, or stream ended) releases the
/// subscription and the connection slot.
struct Stream {
    opening: Option<Bytes>,
    sub: Subscription,
    heartbeat: Interval,
    shutdown: CancellationToken,
    /// Held for its slot and its metrics; released with the stream.
    conn: Connection,
}

impl Stream {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
        stream::unfold(self, |mut this| async move {
            let chunk = this.next_chunk().await?;
            Some((Ok(chunk), this))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(opening) = self.opening.take() {
            return Some(opening);
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            delivery = self.sub.next() => delivery.map(|first| self.batch(first)),
            _ = self.heartbeat.tick() => Some(Bytes::from_static(KEEP_ALIVE)),
        }
    }
}

impl Stream {
    /// `first` and whatever else is ready (up to `WRITE_BATCH`) as one chunk: one write for
    /// a burst. A lone message goes out as its shared bytes, uncopied.
    fn batch(&mut self, first: Delivery) -> Bytes {
        let first = self.frame(first);
        let Some(second) = self.sub.try_next() else {
            return first;
        };
        let mut chunk = BytesMut::from(&first[..]);
        chunk.extend_from_slice(&self.frame(second));
        for _ in 2..WRITE_BATCH {
            let Some(delivery) = self.sub.try_next() else {
                break;
            };
            chunk.extend_from_slice(&self.frame(delivery));
        }
        chunk.freeze()
    }

    fn frame(&self, delivery: Delivery) -> Bytes {
        match delivery {
            Delivery::Message(envelope) => {
                self.conn.metrics.delivered(Transport::Sse, envelope.ts);
                envelope.sse.clone()
            }
            Delivery::Reset(reset) => Bytes::from(event_text("reset", &ServerEvent::Reset(reset))),
        }
    }
}

fn event_text(name: &str, event: &ServerEvent) -> String {
    let json = serde_json::to_string(event).unwrap_or_else(|_| String::from("{}"));
    format!("event: {name}\ndata: {json}\n\n")
}
