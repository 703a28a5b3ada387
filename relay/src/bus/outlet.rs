//! A streaming connection's write side, shared by its own task and the room's fan-out.
//!
//! Every byte a connection sends goes through its [`Outlet`], in order: what its task writes
//! (the welcome, history, pings, errors, the close) and, while the outlet is *lent* to the
//! room, the messages the publishing task writes directly ([`Outlet::offer`]). A direct write
//! is one non-blocking `write` of the message's pre-encoded bytes; what the socket does not
//! take is queued here and the connection's task is woken to write it when the socket is
//! writable, within its send time limit. While bytes are queued, new messages are queued
//! behind them (shared bytes, no copy) up to [`MAX_QUEUED_BYTES`]; past that, or on anything
//! unexpected, the outlet is taken back from the room and the task continues from the last
//! message queued, reading the rest from the room's queue or history like any subscriber
//! that fell behind. Nothing is lost or sent twice: the outlet's `position` is the newest id
//! the client has been given.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use protocol::Transport;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::Envelope;
use crate::event;
use crate::metrics::Metrics;
use crate::sync::lock;

/// Bytes queued behind a socket that does not keep up before the room stops writing to it
/// and its task catches up from history instead. Queued messages share the room's bytes, so
/// this bounds what the client holds up, not copies.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024;

/// Slices written with one `writev` when the task flushes its queue.
pub(super) const MAX_SLICES: usize = 64;

/// How a message is framed on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Ws,
    Sse,
    /// One JSON event per line: HTTP streaming (and WebTransport, which has no outlet).
    Ndjson,
}

static NOTHING: Bytes = Bytes::new();
static SSE_TAIL: Bytes = Bytes::from_static(event::SSE_TAIL.as_bytes());
static NEWLINE: Bytes = Bytes::from_static(b"\n");

impl Framing {
    /// Every framing, in `Framing as usize` order.
    const ALL: [Framing; 3] = [Framing::Ws, Framing::Sse, Framing::Ndjson];

    fn transport(self) -> Transport {
        match self {
            Framing::Ws => Transport::Ws,
            Framing::Sse => Transport::Sse,
            Framing::Ndjson => Transport::Stream,
        }
    }

    /// The pieces of `envelope`'s frame, written one after another (some may be empty).
    pub fn pieces(self, envelope: &Envelope) -> [&Bytes; 3] {
        match self {
            Framing::Ws => [&envelope.ws_head, &envelope.json, &NOTHING],
            Framing::Sse => [&envelope.sse_head, &envelope.json, &SSE_TAIL],
            Framing::Ndjson => [&NOTHING, &envelope.json, &NEWLINE],
        }
    }

    /// The length of `envelope`'s frame.
    fn len(self, envelope: &Envelope) -> usize {
        self.pieces(envelope).iter().map(|p| p.len()).sum()
    }
}

/// A batch of messages and its frames, encoded once per framing for the whole room: every
/// socket is written a slice of the same contiguous bytes — one plain `write`, like the
/// floor's (docs/BENCHMARKS.md) — and what a socket does not take is queued as a view of them.
pub(super) struct Encoded<'a> {
    batch: &'a [Arc<Envelope>],
    /// Per framing (`Framing as usize`): the frames, and where each message's starts (with
    /// the end as a last entry).
    frames: [Option<(Bytes, Vec<usize>)>; Framing::ALL.len()],
    /// Per framing: how many sockets were written the batch from message `i` on; counted
    /// into the metrics once per round (see [`Encoded::count_deliveries`]).
    written_from: [Vec<u64>; Framing::ALL.len()],
    metrics: Option<Arc<Metrics>>,
}

impl<'a> Encoded<'a> {
    pub(super) fn new(batch: &'a [Arc<Envelope>]) -> Encoded<'a> {
        Encoded {
            batch,
            frames: Default::default(),
            written_from: Default::default(),
            metrics: None,
        }
    }

    fn wrote(&mut self, framing: Framing, start: usize, metrics: &Arc<Metrics>) {
        let counts = &mut self.written_from[framing as usize];
        if counts.is_empty() {
            counts.resize(self.batch.len(), 0);
        }
        counts[start] += 1;
        if self.metrics.is_none() {
            self.metrics = Some(metrics.clone());
        }
    }

    /// Records the round's deliveries: message `i` reached every socket written from `i`
    /// or earlier.
    pub(super) fn count_deliveries(&self) {
        let Some(metrics) = &self.metrics else { return };
        for framing in Framing::ALL {
            let counts = &self.written_from[framing as usize];
            let reached = counts.iter().scan(0, |sum, n| {
                *sum += n;
                Some(*sum)
            });
            let each = self.batch.iter().zip(reached).map(|(m, n)| (m.ts, n));
            metrics.delivered_many(framing.transport(), each);
        }
    }

    fn frames(&mut self, framing: Framing) -> (&Bytes, &[usize]) {
        let batch = self.batch;
        let (frames, offsets) = self.frames[framing as usize].get_or_insert_with(|| {
            let total: usize = batch.iter().map(|m| framing.len(m)).sum();
            let mut frames = bytes::BytesMut::with_capacity(total);
            let mut offsets = Vec::with_capacity(batch.len() + 1);
            for message in batch {
                offsets.push(frames.len());
                for piece in framing.pieces(message) {
                    frames.extend_from_slice(piece);
                }
            }
            offsets.push(frames.len());
            (frames.freeze(), offsets)
        });
        (frames, offsets)
    }
}

/// What lending an outlet did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lend {
    /// Lent, and not in the room's list yet: add it.
    ToList,
    /// Lent, and still in the room's list.
    Listed,
    /// Not lent: the connection is gone.
    Refused,
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing is left.
    Empty,
    /// The socket is full; `wrote` says whether it took anything first.
    Blocked { wrote: bool },
}

#[derive(Debug)]
pub struct Outlet {
    state: Mutex<State>,
    /// Wakes the connection's task: bytes are queued, or the outlet was taken back.
    wake: Notify,
    framing: Framing,
    metrics: Arc<Metrics>,
}

#[derive(Debug)]
struct State {
    /// `None` once the connection ended: the socket closes with its task.
    socket: Option<Arc<TcpStream>>,
    queued: VecDeque<Bytes>,
    queued_bytes: usize,
    /// The newest message id the client was given (written or queued).
    position: u64,
    /// The room may write messages here directly.
    lent: bool,
    /// In the room's list of outlets (it leaves the list lazily, at the next message).
    listed: bool,
    /// A write failed: the connection is gone.
    failed: bool,
}

impl Outlet {
    pub fn new(socket: Arc<TcpStream>, framing: Framing, metrics: Arc<Metrics>) -> Arc<Outlet> {
        Arc::new(Outlet {
            state: Mutex::new(State {
                socket: Some(socket),
                queued: VecDeque::new(),
                queued_bytes: 0,
                position: 0,
                lent: false,
                listed: false,
                failed: false,
            }),
            wake: Notify::new(),
            framing,
            metrics,
        })
    }

    /// Lends the outlet to the room from `position` on. Called by
    /// [`super::LiveQueue::lend`] under the room's fan-out lock.
    pub(super) fn lend(&self, position: u64) -> Lend {
        let mut state = lock(&self.state);
        if state.failed || state.socket.is_none() {
            return Lend::Refused;
        }
        state.position = position;
        state.lent = true;
        if std::mem::replace(&mut state.listed, true) {
            Lend::Listed
        } else {
            Lend::ToList
        }
    }

    /// Whether the room's list should keep this outlet: only while it is lent. Called with
    /// the list's lock held; an outlet the list drops is marked as not listed.
    pub(super) fn in_use(&self) -> bool {
        let mut state = lock(&self.state);
        if !state.lent {
            state.listed = false;
        }
        state.lent
    }

    /// Takes the outlet back from the room: the task delivers from here on. Returns the
    /// newest id the client was given, for the subscription to continue after it.
    pub fn reclaim(&self) -> u64 {
        let mut state = lock(&self.state);
        state.lent = false;
        state.position
    }

    pub fn is_lent(&self) -> bool {
        lock(&self.state).lent
    }

    /// Resolves when the room queued bytes the socket did not take, or took the outlet back.
    pub fn woken(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Messages from the room, in id order: writes those the client lacks to the socket now
    /// (one `write`), or queues them. `false` when the outlet is no longer lent and leaves
    /// the room's list.
    pub(super) fn offer(&self, encoded: &mut Encoded<'_>) -> bool {
        let mut state = lock(&self.state);
        if !state.lent {
            state.listed = false;
            return false;
        }
        let position = state.position;
        let start = encoded.batch.partition_point(|m| m.id <= position);
        let batch = &encoded.batch[start..];
        let Some(last) = batch.last() else {
            return true;
        };
        let follows_on = batch[0].id == position + 1
            && batch.windows(2).all(|pair| pair[1].id == pair[0].id + 1);
        let (frames, offsets) = encoded.frames(self.framing);
        let from = offsets[start];
        let len = frames.len() - from;
        let over_budget = !state.queued.is_empty() && state.queued_bytes + len > MAX_QUEUED_BYTES;
        if !follows_on || over_budget {
            // The task takes over from `position`, reading the rest from the room.
            return self.give_back(state);
        }
        let written = if state.queued.is_empty() {
            let Some(socket) = &state.socket else {
                return self.give_back(state);
            };
            match socket.try_write(&frames[from..]) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                Err(_) => {
                    state.failed = true;
                    return self.give_back(state);
                }
            }
        } else {
            0
        };
        if written < len {
            let rest = frames.slice(from + written..);
            let was_empty = state.queued.is_empty();
            state.queued_bytes += rest.len();
            state.queued.push_back(rest);
            if was_empty {
                self.wake.notify_one();
            }
        }
        state.position = last.id;
        drop(state);
        encoded.wrote(self.framing, start, &self.metrics);
        true
    }

    /// Takes the outlet back from the room on the room's initiative (it is shutting down).
    pub(super) fn withdraw(&self) {
        let state = lock(&self.state);
        self.give_back(state);
    }

    fn give_back(&self, mut state: std::sync::MutexGuard<'_, State>) -> bool {
        state.lent = false;
        state.listed = false;
        drop(state);
        self.wake.notify_one();
        false
    }

    /// Queues bytes the task sends itself, after everything queued so far.
    pub fn push(&self, bytes: Bytes) {
        if !bytes.is_empty() {
            let mut state = lock(&self.state);
            state.queued_bytes += bytes.len();
            state.queued.push_back(bytes);
        }
    }

    /// Queues a message the task delivers itself (the outlet is not lent), and counts it.
    pub fn push_message(&self, envelope: &Envelope) {
        let mut state = lock(&self.state);
        let pieces = self.framing.pieces(envelope);
        let _ = state.queue_after(&pieces, 0);
        state.position = state.position.max(envelope.id);
        drop(state);
        self.metrics
            .delivered(self.framing.transport(), envelope.ts);
    }

    /// Writes what is queued as far as the socket takes it, without waiting.
    pub fn try_flush(&self) -> io::Result<Flushed> {
        let mut state = lock(&self.state);
        let mut wrote = false;
        loop {
            if state.queued.is_empty() {
                return Ok(Flushed::Empty);
            }
            let Some(socket) = state.socket.clone() else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slice, bytes) in slices.iter_mut().zip(&state.queued) {
                    *slice = IoSlice::new(bytes);
                    count += 1;
                }
                match socket.try_write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Flushed::Blocked { wrote });
                    }
                    Err(err) => {
                        state.failed = true;
                        return Err(err);
                    }
                }
            };
            wrote = true;
            state.consume(written);
        }
    }

    /// Waits until the socket takes some of what is queued: `Ok(true)` once nothing is left,
    /// `Ok(false)` after progress with more to write. Callers bound each call by their send
    /// time limit, so that a client is let go when it stops reading, not when it merely
    /// reads at the pace messages arrive (the queue may never be empty then).
    pub async fn write_some(&self) -> io::Result<bool> {
        loop {
            match self.try_flush()? {
                Flushed::Empty => return Ok(true),
                Flushed::Blocked { wrote: true } => return Ok(false),
                Flushed::Blocked { wrote: false } => {
                    let socket = lock(&self.state).socket.clone();
                    match socket {
                        Some(socket) => socket.writable().await?,
                        None => return Err(io::ErrorKind::NotConnected.into()),
                    }
                }
            }
        }
    }

    /// Writes everything queued, giving up when the socket takes nothing for `limit`:
    /// `Err(TimedOut)` then.
    pub async fn flush(&self, limit: Duration) -> io::Result<()> {
        loop {
            match tokio::time::timeout(limit, self.write_some()).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => {}
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(io::ErrorKind::TimedOut.into()),
            }
        }
    }

    /// Ends the connection's use of the socket: the room stops writing to it, and it closes
    /// when the task lets go of its own handle.
    pub fn close(&self) {
        let mut state = lock(&self.state);
        state.lent = false;
        state.socket = None;
        state.queued.clear();
        state.queued_bytes = 0;
    }
}

impl State {
    /// Queues the part of `pieces` after the first `skip` bytes; returns what is left of
    /// `skip` for the next pieces.
    fn queue_after(&mut self, pieces: &[&Bytes], mut skip: usize) -> usize {
        for piece in pieces {
            if skip >= piece.len() {
                skip -= piece.len();
                continue;
            }
            let rest = piece.slice(skip..);
            skip = 0;
            self.queued_bytes += rest.len();
            self.queued.push_back(rest);
        }
        skip
    }

    /// Drops the first `written` queued bytes.
    fn consume(&mut self, mut written: usize) {
        self.queued_bytes -= written;
        while written > 0 {
            let Some(front) = self.queued.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.queued.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
    }
}
