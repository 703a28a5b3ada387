//! The in-memory bus: rooms live in this process and die with it.
//!
//! Locking: a map lock to find a room, then a per-room lock around "assign id, append to
//! history, send to the live queue" and around "subscribe to the live queue, snapshot history".
//! Because both happen under the same room lock, a subscriber's snapshot and its live queue
//! meet exactly at one id: nothing falls between them and nothing is in both (apart from the
//! overlap the subscription skips by id). Both locks are `std` mutexes held for a few
//! microseconds of non-async work, never across an `.await`, which is cheaper than an async
//! mutex and cannot deadlock a task.
//!
//! Each room's history is a `History` here: the retained messages and the newest id, which is
//! all the shared continue-or-reset rule (`snapshot` in `cursor.rs`) needs to answer any
//! cursor. Only this bus keeps whole histories in the process; the Redis bus reads them from
//! Redis.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{Message, ResetReason};
use tokio::sync::broadcast;

use super::cursor::snapshot;
use super::{Bus, BusError, Cursor, Envelope, LIVE_QUEUE, Snapshot, Subscription};
use crate::clock::unix_millis;
use crate::sync::lock;
use crate::validate::RoomName;

#[derive(Clone, Debug)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// One epoch per process: in-memory history lives exactly as long as the process.
    epoch: Arc<str>,
    retention: usize,
    max_rooms: usize,
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
}

#[derive(Debug)]
struct Room {
    log: Mutex<RoomLog>,
    live: broadcast::Sender<Arc<Envelope>>,
}

/// A room's retained messages, oldest first, and the newest id ever assigned.
#[derive(Debug, Default)]
struct History {
    last_id: u64,
    retained: VecDeque<Arc<Envelope>>,
}

impl History {
    /// The oldest id still retained (`last_id + 1` when nothing is).
    fn oldest_id(&self) -> u64 {
        self.retained.front().map_or(self.last_id + 1, |m| m.id)
    }

    /// What a client at `cursor` is owed, at most `limit` messages.
    fn snapshot(&self, epoch: &Arc<str>, cursor: &Cursor, limit: usize) -> Snapshot {
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

#[derive(Debug, Default)]
struct RoomLog {
    history: History,
    /// Set when an idle, never-used room was removed to make space while another task still
    /// held a pointer to it; that task looks the room up again.
    removed: bool,
}

impl MemoryBus {
    /// `retention`: messages kept per room (at least 1). `max_rooms`: rooms at once.
    pub fn new(retention: usize, max_rooms: usize) -> MemoryBus {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        MemoryBus {
            inner: Arc::new(Inner {
                epoch: format!("m{nanos:x}").into(),
                retention: retention.max(1),
                max_rooms,
                rooms: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn retention(&self) -> usize {
        self.inner.retention
    }

    pub fn rooms(&self) -> usize {
        lock(&self.inner.rooms).len()
    }

    fn room(&self, name: &RoomName) -> Result<Arc<Room>, BusError> {
        let mut rooms = lock(&self.inner.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if rooms.len() >= self.inner.max_rooms {
            // Rooms that never had a message and have nobody listening carry no state: drop
            // them rather than refuse a room that someone actually wants.
            rooms.retain(|_, room| {
                let mut log = lock(&room.log);
                let idle = log.history.last_id == 0 && room.live.receiver_count() == 0;
                log.removed |= idle;
                !idle
            });
            if rooms.len() >= self.inner.max_rooms {
                return Err(BusError::TooManyRooms);
            }
        }
        let room = Arc::new(Room {
            log: Mutex::new(RoomLog::default()),
            live: broadcast::channel(LIVE_QUEUE).0,
        });
        rooms.insert(name.clone(), room.clone());
        Ok(room)
    }

    pub fn publish(
        &self,
        name: &RoomName,
        from: String,
        text: String,
    ) -> Result<Arc<Envelope>, BusError> {
        loop {
            let room = self.room(name)?;
            let mut log = lock(&room.log);
            if log.removed {
                continue;
            }
            let id = log.history.last_id + 1;
            let envelope = Arc::new(Envelope::new(Message {
                id,
                room: name.to_string(),
                from,
                text,
                ts: unix_millis(),
            }));
            log.history.last_id = id;
            log.history.retained.push_back(envelope.clone());
            if log.history.retained.len() > self.inner.retention {
                log.history.retained.pop_front();
            }
            // Sending under the room lock keeps the live queue in id order. It fails only
            // when nobody is subscribed, which is fine: the message is in history.
            let _ = room.live.send(envelope.clone());
            return Ok(envelope);
        }
    }

    pub fn read(&self, name: &RoomName, cursor: &Cursor, limit: usize) -> Snapshot {
        let room = lock(&self.inner.rooms).get(name).cloned();
        match room {
            Some(room) => lock(&room.log)
                .history
                .snapshot(&self.inner.epoch, cursor, limit),
            // Reading does not create a room: a stray GET must not use up the room budget.
            None => History::default().snapshot(&self.inner.epoch, cursor, limit),
        }
    }

    pub fn subscribe(
        &self,
        name: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Subscription, BusError> {
        loop {
            let room = self.room(name)?;
            let log = lock(&room.log);
            if log.removed {
                continue;
            }
            let live = room.live.subscribe();
            let mut snapshot =
                log.history
                    .snapshot(&self.inner.epoch, cursor, self.inner.retention);
            drop(log);
            // A resuming client is owed everything it missed; a newcomer (or a client whose
            // ids belong to a lost epoch) gets the newest `limit`, like a first poll.
            let newcomer = cursor.after.is_none()
                || snapshot
                    .reset
                    .as_ref()
                    .is_some_and(|r| r.reason == ResetReason::EpochChanged);
            if newcomer {
                snapshot.keep_latest(limit);
            }
            return Ok(Subscription::new(
                Bus::Memory(self.clone()),
                name.clone(),
                snapshot,
                live,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Delivery;
    use super::*;
    use std::time::Duration;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("valid room")
    }

    async fn next_id(sub: &mut Subscription) -> u64 {
        match tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("a delivery within 5 s")
        {
            Some(Delivery::Message(m)) => m.id,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ids_increase_per_room_independently() {
        let bus = MemoryBus::new(10, 10);
        let a = room("a");
        let b = room("b");
        let ids: Vec<u64> = (0..3)
            .map(|_| bus.publish(&a, "x".into(), "t".into()).expect("publish").id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            bus.publish(&b, "x".into(), "t".into()).expect("publish").id,
            1
        );
    }

    #[tokio::test]
    async fn history_is_bounded_and_reads_report_the_gap() {
        let bus = MemoryBus::new(3, 10);
        let r = room("r");
        for _ in 0..5 {
            bus.publish(&r, "x".into(), "t".into()).expect("publish");
        }
        let cursor = Cursor {
            after: Some(1),
            epoch: None,
        };
        let snap = bus.read(&r, &cursor, 50);
        assert_eq!(
            snap.reset.as_ref().map(|r| r.reason),
            Some(ResetReason::HistoryGap)
        );
        let ids: Vec<u64> = snap.messages.iter().map(|m| m.id).collect();
        assert_eq!(ids, [3, 4, 5]);
    }

    #[tokio::test]
    async fn subscriber_gets_history_then_live_without_overlap() {
        let bus = MemoryBus::new(100, 10);
        let r = room("r");
        for _ in 0..3 {
            bus.publish(&r, "x".into(), "t".into()).expect("publish");
        }
        let cursor = Cursor {
            after: Some(1),
            epoch: None,
        };
        let mut sub = bus.subscribe(&r, &cursor, 50).expect("subscribe");
        assert_eq!(sub.head(), 3);
        bus.publish(&r, "x".into(), "t".into()).expect("publish");
        for expected in 2..=4 {
            assert_eq!(next_id(&mut sub).await, expected);
        }
    }

    #[tokio::test]
    async fn lagging_subscriber_catches_up_from_history() {
        let bus = MemoryBus::new(10 * LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50)
            .expect("subscribe");
        let total = 3 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, "x".into(), "t".into()).expect("publish");
        }
        for expected in 1..=total {
            assert_eq!(next_id(&mut sub).await, expected);
        }
    }

    #[tokio::test]
    async fn try_next_drains_what_is_ready_and_then_waits_for_next() {
        let bus = MemoryBus::new(10 * LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50)
            .expect("subscribe");
        assert!(sub.try_next().is_none(), "nothing ready");
        let total = 2 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, "x".into(), "t".into()).expect("publish");
        }
        // The live queue overflowed: try_next stops at the lag, next catches up.
        let mut got = Vec::new();
        while got.len() < total as usize {
            match sub.try_next() {
                Some(Delivery::Message(m)) => got.push(m.id),
                Some(other) => panic!("unexpected {other:?}"),
                None => got.push(next_id(&mut sub).await),
            }
        }
        assert_eq!(got, (1..=total).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn subscriber_lagging_beyond_history_is_told_of_the_gap() {
        let bus = MemoryBus::new(LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50)
            .expect("subscribe");
        let total = 3 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, "x".into(), "t".into()).expect("publish");
        }
        match sub.next().await {
            Some(Delivery::Reset(reset)) => {
                assert_eq!(reset.reason, ResetReason::HistoryGap);
                assert_eq!(reset.oldest_id, total - LIVE_QUEUE as u64 + 1);
            }
            other => panic!("expected a history_gap reset, got {other:?}"),
        }
        assert_eq!(next_id(&mut sub).await, total - LIVE_QUEUE as u64 + 1);
    }

    #[tokio::test]
    async fn room_cap_counts_rooms_but_recycles_unused_ones() {
        let bus = MemoryBus::new(10, 2);
        bus.publish(&room("a"), "x".into(), "t".into())
            .expect("publish");
        let listener = bus
            .subscribe(&room("b"), &Cursor::default(), 50)
            .expect("subscribe");
        assert_eq!(
            bus.publish(&room("c"), "x".into(), "t".into())
                .expect_err("full"),
            BusError::TooManyRooms
        );
        drop(listener);
        // "b" never had a message and nobody listens any more: it makes way for "c".
        bus.publish(&room("c"), "x".into(), "t".into())
            .expect("recycled");
        assert_eq!(bus.rooms(), 2);
    }

    #[tokio::test]
    async fn reading_a_missing_room_does_not_create_it() {
        let bus = MemoryBus::new(10, 1);
        let snap = bus.read(&room("ghost"), &Cursor::default(), 50);
        assert_eq!(snap.head, 0);
        assert_eq!(bus.rooms(), 0);
    }
}
