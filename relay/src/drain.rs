//! The paced drain: on SIGTERM, open streams are closed one after another over
//! `RELAY_DRAIN_WINDOW` instead of all at once, and each client is told when to come back.
//!
//! Closing every connection together sends every client to the remaining relays (and to
//! Redis, with a history read each) in the same instant. Here the streams open when the
//! drain starts take turns: the k-th of n closes at `k/n` of the window, so closes are spread
//! evenly whatever the order in which the streams notice. Each is told to wait a random
//! delay of up to one window before coming back ([`RetryAdvice`]): returns spread over
//! the window again, and clients closed together do not return together. Until its turn, a
//! stream keeps delivering.
//!
//! Streams opened after the drain began are refused (`shutting_down`), and a stream that
//! asks for its turn after every planned turn was taken closes at the window's end.

use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use protocol::RetryAdvice;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;

/// The relay's drain plan, shared by every stream.
#[derive(Debug)]
pub struct Drain {
    window: Duration,
    shutdown: CancellationToken,
    /// When the drain started and how many streams were open then; fixed by the first
    /// stream to ask for its turn.
    plan: OnceLock<(Instant, usize)>,
    /// Turns handed out so far.
    taken: AtomicUsize,
}

/// One stream's turn: when to close, and what to tell its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    pub at: Instant,
    pub advice: RetryAdvice,
}

impl Drain {
    pub fn new(window: Duration, shutdown: CancellationToken) -> Drain {
        Drain {
            window,
            shutdown,
            plan: OnceLock::new(),
            taken: AtomicUsize::new(0),
        }
    }

    /// Takes the next turn. `open` counts the streams open now; it is asked once, by the
    /// first caller, when the drain starts. `jitter` is a random number in [0, 1).
    pub fn turn(&self, open: impl FnOnce() -> usize, jitter: f64) -> Turn {
        let (start, planned) = *self.plan.get_or_init(|| (Instant::now(), open().max(1)));
        let k = self.taken.fetch_add(1, Relaxed).min(planned);
        let at = start + self.window.mul_f64(k as f64 / planned as f64);
        let retry_after_ms = (self.window.as_millis() as f64 * jitter.clamp(0.0, 1.0)) as u64;
        Turn {
            at,
            advice: RetryAdvice { retry_after_ms },
        }
    }

    /// The advice for a client refused or answered during the drain without a turn of its
    /// own (a new request while the relay stops): come back within a window.
    pub fn advice(&self, jitter: f64) -> RetryAdvice {
        RetryAdvice {
            retry_after_ms: (self.window.as_millis() as f64 * jitter.clamp(0.0, 1.0)) as u64,
        }
    }
}

/// A stream's view of the drain: [`Closing::due`] is pending until the drain starts, then
/// until the stream's turn, and returns the advice for its client. Cancel-safe, so that it
/// can be one branch of a stream's `select!` loop: the turn is taken once and kept.
#[derive(Debug, Default)]
pub struct Closing {
    turn: Option<(Pin<Box<Sleep>>, RetryAdvice)>,
}

impl Closing {
    pub async fn due(
        &mut self,
        drain: &Drain,
        open: impl FnOnce() -> usize,
        jitter: impl FnOnce() -> f64,
    ) -> RetryAdvice {
        if self.turn.is_none() {
            drain.shutdown.cancelled().await;
            let turn = drain.turn(open, jitter());
            self.turn = Some((Box::pin(sleep_until(turn.at)), turn.advice));
        }
        let Some((sleep, advice)) = &mut self.turn else {
            unreachable!("set above")
        };
        sleep.as_mut().await;
        *advice
    }
}

/// A random number in [0, 1) for jitter, from the standard library's randomly seeded hasher:
/// spreading reconnects needs no cryptographic randomness, and this needs no dependency.
/// (Each `RandomState` has keys of its own, so each draw hashes under different keys.)
pub fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_spread_evenly_over_the_window_and_late_askers_close_at_its_end() {
        let shutdown = CancellationToken::new();
        let drain = Drain::new(Duration::from_secs(4), shutdown.clone());
        shutdown.cancel();
        let start = Instant::now();
        let offsets: Vec<Duration> = (0..6).map(|_| drain.turn(|| 4, 0.5).at - start).collect();
        assert_eq!(
            offsets,
            [0, 1, 2, 3, 4, 4].map(Duration::from_secs),
            "the k-th of 4 at k/4 of the window; more than planned at its end"
        );
        assert_eq!(drain.turn(|| 99, 0.5).advice.retry_after_ms, 2000);
    }

    #[test]
    fn advice_stays_within_the_window() {
        let drain = Drain::new(Duration::from_secs(3), CancellationToken::new());
        assert_eq!(drain.advice(0.0).retry_after_ms, 0);
        assert_eq!(drain.advice(0.999_999).retry_after_ms, 2999);
        assert_eq!(drain.advice(7.0).retry_after_ms, 3000, "clamped");
    }

    #[test]
    fn jitter_is_in_the_unit_interval_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|j| j.to_bits()).collect();
        assert!(distinct.len() > 32, "{distinct:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_waits_for_the_drain_then_for_its_turn_and_survives_cancellation() {
        let shutdown = CancellationToken::new();
        let drain = Drain::new(Duration::from_secs(10), shutdown.clone());
        // Another stream took turn 0 of 2: this one's is at 5 s.
        let mut closing = Closing::default();
        let early =
            tokio::time::timeout(Duration::from_secs(60), closing.due(&drain, || 2, || 0.25)).await;
        assert!(early.is_err(), "pending until the drain starts");
        shutdown.cancel();
        drain.turn(|| 2, 0.0);
        let start = Instant::now();
        // Cancelled half-way (a select! branch losing a race): the turn is kept.
        let half = tokio::time::timeout(
            Duration::from_secs(2),
            closing.due(&drain, || unreachable!("planned already"), || 0.25),
        )
        .await;
        assert!(half.is_err());
        let advice = closing
            .due(
                &drain,
                || unreachable!("planned already"),
                || unreachable!("drawn already"),
            )
            .await;
        assert_eq!(advice.retry_after_ms, 2500);
        assert_eq!(Instant::now() - start, Duration::from_secs(5));
    }
}
