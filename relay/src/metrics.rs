//! Operational metrics, served at `GET /metrics` in the Prometheus text format.
//!
//! A handful of atomic counters and one histogram do not justify a metrics library: recording
//! is a relaxed atomic add on the delivery path, and rendering walks fixed arrays. Series:
//! - `relay_sockets`: open TCP connections on the public port, whatever they carry;
//! - `relay_connections{transport}`: open WebSockets, SSE streams and pending long polls;
//! - `relay_messages_published_total{via}`: accepted messages, by `ws` or `http` (POST);
//! - `relay_messages_delivered_total{transport}`: messages written to clients;
//! - `relay_delivery_lag_seconds{transport}`: publish-to-write time of each delivery (history
//!   replays count too, and land in the upper buckets);
//! - `relay_rejected_total{reason}`: refused requests and frames, by error code or close reason;
//! - `relay_rooms`: rooms the bus holds;
//! - `relay_bus_connected`: whether the bus is live;
//! - `relay_bus_reads_shared_total`: history reads answered by an identical read already in
//!   flight (Redis; see `bus::redis::flights`);
//! - `relay_presence_members`, `relay_presence_rooms`: members present through this relay,
//!   and rooms it tracks presence for (no per-room labels: rooms are unbounded);
//! - `relay_presence_batches_total`: presence and typing batches sent to rooms;
//! - `relay_presence_redis_calls_total`: calls to Redis for presence (what it costs Redis);
//! - `relay_typing_total{outcome}`: typing signals `sent`, or `dropped` (too soon after the
//!   sender's previous one, or not from a member).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use protocol::{ErrorCode, Transport};

use crate::clock::unix_millis;

/// Upper bounds of the lag histogram, in seconds: from a loopback WebSocket (sub-millisecond)
/// to a short poll with a long interval.
const LAG_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the bus reports into `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusView {
    /// Rooms the bus holds (with Redis: follows).
    pub rooms: usize,
    /// Always, in memory; with Redis, whether the relay is subscribed to it.
    pub connected: bool,
    /// History reads answered by an identical read in flight.
    pub reads_shared: u64,
}

/// How a message reached the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Ws,
    Http,
    /// A WebTransport session's stream.
    Wt,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    buckets: [AtomicU64; LAG_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records `n` observations of `seconds` at once.
    fn observe(&self, seconds: f64, n: u64) {
        let index = LAG_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LAG_BUCKETS.len());
        self.buckets[index].fetch_add(n, Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6).max(0.0) as u64 * n, Relaxed);
        self.count.fetch_add(n, Relaxed);
    }
}

/// Refusal reasons that are not error codes: why a WebSocket was closed.
pub mod reason {
    pub const BINARY_FRAME: &str = "binary_frame";
    pub const FRAME_TOO_LARGE: &str = "frame_too_large";
    pub const SLOW_CONSUMER: &str = "slow_consumer";
    pub const PING_TIMEOUT: &str = "ping_timeout";
    /// A socket arrived at `RELAY_MAX_SOCKETS`: the one waiting longest for a request head
    /// (or, if none, the new one) was closed.
    pub const SOCKETS_FULL: &str = "sockets_full";
    /// A socket from a peer at `RELAY_MAX_SOCKETS_PER_CLIENT` was closed at once.
    pub const CLIENT_SOCKETS_FULL: &str = "client_sockets_full";
    /// A QUIC connection arrived with `RELAY_MAX_CONNECTIONS` open (or during shutdown): it
    /// was refused before its handshake.
    pub const WEBTRANSPORT_FULL: &str = "webtransport_full";
    pub const ALL: [&str; 7] = [
        BINARY_FRAME,
        FRAME_TOO_LARGE,
        SLOW_CONSUMER,
        PING_TIMEOUT,
        SOCKETS_FULL,
        CLIENT_SOCKETS_FULL,
        WEBTRANSPORT_FULL,
    ];
}

#[derive(Debug)]
pub struct Metrics {
    /// Open TCP connections on the public port, whatever they carry.
    sockets: AtomicI64,
    connections: [AtomicI64; TRANSPORTS],
    published: [AtomicU64; 3],
    delivered: [AtomicU64; TRANSPORTS],
    lag: [Histogram; TRANSPORTS],
    /// Keyed by static reason names; refusals are rare enough for a mutex.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    presence_members: AtomicI64,
    presence_rooms: AtomicI64,
    presence_batches: AtomicU64,
    presence_redis_calls: AtomicU64,
    /// Sent, dropped.
    typing: [AtomicU64; 2],
}

impl Default for Metrics {
    /// Every refusal reason starts at zero: a series that appears only with the first
    /// refusal makes `rate()` and alerts in Prometheus miss that first one.
    fn default() -> Metrics {
        let reasons = ErrorCode::ALL
            .map(ErrorCode::as_str)
            .into_iter()
            .chain(reason::ALL)
            .map(|reason| (reason, 0))
            .collect();
        Metrics {
            sockets: AtomicI64::new(0),
            connections: Default::default(),
            published: Default::default(),
            delivered: Default::default(),
            lag: Default::default(),
            rejected: Mutex::new(reasons),
            presence_members: AtomicI64::new(0),
            presence_rooms: AtomicI64::new(0),
            presence_batches: AtomicU64::new(0),
            presence_redis_calls: AtomicU64::new(0),
            typing: Default::default(),
        }
    }
}

/// One slot per transport, so that a new transport needs no change here.
const TRANSPORTS: usize = Transport::ALL.len();

fn slot(transport: Transport) -> usize {
    transport.index()
}

impl Metrics {
    /// What a presence tick found: members present, rooms tracked.
    pub fn presence(&self, members: usize, rooms: usize) {
        self.presence_members.store(members as i64, Relaxed);
        self.presence_rooms.store(rooms as i64, Relaxed);
    }

    /// Batches of presence and typing events sent to rooms' streams and pollers.
    pub fn presence_sent(&self, batches: u64) {
        self.presence_batches.fetch_add(batches, Relaxed);
    }

    /// Calls to Redis for presence (a tick's per room, and list loads).
    pub fn presence_calls(&self, calls: u64) {
        self.presence_redis_calls.fetch_add(calls, Relaxed);
    }

    pub fn typing(&self, sent: bool) {
        self.typing[usize::from(!sent)].fetch_add(1, Relaxed);
    }

    pub fn socket_opened(&self) {
        self.sockets.fetch_add(1, Relaxed);
    }

    pub fn socket_closed(&self) {
        self.sockets.fetch_sub(1, Relaxed);
    }

    pub fn connection_opened(&self, transport: Transport) {
        self.connections[slot(transport)].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self, transport: Transport) {
        self.connections[slot(transport)].fetch_sub(1, Relaxed);
    }

    pub fn published(&self, via: Via) {
        self.published[via as usize].fetch_add(1, Relaxed);
    }

    /// One message written to a client; `published_ms` is its `ts`.
    pub fn delivered(&self, transport: Transport, published_ms: u64) {
        self.delivered_many(transport, [(published_ms, 1)]);
    }

    /// Deliveries in bulk: `n` of the message published at `published_ms`, for each pair.
    /// The clock is read once, and the shared counters are added to once per message rather
    /// than once per delivery: a round that writes a message to a thousand sockets, or a
    /// long poll's answer, would otherwise contend on them from every worker.
    pub fn delivered_many(
        &self,
        transport: Transport,
        deliveries: impl IntoIterator<Item = (u64, u64)>,
    ) {
        let now = unix_millis();
        let mut total = 0;
        for (published_ms, n) in deliveries {
            if n > 0 {
                let lag_ms = now.saturating_sub(published_ms);
                self.lag[slot(transport)].observe(lag_ms as f64 / 1000.0, n);
                total += n;
            }
        }
        self.delivered[slot(transport)].fetch_add(total, Relaxed);
    }

    /// Refusals so far, by reason.
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn rejected(&self, reason: &'static str) {
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self, bus: BusView) -> String {
        let mut out = String::with_capacity(4096);
        let transports = Transport::ALL.map(|t| (t, slot(t)));

        out.push_str("# HELP relay_sockets Open TCP connections on the public port.\n");
        out.push_str("# TYPE relay_sockets gauge\n");
        let _ = writeln!(out, "relay_sockets {}", self.sockets.load(Relaxed));

        out.push_str(
            "# HELP relay_connections Open WebSockets, SSE streams and pending long polls.\n",
        );
        out.push_str("# TYPE relay_connections gauge\n");
        for (t, i) in transports {
            let value = self.connections[i].load(Relaxed);
            let _ = writeln!(
                out,
                "relay_connections{{transport=\"{}\"}} {value}",
                t.as_str()
            );
        }

        out.push_str(
            "# HELP relay_messages_published_total Messages accepted, by how they arrived.\n",
        );
        out.push_str("# TYPE relay_messages_published_total counter\n");
        for (via, name) in [
            (Via::Ws, "ws"),
            (Via::Http, "http"),
            (Via::Wt, "webtransport"),
        ] {
            let value = self.published[via as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "relay_messages_published_total{{via=\"{name}\"}} {value}"
            );
        }

        out.push_str("# HELP relay_messages_delivered_total Messages written to clients.\n");
        out.push_str("# TYPE relay_messages_delivered_total counter\n");
        for (t, i) in transports {
            let value = self.delivered[i].load(Relaxed);
            let _ = writeln!(
                out,
                "relay_messages_delivered_total{{transport=\"{}\"}} {value}",
                t.as_str()
            );
        }

        out.push_str("# HELP relay_delivery_lag_seconds Time from a message's publication to its delivery.\n");
        out.push_str("# TYPE relay_delivery_lag_seconds histogram\n");
        for (t, i) in transports {
            let histogram = &self.lag[i];
            let mut cumulative = 0;
            for (bound, bucket) in LAG_BUCKETS.iter().zip(&histogram.buckets) {
                cumulative += bucket.load(Relaxed);
                let _ = writeln!(
                    out,
                    "relay_delivery_lag_seconds_bucket{{transport=\"{}\",le=\"{bound}\"}} {cumulative}",
                    t.as_str()
                );
            }
            cumulative += histogram.buckets[LAG_BUCKETS.len()].load(Relaxed);
            let name = t.as_str();
            let sum = histogram.sum_micros.load(Relaxed) as f64 / 1e6;
            let count = histogram.count.load(Relaxed);
            let _ = writeln!(
                out,
                "relay_delivery_lag_seconds_bucket{{transport=\"{name}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "relay_delivery_lag_seconds_sum{{transport=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "relay_delivery_lag_seconds_count{{transport=\"{name}\"}} {count}"
            );
        }

        out.push_str("# HELP relay_rejected_total Refused requests and frames, by reason.\n");
        out.push_str("# TYPE relay_rejected_total counter\n");
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        for (reason, value) in rejected.iter() {
            let _ = writeln!(out, "relay_rejected_total{{reason=\"{reason}\"}} {value}");
        }
        drop(rejected);

        out.push_str("# HELP relay_rooms Rooms held by the message bus (with Redis: followed by this relay).\n");
        out.push_str("# TYPE relay_rooms gauge\n");
        let _ = writeln!(out, "relay_rooms {}", bus.rooms);
        out.push_str(
            "# HELP relay_bus_connected 1 while the message bus is reachable (Redis subscribed).\n",
        );
        out.push_str("# TYPE relay_bus_connected gauge\n");
        let _ = writeln!(out, "relay_bus_connected {}", u8::from(bus.connected));
        out.push_str("# HELP relay_bus_reads_shared_total History reads answered by an identical read in flight.\n");
        out.push_str("# TYPE relay_bus_reads_shared_total counter\n");
        let _ = writeln!(out, "relay_bus_reads_shared_total {}", bus.reads_shared);

        out.push_str("# HELP relay_presence_members Room members present through this relay.\n");
        out.push_str("# TYPE relay_presence_members gauge\n");
        let _ = writeln!(
            out,
            "relay_presence_members {}",
            self.presence_members.load(Relaxed)
        );
        out.push_str("# HELP relay_presence_rooms Rooms this relay tracks presence for.\n");
        out.push_str("# TYPE relay_presence_rooms gauge\n");
        let _ = writeln!(
            out,
            "relay_presence_rooms {}",
            self.presence_rooms.load(Relaxed)
        );
        out.push_str(
            "# HELP relay_presence_batches_total Presence and typing batches sent to rooms.\n",
        );
        out.push_str("# TYPE relay_presence_batches_total counter\n");
        let _ = writeln!(
            out,
            "relay_presence_batches_total {}",
            self.presence_batches.load(Relaxed)
        );
        out.push_str("# HELP relay_presence_redis_calls_total Calls to Redis for presence.\n");
        out.push_str("# TYPE relay_presence_redis_calls_total counter\n");
        let _ = writeln!(
            out,
            "relay_presence_redis_calls_total {}",
            self.presence_redis_calls.load(Relaxed)
        );
        out.push_str("# HELP relay_typing_total Typing signals, sent or dropped.\n");
        out.push_str("# TYPE relay_typing_total counter\n");
        for (i, outcome) in ["sent", "dropped"].into_iter().enumerate() {
            let value = self.typing[i].load(Relaxed);
            let _ = writeln!(out, "relay_typing_total{{outcome=\"{outcome}\"}} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_in_bulk_count_each_one() {
        let metrics = Metrics::default();
        let old = unix_millis().saturating_sub(60_000);
        metrics.delivered_many(Transport::Sse, [(unix_millis(), 3), (old, 2), (old, 0)]);
        let text = metrics.render(BusView {
            rooms: 0,
            connected: true,
            reads_shared: 0,
        });
        assert!(text.contains("relay_messages_delivered_total{transport=\"sse\"} 5\n"));
        assert!(
            text.contains("relay_delivery_lag_seconds_bucket{transport=\"sse\",le=\"10\"} 3\n")
        );
        assert!(
            text.contains("relay_delivery_lag_seconds_bucket{transport=\"sse\",le=\"+Inf\"} 5\n")
        );
        assert!(text.contains("relay_delivery_lag_seconds_count{transport=\"sse\"} 5\n"));
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("relay_delivery_lag_seconds_sum{transport=\"sse\"} "))
            .and_then(|v| v.parse().ok())
            .expect("a sum");
        assert!(
            (120.0..130.0).contains(&sum),
            "two deliveries a minute late: {sum}"
        );
    }

    #[test]
    fn render_has_every_series_with_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.connection_opened(Transport::Sse);
        metrics.published(Via::Http);
        metrics.delivered(Transport::Ws, unix_millis());
        metrics.delivered(Transport::Ws, unix_millis().saturating_sub(60_000));
        metrics.rejected("rate_limited");
        let text = metrics.render(BusView {
            rooms: 3,
            connected: true,
            reads_shared: 0,
        });
        assert!(text.contains("relay_connections{transport=\"sse\"} 1\n"));
        assert!(text.contains("relay_messages_published_total{via=\"http\"} 1\n"));
        assert!(text.contains("relay_messages_delivered_total{transport=\"ws\"} 2\n"));
        assert!(text.contains("relay_delivery_lag_seconds_bucket{transport=\"ws\",le=\"10\"} 1\n"));
        assert!(
            text.contains("relay_delivery_lag_seconds_bucket{transport=\"ws\",le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("relay_delivery_lag_seconds_count{transport=\"ws\"} 2\n"));
        assert!(text.contains("relay_rejected_total{reason=\"rate_limited\"} 1\n"));
        assert!(text.contains("relay_rejected_total{reason=\"invalid_host\"} 0\n"));
        assert!(text.contains("relay_rejected_total{reason=\"slow_consumer\"} 0\n"));
        assert!(text.contains("relay_rooms 3\n"));
        assert!(text.contains("relay_bus_connected 1\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
