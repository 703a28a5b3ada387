//! A room's live path: the queue every subscriber reads, and the outlets the room writes to
//! directly.
//!
//! Both buses send each new message here once, in id order. Subscribers that are behind (or
//! that just joined) read it from the `broadcast` queue in their own task, as before. A
//! subscriber that is caught up instead *lends* its socket to the room ([`Outlet`]): the
//! publishing task then writes the message's pre-encoded bytes to that socket itself, with one
//! non-blocking `write` and no wake-up of the connection's task. That is the whole cost of a
//! delivery when the reader keeps up (docs/BENCHMARKS.md measures it against a program that
//! does nothing else); a socket that cannot take a message keeps the rest queued and its task
//! takes over (see `outlet.rs`).

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::broadcast;

use super::outlet::{Encoded, Lend, Outlet};
use super::{Envelope, LIVE_QUEUE, Live};
use crate::sync::lock;

/// One room's live path. Cloning gives another handle to the same queue.
#[derive(Debug, Clone)]
pub struct LiveQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: broadcast::Sender<Live>,
    /// Sockets lent to the room. A round holds this lock while it writes; a socket leaves
    /// the list when it is no longer lent (see [`Outlet::offer`]).
    outlets: Mutex<Vec<Arc<Outlet>>>,
    backlog: Mutex<Backlog>,
}

/// Messages queued for the lent sockets and not yet written, in id order.
#[derive(Debug, Default)]
struct Backlog {
    messages: Vec<Arc<Envelope>>,
    /// A round is writing; it takes what is queued here before it ends.
    running: bool,
}

/// What a subscriber keeps of the room's live path: not enough to keep it alive, so that a
/// room the bus shuts down closes its queue (and its subscribers learn of it).
#[derive(Debug, Clone)]
pub struct WeakLiveQueue {
    inner: Weak<Inner>,
}

impl WeakLiveQueue {
    /// [`LiveQueue::lend`], or `false` once the room's live path is gone.
    pub fn lend(
        &self,
        outlet: &Arc<Outlet>,
        position: u64,
        caught_up: impl FnOnce() -> bool,
    ) -> bool {
        self.inner
            .upgrade()
            .is_some_and(|inner| LiveQueue { inner }.lend(outlet, position, caught_up))
    }
}

impl Drop for Inner {
    /// The room's live path ends (the bus shut the room down): every lent outlet goes back to
    /// its task, which then finds the queue closed.
    fn drop(&mut self) {
        let outlets = self.outlets.get_mut().unwrap_or_else(|p| p.into_inner());
        for outlet in outlets.drain(..) {
            outlet.withdraw();
        }
    }
}

impl Default for LiveQueue {
    fn default() -> LiveQueue {
        LiveQueue::new()
    }
}

impl LiveQueue {
    pub fn new() -> LiveQueue {
        LiveQueue {
            inner: Arc::new(Inner {
                queue: broadcast::channel(LIVE_QUEUE).0,
                outlets: Mutex::new(Vec::new()),
                backlog: Mutex::new(Backlog::default()),
            }),
        }
    }

    pub fn downgrade(&self) -> WeakLiveQueue {
        WeakLiveQueue {
            inner: Arc::downgrade(&self.inner),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.inner.queue.subscribe()
    }

    pub fn receiver_count(&self) -> usize {
        self.inner.queue.receiver_count()
    }

    /// Queues `envelope` for the subscribers and for the lent sockets. Call it under the
    /// lock that orders the room's messages, and run the returned [`Fanout`] after releasing
    /// that lock, so that the writes hold up no reader of the room's history.
    pub fn send(&self, envelope: &Arc<Envelope>) -> Fanout {
        // Fails only when nobody is subscribed, which is fine: the message is in history.
        let _ = self.inner.queue.send(Live::new(envelope));
        let mut backlog = lock(&self.inner.backlog);
        backlog.messages.push(envelope.clone());
        if backlog.running {
            // The round under way takes it with the next batch.
            return Fanout(None);
        }
        backlog.running = true;
        Fanout(Some(self.clone()))
    }

    /// Writes the backlog to every lent socket, batch after batch, until it is empty. Only
    /// one round runs at a time (`Backlog::running`), so every socket gets the messages in
    /// id order, and messages published while a round writes go out together in the next
    /// batch: one `writev` per socket however many there are.
    fn round(&self) {
        // Should a write panic, the next message starts a new round instead of finding one
        // marked as running forever.
        struct Running<'a>(&'a Inner);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    lock(&self.0.backlog).running = false;
                }
            }
        }
        let _running = Running(&self.inner);
        loop {
            let batch = {
                let mut backlog = lock(&self.inner.backlog);
                if backlog.messages.is_empty() {
                    backlog.running = false;
                    return;
                }
                std::mem::take(&mut backlog.messages)
            };
            let mut encoded = Encoded::new(&batch);
            lock(&self.inner.outlets).retain(|outlet| outlet.offer(&mut encoded));
            encoded.count_deliveries();
        }
    }

    /// Lends `outlet` to the room from `position` on (the newest id its client has), if
    /// `caught_up` still holds once new messages are held back: it is checked under the
    /// fan-out lock, so that no message can fall between the subscriber's queue and the
    /// outlet. `false` when the subscriber must first deliver what arrived meanwhile.
    ///
    /// Never waits for a round under way (it may take milliseconds in a large room): with
    /// the lock busy, the subscriber delivers what comes itself and tries again later.
    pub fn lend(
        &self,
        outlet: &Arc<Outlet>,
        position: u64,
        caught_up: impl FnOnce() -> bool,
    ) -> bool {
        let Ok(mut outlets) = self.inner.outlets.try_lock() else {
            return false;
        };
        if !caught_up() {
            return false;
        }
        match outlet.lend(position) {
            Lend::Refused => false,
            Lend::Listed => true,
            Lend::ToList => {
                // Entries of connections gone since the room's last message leave before the
                // list grows, so that a quiet room's list stays the size of its listeners.
                if outlets.len() == outlets.capacity() {
                    outlets.retain(|o| o.in_use());
                }
                outlets.push(outlet.clone());
                true
            }
        }
    }
}

/// Rooms with at most this many lent sockets are written to by the publishing task itself,
/// at once. Larger rooms are written to by a task of their own, started after the publisher
/// yields: messages it publishes meanwhile (a client's burst, read at once) then share one
/// `writev` per socket instead of one `write` each, and the publisher is not held up.
const INLINE_OUTLETS: usize = 8;

/// A round of direct writes to start, if any (see [`LiveQueue::send`]).
#[must_use = "run it once the room's lock is released"]
pub struct Fanout(Option<LiveQueue>);

impl Fanout {
    pub fn deliver(self) {
        let Some(queue) = self.0 else { return };
        if lock(&queue.inner.outlets).len() <= INLINE_OUTLETS {
            queue.round();
        } else {
            tokio::spawn(async move { queue.round() });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use protocol::Message;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket};

    use super::*;
    use crate::bus::Framing;
    use crate::bus::outlet::MAX_SLICES;
    use crate::metrics::Metrics;

    /// A connected pair over loopback with small, explicit buffers (both the relay side's
    /// send buffer and the client's receive buffer), so that a client that does not read
    /// fills them after a few KiB, whatever the machine's defaults.
    async fn pair() -> (Arc<tokio::net::TcpStream>, tokio::net::TcpStream) {
        let listening = TcpSocket::new_v4().expect("socket");
        listening.set_send_buffer_size(4096).expect("SO_SNDBUF");
        listening
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener: TcpListener = listening.listen(1).expect("listen");
        let client = TcpSocket::new_v4().expect("socket");
        client.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let client = client
            .connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (Arc::new(server), client)
    }

    fn message(id: u64, text_bytes: usize) -> Arc<Envelope> {
        Arc::new(Envelope::new(
            Message {
                id,
                room: "r".into(),
                from: "a".into(),
                text: "x".repeat(text_bytes),
                ts: 0,
                key: None,
            },
            "e",
        ))
    }

    /// The WebSocket frames of messages `ids`, as the client must read them.
    fn frames(ids: impl IntoIterator<Item = u64>, text_bytes: usize) -> Vec<u8> {
        ids.into_iter()
            .flat_map(|id| {
                let m = message(id, text_bytes);
                [m.ws_head.to_vec(), m.json.to_vec()].concat()
            })
            .collect()
    }

    fn outlet(socket: &Arc<tokio::net::TcpStream>) -> Arc<Outlet> {
        Outlet::new(socket.clone(), Framing::Ws, Arc::new(Metrics::default()))
    }

    async fn read_exactly(client: &mut tokio::net::TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        tokio::time::timeout(Duration::from_secs(30), client.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn a_lent_socket_gets_each_message_from_the_room_in_order() {
        let (socket, mut client) = pair().await;
        let queue = LiveQueue::new();
        let outlet = outlet(&socket);
        assert!(queue.lend(&outlet, 0, || true));
        for id in 1..=3 {
            queue.send(&message(id, 10)).deliver();
        }
        let expected = frames(1..=3, 10);
        assert_eq!(read_exactly(&mut client, expected.len()).await, expected);
        assert!(outlet.is_lent());
    }

    #[tokio::test]
    async fn a_round_counts_each_message_once_per_socket_it_reached() {
        let metrics = Arc::new(Metrics::default());
        let (first, _first_client) = pair().await;
        let (second, _second_client) = pair().await;
        let queue = LiveQueue::new();
        let behind = Outlet::new(first, Framing::Ws, metrics.clone());
        let ahead = Outlet::new(second, Framing::Ws, metrics.clone());
        assert!(queue.lend(&behind, 0, || true));
        assert!(queue.lend(&ahead, 2, || true));
        let batch: Vec<_> = (1..=3).map(|id| message(id, 10)).collect();
        let mut encoded = Encoded::new(&batch);
        assert!(behind.offer(&mut encoded) && ahead.offer(&mut encoded));
        encoded.count_deliveries();
        // Messages 1 and 2 reached one socket, message 3 both.
        let text = metrics.render(crate::metrics::BusView {
            rooms: 0,
            connected: true,
            reads_shared: 0,
        });
        assert!(
            text.contains("relay_messages_delivered_total{transport=\"ws\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("relay_delivery_lag_seconds_count{transport=\"ws\"} 4\n"));
        assert!(text.contains("relay_messages_delivered_total{transport=\"sse\"} 0\n"));
    }

    #[tokio::test]
    async fn a_reader_that_stalls_is_queued_for_then_handed_back_with_nothing_lost() {
        let (socket, mut client) = pair().await;
        let queue = LiveQueue::new();
        let outlet = outlet(&socket);
        assert!(queue.lend(&outlet, 0, || true));
        // Far more than the socket's buffers and the outlet's budget hold, client not reading.
        let (count, size) = (400u64, 1000);
        for id in 1..=count {
            queue.send(&message(id, size)).deliver();
        }
        assert!(
            !outlet.is_lent(),
            "past its budget the outlet goes back to its task"
        );
        let position = outlet.reclaim();
        assert!(position > 1 && position < count, "{position}");
        // What the task does: write out the queue while the client reads.
        let expected = frames(1..=position, size);
        let reader =
            tokio::spawn(
                async move { read_exactly(&mut client, expected.len()).await == expected },
            );
        outlet
            .flush(Duration::from_secs(30))
            .await
            .expect("the client reads");
        assert!(
            reader.await.expect("reader"),
            "messages 1..=position, whole and in order"
        );
    }

    #[tokio::test]
    async fn nothing_is_written_once_the_task_takes_the_socket_back() {
        let (socket, mut client) = pair().await;
        let queue = LiveQueue::new();
        let outlet = outlet(&socket);
        assert!(queue.lend(&outlet, 0, || true));
        queue.send(&message(1, 10)).deliver();
        // The task is about to send its last frame (a close): the room must stop first.
        assert_eq!(outlet.reclaim(), 1);
        queue.send(&message(2, 10)).deliver();
        outlet.push(Bytes::from_static(b"last"));
        outlet
            .flush(Duration::from_secs(30))
            .await
            .expect("written");
        outlet.close();
        drop((socket, queue));
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut got))
            .await
            .expect("the socket closes")
            .expect("read");
        assert_eq!(got, [frames([1], 10), b"last".to_vec()].concat());
    }

    #[tokio::test]
    async fn a_large_room_is_written_by_a_round_of_its_own_in_batches() {
        // More sockets than are written inline, and a batch of many messages: every client
        // still gets every frame, in order.
        let queue = LiveQueue::new();
        let mut clients = Vec::new();
        let mut outlets = Vec::new();
        for _ in 0..INLINE_OUTLETS + 2 {
            let (socket, client) = pair().await;
            let outlet = outlet(&socket);
            assert!(queue.lend(&outlet, 0, || true));
            clients.push(client);
            outlets.push((socket, outlet));
        }
        let count = 3 * MAX_SLICES as u64;
        // Queued while a round is pending: one batch.
        let first = queue.send(&message(1, 10));
        for id in 2..=count {
            assert!(
                queue.send(&message(id, 10)).0.is_none(),
                "joins the pending round"
            );
        }
        first.deliver();
        // The round runs in a task of its own: wait until it is done (observable state).
        tokio::time::timeout(Duration::from_secs(30), async {
            while lock(&queue.inner.backlog).running {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the round ends");
        let expected = frames(1..=count, 10);
        for (mut client, (_socket, outlet)) in clients.into_iter().zip(outlets) {
            let len = expected.len();
            let reader = tokio::spawn(async move { read_exactly(&mut client, len).await });
            // What the socket did not take at once, the task writes.
            outlet
                .flush(Duration::from_secs(30))
                .await
                .expect("written");
            assert_eq!(reader.await.expect("reader"), expected);
        }
    }

    #[tokio::test]
    async fn a_gap_or_the_end_of_the_room_hands_the_socket_back() {
        let (socket, _client) = pair().await;
        let queue = LiveQueue::new();
        let outlet = outlet(&socket);
        assert!(queue.lend(&outlet, 5, || true));
        queue.send(&message(7, 10)).deliver();
        assert!(!outlet.is_lent(), "message 6 is missing");
        assert_eq!(outlet.reclaim(), 5, "nothing was given");

        let queue = LiveQueue::new();
        assert!(queue.lend(&outlet, 5, || true));
        assert!(outlet.is_lent());
        let woken = outlet.woken();
        drop(queue);
        assert!(!outlet.is_lent(), "the room's live path ended");
        tokio::time::timeout(Duration::from_secs(30), woken)
            .await
            .expect("the task is woken");
    }

    #[tokio::test]
    async fn lending_waits_until_the_subscriber_is_caught_up() {
        let (socket, _client) = pair().await;
        let queue = LiveQueue::new();
        let outlet = outlet(&socket);
        assert!(!queue.lend(&outlet, 0, || false));
        assert!(!outlet.is_lent());
    }
}
