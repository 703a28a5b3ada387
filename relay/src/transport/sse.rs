//! Server-Sent Events: `GET /api/rooms/{room}/events?name=&after=&epoch=&limit=`.
//!
//! The stream is written by hand rather than through axum's `Sse` so that each message's
//! pre-built SSE frame (`Envelope::sse_frame`) goes out as shared bytes, with no per-receiver
//! formatting. Answered on the lean path (nearly always), the stream takes the socket over
//! once the head is written: while the client is caught up, the socket is lent to the room,
//! which writes new messages to it directly (see `bus/live.rs`), as for WebSockets; writes
//! this task waits for are bounded by `RELAY_SEND_TIMEOUT`. Answered by hyper (a head the
//! lean path leaves to it), the same stream is the response body. The stream opens with `retry:` and a `welcome` event, then carries `message`
//! events (with `id:`), `reset` events, and a `: keep-alive` comment every
//! `RELAY_SSE_HEARTBEAT` so that proxies and the browser see the connection alive. When the
//! relay shuts down, at the stream's turn in the drain (`drain`), a `reconnect` event says
//! when to come back and the stream ends; EventSource then reconnects with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use protocol::{ServerEvent, Transport};
use tokio::net::TcpStream;
use tokio::time::Interval;

use super::{OpenStream, Signal, StreamQuery, WRITE_BATCH, check_stream, heartbeat, next_signal};
use crate::bus::{Delivery, Framing, Outlet};
use crate::client::ClientKey;
use crate::drain::Closing;
use crate::error::ApiError;
use crate::event;
use crate::server::MAX_HEAD_BYTES;
use crate::server::lean::Takeover;
use crate::state::AppState;
use crate::sync::lock;

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
        send_timeout: state.config.send_timeout,
        closing: Closing::default(),
        ended: false,
        state,
        stream,
    };
    // Whoever starts first — the lean path taking the socket over, or hyper polling the
    // body — takes the stream; the other finds nothing.
    let slot = Arc::new(Mutex::new(Some(body)));
    let takeover = {
        let slot = slot.clone();
        Takeover::new(move |socket| {
            let body = lock(&slot).take();
            Box::pin(async move {
                if let Some(body) = body {
                    body.serve(socket).await;
                }
            })
        })
    };
    let body = stream::once(async move { lock(&slot).take() })
        .filter_map(|body| async move { body })
        .flat_map(Stream::into_stream);
    let mut response = Body::from_stream(body).into_response();
    response.extensions_mut().insert(takeover);
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
    state: AppState,
    /// The stream's turn in the drain, once the relay is shutting down.
    closing: Closing,
    /// The `reconnect` event was handed out: the body ends next.
    ended: bool,
    send_timeout: Duration,
    /// The subscription, and the connection slot held until the body is dropped.
    stream: OpenStream,
}

/// Why a stream served on its own socket ended; nothing is sent either way (an SSE stream
/// just ends, and EventSource reconnects with `Last-Event-ID`).
struct Ended;

impl Stream {
    /// Serves the stream on its own socket, once the answer's head is written.
    async fn serve(mut self, socket: TcpStream) {
        let socket = Arc::new(socket);
        let outlet = Outlet::new(
            socket.clone(),
            Framing::Sse,
            self.stream.conn.metrics.clone(),
        );
        for chunk in self.ready.drain(..) {
            outlet.push(chunk);
        }
        let _ = self.pump(&socket, &outlet).await;
        // The room stops writing to the socket; it closes when `socket` is dropped.
        outlet.close();
    }

    async fn pump(&mut self, socket: &TcpStream, outlet: &Arc<Outlet>) -> Result<(), Ended> {
        self.flush(outlet).await?;
        let mut lent = false;
        // Bytes the client sent: nothing is expected on a stream but the end.
        let mut received = 0;
        loop {
            if !lent {
                lent = self.stream.sub.lend(outlet);
            }
            // Every branch is cancel-safe.
            tokio::select! {
                biased;
                advice = self.state.closing(&mut self.closing) => {
                    outlet.reclaim();
                    outlet.push(reconnect(advice));
                    return self.flush(outlet).await;
                }
                readable = socket.readable() => {
                    readable.map_err(|_| Ended)?;
                    let mut chunk = [0u8; 64];
                    match socket.try_read(&mut chunk) {
                        Ok(0) => return Err(Ended),
                        Ok(n) => {
                            received += n;
                            if received > MAX_HEAD_BYTES {
                                return Err(Ended);
                            }
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return Err(Ended),
                    }
                }
                _ = outlet.woken() => {
                    self.flush(outlet).await?;
                    if lent && !outlet.is_lent() {
                        lent = false;
                        self.stream.sub.reclaim(outlet.reclaim());
                    }
                }
                delivery = self.stream.sub.next(), if !lent => {
                    let Some(first) = delivery else { return Ok(()) };
                    let mut next = Some(first);
                    let mut queued = 0;
                    while let Some(delivery) = next.take() {
                        match delivery {
                            Delivery::Message(envelope) => outlet.push_message(&envelope),
                            Delivery::Reset(reset) => outlet.push(Bytes::from(event::sse(
                                None,
                                &ServerEvent::Reset(reset),
                            ))),
                        }
                        queued += 1;
                        if queued < WRITE_BATCH {
                            next = self.stream.sub.try_next();
                        }
                    }
                    self.flush(outlet).await?;
                }
                received = next_signal(&mut self.stream.signals) => {
                    let Some(signal) = self.stream.signal(received) else { return Ok(()) };
                    outlet.push(sse_signal(signal));
                    self.flush(outlet).await?;
                }
                _ = self.heartbeat.tick() => {
                    outlet.push(Bytes::from_static(KEEP_ALIVE));
                    self.flush(outlet).await?;
                }
            }
        }
    }

    /// Writes what is queued; a client whose socket takes nothing for the send time limit
    /// is let go (it resumes with `Last-Event-ID`).
    async fn flush(&self, outlet: &Outlet) -> Result<(), Ended> {
        match outlet.flush(self.send_timeout).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() != io::ErrorKind::TimedOut => Err(Ended),
            Err(_) => {
                tracing::debug!(peer = %self.stream.conn.peer, "SSE client too slow; ending its stream");
                Err(Ended)
            }
        }
    }

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
        if self.ended {
            return None;
        }
        tokio::select! {
            biased;
            advice = self.state.closing(&mut self.closing) => {
                self.ended = true;
                Some(reconnect(advice))
            }
            delivery = self.stream.sub.next() => {
                let first = delivery?;
                self.batch(first);
                self.ready.pop_front()
            }
            received = next_signal(&mut self.stream.signals) => {
                Some(sse_signal(self.stream.signal(received)?))
            }
            _ = self.heartbeat.tick() => Some(Bytes::from_static(KEEP_ALIVE)),
        }
    }
}

/// Presence and typing events as SSE frames: no `id:`, so `Last-Event-ID` stays the last
/// message's (they are never replayed).
fn sse_signal(signal: Signal) -> Bytes {
    match signal {
        Signal::Batch(batch) => batch.sse.clone(),
        Signal::Event(event) => Bytes::from(event::sse(None, &event)),
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

/// The event that ends a stream in the drain: when to come back. Its `retry:` field makes a
/// plain EventSource (which reconnects by itself) wait as long as the page does.
fn reconnect(advice: protocol::RetryAdvice) -> Bytes {
    Bytes::from(format!(
        "retry: {}\n{}",
        advice.retry_after_ms,
        event::sse(None, &ServerEvent::Reconnect(advice))
    ))
}
