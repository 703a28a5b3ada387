//! Rate limits: the token bucket, and a table of buckets per client for the budgets that
//! are per client (publishing, requests, new rooms; see `budget`).

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::sync::lock;

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
        self.check(now)?;
        self.tokens -= 1.0;
        Ok(())
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(self.limit.burst);
        self.updated = now;
    }

    /// Like [`TokenBucket::take`], without taking.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            // A tiny rate (validated positive, but possibly 1e-300) must not overflow.
            Err(Duration::try_from_secs_f64(missing / self.limit.per_second)
                .unwrap_or(Duration::MAX))
        }
    }
}

/// Most clients tracked by one limiter. When the table is full, the least recently seen
/// client's bucket is dropped: that client starts again with a full bucket, a brief leniency
/// for someone idle, in exchange for a hard memory bound (about 100 bytes an entry) that an
/// attacker rotating addresses cannot grow — and cannot use to reset anyone active, who is
/// recently seen by definition.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// One token bucket per key (a client), least recently used evicted at capacity.
#[derive(Debug)]
pub struct KeyedLimiter<K: Hash + Eq> {
    limit: RateLimit,
    buckets: Mutex<LruCache<K, TokenBucket>>,
}

impl<K: Hash + Eq + Copy> KeyedLimiter<K> {
    pub fn new(limit: RateLimit) -> KeyedLimiter<K> {
        KeyedLimiter::with_capacity(limit, MAX_TRACKED_CLIENTS)
    }

    pub fn with_capacity(limit: RateLimit, capacity: usize) -> KeyedLimiter<K> {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        KeyedLimiter {
            limit,
            buckets: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Takes one token from `key`'s bucket, or says how long until one is available.
    pub fn take(&self, key: K, now: Instant) -> Result<(), Duration> {
        lock(&self.buckets)
            .get_or_insert_mut(key, || TokenBucket::new(self.limit, now))
            .take(now)
    }

    /// Whether `key` has a token, without taking it.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = lock(&self.buckets);
        match buckets.get_mut(&key) {
            Some(bucket) => bucket.check(now),
            None => Ok(()),
        }
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
    fn keys_have_separate_buckets() {
        let limiter = KeyedLimiter::new(LIMIT);
        let now = Instant::now();
        let (a, b) = (1, 2);
        for _ in 0..3 {
            assert!(limiter.take(a, now).is_ok());
        }
        assert!(limiter.take(a, now).is_err());
        assert!(limiter.take(b, now).is_ok());
        assert!(limiter.check(a, now).is_err(), "checking does not refill");
        assert!(limiter.check(b, now).is_ok());
    }

    #[test]
    fn a_full_table_forgets_the_least_recently_seen_client_only() {
        let limiter = KeyedLimiter::with_capacity(LIMIT, 2);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(1, now).is_ok());
        }
        assert!(limiter.take(1, now).is_err(), "client 1 is out of tokens");
        // A stream of new clients pushes out whoever was seen least recently...
        assert!(limiter.take(2, now).is_ok());
        assert!(
            limiter.take(1, now).is_err(),
            "client 1 was seen last: still limited"
        );
        assert!(
            limiter.take(3, now).is_ok(),
            "evicts client 2, not client 1"
        );
        assert!(
            limiter.take(1, now).is_err(),
            "the active client is never reset"
        );
    }
}
