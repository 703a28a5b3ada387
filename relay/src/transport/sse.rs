//! Server-Sent Events: `GET /api/rooms/{room}/events?name=&after=&epoch=&limit=`.
//!
//! The body is written by hand rather than through axum's `Sse` so that each message's
//! pre-built SSE frame (`Envelope::sse`) goes out as shared bytes, with no per-receiver
//! formatting. The stream opens with `retry:` and a `welcome` event, then carries `message`
//! events (with `id:`), `reset` events, and a `: keep-alive` comment every
//! `RELAY_SSE_HEARTBEAT` so that proxies and the browser see the connection alive. It ends
//! cleanly when the relay shuts down; EventSource then reconnects with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use protocol::{ServerEvent, Transport};
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

use super::{OpenStream, StreamQuery, WRITE_BATCH, check_stream, heartbeat};
use crate::bus::Delivery;
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::event;
use crate::state::AppState;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

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
    let body = Stream {
        ready: VecDeque::from([Bytes::from(opening)]),
        heartbeat: heartbeat(state.config.sse_heartbeat),
        shutdown: state.shutdown.clone(),
        stream,
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

/// Everything one SSE response needs; dropping it (client gone, or stream ended) releases the
/// subscription and the connection slot.
struct Stream {
    /// Chunks decided but not yet handed to the body (the opening, a message's pieces).
    ready: VecDeque<Bytes>,
    heartbeat: Interval,
    shutdown: CancellationToken,
    /// The subscription, and the connection slot held until the body is dropped.
    stream: OpenStream,
}

impl Stream {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
        stream::unfold(self, |mut this| async move {
            let chunk = this.next_chunk().await?;
            Some((Ok(chunk), this))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.ready.pop_front() {
            return Some(chunk);
        }
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            delivery = self.stream.sub.next() => {
                let first = delivery?;
                self.batch(first);
                self.ready.pop_front()
            }
            _ = self.heartbeat.tick() => Some(Bytes::from_static(KEEP_ALIVE)),
        }
    }
}

impl Stream {
    /// Readies `first` and whatever else is ready (up to `WRITE_BATCH`): a lone message as
    /// its frame's pieces around the shared JSON (written together, uncopied), a burst copied
    /// into one chunk, so that it goes out in one write.
    fn batch(&mut self, first: Delivery) {
        let first = self.frame(first);
        let Some(second) = self.stream.sub.try_next() else {
            // Empty pieces (a reset has one piece) are not chunks: in a chunked body, an empty
            // chunk would read as the end.
            self.ready
                .extend(first.into_iter().filter(|piece| !piece.is_empty()));
            return;
        };
        let mut chunk = BytesMut::new();
        for piece in first.iter().chain(&self.frame(second)) {
            chunk.extend_from_slice(piece);
        }
        for _ in 2..WRITE_BATCH {
            let Some(delivery) = self.stream.sub.try_next() else {
                break;
            };
            for piece in self.frame(delivery) {
                chunk.extend_from_slice(&piece);
            }
        }
        self.ready.push_back(chunk.freeze());
    }

    /// The frame of one delivery, in pieces (some of them empty).
    fn frame(&self, delivery: Delivery) -> [Bytes; 3] {
        match delivery {
            Delivery::Message(envelope) => {
                self.stream
                    .conn
                    .metrics
                    .delivered(Transport::Sse, envelope.ts);
                envelope.sse_frame()
            }
            Delivery::Reset(reset) => [
                Bytes::from(event::sse(None, &ServerEvent::Reset(reset))),
                Bytes::new(),
                Bytes::new(),
            ],
        }
    }
}
