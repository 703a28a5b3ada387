//! The open sockets: how many, whose, and which may be closed to make room.
//!
//! At most `RELAY_MAX_SOCKETS` sockets are open at once, and at most
//! `RELAY_MAX_SOCKETS_PER_CLIENT` from one peer address (an IPv6 /64) — trusted proxies
//! excepted, since they carry everyone. A socket is *evictable* while it waits for a request
//! head: a new connection that has sent nothing yet, or a keep-alive connection between
//! requests. When a socket arrives at the global cap, the socket that has been evictable the
//! longest is closed to make room: those are the ones a slowloris attack or an idle hoarder
//! holds, while a socket answering a request, streaming or upgraded is never touched. If no
//! socket is evictable, the new one is closed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::client::{ClientKey, TrustedProxies};
use crate::metrics::{Metrics, reason};
use crate::sync::lock;

#[derive(Debug)]
pub struct Sockets {
    book: Mutex<Book>,
    max: usize,
    max_per_client: usize,
    proxies: Arc<TrustedProxies>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Book {
    open: usize,
    per_client: HashMap<ClientKey, usize>,
    /// Evictable sockets by when they became so (a sequence number), oldest first.
    evictable: BTreeMap<u64, CancellationToken>,
    next: u64,
}

impl Sockets {
    pub fn new(
        max: usize,
        max_per_client: usize,
        proxies: Arc<TrustedProxies>,
        metrics: Arc<Metrics>,
    ) -> Arc<Sockets> {
        Arc::new(Sockets {
            book: Mutex::new(Book::default()),
            max,
            max_per_client,
            proxies,
            metrics,
        })
    }

    /// A place for a socket from `peer`, making room if needed; `None` when the socket must
    /// be closed at once (its client has its share, or nothing can make way).
    pub fn admit(self: &Arc<Sockets>, peer: IpAddr) -> Option<Slot> {
        let client = (!self.proxies.trusts(peer)).then(|| ClientKey::of(peer));
        let mut book = lock(&self.book);
        if let Some(client) = client
            && book.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client
        {
            drop(book);
            self.metrics.rejected(reason::CLIENT_SOCKETS_FULL);
            return None;
        }
        if book.open >= self.max {
            self.metrics.rejected(reason::SOCKETS_FULL);
            let (_, oldest) = book.evictable.pop_first()?;
            // Its place is given back when its task sees this and drops the socket.
            oldest.cancel();
        }
        book.open += 1;
        if let Some(client) = client {
            *book.per_client.entry(client).or_default() += 1;
        }
        let evicted = CancellationToken::new();
        let seq = book.next;
        book.next += 1;
        book.evictable.insert(seq, evicted.clone());
        drop(book);
        self.metrics.socket_opened();
        Some(Slot(Arc::new(Shared {
            sockets: self.clone(),
            client,
            evicted,
            seq: Mutex::new(Some(seq)),
            closed: AtomicBool::new(false),
        })))
    }
}

#[derive(Debug)]
struct Shared {
    sockets: Arc<Sockets>,
    client: Option<ClientKey>,
    evicted: CancellationToken,
    /// The socket's place among the evictable ones, while it is one.
    seq: Mutex<Option<u64>>,
    closed: AtomicBool,
}

/// One open socket's place; dropping it (with the socket) gives the place back.
#[derive(Debug)]
pub struct Slot(Arc<Shared>);

/// What the request handling of a connection tells its slot.
#[derive(Debug, Clone)]
pub struct SlotHandle(Arc<Shared>);

impl Slot {
    pub fn handle(&self) -> SlotHandle {
        SlotHandle(self.0.clone())
    }
}

impl SlotHandle {
    /// Cancelled when the socket is closed to make room.
    pub fn evicted(&self) -> CancellationToken {
        self.0.evicted.clone()
    }

    /// A request head arrived: the socket is busy, not evictable.
    pub fn busy(&self) {
        let mut book = lock(&self.0.sockets.book);
        if let Some(seq) = lock(&self.0.seq).take() {
            book.evictable.remove(&seq);
        }
    }

    /// The answer is done; the socket waits for another request, and may be evicted.
    pub fn idle(&self) {
        let mut book = lock(&self.0.sockets.book);
        if self.0.closed.load(Ordering::Acquire) {
            return;
        }
        let mut seq = lock(&self.0.seq);
        if seq.is_none() {
            let next = book.next;
            book.next += 1;
            book.evictable.insert(next, self.0.evicted.clone());
            *seq = Some(next);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let shared = &self.0;
        let mut book = lock(&shared.sockets.book);
        shared.closed.store(true, Ordering::Release);
        if let Some(seq) = lock(&shared.seq).take() {
            book.evictable.remove(&seq);
        }
        book.open -= 1;
        if let Some(client) = shared.client
            && let Some(count) = book.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                book.per_client.remove(&client);
            }
        }
        drop(book);
        shared.sockets.metrics.socket_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockets(max: usize, per_client: usize) -> Arc<Sockets> {
        Sockets::new(
            max,
            per_client,
            Arc::new(TrustedProxies::parse(&["10.0.0.1"]).expect("parses")),
            Arc::new(Metrics::default()),
        )
    }

    fn ip(last: u8) -> IpAddr {
        [192, 0, 2, last].into()
    }

    #[test]
    fn at_the_cap_the_longest_evictable_socket_makes_room() {
        let sockets = sockets(3, 10);
        let first = sockets.admit(ip(1)).expect("1 of 3");
        let second = sockets.admit(ip(1)).expect("2 of 3");
        let third = sockets.admit(ip(1)).expect("3 of 3");
        // The first is answering a request; the second finished one and waits for the next;
        // the third has not sent a head yet.
        first.handle().busy();
        second.handle().busy();
        second.handle().idle();
        let fourth = sockets.admit(ip(2)).expect("room is made");
        assert!(
            !first.handle().evicted().is_cancelled(),
            "busy: never evicted"
        );
        assert!(
            third.handle().evicted().is_cancelled(),
            "evictable the longest"
        );
        assert!(!second.handle().evicted().is_cancelled());
        drop(third);
        second.handle().busy();
        fourth.handle().busy();
        assert!(sockets.admit(ip(3)).is_none(), "nothing evictable: refused");
        drop((first, second, fourth));
        assert_eq!(lock(&sockets.book).open, 0);
        assert!(lock(&sockets.book).evictable.is_empty());
    }

    #[test]
    fn one_client_has_a_share_and_trusted_proxies_none() {
        let sockets = sockets(100, 2);
        let a = sockets.admit(ip(1)).expect("1 of 2");
        let _b = sockets.admit(ip(1)).expect("2 of 2");
        assert!(sockets.admit(ip(1)).is_none(), "over its share");
        assert!(sockets.admit(ip(2)).is_some(), "another client");
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let through: Vec<Slot> = (0..5)
            .map(|_| sockets.admit(proxy).expect("a proxy"))
            .collect();
        drop(a);
        assert!(sockets.admit(ip(1)).is_some(), "a place given back");
        drop(through);
    }

    #[test]
    fn a_closed_socket_is_not_made_evictable_again() {
        let sockets = sockets(10, 10);
        let slot = sockets.admit(ip(1)).expect("admitted");
        let handle = slot.handle();
        handle.busy();
        drop(slot);
        handle.idle();
        assert!(lock(&sockets.book).evictable.is_empty());
    }
}
