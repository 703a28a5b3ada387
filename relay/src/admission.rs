//! Admission: how many new streams (WebSocket, SSE; resumes included) the relay opens per
//! second, `RELAY_ACCEPT_RATE`, with a burst of one second's worth.
//!
//! Opening a stream is the expensive moment of a connection (a handshake, a subscription, a
//! history read, with Redis a round trip); after a relay restart, every client of that relay
//! arrives at the others at once. Over the rate, a client is refused with the time to come
//! back — and refused clients are told *different* times: each refusal reserves the next free
//! slot at the admission rate, so that a crowd refused together returns spread out at the
//! rate the relay admits, instead of all together at the next refill. Reservations reach at
//! most [`HORIZON`] ahead: clients that do not come back cannot push the others out forever.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rate::{RateLimit, TokenBucket};
use crate::sync::lock;

/// Furthest ahead a refused client is told to come back.
pub const HORIZON: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
    /// Time between two admissions at the rate.
    interval: Duration,
}

#[derive(Debug)]
struct State {
    bucket: TokenBucket,
    /// The latest slot promised to a refused client.
    promised: Instant,
}

impl Admission {
    /// `per_second` new streams a second, and as many at once.
    pub fn new(per_second: f64, now: Instant) -> Admission {
        let limit = RateLimit {
            per_second,
            burst: per_second.max(1.0),
        };
        Admission {
            state: Mutex::new(State {
                bucket: TokenBucket::new(limit, now),
                promised: now,
            }),
            interval: Duration::try_from_secs_f64(1.0 / per_second).unwrap_or(HORIZON),
        }
    }

    /// Admits one new stream, or says when its client should come back.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut state = lock(&self.state);
        let Err(refill) = state.bucket.take(now) else {
            return Ok(());
        };
        // Each addend is at most the horizon, so that a tiny rate cannot overflow `Instant`.
        let horizon = now + HORIZON;
        let next = (state.promised.clamp(now, horizon) + self.interval.min(HORIZON))
            .max(now + refill.min(HORIZON))
            .min(horizon);
        state.promised = next;
        Err(next - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_refusals_are_told_successive_slots() {
        let now = Instant::now();
        let admission = Admission::new(10.0, now);
        for _ in 0..10 {
            assert_eq!(admission.admit(now), Ok(()), "a second's worth at once");
        }
        let waits: Vec<Duration> = (0..4)
            .map(|_| admission.admit(now).expect_err("refused"))
            .collect();
        assert_eq!(
            waits,
            [100, 200, 300, 400].map(Duration::from_millis),
            "each refused client gets its own slot at the rate"
        );
        // The first comes back on time and finds the token the refill made.
        let later = now + Duration::from_millis(100);
        assert_eq!(admission.admit(later), Ok(()));
    }

    #[test]
    fn promises_reach_no_further_than_the_horizon() {
        let now = Instant::now();
        let admission = Admission::new(1.0, now);
        assert_eq!(admission.admit(now), Ok(()));
        let last = (0..100)
            .map(|_| admission.admit(now).expect_err("refused"))
            .last();
        assert_eq!(last, Some(HORIZON));
    }

    #[test]
    fn a_vanishingly_small_rate_refuses_without_overflowing() {
        let now = Instant::now();
        let admission = Admission::new(f64::MIN_POSITIVE, now);
        assert_eq!(admission.admit(now), Ok(()), "the burst is one");
        assert_eq!(admission.admit(now), Err(HORIZON));
        assert_eq!(admission.admit(now), Err(HORIZON));
    }

    #[test]
    fn promises_made_long_ago_do_not_delay_anyone_now() {
        let now = Instant::now();
        let admission = Admission::new(2.0, now);
        for _ in 0..2 {
            assert_eq!(admission.admit(now), Ok(()));
        }
        assert_eq!(admission.admit(now), Err(Duration::from_millis(500)));
        // Nobody came back; a minute later the bucket is full again.
        let later = now + Duration::from_secs(60);
        for _ in 0..2 {
            assert_eq!(admission.admit(later), Ok(()));
        }
        assert_eq!(admission.admit(later), Err(Duration::from_millis(500)));
    }
}
