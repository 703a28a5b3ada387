//! The message bus: one ordered, bounded history per room, plus live fan-out.
//!
//! Transports see only this interface. They publish, read a [`Snapshot`] of history after a
//! [`Cursor`], or [`subscribe`](Bus::subscribe) to get the history after a cursor followed
//! seamlessly by live messages. Ids, epochs, retention and the seam between history and live
//! delivery are the bus's business, so a Redis-backed implementation (several relays sharing
//! rooms) can replace the in-memory one without any transport assuming a single process.
//!
//! Each message is serialized once, at publish, into an [`Envelope`] whose byte buffers are
//! shared by every receiver on every transport.

pub mod memory;
pub mod redis;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use protocol::{Message, Reset, ResetReason, ServerEvent};
use tokio::sync::broadcast;

use crate::validate::RoomName;

/// Messages a room's live queue holds for its slowest subscriber. A subscriber further behind
/// than this is not dropped: it catches up from history (see `Subscription::next`). The queue
/// holds pointers, so its cost is 256 × 8 bytes per room whatever the message sizes; larger
/// values only postpone the (cheap) history catch-up.
pub const LIVE_QUEUE: usize = 256;

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
        // Serializing strings and integers cannot fail; the fallback keeps this total.
        let json = serde_json::to_string(&ServerEvent::Message(message))
            .unwrap_or_else(|_| String::from("{}"));
        // serde_json escapes line breaks inside strings, so the JSON is one `data:` line.
        let sse = Bytes::from(format!("id: {id}\nevent: message\ndata: {json}\n\n"));
        Envelope {
            id,
            ts,
            json: Utf8Bytes::from(json),
            sse,
        }
    }
}

/// Where a client wants to continue from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last id the client has; `None` for a newcomer.
    pub after: Option<u64>,
    /// The epoch `after` belongs to; `None` trusts `after` as the current epoch's.
    pub epoch: Option<String>,
}

/// The history a client is owed, as of one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: Arc<str>,
    /// The room's newest id at that instant.
    pub head: u64,
    /// Set when the cursor could not be continued without a gap.
    pub reset: Option<Reset>,
    pub messages: Vec<Arc<Envelope>>,
    /// True when `limit` left retained messages out.
    pub more: bool,
    /// The cursor to continue from when `messages` is empty: the head, or — when `limit` left
    /// everything out (`limit=0`) — the id just before the first message left out.
    pub cursor_if_empty: u64,
}

impl Snapshot {
    /// Keeps only the newest `n` messages: what a newcomer (or a client from a lost epoch)
    /// is shown on joining.
    pub fn keep_latest(&mut self, n: usize) {
        let excess = self.messages.len().saturating_sub(n);
        self.messages.drain(..excess);
    }

    /// The cursor a poller should send next: the last message returned, else where the
    /// answer stopped.
    pub fn next_after(&self) -> u64 {
        self.messages.last().map_or(self.cursor_if_empty, |m| m.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Creating the room would exceed the configured number of rooms.
    TooManyRooms,
    /// The backing store cannot be reached.
    Unavailable(String),
}

/// A room's retained messages, oldest first, and the newest id ever assigned.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub last_id: u64,
    pub retained: VecDeque<Arc<Envelope>>,
}

impl History {
    /// The oldest id still retained (`last_id + 1` when nothing is).
    fn oldest_id(&self) -> u64 {
        self.retained.front().map_or(self.last_id + 1, |m| m.id)
    }

    /// What a client at `cursor` is owed, at most `limit` messages.
    pub fn snapshot(&self, epoch: &Arc<str>, cursor: &Cursor, limit: usize) -> Snapshot {
        snapshot(
            &self.retained,
            self.last_id,
            self.oldest_id(),
            epoch,
            cursor,
            limit,
        )
    }
}

/// What a client at `cursor` is owed, at most `limit` messages. This is the single place that
/// decides between continuing a cursor and resetting it, for every bus.
///
/// `window` holds retained messages, oldest first: all of them, or (from Redis) at least the
/// `limit + 1` the cursor continues with, or the newest `limit` when it cannot continue.
/// `last_id` is the room's newest id and `oldest_id` its oldest retained one.
pub(crate) fn snapshot(
    window: &VecDeque<Arc<Envelope>>,
    last_id: u64,
    oldest_id: u64,
    epoch: &Arc<str>,
    cursor: &Cursor,
    limit: usize,
) -> Snapshot {
    let foreign_epoch = cursor.epoch.as_deref().is_some_and(|e| e != &**epoch);
    let reset_reason = match cursor.after {
        _ if foreign_epoch => Some(ResetReason::EpochChanged),
        Some(after) if after > last_id => Some(ResetReason::EpochChanged),
        Some(after) if after + 1 < oldest_id => Some(ResetReason::HistoryGap),
        _ => None,
    };
    let (messages, more, cursor_if_empty) = match (reset_reason, cursor.after) {
        // Continue after the cursor (or, past a gap, from the oldest retained message).
        (None | Some(ResetReason::HistoryGap), Some(after)) => {
            let skip = window.partition_point(|m| m.id <= after);
            let newer = window.len() - skip;
            let take = newer.min(limit);
            let messages = window.range(skip..skip + take).cloned().collect();
            let stop = window
                .get(skip)
                .filter(|_| take == 0)
                .map_or(last_id, |first_left_out| first_left_out.id - 1);
            (messages, newer > take, stop)
        }
        // A newcomer, or a cursor from another history: the most recent `limit`.
        _ => {
            let skip = window.len().saturating_sub(limit);
            (window.range(skip..).cloned().collect(), false, last_id)
        }
    };
    Snapshot {
        epoch: epoch.clone(),
        head: last_id,
        reset: reset_reason.map(|reason| Reset { reason, oldest_id }),
        messages,
        more,
        cursor_if_empty,
    }
}

/// Locks a mutex that is only held for short, non-async updates.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the data is plain and still usable,
    // and refusing every later request would turn one bug into an outage.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a subscriber receives, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<Envelope>),
    /// The subscriber's position could not be continued; what follows starts at `oldest_id`.
    Reset(Reset),
}

/// Handle on the message bus. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Bus {
    Memory(memory::MemoryBus),
    Redis(redis::RedisBus),
}

impl Bus {
    /// Appends a message to the room and delivers it to every subscriber; returns its id.
    pub async fn publish(
        &self,
        room: &RoomName,
        from: String,
        text: String,
    ) -> Result<u64, BusError> {
        match self {
            Bus::Memory(bus) => bus.publish(room, from, text).map(|envelope| envelope.id),
            Bus::Redis(bus) => bus.publish(room, &from, &text).await,
        }
    }

    /// The messages after `cursor`, at most `limit`, without waiting.
    pub async fn read(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Snapshot, BusError> {
        match self {
            Bus::Memory(bus) => Ok(bus.read(room, cursor, limit)),
            Bus::Redis(bus) => bus.read(room, cursor, limit).await,
        }
    }

    /// History after `cursor` (at most `limit` for a newcomer; everything retained for a
    /// resuming client), then live messages, with no gap or repeat at the seam.
    pub async fn subscribe(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Subscription, BusError> {
        match self {
            Bus::Memory(bus) => bus.subscribe(room, cursor, limit),
            Bus::Redis(bus) => bus.subscribe(room, cursor, limit).await,
        }
    }

    /// Rooms this relay holds (memory) or follows for its subscribers (Redis), for `/metrics`.
    pub async fn rooms(&self) -> usize {
        match self {
            Bus::Memory(bus) => bus.rooms(),
            Bus::Redis(bus) => bus.rooms(),
        }
    }

    /// Whether the bus can serve requests (`/readyz`).
    pub async fn ready(&self) -> bool {
        match self {
            Bus::Memory(_) => true,
            Bus::Redis(bus) => bus.ready().await,
        }
    }

    /// Whether live messages flow (`/metrics`): always in memory; with Redis, while the relay
    /// is subscribed. Cheaper than [`Bus::ready`], which asks Redis.
    pub fn connected(&self) -> bool {
        match self {
            Bus::Memory(_) => true,
            Bus::Redis(bus) => bus.connected(),
        }
    }

    /// How many messages a subscriber may be catching up after falling behind.
    fn retention(&self) -> usize {
        match self {
            Bus::Memory(bus) => bus.retention(),
            Bus::Redis(bus) => bus.retention(),
        }
    }
}

/// A live view of one room: the snapshot the subscriber is owed, then every new message.
///
/// A subscriber that falls further behind than the live queue holds is not dropped: it reads
/// what it missed from history and carries on (see [`Subscription::next`]).
#[derive(Debug)]
pub struct Subscription {
    bus: Bus,
    room: RoomName,
    epoch: Arc<str>,
    /// The room's newest id when the subscription opened.
    head: u64,
    live: broadcast::Receiver<Arc<Envelope>>,
    /// Deliveries decided but not yet handed out.
    pending: VecDeque<Delivery>,
    /// The newest id handed to (or queued for) the subscriber; live messages at or below it
    /// are the seam's overlap and are skipped.
    position: u64,
    /// Set when the live queue overflowed; cleared once history has filled the hole. Kept in
    /// the struct (not a local) so that `next` stays cancel-safe inside `select!`.
    lagged: bool,
}

impl Subscription {
    fn new(
        bus: Bus,
        room: RoomName,
        snapshot: Snapshot,
        live: broadcast::Receiver<Arc<Envelope>>,
    ) -> Subscription {
        let mut sub = Subscription {
            bus,
            room,
            epoch: snapshot.epoch.clone(),
            head: snapshot.head,
            live,
            pending: VecDeque::new(),
            position: snapshot.head,
            lagged: false,
        };
        sub.queue(snapshot);
        sub
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The room's newest id when the subscription opened (the welcome's `last_id`).
    pub fn head(&self) -> u64 {
        self.head
    }

    fn queue(&mut self, snapshot: Snapshot) {
        if let Some(reset) = snapshot.reset {
            self.pending.push_back(Delivery::Reset(reset));
        }
        for message in snapshot.messages {
            self.position = self.position.max(message.id);
            self.pending.push_back(Delivery::Message(message));
        }
    }

    /// The next delivery if one is ready now, without waiting: lets a transport write a burst
    /// of messages with one flush. `None` also when a lag needs the (async) catch-up, which
    /// the next call to [`Subscription::next`] performs.
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            if self.lagged {
                return None;
            }
            match self.live.try_recv() {
                Ok(message) if message.id == self.position + 1 => {
                    self.position = message.id;
                    return Some(Delivery::Message(message));
                }
                Ok(message) if message.id > self.position => self.lagged = true,
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.lagged = true,
                Err(_) => return None,
            }
        }
    }

    /// The next delivery, or `None` once the bus has shut the room down. Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            if self.lagged {
                let cursor = Cursor {
                    after: Some(self.position),
                    epoch: Some(self.epoch.to_string()),
                };
                let retention = self.bus.retention();
                let snapshot = match self.bus.read(&self.room, &cursor, retention).await {
                    Ok(snapshot) if snapshot.epoch == self.epoch => snapshot,
                    // The bus cannot fill the hole, or the room's history is gone: end the
                    // stream, so that the client reconnects with `after` (and learns of a new
                    // epoch) instead of silently missing messages.
                    _ => return None,
                };
                self.lagged = false;
                self.queue(snapshot);
                continue;
            }
            match self.live.recv().await {
                Ok(message) if message.id == self.position + 1 => {
                    self.position = message.id;
                    return Some(Delivery::Message(message));
                }
                // Ids are consecutive, so a jump means the live path lost messages (a Redis
                // subscription that dropped): fill the hole from history, like a lag.
                Ok(message) if message.id > self.position => {
                    tracing::debug!(room = %self.room, position = self.position, id = message.id, "gap in live messages; catching up from history");
                    self.lagged = true;
                }
                // Already delivered from history: the overlap at the seam.
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(room = %self.room, skipped, "subscriber lagged; catching up from history");
                    self.lagged = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(ids: std::ops::RangeInclusive<u64>, last_id: u64) -> History {
        History {
            last_id,
            retained: ids
                .map(|id| {
                    Arc::new(Envelope::new(Message {
                        id,
                        room: "r".into(),
                        from: "a".into(),
                        text: format!("m{id}"),
                        ts: 0,
                    }))
                })
                .collect(),
        }
    }

    fn ids(snapshot: &Snapshot) -> Vec<u64> {
        snapshot.messages.iter().map(|m| m.id).collect()
    }

    fn epoch() -> Arc<str> {
        Arc::from("e1")
    }

    fn after(after: u64) -> Cursor {
        Cursor {
            after: Some(after),
            epoch: Some("e1".into()),
        }
    }

    #[test]
    fn newcomer_gets_the_most_recent_limit() {
        let snap = history(1..=10, 10).snapshot(&epoch(), &Cursor::default(), 3);
        assert_eq!(ids(&snap), [8, 9, 10]);
        assert_eq!(snap.reset, None);
        assert_eq!(snap.next_after(), 10);
    }

    #[test]
    fn cursor_continues_exactly_after_its_id() {
        let snap = history(1..=10, 10).snapshot(&epoch(), &after(7), 50);
        assert_eq!(ids(&snap), [8, 9, 10]);
        assert!(!snap.more);
        let snap = history(1..=10, 10).snapshot(&epoch(), &after(10), 50);
        assert!(snap.messages.is_empty());
        assert_eq!(snap.next_after(), 10);
    }

    #[test]
    fn limit_truncates_oldest_first_and_says_more() {
        let snap = history(1..=10, 10).snapshot(&epoch(), &after(2), 3);
        assert_eq!(ids(&snap), [3, 4, 5]);
        assert!(snap.more);
        assert_eq!(snap.next_after(), 5);
    }

    #[test]
    fn limit_zero_keeps_the_cursor_where_it_was() {
        let snap = history(1..=10, 10).snapshot(&epoch(), &after(4), 0);
        assert!(snap.messages.is_empty());
        assert!(snap.more);
        assert_eq!(
            snap.next_after(),
            4,
            "not the head: 5..=10 were left out, not read"
        );
        // Past a gap, the cursor moves to just before the oldest retained message.
        let snap = history(5..=10, 10).snapshot(&epoch(), &after(1), 0);
        assert_eq!(snap.next_after(), 4);
    }

    #[test]
    fn cursor_just_before_retention_is_not_a_gap() {
        // Retained 5..=10: a client at 4 has missed nothing.
        let snap = history(5..=10, 10).snapshot(&epoch(), &after(4), 50);
        assert_eq!(snap.reset, None);
        assert_eq!(ids(&snap), [5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn cursor_older_than_retention_is_a_history_gap() {
        let snap = history(5..=10, 10).snapshot(&epoch(), &after(3), 50);
        assert_eq!(
            snap.reset,
            Some(Reset {
                reason: ResetReason::HistoryGap,
                oldest_id: 5
            })
        );
        assert_eq!(ids(&snap), [5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn foreign_epoch_resets_and_serves_like_a_newcomer() {
        let cursor = Cursor {
            after: Some(3),
            epoch: Some("old".into()),
        };
        let snap = history(1..=10, 10).snapshot(&epoch(), &cursor, 2);
        assert_eq!(
            snap.reset.as_ref().map(|r| r.reason),
            Some(ResetReason::EpochChanged)
        );
        assert_eq!(ids(&snap), [9, 10]);
    }

    #[test]
    fn cursor_beyond_the_head_is_from_another_epoch() {
        let cursor = Cursor {
            after: Some(11),
            epoch: None,
        };
        let snap = history(1..=10, 10).snapshot(&epoch(), &cursor, 50);
        assert_eq!(
            snap.reset.as_ref().map(|r| r.reason),
            Some(ResetReason::EpochChanged)
        );
    }

    #[test]
    fn empty_room_has_nothing_and_no_reset() {
        let snap = History::default().snapshot(&epoch(), &after(0), 50);
        assert!(snap.messages.is_empty());
        assert_eq!(snap.reset, None);
        assert_eq!(snap.next_after(), 0);
    }

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
