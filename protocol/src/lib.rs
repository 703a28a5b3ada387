//! Wire types shared by the relay and the page.
//!
//! Everything the relay sends is a [`ServerEvent`]: a JSON object whose `"type"` says what it
//! is. The same message object travels on every transport — as a WebSocket text frame, as the
//! `data:` of a Server-Sent Event, and inside the `messages` array of a poll answer — so one
//! client-side decoder serves all four. `docs/PROTOCOL.md` is the prose version of this file.
//!
//! This crate depends on serde alone so that it builds for `wasm32-unknown-unknown` as well as
//! natively.

pub mod api;
pub mod close;
pub mod limits;
pub mod presence;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use presence::{Member, PresenceChange, PresenceSnapshot, Typing};

/// How a client talks to the relay.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
    Longpoll,
    Shortpoll,
    /// HTTP streaming: one long `fetch` response of NDJSON lines.
    Stream,
    /// WebTransport (HTTP/3 over QUIC): one bidirectional stream of NDJSON lines.
    #[serde(rename = "webtransport")]
    WebTransport,
}

impl Transport {
    // Appended, never reordered: the position is the index of per-transport tables, and the
    // toggle's order.
    pub const ALL: [Transport; 6] = [
        Transport::Ws,
        Transport::Sse,
        Transport::Longpoll,
        Transport::Shortpoll,
        Transport::Stream,
        Transport::WebTransport,
    ];

    /// The position in [`Transport::ALL`]: an index for per-transport tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name people see: the page's toggle, status line and statistics.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Ws => "WebSocket",
            Transport::Sse => "Server-Sent Events",
            Transport::Longpoll => "Long polling",
            Transport::Shortpoll => "Short polling",
            Transport::Stream => "HTTP streaming",
            Transport::WebTransport => "WebTransport",
        }
    }

    /// The wire name, as used in `?transport=` and in welcome events.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
            Transport::Longpoll => "longpoll",
            Transport::Shortpoll => "shortpoll",
            Transport::Stream => "stream",
            Transport::WebTransport => "webtransport",
        }
    }

    /// Whether the transport keeps a connection open that the relay writes to (as opposed to
    /// polls, which are requests).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Longpoll | Transport::Shortpoll)
    }
}

/// A `?transport=` value (or a command-line argument) that names no transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTransport(pub String);

impl fmt::Display for UnknownTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Quoted by hand: the page is built without `Debug` formatting (docs/BENCHMARKS.md).
        write!(
            f,
            "\"{}\" is not one of ws, sse, longpoll, shortpoll, stream, webtransport",
            self.0
        )
    }
}

impl std::error::Error for UnknownTransport {}

impl FromStr for Transport {
    type Err = UnknownTransport;

    /// Parses a wire name, as [`Transport::as_str`] writes it.
    fn from_str(value: &str) -> Result<Transport, UnknownTransport> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| UnknownTransport(value.to_owned()))
    }
}

/// One chat message. `id` is strictly increasing within a room and is the cursor every
/// transport resumes from (`after=`, SSE `Last-Event-ID`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub room: String,
    pub from: String,
    pub text: String,
    /// Unix time in milliseconds, taken by the relay when it accepted the message.
    pub ts: u64,
    /// The sender's idempotency key, when it gave one: how a sender on any transport
    /// recognises its own message (and knows it was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Everything the relay pushes to a client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    Welcome(Welcome),
    Message(Message),
    Reset(Reset),
    Error(ErrorBody),
    /// The relay is about to end this stream (it is shutting down): come back after the
    /// advised delay, resuming from the last id. Sent on streams that have no close code
    /// (SSE); a WebSocket gets the same advice as the reason of close code 1012.
    Reconnect(RetryAdvice),
    /// To the sender of a WebSocket send that carried a key: the message's id (the original
    /// one when the key was seen before and nothing new was stored).
    Ack(Ack),
    /// Who joined and who left (see [`presence`]): no id, never stored or replayed.
    Presence(PresenceChange),
    /// Someone is typing (see [`presence`]): no id, never stored or replayed.
    Typing(Typing),
    /// A heartbeat on the NDJSON transports (HTTP streaming, WebTransport), which have no
    /// comment or ping frame of their own: it keeps proxies from timing the stream out and
    /// tells the page the stream is alive. Carries nothing; ignore it.
    Ping,
}

/// The answer to a keyed WebSocket send.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: u64,
    pub key: String,
    /// True when the key had been seen: nothing was stored this time.
    #[serde(default)]
    pub duplicate: bool,
}

impl ServerEvent {
    /// The event's `"type"`, which is also its SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            ServerEvent::Welcome(_) => "welcome",
            ServerEvent::Message(_) => "message",
            ServerEvent::Reset(_) => "reset",
            ServerEvent::Error(_) => "error",
            ServerEvent::Reconnect(_) => "reconnect",
            ServerEvent::Ack(_) => "ack",
            ServerEvent::Presence(_) => "presence",
            ServerEvent::Typing(_) => "typing",
            ServerEvent::Ping => "ping",
        }
    }
}

/// `GET /api/transport-info`: how to reach the transports that do not live on the page's own
/// origin. `webtransport` is `null` when the relay does not serve it (`RELAY_WT_ADDR` unset).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TransportInfo {
    pub webtransport: Option<WebTransportInfo>,
}

/// Where the relay's WebTransport sessions are, and which certificates to trust.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WebTransportInfo {
    /// `https://HOST:PORT`: the session URL is this, then `/api/rooms/{room}/wt?…`.
    pub url: String,
    /// For a self-signed certificate, the SHA-256 of each certificate the relay may present
    /// (lowercase hex), for the page's `serverCertificateHashes`; empty when the relay has
    /// a certificate browsers trust.
    pub cert_hashes: Vec<String>,
}

/// A message's SSE `id:`: `EPOCH:ID`, so that the `Last-Event-ID` an EventSource sends back
/// names the history its id belongs to (ids restart in a new epoch).
pub fn event_id(epoch: &str, id: u64) -> String {
    format!("{epoch}:{id}")
}

/// Reads a `Last-Event-ID`: `EPOCH:ID` gives the epoch and the id; a bare `ID` (the form
/// before epochs were added, still accepted) gives the id alone. `None` if it is neither.
pub fn parse_event_id(text: &str) -> Option<(Option<&str>, u64)> {
    match text.rsplit_once(':') {
        Some((epoch, id)) if !epoch.is_empty() => Some((Some(epoch), id.parse().ok()?)),
        Some(_) => None,
        None => Some((None, text.parse().ok()?)),
    }
}

/// When to come back: the `reconnect` event's body, and the JSON reason of WebSocket close
/// codes 1012 and 1013 (`{"retry_after_ms":N}`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAdvice {
    pub retry_after_ms: u64,
}

/// The first event on a WebSocket or SSE stream: the tutorial's "connection established".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub transport: Transport,
    pub room: String,
    /// Names the lifetime of the room's history; ids are only comparable within one epoch.
    pub epoch: String,
    /// The newest id in the room when the stream opened (0 for an empty room).
    pub last_id: u64,
    /// Who is in the room, this connection's member included (absent from relays before
    /// presence, and from tools that build welcomes of their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceSnapshot>,
}

/// Sent when the client's cursor cannot be continued without a gap: the messages that follow
/// are the ones the relay still has, starting at `oldest_id`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    pub reason: ResetReason,
    /// The oldest id the relay still retains for this room (`last_id + 1` when it has none).
    pub oldest_id: u64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// The client's `epoch` is not the room's, or its `after` is newer than anything the room
    /// has: its ids belong to a history that no longer exists (e.g. the relay restarted).
    EpochChanged,
    /// Messages newer than the client's `after` were dropped from the bounded history before
    /// the client could read them.
    HistoryGap,
}

/// An error: the body of every non-2xx HTTP answer and the `error` event on WebSocket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable; may change between versions. Match on `code`.
    pub message: String,
    /// For `rate_limited`, `too_many_connections`, `overloaded` and `shutting_down`: when
    /// the next attempt may succeed (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For a refused WebSocket send that carried a key: that key, so that the sender knows
    /// which of its sends this is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Stable error codes. Adding one is compatible; renaming one is not.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, a missing field or an unparsable query parameter.
    BadRequest,
    InvalidRoom,
    InvalidName,
    /// Empty (after trimming) or not valid text.
    InvalidText,
    TextTooLong,
    PayloadTooLarge,
    /// A request body that did not arrive within the relay's time limit.
    RequestTimeout,
    RateLimited,
    TooManyConnections,
    TooManyRooms,
    ForbiddenOrigin,
    /// The `Host` header names a host the relay does not serve (DNS rebinding).
    InvalidHost,
    NotFound,
    MethodNotAllowed,
    ShuttingDown,
    /// The message bus cannot be reached.
    Unavailable,
    Internal,
    /// The relay admits new streams at `RELAY_ACCEPT_RATE` and is over it: come back after
    /// `retry_after_ms`.
    Overloaded,
    /// The relay could not learn whether the message was stored (its bus did not answer
    /// in time after the message was sent to it). Sending again with the same idempotency
    /// key is safe: it is stored at most once.
    OutcomeUnknown,
    /// The idempotency key was already used for another sender or text: nothing was stored.
    /// Use a fresh key for a new message.
    KeyReused,
}

impl ErrorCode {
    /// Every code, so that counters by reason can start at zero (a series that appears only
    /// after the first refusal breaks `rate()` in Prometheus).
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidName,
        ErrorCode::InvalidText,
        ErrorCode::TextTooLong,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::TooManyRooms,
        ErrorCode::ForbiddenOrigin,
        ErrorCode::InvalidHost,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Overloaded,
        ErrorCode::OutcomeUnknown,
        ErrorCode::KeyReused,
    ];

    /// The wire name of the code, as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidText => "invalid_text",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ForbiddenOrigin => "forbidden_origin",
            ErrorCode::InvalidHost => "invalid_host",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::KeyReused => "key_reused",
        }
    }
}

/// What a client sends on a WebSocket as JSON. A text frame whose first non-blank character
/// is not `{` is taken as the message text itself, so `webSocket.send("hello")` works too.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Send {
        text: String,
        /// An idempotency key (see `limits::is_valid_key`): a send repeated with the same key
        /// is stored once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The sender is typing (`{"type":"typing"}`): shown to the room's others under the
    /// connection's name; at most one per `presence::TYPING_EVERY_MS`, more are dropped.
    Typing,
}

/// `POST /api/rooms/{room}/messages` body.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PublishRequest {
    pub from: String,
    pub text: String,
    /// The sending tab's client id (`presence::is_valid_client_id`): a sign of life for its
    /// membership. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// `201 Created` answer to a publish.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishResponse {
    pub id: u64,
}

/// `GET /api/rooms/{room}/messages` answer. (The relay writes it around each message's
/// already-serialized bytes rather than through this type; a unit test there parses its
/// output with this type.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PollResponse {
    /// Messages newer than the request's cursor, in id order.
    pub messages: Vec<Message>,
    /// The cursor for the next request (`after=`): the id of the last message in `messages`,
    /// or, when `messages` is empty, the room's newest id (or the unchanged cursor if `limit`
    /// left everything out).
    pub last_id: u64,
    pub epoch: String,
    /// Present when the request's cursor could not be continued (see [`Reset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<Reset>,
    /// True when `limit` cut the answer short: ask again at once with `after=last_id`.
    #[serde(default)]
    pub more: bool,
    /// Present when the relay is shutting down: poll again (anywhere) after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Presence and typing events since the request's `ev` (see [`presence`]); never
    /// messages, and nothing here moves `last_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ServerEvent>,
    /// Where the poller stands in the relay's presence and typing events: send it back as
    /// `ev=` with the next poll. Opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ev: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_carry_the_epoch_and_bare_ids_still_parse() {
        assert_eq!(event_id("m18e.2", 41), "m18e.2:41");
        assert_eq!(parse_event_id("m18e.2:41"), Some((Some("m18e.2"), 41)));
        assert_eq!(parse_event_id("41"), Some((None, 41)));
        for bad in ["", ":41", "e:", "e:x", "x", "-1", "e:-1"] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_error_code_is_listed_once_under_its_wire_name() {
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "no code twice");
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn message_event_is_flat_with_a_type_tag() {
        let event = ServerEvent::Message(Message {
            id: 42,
            room: "lobby".into(),
            from: "alice".into(),
            text: "hi".into(),
            ts: 1,
            key: None,
        });
        let json = serde_json::to_string(&event).expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"message","id":42,"room":"lobby","from":"alice","text":"hi","ts":1}"#
        );
        let back: ServerEvent = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, event);
    }

    #[test]
    fn error_event_omits_retry_after_unless_rate_limited() {
        let event = ServerEvent::Error(ErrorBody {
            code: ErrorCode::TextTooLong,
            message: "too long".into(),
            retry_after_ms: None,
            key: None,
        });
        let json = serde_json::to_string(&event).expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"error","code":"text_too_long","message":"too long"}"#
        );
    }

    #[test]
    fn error_code_wire_names_match_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::RateLimited,
            ErrorCode::TooManyConnections,
            ErrorCode::ForbiddenOrigin,
            ErrorCode::Unavailable,
        ] {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn welcome_and_reset_shapes() {
        let welcome = ServerEvent::Welcome(Welcome {
            transport: Transport::Longpoll,
            room: "r".into(),
            epoch: "e".into(),
            last_id: 7,
            presence: None,
        });
        assert_eq!(
            serde_json::to_string(&welcome).expect("serializes"),
            r#"{"type":"welcome","transport":"longpoll","room":"r","epoch":"e","last_id":7}"#
        );
        let reset = ServerEvent::Reset(Reset {
            reason: ResetReason::HistoryGap,
            oldest_id: 3,
        });
        assert_eq!(
            serde_json::to_string(&reset).expect("serializes"),
            r#"{"type":"reset","reason":"history_gap","oldest_id":3}"#
        );
        // `name` is the type tag serde writes.
        assert_eq!((welcome.name(), reset.name()), ("welcome", "reset"));
    }

    #[test]
    fn client_send_frame_parses() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"send","text":"yo"}"#).expect("parses");
        assert_eq!(
            frame,
            ClientFrame::Send {
                text: "yo".into(),
                key: None
            }
        );
        let keyed: ClientFrame =
            serde_json::from_str(r#"{"type":"send","text":"yo","key":"t.1"}"#).expect("parses");
        assert_eq!(
            keyed,
            ClientFrame::Send {
                text: "yo".into(),
                key: Some("t.1".into())
            }
        );
        let ack = ServerEvent::Ack(Ack {
            id: 3,
            key: "t.1".into(),
            duplicate: true,
        });
        assert_eq!(
            serde_json::to_string(&ack).expect("serializes"),
            r#"{"type":"ack","id":3,"key":"t.1","duplicate":true}"#
        );
    }

    #[test]
    fn poll_response_defaults_reset_and_more() {
        let answer: PollResponse =
            serde_json::from_str(r#"{"messages":[],"last_id":0,"epoch":"x"}"#).expect("parses");
        assert_eq!(answer.reset, None);
        assert!(!answer.more);
    }

    #[test]
    fn transport_wire_names_match_serde_and_parse_back() {
        for t in Transport::ALL {
            let json = serde_json::to_string(&t).expect("serializes");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(t.as_str().parse::<Transport>(), Ok(t));
            assert_eq!(Transport::ALL[t.index()], t, "index is the position in ALL");
        }
        assert_eq!(
            "websocket".parse::<Transport>(),
            Err(UnknownTransport("websocket".into()))
        );
    }
}
