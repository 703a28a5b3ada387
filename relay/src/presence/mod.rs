//! Who is in each room and who is typing, on every transport and (with Redis) across relays.
//!
//! A *member* is a tab: its client id (`client=` on stream and poll URLs) names it on every
//! transport, so a page that switches transports stays one member. It is present while it
//! has a stream open (a WebSocket, an SSE stream, a pending long poll) and for
//! `RELAY_PRESENCE_TTL` after its last sign of life (a poll, a publish, its last stream
//! closing); a page that leaves says so (`POST …/presence`) and goes at once. The grace
//! after a close is what keeps a relay restart, or a flaky network, from making everyone
//! leave and join again.
//!
//! Changes are not announced as they happen: every [`TICK`] each room's changes since the
//! last tick go out as one `presence` event (with that tick's typing signals), encoded once
//! for every transport ([`hub`]). A crowd reconnecting at once is then a few events, not one
//! per person for every person.
//!
//! # Layout
//! - [`member`]: a member's public id, and what keeps it present on this relay.
//! - [`roster`]: a room's members in the order they joined (what snapshots list).
//! - [`hub`]: a room's signals, for its streams and (kept a while) its pollers.
//! - [`redis`]: membership decided in Redis, for several relays (with `RELAY_REDIS_URL`);
//!   without it, this relay decides alone, in memory, with each tick.
//! - this file: [`Presence`], the handle transports use, and the tick.

pub mod hub;
pub mod member;
mod redis;
pub mod roster;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use protocol::presence::TYPING_EVERY_MS;
use protocol::{Member, PresenceChange, PresenceSnapshot, ServerEvent, Transport, Typing};
use tokio::sync::broadcast;

use self::hub::{Batch, Hub, Position, Since};
use self::member::{Local, MemberId};
use self::roster::Roster;
use crate::client::ClientKey;
use crate::metrics::Metrics;
use crate::sync::lock;
use crate::validate::RoomName;

/// How often changes are gathered and sent. Short enough that a person sees someone arrive
/// or start typing "at once"; long enough that a crowd arriving together is one event.
pub const TICK: Duration = Duration::from_millis(250);

/// Who a request or stream belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// The tab's client id, checked by `validate::client_id`; `None` for clients that send
    /// none (tools, the tutorial's snippet): a stream of theirs is a member of its own.
    pub client: Option<&'a str>,
    pub name: &'a str,
    /// The address it comes from, charged for the poll-only members it brings in.
    pub owner: ClientKey,
}

/// Bounds on what presence may hold, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub ttl: Duration,
    /// Members on this relay at once (`RELAY_MAX_CONNECTIONS`): a member without a stream
    /// is tracked only under it.
    pub max_members: usize,
    /// Members brought in by one client address's polls (`RELAY_MAX_CONNECTIONS_PER_CLIENT`):
    /// a script cannot fill a room with invented client ids.
    pub max_per_client: usize,
}

/// The handle transports hold. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Presence {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub struct Inner {
    rooms: Mutex<Rooms>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Redis, when several relays share presence.
    store: Option<redis::Store>,
    /// Names this process's hubs and anonymous members.
    instance: u64,
    next: AtomicU64,
}

#[derive(Debug, Default)]
struct Rooms {
    rooms: HashMap<RoomName, Room>,
    /// Members per address that brought them in.
    owners: HashMap<ClientKey, usize>,
    members: usize,
}

#[derive(Debug)]
struct Room {
    locals: HashMap<MemberId, Local>,
    roster: Roster,
    hub: Hub,
    /// Typing signals gathered since the last tick.
    typing: Vec<ServerEvent>,
    /// When each member last typed (for `TYPING_EVERY_MS`).
    typed: HashMap<MemberId, Instant>,
    /// With Redis: what this relay last told it.
    shared: Shared,
}

/// A room's standing in Redis, as this relay knows it.
#[derive(Debug, Default)]
struct Shared {
    /// The members this relay last refreshed, as it described them (and whether they had a
    /// stream then: a close moves the expiry).
    pushed: Described,
    refreshed: Option<Instant>,
    swept: Option<Instant>,
    /// Members that said they left, to remove with the next tick.
    leaves: Vec<MemberId>,
    /// When the mirror of the room's list was last loaded (again after `RELAY_PRESENCE_TTL`,
    /// so that a missed announcement costs at most that long); `None`: load it.
    loaded: Option<Instant>,
    loading: bool,
    /// Announcements applied to the mirror: a load read before one of them is stale.
    heard: u64,
}

/// Members as a relay described them to Redis, with whether each had a stream open.
type Described = HashMap<MemberId, (Member, bool)>;

/// Calls to Redis one tick has in flight at once.
const CONCURRENT_CALLS: usize = 16;

/// How often a relay sweeps a room it holds for members whose time ran out (with Redis):
/// the most a departure is announced after the TTL.
const SWEEP: Duration = Duration::from_secs(1);

impl Room {
    fn new(tag: u64) -> Room {
        Room {
            locals: HashMap::new(),
            roster: Roster::default(),
            hub: Hub::new(tag),
            typing: Vec::new(),
            typed: HashMap::new(),
            shared: Shared::default(),
        }
    }

    /// Nothing here needs the room: no member, nothing to send, nobody listening. (With
    /// Redis, the list is only a mirror, and does not keep the room.)
    fn idle(&self, mirror: bool) -> bool {
        self.locals.is_empty()
            && (mirror || self.roster.is_empty())
            && self.typing.is_empty()
            && self.shared.leaves.is_empty()
            && self.hub.listeners() == 0
    }

    /// With Redis: what this tick must tell it about the room, if anything (see
    /// `redis::Job`), and the members it describes.
    fn job(&mut self, now: Instant, ttl: Duration) -> Option<(redis::Job, Option<Described>)> {
        let current: Described = self
            .locals
            .iter()
            .filter(|(_, local)| local.present(now, ttl))
            .map(|(id, local)| (id.clone(), (local.member(id), local.has_streams())))
            .collect();
        let shared = &mut self.shared;
        let changed = current
            .iter()
            .any(|(id, state)| shared.pushed.get(id) != Some(state));
        let dirty = changed || !self.typing.is_empty() || !shared.leaves.is_empty();
        let refresh = shared.refreshed.is_none_or(|at| now - at >= ttl / 3);
        let sweep = shared.swept.is_none_or(|at| now - at >= SWEEP);
        if !(dirty || refresh || sweep) {
            return None;
        }
        let mut job = redis::Job {
            leaves: shared.leaves.drain(..).map(|id| id.to_string()).collect(),
            typing: crate::event::json_array(&std::mem::take(&mut self.typing)),
            ..redis::Job::default()
        };
        if !(dirty || refresh) {
            return Some((job, None));
        }
        for (id, (member, _)) in &current {
            let local = &self.locals[id];
            let ttl_ms = local
                .deadline(now, ttl)
                .saturating_duration_since(now)
                .as_millis() as u64;
            let changed = shared
                .pushed
                .get(id)
                .is_none_or(|(pushed, _)| pushed != member);
            job.entries.push((
                id.to_string(),
                ttl_ms.max(1),
                crate::event::to_json(member),
                changed,
            ));
        }
        Some((job, Some(current)))
    }

    /// The room's list with this relay's present members over it: a member that arrived
    /// since the last tick sees itself in its welcome.
    fn snapshot(&self, you: Option<&MemberId>, now: Instant, ttl: Duration) -> PresenceSnapshot {
        let mut roster_and_locals = Roster::default();
        let listed = self.roster.snapshot(None);
        for member in listed.members {
            roster_and_locals.put(member);
        }
        let mut count = listed.count;
        for (id, local) in &self.locals {
            if local.present(now, ttl) {
                if self.roster.get(id).is_none() {
                    count += 1;
                }
                roster_and_locals.put(local.member(id));
            }
        }
        let mut snapshot = roster_and_locals.snapshot(you);
        snapshot.count = count;
        snapshot
    }

    /// In memory: what changed since the last tick, applied to the roster.
    fn diff(&mut self, now: Instant, ttl: Duration) -> Option<PresenceChange> {
        let mut change = PresenceChange::default();
        for (id, local) in &self.locals {
            if !local.present(now, ttl) {
                continue;
            }
            if !self
                .roster
                .get(id)
                .is_some_and(|listed| local.is_described_by(listed))
            {
                change.joined.push(local.member(id));
            }
        }
        for id in self.roster.ids() {
            if !self.locals.get(id).is_some_and(|l| l.present(now, ttl)) {
                change.left.push(id.to_string());
            }
        }
        if change.joined.is_empty() && change.left.is_empty() {
            return None;
        }
        change.joined.sort_by(|a, b| a.id.cmp(&b.id));
        change.left.sort();
        self.roster.apply(&change);
        change.count = self.roster.count();
        Some(change)
    }
}

/// What a poller missed (see [`Presence::since`]).
#[derive(Debug)]
pub struct Missed {
    /// The events, as JSON.
    pub events: Vec<bytes::Bytes>,
    pub position: Position,
    pub resync: bool,
}

/// A stream's (or pending long poll's) membership: the member stays attached while this
/// lives, and its grace starts when it is dropped.
#[derive(Debug)]
pub struct Attached {
    presence: Weak<Inner>,
    room: RoomName,
    id: MemberId,
    transport: Transport,
}

impl Attached {
    pub fn id(&self) -> &MemberId {
        &self.id
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(inner) = self.presence.upgrade() {
            let mut rooms = lock(&inner.rooms);
            if let Some(local) = rooms
                .rooms
                .get_mut(&self.room)
                .and_then(|room| room.locals.get_mut(&self.id))
            {
                local.detach(self.transport, Instant::now());
            }
        }
    }
}

impl Presence {
    /// Starts the tick (on the current runtime); it ends when the last handle is dropped.
    /// With `redis` (its URL and time limit), membership is shared with the relays there.
    pub fn new(
        limits: Limits,
        metrics: Arc<Metrics>,
        redis: Option<(&str, Duration)>,
    ) -> Result<Presence, ::redis::RedisError> {
        use std::hash::BuildHasher;
        let instance = std::collections::hash_map::RandomState::new().hash_one(());
        let store = match redis {
            Some((url, timeout)) => Some(redis::Store::new(url, timeout, limits.ttl)?),
            None => None,
        };
        let inner = Arc::new(Inner {
            rooms: Mutex::new(Rooms::default()),
            limits,
            metrics,
            store,
            instance,
            next: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        if let Some(store) = &inner.store {
            tokio::spawn(redis::listen(weak.clone(), store.client(), store.timeout()));
        }
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(TICK);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.store.is_some() {
                    inner.tick_shared(Instant::now()).await;
                } else {
                    inner.tick(Instant::now());
                }
            }
        });
        Ok(Presence { inner })
    }

    /// A stream of `transport` opened for `who`: it is a member (a new one, or the same one
    /// on another transport) until the returned guard is dropped and its grace is over.
    pub fn attach(&self, room: &RoomName, who: Who<'_>, transport: Transport) -> Attached {
        let inner = &self.inner;
        let id = match who.client {
            Some(client) => MemberId::of_client(client),
            // A member of its own: nobody else can name it, so nobody can make it leave.
            None => MemberId::of_client(&format!(
                "anonymous:{:x}:{}",
                inner.instance,
                inner.next.fetch_add(1, Relaxed)
            )),
        };
        let now = Instant::now();
        let mut rooms = lock(&inner.rooms);
        let rooms = &mut *rooms;
        let within = rooms.owners.get(&who.owner).copied().unwrap_or(0)
            < inner.limits.max_per_client
            && rooms.members < inner.limits.max_members;
        let room_state = inner.room(&mut rooms.rooms, room);
        match room_state.locals.get_mut(&id) {
            Some(local) => local.attach(who.name, transport, now),
            None => {
                let mut local = Local::new(who.name, transport, who.owner, now);
                local.grace = who.client.is_some() && within;
                local.attach(who.name, transport, now);
                room_state.locals.insert(id.clone(), local);
                *rooms.owners.entry(who.owner).or_default() += 1;
                rooms.members += 1;
            }
        }
        Attached {
            presence: Arc::downgrade(inner),
            room: room.clone(),
            id,
            transport,
        }
    }

    /// A poll of `transport` arrived from `who`: it is present for a TTL from now. `None`
    /// when it names no client, or is over the budget of poll-only members.
    pub fn polled(&self, room: &RoomName, who: Who<'_>, transport: Transport) -> Option<MemberId> {
        let inner = &self.inner;
        let id = MemberId::of_client(who.client?);
        let now = Instant::now();
        let mut rooms = lock(&inner.rooms);
        let rooms = &mut *rooms;
        let over = rooms.members >= inner.limits.max_members
            || rooms.owners.get(&who.owner).copied().unwrap_or(0) >= inner.limits.max_per_client;
        if !rooms.rooms.contains_key(room) && over {
            return None;
        }
        let room_state = inner.room(&mut rooms.rooms, room);
        match room_state.locals.get_mut(&id) {
            Some(local) => local.signs_of_life(who.name, transport, now),
            None if over => return None,
            None => {
                room_state
                    .locals
                    .insert(id.clone(), Local::new(who.name, transport, who.owner, now));
                *rooms.owners.entry(who.owner).or_default() += 1;
                rooms.members += 1;
            }
        }
        Some(id)
    }

    /// A publish or request naming `client`: a sign of life, if it is a member here.
    pub fn touch(&self, room: &RoomName, client: &str) {
        let id = MemberId::of_client(client);
        let mut rooms = lock(&self.inner.rooms);
        if let Some(local) = rooms
            .rooms
            .get_mut(room)
            .and_then(|room| room.locals.get_mut(&id))
        {
            local.touch(Instant::now());
        }
    }

    /// The tab of `client` is leaving: it is announced as gone with the next tick. (With
    /// Redis, wherever it was: the page's beacon may reach another relay than its streams.)
    pub fn leave(&self, room: &RoomName, client: &str) {
        let id = MemberId::of_client(client);
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let room_state = match rooms.rooms.get_mut(room) {
            Some(state) => state,
            None if inner.store.is_some() => inner.room(&mut rooms.rooms, room),
            None => return,
        };
        if let Some(local) = room_state.locals.get_mut(&id) {
            local.leave();
        }
        if inner.store.is_some() {
            room_state.shared.leaves.push(id);
        }
    }

    /// The member `id` is typing: sent to the room with the next tick, unless it typed less
    /// than `TYPING_EVERY_MS` ago (then dropped: `false`), or is no member here.
    pub fn typing(&self, room: &RoomName, id: &MemberId) -> bool {
        let now = Instant::now();
        let mut rooms = lock(&self.inner.rooms);
        let ttl = self.inner.limits.ttl;
        let sent = rooms.rooms.get_mut(room).is_some_and(|room| {
            let Some(local) = room.locals.get_mut(id) else {
                return false;
            };
            // Typing is a sign of life (and brings back a member that had said it left).
            local.touch(now);
            let every = Duration::from_millis(TYPING_EVERY_MS);
            let recent = room
                .typed
                .get(id)
                .is_some_and(|at| now.saturating_duration_since(*at) < every);
            if recent || !local.present(now, ttl) {
                return false;
            }
            room.typed.insert(id.clone(), now);
            room.typing.push(ServerEvent::Typing(Typing {
                name: local.name.to_string(),
                id: id.to_string(),
            }));
            true
        });
        drop(rooms);
        self.inner.metrics.typing(sent);
        sent
    }

    /// The room's members now, for a welcome (`you`: the connection's member) or a
    /// `GET …/presence`.
    pub fn snapshot(&self, room: &RoomName, you: Option<&MemberId>) -> PresenceSnapshot {
        let rooms = lock(&self.inner.rooms);
        match rooms.rooms.get(room) {
            Some(state) => state.snapshot(you, Instant::now(), self.inner.limits.ttl),
            None => PresenceSnapshot {
                you: you.map(MemberId::to_string),
                ..PresenceSnapshot::default()
            },
        }
    }

    /// The whole list as a `presence` event, for a receiver that may have missed changes.
    pub fn resync(&self, room: &RoomName, you: Option<&MemberId>) -> ServerEvent {
        let snapshot = self.snapshot(room, you);
        ServerEvent::Presence(PresenceChange {
            joined: Vec::new(),
            left: Vec::new(),
            count: snapshot.count,
            members: Some(snapshot.members),
            you: snapshot.you,
        })
    }

    /// The room's signals, for a stream: subscribe before taking the welcome's snapshot, so
    /// that no change falls between the two.
    pub fn signals(&self, room: &RoomName) -> broadcast::Receiver<Arc<Batch>> {
        let mut rooms = lock(&self.inner.rooms);
        self.inner.room(&mut rooms.rooms, room).hub.subscribe()
    }

    /// What a poller at `from` missed, as JSON events, and where it stands after them. A
    /// poller without a position, or with one from elsewhere (another relay, a restart) or
    /// too old, gets the whole list when it is a member (`you`) or gave a position; `None`
    /// when the room has no signals here at all. `Missed::resync` says the list was sent for
    /// a position from elsewhere: not news that should end a long poll early (behind a load
    /// balancer, every poll may reach another relay).
    pub fn since(
        &self,
        room: &RoomName,
        from: Option<Position>,
        you: Option<&MemberId>,
    ) -> Option<Missed> {
        let rooms = lock(&self.inner.rooms);
        let state = rooms.rooms.get(room)?;
        let position = state.hub.position();
        let since = match from {
            Some(from) => state.hub.since(from),
            None => Since::Unknown,
        };
        let resync = from.is_some() && matches!(since, Since::Unknown);
        let events = match since {
            Since::Batches(batches) => batches
                .iter()
                .flat_map(|batch| batch.events.iter().cloned())
                .collect(),
            Since::Unknown if you.is_some() || from.is_some() => {
                let snapshot = state.snapshot(you, Instant::now(), self.inner.limits.ttl);
                let event = ServerEvent::Presence(PresenceChange {
                    joined: Vec::new(),
                    left: Vec::new(),
                    count: snapshot.count,
                    members: Some(snapshot.members),
                    you: snapshot.you,
                });
                vec![bytes::Bytes::from(crate::event::json(&event))]
            }
            Since::Unknown => Vec::new(),
        };
        Some(Missed {
            events,
            position,
            resync,
        })
    }
}

impl Inner {
    fn room<'a>(&self, rooms: &'a mut HashMap<RoomName, Room>, room: &RoomName) -> &'a mut Room {
        rooms.entry(room.clone()).or_insert_with(|| {
            let tag = self.instance ^ self.next.fetch_add(1, Relaxed).rotate_left(32);
            Room::new(tag)
        })
    }

    /// Forgets the members that are gone (from every room), freeing their budget.
    fn forget(rooms: &mut Rooms, now: Instant, ttl: Duration) {
        let Rooms {
            rooms,
            owners,
            members,
        } = rooms;
        let every = Duration::from_millis(TYPING_EVERY_MS);
        for room in rooms.values_mut() {
            room.locals.retain(|_, local| {
                let keep = !local.forgettable(now, ttl);
                if !keep {
                    *members -= 1;
                    if let Some(n) = owners.get_mut(&local.owner) {
                        *n -= 1;
                        if *n == 0 {
                            owners.remove(&local.owner);
                        }
                    }
                }
                keep
            });
            room.typed
                .retain(|_, at| now.saturating_duration_since(*at) < every);
        }
    }

    fn present(rooms: &Rooms, now: Instant, ttl: Duration) -> usize {
        rooms
            .rooms
            .values()
            .map(|room| room.locals.values().filter(|l| l.present(now, ttl)).count())
            .sum()
    }

    /// In memory: forgets members that are gone, announces each room's changes and typing
    /// signals, and drops rooms nobody is in or listening to.
    fn tick(&self, now: Instant) {
        let ttl = self.limits.ttl;
        let mut rooms = lock(&self.rooms);
        Inner::forget(&mut rooms, now, ttl);
        let mut batches = 0;
        rooms.rooms.retain(|_, room| {
            let mut events = Vec::new();
            if let Some(change) = room.diff(now, ttl) {
                events.push(ServerEvent::Presence(change));
            }
            events.append(&mut room.typing);
            if !events.is_empty() {
                batches += 1;
            }
            room.hub.send(&events);
            !room.idle(false)
        });
        let present = Inner::present(&rooms, now, ttl);
        self.metrics.presence(present, rooms.rooms.len());
        self.metrics.presence_sent(batches);
    }

    /// With Redis: tells it each room's news (see `redis::Job`), and loads the list of rooms
    /// new here (and again every TTL). What changed comes back as announcements, to every
    /// relay.
    async fn tick_shared(&self, now: Instant) {
        let Some(store) = &self.store else { return };
        let ttl = self.limits.ttl;
        let (jobs, loads) = {
            let mut rooms = lock(&self.rooms);
            Inner::forget(&mut rooms, now, ttl);
            let mut jobs = Vec::new();
            let mut loads = Vec::new();
            for (name, room) in rooms.rooms.iter_mut() {
                let stale = room.shared.loaded.is_none_or(|at| now - at >= ttl);
                if stale && !room.shared.loading {
                    room.shared.loading = true;
                    loads.push((name.clone(), room.shared.heard));
                }
                if let Some((job, pushed)) = room.job(now, ttl) {
                    jobs.push((name.clone(), job, pushed));
                }
            }
            rooms.rooms.retain(|_, room| !room.idle(true));
            let present = Inner::present(&rooms, now, ttl);
            self.metrics.presence(present, rooms.rooms.len());
            (jobs, loads)
        };
        // A few calls at a time: a relay with many rooms does not flood Redis (or its own
        // connection) at every tick.
        let timeout = store.timeout();
        let mut results = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(CONCURRENT_CALLS) {
            let calls = chunk.iter().map(|(room, job, _)| async move {
                tokio::time::timeout(timeout, store.tick(room, job)).await
            });
            results.extend(futures_util::future::join_all(calls).await);
        }
        let mut lists = Vec::with_capacity(loads.len());
        for chunk in loads.chunks(CONCURRENT_CALLS) {
            let calls = chunk.iter().map(|(room, _)| async move {
                tokio::time::timeout(timeout, store.load(room)).await
            });
            lists.extend(futures_util::future::join_all(calls).await);
        }
        self.metrics
            .presence_calls((jobs.len() + loads.len()) as u64);
        let mut rooms = lock(&self.rooms);
        for ((name, job, pushed), result) in jobs.into_iter().zip(results) {
            match result {
                Ok(Ok(_count)) => {
                    let Some(room) = rooms.rooms.get_mut(&name) else {
                        continue;
                    };
                    if let Some(pushed) = pushed {
                        room.shared.pushed = pushed;
                        room.shared.refreshed = Some(now);
                    }
                    room.shared.swept = Some(now);
                }
                // Leaves are told again with the next tick (a typing signal that late is not
                // worth it); the room may have gone meanwhile, and comes back for them.
                failed => {
                    tracing::debug!(room = %name, ?failed, "presence tick failed; retrying");
                    if !job.leaves.is_empty() {
                        let room = self.room(&mut rooms.rooms, &name);
                        room.shared
                            .leaves
                            .extend(job.leaves.iter().map(|id| MemberId::from_public(id)));
                    }
                }
            }
        }
        for ((name, heard), result) in loads.into_iter().zip(lists) {
            let Some(room) = rooms.rooms.get_mut(&name) else {
                continue;
            };
            room.shared.loading = false;
            // A list read before an announcement that was applied meanwhile is stale: read
            // it again with the next tick.
            let Ok(Ok(members)) = result else { continue };
            if room.shared.heard != heard {
                continue;
            }
            room.shared.loaded = Some(now);
            let before = room.roster.snapshot(None);
            room.roster.apply(&PresenceChange {
                members: Some(members),
                ..PresenceChange::default()
            });
            // Streams that opened before the list was known, or that missed a change, get it
            // whole; a reload that found nothing new sends nothing.
            if room.roster.snapshot(None) == before {
                continue;
            }
            let snapshot = room.snapshot(None, now, ttl);
            room.hub.send(&[ServerEvent::Presence(PresenceChange {
                count: snapshot.count,
                members: Some(snapshot.members),
                ..PresenceChange::default()
            })]);
        }
    }

    /// An announcement from Redis (any relay's tick): applied to the room's list here and
    /// sent to its streams and pollers.
    fn announced(&self, announcement: redis::Announcement) {
        let Ok(room) = RoomName::parse(&announcement.room) else {
            return;
        };
        let mut rooms = lock(&self.rooms);
        let Some(state) = rooms.rooms.get_mut(&room) else {
            return;
        };
        state.shared.heard += 1;
        // Whoever said they left is gone here too, wherever the beacon landed: this relay
        // must not list (or refresh) them again while their streams close.
        for id in &announcement.said {
            if let Some(local) = state.locals.get_mut(&MemberId::from_public(id)) {
                local.leave();
            }
        }
        let mut events = Vec::new();
        if !announcement.joined.is_empty() || !announcement.left.is_empty() {
            let change = PresenceChange {
                joined: announcement.joined,
                left: announcement.left,
                count: announcement.count,
                ..PresenceChange::default()
            };
            state.roster.apply(&change);
            events.push(ServerEvent::Presence(change));
        }
        events.extend(announcement.typing);
        if !events.is_empty() {
            state.hub.send(&events);
            self.metrics.presence_sent(1);
        }
    }

    /// The subscription (re)started: announcements may have been missed.
    fn reload_all(&self) {
        for room in lock(&self.rooms).rooms.values_mut() {
            room.shared.loaded = None;
        }
    }
}

#[cfg(test)]
mod tests;
