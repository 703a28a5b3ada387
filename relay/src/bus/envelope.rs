//! A published message, serialized once into the bytes every transport writes.
//!
//! The memory bus builds an [`Envelope`] at publish; the Redis bus builds one on each relay
//! when the announcement arrives (and for messages it reads back from a stream). Either way
//! the same `Arc<Envelope>` goes to every subscriber and poll answer, so fan-out costs a
//! pointer copy per receiver, not a serialization.

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use protocol::{Message, ServerEvent};

use crate::event;

/// One published message, serialized once for every transport.
#[derive(Debug)]
pub struct Envelope {
    pub id: u64,
    /// When the relay accepted it (Unix ms), for the delivery-lag metric.
    pub ts: u64,
    /// The `message` event as JSON: a WebSocket text frame and an element of a poll answer.
    pub json: Utf8Bytes,
    /// The complete SSE event (`id:`, `event: message`, `data:`), ready to write.
    pub sse: Bytes,
}

impl Envelope {
    pub fn new(message: Message) -> Envelope {
        let id = message.id;
        let ts = message.ts;
        let event = ServerEvent::Message(message);
        let json = event::json(&event);
        let sse = Bytes::from(event::sse_frame(Some(id), event.name(), &json));
        Envelope {
            id,
            ts,
            json: Utf8Bytes::from(json),
            sse,
        }
    }
}

/// A message `m{id}` from `a` in room `r`, for the bus's tests.
#[cfg(test)]
pub(super) fn test_envelope(id: u64) -> std::sync::Arc<Envelope> {
    std::sync::Arc::new(Envelope::new(Message {
        id,
        room: "r".into(),
        from: "a".into(),
        text: format!("m{id}"),
        ts: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_sse_frame_is_one_event() {
        let env = Envelope::new(Message {
            id: 9,
            room: "r".into(),
            from: "a".into(),
            text: "two\nlines".into(),
            ts: 5,
        });
        let sse = std::str::from_utf8(&env.sse).expect("utf-8");
        assert!(sse.starts_with("id: 9\nevent: message\ndata: {"));
        assert!(sse.ends_with("}\n\n"));
        assert_eq!(sse.matches('\n').count(), 4, "{sse:?}");
        assert!(env.json.as_str().contains(r#""text":"two\nlines""#));
    }
}
