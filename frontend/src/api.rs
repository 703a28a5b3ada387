//! Every URL and request the page makes of the relay, in one place.
//!
//! Paths come from `protocol::api::Endpoint`, the same definition the relay's router uses, so
//! the two cannot drift apart. Each link's query carries its resume point ([`Cursor`]) and,
//! for the streams, the user's name. The URL builders are plain string functions, compiled and
//! unit-tested natively with the model; only `publish`, which goes through `fetch`, exists
//! in the browser build alone.
//!
//! Rooms are put into paths as they are: `crate::browser` only ever hands out names that pass
//! `protocol::limits::is_valid_room`, whose alphabet needs no escaping.

use protocol::api::Endpoint;
use protocol::{ErrorBody, ErrorCode, TransportInfo};
#[cfg(target_arch = "wasm32")]
use protocol::{PublishRequest, ServerEvent};

use crate::model::Cursor;

/// Percent-encodes a query value (names and epochs are user- or relay-chosen text).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A cursor's query-string form (`after=41&epoch=…`), empty for a newcomer.
fn query(cursor: &Cursor) -> String {
    let mut parts = Vec::new();
    if let Some(after) = cursor.after {
        parts.push(format!("after={after}"));
    }
    if let Some(epoch) = &cursor.epoch {
        parts.push(format!("epoch={}", encode(epoch)));
    }
    parts.join("&")
}

/// Who the page is, on every URL it opens: the user's name and the tab's client id (the same
/// member of the room on every transport).
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub name: &'a str,
    pub client: &'a str,
}

impl Member<'_> {
    fn query(&self) -> String {
        format!("name={}&client={}", encode(self.name), encode(self.client))
    }
}

/// The WebSocket of `room`, under `base` (`browser::ws_base()`: the socket's scheme, the
/// page's host and the API prefix, which a development build changes).
pub fn ws_url(base: &str, room: &str, member: Member<'_>, cursor: &Cursor) -> String {
    format!(
        "{}?{}&{}",
        Endpoint::Ws.path_under(base, room),
        member.query(),
        query(cursor)
    )
}

/// The Server-Sent Events stream of `room`.
pub fn events_url(room: &str, member: Member<'_>, cursor: &Cursor) -> String {
    format!(
        "{}?{}&{}",
        Endpoint::Events.path(room),
        member.query(),
        query(cursor)
    )
}

/// The HTTP stream of `room`.
pub fn stream_url(room: &str, member: Member<'_>, cursor: &Cursor) -> String {
    format!(
        "{}?{}&{}",
        Endpoint::Stream.path(room),
        member.query(),
        query(cursor)
    )
}

/// The WebTransport session of `room`, at the relay's WebTransport `base` (`https://HOST:PORT`,
/// from `transport_info`).
pub fn wt_url(base: &str, room: &str, member: Member<'_>, cursor: &Cursor) -> String {
    format!(
        "{base}{}?{}&{}",
        Endpoint::Wt.path(room),
        member.query(),
        query(cursor)
    )
}

/// Where the relay's WebTransport is, if it offers it (`None` too when the relay cannot be
/// asked: the page then tries again on the next attempt).
#[cfg(target_arch = "wasm32")]
pub async fn transport_info() -> Option<TransportInfo> {
    let url = format!("{}{}", protocol::api::PREFIX, protocol::api::TRANSPORT_INFO);
    let answer = crate::fetch::get(&url, None).await.ok()?;
    if !answer.ok() {
        return None;
    }
    crate::json::transport_info(&answer.body)
}

/// One poll of `room`: held up to `wait_secs` by the relay when there is nothing new, and
/// cut at `limit` messages if given; `ev` is where the link stands in the room's presence
/// and typing events (the last answer's).
pub fn poll_url(
    room: &str,
    wait_secs: u64,
    limit: Option<u32>,
    member: Member<'_>,
    ev: Option<&str>,
    cursor: &Cursor,
) -> String {
    let limit = limit.map(|n| format!("&limit={n}")).unwrap_or_default();
    let ev = ev
        .map(|ev| format!("&ev={}", encode(ev)))
        .unwrap_or_default();
    format!(
        "{}?wait={wait_secs}{limit}&{}{ev}&{}",
        Endpoint::Messages.path(room),
        member.query(),
        query(cursor)
    )
}

/// Where a message is `POST`ed.
pub fn publish_url(room: &str) -> String {
    Endpoint::Messages.path(room)
}

/// A refusal from the relay as the page words it, whichever way it came (a WebSocket error
/// event or the body of an HTTP error).
pub fn describe(error: &ErrorBody) -> String {
    match error.retry_after_ms {
        Some(ms) => format!(
            "{} (try again in {} s)",
            error.message,
            crate::model::number::tenths(ms as f64 / 1000.0)
        ),
        None => error.message.clone(),
    }
}

/// Why a `POST` did not store a message: what to tell the user, and whether (and after how
/// long) sending it again with the same key may succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct NotSent {
    pub message: String,
    /// `None`: refused for good (the text itself is the problem).
    pub retry_ms: Option<u64>,
}

/// How long the page waits before sending again when the relay gave no time.
pub const RESEND_MS: u64 = 1000;

/// Whether a refusal is about the text itself (or the request), so that sending it again
/// cannot help; otherwise (busy, restarting, rate limits, the bus away, an unknown outcome)
/// it may pass later. The WebSocket's error events are classified by this; `POST` answers
/// by status ([`not_sent`]), which says the same.
pub fn is_final(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::BadRequest
            | ErrorCode::InvalidRoom
            | ErrorCode::InvalidName
            | ErrorCode::InvalidText
            | ErrorCode::TextTooLong
            | ErrorCode::PayloadTooLarge
            | ErrorCode::KeyReused
            | ErrorCode::ForbiddenOrigin
            | ErrorCode::InvalidHost
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
    )
}

/// What a refusal means for the text: 429 and 5xx (the relay busy, restarting, its bus away,
/// or the outcome unknown) pass; anything else is about the text, and resending is useless.
pub fn not_sent(status: u16, error: Option<&ErrorBody>) -> NotSent {
    let message = error.map_or_else(
        || format!("the relay refused the message ({status})"),
        describe,
    );
    let passes = status == 429 || status >= 500;
    NotSent {
        message,
        retry_ms: passes.then(|| {
            error
                .and_then(|e| e.retry_after_ms)
                .unwrap_or(RESEND_MS)
                .max(RESEND_MS / 4)
        }),
    }
}

/// Publishes a message with `POST` under its idempotency key. Returns the id the relay gave
/// it (the first one, if the key was stored before).
#[cfg(target_arch = "wasm32")]
pub async fn publish(room: &str, request: &PublishRequest, key: &str) -> Result<u64, NotSent> {
    let json = crate::json::publish_request(request);
    let answer = crate::fetch::post_json(&publish_url(room), &json, key)
        .await
        .map_err(|_| NotSent {
            message: "could not reach the relay; it will be sent again".to_owned(),
            retry_ms: Some(RESEND_MS),
        })?;
    if answer.ok() {
        return crate::json::published(&answer.body)
            .map(|published| published.id)
            .ok_or_else(|| {
                not_sent(answer.status, None).or("the relay's answer was not understood".into())
            });
    }
    let error = match crate::json::event(&answer.body) {
        Some(ServerEvent::Error(error)) => Some(error),
        _ => None,
    };
    Err(not_sent(answer.status, error.as_ref()))
}

/// Tells the room this tab is typing (the transports without a WebSocket). Best effort: a
/// typing signal that does not arrive is not worth a retry.
#[cfg(target_arch = "wasm32")]
pub async fn typing(room: &str, client: &str) {
    let json = crate::json::typing_request(client);
    let _ = crate::fetch::post(&Endpoint::Typing.path(room), &json).await;
}

/// Tells the room this tab is leaving, in a way that survives the page going away
/// (`navigator.sendBeacon`): the others see it leave at once rather than after the relay's
/// grace.
#[cfg(target_arch = "wasm32")]
pub fn leave(room: &str, client: &str) {
    let json = crate::json::leave_request(client);
    let _ = leptos::prelude::window()
        .navigator()
        .send_beacon_with_opt_str(&Endpoint::Presence.path(room), Some(&json));
}

impl NotSent {
    #[cfg(target_arch = "wasm32")]
    fn or(mut self, message: String) -> NotSent {
        self.message = message;
        self
    }
}

#[cfg(test)]
mod tests {
    use protocol::ErrorCode;

    use super::*;

    #[test]
    fn cursor_query_encodes_values() {
        let cursor = Cursor {
            after: Some(4),
            epoch: Some("a b&c".into()),
        };
        assert_eq!(query(&cursor), "after=4&epoch=a%20b%26c");
        assert_eq!(query(&Cursor::default()), "");
    }

    #[test]
    fn every_url_is_the_protocol_path_with_the_links_query() {
        let cursor = Cursor {
            after: Some(7),
            epoch: Some("e".into()),
        };
        let ab = Member {
            name: "a b",
            client: "tab-1234",
        };
        let me = Member {
            name: "me",
            client: "tab-1234",
        };
        assert_eq!(
            ws_url("ws://host/api-ws", "r", ab, &cursor),
            format!(
                "{}?name=a%20b&client=tab-1234&after=7&epoch=e",
                Endpoint::Ws.path_under("ws://host/api-ws", "r")
            )
        );
        assert_eq!(
            events_url("r", me, &Cursor::default()),
            format!("{}?name=me&client=tab-1234&", Endpoint::Events.path("r")),
            "a newcomer sends no cursor"
        );
        assert_eq!(
            poll_url("r", 25, Some(200), me, Some("a.3"), &cursor),
            format!(
                "{}?wait=25&limit=200&name=me&client=tab-1234&ev=a.3&after=7&epoch=e",
                Endpoint::Messages.path("r")
            )
        );
        assert_eq!(
            poll_url("r", 0, None, me, None, &Cursor::default()),
            format!(
                "{}?wait=0&name=me&client=tab-1234&",
                Endpoint::Messages.path("r")
            )
        );
        assert_eq!(publish_url("r"), Endpoint::Messages.path("r"));
    }

    #[test]
    fn a_refusal_that_passes_is_sent_again_and_one_about_the_text_is_not() {
        let busy = ErrorBody {
            code: ErrorCode::OutcomeUnknown,
            message: "unknown".into(),
            retry_after_ms: None,
            key: None,
        };
        assert_eq!(not_sent(504, Some(&busy)).retry_ms, Some(RESEND_MS));
        let limited = ErrorBody {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(3000),
            key: None,
        };
        assert_eq!(not_sent(429, Some(&limited)).retry_ms, Some(3000));
        let too_long = ErrorBody {
            code: ErrorCode::TextTooLong,
            message: "too long".into(),
            retry_after_ms: None,
            key: None,
        };
        assert_eq!(
            not_sent(400, Some(&too_long)),
            NotSent {
                message: "too long".into(),
                retry_ms: None
            }
        );
        assert_eq!(
            not_sent(502, None).retry_ms,
            Some(RESEND_MS),
            "a proxy's error page"
        );
    }

    #[test]
    fn refusals_say_when_to_try_again() {
        let mut error = ErrorBody {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            retry_after_ms: Some(1500),
            key: None,
        };
        assert_eq!(describe(&error), "slow down (try again in 1.5 s)");
        error.retry_after_ms = None;
        assert_eq!(describe(&error), "slow down");
    }
}
