//! A subscriber's view of one room: the snapshot it is owed, then live messages, in id order.
//!
//! Both buses open a [`Subscription`] the same way: join the room's live queue (a `broadcast`
//! of [`LIVE_QUEUE`] envelopes) first, then take a snapshot, so that every message newer than
//! the snapshot arrives live. From there the seam, a lag and a gap are handled here, once: the
//! overlap at the seam is skipped by id, and a subscriber that fell behind reads what it
//! missed back through [`Bus::read`] instead of being dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use protocol::Reset;
use protocol::limits::MAX_READ_MESSAGES;
use tokio::sync::broadcast;

use super::live::WeakLiveQueue;
use super::{Bus, Cursor, Envelope, LiveQueue, Outlet, Snapshot};
use crate::validate::RoomName;

/// Messages a room's live queue holds for its slowest subscriber. A subscriber further behind
/// than this is not dropped: it catches up from history (see `Subscription::next`). The queue
/// holds weak pointers ([`Live`]), so its cost is 256 × 24 bytes per room whatever the
/// message sizes; larger values only postpone the (cheap) history catch-up.
pub const LIVE_QUEUE: usize = 256;

/// What a room's live queue carries: a message's id, and the message itself held weakly. The
/// room's history (or, with Redis, its follow's recent messages) holds it, so that a live
/// queue costs [`LIVE_QUEUE`] pointers, not that many messages, however large they are. A
/// message that left history before its subscriber took it is read back from history — or
/// reported as a gap — like a lag.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: u64,
    envelope: Weak<Envelope>,
}

impl Live {
    pub fn new(envelope: &Arc<Envelope>) -> Live {
        Live {
            id: envelope.id,
            envelope: Arc::downgrade(envelope),
        }
    }
}

/// What a subscriber receives, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    Message(Arc<Envelope>),
    /// The subscriber's position could not be continued; what follows starts at `oldest_id`.
    Reset(Reset),
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
    live: broadcast::Receiver<Live>,
    /// The room's live path, to lend it an outlet (see [`Subscription::lend`]); weak, so
    /// that the bus can still end it.
    queue: WeakLiveQueue,
    /// Deliveries decided but not yet handed out.
    pending: VecDeque<Delivery>,
    /// The newest id handed to (or queued for) the subscriber; live messages at or below it
    /// are the seam's overlap and are skipped.
    position: u64,
    /// Set when the live queue overflowed; cleared once history has filled the hole. Kept in
    /// the struct (not a local) so that `next` stays cancel-safe inside `select!`.
    lagged: bool,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.bus.left(&self.room);
    }
}

impl Subscription {
    pub(super) fn new(
        bus: Bus,
        room: RoomName,
        snapshot: Snapshot,
        live: broadcast::Receiver<Live>,
        queue: &LiveQueue,
    ) -> Subscription {
        let mut sub = Subscription {
            bus,
            room,
            epoch: snapshot.epoch.clone(),
            head: snapshot.head,
            live,
            queue: queue.downgrade(),
            pending: VecDeque::new(),
            position: 0,
            lagged: false,
        };
        sub.queue(snapshot);
        sub
    }

    /// Reads what follows its position from history before taking live messages again: for
    /// a subscriber that may have missed messages that will not come live.
    pub(super) fn catch_up(&mut self) {
        self.lagged = true;
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The room's newest id when the subscription opened (the welcome's `last_id`).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Queues what a snapshot holds. A snapshot cut short by the read limits (`more`) is
    /// continued from history, like a lag, once its messages are handed out.
    fn queue(&mut self, snapshot: Snapshot) {
        let (more, head, next) = (snapshot.more, snapshot.head, snapshot.next_after());
        if let Some(reset) = snapshot.reset {
            self.pending.push_back(Delivery::Reset(reset));
        }
        for message in snapshot.messages {
            self.pending.push_back(Delivery::Message(message));
        }
        if more {
            self.position = self.position.max(next);
            self.lagged = true;
        } else {
            self.position = self.position.max(head).max(next);
        }
    }

    /// Lends `outlet` to the room if this subscriber has nothing left to deliver: from then on
    /// the room writes new messages to it directly, and the subscriber's own queue is only
    /// read again after [`Subscription::reclaim`]. `false` if something is waiting (deliver
    /// it first, then try again).
    pub fn lend(&mut self, outlet: &std::sync::Arc<Outlet>) -> bool {
        if !self.pending.is_empty() || self.lagged {
            return false;
        }
        let live = &self.live;
        self.queue.lend(outlet, self.position, || live.is_empty())
    }

    /// Continues after `position`, the newest id an outlet gave the client while lent: what
    /// the room's queue still holds up to there is skipped, what it lacks after is read from
    /// history.
    pub fn reclaim(&mut self, position: u64) {
        self.position = self.position.max(position);
        // Messages the queue dropped while the outlet was lent are behind `position` or
        // read back from history: the lag is not an error.
        if self.live.len() >= LIVE_QUEUE {
            self.live = self.live.resubscribe();
            self.lagged = true;
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
                Ok(live) if live.id == self.position + 1 => match live.envelope.upgrade() {
                    Some(message) => {
                        self.position = message.id;
                        return Some(Delivery::Message(message));
                    }
                    None => self.lagged = true,
                },
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
                // (`Bus::read` boxes the Redis call, so that every subscriber's waiting future
                // does not carry its size.)
                let read = self.bus.read(&self.room, &cursor, MAX_READ_MESSAGES);
                let snapshot = match read.await {
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
                Ok(live) if live.id == self.position + 1 => match live.envelope.upgrade() {
                    Some(message) => {
                        self.position = message.id;
                        return Some(Delivery::Message(message));
                    }
                    None => {
                        tracing::debug!(room = %self.room, id = live.id, "message left history before delivery; catching up");
                        self.lagged = true;
                    }
                },
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
