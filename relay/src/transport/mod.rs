//! The ways a page can follow a room. Each module owns its routes' handlers:
//! - [`ws`]: WebSocket, both directions on one socket;
//! - [`sse`]: Server-Sent Events, server to client (clients publish with `POST`);
//! - [`stream`]: HTTP streaming, NDJSON lines on one long response (clients `POST`); it and
//!   SSE share their body, [`http_stream`];
//! - [`wt`]: WebTransport sessions, NDJSON both ways on one bidirectional QUIC stream (the
//!   UDP endpoint itself is the `webtransport` module);
//! - [`poll`]: `GET …/messages` for short and long polling, and `POST …/messages` to publish,
//!   which every transport but WebSocket and WebTransport uses;
//! - [`inbound`]: what the two-way transports' frames mean (publish, typing).
//!
//! Every streaming transport opens the same way, through [`check_stream`] (origin, room,
//! query) and [`StreamRequest::open`] (name, admission, and a subscription at the client's
//! cursor); it then greets with
//! [`OpenStream::welcome`] and writes deliveries in batches of at most [`WRITE_BATCH`], with a
//! [`heartbeat`] to keep idle connections alive. So a new streaming transport is one module
//! here that turns an [`OpenStream`] into bytes on its wire, plus one line in the router.

mod http_stream;
mod inbound;
pub(crate) mod poll;
pub(crate) mod presence;
pub(crate) mod sse;
pub(crate) mod stream;
pub(crate) mod ws;
pub(crate) mod wt;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use protocol::limits::MAX_READ_MESSAGES;
use protocol::{ErrorCode, ServerEvent, Transport, Welcome};
use serde::Deserialize;
use tokio::time::{Interval, MissedTickBehavior, interval_at};

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::bus::{Cursor, Subscription};
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::presence::hub::Batch;
use crate::presence::{Attached, Presence, Who};
use crate::state::{AppState, Connection};
use crate::validate::RoomName;

/// The name used when a streaming client gives none (`websocat`, the tutorial's snippet).
pub const ANONYMOUS: &str = "anonymous";

/// Most deliveries written before one flush. Under load several deliveries are ready at
/// once; writing them with one flush (one syscall) instead of one each is most of the relay's
/// per-message cost. Bounded so that pings, heartbeats and the client's own frames still get
/// a turn.
pub const WRITE_BATCH: usize = 64;

/// Query of the streaming endpoints (`/ws`, `/events`, `/stream`, and WebTransport's `/wt`).
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    pub name: Option<String>,
    /// The tab's client id: the same member on every transport (see `presence`).
    pub client: Option<String>,
    pub after: Option<u64>,
    pub epoch: Option<String>,
    pub limit: Option<usize>,
}

/// The cursor of a poll or stream request: `after` within `epoch` (an empty epoch is none).
pub fn cursor(after: Option<u64>, epoch: Option<String>) -> Cursor {
    Cursor {
        after,
        epoch: epoch.filter(|e| !e.is_empty()),
    }
}

/// How many messages a newcomer (or a poll) is shown: `limit` if given, capped by what is
/// retained and by what one read carries (`MAX_READ_MESSAGES`: a larger `limit` is capped,
/// not refused).
pub fn join_limit(state: &AppState, limit: Option<usize>) -> usize {
    limit
        .unwrap_or(state.config.join_history)
        .min(state.bus.retention())
        .min(MAX_READ_MESSAGES)
}

/// A stream that passed every check and holds its subscription and its slot.
pub struct OpenStream {
    pub transport: Transport,
    pub room: RoomName,
    /// The validated `name`, or [`ANONYMOUS`]; WebSocket publishes carry it.
    pub name: String,
    // Fields drop in order: the subscription goes before the slot, so that a stream counted
    // as closed in `/metrics` no longer holds a place in its room.
    pub sub: Subscription,
    /// The room's presence and typing signals (subscribed before the welcome's snapshot),
    /// for a client that named itself (`client=`): a tool that did not is still a member,
    /// but its stream carries what it always did, messages only.
    pub signals: Option<broadcast::Receiver<Arc<Batch>>>,
    /// The stream's membership of the room.
    pub member: Attached,
    state_presence: Presence,
    /// Held for the connection slot and its metrics; released with the stream.
    pub conn: Connection,
}

impl OpenStream {
    /// The stream's first event: the tutorial's "connection established", with the epoch and
    /// the room's newest id at the seam.
    pub fn welcome(&self) -> ServerEvent {
        ServerEvent::Welcome(Welcome {
            transport: self.transport,
            room: self.room.to_string(),
            epoch: self.sub.epoch().to_owned(),
            last_id: self.sub.head(),
            presence: self.signals.as_ref().map(|_| {
                self.state_presence
                    .snapshot(&self.room, Some(self.member.id()))
            }),
        })
    }

    /// What to write for a batch of signals, or for signals missed (the whole list again).
    pub fn signal(&mut self, received: Result<Arc<Batch>, RecvError>) -> Option<Signal> {
        match received {
            Ok(batch) => Some(Signal::Batch(batch)),
            Err(RecvError::Lagged(_)) => Some(Signal::Event(
                self.state_presence
                    .resync(&self.room, Some(self.member.id())),
            )),
            // The room's hub is gone only with the relay.
            Err(RecvError::Closed) => None,
        }
    }
}

/// The next batch of a stream's signals (never, for a stream without them). Cancel-safe.
pub async fn next_signal(
    signals: &mut Option<broadcast::Receiver<Arc<Batch>>>,
) -> Result<Arc<Batch>, RecvError> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// Signals to write to a stream.
pub enum Signal {
    Batch(Arc<Batch>),
    Event(ServerEvent),
}

/// A streaming request whose origin, room and query are acceptable: the first half of the
/// handshake every streaming transport shares, before anything is allocated. A transport may
/// check its own preconditions (the WebSocket upgrade) between the two halves.
pub struct StreamRequest {
    room: RoomName,
    query: StreamQuery,
}

/// Checks the origin, the room and the query of a streaming request.
pub fn check_stream(
    state: &AppState,
    room: &str,
    headers: &HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<StreamRequest, ApiError> {
    state.origins.check(headers)?;
    let room = RoomName::parse(room)?;
    let Query(query) = query?;
    Ok(StreamRequest { room, query })
}

impl StreamRequest {
    /// The second half: checks the name, admits the connection and subscribes at the
    /// client's cursor. `last_event_id` is given the request's headers by transports whose
    /// clients resume with a `Last-Event-ID` header (EventSource, which sends it when it
    /// reconnects by itself); it wins over the URL's `after`, which for such a client says
    /// only where it started (the page opens a new EventSource, without the header, on
    /// every reconnection).
    ///
    /// Subscribing here, before any upgrade or response, fixes the seam between history and
    /// live messages, and lets "too many rooms" answer as a plain HTTP error. The connection
    /// counts as open (`relay_connections`) once it is subscribed.
    pub async fn open(
        self,
        state: &AppState,
        transport: Transport,
        peer: SocketAddr,
        client: ClientKey,
        last_event_id: Option<&HeaderMap>,
    ) -> Result<OpenStream, ApiError> {
        let StreamRequest { room, query } = self;
        let name = match &query.name {
            Some(name) => state.limits.name(name)?,
            None => ANONYMOUS.to_owned(),
        };
        // `Last-Event-ID` is where an EventSource really is: it reconnects by itself with the
        // URL it was opened with, whose `after` only says where it started.
        let header = match last_event_id {
            Some(headers) => parse_last_event_id(headers)?,
            None => None,
        };
        let (after, epoch) = match header {
            // `EPOCH:ID` resumes exactly in that epoch, or is told it changed.
            Some((Some(epoch), after)) => (Some(after), Some(epoch)),
            Some((None, after)) => (Some(after), query.epoch),
            None => (query.after, query.epoch),
        };
        let client_id = match &query.client {
            Some(id) => Some(crate::validate::client_id(id)?),
            None => None,
        };
        let mut conn = state.admit(transport, &room, peer, client)?;
        let sub = state
            .subscribe(
                &room,
                &cursor(after, epoch),
                join_limit(state, query.limit),
                client,
            )
            .await?;
        conn.established();
        let signals = client_id.map(|_| state.presence.signals(&room));
        let who = Who {
            client: client_id,
            name: &name,
            owner: client,
        };
        let member = state.presence.attach(&room, who, transport);
        Ok(OpenStream {
            transport,
            room,
            name,
            sub,
            signals,
            member,
            state_presence: state.presence.clone(),
            conn,
        })
    }
}

/// The `Last-Event-ID` header: `EPOCH:ID` (what the relay sends as `id:`), or a bare `ID`
/// (the form before epochs, still accepted); `None` when absent or empty.
pub(crate) fn parse_last_event_id(
    headers: &HeaderMap,
) -> Result<Option<(Option<String>, u64)>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (epoch, id) = protocol::parse_event_id(text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            "Last-Event-ID must be an event id the relay sent (EPOCH:ID, or a bare ID)",
        )
    })?;
    Ok(Some((epoch.map(str::to_owned), id)))
}

/// A timer that first fires one `period` from now, and after a stall fires once rather than
/// in a burst: keep-alives (SSE comments, WebSocket pings) need no catching up.
pub fn heartbeat(period: Duration) -> Interval {
    let mut timer = interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}
