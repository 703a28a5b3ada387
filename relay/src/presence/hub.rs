//! A room's signals on this relay: presence and typing events, encoded once per batch for
//! every transport, handed to the room's streams and kept a little while for its pollers.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use protocol::ServerEvent;
use tokio::sync::broadcast;

use crate::{event, wsframe};

/// Batches a stream may fall behind by before it is sent the whole list instead (a stream
/// that is this far behind is slow; the list is what it needs, not every change).
const QUEUE: usize = 32;

/// Batches kept for pollers: a poller that comes back later than this many batches gets the
/// whole list again, and misses the typing signals meanwhile (they were stale anyway).
const KEPT: usize = 32;

/// One tick's signals for a room, encoded once.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    /// Each event's JSON, for poll answers.
    pub events: Vec<Bytes>,
    /// The events as WebSocket text frames, one after another.
    pub ws: Bytes,
    /// The events as SSE frames (no `id:`: they are not messages).
    pub sse: Bytes,
    /// The events as NDJSON lines (HTTP streaming, WebTransport).
    pub ndjson: Bytes,
}

impl Batch {
    fn new(seq: u64, events: &[ServerEvent]) -> Batch {
        let mut ws = BytesMut::new();
        let mut sse = BytesMut::new();
        let mut ndjson = BytesMut::new();
        let events = events
            .iter()
            .map(|e| {
                let json = event::json(e);
                ws.extend_from_slice(&wsframe::frame(wsframe::TEXT, json.as_bytes()));
                sse.extend_from_slice(event::sse_frame(None, e.name(), &json).as_bytes());
                ndjson.extend_from_slice(json.as_bytes());
                ndjson.extend_from_slice(b"\n");
                Bytes::from(json)
            })
            .collect();
        Batch {
            seq,
            events,
            ws: ws.freeze(),
            sse: sse.freeze(),
            ndjson: ndjson.freeze(),
        }
    }
}

/// Where a poller stands in a room's signals: `ev=` on a poll, `"ev"` in its answer. The
/// `tag` names this hub (a hub made anew, or another relay's, has another), so a position
/// from elsewhere is recognised and answered with the whole list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub tag: u64,
    pub seq: u64,
}

impl Position {
    /// A position no hub has (a later `seq` than any): what an `ev` that does not parse is.
    pub const NOWHERE: Position = Position {
        tag: 0,
        seq: u64::MAX,
    };

    pub fn parse(text: &str) -> Option<Position> {
        let (tag, seq) = text.split_once('.')?;
        Some(Position {
            tag: u64::from_str_radix(tag, 16).ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}.{}", self.tag, self.seq)
    }
}

/// What a poller at some position has missed.
#[derive(Debug)]
pub enum Since {
    /// These batches, in order (none: nothing new).
    Batches(Vec<Arc<Batch>>),
    /// More than is kept, or a position from elsewhere: send the whole list.
    Unknown,
}

#[derive(Debug)]
pub struct Hub {
    sender: broadcast::Sender<Arc<Batch>>,
    tag: u64,
    seq: u64,
    kept: VecDeque<Arc<Batch>>,
}

impl Hub {
    pub fn new(tag: u64) -> Hub {
        Hub {
            sender: broadcast::channel(QUEUE).0,
            tag,
            seq: 0,
            kept: VecDeque::new(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.sender.subscribe()
    }

    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }

    pub fn position(&self) -> Position {
        Position {
            tag: self.tag,
            seq: self.seq,
        }
    }

    /// Sends `events` (if any) to every stream of the room and keeps them for its pollers.
    pub fn send(&mut self, events: &[ServerEvent]) {
        if events.is_empty() {
            return;
        }
        self.seq += 1;
        let batch = Arc::new(Batch::new(self.seq, events));
        // No receiver is fine: pollers read what is kept.
        let _ = self.sender.send(batch.clone());
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(batch);
    }

    pub fn since(&self, from: Position) -> Since {
        if from.tag != self.tag || from.seq > self.seq {
            return Since::Unknown;
        }
        let oldest = self.kept.front().map_or(self.seq + 1, |b| b.seq);
        if from.seq + 1 < oldest {
            return Since::Unknown;
        }
        Since::Batches(
            self.kept
                .iter()
                .filter(|b| b.seq > from.seq)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use protocol::Typing;

    use super::*;

    fn typing(name: &str) -> ServerEvent {
        ServerEvent::Typing(Typing {
            name: name.into(),
            id: "x".into(),
        })
    }

    fn seqs(since: Since) -> Vec<u64> {
        match since {
            Since::Batches(batches) => batches.iter().map(|b| b.seq).collect(),
            Since::Unknown => panic!("expected batches"),
        }
    }

    #[test]
    fn pollers_get_what_they_missed_or_are_told_to_start_over() {
        let mut hub = Hub::new(7);
        let start = hub.position();
        assert_eq!(seqs(hub.since(start)), Vec::<u64>::new());
        hub.send(&[typing("a")]);
        hub.send(&[]);
        hub.send(&[typing("b"), typing("c")]);
        assert_eq!(seqs(hub.since(start)), [1, 2]);
        assert_eq!(seqs(hub.since(hub.position())), Vec::<u64>::new());
        // Another hub's position, or one from the future.
        assert!(matches!(
            hub.since(Position { tag: 8, seq: 0 }),
            Since::Unknown
        ));
        assert!(matches!(
            hub.since(Position { tag: 7, seq: 9 }),
            Since::Unknown
        ));
        for _ in 0..KEPT {
            hub.send(&[typing("d")]);
        }
        assert!(
            matches!(hub.since(start), Since::Unknown),
            "fell out of what is kept"
        );
        let position = Position::parse(&hub.position().to_string()).expect("round trip");
        assert_eq!(position, hub.position());
    }

    #[test]
    fn a_batch_is_encoded_once_per_framing() {
        let mut hub = Hub::new(1);
        let mut listener = hub.subscribe();
        hub.send(&[typing("a"), typing("b")]);
        let batch = listener.try_recv().expect("sent to streams");
        assert_eq!(batch.events.len(), 2);
        let sse = std::str::from_utf8(&batch.sse).expect("UTF-8");
        assert!(
            sse.starts_with("event: typing\ndata: {\"type\":\"typing\",\"name\":\"a\""),
            "{sse}"
        );
        assert_eq!(sse.matches("\n\n").count(), 2);
        assert!(!sse.contains("id:"), "signals are not messages");
        assert_eq!(batch.ws[0], 0x81, "a final text frame");
    }
}
