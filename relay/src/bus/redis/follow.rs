//! One room as this relay follows it: the local queue its subscribers read, how far the
//! announcements have been forwarded into it, and its newest messages.
//!
//! The listener [`forward`](Follow::forward)s each announcement (and what a catch-up read
//! back) into the room's follow, which drops repeats by id; subscribers join its queue, and
//! reads that are (nearly) caught up are [`serve`](Follow::serve)d from its recent messages
//! with the same continue-or-reset rule as every other read. A follow nobody listens to
//! lingers for [`FOLLOW_LINGER`], then [`prune_idle_follows`] drops it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::bus::cursor::snapshot;
use crate::bus::{Cursor, Envelope, LIVE_QUEUE, Live, LiveQueue, Snapshot};
use crate::sync::lock;
use crate::validate::RoomName;

/// How long a followed room nobody listens to stays followed: longer than a long poller takes
/// to come back with its next request (it is answered from the follow's recent messages then),
/// short enough that rooms nobody visits stop costing announcements.
const FOLLOW_LINGER: Duration = Duration::from_secs(30);

/// One room as this relay follows it: the local queue its subscribers read, and how far the
/// announcements have been forwarded into it.
#[derive(Debug)]
pub(super) struct Follow {
    /// This follow's own number: a follow that replaces another (a new epoch) is not it.
    id: u64,
    pub(super) live: LiveQueue,
    sync: Mutex<FollowSync>,
    /// Most bytes of recent messages kept (`RELAY_HISTORY_BYTES`, as for a room's history).
    max_bytes: usize,
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
    /// [`LIVE_QUEUE`] and `max_bytes`: polls and subscriptions that are (nearly) caught up
    /// read them here instead of asking Redis — otherwise every message would send every
    /// woken long poll to Redis at once. They also keep alive what the live queue holds
    /// weakly.
    recent: VecDeque<Arc<Envelope>>,
    /// Bytes of `recent`, as stored.
    recent_bytes: usize,
    /// Messages forwarded so far: reads may be shared only by callers that saw the same
    /// count (see `flights`).
    forwarded: u64,
}

impl Follow {
    /// A follow that knows nothing yet, and a first receiver on it.
    pub(super) fn new(max_bytes: usize) -> (Follow, broadcast::Receiver<Live>) {
        let live = LiveQueue::new();
        let receiver = live.subscribe();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let follow = Follow {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            live,
            sync: Mutex::new(FollowSync {
                used: Instant::now(),
                epoch: None,
                last: None,
                recent: VecDeque::new(),
                recent_bytes: 0,
                forwarded: 0,
            }),
            max_bytes,
        };
        (follow, receiver)
    }

    /// Records that a subscriber joined just now: the follow lingers [`FOLLOW_LINGER`] from
    /// here once nobody listens.
    pub(super) fn touch(&self) {
        lock(&self.sync).used = Instant::now();
    }

    /// Forwards one message unless it was already forwarded. `false` when it belongs to
    /// another epoch than the room's followers were given: the follow must be ended.
    pub(super) fn forward(&self, epoch: &str, envelope: Arc<Envelope>) -> bool {
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
            sync.recent_bytes = 0;
        }
        sync.recent_bytes += envelope.stored_bytes();
        sync.recent.push_back(envelope.clone());
        while sync.recent.len() > 1
            && (sync.recent.len() > LIVE_QUEUE || sync.recent_bytes > self.max_bytes)
        {
            if let Some(oldest) = sync.recent.pop_front() {
                sync.recent_bytes -= oldest.stored_bytes();
            }
        }
        sync.last = Some(envelope.id);
        // Counted before it is queued: a subscriber that joins the queue and then sees an
        // unchanged count receives this message live.
        sync.forwarded += 1;
        // Queued under the follow's lock, in id order; written directly to lent sockets after
        // it is released (see `LiveQueue::send`).
        let fanout = self.live.send(&envelope);
        drop(sync);
        fanout.deliver();
        true
    }

    /// Records what a new subscriber read, if nothing was known yet: from then on the listener
    /// can tell what it missed. `false` when the room's epoch moved on.
    pub(super) fn start(&self, epoch: &Arc<str>, head: u64) -> bool {
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
    pub(super) fn serve(&self, cursor: &Cursor, limit: usize) -> Option<Snapshot> {
        let sync = lock(&self.sync);
        let (Some(epoch), Some(last)) = (&sync.epoch, sync.last) else {
            return None;
        };
        if cursor.epoch.as_deref().is_some_and(|e| e != &**epoch) {
            return None;
        }
        let first = sync.recent.front().map_or(last + 1, |m| m.id);
        let answerable = match cursor.after {
            Some(after) => after <= last && after.saturating_add(1) >= first,
            None => sync.recent.len() >= limit,
        };
        answerable.then(|| snapshot(&sync.recent, last, first, epoch, cursor, limit))
    }

    /// Messages forwarded so far (see `flights`).
    pub(super) fn forwarded(&self) -> u64 {
        lock(&self.sync).forwarded
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Whether nobody listens and nobody has for [`FOLLOW_LINGER`].
    pub(super) fn idle(&self) -> bool {
        self.live.receiver_count() == 0 && lock(&self.sync).used.elapsed() >= FOLLOW_LINGER
    }

    pub(super) fn position(&self) -> (Option<Arc<str>>, Option<u64>) {
        let sync = lock(&self.sync);
        (sync.epoch.clone(), sync.last)
    }
}

/// Drops the follows that are idle (see [`Follow::idle`]). Called with the follows map
/// locked, by `RedisBus::follow` before adding a room and by the listener every few seconds.
pub(super) fn prune_idle_follows(follows: &mut HashMap<RoomName, Arc<Follow>>) {
    follows.retain(|_, follow| !follow.idle());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::envelope::test_envelope as envelope;

    fn follow() -> (Follow, broadcast::Receiver<Live>) {
        Follow::new(usize::MAX)
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
}
