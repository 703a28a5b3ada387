//! The listener: one task per Redis bus that keeps the relay subscribed to the announcement
//! channel and hands each announcement to the room's [`Follow`].
//!
//! Pub/sub delivers at most once, so every (re)subscription starts with a check that the
//! server can run the scripts and a catch-up that reads each followed room after the last id
//! it forwarded; only then does the bus count as connected. A lost subscription (closed, or
//! silent past a ping) is retried with backoff, and the task ends when the last handle on the
//! bus goes: it holds the bus only weakly, and a token stops it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::PubSub;
use ::redis::{Client, RedisError, Value};
use futures_util::StreamExt;
use protocol::Message;
use tokio_util::sync::CancellationToken;

use super::follow::Follow;
use super::wire::{Announcement, redis_version};
use super::{CHANNEL, Inner, RedisBus};
use crate::bus::{BusError, Cursor, Envelope};
use crate::sync::lock;
use crate::validate::RoomName;

/// How often the listener pings Redis over its subscription: a silent channel cannot tell a
/// quiet chat from a dead connection.
const LISTENER_PING: Duration = Duration::from_secs(5);
/// Bounds on the wait between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A subscription that lasted this long was healthy: reconnect quickly after losing it.
const HEALTHY_SUBSCRIPTION: Duration = Duration::from_secs(10);

/// The listener: keeps one subscription to the announcement channel, reconnecting with
/// backoff, and catches up every followed room each time it (re)subscribes.
pub(super) async fn listen(
    inner: Weak<Inner>,
    client: Client,
    stop: CancellationToken,
    timeout: Duration,
) {
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
                // Idle follows are dropped on this timer, not when someone asks for a count.
                if let Some(bus) = bus() {
                    bus.prune();
                }
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

// What the listener does with the bus: the steps of each (re)subscription, and each
// announcement. They live here, next to the loop that runs them, rather than with the bus's
// API and commands.
impl RedisBus {
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
        let envelope = Arc::new(Envelope::new(
            Message {
                id: announcement.id,
                room: room.to_string(),
                from: announcement.from.to_owned(),
                text: announcement.text.to_owned(),
                ts: announcement.ts,
                key: announcement.key.map(str::to_owned),
            },
            announcement.epoch,
        ));
        if !follow.forward(announcement.epoch, envelope) {
            self.unfollow(&room, &follow);
        }
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
                    .read_stored(&room, &cursor, self.inner.limits.retention)
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
                    self.replace_epoch(&room, &epoch).await?;
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
