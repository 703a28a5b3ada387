//! Polling and publishing over plain HTTP.
//!
//! - `GET /api/rooms/{room}/messages?after=&epoch=&wait=&limit=` answers with the messages
//!   after the cursor. `wait=0` (short polling, history) answers at once; `wait=N` holds the
//!   request until a newer message exists or N seconds pass (long polling), capped at
//!   `RELAY_LONGPOLL_MAX` and ended early by shutdown.
//! - `POST /api/rooms/{room}/messages` with `{"from","text"}` publishes and answers
//!   `201 {"id":N}`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use protocol::api::IDEMPOTENCY_KEY;
use protocol::{ErrorCode, PublishRequest, PublishResponse, Reset, RetryAdvice, Transport};
use serde::{Deserialize, Serialize};

use super::{ANONYMOUS, cursor, join_limit};
use crate::bus::{Draft, Snapshot};
use crate::client::ClientKey;
use crate::clock::unix_millis;
use crate::drain::Closing;
use crate::error::ApiError;
use crate::metrics::{Metrics, Via};
use crate::presence::hub::Position;
use crate::presence::member::MemberId;
use crate::presence::{Missed, Who};
use crate::state::AppState;
use crate::validate::{self, RoomName};

#[derive(Debug, Default, Deserialize)]
pub struct PollQuery {
    pub after: Option<u64>,
    pub epoch: Option<String>,
    /// Seconds to hold the request for a new message; fractions allowed.
    pub wait: Option<f64>,
    pub limit: Option<usize>,
    /// The tab's client id: a poller that gives one is a member of the room (see `presence`).
    pub client: Option<String>,
    /// The member's name (with `client`).
    pub name: Option<String>,
    /// Where the poller stands in the room's presence and typing events (the last answer's
    /// `ev`); opaque.
    pub ev: Option<String>,
}

/// A poller's part in the room's presence: its membership and where it stands in the signals.
struct Signals<'a> {
    state: &'a AppState,
    room: &'a RoomName,
    me: Option<MemberId>,
    from: Option<Position>,
    asked: bool,
}

impl Signals<'_> {
    /// The presence and typing events the poller has not had, and its new position: `None`
    /// for a poller that takes no part (no `client`, no `ev`).
    fn pending(&self) -> Option<Missed> {
        if self.me.is_none() && !self.asked {
            return None;
        }
        self.state
            .presence
            .since(self.room, self.from, self.me.as_ref())
    }
}

pub async fn read(
    State(state): State<AppState>,
    Path(room): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(client): Extension<ClientKey>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let arrived = tokio::time::Instant::now();
    let room = RoomName::parse(&room)?;
    let Query(query) = query?;
    let cursor = cursor(query.after, query.epoch);
    let limit = join_limit(&state, query.limit);
    let wait = query
        .wait
        .filter(|w| w.is_finite() && *w > 0.0)
        .map_or(Duration::ZERO, |w| {
            Duration::from_secs_f64(w.min(state.config.longpoll_max.as_secs_f64()))
        });
    let transport = if wait.is_zero() {
        Transport::Shortpoll
    } else {
        Transport::Longpoll
    };
    let client_id = match &query.client {
        Some(id) => Some(validate::client_id(id)?),
        None => None,
    };
    let name = match &query.name {
        Some(name) => state.limits.name(name)?,
        None => ANONYMOUS.to_owned(),
    };
    let who = Who {
        client: client_id,
        name: &name,
        owner: client,
    };
    let snapshot = state.bus.read(&room, &cursor, limit).await?;
    // A poller is a member of a room that exists (reading does not create one): polls of
    // made-up rooms cost no presence.
    let exists = snapshot.epoch.as_ref() != crate::bus::NO_EPOCH;
    let signals = Signals {
        state: &state,
        room: &room,
        me: client_id
            .filter(|_| exists)
            .and_then(|_| state.presence.polled(&room, who, transport)),
        // A position that does not parse is one from nowhere: treated as another relay's.
        from: query
            .ev
            .as_deref()
            .map(|ev| Position::parse(ev).unwrap_or(Position::NOWHERE)),
        asked: query.ev.is_some(),
    };
    if wait.is_zero() {
        return Ok(answer(
            &snapshot,
            transport,
            &state.metrics,
            signals.pending(),
        ));
    }
    // A request willing to wait is a long poll even when it is answered at once.
    let linger = state.config.longpoll_linger;
    if snapshot.reset.is_some() || snapshot.more {
        return Ok(answer(
            &snapshot,
            transport,
            &state.metrics,
            signals.pending(),
        ));
    }
    if let Some(first) = snapshot.messages.first() {
        // Messages are waiting: the answer goes out once the oldest is a linger old (at once
        // if it already is), so that it carries at least a linger's worth of a busy room's
        // messages. Counting from the message rather than from the request matters under
        // load: a poller that comes back late is not answered with less, which would make
        // it come back sooner and cost more just when the relay has the least to spare.
        let age = Duration::from_millis(unix_millis().saturating_sub(first.ts));
        if age >= linger {
            return Ok(answer(
                &snapshot,
                transport,
                &state.metrics,
                signals.pending(),
            ));
        }
        hold(&state, tokio::time::Instant::now() + (linger - age)).await;
        let snapshot = state.bus.read(&room, &cursor, limit).await?;
        return Ok(answer(
            &snapshot,
            transport,
            &state.metrics,
            signals.pending(),
        ));
    }
    // Signals are waiting (or a newcomer needs the whole list): answer them now. A list
    // sent only because the position came from another relay waits for real news (behind
    // a load balancer every poll may reach another relay, and would come straight back).
    let mut listener = signals.me.as_ref().map(|_| state.presence.signals(&room));
    let pending = signals.pending();
    if pending
        .as_ref()
        .is_some_and(|missed| !missed.events.is_empty() && !missed.resync)
    {
        return Ok(answer(&snapshot, transport, &state.metrics, pending));
    }

    // Long poll: wait on a live subscription from the same cursor, so a message published
    // between the read above and the subscription is not missed; then read again. It counts
    // as an open connection once subscribed: from then on, a publish is certain to wake it.
    // A member's pending poll keeps it present like a stream, and a signal to its room
    // answers it too.
    let mut conn = state.admit(Transport::Longpoll, &room, peer, client)?;
    let mut sub = state.subscribe(&room, &cursor, limit, client).await?;
    let attached = signals
        .me
        .as_ref()
        .map(|_| state.presence.attach(&room, who, transport));
    conn.established();
    let mut closing = Closing::default();
    let signalled = async {
        match listener.as_mut() {
            Some(listener) => {
                let _ = listener.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    let advice = tokio::select! {
        _ = sub.next() => None,
        _ = signalled => None,
        _ = tokio::time::sleep(wait) => None,
        // Answered at its turn in the drain, with when to poll again.
        advice = state.closing(&mut closing) => Some(advice),
    };
    drop(sub);
    if advice.is_none() {
        // Woken soon after it arrived, messages are coming now: see `hold`.
        hold(&state, arrived + linger).await;
    }
    let snapshot = state.bus.read(&room, &cursor, limit).await?;
    let pending = signals.pending();
    drop(attached);
    Ok(answer_advising(
        &snapshot,
        transport,
        &state.metrics,
        advice,
        pending,
    ))
}

/// Holds a long poll's answer until `until` (within `RELAY_LONGPOLL_LINGER`), when messages
/// are coming fast enough to have woken it sooner: the answer then carries what arrives
/// meanwhile, so that a busy room costs each long poller one request per linger rather than
/// one per message (an HTTP exchange costs far more than a message). A poll that waited
/// longer than the linger (a quiet room) is not held at all.
async fn hold(state: &AppState, until: tokio::time::Instant) {
    if tokio::time::Instant::now() < until {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}

/// The fields of a poll answer after `messages` (and `events`); see `protocol::PollResponse`.
#[derive(Serialize)]
struct AnswerTail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ev: Option<String>,
    last_id: u64,
    epoch: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset: Option<&'a Reset>,
    more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

/// Builds the `PollResponse` JSON around the messages' shared, already-serialized bytes rather
/// than re-serializing every message for every poller.
fn answer(
    snapshot: &Snapshot,
    transport: Transport,
    metrics: &Metrics,
    signals: Option<Missed>,
) -> Response {
    answer_advising(snapshot, transport, metrics, None, signals)
}

/// [`answer`], telling the poller when to poll again (the relay is shutting down).
fn answer_advising(
    snapshot: &Snapshot,
    transport: Transport,
    metrics: &Metrics,
    advice: Option<RetryAdvice>,
    signals: Option<Missed>,
) -> Response {
    metrics.delivered_many(transport, snapshot.messages.iter().map(|m| (m.ts, 1)));
    let (events, ev) = match signals {
        Some(missed) => (missed.events, Some(missed.position.to_string())),
        None => (Vec::new(), None),
    };
    let tail = serde_json::to_vec(&AnswerTail {
        ev,
        last_id: snapshot.next_after(),
        epoch: &snapshot.epoch,
        reset: snapshot.reset.as_ref(),
        more: snapshot.more,
        retry_after_ms: advice.map(|a| a.retry_after_ms),
    })
    .unwrap_or_default();
    let size: usize = snapshot.messages.iter().map(|m| m.json.len() + 1).sum();
    let mut body = Vec::with_capacity(size + tail.len() + 16);
    body.extend_from_slice(b"{\"messages\":[");
    for (i, message) in snapshot.messages.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&message.json);
    }
    body.extend_from_slice(b"],");
    if !events.is_empty() {
        body.extend_from_slice(b"\"events\":[");
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(event);
        }
        body.extend_from_slice(b"],");
    }
    // `tail` is a JSON object: splice its fields in after the array, dropping its `{`.
    body.extend_from_slice(tail.get(1..).unwrap_or(b"}"));
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub async fn publish(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PublishResponse>), ApiError> {
    state.origins.check(&headers)?;
    let room = RoomName::parse(&room)?;
    // The sender's own budget (`POST` has no connection: per client), then the client's.
    let now = Instant::now();
    for limiter in [&state.budgets.post, &state.budgets.publish] {
        limiter.take(client, now).map_err(ApiError::rate_limited)?;
    }
    let body = read_body(body, &state).await?;
    // Any content type is accepted: `curl -d '{...}'` sends a form type by default.
    let request: PublishRequest = json_object(&body)?;
    let from = state.limits.name(&request.from)?;
    let text = state.limits.text(&request.text)?;
    // The IETF draft writes the value as a structured-field string (`"abc"`); the bare
    // form is accepted as well.
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => {
            let raw = value.to_str().unwrap_or_default();
            let unquoted = raw
                .strip_prefix('"')
                .and_then(|inner| inner.strip_suffix('"'))
                .unwrap_or(raw);
            Some(validate::key(unquoted)?)
        }
        None => None,
    };
    let draft = Draft {
        from: &from,
        text: &text,
        key,
    };
    let published = state.publish(&room, draft, client).await?;
    if let Some(id) = request
        .client
        .as_deref()
        .filter(|id| validate::client_id(id).is_ok())
    {
        state.presence.touch(&room, id);
    }
    // A repeat of a key already stored: nothing new, the first id.
    if published.duplicate {
        return Ok((StatusCode::OK, Json(PublishResponse { id: published.id })));
    }
    state.metrics.published(Via::Http);
    Ok((
        StatusCode::CREATED,
        Json(PublishResponse { id: published.id }),
    ))
}

/// A request body read as the JSON object `T`. Only an object: serde would also read a
/// struct from an array of its fields in order (`["a","b","c"]`), which no client means.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the request body must be a JSON object",
        ));
    }
    Ok(serde_json::from_slice(body)?)
}

/// The request body, at most `RELAY_MAX_FRAME_BYTES`, arriving within
/// `RELAY_HEADER_TIMEOUT`: a client that trickles a body must not hold its socket and slot
/// for as long as it likes.
pub(crate) async fn read_body(body: Body, state: &AppState) -> Result<Bytes, ApiError> {
    let limited = Limited::new(body, state.config.max_frame_bytes);
    match tokio::time::timeout(state.config.header_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            "request body is too large",
        )),
        Ok(Err(err)) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("could not read the request body: {err}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Envelope;
    use protocol::{Message, PollResponse, ResetReason};
    use std::sync::Arc;

    #[tokio::test]
    async fn answer_is_a_valid_poll_response() {
        let messages = (3..=4)
            .map(|id| {
                Arc::new(Envelope::new(
                    Message {
                        id,
                        room: "r".into(),
                        from: "a".into(),
                        text: "\"quoted\" <b>".into(),
                        ts: 1,
                        key: None,
                    },
                    "e",
                ))
            })
            .collect();
        let snapshot = Snapshot {
            epoch: Arc::from("e"),
            head: 9,
            reset: Some(Reset {
                reason: ResetReason::HistoryGap,
                oldest_id: 3,
            }),
            messages,
            more: true,
            cursor_if_empty: 9,
        };
        let response = answer(&snapshot, Transport::Shortpoll, &Metrics::default(), None);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let parsed: PollResponse = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(parsed.messages.len(), 2);
        assert_eq!(parsed.messages[1].text, "\"quoted\" <b>");
        assert_eq!(parsed.last_id, 4);
        assert_eq!(parsed.epoch, "e");
        assert_eq!(
            parsed.reset.map(|r| r.reason),
            Some(ResetReason::HistoryGap)
        );
        assert!(parsed.more);
    }

    #[tokio::test]
    async fn empty_answer_points_at_the_head() {
        let snapshot = Snapshot {
            epoch: Arc::from("e"),
            head: 9,
            reset: None,
            messages: Vec::new(),
            more: false,
            cursor_if_empty: 9,
        };
        let response = answer(&snapshot, Transport::Shortpoll, &Metrics::default(), None);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(
            std::str::from_utf8(&body).expect("utf-8"),
            r#"{"messages":[],"last_id":9,"epoch":"e","more":false}"#
        );
    }
}
