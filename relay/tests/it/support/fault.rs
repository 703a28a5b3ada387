//! A TCP proxy between relays and Redis that a test can break the way networks break: hold
//! every byte (a stall), add latency each way, lose one direction, or cut every connection
//! and refuse new ones (a partition). Relays are pointed at [`FaultProxy::url`] instead of at
//! Redis itself; Redis and the relays are the real programs.
//!
//! Written here rather than taken from a crate: what the tests need is a few dozen lines of
//! tokio, and the faults must be switched at exact points of a test, between observable
//! states, which a separate proxy process would make slower and harder to synchronise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which way bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From the relay to Redis: commands.
    ToRedis,
    /// From Redis to the relay: answers and announcements.
    ToRelay,
}

/// What the link does to the bytes that cross it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Passes everything.
    Healthy,
    /// Holds every byte, both ways, without closing anything; delivers them when healed, as
    /// a stalled network (or a frozen switch) would.
    Stall,
    /// Delays every byte by this much each way.
    Delay(Duration),
    /// Loses every byte going this way (the other way works). A connection that lost bytes is
    /// cut when the link heals: its stream is broken, as TCP would eventually find.
    Lose(Way),
    /// Cuts every connection and refuses new ones until healed: a partition. (A new
    /// connection is accepted and closed at once, which the relay sees as a dropped connection;
    /// a silent partition is [`Fault::Stall`].)
    Partition,
}

struct Link {
    cancel: CancellationToken,
    /// Bytes were lost on this connection: it cannot be healed, only cut.
    broken: Arc<AtomicBool>,
}

pub struct FaultProxy {
    pub port: u16,
    fault: watch::Sender<Fault>,
    links: Arc<Mutex<Vec<Link>>>,
    stop: CancellationToken,
}

impl FaultProxy {
    /// A healthy proxy on a free loopback port in front of `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (fault, _) = watch::channel(Fault::Healthy);
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let stop = CancellationToken::new();
        tokio::spawn(accept(
            listener,
            upstream,
            fault.clone(),
            links.clone(),
            stop.clone(),
        ));
        FaultProxy {
            port,
            fault,
            links,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Breaks the link as `fault` says, from now on (a partition also cuts what is open).
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
        if fault == Fault::Partition {
            self.cut_where(|_| true);
        }
    }

    /// Heals the link: held bytes flow on, and connections that lost bytes are cut.
    pub fn heal(&self) {
        self.fault.send_replace(Fault::Healthy);
        self.cut_where(|link| link.broken.load(Ordering::Acquire));
    }

    fn cut_where(&self, which: impl Fn(&Link) -> bool) {
        let mut links = self.links.lock().expect("links");
        links.retain(|link| {
            let cut = which(link);
            if cut {
                link.cancel.cancel();
            }
            !cut && !link.cancel.is_cancelled()
        });
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut_where(|_| true);
    }
}

async fn accept(
    listener: TcpListener,
    upstream: u16,
    fault: watch::Sender<Fault>,
    links: Arc<Mutex<Vec<Link>>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((relay_side, _)) = accepted else {
            continue;
        };
        if *fault.borrow() == Fault::Partition {
            // Refused: closed before a byte crosses.
            drop(relay_side);
            continue;
        }
        // Listed before connecting upstream, so that a partition starting meanwhile cuts it.
        let cancel = stop.child_token();
        let broken = Arc::new(AtomicBool::new(false));
        links.lock().expect("links").push(Link {
            cancel: cancel.clone(),
            broken: broken.clone(),
        });
        let connected = tokio::select! {
            connected = TcpStream::connect(("127.0.0.1", upstream)) => connected,
            () = cancel.cancelled() => continue,
        };
        let Ok(redis_side) = connected else {
            cancel.cancel();
            continue;
        };
        let (relay_read, relay_write) = relay_side.into_split();
        let (redis_read, redis_write) = redis_side.into_split();
        let link = |way| (way, fault.subscribe(), broken.clone(), cancel.clone());
        tokio::spawn(pump(relay_read, redis_write, link(Way::ToRedis)));
        tokio::spawn(pump(redis_read, relay_write, link(Way::ToRelay)));
    }
}

type LinkEnd = (
    Way,
    watch::Receiver<Fault>,
    Arc<AtomicBool>,
    CancellationToken,
);

/// Carries one direction of one connection: a reader stamps each chunk with when it may be
/// delivered (now, plus the delay in force), and a writer delivers chunks in order once due
/// and while the link is not stalled, dropping them while this way loses bytes. Either side
/// ending (or a cut) ends both, which closes the sockets.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    (way, fault, broken, cancel): LinkEnd,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let fault = fault.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            // Ends (dropping the queue, which lets the writer finish delivering) at the end
            // of the stream, or when the writer has gone.
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                let delay = match *fault.borrow() {
                    Fault::Delay(delay) => delay,
                    _ => Duration::ZERO,
                };
                if queue
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }
    };
    let writer = {
        let cancel = cancel.clone();
        async move {
            let mut fault = fault;
            while let Some((at, chunk)) = due.recv().await {
                tokio::time::sleep_until(at).await;
                // Copied out: the borrow must not be held across the write below.
                let waited = fault.wait_for(|fault| *fault != Fault::Stall).await;
                let Ok(now) = waited.map(|now| *now) else {
                    return;
                };
                if now == Fault::Lose(way) {
                    broken.store(true, Ordering::Release);
                    continue;
                }
                if now == Fault::Partition {
                    cancel.cancel();
                    return;
                }
                if to.write_all(&chunk).await.is_err() {
                    cancel.cancel();
                    return;
                }
            }
        }
    };
    tokio::select! {
        ((), ()) = async { tokio::join!(reader, writer) } => {}
        () = cancel.cancelled() => {}
    }
    // One direction ending ends the connection: the other direction's pump stops too, and
    // both sockets close.
    cancel.cancel();
}
