//! The Redis bus: several relays share rooms through one Redis server.
//!
//! Redis holds the truth. Each room is a stream (`chat:{room}:log`) whose entry ids are
//! `0-<id>`: one script allocates the next id and appends the message (trimmed to the
//! retention with `MAXLEN ~`) and announces it on one pub/sub channel, all atomically, so every
//! relay sees announcements in id order. History and resume read the stream, so a cursor works
//! on any relay. The epoch is one key for the whole dataset (`chat:epoch`), created when
//! missing: it changes exactly when Redis has lost data (a restart without persistence, a
//! flush, or — noticed by a relay that delivered more than Redis still has — its latest writes),
//! which is when ids could otherwise come to mean different messages.
//!
//! Each relay follows the rooms its clients subscribe to: a [`Follow`] per room feeds a local
//! broadcast queue from the announcements, in id order and without repeats. Pub/sub delivers at
//! most once, so whenever the relay's subscription to the channel (re)starts it reads every
//! followed room after the last id it forwarded; a subscriber that still sees a jump in ids
//! fills it from the stream itself (see [`super::Subscription::next`]).
//!
//! When Redis is unreachable, every call fails within the configured timeout
//! ([`BusError::Unavailable`], answered as 503 or an error event), subscribers stay connected,
//! and the listener reconnects by itself and catches up.
//!
//! # Layout
//! - `mod.rs` (here): [`RedisBus`], its public API, the commands it sends (publish, read,
//!   replace the epoch) and the map of followed rooms.
//! - `follow.rs`: [`Follow`], one followed room on this relay: its local queue, the recent
//!   messages that answer caught-up readers, and how long it lingers unused.
//! - `listener.rs`: the task that keeps the relay subscribed to the announcement channel,
//!   reconnecting with backoff; on each (re)subscription it checks the server and catches up
//!   every followed room, then hands each announcement to its room.
//! - `flights.rs`: identical reads of a followed room asked for together share one call.
//! - `wire.rs`: parsing what Redis sends back (announcements, the read script's reply, stream
//!   entries, `INFO`).
//! - `lua/`: the scripts that make publishing, reading and replacing the epoch atomic.

mod flights;
mod follow;
mod listener;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, RedisResult, Script, Value};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use self::flights::{Flights, ReadKey, ReadResult};
use self::follow::{Follow, prune_idle_follows};
use self::listener::{RECONNECT_MAX, listen};
use self::wire::{View, parse_id, unexpected};
use super::cursor::snapshot;
use super::{
    Bus, BusError, Cursor, Draft, Envelope, Live, Published, RoomLimits, Snapshot, Subscription,
};
use crate::clock::unix_millis;
use crate::sync::lock;
use crate::validate::RoomName;
use protocol::limits::{MAX_READ_BYTES, MAX_READ_MESSAGES};

/// The sorted set of rooms, scored by last activity. (Not `chat:rooms`, the plain set that
/// earlier versions kept, so that one Redis can be shared during an upgrade.)
const ROOMS_KEY: &str = "chat:rooms:active";
/// The sorted set of rooms someone listens to, scored by when that stops being known.
const LISTENED_KEY: &str = "chat:rooms:listened";
/// The announcement channel. Versioned with the announcement's format (`wire::Announcement`):
/// relays of another version on the same Redis then miss each other's announcements (their
/// clients catch up from the stream on reconnecting) instead of misreading them.
const CHANNEL: &str = "chat:messages:2";

/// A room's epoch key. The braces (a hash tag) would keep a room's keys on one node of a
/// Redis Cluster; the scripts also touch global keys, so Cluster itself is not supported.
/// The Lua prelude (`lua/room.lua`) names the same keys.
fn epoch_key(room: &str) -> String {
    format!("chat:{{{room}}}:epoch")
}

/// A script with the room prelude (`lua/room.lua`) in front of it.
fn room_script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("lua/room.lua")))
}

/// How often this relay marks the rooms its clients listen to in Redis. A mark lasts three
/// periods, so that one late refresh does not cost a room its listeners. Scaled to the TTL (a
/// quarter of it) so that a listened room never expires, within these bounds.
fn touch_period(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

fn listen_mark(ttl: Duration) -> Duration {
    3 * touch_period(ttl)
}

#[derive(Clone, Debug)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    publish: Script,
    read: Script,
    open: Script,
    touch: Script,
    replace_epoch: Script,
    limits: RoomLimits,
    timeout: Duration,
    /// Rooms this relay's subscribers follow.
    follows: Mutex<HashMap<RoomName, Arc<Follow>>>,
    /// Whether the listener is subscribed to the announcement channel.
    listening: AtomicBool,
    /// Reads in flight, shared by identical callers.
    flights: Flights,
    /// Stops the listener when the last handle on the bus goes.
    _stop: DropGuard,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("limits", &self.limits)
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

/// An epoch nobody has used: the time in nanoseconds, this process and a counter.
fn fresh_epoch() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("r{nanos:x}{:x}{n:x}", std::process::id())
}

fn unavailable(err: &RedisError) -> BusError {
    BusError::Unavailable(format!("redis: {err}"))
}

impl RedisBus {
    /// Connects lazily: the relay starts (unready) even while Redis is down. Must be called
    /// within a Tokio runtime, which runs the listener task.
    pub fn new(url: &str, limits: RoomLimits, timeout: Duration) -> Result<RedisBus, RedisError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_MAX);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let stop = CancellationToken::new();
        let inner = Arc::new(Inner {
            conn,
            publish: room_script(include_str!("lua/publish.lua")),
            read: room_script(include_str!("lua/read.lua")),
            open: room_script(include_str!("lua/open.lua")),
            touch: room_script(include_str!("lua/touch.lua")),
            // Compare-and-set, so that relays noticing the same loss agree on one new epoch.
            replace_epoch: Script::new(include_str!("lua/replace_epoch.lua")),
            limits: RoomLimits {
                retention: limits.retention.max(1),
                ..limits
            },
            timeout,
            follows: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            flights: Flights::default(),
            _stop: stop.clone().drop_guard(),
        });
        tokio::spawn(listen(
            Arc::downgrade(&inner),
            client,
            stop.clone(),
            timeout,
        ));
        tokio::spawn(touch_listened_rooms(Arc::downgrade(&inner), stop));
        Ok(RedisBus { inner })
    }

    pub fn retention(&self) -> usize {
        self.inner.limits.retention
    }

    /// The arguments every script that may create a room takes, after the cursor or message
    /// ones: a fresh epoch, now, the TTL, the room cap, how long a listen mark lasts,
    /// may-create.
    fn creation_args(&self, invocation: &mut ::redis::ScriptInvocation<'_>, may_create: bool) {
        let limits = &self.inner.limits;
        invocation
            .arg(fresh_epoch())
            .arg(unix_millis())
            .arg(limits.ttl.as_millis() as u64)
            .arg(limits.max_rooms)
            .arg(listen_mark(limits.ttl).as_millis() as u64)
            .arg(if may_create { "1" } else { "0" });
    }

    /// Rooms followed for subscribers on this relay (not all rooms in Redis): idle follows
    /// that wait to be pruned are not counted.
    pub fn rooms(&self) -> usize {
        let follows = lock(&self.inner.follows);
        follows.values().filter(|follow| !follow.idle()).count()
    }

    /// Drops follows that outlived their linger, so that they stop taking announcements.
    /// The listener calls it on its ping timer; `follow` also does before adding a room.
    pub(super) fn prune(&self) {
        prune_idle_follows(&mut lock(&self.inner.follows));
    }

    /// Reads answered by an identical read in flight, since the relay started.
    pub fn shared_reads(&self) -> u64 {
        self.inner.flights.shared()
    }

    /// Whether the listener is subscribed to the announcements.
    pub fn connected(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// Ready when the listener is subscribed and Redis answers a command in time.
    pub async fn ready(&self) -> bool {
        if !self.inner.listening.load(Ordering::Acquire) {
            return false;
        }
        let mut conn = self.inner.conn.clone();
        let ping = ::redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(self.inner.timeout, ping).await,
            Ok(Ok(_))
        )
    }

    /// Runs one Redis call within the timeout, so that an outage answers instead of hanging.
    async fn call<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, BusError> {
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.code() == Some("TOO_MANY_ROOMS") => Err(BusError::TooManyRooms),
            Ok(Err(err)) if err.code() == Some("NEW_ROOM_REFUSED") => Err(BusError::NewRoomRefused),
            Ok(Err(err)) if err.code() == Some("KEY_REUSED") => Err(BusError::KeyReused),
            Ok(Err(err)) => {
                // An outage is reported once by the listener; a refusal from a server that is
                // up (a read-only replica, a missing permission) is a misconfiguration that
                // an operator must see on every occurrence.
                if matches!(err.kind(), ::redis::ErrorKind::Server(_)) {
                    tracing::warn!(%err, "Redis refused a command");
                }
                Err(unavailable(&err))
            }
            Err(_) => Err(BusError::Unavailable(format!(
                "redis did not answer within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// Like [`RedisBus::call`], for a command that changes something: once it may have
    /// been sent, a missing answer does not mean it did not run, and the caller is told so
    /// (`OutcomeUnknown`), rather than that nothing happened.
    async fn call_write<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, BusError> {
        let uncertain = |err: &RedisError| {
            err.is_timeout()
                || err.is_connection_dropped()
                || (err.is_io_error() && !err.is_connection_refusal())
        };
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Err(err)) if uncertain(&err) => {
                Err(BusError::OutcomeUnknown(format!("redis: {err}")))
            }
            Ok(result) => self.call(std::future::ready(result)).await,
            Err(_) => Err(BusError::OutcomeUnknown(format!(
                "redis did not answer within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// Returns the id only: this relay builds the message's envelope once, like every other
    /// relay, when its announcement arrives.
    pub async fn publish(
        &self,
        room: &RoomName,
        draft: Draft<'_>,
        may_create: bool,
    ) -> Result<Published, BusError> {
        let Draft { from, text, key } = draft;
        // Known to be away (the listener lost it): refused before anything is sent, so the
        // answer is a certain "nothing stored" rather than an unknown outcome.
        if !self.connected() {
            return Err(BusError::Unavailable("redis is unreachable".into()));
        }
        let ts = unix_millis();
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.publish.prepare_invoke();
        invocation
            .key(ROOMS_KEY)
            .key(LISTENED_KEY)
            .arg(room.as_str())
            .arg(from)
            .arg(text)
            .arg(ts)
            .arg(CHANNEL);
        self.creation_args(&mut invocation, may_create);
        // What the message costs kept, counted as the memory bus counts it (its envelope:
        // the escaped JSON and framing; ids and times take their largest width, the epoch
        // that of one made now).
        let size = Envelope::new(
            protocol::Message {
                id: u64::MAX,
                room: room.to_string(),
                from: from.to_owned(),
                text: text.to_owned(),
                ts: u64::MAX,
                key: key.map(str::to_owned),
            },
            &fresh_epoch(),
        )
        .stored_bytes();
        invocation
            .arg(self.inner.limits.retention)
            .arg(self.inner.limits.history_bytes)
            .arg(size)
            .arg(key.unwrap_or_default())
            .arg(self.inner.limits.dedup_window.as_millis() as u64)
            .arg(draft.fingerprint().to_string());
        let (_epoch, id, created, duplicate): (String, String, i64, i64) =
            self.call_write(invocation.invoke_async(&mut conn)).await?;
        let id = parse_id(&id).ok_or_else(|| unexpected("stream id", &id))?;
        Ok(Published {
            id,
            created: created == 1,
            duplicate: duplicate == 1,
        })
    }

    /// What `cursor` is owed: from the room's recent messages on this relay when they can
    /// tell, else from Redis.
    pub async fn read(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Snapshot, BusError> {
        let follow = lock(&self.inner.follows).get(room).cloned();
        let Some(follow) = follow else {
            return self.read_stored(room, cursor, limit).await;
        };
        if let Some(snapshot) = self.serve_locally(&follow, cursor, limit) {
            return Ok(snapshot);
        }
        self.read_shared(room, cursor, limit, None, &follow)
            .await
            .map(|(snapshot, _)| snapshot)
    }

    /// Answers from a follow only while the listener is subscribed: otherwise the follow may
    /// be far behind, and clients are better told that Redis is unreachable.
    fn serve_locally(&self, follow: &Follow, cursor: &Cursor, limit: usize) -> Option<Snapshot> {
        if !self.connected() {
            return None;
        }
        follow.serve(cursor, limit)
    }

    /// Like [`RedisBus::read_or_open`], shared with identical reads of the followed room
    /// asked for meanwhile (see `flights`). A subscriber calls it after joining the follow's
    /// queue.
    async fn read_shared(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
        create: Option<bool>,
        follow: &Follow,
    ) -> ReadResult {
        let key = ReadKey {
            room: room.clone(),
            after: cursor.after,
            epoch: cursor.epoch.clone(),
            limit,
            create,
            follow: follow.id(),
            forwarded: follow.forwarded(),
        };
        let start = || {
            let (bus, room, cursor) = (self.clone(), room.clone(), cursor.clone());
            Box::pin(async move { bus.read_or_open(&room, &cursor, limit, create).await }) as _
        };
        self.inner.flights.run(key, start).await
    }

    /// What `cursor` is owed, read from Redis (never more than one read's worth).
    async fn read_stored(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Snapshot, BusError> {
        self.read_or_open(room, cursor, limit, None)
            .await
            .map(|(snapshot, _)| snapshot)
    }

    /// Reads what `cursor` is owed; with `create` set (`Some(may_create)`), opens the room
    /// first, creating it if allowed. `true` if the room was created.
    async fn read_or_open(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
        create: Option<bool>,
    ) -> Result<(Snapshot, bool), BusError> {
        let limit = limit.min(MAX_READ_MESSAGES);
        let mut conn = self.inner.conn.clone();
        let script = if create.is_some() {
            &self.inner.open
        } else {
            &self.inner.read
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .key(ROOMS_KEY)
            .key(LISTENED_KEY)
            .arg(room.as_str())
            .arg(
                cursor
                    .after
                    .map(|after| after.to_string())
                    .unwrap_or_default(),
            )
            .arg(cursor.epoch.as_deref().unwrap_or_default())
            .arg(limit);
        if let Some(may_create) = create {
            self.creation_args(&mut invocation, may_create);
        }
        invocation.arg(MAX_READ_BYTES);
        let reply: Value = self.call(invocation.invoke_async(&mut conn)).await?;
        let view = View::parse(room, reply)?;
        let epoch: Arc<str> = view.epoch.into();
        let oldest_id = if view.head == 0 { 1 } else { view.oldest };
        let snapshot = snapshot(&view.window, view.head, oldest_id, &epoch, cursor, limit);
        Ok((snapshot, view.created))
    }

    pub async fn subscribe(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
        may_create: bool,
    ) -> Result<(Subscription, bool), BusError> {
        // A resuming client is owed everything it missed (the subscription reads on past one
        // read's worth); a newcomer the newest `limit`.
        let wanted = if cursor.after.is_some() {
            self.inner.limits.retention
        } else {
            limit
        };
        loop {
            // Joining the local queue before reading means every message newer than the read
            // reaches this subscriber live; the overlap is skipped by id.
            let (follow, live) = self.follow(room)?;
            if let Some(snapshot) = self.serve_locally(&follow, cursor, wanted) {
                let sub = Subscription::new(
                    Bus::Redis(self.clone()),
                    room.clone(),
                    snapshot,
                    live,
                    &follow.live,
                );
                return Ok((sub, false));
            }
            // From another epoch, the read starts at this one's oldest message: all of it is
            // owed (see `cursor::snapshot`).
            let (snapshot, created) = self
                .read_shared(room, cursor, wanted, Some(may_create), &follow)
                .await?;
            if !follow.start(&snapshot.epoch, snapshot.head) {
                // The followed room belongs to a lost epoch; start following it afresh.
                self.unfollow(room, &follow);
                continue;
            }
            // Another subscriber's read may have started the follow ahead of this one's:
            // the announcements in between are then dropped as repeats and never reach this
            // subscriber live, so it reads them (a shared read makes this likelier).
            let behind = follow.position().1.is_some_and(|last| last > snapshot.head);
            let mut sub = Subscription::new(
                Bus::Redis(self.clone()),
                room.clone(),
                snapshot,
                live,
                &follow.live,
            );
            if behind {
                sub.catch_up();
            }
            return Ok((sub, created));
        }
    }

    /// The room's follow (created if needed) and a receiver on it, taken under the map lock so
    /// that pruning cannot drop the follow in between. At most `RELAY_MAX_ROOMS` rooms are
    /// followed at once; rooms nobody listens to make way first.
    fn follow(
        &self,
        room: &RoomName,
    ) -> Result<(Arc<Follow>, broadcast::Receiver<Live>), BusError> {
        let mut follows = lock(&self.inner.follows);
        if let Some(follow) = follows.get(room) {
            follow.touch();
            return Ok((follow.clone(), follow.live.subscribe()));
        }
        prune_idle_follows(&mut follows);
        if follows.len() >= self.inner.limits.max_rooms {
            follows.retain(|_, follow| follow.live.receiver_count() > 0);
            if follows.len() >= self.inner.limits.max_rooms {
                return Err(BusError::TooManyRooms);
            }
        }
        let (follow, receiver) = Follow::new(self.inner.limits.history_bytes);
        let follow = Arc::new(follow);
        follows.insert(room.clone(), follow.clone());
        Ok((follow, receiver))
    }

    /// Stops following a room: its subscribers' streams end once the last reference goes, and
    /// their clients reconnect and learn the new epoch.
    fn unfollow(&self, room: &RoomName, follow: &Arc<Follow>) {
        let mut follows = lock(&self.inner.follows);
        if follows.get(room).is_some_and(|f| Arc::ptr_eq(f, follow)) {
            follows.remove(room);
        }
    }

    /// Replaces a room's epoch, unless another relay already did.
    async fn replace_epoch(&self, room: &RoomName, lost: &str) -> Result<(), BusError> {
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.replace_epoch.prepare_invoke();
        invocation
            .key(epoch_key(room.as_str()))
            .arg(lost)
            .arg(fresh_epoch());
        self.call(invocation.invoke_async::<()>(&mut conn)).await
    }
}

/// Marks the rooms this relay's clients listen to as active in Redis, every
/// [`touch_period`], for as long as the bus exists.
async fn touch_listened_rooms(inner: Weak<Inner>, stop: CancellationToken) {
    let Some(period) = inner.upgrade().map(|inner| touch_period(inner.limits.ttl)) else {
        return;
    };
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            () = stop.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let bus = RedisBus { inner };
        let listened: Vec<RoomName> = lock(&bus.inner.follows)
            .iter()
            .filter(|(_, follow)| follow.live.receiver_count() > 0)
            .map(|(room, _)| room.clone())
            .collect();
        if listened.is_empty() {
            continue;
        }
        let mut conn = bus.inner.conn.clone();
        let mut invocation = bus.inner.touch.prepare_invoke();
        invocation
            .key(ROOMS_KEY)
            .key(LISTENED_KEY)
            .arg(unix_millis())
            .arg(bus.inner.limits.ttl.as_millis() as u64)
            .arg(listen_mark(bus.inner.limits.ttl).as_millis() as u64);
        for room in &listened {
            invocation.arg(room.as_str());
        }
        if let Err(err) = bus.call(invocation.invoke_async::<()>(&mut conn)).await {
            // An outage is reported by the listener; the next tick tries again.
            tracing::debug!(?err, "could not mark listened rooms as active");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_fresh_each_time() {
        assert_ne!(fresh_epoch(), fresh_epoch());
    }
}
