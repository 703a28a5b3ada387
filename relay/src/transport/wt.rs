//! WebTransport sessions: `https://HOST:RELAY_WT_ADDR-port/api/rooms/{room}/wt?name=&after=&epoch=&limit=&client=`.
//!
//! The page opens a session, then one bidirectional stream. On it the relay writes NDJSON,
//! the same lines as HTTP streaming (`welcome`, `message`, `reset`, `presence`, `typing`,
//! `{"type":"ping"}` every `RELAY_SSE_HEARTBEAT`, `reconnect` in the drain), plus `ack` and
//! `error` answers to the page's sends; the page writes its send frames, one per line, as
//! it would on a WebSocket (`{"type":"send","text":…,"key":…}`, `{"type":"typing"}`).
//!
//! Refusals: a foreign `Origin` is answered 403 and a path that is not a room's session 404,
//! before the session opens; any other refusal (a bad room or name, a full relay, a shutdown)
//! opens the session so that the page can be told why: its stream carries the `error` event,
//! then the session closes (1012 for `shutting_down`, 1013 otherwise). A line longer
//! than `RELAY_MAX_FRAME_BYTES` is answered `payload_too_large` and closes the session with
//! 1009; a reader that takes nothing for `RELAY_SEND_TIMEOUT` is closed with 4008 (it
//! resumes from its last id), as on WebSockets.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri, header};
use bytes::{BufMut, Bytes, BytesMut};
use protocol::api::{Endpoint, PREFIX};
use protocol::{ErrorCode, ServerEvent, Transport, TransportInfo, close};
use tokio::time::timeout;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::SessionRequest;
use wtransport::{Connection, RecvStream, SendStream, VarInt};

use super::inbound::Inbound;
use super::{OpenStream, WRITE_BATCH, check_stream, heartbeat, next_signal};
use crate::budget::ClientConnection;
use crate::bus::{Delivery, Framing};
use crate::client::ClientKey;
use crate::drain::Closing;
use crate::error::ApiError;
use crate::event;
use crate::metrics::Via;
use crate::state::AppState;

/// How long the last lines (an error, a `reconnect`) may take to leave before the session is
/// dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Bytes read from the stream at a time.
const READ_CHUNK: usize = 2 * 1024;

/// `GET /api/transport-info`: where the WebTransport endpoint is, if the relay has one.
pub async fn info(State(state): State<AppState>, headers: HeaderMap) -> Json<TransportInfo> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Json(TransportInfo {
        webtransport: state.webtransport.get().map(|advert| advert.info(host)),
    })
}

/// Serves one incoming QUIC connection: its session request, then its session.
/// `handshake` holds the client's connection place until the session is admitted in its own
/// right (a refused session keeps a place while it is told why, or is let go at once).
pub async fn session(
    state: AppState,
    incoming: IncomingSession,
    client: ClientKey,
    handshake: ClientConnection,
) {
    let mut patience = state.config.header_timeout;
    let Some(Ok(request)) = setting_up(&state, patience, incoming).await else {
        return;
    };
    let peer = request.remote_address();
    // Given back first: admission takes the place again, as for every stream.
    drop(handshake);
    let opened = open(&state, &request, peer, client).await;
    let mut _refused = None;
    if let Err(err) = &opened {
        state.metrics.rejected(err.code.as_str());
        // Telling why takes a place of the address's again. Without one (it is at its
        // budget: that may be the refusal), the telling gets a second per step, not the
        // header timeout, so that refusals cannot pile up.
        _refused = state.budgets.open_connection(client);
        if _refused.is_none() {
            patience = CLOSE_GRACE;
        }
        // Answered with a status before the session opens: what the browser needs no
        // explanation for (its page asked for a foreign origin, or a path that is not ours).
        // The answer goes out on a stream whose credit the client grants: bounded.
        match err.code {
            ErrorCode::ForbiddenOrigin => {
                let _ = setting_up(&state, patience, request.forbidden()).await;
                return;
            }
            ErrorCode::NotFound => {
                let _ = setting_up(&state, patience, request.not_found()).await;
                return;
            }
            _ => {}
        }
    }
    let Some(Ok(connection)) = setting_up(&state, patience, request.accept()).await else {
        return;
    };
    let Some(Ok((send, recv))) = setting_up(&state, patience, connection.accept_bi()).await else {
        return;
    };
    let mut session = match opened {
        Ok(stream) => Session {
            inbound: Inbound::new(&state, client, Via::Wt),
            heartbeat: heartbeat(state.config.sse_heartbeat),
            closing: Closing::default(),
            send,
            state,
            stream,
        },
        Err(err) => {
            let mut send = send;
            let line = event::ndjson(&err.event());
            let _ = timeout(CLOSE_GRACE, send.write_all(line.as_bytes())).await;
            // As on a refused WebSocket: 1012 when the relay is going, 1013 otherwise.
            let code = match err.code {
                ErrorCode::ShuttingDown => close::RESTART,
                _ => close::TRY_AGAIN,
            };
            finish(&connection, send, code, "refused").await;
            return;
        }
    };
    let end = session.run(recv).await;
    match end {
        End::Finish => finish(&connection, session.send, close::RESTART, "restarting").await,
        End::Close(code, why) => {
            if let Some(refusal) = super::ws::close::refusal(code) {
                session.stream.conn.metrics.rejected(refusal);
            }
            // What was written (the error that says why) goes out first, within a bound.
            finish(&connection, session.send, code, why).await;
        }
        End::Gone => {}
    }
}

/// One step of a session's setting up (handshake, request, stream, the answer to a refusal),
/// bounded by `limit` (`RELAY_HEADER_TIMEOUT`, as an HTTP request's head is) and, once the
/// relay starts to stop, by `CLOSE_GRACE` from then: the drain waits for every session, and
/// one still setting up must not hold it to the deadline. `None` when the step did not end.
async fn setting_up<F: std::future::IntoFuture>(
    state: &AppState,
    limit: Duration,
    step: F,
) -> Option<F::Output> {
    let step = timeout(limit, step.into_future());
    tokio::pin!(step);
    tokio::select! {
        biased;
        done = &mut step => done.ok(),
        _ = state.shutdown.cancelled() => timeout(CLOSE_GRACE, step).await.ok()?.ok(),
    }
}

/// The session request's room and query, checked as every stream's are, and admitted. (The
/// request budget was spent before the handshake: see `webtransport::accept`.)
async fn open(
    state: &AppState,
    request: &SessionRequest,
    peer: SocketAddr,
    client: ClientKey,
) -> Result<OpenStream, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such WebTransport path");
    let uri: Uri = request.path().parse().map_err(|_| not_found())?;
    let room = uri
        .path()
        .strip_prefix(PREFIX)
        .and_then(|path| path.strip_prefix("/rooms/"))
        .and_then(|path| path.strip_suffix(&format!("/{}", wt_name())))
        .ok_or_else(not_found)?;
    // The host it names, as every HTTP request's is checked (DNS rebinding).
    if !state.hosts.allows(request.authority()) {
        return Err(ApiError::new(
            ErrorCode::InvalidHost,
            "this host name is not served here (RELAY_ALLOWED_HOSTS)",
        ));
    }
    state.origins.check_webtransport(
        request.origin(),
        request.authority(),
        state.config.addr.port(),
    )?;
    check_stream(state, room, &HeaderMap::new(), Query::try_from_uri(&uri))?
        .open(state, Transport::WebTransport, peer, client, None)
        .await
}

/// The last segment of the session path (`wt`).
fn wt_name() -> &'static str {
    Endpoint::Wt.route().rsplit('/').next().unwrap_or_default()
}

/// Ends the session after the last lines: the stream is finished, and the peer given a moment
/// to read them and close; then the relay closes with `code`.
async fn finish(connection: &Connection, mut send: SendStream, code: u16, why: &str) {
    let _ = timeout(CLOSE_GRACE, async {
        let _ = send.finish().await;
        connection.closed().await;
    })
    .await;
    connection.close(VarInt::from_u32(code.into()), why.as_bytes());
}

struct Session {
    state: AppState,
    stream: OpenStream,
    inbound: Inbound,
    send: SendStream,
    heartbeat: tokio::time::Interval,
    /// The session's turn in the drain, once the relay is shutting down.
    closing: Closing,
}

/// How a session ends.
enum End {
    /// The client went away, or the stream broke: nothing to say.
    Gone,
    /// The drain: `reconnect` was written; finish the stream.
    Finish,
    /// Close with this code (`protocol::close`) and reason.
    Close(u16, &'static str),
}

impl Session {
    async fn run(&mut self, mut recv: RecvStream) -> End {
        let welcome = Bytes::from(event::ndjson(&self.stream.welcome()));
        if let Err(end) = self.write(welcome).await {
            return end;
        }
        let max_line = self.state.config.max_frame_bytes;
        let mut partial: Vec<u8> = Vec::new();
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            // Every branch is cancel-safe (quinn's `read` is).
            let result = tokio::select! {
                biased;
                advice = self.state.closing(&mut self.closing) => {
                    let line = event::ndjson(&ServerEvent::Reconnect(advice));
                    return match self.write(Bytes::from(line)).await {
                        Ok(()) => End::Finish,
                        Err(end) => end,
                    };
                }
                read = recv.read(&mut chunk) => match read {
                    Ok(Some(n)) => self.on_bytes(&chunk[..n], &mut partial, max_line).await,
                    Ok(None) | Err(_) => Err(End::Gone),
                },
                delivery = self.stream.sub.next() => match delivery {
                    Some(first) => self.deliver(first).await,
                    None => Err(End::Close(close::GOING_AWAY, "the room is gone")),
                },
                received = next_signal(&mut self.stream.signals) => {
                    match self.stream.signal(received) {
                        Some(super::Signal::Batch(batch)) => self.write(batch.ndjson.clone()).await,
                        Some(super::Signal::Event(event)) => {
                            self.write(Bytes::from(event::ndjson(&event))).await
                        }
                        None => Err(End::Gone),
                    }
                }
                _ = self.heartbeat.tick() => {
                    self.write(Bytes::from(event::ndjson(&ServerEvent::Ping))).await
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// Bytes from the page: each complete line is a frame.
    async fn on_bytes(
        &mut self,
        bytes: &[u8],
        partial: &mut Vec<u8>,
        max_line: usize,
    ) -> Result<(), End> {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(partial);
            self.on_line(&line, max_line).await?;
        }
        partial.extend_from_slice(rest);
        if partial.len() > max_line {
            return self.too_big().await;
        }
        Ok(())
    }

    async fn on_line(&mut self, line: &[u8], max_line: usize) -> Result<(), End> {
        if line.len() > max_line {
            return self.too_big().await;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            // Not the protocol at all: said once, then the session closes (answering every
            // such line would let a few bytes in buy many out).
            let refusal = ApiError::new(ErrorCode::BadRequest, "a line is not valid UTF-8");
            let _ = self
                .write(Bytes::from(event::ndjson(&refusal.event())))
                .await;
            return Err(End::Close(close::UNSUPPORTED, "lines must be UTF-8 JSON"));
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        match self.inbound.frame(&self.stream, text).await {
            Some(answer) => self.write(Bytes::from(event::ndjson(&answer))).await,
            None => Ok(()),
        }
    }

    async fn too_big(&mut self) -> Result<(), End> {
        let refusal = ApiError::new(
            ErrorCode::PayloadTooLarge,
            "a line is longer than the relay accepts (RELAY_MAX_FRAME_BYTES)",
        );
        let _ = self
            .write(Bytes::from(event::ndjson(&refusal.event())))
            .await;
        Err(End::Close(close::TOO_BIG, "line too long"))
    }

    /// Writes `first` and whatever else is ready (up to `WRITE_BATCH`) in one write.
    async fn deliver(&mut self, first: Delivery) -> Result<(), End> {
        let mut out = BytesMut::new();
        let mut next = Some(first);
        let mut queued = 0;
        while let Some(delivery) = next.take() {
            match delivery {
                Delivery::Message(envelope) => {
                    for piece in Framing::Ndjson.pieces(&envelope) {
                        out.put_slice(piece);
                    }
                    self.stream
                        .conn
                        .metrics
                        .delivered(Transport::WebTransport, envelope.ts);
                }
                Delivery::Reset(reset) => {
                    out.put_slice(event::ndjson(&ServerEvent::Reset(reset)).as_bytes())
                }
            }
            queued += 1;
            if queued < WRITE_BATCH {
                next = self.stream.sub.try_next();
            }
        }
        self.write(out.freeze()).await
    }

    /// Writes within `RELAY_SEND_TIMEOUT`: QUIC's send window (see `webtransport`) bounds
    /// what waits for a reader; one that takes nothing for that long is let go.
    async fn write(&mut self, bytes: Bytes) -> Result<(), End> {
        match timeout(self.state.config.send_timeout, self.send.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => {
                // Counted as `slow_consumer` (by the close code).
                tracing::debug!(peer = %self.stream.conn.peer, "webtransport client too slow; closing so that it resumes with after");
                Err(End::Close(
                    close::TOO_SLOW,
                    "too slow; reconnect with after",
                ))
            }
        }
    }
}
