//! A published message, serialized once into the bytes every transport writes.
//!
//! The memory bus builds an [`Envelope`] at publish; the Redis bus builds one on each relay
//! when the announcement arrives (and for messages it reads back from a stream). Either way
//! the same `Arc<Envelope>` goes to every subscriber and poll answer, so fan-out costs a
//! pointer copy per receiver, not a serialization.

use bytes::Bytes;
use protocol::{Message, ServerEvent};

use crate::{event, wsframe};

/// One published message, serialized once for every transport.
#[derive(Debug)]
pub struct Envelope {
    pub id: u64,
    /// When the relay accepted it (Unix ms), for the delivery-lag metric.
    pub ts: u64,
    /// The `message` event as JSON: a WebSocket text frame, an element of a poll answer, and
    /// the data of an SSE frame. The one stored copy of the message. (UTF-8: it is JSON.)
    pub json: Bytes,
    /// The head of the WebSocket text frame whose payload is `json`: the frame is the two,
    /// written one after the other, the same bytes for every receiver.
    pub ws_head: Bytes,
    /// What an SSE frame holds before the JSON (`id: EPOCH:ID`, `event: message`, `data: `);
    /// the frame is this, the JSON and `event::SSE_TAIL`, written as they are, without a
    /// copy.
    pub sse_head: Bytes,
    /// The sender's idempotency key, if it gave one (the history's index of keys), and the
    /// fingerprint of the sender and text it is bound to (`Draft::fingerprint`).
    pub key: Option<(Box<str>, u64)>,
}

impl Envelope {
    /// `epoch` is that of the history the message belongs to (its SSE id names it).
    pub fn new(message: Message, epoch: &str) -> Envelope {
        let id = message.id;
        let ts = message.ts;
        let key = message.key.as_deref().map(|key| {
            (
                Box::from(key),
                super::fingerprint(&message.from, &message.text),
            )
        });
        let event = ServerEvent::Message(message);
        let json = event::json(&event);
        let sse_id = protocol::event_id(epoch, id);
        let sse_head = Bytes::from(event::sse_head(Some(&sse_id), event.name()));
        Envelope {
            id,
            ts,
            ws_head: wsframe::head(wsframe::TEXT, json.len()),
            json: Bytes::from(json),
            sse_head,
            key,
        }
    }

    /// What keeping this message costs, for the history's byte budget: its bytes and the
    /// bookkeeping around them.
    pub fn stored_bytes(&self) -> usize {
        self.json.len()
            + self.sse_head.len()
            + self.ws_head.len()
            + self.key.as_ref().map_or(0, |(key, _)| key.len() + 8)
            + std::mem::size_of::<Envelope>()
            + 64
    }
}

/// A message `m{id}` from `a` in room `r`, for the bus's tests.
#[cfg(test)]
pub(super) fn test_envelope(id: u64) -> std::sync::Arc<Envelope> {
    std::sync::Arc::new(Envelope::new(
        Message {
            id,
            room: "r".into(),
            from: "a".into(),
            text: format!("m{id}"),
            ts: 0,
            key: None,
        },
        "e",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_sse_frame_is_one_event() {
        let env = Envelope::new(
            Message {
                id: 9,
                room: "r".into(),
                from: "a".into(),
                text: "two\nlines".into(),
                ts: 5,
                key: None,
            },
            "e.1",
        );
        let frame: Vec<u8> = super::super::Framing::Sse
            .pieces(&env)
            .map(|p| p.to_vec())
            .concat();
        let sse = std::str::from_utf8(&frame).expect("utf-8");
        assert!(sse.starts_with("id: e.1:9\nevent: message\ndata: {"));
        assert!(sse.ends_with("}\n\n"));
        assert_eq!(sse.matches('\n').count(), 4, "{sse:?}");
        assert!(
            std::str::from_utf8(&env.json)
                .expect("UTF-8")
                .contains(r#""text":"two\nlines""#)
        );
    }
}
