//! The reconnection schedule every link follows after losing its connection, and the relay's
//! advice it obeys.
//!
//! - The first retry after a drop waits a random delay in 0–1 s ("full jitter"): pages
//!   dropped together (a relay restart) return spread out rather than in lockstep.
//! - Later retries back off: 0.5 s doubling to 10 s, each scaled by a random factor in
//!   [0.5, 1].
//! - Advice from the relay (a `reconnect` event, the reason of close codes 1012/1013,
//!   `retry_after_ms` on a 429/503 or a drained poll) is a floor: the page waits the larger
//!   of the advice and its own delay.
//! - The schedule starts over only once a connection has stayed up for [`HEALTHY_MS`]: a
//!   relay that accepts and then drops at once (overloaded, restarting) must not be retried
//!   at the first-retry pace forever.
//! - Close code 4008 (the page read too slowly; nothing was lost) resumes at once.

/// How long a connection must stay up before the schedule starts over.
pub const HEALTHY_MS: f64 = 10_000.0;

/// Why the page is waiting, as the status line words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The connection dropped (network, relay gone, unknown).
    Lost,
    /// The relay is restarting (drain: close 1012, a `reconnect` event, a drained poll,
    /// `shutting_down`).
    Restarting,
    /// The relay is busy (close 1013, `overloaded`, `too_many_connections`).
    Busy,
    /// The relay asked this page to slow down (`rate_limited`).
    RateLimited,
    /// The relay's message bus is unreachable (`unavailable`).
    Unavailable,
}

impl Why {
    /// The status line while waiting `ms`.
    pub fn status(self, ms: u32) -> String {
        let seconds = f64::from(ms) / 1000.0;
        let when = if ms < 1000 {
            format!("{} s", super::number::tenths(seconds))
        } else {
            format!("{} s", super::number::whole(seconds))
        };
        let what = match self {
            Why::Lost => "connection lost",
            Why::Restarting => "relay restarting",
            Why::Busy => "relay busy",
            Why::RateLimited => "too many requests",
            Why::Unavailable => "relay unavailable",
        };
        format!("{what}, reconnecting in {when}")
    }
}

/// One wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub ms: u32,
    pub why: Why,
}

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    /// Retries since the last healthy connection.
    failures: u32,
    /// When the current connection was established (page clock, ms).
    connected_at: Option<f64>,
    /// The relay's latest advice, used by the next wait.
    advice: Option<(u32, Why)>,
    /// The next attempt goes at once (close 4008).
    now: bool,
}

impl Backoff {
    pub const BASE_MS: u32 = 500;
    pub const MAX_MS: u32 = 10_000;
    pub const FIRST_MAX_MS: f64 = 1000.0;

    /// A connection succeeded (a welcome, a poll answer) at `now_ms`.
    pub fn connected(&mut self, now_ms: f64) {
        if self.connected_at.is_none() {
            self.connected_at = Some(now_ms);
        }
    }

    /// The relay said when to come back, and why.
    pub fn advise(&mut self, retry_after_ms: u64, why: Why) {
        let ms = u32::try_from(retry_after_ms).unwrap_or(u32::MAX);
        self.advice = Some((ms, why));
    }

    /// The relay dropped a reader that was too slow (4008): resume at once.
    pub fn resume_now(&mut self) {
        self.now = true;
    }

    /// The connection is lost at `now_ms`: how long to wait before the next attempt.
    /// `jitter` is a random number in [0, 1).
    pub fn next_wait(&mut self, now_ms: f64, jitter: f64) -> Wait {
        if let Some(since) = self.connected_at.take()
            && now_ms - since >= HEALTHY_MS
        {
            self.failures = 0;
        }
        let jitter = jitter.clamp(0.0, 1.0);
        let own = if std::mem::take(&mut self.now) {
            0
        } else if self.failures == 0 {
            (Self::FIRST_MAX_MS * jitter).round() as u32
        } else {
            let ceiling = Self::BASE_MS
                .saturating_mul(1u32 << self.failures.min(16))
                .min(Self::MAX_MS);
            (f64::from(ceiling) * (0.5 + 0.5 * jitter)).round() as u32
        };
        self.failures = self.failures.saturating_add(1);
        match self.advice.take() {
            Some((ms, why)) if ms >= own => Wait { ms, why },
            Some((_, why)) => Wait { ms: own, why },
            None => Wait {
                ms: own,
                why: Why::Lost,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_full_jitter_within_a_second_then_it_backs_off_to_its_cap() {
        let mut backoff = Backoff::default();
        let waits: Vec<u32> = (0..8)
            .map(|_| backoff.next_wait(0.0, 0.999_999).ms)
            .collect();
        assert_eq!(
            waits,
            [1000, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        let mut backoff = Backoff::default();
        assert_eq!(
            backoff.next_wait(0.0, 0.0).ms,
            0,
            "full jitter reaches zero"
        );
        assert_eq!(
            backoff.next_wait(0.0, 0.0).ms,
            500,
            "later ones half their ceiling"
        );
    }

    #[test]
    fn the_schedule_starts_over_only_after_a_connection_stayed_up_long_enough() {
        let mut backoff = Backoff::default();
        for _ in 0..4 {
            backoff.next_wait(0.0, 0.5);
        }
        // Accepted, then dropped at once (a relay closing right after its welcome).
        backoff.connected(1_000.0);
        assert_eq!(backoff.next_wait(1_200.0, 0.999_999).ms, 8_000, "no reset");
        // Up for ten seconds: healthy, so the next drop is a first drop again.
        backoff.connected(2_000.0);
        let first = backoff.next_wait(2_000.0 + HEALTHY_MS, 0.5);
        assert_eq!(
            first,
            Wait {
                ms: 500,
                why: Why::Lost
            }
        );
    }

    #[test]
    fn advice_is_a_floor_and_says_why() {
        let mut backoff = Backoff::default();
        backoff.advise(3_000, Why::Restarting);
        assert_eq!(
            backoff.next_wait(0.0, 0.5),
            Wait {
                ms: 3_000,
                why: Why::Restarting
            }
        );
        // Used once: the next loss without advice follows the page's own schedule.
        assert_eq!(backoff.next_wait(0.0, 0.5).why, Why::Lost);
        // Advice shorter than the page's own delay does not shorten it.
        backoff.advise(10, Why::Busy);
        assert_eq!(
            backoff.next_wait(0.0, 0.999_999),
            Wait {
                ms: 2_000,
                why: Why::Busy
            }
        );
    }

    #[test]
    fn a_slow_reader_resumes_at_once_unless_told_to_wait() {
        let mut backoff = Backoff::default();
        backoff.next_wait(0.0, 0.5);
        backoff.resume_now();
        assert_eq!(backoff.next_wait(0.0, 0.999_999).ms, 0);
        assert!(backoff.next_wait(0.0, 0.999_999).ms > 0, "once");
    }

    #[test]
    fn the_status_line_says_what_it_waits_for() {
        assert_eq!(
            Why::Restarting.status(3_000),
            "relay restarting, reconnecting in 3 s"
        );
        assert_eq!(
            Why::Lost.status(420),
            "connection lost, reconnecting in 0.4 s"
        );
        assert_eq!(Why::Busy.status(12_400), "relay busy, reconnecting in 12 s");
    }
}
