//! What the transport panel measures: per transport, connection attempts, bytes and
//! reconnects, and the echo latency of the user's own messages.
//!
//! The figures change at very different rates — bytes with every event, latencies once per
//! message the user sends — so they reach the page as two small values: [`Counters`], `Copy`
//! and cheap to publish on every byte, and a [`LatencySnapshot`], rebuilt only when an echo
//! adds a sample.

use std::collections::VecDeque;

use protocol::{Message, Transport};

/// Echo latencies of one transport: the newest samples, and their summary.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LatencyStats {
    samples: VecDeque<f64>,
    pub count: u64,
}

impl LatencyStats {
    /// Samples kept for the median, the 95th percentile and the chart.
    pub const KEPT: usize = 100;

    pub fn record(&mut self, ms: f64) {
        if self.samples.len() == Self::KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        self.count += 1;
    }

    pub fn last(&self) -> Option<f64> {
        self.samples.back().copied()
    }

    pub fn median(&self) -> Option<f64> {
        self.percentile(50.0)
    }

    pub fn p95(&self) -> Option<f64> {
        self.percentile(95.0)
    }

    /// Nearest-rank percentile over the kept samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    pub fn samples(&self) -> impl Iterator<Item = f64> + '_ {
        self.samples.iter().copied()
    }

    /// What the panel shows of these latencies. Built after each recorded echo, not on every
    /// event, since it copies the kept samples and sorts them twice.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            count: self.count,
            last: self.last(),
            median: self.median(),
            p95: self.p95(),
            samples: self.samples().collect(),
        }
    }
}

/// One transport's latencies as the panel shows them: the row's three figures and the chart's
/// line, oldest sample first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// Echoes measured so far (including those whose samples are no longer kept).
    pub count: u64,
    pub last: Option<f64>,
    pub median: Option<f64>,
    pub p95: Option<f64>,
    pub samples: Vec<f64>,
}

/// Matches the user's own messages, as they come back from the relay, to the moment they
/// were sent.
#[derive(Debug, Default)]
pub struct EchoTracker {
    pending: VecDeque<PendingSend>,
}

#[derive(Debug)]
struct PendingSend {
    text: String,
    sent_at: f64,
    /// Known once a `POST` has answered; WebSocket sends never learn it.
    id: Option<u64>,
}

impl EchoTracker {
    /// Sends older than this are forgotten (their echo was lost or the page was asleep).
    pub const TIMEOUT_MS: f64 = 60_000.0;
    const MAX_PENDING: usize = 256;

    pub fn sent(&mut self, text: &str, now: f64) {
        if self.pending.len() == Self::MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(PendingSend {
            text: text.to_owned(),
            sent_at: now,
            id: None,
        });
    }

    /// A `POST` answered with the message's id.
    pub fn acknowledged(&mut self, text: &str, id: u64) {
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.id.is_none() && p.text == text)
        {
            p.id = Some(id);
        }
    }

    /// A message arrived; if it is the echo of one of ours, returns its latency in ms.
    pub fn echoed(&mut self, message: &Message, me: &str, now: f64) -> Option<f64> {
        self.pending.retain(|p| now - p.sent_at <= Self::TIMEOUT_MS);
        let position = self.pending.iter().position(|p| {
            p.id == Some(message.id)
                || (p.id.is_none() && message.from == me && p.text == message.text)
        })?;
        let pending = self.pending.remove(position)?;
        Some((now - pending.sent_at).max(0.0))
    }
}

/// What the transport panel shows for one transport.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportStats {
    pub transport: Transport,
    /// WebSocket/EventSource connection opens, or HTTP requests for the polls.
    pub requests: u64,
    /// Payload bytes received (message frames, event data, poll answer bodies).
    pub bytes: u64,
    pub reconnects: u64,
    pub latency: LatencyStats,
}

impl TransportStats {
    pub fn new(transport: Transport) -> TransportStats {
        TransportStats {
            transport,
            requests: 0,
            bytes: 0,
            reconnects: 0,
            latency: LatencyStats::default(),
        }
    }

    /// The figures that change with every event, as the panel's row shows them.
    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests,
            bytes: self.bytes,
            reconnects: self.reconnects,
        }
    }
}

/// A transport's event counters (see [`TransportStats`] for what each counts). `Copy`, so
/// handing a fresh one to the page on every byte event costs no allocation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub bytes: u64,
    pub reconnects: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_message as msg;

    #[test]
    fn latency_statistics_use_nearest_rank() {
        let mut stats = LatencyStats::default();
        assert_eq!(stats.median(), None);
        for ms in 1..=20 {
            stats.record(f64::from(ms));
        }
        assert_eq!(stats.last(), Some(20.0));
        assert_eq!(stats.median(), Some(10.0));
        assert_eq!(stats.p95(), Some(19.0));
        for _ in 0..LatencyStats::KEPT {
            stats.record(5.0);
        }
        assert_eq!(stats.p95(), Some(5.0), "only the newest samples count");
        assert_eq!(stats.count, 20 + LatencyStats::KEPT as u64);
    }

    #[test]
    fn a_latency_snapshot_holds_the_summary_and_the_kept_samples_in_order() {
        let mut stats = LatencyStats::default();
        assert_eq!(stats.snapshot(), LatencySnapshot::default(), "nothing yet");
        for ms in [30.0, 10.0, 20.0] {
            stats.record(ms);
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.last, Some(20.0));
        assert_eq!(snapshot.median, stats.median());
        assert_eq!(snapshot.p95, stats.p95());
        assert_eq!(snapshot.samples, [30.0, 10.0, 20.0]);
        for _ in 0..LatencyStats::KEPT {
            stats.record(1.0);
        }
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot.samples.len(),
            LatencyStats::KEPT,
            "only the kept samples"
        );
        assert_eq!(snapshot.count, 3 + LatencyStats::KEPT as u64);
    }

    #[test]
    fn counters_copy_the_event_figures() {
        let mut stats = TransportStats::new(Transport::Sse);
        assert_eq!(stats.counters(), Counters::default());
        stats.requests = 2;
        stats.bytes = 300;
        stats.reconnects = 1;
        assert_eq!(
            stats.counters(),
            Counters {
                requests: 2,
                bytes: 300,
                reconnects: 1
            }
        );
    }

    #[test]
    fn echoes_match_by_id_or_by_sender_and_text() {
        let mut echo = EchoTracker::default();
        echo.sent("hi", 100.0);
        echo.sent("hi", 150.0);
        let mut m = msg(9);
        m.from = "me".into();
        m.text = "hi".into();
        // Someone else saying the same thing is not our echo.
        let mut theirs = m.clone();
        theirs.from = "you".into();
        assert_eq!(echo.echoed(&theirs, "me", 200.0), None);
        assert_eq!(echo.echoed(&m, "me", 200.0), Some(100.0));
        // The POST answer for the second arrives first: matched by id.
        echo.acknowledged("hi", 10);
        let mut second = m.clone();
        second.id = 10;
        assert_eq!(echo.echoed(&second, "me", 400.0), Some(250.0));
        assert_eq!(echo.echoed(&second, "me", 400.0), None);
    }
}
