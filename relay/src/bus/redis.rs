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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use ::redis::{Client, RedisError, RedisResult, Script, Value};
use futures_util::StreamExt;
use protocol::{Message, ResetReason};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    Bus, BusError, Cursor, Envelope, LIVE_QUEUE, Snapshot, Subscription, lock, snapshot,
    unix_millis,
};
use crate::validate::RoomName;

const EPOCH_KEY: &str = "chat:epoch";
const ROOMS_KEY: &str = "chat:rooms";
const CHANNEL: &str = "chat:messages";

/// How often the listener pings Redis over its subscription: a silent channel cannot tell a
/// quiet chat from a dead connection.
const LISTENER_PING: Duration = Duration::from_secs(5);
/// Bounds on the wait between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long a followed room nobody listens to stays followed: longer than a long poller takes
/// to come back with its next request (it is answered from the follow's recent messages then),
/// short enough that rooms nobody visits stop costing announcements.
const FOLLOW_LINGER: Duration = Duration::from_secs(30);
/// A subscription that lasted this long was healthy: reconnect quickly after losing it.
const HEALTHY_SUBSCRIPTION: Duration = Duration::from_secs(10);

/// The stream key of a room. The braces (a hash tag) would keep a room's keys on one node of a
/// Redis Cluster; the scripts also touch global keys, so Cluster itself is not supported.
fn log_key(room: &str) -> String {
    format!("chat:{{{room}}}:log")
}

#[derive(Clone, Debug)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    publish: Script,
    read: Script,
    replace_epoch: Script,
    retention: usize,
    max_rooms: usize,
    timeout: Duration,
    /// Rooms this relay's subscribers follow.
    follows: Mutex<HashMap<RoomName, Arc<Follow>>>,
    /// Whether the listener is subscribed to the announcement channel.
    listening: AtomicBool,
    /// Stops the listener when the last handle on the bus goes.
    _stop: DropGuard,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("retention", &self.retention)
            .field("listening", &self.listening)
            .finish_non_exhaustive()
    }
}

/// One room as this relay follows it: the local queue its subscribers read, and how far the
/// announcements have been forwarded into it.
#[derive(Debug)]
struct Follow {
    live: broadcast::Sender<Arc<Envelope>>,
    sync: Mutex<FollowSync>,
}

#[derive(Debug)]
struct FollowSync {
    /// When a subscriber last joined: an unused follow is dropped after [`FOLLOW_LINGER`].
    used: Instant,
    /// The epoch of what was forwarded; `None` until known.
    epoch: Option<Arc<str>>,
    /// The newest id forwarded (or known to the first subscriber); `None` until known.
    last: Option<u64>,
    /// The newest forwarded messages, consecutive ids ending at `last`, at most
    /// [`LIVE_QUEUE`]: polls and subscriptions that are (nearly) caught up read them here
    /// instead of asking Redis — otherwise every message would send every woken long poll
    /// to Redis at once.
    recent: VecDeque<Arc<Envelope>>,
}

impl Follow {
    /// A follow that knows nothing yet, and a first receiver on it.
    fn new() -> (Follow, broadcast::Receiver<Arc<Envelope>>) {
        let (live, receiver) = broadcast::channel(LIVE_QUEUE);
        let follow = Follow {
            live,
            sync: Mutex::new(FollowSync {
                used: Instant::now(),
                epoch: None,
                last: None,
                recent: VecDeque::new(),
            }),
        };
        (follow, receiver)
    }

    /// Forwards one message unless it was already forwarded. `false` when it belongs to
    /// another epoch than the room's followers were given: the follow must be ended.
    fn forward(&self, epoch: &str, envelope: Arc<Envelope>) -> bool {
        let mut sync = lock(&self.sync);
        match &sync.epoch {
            Some(known) if **known != *epoch => return false,
            Some(_) => {}
            None => sync.epoch = Some(epoch.into()),
        }
        if sync.last.is_some_and(|last| envelope.id <= last) {
            return true;
        }
        if sync.last.is_none_or(|last| envelope.id != last + 1) {
            // Only an unbroken run can answer a cursor; start a new one.
            sync.recent.clear();
        }
        if sync.recent.len() == LIVE_QUEUE {
            sync.recent.pop_front();
        }
        sync.recent.push_back(envelope.clone());
        sync.last = Some(envelope.id);
        // Fails only when nobody listens any more; the follow is then pruned.
        let _ = self.live.send(envelope);
        true
    }

    /// Records what a new subscriber read, if nothing was known yet: from then on the listener
    /// can tell what it missed. `false` when the room's epoch moved on.
    fn start(&self, epoch: &Arc<str>, head: u64) -> bool {
        let mut sync = lock(&self.sync);
        match &sync.epoch {
            Some(known) if known != epoch => return false,
            Some(_) => {}
            None => sync.epoch = Some(epoch.clone()),
        }
        sync.last.get_or_insert(head);
        true
    }

    /// What `cursor` is owed, if the recent messages can tell on their own: the cursor is in
    /// the forwarded epoch and no older than the oldest recent message (or, for a newcomer,
    /// there are at least `limit` of them). The answer may trail Redis by the announcements
    /// still in flight, which is a consistent prefix: the client continues from its end.
    fn serve(&self, cursor: &Cursor, limit: usize) -> Option<Snapshot> {
        let sync = lock(&self.sync);
        let (Some(epoch), Some(last)) = (&sync.epoch, sync.last) else {
            return None;
        };
        if cursor.epoch.as_deref().is_some_and(|e| e != &**epoch) {
            return None;
        }
        let first = sync.recent.front().map_or(last + 1, |m| m.id);
        let answerable = match cursor.after {
            Some(after) => after + 1 >= first && after <= last,
            None => sync.recent.len() >= limit,
        };
        answerable.then(|| snapshot(&sync.recent, last, first, epoch, cursor, limit))
    }

    /// Whether nobody listens and nobody has for [`FOLLOW_LINGER`].
    fn idle(&self) -> bool {
        self.live.receiver_count() == 0 && lock(&self.sync).used.elapsed() >= FOLLOW_LINGER
    }

    fn position(&self) -> (Option<Arc<str>>, Option<u64>) {
        let sync = lock(&self.sync);
        (sync.epoch.clone(), sync.last)
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
    pub fn new(
        url: &str,
        retention: usize,
        max_rooms: usize,
        timeout: Duration,
    ) -> Result<RedisBus, RedisError> {
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
            publish: Script::new(include_str!("lua/publish.lua")),
            read: Script::new(include_str!("lua/read.lua")),
            // Compare-and-set, so that relays noticing the same loss agree on one new epoch.
            replace_epoch: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end",
            ),
            retention: retention.max(1),
            max_rooms,
            timeout,
            follows: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            _stop: stop.clone().drop_guard(),
        });
        tokio::spawn(listen(Arc::downgrade(&inner), client, stop, timeout));
        Ok(RedisBus { inner })
    }

    pub fn retention(&self) -> usize {
        self.inner.retention
    }

    /// Rooms followed for subscribers on this relay (not all rooms in Redis).
    pub fn rooms(&self) -> usize {
        let mut follows = lock(&self.inner.follows);
        follows.retain(|_, follow| !follow.idle());
        follows.len()
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

    /// Returns the id only: this relay builds the message's envelope once, like every other
    /// relay, when its announcement arrives.
    pub async fn publish(&self, room: &RoomName, from: &str, text: &str) -> Result<u64, BusError> {
        let ts = unix_millis();
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.publish.prepare_invoke();
        invocation
            .key(EPOCH_KEY)
            .key(log_key(room.as_str()))
            .key(ROOMS_KEY)
            .arg(fresh_epoch())
            .arg(self.inner.retention)
            .arg(self.inner.max_rooms)
            .arg(room.as_str())
            .arg(from)
            .arg(text)
            .arg(ts)
            .arg(CHANNEL);
        let (_epoch, id): (String, String) = self.call(invocation.invoke_async(&mut conn)).await?;
        parse_id(&id).ok_or_else(|| unexpected("stream id", &id))
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
        if let Some(snapshot) = follow.and_then(|follow| self.serve_locally(&follow, cursor, limit))
        {
            return Ok(snapshot);
        }
        self.read_stored(room, cursor, limit).await
    }

    /// Answers from a follow only while the listener is subscribed: otherwise the follow may
    /// be far behind, and clients are better told that Redis is unreachable.
    fn serve_locally(&self, follow: &Follow, cursor: &Cursor, limit: usize) -> Option<Snapshot> {
        if !self.connected() {
            return None;
        }
        follow.serve(cursor, limit)
    }

    /// What `cursor` is owed, read from Redis.
    async fn read_stored(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Snapshot, BusError> {
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.read.prepare_invoke();
        invocation
            .key(EPOCH_KEY)
            .key(log_key(room.as_str()))
            .arg(fresh_epoch())
            .arg(
                cursor
                    .after
                    .map(|after| after.to_string())
                    .unwrap_or_default(),
            )
            .arg(cursor.epoch.as_deref().unwrap_or_default())
            .arg(limit);
        let reply: Value = self.call(invocation.invoke_async(&mut conn)).await?;
        let view = View::parse(room, reply)?;
        let epoch: Arc<str> = view.epoch.into();
        let oldest_id = if view.head == 0 { 1 } else { view.oldest };
        Ok(snapshot(
            &view.window,
            view.head,
            oldest_id,
            &epoch,
            cursor,
            limit,
        ))
    }

    pub async fn subscribe(
        &self,
        room: &RoomName,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<Subscription, BusError> {
        // A resuming client is owed everything it missed; a newcomer the newest `limit`.
        let wanted = if cursor.after.is_some() {
            self.inner.retention
        } else {
            limit
        };
        loop {
            // Joining the local queue before reading means every message newer than the read
            // reaches this subscriber live; the overlap is skipped by id.
            let (follow, live) = self.follow(room)?;
            if let Some(snapshot) = self.serve_locally(&follow, cursor, wanted) {
                return Ok(Subscription::new(
                    Bus::Redis(self.clone()),
                    room.clone(),
                    snapshot,
                    live,
                ));
            }
            let mut snapshot = self.read_stored(room, cursor, wanted).await?;
            if snapshot
                .reset
                .as_ref()
                .is_some_and(|r| r.reason == ResetReason::EpochChanged)
            {
                snapshot.keep_latest(limit);
            }
            if !follow.start(&snapshot.epoch, snapshot.head) {
                // The followed room belongs to a lost epoch; start following it afresh.
                self.unfollow(room, &follow);
                continue;
            }
            return Ok(Subscription::new(
                Bus::Redis(self.clone()),
                room.clone(),
                snapshot,
                live,
            ));
        }
    }

    /// The room's follow (created if needed) and a receiver on it, taken under the map lock so
    /// that pruning cannot drop the follow in between. At most `RELAY_MAX_ROOMS` rooms are
    /// followed at once; rooms nobody listens to make way first.
    fn follow(
        &self,
        room: &RoomName,
    ) -> Result<(Arc<Follow>, broadcast::Receiver<Arc<Envelope>>), BusError> {
        let mut follows = lock(&self.inner.follows);
        if let Some(follow) = follows.get(room) {
            lock(&follow.sync).used = Instant::now();
            return Ok((follow.clone(), follow.live.subscribe()));
        }
        follows.retain(|_, follow| !follow.idle());
        if follows.len() >= self.inner.max_rooms {
            follows.retain(|_, follow| follow.live.receiver_count() > 0);
            if follows.len() >= self.inner.max_rooms {
                return Err(BusError::TooManyRooms);
            }
        }
        let (follow, receiver) = Follow::new();
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

    /// Hands one announcement to the room's subscribers on this relay.
    fn announce(&self, payload: &[u8]) {
        let Some(announcement) = Announcement::parse(payload) else {
            tracing::warn!(
                len = payload.len(),
                "ignoring a malformed announcement on {CHANNEL}"
            );
            return;
        };
        let Ok(room) = RoomName::parse(announcement.room) else {
            return;
        };
        // A follow nobody listens to right now still takes announcements: its recent messages
        // answer the long pollers coming back (pruning happens in `follow` and `rooms`).
        let follow = lock(&self.inner.follows).get(&room).cloned();
        let Some(follow) = follow else { return };
        let envelope = Arc::new(Envelope::new(Message {
            id: announcement.id,
            room: room.to_string(),
            from: announcement.from.to_owned(),
            text: announcement.text.to_owned(),
            ts: announcement.ts,
        }));
        if !follow.forward(announcement.epoch, envelope) {
            self.unfollow(&room, &follow);
        }
    }

    /// Replaces the dataset's epoch, unless another relay already did.
    async fn replace_epoch(&self, lost: &str) -> Result<(), BusError> {
        let mut conn = self.inner.conn.clone();
        let mut invocation = self.inner.replace_epoch.prepare_invoke();
        invocation.key(EPOCH_KEY).arg(lost).arg(fresh_epoch());
        self.call(invocation.invoke_async::<()>(&mut conn)).await
    }

    /// Refuses a Redis too old for the scripts (they rely on `XADD … 0-*`, new in 7.0), with a
    /// message that says so rather than failing every publish.
    async fn check_server(&self) -> Result<(), BusError> {
        let mut conn = self.inner.conn.clone();
        let mut info = ::redis::cmd("INFO");
        let info: String = self.call(info.arg("server").query_async(&mut conn)).await?;
        match redis_version(&info) {
            Some(version) if version >= (7, 0) => Ok(()),
            found => {
                let found = found.map_or("an unknown version".to_owned(), |(major, minor)| {
                    format!("{major}.{minor}")
                });
                tracing::error!(%found, "Redis 7.0 or newer is required; staying unready");
                Err(BusError::Unavailable(format!(
                    "Redis {found} is older than 7.0"
                )))
            }
        }
    }

    /// Forwards, for every followed room, what was published after the last forwarded id:
    /// the announcements missed while the listener was not subscribed.
    async fn catch_up(&self) -> Result<(), BusError> {
        let follows: Vec<(RoomName, Arc<Follow>)> = lock(&self.inner.follows)
            .iter()
            .map(|(room, follow)| (room.clone(), follow.clone()))
            .collect();
        for (room, follow) in follows {
            let (Some(epoch), Some(mut last)) = follow.position() else {
                continue;
            };
            loop {
                let cursor = Cursor {
                    after: Some(last),
                    epoch: Some(epoch.to_string()),
                };
                let snapshot = self
                    .read_stored(&room, &cursor, self.inner.retention)
                    .await?;
                if snapshot.epoch != epoch {
                    tracing::warn!(%room, "room history lost in Redis (new epoch); its clients reconnect");
                    self.unfollow(&room, &follow);
                    break;
                }
                if snapshot.head < last {
                    // Redis came back without its latest writes (`appendfsync everysec`, a
                    // lagging replica promoted): ids up to `last` would be given out again to
                    // different messages. Only a new epoch keeps ids unambiguous.
                    tracing::warn!(%room, head = snapshot.head, delivered = last, "Redis lost its latest writes; starting a new epoch");
                    self.replace_epoch(&epoch).await?;
                    self.unfollow(&room, &follow);
                    break;
                }
                for message in &snapshot.messages {
                    follow.forward(&epoch, message.clone());
                }
                last = snapshot.next_after();
                if !snapshot.more {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The listener: keeps one subscription to the announcement channel, reconnecting with
/// backoff, and catches up every followed room each time it (re)subscribes.
async fn listen(inner: Weak<Inner>, client: Client, stop: CancellationToken, timeout: Duration) {
    let mut backoff = RECONNECT_MIN;
    let mut failures = 0u32;
    loop {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<PubSub, RedisError>(pubsub)
        };
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(timeout, subscribe) => attempt,
            () = stop.cancelled() => return,
        };
        match attempt {
            Ok(Ok(pubsub)) => {
                if failures > 0 {
                    tracing::info!("reconnected to Redis");
                }
                failures = 0;
                let subscribed = Instant::now();
                match follow_channel(&inner, pubsub, &stop, timeout).await {
                    Listener::Stopped => return,
                    Listener::Lost(why) => {
                        tracing::warn!(%why, "lost the Redis subscription; reconnecting")
                    }
                }
                // Back off afresh only after a subscription that lasted: one that fails right
                // away (an incompatible server, a failing catch-up) must not spin.
                if subscribed.elapsed() >= HEALTHY_SUBSCRIPTION {
                    backoff = RECONNECT_MIN;
                }
            }
            Ok(Err(err)) => {
                failures += 1;
                // One line per outage, then quiet: the relay's readiness tells the rest.
                if failures == 1 {
                    tracing::warn!(%err, "cannot subscribe to Redis; retrying");
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(?timeout, "Redis did not answer; retrying");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

enum Listener {
    Stopped,
    Lost(String),
}

/// Forwards announcements until the subscription is lost or the bus is dropped.
async fn follow_channel(
    inner: &Weak<Inner>,
    pubsub: PubSub,
    stop: &CancellationToken,
    timeout: Duration,
) -> Listener {
    let bus = || inner.upgrade().map(|inner| RedisBus { inner });
    let (mut sink, mut stream) = pubsub.split();
    // Announcements that arrive during the catch-up wait in the stream; those it already
    // forwarded are skipped by id.
    let Some(caught_up) = bus() else {
        return Listener::Stopped;
    };
    if let Err(err) = caught_up.check_server().await {
        return Listener::Lost(format!("{err:?}"));
    }
    if let Err(err) = caught_up.catch_up().await {
        return Listener::Lost(format!("catching up failed: {err:?}"));
    }
    caught_up.inner.listening.store(true, Ordering::Release);
    drop(caught_up);
    let mut ping = tokio::time::interval(LISTENER_PING);
    ping.tick().await;
    let lost = loop {
        tokio::select! {
            message = stream.next() => match (message, bus()) {
                (Some(message), Some(bus)) => bus.announce(message.get_payload_bytes()),
                (None, _) => break "connection closed".to_owned(),
                (_, None) => return Listener::Stopped,
            },
            _ = ping.tick() => {
                match tokio::time::timeout(timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => break format!("ping failed: {err}"),
                    Err(_) => break format!("no answer to ping within {timeout:?}"),
                }
            }
            () = stop.cancelled() => return Listener::Stopped,
        }
    };
    if let Some(bus) = bus() {
        bus.inner.listening.store(false, Ordering::Release);
    }
    Listener::Lost(lost)
}

/// An announcement: `room\nepoch\nstream id\nts\nfrom\ntext` (the text may hold line breaks).
#[derive(Debug, PartialEq, Eq)]
struct Announcement<'a> {
    room: &'a str,
    epoch: &'a str,
    id: u64,
    ts: u64,
    from: &'a str,
    text: &'a str,
}

impl<'a> Announcement<'a> {
    fn parse(payload: &'a [u8]) -> Option<Announcement<'a>> {
        let payload = std::str::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(6, '\n');
        Some(Announcement {
            room: parts.next()?,
            epoch: parts.next()?,
            id: parse_id(parts.next()?)?,
            ts: parts.next()?.parse().ok()?,
            from: parts.next()?,
            text: parts.next()?,
        })
    }
}

/// `(major, minor)` from the `redis_version:` line of `INFO server`.
fn redis_version(info: &str) -> Option<(u32, u32)> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?;
    let mut parts = version.trim().split('.').map(|part| part.parse().ok());
    Some((parts.next()??, parts.next()??))
}

/// Our stream ids are `0-<id>`.
fn parse_id(stream_id: &str) -> Option<u64> {
    stream_id.strip_prefix("0-")?.parse().ok()
}

fn unexpected(what: &str, got: impl std::fmt::Debug) -> BusError {
    BusError::Unavailable(format!("unexpected reply from Redis for {what}: {got:?}"))
}

/// The read script's reply: `{epoch, newest id, oldest id, entries}`.
struct View {
    epoch: String,
    head: u64,
    oldest: u64,
    window: VecDeque<Arc<Envelope>>,
}

impl View {
    fn parse(room: &RoomName, reply: Value) -> Result<View, BusError> {
        let Value::Array(parts) = reply else {
            return Err(unexpected("read", reply));
        };
        let [epoch, head, oldest, Value::Array(entries)] =
            <[Value; 4]>::try_from(parts).map_err(|parts| unexpected("read", parts))?
        else {
            return Err(unexpected("read", "entries are not an array"));
        };
        let id_of = |value| text_id(value).ok_or_else(|| unexpected("read", "a stream id"));
        let window = entries
            .into_iter()
            .map(|entry| entry_envelope(room, entry))
            .collect::<Result<_, _>>()?;
        Ok(View {
            epoch: text(epoch).ok_or_else(|| unexpected("read", "the epoch"))?,
            head: id_of(head)?,
            oldest: id_of(oldest)?,
            window,
        })
    }
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// A stream entry `[id, [f, from, t, text, ts, ts]]` as the message it holds.
fn entry_envelope(room: &RoomName, entry: Value) -> Result<Arc<Envelope>, BusError> {
    let bad = || unexpected("a stream entry", "");
    let Value::Array(parts) = entry else {
        return Err(bad());
    };
    let [id, Value::Array(fields)] = <[Value; 2]>::try_from(parts).map_err(|_| bad())? else {
        return Err(bad());
    };
    let mut fields = fields.into_iter().map(text);
    let mut field = |name: &str| match (fields.next().flatten(), fields.next().flatten()) {
        (Some(key), Some(value)) if key == name => Some(value),
        _ => None,
    };
    let from = field("f").ok_or_else(bad)?;
    let text = field("t").ok_or_else(bad)?;
    let ts = field("ts").and_then(|ts| ts.parse().ok()).ok_or_else(bad)?;
    let id = text_id(id).ok_or_else(bad)?;
    Ok(Arc::new(Envelope::new(Message {
        id,
        room: room.to_string(),
        from,
        text,
        ts,
    })))
}

fn text_id(value: Value) -> Option<u64> {
    text(value).and_then(|s| parse_id(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_with_line_breaks_in_the_text() {
        let payload = b"lobby\nr1f\n0-42\n1700000000000\nann\nline one\nline two";
        assert_eq!(
            Announcement::parse(payload),
            Some(Announcement {
                room: "lobby",
                epoch: "r1f",
                id: 42,
                ts: 1_700_000_000_000,
                from: "ann",
                text: "line one\nline two",
            })
        );
    }

    #[test]
    fn malformed_announcements_are_refused() {
        assert_eq!(Announcement::parse(b"lobby\nr1f\n42\n1\na\nt"), None);
        assert_eq!(Announcement::parse(b"lobby\nr1f\n0-42\n1\na"), None);
        assert_eq!(Announcement::parse(b"\xff\nr\n0-1\n1\na\nt"), None);
    }

    #[test]
    fn the_server_version_comes_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info), Some((7, 0)));
        assert_eq!(redis_version("redis_version:6.2.14\r\n"), Some((6, 2)));
        assert_eq!(redis_version("# Server\r\n"), None);
    }

    #[test]
    fn stream_ids_carry_our_ids_in_the_sequence_part() {
        assert_eq!(parse_id("0-7"), Some(7));
        assert_eq!(parse_id("1700000000000-0"), None);
        assert_eq!(parse_id("0-"), None);
    }

    fn envelope(id: u64) -> Arc<Envelope> {
        Arc::new(Envelope::new(Message {
            id,
            room: "r".into(),
            from: "a".into(),
            text: format!("m{id}"),
            ts: 0,
        }))
    }

    fn follow() -> (Follow, broadcast::Receiver<Arc<Envelope>>) {
        Follow::new()
    }

    #[test]
    fn a_follow_forwards_each_id_once_after_what_its_first_subscriber_read() {
        let (follow, mut receiver) = follow();
        assert!(follow.start(&Arc::from("e"), 2));
        for id in [1, 2, 3, 3, 4, 2] {
            assert!(follow.forward("e", envelope(id)));
        }
        let forwarded: Vec<u64> = std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|m| m.id)
            .collect();
        assert_eq!(forwarded, [3, 4]);
        assert_eq!(follow.position(), (Some(Arc::from("e")), Some(4)));
    }

    #[test]
    fn a_follow_answers_cursors_its_recent_messages_cover() {
        let (follow, _receiver) = follow();
        assert!(follow.start(&Arc::from("e"), 2));
        for id in 3..=5 {
            follow.forward("e", envelope(id));
        }
        let at = |after: Option<u64>, limit: usize| {
            let cursor = Cursor {
                after,
                epoch: Some("e".into()),
            };
            follow
                .serve(&cursor, limit)
                .map(|s| (s.messages.iter().map(|m| m.id).collect::<Vec<_>>(), s.head))
        };
        assert_eq!(at(Some(2), 50), Some((vec![3, 4, 5], 5)));
        assert_eq!(at(Some(5), 50), Some((vec![], 5)), "caught up");
        assert_eq!(at(Some(1), 50), None, "older than what is held: ask Redis");
        assert_eq!(at(Some(6), 50), None, "ahead of this relay: ask Redis");
        assert_eq!(
            at(None, 2),
            Some((vec![4, 5], 5)),
            "a newcomer's newest two"
        );
        assert_eq!(at(None, 4), None, "fewer than a newcomer is owed");
        let other_epoch = Cursor {
            after: Some(4),
            epoch: Some("old".into()),
        };
        assert!(follow.serve(&other_epoch, 50).is_none());

        // After a gap only the new run answers.
        follow.forward("e", envelope(7));
        assert_eq!(at(Some(5), 50), None);
        assert_eq!(at(Some(6), 50), Some((vec![7], 7)));

        // And it stays bounded.
        for id in 8..8 + 2 * LIVE_QUEUE as u64 {
            follow.forward("e", envelope(id));
        }
        assert_eq!(lock(&follow.sync).recent.len(), LIVE_QUEUE);
    }

    #[test]
    fn a_follow_refuses_another_epoch() {
        let (follow, _receiver) = follow();
        assert!(follow.forward("e1", envelope(1)));
        assert!(!follow.forward("e2", envelope(2)));
        assert!(!follow.start(&Arc::from("e2"), 0));
        assert!(follow.start(&Arc::from("e1"), 0), "the same epoch is fine");
        assert_eq!(follow.position().1, Some(1), "what was forwarded stands");
    }

    #[test]
    fn epochs_are_fresh_each_time() {
        assert_ne!(fresh_epoch(), fresh_epoch());
    }

    #[test]
    fn stream_entries_become_messages() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("0-3"),
            Value::Array(vec![
                bulk("f"),
                bulk("ann"),
                bulk("t"),
                bulk("hi"),
                bulk("ts"),
                bulk("12"),
            ]),
        ]);
        let room = RoomName::parse("r").expect("valid room");
        let envelope = entry_envelope(&room, entry).expect("an entry");
        assert_eq!((envelope.id, envelope.ts), (3, 12));
        assert!(envelope.json.as_str().contains(r#""text":"hi""#));
    }
}
