//! The long HTTP responses that carry a room: Server-Sent Events ([`super::sse`]) and HTTP
//! streaming ([`super::stream`]). They differ only in how an event is framed (an SSE frame, or
//! one NDJSON line) and in their heads; everything else — the subscription, batching, the
//! heartbeat, the drain, slow readers — is here, once.
//!
//! The body is written by hand rather than through axum's `Sse` so that each message's
//! pre-built bytes (`Envelope`) go out as shared bytes, with no per-receiver formatting.
//! Answered on the lean path (nearly always), the stream takes the socket over once the head
//! is written: while the client is caught up, the socket is lent to the room, which writes new
//! messages to it directly (see `bus/live.rs`), as for WebSockets; writes this task waits for
//! are bounded by `RELAY_SEND_TIMEOUT`, and a reader that takes nothing for that long is let
//! go (it resumes from its last id). Answered by hyper (a head the lean path leaves to it),
//! the same stream is the response body. When the relay shuts down, at the stream's turn in
//! the drain (`drain`), a `reconnect` event says when to come back and the stream ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use protocol::ServerEvent;
use tokio::net::TcpStream;
use tokio::time::Interval;

use super::{OpenStream, Signal, WRITE_BATCH, heartbeat, next_signal};
use crate::bus::{Delivery, Framing, Outlet};
use crate::drain::Closing;
use crate::event;
use crate::server::MAX_HEAD_BYTES;
use crate::server::lean::Takeover;
use crate::state::AppState;
use crate::sync::lock;

/// An SSE heartbeat: a comment, which EventSource ignores.
const SSE_KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// An NDJSON heartbeat (`ServerEvent::Ping`): the format has no comments.
const NDJSON_KEEP_ALIVE: &[u8] = b"{\"type\":\"ping\"}\n";

/// Answers with `stream` as a long response: `opening` first (the welcome, framed), then the
/// room. The caller adds the head fields of its format.
pub fn respond(
    state: AppState,
    stream: OpenStream,
    framing: Framing,
    opening: Bytes,
    content_type: &'static str,
) -> Response {
    let body = HttpStream {
        ready: VecDeque::from([opening]),
        heartbeat: heartbeat(state.config.sse_heartbeat),
        send_timeout: state.config.send_timeout,
        closing: Closing::default(),
        ended: false,
        framing,
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
        .flat_map(HttpStream::into_stream);
    let mut response = Body::from_stream(body).into_response();
    response.extensions_mut().insert(takeover);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Everything one streamed response needs; dropping it (client gone, or stream ended) releases the
/// subscription and the connection slot.
pub struct HttpStream {
    /// Chunks decided but not yet handed to the body (the opening, a message's pieces).
    ready: VecDeque<Bytes>,
    heartbeat: Interval,
    state: AppState,
    /// The stream's turn in the drain, once the relay is shutting down.
    closing: Closing,
    /// The `reconnect` event was handed out: the body ends next.
    ended: bool,
    send_timeout: Duration,
    /// How each event is written: SSE frames or NDJSON lines.
    framing: Framing,
    /// The subscription, and the connection slot held until the body is dropped.
    stream: OpenStream,
}

/// Why a stream served on its own socket ended; nothing is sent either way (the stream just
/// ends, and the client reconnects from its last id).
struct Ended;

impl HttpStream {
    /// Serves the stream on its own socket, once the answer's head is written.
    async fn serve(mut self, socket: TcpStream) {
        let socket = Arc::new(socket);
        let outlet = Outlet::new(
            socket.clone(),
            self.framing,
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
                    outlet.push(self.reconnect(advice));
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
                            Delivery::Reset(reset) => {
                                outlet.push(self.event(&ServerEvent::Reset(reset)))
                            }
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
                    outlet.push(self.signal_bytes(signal));
                    self.flush(outlet).await?;
                }
                _ = self.heartbeat.tick() => {
                    outlet.push(self.keep_alive());
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
                // Counted as `slow_consumer`, as for WebSockets; one log line per client
                // would let clients flood the log.
                self.stream
                    .conn
                    .metrics
                    .rejected(crate::metrics::reason::SLOW_CONSUMER);
                tracing::debug!(peer = %self.stream.conn.peer, transport = self.stream.transport.as_str(), "client too slow; ending its stream");
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
                Some(self.reconnect(advice))
            }
            delivery = self.stream.sub.next() => {
                let first = delivery?;
                self.batch(first);
                self.ready.pop_front()
            }
            received = next_signal(&mut self.stream.signals) => {
                let signal = self.stream.signal(received)?;
                Some(self.signal_bytes(signal))
            }
            _ = self.heartbeat.tick() => Some(self.keep_alive()),
        }
    }
}

impl HttpStream {
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
                    .delivered(self.stream.transport, envelope.ts);
                self.framing.pieces(&envelope).map(Bytes::clone)
            }
            Delivery::Reset(reset) => [
                self.event(&ServerEvent::Reset(reset)),
                Bytes::new(),
                Bytes::new(),
            ],
        }
    }
}

/// How events are framed, per format.
impl HttpStream {
    /// One event (not a message: no `id:`), framed.
    fn event(&self, event: &ServerEvent) -> Bytes {
        match self.framing {
            Framing::Ndjson => Bytes::from(event::ndjson(event)),
            _ => Bytes::from(event::sse(None, event)),
        }
    }

    /// Presence and typing events, framed. On SSE they have no `id:`, so `Last-Event-ID`
    /// stays the last message's (they are never replayed).
    fn signal_bytes(&self, signal: Signal) -> Bytes {
        match (signal, self.framing) {
            (Signal::Batch(batch), Framing::Ndjson) => batch.ndjson.clone(),
            (Signal::Batch(batch), _) => batch.sse.clone(),
            (Signal::Event(event), _) => self.event(&event),
        }
    }

    fn keep_alive(&self) -> Bytes {
        match self.framing {
            Framing::Ndjson => Bytes::from_static(NDJSON_KEEP_ALIVE),
            _ => Bytes::from_static(SSE_KEEP_ALIVE),
        }
    }

    /// The event that ends a stream in the drain: when to come back. On SSE, a `retry:`
    /// field makes a plain EventSource (which reconnects by itself) wait as long as the page
    /// does.
    fn reconnect(&self, advice: protocol::RetryAdvice) -> Bytes {
        let event = ServerEvent::Reconnect(advice);
        match self.framing {
            Framing::Ndjson => self.event(&event),
            _ => Bytes::from(format!(
                "retry: {}\n{}",
                advice.retry_after_ms,
                event::sse(None, &event)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ndjson_heartbeat_is_the_ping_event() {
        assert_eq!(
            NDJSON_KEEP_ALIVE,
            event::ndjson(&ServerEvent::Ping).as_bytes()
        );
    }
}
