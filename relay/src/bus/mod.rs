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
//!
//! # Layout
//! - `mod.rs` (here): [`Bus`], the handle transports hold, which hands each call to the
//!   implementation the configuration chose, and [`BusError`].
//! - `envelope.rs`: [`Envelope`], a message serialized once for every transport.
//! - `cursor.rs`: [`Cursor`], [`Snapshot`] and the single function that decides, for both
//!   buses, whether a cursor continues or is reset.
//! - `subscription.rs`: [`Subscription`] and its [`Delivery`]s: history then live messages,
//!   with the seam, lag and catch-up handled once for both buses; [`LIVE_QUEUE`].
//! - [`memory`]: the in-process bus, with each room's history in a `VecDeque`.
//! - [`redis`]: the bus several relays share through one Redis server.
//!
//! The two implementations never call each other: each builds [`Snapshot`]s with the shared
//! continue-or-reset function and opens [`Subscription`]s over its own live queue, so what a
//! client sees does not depend on which bus serves it.

pub mod memory;
pub mod redis;

mod cursor;
mod envelope;
mod live;
mod outlet;
mod subscription;

pub use cursor::{Cursor, Snapshot};
pub use envelope::Envelope;
pub use live::LiveQueue;
pub use outlet::{Framing, Outlet};
pub use subscription::{Delivery, LIVE_QUEUE, Live, Subscription};

/// The epoch reported for a room that does not exist: it has no history, so a client told
/// this continues into whatever incarnation comes next without a gap (see `Cursor`).
pub const NO_EPOCH: &str = "";

use crate::metrics::BusView;
use crate::validate::RoomName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// Creating the room would exceed the configured number of rooms, and every room has
    /// listeners (the only rooms that never make way).
    TooManyRooms,
    /// The room does not exist and the caller may not create one (its client's new-room
    /// budget is spent).
    NewRoomRefused,
    /// The backing store cannot be reached: nothing was done.
    Unavailable(String),
    /// The backing store did not answer in time after the request was sent to it: it may
    /// or may not have been carried out.
    OutcomeUnknown(String),
    /// The idempotency key was used before for another sender or text: nothing was stored.
    KeyReused,
}

/// What rooms may hold and how long they live unused, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Messages retained per room (`RELAY_HISTORY`).
    pub retention: usize,
    /// Bytes retained per room (`RELAY_HISTORY_BYTES`); the newest message always stays.
    pub history_bytes: usize,
    /// Rooms at once (`RELAY_MAX_ROOMS`); at the limit, the least recently active room
    /// nobody listens to makes way for a new one.
    pub max_rooms: usize,
    /// A room without a message or a listener for this long expires (`RELAY_ROOM_TTL`).
    pub ttl: std::time::Duration,
    /// How long a publish's idempotency key is remembered (`RELAY_DEDUP_WINDOW`; in memory,
    /// also no longer than its message stays in history).
    pub dedup_window: std::time::Duration,
}

/// A message to publish.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    pub from: &'a str,
    pub text: &'a str,
    /// The sender's idempotency key (valid: `protocol::limits::is_valid_key`).
    pub key: Option<&'a str>,
}

impl Draft<'_> {
    /// What a key is bound to: a repeat must carry the same sender and text, so that a key
    /// someone else guessed (or reused by mistake) cannot stand in for a different message.
    /// The same on every relay (SHA-256, not a per-process hash).
    pub fn fingerprint(&self) -> u64 {
        fingerprint(self.from, self.text)
    }
}

/// See [`Draft::fingerprint`].
pub fn fingerprint(from: &str, text: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(from.as_bytes())
        .chain_update([0u8])
        .chain_update(text.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// A message accepted into a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: u64,
    /// Whether the publish brought the room into being (it counts against the client's
    /// new-room budget).
    pub created: bool,
    /// The key was seen within the dedup window: nothing was stored, `id` is the message
    /// stored the first time.
    pub duplicate: bool,
}

/// Handle on the message bus. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Bus {
    Memory(memory::MemoryBus),
    Redis(redis::RedisBus),
}

impl Bus {
    /// Appends a message to the room and delivers it to every subscriber, unless its key
    /// was seen within the dedup window (then nothing is stored and the first id returned).
    /// The room is created if it does not exist and `may_create` allows.
    pub async fn publish(
        &self,
        room: &RoomName,
        draft: Draft<'_>,
        may_create: bool,
    ) -> Result<Published, BusError> {
        match self {
            Bus::Memory(bus) => bus
                .publish(room, draft, may_create)
                .map(|(_, published)| published),
            Bus::Redis(bus) => bus.publish(room, draft, may_create).await,
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
            // Boxed (here, for Redis only): the Redis call's future is large, and every
            // caller that waits — a long poll, a subscriber — would otherwise carry its size
            // for as long as it waits (see docs/BENCHMARKS.md, idle memory).
            Bus::Redis(bus) => Box::pin(bus.read(room, cursor, limit)).await,
        }
    }

    /// History after `cursor` (at most `limit` for a newcomer; everything retained for a
    /// resuming client), then live messages, with no gap or repeat at the seam. A room is
    /// something people listen to, so subscribing creates it (if `may_create` allows); `true`
    /// when it did.
    pub async fn subscribe(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
        may_create: bool,
    ) -> Result<(Subscription, bool), BusError> {
        match self {
            Bus::Memory(bus) => bus.subscribe(room, cursor, limit, may_create),
            // Boxed for Redis only, as in `read`.
            Bus::Redis(bus) => Box::pin(bus.subscribe(room, cursor, limit, may_create)).await,
        }
    }

    /// A subscription ended: the room's idle time counts from now.
    pub fn left(&self, room: &RoomName) {
        match self {
            Bus::Memory(bus) => bus.left(room),
            // A followed room's activity is refreshed in Redis while it has listeners.
            Bus::Redis(_) => {}
        }
    }

    /// Rooms this relay holds (memory) or follows for its subscribers (Redis), for `/metrics`.
    /// With Redis, counting also drops the follows that outlived their linger (see
    /// [`redis::RedisBus::rooms`]).
    pub fn rooms(&self) -> usize {
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

    /// What `/metrics` reports of the bus.
    pub fn view(&self) -> BusView {
        BusView {
            rooms: self.rooms(),
            connected: self.connected(),
            reads_shared: match self {
                Bus::Memory(_) => 0,
                Bus::Redis(bus) => bus.shared_reads(),
            },
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

    /// Messages retained per room: the most any single read may return. It is also how many
    /// messages a subscriber may be catching up after falling behind.
    pub fn retention(&self) -> usize {
        match self {
            Bus::Memory(bus) => bus.retention(),
            Bus::Redis(bus) => bus.retention(),
        }
    }
}
