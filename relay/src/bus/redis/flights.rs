//! Coalesced reads: identical reads of a followed room that are asked for together share one
//! Redis call. When a relay restarts, or a crowd resumes at once, hundreds of clients of one
//! room come back with the same cursor before the room's follow knows anything; without this,
//! each of them would run the read script.
//!
//! Sharing must not cost a subscriber a message. A subscriber joins the room's live queue and
//! then reads: every message newer than the read must arrive live. A read that began before
//! this subscriber joined may have run before a message that the queue then carried before
//! the join, so neither would hold it. Reads are therefore shared only between callers of the
//! same follow ([`ReadKey::follow`]: a follow that replaced another starts afresh) that saw
//! the same count of messages forwarded into it ([`ReadKey::forwarded`]): nothing was
//! forwarded between the shared read's start and the latest caller's join, so whatever the
//! read missed reaches that caller live. (A follow's position can also move without a
//! forward, when another subscriber's read starts it ahead; the subscription catches up in
//! that case, shared read or not: see `RedisBus::subscribe`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, WeakShared};

use crate::bus::{BusError, Snapshot};
use crate::sync::lock;
use crate::validate::RoomName;

/// A read's answer: the snapshot, and whether the read created the room.
pub(super) type ReadResult = Result<(Snapshot, bool), BusError>;

type Flight = BoxFuture<'static, ReadResult>;

/// Entries whose every caller went away before the answer (a client that disconnected
/// mid-read) are swept once the map holds this many, or twice as many as the last sweep
/// left: sweeping costs one pass, so it must not run on every read when many are in flight.
const SWEEP_AT: usize = 64;

/// What makes two reads the same read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ReadKey {
    pub room: RoomName,
    pub after: Option<u64>,
    pub epoch: Option<String>,
    pub limit: usize,
    /// `Some(may_create)` for a read that opens the room.
    pub create: Option<bool>,
    /// The follow the caller joined (each follow has its own number).
    pub follow: u64,
    /// Messages forwarded into the room's follow when the caller asked (after joining its
    /// live queue, for a subscriber).
    pub forwarded: u64,
}

/// One read in flight: its number, the read (held weakly: its callers keep it alive), and
/// whether a caller has claimed the room it created.
struct InFlight {
    id: u64,
    read: WeakShared<Flight>,
    claimed: Arc<AtomicBool>,
}

#[derive(Default)]
struct Map {
    reads: HashMap<ReadKey, InFlight>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

/// The reads in flight.
#[derive(Default)]
pub(super) struct Flights {
    map: Mutex<Map>,
    next_id: AtomicU64,
    /// Reads answered by another caller's call (`/metrics`).
    shared: AtomicU64,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &lock(&self.map).reads.len())
            .finish_non_exhaustive()
    }
}

impl Flights {
    /// Runs the read `start` makes, unless the same read is in flight: then waits for that
    /// one's answer. Of the callers that receive an answer saying the read created the room,
    /// exactly one is told so (the first): the room is charged to one client's budget, even
    /// when the caller whose read ran went away before the answer.
    pub(super) async fn run(&self, key: ReadKey, start: impl FnOnce() -> Flight) -> ReadResult {
        let (id, read, claimed) = {
            let mut map = lock(&self.map);
            let joined = map.reads.get(&key).and_then(|entry| {
                let read = entry.read.upgrade()?;
                Some((entry.id, read, entry.claimed.clone()))
            });
            match joined {
                Some(joined) => {
                    self.shared.fetch_add(1, Ordering::Relaxed);
                    joined
                }
                None => {
                    if map.reads.len() >= map.sweep_at.max(SWEEP_AT) {
                        map.reads.retain(|_, entry| entry.read.upgrade().is_some());
                        map.sweep_at = 2 * map.reads.len();
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let read = start().shared();
                    let weak = read.downgrade().expect("a read not yet polled");
                    let claimed = Arc::new(AtomicBool::new(false));
                    let entry = InFlight {
                        id,
                        read: weak,
                        claimed: claimed.clone(),
                    };
                    map.reads.insert(key.clone(), entry);
                    (id, read, claimed)
                }
            }
        };
        let answer = read.await;
        // Whoever finishes first retires the read; later callers start a fresh one.
        let mut map = lock(&self.map);
        if map.reads.get(&key).is_some_and(|entry| entry.id == id) {
            map.reads.remove(&key);
        }
        drop(map);
        answer.map(|(snapshot, created)| {
            let first = created && !claimed.swap(true, Ordering::AcqRel);
            (snapshot, first)
        })
    }

    /// Reads answered by another caller's call, since the relay started.
    pub(super) fn shared(&self) -> u64 {
        self.shared.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::oneshot;

    use super::*;

    fn key(after: u64, forwarded: u64) -> ReadKey {
        ReadKey {
            room: RoomName::parse("r").expect("a room"),
            after: Some(after),
            epoch: Some("e".into()),
            limit: 10,
            create: Some(true),
            follow: 1,
            forwarded,
        }
    }

    fn snapshot(head: u64) -> Snapshot {
        let none = std::collections::VecDeque::new();
        crate::bus::cursor::snapshot(
            &none,
            head,
            head + 1,
            &Arc::from("e"),
            &Default::default(),
            0,
        )
    }

    /// A read that counts its runs and answers when `release` fires.
    fn gated(
        runs: Arc<AtomicUsize>,
        release: oneshot::Receiver<u64>,
    ) -> impl FnOnce() -> Flight + Send {
        move || {
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let head = release.await.expect("released");
                Ok((snapshot(head), true))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn reads_asked_together_run_once_and_one_caller_reports_the_creation() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = oneshot::channel();
        let first = tokio::spawn({
            let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
            async move { flights.run(key(3, 0), start).await }
        });
        tokio::task::yield_now().await;
        let (_unused, gate) = oneshot::channel();
        let second = tokio::spawn({
            let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
            async move { flights.run(key(3, 0), start).await }
        });
        while flights.shared() < 1 {
            tokio::task::yield_now().await;
        }
        release.send(7).expect("the read waits");
        let (first, second) = (
            first.await.expect("first caller"),
            second.await.expect("second caller"),
        );
        let (a, created_a) = first.expect("an answer");
        let (b, created_b) = second.expect("an answer");
        assert_eq!((a.head, b.head), (7, 7));
        assert!(
            created_a != created_b,
            "exactly one is told the room was created"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(lock(&flights.map).reads.is_empty(), "retired once answered");
    }

    #[tokio::test]
    async fn the_creation_is_reported_to_a_joiner_when_the_caller_whose_read_ran_left() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = oneshot::channel();
        let leader = tokio::spawn({
            let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
            async move { flights.run(key(3, 0), start).await }
        });
        while runs.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let (_unused, gate) = oneshot::channel();
        let joiner = tokio::spawn({
            let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
            async move { flights.run(key(3, 0), start).await }
        });
        while flights.shared() < 1 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let _ = leader.await;
        release.send(7).expect("the joiner keeps the read going");
        let (snapshot, created) = joiner.await.expect("joiner").expect("an answer");
        assert_eq!((snapshot.head, created), (7, true));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_message_forwarded_in_between_another_follow_or_another_cursor_makes_another_read() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut releases = Vec::new();
        let mut callers = Vec::new();
        let other_follow = ReadKey {
            follow: 2,
            ..key(3, 0)
        };
        for key in [key(3, 0), key(3, 1), key(4, 0), other_follow] {
            let (release, gate) = oneshot::channel();
            releases.push(release);
            let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
            callers.push(tokio::spawn(async move { flights.run(key, start).await }));
        }
        while runs.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        for (head, release) in releases.into_iter().enumerate() {
            release.send(head as u64).expect("the read waits");
        }
        for (head, caller) in callers.into_iter().enumerate() {
            let (snapshot, created) = caller.await.expect("caller").expect("an answer");
            assert_eq!((snapshot.head, created), (head as u64, true));
        }
        assert_eq!(flights.shared(), 0);
    }

    #[tokio::test]
    async fn a_read_whose_callers_all_left_is_not_joined_and_is_swept() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut gates = Vec::new();
        for after in 0..SWEEP_AT as u64 {
            let (release, gate) = oneshot::channel();
            gates.push(release);
            let caller = tokio::spawn({
                let (flights, start) = (flights.clone(), gated(runs.clone(), gate));
                async move { flights.run(key(after, 0), start).await }
            });
            while runs.load(Ordering::SeqCst) <= after as usize {
                tokio::task::yield_now().await;
            }
            caller.abort();
            let _ = caller.await;
        }
        assert_eq!(lock(&flights.map).reads.len(), SWEEP_AT);
        // The same read again: the abandoned one cannot be joined, so this one runs, and
        // inserting it sweeps every abandoned entry.
        let (release, gate) = oneshot::channel();
        release.send(9).expect("ready");
        let (snapshot, created) = flights
            .run(key(0, 0), gated(runs.clone(), gate))
            .await
            .expect("an answer");
        assert_eq!((snapshot.head, created), (9, true));
        assert_eq!(flights.shared(), 0);
        assert!(lock(&flights.map).reads.is_empty());
    }
}
