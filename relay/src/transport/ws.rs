//! WebSocket: `GET /api/rooms/{room}/ws?name=&after=&epoch=&limit=`.
//!
//! The relay answers the handshake itself and, once upgraded, takes the socket back from
//! hyper: one task per socket reads the client's frames (publishes, pongs) with tungstenite
//! as a codec (`codec`), and every byte it sends goes through the connection's
//! [`Outlet`]. While the client is caught up, the outlet is lent to the room, which writes
//! new messages to the socket directly — one `write` of the message's pre-encoded frame,
//! no wake-up of this task (see `bus/live.rs`); otherwise the task delivers from its
//! subscription in batches. Every write this task waits for is bounded by `send_timeout`,
//! so a client that stops reading costs one task and its buffers until then, and never
//! slows anyone else.
//!
//! Close codes the relay sends (defined, with what a client should do, in `protocol::close`):
//! - 1001 the client stopped answering pings;
//! - 1003 a binary frame (only text is spoken here);
//! - 1009 a message larger than `RELAY_MAX_FRAME_BYTES`;
//! - 1012 the relay is restarting: reason `{"retry_after_ms":N}`, sent at the stream's turn
//!   in the drain (`drain`);
//! - 1013 try again later: the relay is over `RELAY_ACCEPT_RATE` (reason
//!   `{"retry_after_ms":N}`, right after the handshake), or could not continue the stream
//!   (the bus failed): reconnect with `after`;
//! - 4008 the client read too slowly for `RELAY_SEND_TIMEOUT`: reconnect with `after`.

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use protocol::{ErrorCode, RetryAdvice, ServerEvent, Transport};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::Instrument;
use tungstenite::Message;

use self::codec::ClientFrames;
use super::inbound::Inbound;
use super::{OpenStream, Signal, StreamQuery, WRITE_BATCH, check_stream, heartbeat, next_signal};
use crate::bus::{Delivery, Framing, Outlet};
use crate::client::ClientKey;
use crate::drain::Closing;
use crate::error::ApiError;
use crate::event;
use crate::metrics::{Via, reason};
use crate::server::io::Guarded;
use crate::state::AppState;
use crate::wsframe;

pub(crate) mod codec;

/// How long a close frame may take to leave before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Bytes read from the socket at a time (on the stack: an idle connection holds none).
const READ_CHUNK: usize = 2 * 1024;

/// RFC 6455's key suffix for `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub mod close {
    pub use protocol::close::*;

    use crate::metrics::reason;

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

#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let stream_request = check_stream(&state, &room, &headers, query)?;
    // Not an upgrade request: answer that before admitting anything.
    let accept = accept_key(&headers)?;
    let on_upgrade = hyper::upgrade::on(&mut request);
    // Browsers' WebSockets send no `Last-Event-ID`: the cursor is `after`, in the URL.
    let opened = stream_request
        .open(&state, Transport::Ws, peer, client, None)
        .await;
    let tracker = state.sessions.clone();
    let stream = match opened {
        Ok(stream) => stream,
        // A browser cannot read the status of a refused handshake (it sees close code
        // 1006); a refusal that tells when to come back is said with a close code instead.
        Err(err) if err.code == ErrorCode::Overloaded || err.code == ErrorCode::ShuttingDown => {
            let code = match err.code {
                ErrorCode::Overloaded => close::TRY_AGAIN,
                _ => close::RESTART,
            };
            let advice = RetryAdvice {
                retry_after_ms: err.retry_after.unwrap_or_default().as_millis() as u64,
            };
            tokio::spawn(tracker.track_future(refuse(on_upgrade, code, advice)));
            return Ok(switching_protocols(accept));
        }
        Err(err) => return Err(err),
    };
    let span = tracing::info_span!("ws", room = %stream.room, %peer);
    let session = async move {
        match on_upgrade.await {
            Ok(upgraded) => match upgraded.downcast::<TokioIo<Guarded<TcpStream>>>() {
                Ok(parts) => {
                    let (tcp, held, early) = parts.io.into_inner().into_parts();
                    // Copied out, so that hyper's read buffer (which `read_buf` is a view of)
                    // is not held for the session's life.
                    // What hyper had buffered came first on the wire, then what it had not
                    // yet taken of the lean path's bytes.
                    let mut read = Vec::from(&parts.read_buf[..]);
                    read.extend_from_slice(&early);
                    drop((early, parts.read_buf));
                    Session::new(state, stream, client)
                        .run(Arc::new(tcp), read)
                        .await;
                    drop(held);
                }
                // The server hands every socket to hyper in a `Guarded`; anything else is a
                // bug, not a client's doing.
                Err(_) => tracing::error!("upgraded connection of an unexpected type"),
            },
            Err(err) => tracing::debug!(%err, "upgrade failed"),
        }
    };
    tokio::spawn(tracker.track_future(session.instrument(span)));
    Ok(switching_protocols(accept))
}

fn switching_protocols(accept: HeaderValue) -> Response {
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Completes a handshake only to close it at once with `code` and the advice as its reason.
async fn refuse(on_upgrade: hyper::upgrade::OnUpgrade, code: u16, advice: RetryAdvice) {
    let Ok(upgraded) = on_upgrade.await else {
        return;
    };
    let mut io = TokioIo::new(upgraded);
    let frame = wsframe::close(code, &advice_reason(advice));
    let _ = timeout(CLOSE_GRACE, async {
        tokio::io::AsyncWriteExt::write_all(&mut io, &frame).await?;
        tokio::io::AsyncWriteExt::flush(&mut io).await
    })
    .await;
}

/// The reason of close codes 1012 and 1013: `{"retry_after_ms":N}`.
fn advice_reason(advice: RetryAdvice) -> String {
    serde_json::to_string(&advice).unwrap_or_default()
}

/// Checks that the request is a WebSocket handshake (RFC 6455 §4.2.1) and computes its
/// `Sec-WebSocket-Accept`.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let refuse = |what: &str| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("expected a WebSocket upgrade: {what}"),
        )
    };
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(refuse(
            "`Connection: upgrade` and `Upgrade: websocket` are required",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(refuse("`Sec-WebSocket-Version: 13` is required"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| refuse("`Sec-WebSocket-Key` is required"))?;
    let mut hash = Sha1::new();
    hash.update(key.as_bytes());
    hash.update(ACCEPT_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(hash.finalize());
    HeaderValue::from_str(&accept).map_err(|_| refuse("unusable key"))
}

/// Why a session ended, and what (if anything) to tell the client.
#[derive(Debug)]
enum End {
    /// The client closed or vanished: nothing to send.
    Gone,
    Close(u16, Cow<'static, str>),
}

struct Session {
    state: AppState,
    stream: OpenStream,
    /// What the client sends: its budgets, and what its frames mean.
    inbound: Inbound,
    /// A ping was sent and its pong has not come back.
    awaiting_pong: bool,
}

/// The socket and the ways to it: the task reads it, and writes only through the outlet.
struct Wire {
    tcp: Arc<TcpStream>,
    outlet: Arc<Outlet>,
    codec: ClientFrames,
    /// The outlet is lent to the room (see `Subscription::lend`).
    lent: bool,
}

impl Session {
    fn new(state: AppState, stream: OpenStream, client: ClientKey) -> Session {
        Session {
            inbound: Inbound::new(&state, client, Via::Ws),
            state,
            stream,
            awaiting_pong: false,
        }
    }

    /// Serves the upgraded socket; `early` holds bytes the client sent right after its
    /// handshake, already read.
    async fn run(mut self, tcp: Arc<TcpStream>, early: Vec<u8>) {
        let outlet = Outlet::new(tcp.clone(), Framing::Ws, self.stream.conn.metrics.clone());
        let mut wire = Wire {
            tcp,
            outlet,
            codec: ClientFrames::new(self.state.config.max_frame_bytes),
            lent: false,
        };
        wire.codec.feed(&early);
        wire.outlet.push(event_frame(&self.stream.welcome()));
        let end = match self.flush(&wire).await {
            Ok(()) => match Box::pin(self.on_frames(&mut wire)).await {
                Ok(()) => self.pump(&mut wire).await,
                Err(end) => end,
            },
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            tracing::debug!(peer = %self.stream.conn.peer, code, %reason, "closing websocket");
            if let Some(refusal) = close::refusal(code) {
                self.stream.conn.metrics.rejected(refusal);
            }
            // Nothing may follow the close frame: the room stops writing here first.
            wire.outlet.reclaim();
            wire.outlet.push(wsframe::close(code, &reason));
            let _ = timeout(CLOSE_GRACE, wire.outlet.flush(CLOSE_GRACE)).await;
        }
        // The room stops writing to the socket; it closes when `wire` is dropped.
        wire.outlet.close();
    }

    async fn pump(&mut self, wire: &mut Wire) -> End {
        let mut ping = heartbeat(self.state.config.ws_ping);
        let mut closing = Closing::default();
        loop {
            if !wire.lent {
                wire.lent = self.stream.sub.lend(&wire.outlet);
            }
            let lent = wire.lent;
            // Every branch is cancel-safe: a branch that loses the race loses nothing.
            let step = tokio::select! {
                biased;
                advice = self.state.closing(&mut closing) => {
                    Err(End::Close(close::RESTART, advice_reason(advice).into()))
                }
                readable = wire.tcp.readable() => match readable {
                    Ok(()) => self.on_readable(wire).await,
                    Err(_) => Err(End::Gone),
                },
                _ = wire.outlet.woken() => self.on_woken(wire).await,
                delivery = self.stream.sub.next(), if !lent => match delivery {
                    Some(delivery) => self.deliver(wire, delivery).await,
                    None => Err(End::Close(close::TRY_AGAIN, "stream interrupted; reconnect with after".into())),
                },
                received = next_signal(&mut self.stream.signals) => match self.stream.signal(received) {
                    Some(Signal::Batch(batch)) => {
                        wire.outlet.push(batch.ws.clone());
                        self.flush(wire).await
                    }
                    Some(Signal::Event(event)) => {
                        wire.outlet.push(event_frame(&event));
                        self.flush(wire).await
                    }
                    None => Err(End::Close(close::TRY_AGAIN, "stream interrupted; reconnect with after".into())),
                },
                _ = ping.tick() => {
                    if self.awaiting_pong {
                        tracing::debug!(peer = %self.stream.conn.peer, "no pong; closing");
                        self.stream.conn.metrics.rejected(reason::PING_TIMEOUT);
                        Err(End::Close(close::GOING_AWAY, "ping timeout".into()))
                    } else {
                        self.awaiting_pong = true;
                        wire.outlet.push(wsframe::frame(wsframe::PING, &[]));
                        self.flush(wire).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// The room queued bytes the socket did not take, or took the outlet back.
    async fn on_woken(&mut self, wire: &mut Wire) -> Result<(), End> {
        self.flush(wire).await?;
        if wire.lent && !wire.outlet.is_lent() {
            wire.lent = false;
            self.stream.sub.reclaim(wire.outlet.reclaim());
        }
        Ok(())
    }

    /// Reads what the client sent and acts on every complete frame.
    async fn on_readable(&mut self, wire: &mut Wire) -> Result<(), End> {
        if !read_into(wire)? {
            return Ok(());
        }
        // Boxed: publishing (and its bus call) is rare on most sockets, and its future should
        // not be part of every idle connection's.
        Box::pin(self.on_frames(wire)).await
    }

    async fn on_frames(&mut self, wire: &mut Wire) -> Result<(), End> {
        let result = loop {
            let frame = match wire.codec.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => break Ok(()),
                Err(err) => break Err(read_error(&err)),
            };
            let step = match frame {
                Message::Text(text) => self.on_text(wire, text.as_str()).await,
                Message::Binary(_) => Err(End::Close(
                    close::UNSUPPORTED,
                    "binary frames are not supported; send text".into(),
                )),
                Message::Pong(_) => {
                    self.awaiting_pong = false;
                    Ok(())
                }
                // Answered by the codec (its output is sent below).
                Message::Ping(_) | Message::Frame(_) => Ok(()),
                Message::Close(_) => Err(End::Gone),
            };
            if let Err(end) = step {
                break Err(end);
            }
        };
        if result.is_err() {
            // The session ends (its last frame may be the reply to the client's close): the
            // room must not write after it.
            wire.outlet.reclaim();
        }
        // Pongs, and the reply to a client's close.
        if let Some(output) = wire.codec.take_output() {
            wire.outlet.push(output);
            let _ = self.flush(wire).await;
        }
        result
    }

    /// One text frame from the client: publish it, or answer with an error event and keep the
    /// socket open.
    async fn on_text(&mut self, wire: &Wire, frame: &str) -> Result<(), End> {
        match self.inbound.frame(&self.stream, frame).await {
            Some(answer) => {
                wire.outlet.push(event_frame(&answer));
                self.flush(wire).await
            }
            None => Ok(()),
        }
    }

    /// Queues `first` and whatever else is ready (up to `WRITE_BATCH`), then writes them.
    async fn deliver(&mut self, wire: &Wire, first: Delivery) -> Result<(), End> {
        let mut next = Some(first);
        let mut queued = 0;
        while let Some(delivery) = next.take() {
            match &delivery {
                Delivery::Message(envelope) => wire.outlet.push_message(envelope),
                Delivery::Reset(reset) => {
                    wire.outlet
                        .push(event_frame(&ServerEvent::Reset(reset.clone())));
                }
            }
            queued += 1;
            if queued < WRITE_BATCH {
                next = self.stream.sub.try_next();
            }
        }
        self.flush(wire).await
    }

    /// Writes everything queued, giving up when the socket takes nothing for `send_timeout`:
    /// a client that does not read for that long is too slow to keep.
    async fn flush(&self, wire: &Wire) -> Result<(), End> {
        match wire.outlet.flush(self.state.config.send_timeout).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() != io::ErrorKind::TimedOut => Err(End::Gone),
            Err(_) => {
                // Counted as `slow_consumer`; one line per client would let clients flood
                // the log.
                tracing::debug!(
                    peer = %self.stream.conn.peer,
                    room = %self.stream.room,
                    "websocket client too slow; closing so that it resumes with after"
                );
                Err(End::Close(
                    close::TOO_SLOW,
                    "too slow; reconnect with after".into(),
                ))
            }
        }
    }
}

/// Reads what the socket has into the codec: `Ok(true)` if anything came. (Not async: the
/// read buffer lives on the stack only for the read, not in every connection's future.)
fn read_into(wire: &mut Wire) -> Result<bool, End> {
    let mut chunk = [0u8; READ_CHUNK];
    match wire.tcp.try_read(&mut chunk) {
        Ok(0) => Err(End::Gone),
        Ok(n) => {
            wire.codec.feed(&chunk[..n]);
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(_) => Err(End::Gone),
    }
}

fn read_error(err: &tungstenite::Error) -> End {
    match err {
        tungstenite::Error::Capacity(_) => End::Close(close::TOO_BIG, "message too big".into()),
        _ => End::Gone,
    }
}

fn event_frame(event: &ServerEvent) -> Bytes {
    wsframe::frame(wsframe::TEXT, event::json(event).as_bytes())
}
