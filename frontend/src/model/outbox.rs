//! The outbox: what the user sent that the relay has not yet confirmed storing.
//!
//! Every send gets an idempotency key (128 random bits, unguessable), and is
//! sent again — with the same key — whenever its fate is unknown: after a reconnect, a relay
//! restart, a `POST` that failed or timed out. The relay stores a key once, so a text the
//! relay already had is not stored twice; and the page shows a pending text only until the
//! message carrying its key arrives, so no text is ever shown twice.

/// Longest the page keeps trying one text, in ms: well inside the relay's default dedup
/// window, so that a late retry can never be stored as a new message.
pub const GIVE_UP_MS: f64 = (protocol::limits::DEFAULT_DEDUP_WINDOW_SECS * 1000 / 2) as f64;

/// A text not yet confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub key: String,
    pub text: String,
    /// When it was first sent (page clock, ms).
    pub since: f64,
    /// A unique number for keyed list rendering.
    pub seq: u64,
}

#[derive(Debug, Default)]
pub struct Outbox {
    next: u64,
    pending: Vec<Pending>,
}

impl Outbox {
    /// A new text to send under `key` (fresh for every send); the pending entry to
    /// transmit.
    pub fn add(&mut self, text: String, key: String, now_ms: f64) -> Pending {
        self.next += 1;
        let pending = Pending {
            key,
            text,
            since: now_ms,
            seq: self.next,
        };
        self.pending.push(pending.clone());
        pending
    }

    /// The relay confirmed storing `key` (its message arrived, an ack, a `POST` answer).
    /// Whether it was still pending.
    pub fn confirmed(&mut self, key: &str) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.key != key);
        self.pending.len() < before
    }

    /// The relay refused `key` for good (invalid text, too long): it will not be sent again.
    pub fn refused(&mut self, key: &str) -> Option<Pending> {
        let index = self.pending.iter().position(|p| p.key == key)?;
        Some(self.pending.remove(index))
    }

    /// What is still pending, oldest first.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// Drops what has been tried for too long; returns those texts (the user is told).
    pub fn expire(&mut self, now_ms: f64) -> Vec<Pending> {
        let (old, young) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| now_ms - p.since >= GIVE_UP_MS);
        self.pending = young;
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_twice_is_two_sends() {
        let mut outbox = Outbox::default();
        let a = outbox.add("a".into(), "k1".into(), 0.0);
        let b = outbox.add("a".into(), "k2".into(), 0.0);
        assert_ne!(a.seq, b.seq);
        assert_eq!(outbox.pending().len(), 2);
    }

    #[test]
    fn a_confirmed_or_refused_text_leaves_the_outbox_once() {
        let mut outbox = Outbox::default();
        let a = outbox.add("a".into(), "k1".into(), 0.0);
        let b = outbox.add("b".into(), "k2".into(), 0.0);
        assert!(outbox.confirmed(&a.key));
        assert!(
            !outbox.confirmed(&a.key),
            "a second confirmation changes nothing"
        );
        assert_eq!(outbox.refused(&b.key).map(|p| p.text), Some("b".into()));
        assert!(outbox.pending().is_empty());
    }

    #[test]
    fn texts_tried_too_long_are_given_up_inside_the_dedup_window() {
        let mut outbox = Outbox::default();
        let old = outbox.add("old".into(), "k1".into(), 0.0);
        let young = outbox.add("young".into(), "k2".into(), GIVE_UP_MS - 1.0);
        assert!(outbox.expire(GIVE_UP_MS - 1.0).is_empty());
        let expired = outbox.expire(GIVE_UP_MS);
        assert_eq!(expired, [old]);
        assert_eq!(outbox.pending(), [young]);
        assert!(GIVE_UP_MS < (protocol::limits::DEFAULT_DEDUP_WINDOW_SECS * 1000) as f64);
    }
}
