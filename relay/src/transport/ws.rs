//! WebSocket: `GET /api/rooms/{room}/ws?name=&after=&epoch=&limit=`.
//!
//! One task per socket selects over four things: the client's frames (publishes), the room's
//! subscription (deliveries), a ping timer and the shutdown token. Every write is bounded by
//! `send_timeout`, so a client that stops reading costs one task and its buffers until then,
//! and never slows anyone else: the room's live queue does not wait for it.
//!
//! Close codes the relay sends:
//! - 1001 the relay is shutting down, or the client stopped answering pings;
//! - 1003 a binary frame (only text is spoken here);
//! - 1009 a message larger than `RELAY_MAX_FRAME_BYTES`;
//! - 1013 the relay could not continue the stream (the bus failed): reconnect with `after`;
//! - 4008 the client read too slowly for `RELAY_SEND_TIMEOUT`: reconnect with `after`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use protocol::{ClientFrame, ErrorCode, ServerEvent, Transport};
use tokio::time::timeout;
use tracing::Instrument;

use super::{OpenStream, StreamQuery, WRITE_BATCH, check_stream, heartbeat};
use crate::bus::Delivery;
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::event;
use crate::metrics::{Via, reason};
use crate::rate::TokenBucket;
use crate::state::AppState;
use crate::validate::RoomName;

/// How long a close frame may take to leave before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Read buffer of a socket. tungstenite's default (128 KiB, allocated up front) made an idle
/// connection cost 136 KiB of RSS; with 2 KiB it costs 6.4 KiB (docs/BENCHMARKS.md). Clients
/// send short text frames; a larger one is read in several steps, up to
/// `RELAY_MAX_FRAME_BYTES`.
const READ_BUFFER: usize = 2 * 1024;
/// Bytes gathered before the socket is written to mid-batch (a flush writes the rest).
const WRITE_BUFFER: usize = 16 * 1024;

pub mod close {
    use crate::metrics::reason;

    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED: u16 = 1003;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN: u16 = 1013;
    pub const TOO_SLOW: u16 = 4008;

    /// The `relay_rejected_total` reason for closing with `code`, if it is a refusal.
    pub fn refusal(code: u16) -> Option<&'static str> {
        match code {
            UNSUPPORTED => Some(reason::BINARY_FRAME),
            TOO_BIG => Some(reason::FRAME_TOO_LARGE),
            TOO_SLOW => Some(reason::SLOW_CONSUMER),
            _ => None,
        }
    }
}

pub async fn upgrade(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let request = check_stream(&state, &room, &headers, query)?;
    // Not an upgrade request: answer that before admitting anything.
    let ws = ws.map_err(|rejection| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("expected a WebSocket upgrade: {}", rejection.body_text()),
        )
    })?;
    // Browsers' WebSockets send no `Last-Event-ID`: the cursor is `after`, in the URL.
    let stream = request
        .open(&state, Transport::Ws, peer, client, None)
        .await?;
    let max = state.config.max_frame_bytes;
    let tracker = state.sessions.clone();
    let span = tracing::info_span!("ws", room = %stream.room, %peer);
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let session = Session::new(state, stream, client).run(socket);
            tracker.track_future(session.instrument(span))
        }))
}

/// Why a session ended, and what (if anything) to tell the client.
#[derive(Debug)]
enum End {
    /// The client closed or vanished: nothing to send.
    Gone,
    Close(u16, &'static str),
}

struct Session {
    state: AppState,
    stream: OpenStream,
    /// This socket's own send budget (`RELAY_RATE`).
    bucket: TokenBucket,
    /// Whose publish budget (`RELAY_CLIENT_RATE`) this socket's messages also spend.
    client: ClientKey,
}

type Sink = SplitSink<WebSocket, Message>;

impl Session {
    fn new(state: AppState, stream: OpenStream, client: ClientKey) -> Session {
        let bucket = TokenBucket::new(state.config.rate_limit(), Instant::now());
        Session {
            state,
            stream,
            bucket,
            client,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let welcome = event_frame(&self.stream.welcome());
        let end = match self.send(&mut sink, welcome).await {
            Ok(()) => self.pump(&mut sink, &mut stream).await,
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            tracing::debug!(peer = %self.stream.conn.peer, code, reason, "closing websocket");
            if let Some(refusal) = close::refusal(code) {
                self.stream.conn.metrics.rejected(refusal);
            }
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
        }
    }

    async fn pump(
        &mut self,
        sink: &mut Sink,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
    ) -> End {
        let mut ping = heartbeat(self.state.config.ws_ping);
        let mut awaiting_pong = false;
        let shutdown = self.state.shutdown.clone();
        loop {
            // Every branch is cancel-safe: a branch that loses the race loses nothing.
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Err(End::Close(close::GOING_AWAY, "relay shutting down")),
                inbound = stream.next() => match inbound {
                    Some(Ok(Message::Text(text))) => self.on_text(sink, &text).await,
                    Some(Ok(Message::Binary(_))) => Err(End::Close(
                        close::UNSUPPORTED,
                        "binary frames are not supported; send text",
                    )),
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        Ok(())
                    }
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) | None => Err(End::Gone),
                    Some(Err(err)) => Err(read_error(err)),
                },
                delivery = self.stream.sub.next() => match delivery {
                    Some(delivery) => self.deliver(sink, delivery).await,
                    None => Err(End::Close(close::TRY_AGAIN, "stream interrupted; reconnect with after")),
                },
                _ = ping.tick() => {
                    if awaiting_pong {
                        tracing::debug!(peer = %self.stream.conn.peer, "no pong; closing");
                        self.stream.conn.metrics.rejected(reason::PING_TIMEOUT);
                        Err(End::Close(close::GOING_AWAY, "ping timeout"))
                    } else {
                        awaiting_pong = true;
                        self.send(sink, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// One text frame from the client: publish it, or answer with an error event and keep the
    /// socket open.
    async fn on_text(&mut self, sink: &mut Sink, frame: &str) -> Result<(), End> {
        match self.publish(frame).await {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::debug!(peer = %self.stream.conn.peer, code = err.code.as_str(), "frame refused");
                self.stream.conn.metrics.rejected(err.code.as_str());
                self.send(sink, event_frame(&err.event())).await
            }
        }
    }

    async fn publish(&mut self, frame: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        self.bucket.take(now).map_err(ApiError::rate_limited)?;
        self.state
            .budgets
            .publish
            .take(self.client, now)
            .map_err(ApiError::rate_limited)?;
        // A frame that looks like JSON must be a valid client frame; anything else is the
        // message text itself, as the tutorial's `webSocket.send('hello')` sends it.
        let text = if frame.trim_start().starts_with('{') {
            let ClientFrame::Send { text } = serde_json::from_str(frame)?;
            text
        } else {
            frame.to_owned()
        };
        let text = self.state.limits.text(&text)?;
        self.state
            .publish(
                &self.stream.room,
                self.stream.name.clone(),
                text,
                self.client,
            )
            .await?;
        self.stream.conn.metrics.published(Via::Ws);
        Ok(())
    }

    /// Writes `first` and whatever else is ready (up to `WRITE_BATCH`), then flushes once.
    async fn deliver(&mut self, sink: &mut Sink, first: Delivery) -> Result<(), End> {
        let OpenStream {
            conn, sub, room, ..
        } = &mut self.stream;
        let (peer, metrics) = (conn.peer, &conn.metrics);
        let write = async {
            let mut next = Some(first);
            let mut written = 0;
            while let Some(delivery) = next.take() {
                sink.feed(delivery_frame(&delivery)).await?;
                if let Delivery::Message(envelope) = &delivery {
                    metrics.delivered(Transport::Ws, envelope.ts);
                }
                written += 1;
                if written < WRITE_BATCH {
                    next = sub.try_next();
                }
            }
            sink.flush().await
        };
        bounded(self.state.config.send_timeout, peer, room, write).await
    }

    /// Writes one frame.
    async fn send(&self, sink: &mut Sink, message: Message) -> Result<(), End> {
        let stream = &self.stream;
        let send_timeout = self.state.config.send_timeout;
        bounded(
            send_timeout,
            stream.conn.peer,
            &stream.room,
            sink.send(message),
        )
        .await
    }
}

/// Runs a write, giving up after `send_timeout`: a client that does not read for that long is
/// too slow to keep.
async fn bounded(
    send_timeout: Duration,
    peer: SocketAddr,
    room: &RoomName,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), End> {
    match timeout(send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => {
            // Counted as `slow_consumer`; one line per client would let clients flood the log.
            tracing::debug!(
                %peer,
                %room,
                "websocket client too slow; closing so that it resumes with after"
            );
            Err(End::Close(
                close::TOO_SLOW,
                "too slow; reconnect with after",
            ))
        }
    }
}

fn read_error(err: axum::Error) -> End {
    let too_big = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
    if too_big {
        End::Close(close::TOO_BIG, "message too big")
    } else {
        End::Gone
    }
}

fn delivery_frame(delivery: &Delivery) -> Message {
    match delivery {
        // The shared, already-serialized bytes: cloning only bumps a reference count.
        Delivery::Message(envelope) => Message::Text(envelope.json.clone()),
        Delivery::Reset(reset) => event_frame(&ServerEvent::Reset(reset.clone())),
    }
}

fn event_frame(event: &ServerEvent) -> Message {
    Message::Text(event::json(event).into())
}
