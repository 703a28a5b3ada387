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
//! Rooms come and go: each incarnation of a room has an epoch of its own, so a cursor from an
//! earlier one is told `epoch_changed`. A room with nobody listening makes way (history and
//! all) when a new room needs its place at `RELAY_MAX_ROOMS`, least recently active first, and
//! expires after `RELAY_ROOM_TTL` without a message or a listener; a room with listeners is
//! never removed.
//!
//! Each room's history is a `History` here: the retained messages, their size, and the
//! newest id, which is all the shared continue-or-reset rule (`snapshot` in `cursor.rs`) needs
//! to answer any cursor.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::Message;

use super::cursor::snapshot;
use super::{
    Bus, BusError, Cursor, Draft, Envelope, LiveQueue, NO_EPOCH, Published, RoomLimits, Snapshot,
    Subscription,
};
use crate::clock::unix_millis;
use crate::sync::lock;
use crate::validate::RoomName;

#[derive(Clone, Debug)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Unique to this process; each room incarnation's epoch extends it with a counter.
    epoch_base: String,
    incarnations: AtomicU64,
    limits: RoomLimits,
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
}

#[derive(Debug)]
struct Room {
    epoch: Arc<str>,
    log: Mutex<RoomLog>,
    live: LiveQueue,
}

/// A room's retained messages, oldest first, their size, and the newest id ever assigned.
#[derive(Debug, Default)]
struct History {
    last_id: u64,
    retained: VecDeque<Arc<Envelope>>,
    /// Bytes of the retained messages, as stored.
    bytes: usize,
    /// The idempotency keys of the retained messages that had one, and their ids: a key is
    /// forgotten with its message, so that the index costs no more than history does (each
    /// message's stored size counts its key).
    keys: HashMap<Box<str>, u64>,
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

    /// Appends a message, then lets the oldest go until both budgets hold (the newest
    /// message always stays, whatever its size).
    fn push(&mut self, envelope: Arc<Envelope>, limits: &RoomLimits) {
        self.last_id = envelope.id;
        self.bytes += envelope.stored_bytes();
        if let Some((key, _)) = &envelope.key {
            self.keys.insert(key.clone(), envelope.id);
        }
        self.retained.push_back(envelope);
        while self.retained.len() > 1
            && (self.retained.len() > limits.retention || self.bytes > limits.history_bytes)
        {
            if let Some(oldest) = self.retained.pop_front() {
                self.bytes -= oldest.stored_bytes();
                if let Some((key, _)) = &oldest.key
                    && self.keys.get(key) == Some(&oldest.id)
                {
                    self.keys.remove(key);
                }
            }
        }
    }

    /// The id of the retained message published with `draft`'s key at most `window` ago;
    /// refused if that key was bound to another sender or text.
    fn keyed(&self, draft: &Draft<'_>, window: Duration) -> Result<Option<u64>, BusError> {
        let Some(key) = draft.key else {
            return Ok(None);
        };
        let Some(&id) = self.keys.get(key) else {
            return Ok(None);
        };
        let index = self.retained.partition_point(|m| m.id < id);
        let Some(message) = self.retained.get(index).filter(|m| m.id == id) else {
            return Ok(None);
        };
        let age = unix_millis().saturating_sub(message.ts);
        if u128::from(age) > window.as_millis() {
            return Ok(None);
        }
        match &message.key {
            Some((_, bound)) if *bound == draft.fingerprint() => Ok(Some(id)),
            _ => Err(BusError::KeyReused),
        }
    }
}

#[derive(Debug)]
struct RoomLog {
    history: History,
    /// The last message, or the last time someone started or stopped listening.
    active: Instant,
    /// Set when the room was removed (evicted or expired) while another task still held a
    /// pointer to it; that task looks the room up again.
    removed: bool,
}

impl Room {
    fn new(epoch: Arc<str>) -> Room {
        Room {
            epoch,
            log: Mutex::new(RoomLog {
                history: History::default(),
                active: Instant::now(),
                removed: false,
            }),
            live: LiveQueue::new(),
        }
    }

    fn listened(&self) -> bool {
        self.live.receiver_count() > 0
    }
}

/// The empty, epoch-less answer about a room that does not exist: a client told this has
/// nothing, so whatever incarnation comes next continues its cursor without a gap.
fn no_room(cursor: &Cursor, limit: usize) -> Snapshot {
    History::default().snapshot(&Arc::from(NO_EPOCH), cursor, limit)
}

impl MemoryBus {
    /// Must be called within a Tokio runtime: a task expires unused rooms.
    pub fn new(limits: RoomLimits) -> MemoryBus {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let bus = MemoryBus {
            inner: Arc::new(Inner {
                epoch_base: format!("m{nanos:x}"),
                incarnations: AtomicU64::new(0),
                limits: RoomLimits {
                    retention: limits.retention.max(1),
                    ..limits
                },
                rooms: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(expire_rooms(Arc::downgrade(&bus.inner)));
        bus
    }

    pub fn retention(&self) -> usize {
        self.inner.limits.retention
    }

    pub fn rooms(&self) -> usize {
        lock(&self.inner.rooms).len()
    }

    /// The room, created if it does not exist and `may_create` allows; `true` if created.
    fn room(&self, name: &RoomName, may_create: bool) -> Result<(Arc<Room>, bool), BusError> {
        let mut rooms = lock(&self.inner.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok((room.clone(), false));
        }
        if !may_create {
            return Err(BusError::NewRoomRefused);
        }
        if rooms.len() >= self.inner.limits.max_rooms {
            remove_expired(&mut rooms, self.inner.limits.ttl);
        }
        if rooms.len() >= self.inner.limits.max_rooms {
            // The least recently active room nobody listens to makes way, history and all.
            let victim = rooms
                .iter()
                .filter(|(_, room)| !room.listened())
                .min_by_key(|(_, room)| lock(&room.log).active)
                .map(|(name, _)| name.clone());
            let Some(victim) = victim else {
                return Err(BusError::TooManyRooms);
            };
            if let Some(room) = rooms.remove(&victim) {
                lock(&room.log).removed = true;
                tracing::debug!(room = %victim, "room evicted to make way for a new one");
            }
        }
        let n = self.inner.incarnations.fetch_add(1, Ordering::Relaxed);
        let room = Arc::new(Room::new(format!("{}.{n:x}", self.inner.epoch_base).into()));
        rooms.insert(name.clone(), room.clone());
        Ok((room, true))
    }

    /// Publishes, or finds the message published with the same key (the envelope is then
    /// the stored one, and nothing is sent).
    pub fn publish(
        &self,
        name: &RoomName,
        draft: Draft<'_>,
        may_create: bool,
    ) -> Result<(Option<Arc<Envelope>>, Published), BusError> {
        loop {
            let (room, created) = self.room(name, may_create)?;
            let mut log = lock(&room.log);
            if log.removed {
                continue;
            }
            if let Some(id) = log.history.keyed(&draft, self.inner.limits.dedup_window)? {
                let published = Published {
                    id,
                    created,
                    duplicate: true,
                };
                return Ok((None, published));
            }
            let id = log.history.last_id + 1;
            let envelope = Arc::new(Envelope::new(
                Message {
                    id,
                    room: name.to_string(),
                    from: draft.from.to_owned(),
                    text: draft.text.to_owned(),
                    ts: unix_millis(),
                    key: draft.key.map(str::to_owned),
                },
                &room.epoch,
            ));
            log.history.push(envelope.clone(), &self.inner.limits);
            log.active = Instant::now();
            // Sending under the room lock keeps the live queue in id order; the direct
            // writes start after it is released (see `LiveQueue::send`).
            let fanout = room.live.send(&envelope);
            drop(log);
            fanout.deliver();
            let published = Published {
                id,
                created,
                duplicate: false,
            };
            return Ok((Some(envelope), published));
        }
    }

    pub fn read(&self, name: &RoomName, cursor: &Cursor, limit: usize) -> Snapshot {
        let room = lock(&self.inner.rooms).get(name).cloned();
        match room {
            Some(room) => lock(&room.log).history.snapshot(&room.epoch, cursor, limit),
            // Reading does not create a room: a stray GET must not use up the room budget.
            None => no_room(cursor, limit),
        }
    }

    pub fn subscribe(
        &self,
        name: &RoomName,
        cursor: &Cursor,
        limit: usize,
        may_create: bool,
    ) -> Result<(Subscription, bool), BusError> {
        loop {
            let (room, created) = self.room(name, may_create)?;
            let mut log = lock(&room.log);
            if log.removed {
                continue;
            }
            let live = room.live.subscribe();
            log.active = Instant::now();
            let mut snapshot =
                log.history
                    .snapshot(&room.epoch, cursor, self.inner.limits.retention);
            drop(log);
            // A resuming client is owed everything it missed (from another epoch: all of
            // this one); a newcomer gets the newest `limit`, like a first poll.
            if cursor.after.is_none() {
                snapshot.keep_latest(limit);
            }
            let sub = Subscription::new(
                Bus::Memory(self.clone()),
                name.clone(),
                snapshot,
                live,
                &room.live,
            );
            return Ok((sub, created));
        }
    }

    /// A subscriber left: the room's idle time counts from now.
    pub fn left(&self, name: &RoomName) {
        let room = lock(&self.inner.rooms).get(name).cloned();
        if let Some(room) = room {
            lock(&room.log).active = Instant::now();
        }
    }
}

/// Removes the rooms nobody listens to that have been inactive for `ttl`.
fn remove_expired(rooms: &mut HashMap<RoomName, Arc<Room>>, ttl: Duration) {
    rooms.retain(|name, room| {
        let mut log = lock(&room.log);
        let expired = !room.listened() && log.active.elapsed() >= ttl;
        if expired {
            log.removed = true;
            tracing::debug!(room = %name, "room expired");
        }
        !expired
    });
}

/// Expires unused rooms every quarter of the TTL (within 1 s and 1 min), for as long as the
/// bus exists.
async fn expire_rooms(inner: Weak<Inner>) {
    let Some(ttl) = inner.upgrade().map(|inner| inner.limits.ttl) else {
        return;
    };
    let period = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        remove_expired(&mut lock(&inner.rooms), ttl);
    }
}

#[cfg(test)]
mod tests {
    use protocol::ResetReason;

    use super::super::{Delivery, LIVE_QUEUE};
    use super::*;

    fn limits(retention: usize, max_rooms: usize) -> RoomLimits {
        RoomLimits {
            retention,
            history_bytes: usize::MAX,
            max_rooms,
            ttl: Duration::from_secs(3600),
            dedup_window: Duration::from_secs(300),
        }
    }

    fn draft<'a>(from: &'a str, text: &'a str) -> Draft<'a> {
        Draft {
            from,
            text,
            key: None,
        }
    }

    fn bus_with(retention: usize, max_rooms: usize) -> MemoryBus {
        MemoryBus::new(limits(retention, max_rooms))
    }

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
    async fn a_key_seen_before_stores_nothing_and_answers_the_first_id() {
        let bus = bus_with(10, 10);
        let r = room("k");
        let keyed = |text| Draft {
            from: "x",
            text,
            key: Some("tab.1"),
        };
        let (stored, first) = bus.publish(&r, keyed("hello"), true).expect("publish");
        assert!(stored.is_some() && !first.duplicate);
        bus.publish(&r, draft("x", "other"), true).expect("publish");
        let (stored, again) = bus.publish(&r, keyed("hello"), true).expect("publish");
        assert!(stored.is_none(), "nothing stored the second time");
        assert_eq!((again.id, again.duplicate), (first.id, true));
        // The same key for another text (a guess, or a client's mistake) stores nothing
        // and is refused, rather than answered as if it were the first message.
        assert_eq!(
            bus.publish(&r, keyed("something else"), true)
                .map(|(_, p)| p),
            Err(BusError::KeyReused)
        );
        let texts: Vec<u64> = bus
            .read(&r, &Cursor::default(), 50)
            .messages
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(texts, [1, 2], "history holds it once");
        // Another room, or another key, is another message.
        let (_, elsewhere) = bus
            .publish(&room("k2"), keyed("hello"), true)
            .expect("publish");
        assert!(!elsewhere.duplicate);
    }

    #[tokio::test]
    async fn a_key_is_forgotten_with_its_message() {
        let bus = bus_with(2, 10);
        let r = room("k");
        let keyed = Draft {
            from: "x",
            text: "hello",
            key: Some("tab.1"),
        };
        let (_, first) = bus.publish(&r, keyed, true).expect("publish");
        for _ in 0..2 {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
        }
        // "hello" left the two-message history: its key with it, so this is new.
        let (stored, again) = bus.publish(&r, keyed, true).expect("publish");
        assert!(stored.is_some() && !again.duplicate);
        assert_eq!(again.id, first.id + 3);
    }

    #[tokio::test]
    async fn ids_increase_per_room_independently() {
        let bus = bus_with(10, 10);
        let a = room("a");
        let b = room("b");
        let ids: Vec<u64> = (0..3)
            .map(|_| {
                bus.publish(&a, draft("x", "t"), true)
                    .expect("publish")
                    .1
                    .id
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(
            bus.publish(&b, draft("x", "t"), true)
                .expect("publish")
                .1
                .id,
            1
        );
    }

    #[tokio::test]
    async fn history_is_bounded_and_reads_report_the_gap() {
        let bus = bus_with(3, 10);
        let r = room("r");
        for _ in 0..5 {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
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
        let bus = bus_with(100, 10);
        let r = room("r");
        for _ in 0..3 {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
        }
        let cursor = Cursor {
            after: Some(1),
            epoch: None,
        };
        let mut sub = bus.subscribe(&r, &cursor, 50, true).expect("subscribe").0;
        assert_eq!(sub.head(), 3);
        bus.publish(&r, draft("x", "t"), true).expect("publish");
        for expected in 2..=4 {
            assert_eq!(next_id(&mut sub).await, expected);
        }
    }

    #[tokio::test]
    async fn lagging_subscriber_catches_up_from_history() {
        let bus = bus_with(10 * LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        let total = 3 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
        }
        for expected in 1..=total {
            assert_eq!(next_id(&mut sub).await, expected);
        }
    }

    #[tokio::test]
    async fn try_next_drains_what_is_ready_and_then_waits_for_next() {
        let bus = bus_with(10 * LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        assert!(sub.try_next().is_none(), "nothing ready");
        let total = 2 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
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
        let bus = bus_with(LIVE_QUEUE, 10);
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        let total = 3 * LIVE_QUEUE as u64;
        for _ in 0..total {
            bus.publish(&r, draft("x", "t"), true).expect("publish");
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
    async fn at_the_room_cap_the_least_recently_active_unlistened_room_makes_way() {
        let bus = bus_with(10, 2);
        bus.publish(&room("a"), draft("x", "t"), true)
            .expect("publish");
        let listener = bus
            .subscribe(&room("b"), &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        // "a" has history but nobody listens: it goes; "b" is listened to and stays.
        let (_, published) = bus
            .publish(&room("c"), draft("x", "t"), true)
            .expect("a place is made");
        assert!(published.created);
        assert_eq!(bus.rooms(), 2);
        assert_eq!(
            bus.read(&room("a"), &Cursor::default(), 50).head,
            0,
            "a is gone"
        );
        // Now "b" (listened) and "c" (not): "c" makes way, "b" never does.
        bus.publish(&room("d"), draft("x", "t"), true)
            .expect("c makes way");
        let listener_d = bus
            .subscribe(&room("d"), &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        assert_eq!(
            bus.publish(&room("e"), draft("x", "t"), true)
                .expect_err("every room is listened to"),
            BusError::TooManyRooms
        );
        drop((listener, listener_d));
    }

    #[tokio::test]
    async fn each_incarnation_of_a_room_has_its_own_epoch() {
        let bus = bus_with(10, 1);
        bus.publish(&room("a"), draft("x", "t"), true)
            .expect("publish");
        let first = bus.read(&room("a"), &Cursor::default(), 50).epoch;
        bus.publish(&room("b"), draft("x", "t"), true)
            .expect("a makes way");
        bus.publish(&room("a"), draft("x", "t"), true)
            .expect("b makes way");
        let cursor = Cursor {
            after: Some(1),
            epoch: Some(first.to_string()),
        };
        let snap = bus.read(&room("a"), &cursor, 50);
        assert_ne!(snap.epoch, first);
        assert_eq!(
            snap.reset.map(|r| r.reason),
            Some(ResetReason::EpochChanged),
            "a cursor of the evicted incarnation is told, not skipped"
        );
    }

    #[tokio::test]
    async fn rooms_unused_for_the_ttl_expire_unless_listened_to() {
        let bus = MemoryBus::new(RoomLimits {
            ttl: Duration::ZERO,
            ..limits(10, 10)
        });
        bus.publish(&room("quiet"), draft("x", "t"), true)
            .expect("publish");
        let _listener = bus
            .subscribe(&room("busy"), &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        remove_expired(&mut lock(&bus.inner.rooms), Duration::ZERO);
        assert_eq!(bus.rooms(), 1, "only the listened room stays");
        assert!(
            !bus.read(&room("busy"), &Cursor::default(), 50)
                .epoch
                .is_empty()
        );
    }

    #[tokio::test]
    async fn history_is_capped_in_bytes_as_well_as_messages() {
        let bus = MemoryBus::new(RoomLimits {
            history_bytes: 10_000,
            ..limits(1000, 10)
        });
        let r = room("r");
        for _ in 0..10 {
            bus.publish(&r, draft("x", &"y".repeat(3000)), true)
                .expect("publish");
        }
        let snap = bus.read(
            &r,
            &Cursor {
                after: Some(0),
                epoch: None,
            },
            1000,
        );
        let bytes: usize = snap.messages.iter().map(|m| m.stored_bytes()).sum();
        assert!(bytes <= 10_000, "{bytes}");
        assert_eq!(snap.messages.len(), 3);
        assert_eq!(snap.messages.last().map(|m| m.id), Some(10));
        // A message larger than the budget is still kept, alone.
        bus.publish(&r, draft("x", &"z".repeat(20_000)), true)
            .expect("publish");
        assert_eq!(
            bus.read(
                &r,
                &Cursor {
                    after: Some(0),
                    epoch: None
                },
                1000
            )
            .messages
            .len(),
            1
        );
    }

    #[tokio::test]
    async fn the_live_queue_does_not_keep_messages_history_let_go() {
        let bus = MemoryBus::new(RoomLimits {
            history_bytes: 20_000,
            ..limits(1000, 10)
        });
        let r = room("r");
        let mut sub = bus
            .subscribe(&r, &Cursor::default(), 50, true)
            .expect("subscribe")
            .0;
        let first = Arc::downgrade(
            &bus.publish(&r, draft("x", &"y".repeat(9_000)), true)
                .expect("publish")
                .0
                .expect("stored"),
        );
        for _ in 0..9 {
            bus.publish(&r, draft("x", &"y".repeat(9_000)), true)
                .expect("publish");
        }
        // The subscriber has not read anything: its live queue still names all ten, but
        // only history keeps messages alive, and history let the first go.
        assert!(first.upgrade().is_none(), "freed although still queued");
        match sub.next().await {
            Some(Delivery::Reset(reset)) => assert_eq!(reset.reason, ResetReason::HistoryGap),
            other => panic!("expected a gap, got {other:?}"),
        }
        assert_eq!(next_id(&mut sub).await, 9);
        assert_eq!(next_id(&mut sub).await, 10);
    }

    #[tokio::test]
    async fn a_refused_creation_creates_nothing() {
        let bus = bus_with(10, 10);
        assert_eq!(
            bus.publish(&room("new"), draft("x", "t"), false)
                .expect_err("no budget for a new room"),
            BusError::NewRoomRefused
        );
        assert_eq!(bus.rooms(), 0);
    }

    #[tokio::test]
    async fn reading_a_missing_room_does_not_create_it() {
        let bus = bus_with(10, 1);
        let snap = bus.read(&room("ghost"), &Cursor::default(), 50);
        assert_eq!(snap.head, 0);
        assert_eq!(bus.rooms(), 0);
    }
}
