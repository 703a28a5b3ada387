//! The reconnection schedule every link follows after losing its connection.

/// Reconnection delays: 0.5 s doubling to 10 s, each scaled by a random factor in [0.5, 1]
/// so that many pages dropped together (a relay restart) do not return in lockstep.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub const BASE_MS: u32 = 500;
    pub const MAX_MS: u32 = 10_000;

    /// The delay before the next attempt; `jitter` is a random number in [0, 1).
    pub fn next_delay(&mut self, jitter: f64) -> u32 {
        let ceiling = Self::BASE_MS
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(Self::MAX_MS);
        self.attempt = self.attempt.saturating_add(1);
        let scale = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        (f64::from(ceiling) * scale).round() as u32
    }

    /// Called once a connection has succeeded.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let mut backoff = Backoff::default();
        let ceilings: Vec<u32> = (0..8).map(|_| backoff.next_delay(0.999_999)).collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), 250, "jitter scales down to half");
        for _ in 0..100 {
            backoff.next_delay(0.5);
        }
        assert_eq!(
            backoff.next_delay(0.0),
            5_000,
            "capped, even after many attempts"
        );
    }
}
