//! The protocol's JSON, read and written through the browser: `JSON.parse` and
//! `JSON.stringify` do the text, and the few shapes the page exchanges are read out of (and
//! built into) the parsed objects here, field by field.
//!
//! Written by hand rather than with serde: the derives of the event types, a JSON parser and
//! serde's machinery were a quarter of the page's WebAssembly (docs/BENCHMARKS.md, "The
//! page's first load"). The reading follows the protocol types' serde attributes exactly:
//! optional fields may be missing or `null`, unknown fields are ignored, an event of an
//! unknown `type` or with a field of the wrong kind is not understood (`None`).

use js_sys::{Array, JSON, Object, Reflect};
use protocol::{
    Ack, ClientFrame, ErrorBody, ErrorCode, Member, Message, PollResponse, PresenceChange,
    PresenceSnapshot, PublishRequest, PublishResponse, Reset, ResetReason, RetryAdvice,
    ServerEvent, Transport, TransportInfo, Typing, WebTransportInfo, Welcome,
};
use wasm_bindgen::JsValue;

/// One parsed JSON object.
struct Fields(JsValue);

impl Fields {
    fn parse(text: &str) -> Option<Fields> {
        Fields::of(JSON::parse(text).ok()?)
    }

    fn of(value: JsValue) -> Option<Fields> {
        (value.is_object() && !Array::is_array(&value)).then_some(Fields(value))
    }

    fn get(&self, name: &str) -> JsValue {
        Reflect::get(&self.0, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).as_string()
    }

    /// A whole number from 0 to 2^53 − 1 (what a JSON number holds exactly).
    fn number(&self, name: &str) -> Option<u64> {
        whole(&self.get(name))
    }

    /// A field that may be missing or `null`: `None` only when it is there and not a `T`.
    fn optional<T>(&self, name: &str, read: impl Fn(&JsValue) -> Option<T>) -> Option<Option<T>> {
        let value = self.get(name);
        if value.is_undefined() || value.is_null() {
            return Some(None);
        }
        read(&value).map(Some)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.optional(name, JsValue::as_bool)
            .map(Option::unwrap_or_default)
    }
}

fn whole(value: &JsValue) -> Option<u64> {
    let n = value.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0).then_some(n as u64)
}

/// An event the relay pushes (WebSocket, SSE), or the body of an HTTP error.
pub fn event(text: &str) -> Option<ServerEvent> {
    event_of(&Fields::parse(text)?)
}

fn event_of(fields: &Fields) -> Option<ServerEvent> {
    Some(match fields.string("type")?.as_str() {
        "welcome" => ServerEvent::Welcome(Welcome {
            transport: fields.string("transport")?.parse::<Transport>().ok()?,
            room: fields.string("room")?,
            epoch: fields.string("epoch")?,
            last_id: fields.number("last_id")?,
            presence: fields.optional("presence", |value| {
                let fields = Fields::of(value.clone())?;
                Some(PresenceSnapshot {
                    members: list(&fields.get("members"), member)?,
                    count: fields.number("count")?,
                    you: fields.optional("you", JsValue::as_string)?,
                })
            })?,
        }),
        "presence" => ServerEvent::Presence(PresenceChange {
            joined: list(&fields.get("joined"), member)?,
            left: list(&fields.get("left"), JsValue::as_string)?,
            count: fields.number("count")?,
            members: fields.optional("members", |value| list(value, member))?,
            you: fields.optional("you", JsValue::as_string)?,
        }),
        "typing" => ServerEvent::Typing(Typing {
            name: fields.string("name")?,
            id: fields.string("id")?,
        }),
        "message" => ServerEvent::Message(message(fields)?),
        "reset" => ServerEvent::Reset(reset(fields)?),
        "error" => ServerEvent::Error(error(fields)?),
        "reconnect" => ServerEvent::Reconnect(advice_of(fields)?),
        "ack" => ServerEvent::Ack(Ack {
            id: fields.number("id")?,
            key: fields.string("key")?,
            duplicate: fields.flag("duplicate")?,
        }),
        "ping" => ServerEvent::Ping,
        _ => return None,
    })
}

/// The elements of a JSON array, each read by `read`; `None` if it is not an array or one
/// element is not understood.
fn list<T>(value: &JsValue, read: impl Fn(&JsValue) -> Option<T>) -> Option<Vec<T>> {
    if !Array::is_array(value) {
        return None;
    }
    Array::from(value).iter().map(|v| read(&v)).collect()
}

fn member(value: &JsValue) -> Option<Member> {
    let fields = Fields::of(value.clone())?;
    Some(Member {
        id: fields.string("id")?,
        name: fields.string("name")?,
        transports: list(&fields.get("transports"), |t| {
            t.as_string()?.parse::<Transport>().ok()
        })?,
    })
}

/// `GET /api/transport-info`'s answer.
pub fn transport_info(text: &str) -> Option<TransportInfo> {
    let fields = Fields::parse(text)?;
    Some(TransportInfo {
        webtransport: fields.optional("webtransport", |value| {
            let fields = Fields::of(value.clone())?;
            Some(WebTransportInfo {
                url: fields.string("url")?,
                cert_hashes: list(&fields.get("cert_hashes"), JsValue::as_string)?,
            })
        })?,
    })
}

/// A poll's answer. Presence and typing events the page does not understand are left out
/// (an older page on a newer relay), as a stream's would be.
pub fn poll(text: &str) -> Option<PollResponse> {
    let fields = Fields::parse(text)?;
    let messages = list(&fields.get("messages"), |value| {
        message(&Fields::of(value.clone())?)
    })?;
    let events = fields
        .optional("events", |value| {
            list(value, |v| {
                Some(Fields::of(v.clone()).and_then(|f| event_of(&f)))
            })
        })?
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    Some(PollResponse {
        events,
        ev: fields.optional("ev", JsValue::as_string)?,
        messages,
        last_id: fields.number("last_id")?,
        epoch: fields.string("epoch")?,
        reset: fields.optional("reset", |value| reset(&Fields::of(value.clone())?))?,
        more: fields.flag("more")?,
        retry_after_ms: fields.optional("retry_after_ms", whole)?,
    })
}

/// The answer to a `POST`.
pub fn published(text: &str) -> Option<PublishResponse> {
    Some(PublishResponse {
        id: Fields::parse(text)?.number("id")?,
    })
}

/// The JSON reason of a WebSocket close 1012/1013.
pub fn advice(text: &str) -> Option<RetryAdvice> {
    advice_of(&Fields::parse(text)?)
}

fn advice_of(fields: &Fields) -> Option<RetryAdvice> {
    Some(RetryAdvice {
        retry_after_ms: fields.number("retry_after_ms")?,
    })
}

fn message(fields: &Fields) -> Option<Message> {
    Some(Message {
        id: fields.number("id")?,
        room: fields.string("room")?,
        from: fields.string("from")?,
        text: fields.string("text")?,
        ts: fields.number("ts")?,
        key: fields.optional("key", JsValue::as_string)?,
    })
}

fn reset(fields: &Fields) -> Option<Reset> {
    let reason = match fields.string("reason")?.as_str() {
        "epoch_changed" => ResetReason::EpochChanged,
        "history_gap" => ResetReason::HistoryGap,
        _ => return None,
    };
    Some(Reset {
        reason,
        oldest_id: fields.number("oldest_id")?,
    })
}

fn error(fields: &Fields) -> Option<ErrorBody> {
    let code = fields.string("code")?;
    Some(ErrorBody {
        code: ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)?,
        message: fields.string("message")?,
        retry_after_ms: fields.optional("retry_after_ms", whole)?,
        key: fields.optional("key", JsValue::as_string)?,
    })
}

/// Builds an object from `(name, value)` pairs, leaving out `None`s, as JSON text.
fn object(entries: &[(&str, Option<&str>)]) -> String {
    let object = Object::new();
    for (name, value) in entries {
        if let Some(value) = value {
            // Setting a property on a fresh plain object cannot fail.
            let _ = Reflect::set(&object, &JsValue::from_str(name), &JsValue::from_str(value));
        }
    }
    JSON::stringify(&object)
        .ok()
        .and_then(|text| text.as_string())
        .unwrap_or_default()
}

/// A WebSocket send frame.
pub fn frame(frame: &ClientFrame) -> String {
    match frame {
        ClientFrame::Send { text, key } => object(&[
            ("type", Some("send")),
            ("text", Some(text)),
            ("key", key.as_deref()),
        ]),
        ClientFrame::Typing => object(&[("type", Some("typing"))]),
    }
}

/// A `POST` body.
pub fn publish_request(request: &PublishRequest) -> String {
    object(&[
        ("from", Some(&request.from)),
        ("text", Some(&request.text)),
        ("client", request.client.as_deref()),
    ])
}

/// `POST …/typing`'s body.
pub fn typing_request(client: &str) -> String {
    object(&[("client", Some(client))])
}

/// `POST …/presence`'s body when the tab leaves: `{"client":…,"leave":true}`.
pub fn leave_request(client: &str) -> String {
    // The one boolean the page writes: spelled out rather than given to `object`.
    let mut json = typing_request(client);
    json.pop();
    json.push_str(",\"leave\":true}");
    json
}
