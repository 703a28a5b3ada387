//! Send-rate limits: a token bucket per WebSocket connection, and per client address for
//! `POST` (plain HTTP has no lasting connection to hang a bucket on).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sustained rate and burst, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// A classic token bucket: `burst` tokens, refilled at `per_second`, one token per message.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: limit.burst,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / self.limit.per_second))
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        self.updated = now;
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.limit.burst
    }
}

/// Most client addresses tracked at once. A full bucket carries no information, so when the
/// table reaches this size the full ones are swept; if every entry is still busy, the table is
/// cleared rather than grown, trading a brief leniency for a hard memory bound (about 64 bytes
/// an entry).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// One bucket per client IP address, for `POST` publishing.
#[derive(Debug)]
pub struct AddressLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl AddressLimiter {
    pub fn new(limit: RateLimit) -> AddressLimiter {
        AddressLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn take(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update of a counter; the
        // table is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&addr) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                buckets.clear();
            }
        }
        buckets
            .entry(addr)
            .or_insert_with(|| TokenBucket::new(self.limit, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 2.0,
        burst: 3.0,
    };

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(LIMIT, start);
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).expect_err("burst exhausted");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn bucket_never_exceeds_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(LIMIT, start);
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn addresses_have_separate_buckets() {
        let limiter = AddressLimiter::new(LIMIT);
        let now = Instant::now();
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        for _ in 0..3 {
            assert!(limiter.take(a, now).is_ok());
        }
        assert!(limiter.take(a, now).is_err());
        assert!(limiter.take(b, now).is_ok());
    }
}
