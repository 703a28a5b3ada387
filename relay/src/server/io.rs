//! The socket under every connection, with the time limits no client may exceed.
//!
//! hyper bounds nothing by itself once a request is being answered, and an upgraded WebSocket
//! or a streamed SSE answer is out of its sight entirely. So the limits live on the socket,
//! where every transport — present and future — passes:
//! - **send**: a write that cannot make progress for `RELAY_SEND_TIMEOUT` (the client stopped
//!   reading) fails, which ends the connection and frees whatever it held;
//! - **idle**: a connection on which no byte has moved either way for `RELAY_IDLE_TIMEOUT` is
//!   closed (idle keep-alive connections; anything else that went silent — streams write
//!   heartbeats well within it, and a long poll is answered well within it);
//! - **head**: a request head must arrive within `RELAY_HEADER_TIMEOUT` of the relay starting
//!   to wait for it — from accept for a new connection, from its first byte on a keep-alive
//!   one — so that a client trickling a head byte by byte (slowloris) cannot hold a socket.
//!
//! One timer per connection serves all three: it is set to the earliest deadline, and moved
//! only when it fires early (activity pushed the deadline back) or a nearer deadline appears,
//! so a busy connection does not touch the timer wheel on every read and write.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::sync::lock;

/// The time limits of every connection, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct IoLimits {
    pub header: Duration,
    pub idle: Duration,
    pub send: Duration,
    /// Whether small writes go out at once (`TCP_NODELAY`).
    pub nodelay: bool,
}

/// Extra time a stalled write gets on an upgraded connection. A WebSocket enforces the send
/// limit itself, so that it can say why it closes (4008) and give its close frame a second to
/// leave; the socket's limit is the backstop behind it and must not cut that short.
const UPGRADED_SEND_GRACE: Duration = Duration::from_secs(2);

/// Where a connection is in its life, as the request handling tells it (shared with the
/// service that answers its requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head, which must be complete by this instant.
    Head(Instant),
    /// Answering `n` requests (hyper answers one at a time; pipelined ones wait).
    Busy,
    /// Between requests, waiting for the first byte of the next.
    Idle,
    /// Switched protocols (WebSocket): only the send and idle limits apply.
    Upgraded,
}

/// The phase of one connection, shared by its socket and its request handling.
#[derive(Debug)]
pub struct ConnPhase {
    phase: Mutex<Phase>,
    header: Duration,
}

impl ConnPhase {
    pub fn new(header: Duration) -> Arc<ConnPhase> {
        Arc::new(ConnPhase {
            phase: Mutex::new(Phase::Head(Instant::now() + header)),
            header,
        })
    }

    /// A complete request head arrived.
    pub fn request_started(&self) {
        *lock(&self.phase) = Phase::Busy;
    }

    /// The answer is written (its body dropped); the connection waits for the next request.
    /// `true` if it was answering (not upgraded).
    pub fn request_ended(&self) -> bool {
        let mut phase = lock(&self.phase);
        let was_busy = *phase == Phase::Busy;
        if was_busy {
            *phase = Phase::Idle;
        }
        was_busy
    }

    /// Part of the next request head is already here: its time limit runs from now.
    pub fn head_started(&self) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Idle {
            *phase = Phase::Head(Instant::now() + self.header);
        }
    }

    /// The connection switched protocols.
    pub fn upgraded(&self) {
        *lock(&self.phase) = Phase::Upgraded;
    }

    fn bytes_read(&self, now: Instant) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Idle {
            *phase = Phase::Head(now + self.header);
        }
    }

    fn is_upgraded(&self) -> bool {
        *lock(&self.phase) == Phase::Upgraded
    }

    fn head_deadline(&self) -> Option<Instant> {
        match *lock(&self.phase) {
            Phase::Head(deadline) => Some(deadline),
            _ => None,
        }
    }
}

/// A socket whose reads and writes fail once a limit of [`IoLimits`] is exceeded.
pub struct Guarded<T> {
    inner: T,
    limits: IoLimits,
    phase: Arc<ConnPhase>,
    /// Set to the earliest deadline (or later: it is moved lazily, see the module comment).
    timer: Pin<Box<Sleep>>,
    last_activity: Instant,
    /// When the current run of writes that could not proceed began.
    write_stalled_since: Option<Instant>,
    /// Bytes already read from the socket that the next reader must see first (a request
    /// head the lean path read, handed on to hyper).
    replay: Bytes,
    /// Held for as long as the socket is open (its place among the relay's sockets).
    _held: Box<dyn Send + Sync>,
}

impl<T> Guarded<T> {
    /// `held` is kept until the socket is dropped, whoever owns it by then.
    pub fn new(
        inner: T,
        limits: IoLimits,
        phase: Arc<ConnPhase>,
        held: Box<dyn Send + Sync>,
    ) -> Guarded<T> {
        let now = Instant::now();
        Guarded {
            inner,
            limits,
            phase,
            timer: Box::pin(sleep_until(now + limits.idle)),
            last_activity: now,
            write_stalled_since: None,
            replay: Bytes::new(),
            _held: held,
        }
    }

    /// The socket, what holds its place, and bytes not yet read back: for a WebSocket
    /// session, which takes the socket over after the upgrade and applies its own limits
    /// (pings, the send timeout).
    pub fn into_parts(self) -> (T, Box<dyn Send + Sync>, Bytes) {
        (self.inner, self._held, self.replay)
    }

    /// Makes `bytes` the first thing read next, before anything from the socket.
    pub fn replay(&mut self, bytes: Bytes) {
        self.replay = bytes;
    }

    /// The earliest instant at which a limit is exceeded, and which.
    fn deadline(&self) -> (Instant, &'static str) {
        let mut earliest = (self.last_activity + self.limits.idle, "idle timeout");
        if let Some(head) = self.phase.head_deadline() {
            earliest = earliest.min((head, "request head timeout"));
        }
        if let Some(since) = self.write_stalled_since {
            let mut limit = self.limits.send;
            if self.phase.is_upgraded() {
                limit += UPGRADED_SEND_GRACE;
            }
            earliest = earliest.min((since + limit, "send timeout"));
        }
        earliest
    }

    /// Called when the socket is not ready: arms the timer for the earliest deadline, or
    /// fails the operation if that deadline has passed.
    fn poll_limits(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let (deadline, what) = self.deadline();
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what));
            }
            if deadline < self.timer.deadline() || self.timer.is_elapsed() {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    this.last_activity = now;
                    this.phase.bytes_read(now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.poll_limits(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    fn wrote(
        &mut self,
        result: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                self.write_stalled_since = None;
                if n > 0 {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                self.write_stalled_since.get_or_insert_with(Instant::now);
                self.poll_limits(cx).map(Err)
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const LIMITS: IoLimits = IoLimits {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        send: Duration::from_secs(5),
        nodelay: false,
    };

    #[tokio::test(start_paused = true)]
    async fn a_head_that_does_not_arrive_in_time_fails_the_read() {
        let (client, server) = duplex(64);
        let phase = ConnPhase::new(LIMITS.header);
        let mut io = Guarded::new(server, LIMITS, phase.clone(), Box::new(()));
        let mut client = client;
        client.write_all(b"GET / HT").await.expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(io.read(&mut buf).await.expect("the first bytes"), 8);
        let err = io
            .read(&mut buf)
            .await
            .expect_err("no more bytes within the limit");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "request head timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_has_no_head_deadline_but_an_idle_one() {
        let (_client, server) = duplex(64);
        let phase = ConnPhase::new(LIMITS.header);
        phase.request_started();
        let mut io = Guarded::new(server, LIMITS, phase.clone(), Box::new(()));
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = io.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.to_string(), "idle timeout");
        assert_eq!(started.elapsed(), LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_answer_the_next_head_is_timed_from_its_first_byte() {
        let (mut client, server) = duplex(64);
        let phase = ConnPhase::new(LIMITS.header);
        phase.request_started();
        phase.request_ended();
        let mut io = Guarded::new(server, LIMITS, phase.clone(), Box::new(()));
        assert!(phase.head_deadline().is_none(), "idle between requests");
        tokio::time::advance(Duration::from_secs(30)).await;
        client.write_all(b"G").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(io.read(&mut buf).await.expect("a byte"), 1);
        let deadline = phase.head_deadline().expect("waiting for a head again");
        assert_eq!(deadline, Instant::now() + LIMITS.header);
    }

    /// How long a write to a client that never reads takes to fail, in `phase`.
    async fn stalled_write_fails_after(phase: Arc<ConnPhase>) -> Duration {
        let (_client, server) = duplex(16);
        let mut io = Guarded::new(server, LIMITS, phase, Box::new(()));
        let started = Instant::now();
        let err = io
            .write_all(&[0u8; 64])
            .await
            .expect_err("the client never reads");
        assert_eq!(err.to_string(), "send timeout");
        started.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_read_fails_after_the_send_timeout() {
        let answering = ConnPhase::new(LIMITS.header);
        answering.request_started();
        assert_eq!(stalled_write_fails_after(answering).await, LIMITS.send);
        let upgraded = ConnPhase::new(LIMITS.header);
        upgraded.upgraded();
        assert_eq!(
            stalled_write_fails_after(upgraded).await,
            LIMITS.send + UPGRADED_SEND_GRACE,
            "a WebSocket closes itself first"
        );
    }
}
