//! Where a client continues from ([`Cursor`]), what it is owed ([`Snapshot`]), and the one
//! function, [`snapshot`], that decides between continuing a cursor and resetting it.
//!
//! Neither bus decides this on its own: the memory bus passes its whole history as the window,
//! the Redis bus the entries its read script fetched or a follow's recent messages. Keeping the
//! rule in one place is what makes a cursor mean the same on every relay and every transport.

use std::collections::VecDeque;
use std::sync::Arc;

use protocol::limits::{MAX_READ_BYTES, MAX_READ_MESSAGES};
use protocol::{Reset, ResetReason};

use super::Envelope;

/// Where a client wants to continue from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last id the client has; `None` for a newcomer.
    pub after: Option<u64>,
    /// The epoch `after` belongs to; `None` trusts `after` as the current epoch's.
    pub epoch: Option<String>,
}

/// The history a client is owed, as of one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: Arc<str>,
    /// The room's newest id at that instant.
    pub head: u64,
    /// Set when the cursor could not be continued without a gap.
    pub reset: Option<Reset>,
    pub messages: Vec<Arc<Envelope>>,
    /// True when `limit` left retained messages out.
    pub more: bool,
    /// The cursor to continue from when `messages` is empty: the head, or — when `limit` left
    /// everything out (`limit=0`) — the id just before the first message left out.
    pub cursor_if_empty: u64,
}

impl Snapshot {
    /// Keeps only the newest `n` messages: what a newcomer (or a client from a lost epoch)
    /// is shown on joining.
    pub fn keep_latest(&mut self, n: usize) {
        let excess = self.messages.len().saturating_sub(n);
        self.messages.drain(..excess);
    }

    /// The cursor a poller should send next: the last message returned, else where the
    /// answer stopped.
    pub fn next_after(&self) -> u64 {
        self.messages.last().map_or(self.cursor_if_empty, |m| m.id)
    }
}

/// What a client at `cursor` is owed, at most `limit` messages. This is the single place that
/// decides between continuing a cursor and resetting it, for every bus.
///
/// `window` holds retained messages, oldest first: all of them, or (from Redis) at least the
/// `limit + 1` the cursor continues with, or the newest `limit` when it cannot continue.
/// `last_id` is the room's newest id and `oldest_id` its oldest retained one.
pub(super) fn snapshot(
    window: &VecDeque<Arc<Envelope>>,
    last_id: u64,
    oldest_id: u64,
    epoch: &Arc<str>,
    cursor: &Cursor,
    limit: usize,
) -> Snapshot {
    let foreign_epoch = cursor.epoch.as_deref().is_some_and(|e| e != &**epoch);
    let reset_reason = match cursor.after {
        _ if foreign_epoch => Some(ResetReason::EpochChanged),
        Some(after) if after > last_id => Some(ResetReason::EpochChanged),
        Some(after) if after.saturating_add(1) < oldest_id => Some(ResetReason::HistoryGap),
        _ => None,
    };
    // Where a resuming client continues: after its cursor; past a gap, from the oldest
    // retained message; from another history (the room's history was replaced while it was
    // away), from the start of this one — every message of the new epoch may be one it has
    // never seen, so it is owed all that is retained, not only the newest.
    let from = match (reset_reason, cursor.after) {
        (Some(ResetReason::EpochChanged), Some(_)) => Some(oldest_id.saturating_sub(1)),
        (_, after) => after,
    };
    let (messages, more, cursor_if_empty) = match from {
        Some(after) => {
            let skip = window.partition_point(|m| m.id <= after);
            let newer = window.len() - skip;
            let take = fitting(window.range(skip..), newer.min(limit));
            let messages: Vec<Arc<Envelope>> = window.range(skip..skip + take).cloned().collect();
            let stop = window
                .get(skip)
                .filter(|_| take == 0)
                .map_or(last_id, |first_left_out| first_left_out.id - 1);
            // More are left if the window holds more than was taken, or — when the window
            // itself was cut short (a Redis read stops at the byte cap) — if the last message
            // taken is not the room's newest.
            let more = newer > take || messages.last().is_some_and(|m| m.id < last_id);
            (messages, more, stop)
        }
        // A newcomer: the most recent `limit`.
        None => {
            let take = fitting(window.iter().rev(), limit.min(window.len()));
            let skip = window.len() - take;
            (window.range(skip..).cloned().collect(), false, last_id)
        }
    };
    Snapshot {
        epoch: epoch.clone(),
        head: last_id,
        reset: reset_reason.map(|reason| Reset { reason, oldest_id }),
        messages,
        more,
        cursor_if_empty,
    }
}

/// How many of `messages` (at most `limit`) fit in [`MAX_READ_MESSAGES`] and
/// [`MAX_READ_BYTES`]; at least one if `limit` allows any, so that no message is too large
/// to be read at all.
fn fitting<'a>(messages: impl Iterator<Item = &'a Arc<Envelope>>, limit: usize) -> usize {
    let limit = limit.min(MAX_READ_MESSAGES);
    let mut bytes = 0;
    let mut count = 0;
    for message in messages.take(limit) {
        // Counted as kept (at least the JSON written): the same measure as the history
        // budget, and as the Redis read script's own cap, so that their cuts agree.
        bytes += message.stored_bytes();
        if count > 0 && bytes > MAX_READ_BYTES {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    // Each case hands `snapshot` what a bus would: the retained window, the room's newest id
    // and its oldest retained id (`last_id + 1` when nothing is retained).

    use super::*;
    use crate::bus::envelope::test_envelope;

    fn window(ids: std::ops::RangeInclusive<u64>) -> VecDeque<Arc<Envelope>> {
        ids.map(test_envelope).collect()
    }

    fn ids(snapshot: &Snapshot) -> Vec<u64> {
        snapshot.messages.iter().map(|m| m.id).collect()
    }

    fn epoch() -> Arc<str> {
        Arc::from("e1")
    }

    fn after(after: u64) -> Cursor {
        Cursor {
            after: Some(after),
            epoch: Some("e1".into()),
        }
    }

    #[test]
    fn newcomer_gets_the_most_recent_limit() {
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &Cursor::default(), 3);
        assert_eq!(ids(&snap), [8, 9, 10]);
        assert_eq!(snap.reset, None);
        assert_eq!(snap.next_after(), 10);
    }

    #[test]
    fn cursor_continues_exactly_after_its_id() {
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &after(7), 50);
        assert_eq!(ids(&snap), [8, 9, 10]);
        assert!(!snap.more);
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &after(10), 50);
        assert!(snap.messages.is_empty());
        assert_eq!(snap.next_after(), 10);
    }

    #[test]
    fn limit_truncates_oldest_first_and_says_more() {
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &after(2), 3);
        assert_eq!(ids(&snap), [3, 4, 5]);
        assert!(snap.more);
        assert_eq!(snap.next_after(), 5);
    }

    #[test]
    fn limit_zero_keeps_the_cursor_where_it_was() {
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &after(4), 0);
        assert!(snap.messages.is_empty());
        assert!(snap.more);
        assert_eq!(
            snap.next_after(),
            4,
            "not the head: 5..=10 were left out, not read"
        );
        // Past a gap, the cursor moves to just before the oldest retained message.
        let snap = snapshot(&window(5..=10), 10, 5, &epoch(), &after(1), 0);
        assert_eq!(snap.next_after(), 4);
    }

    #[test]
    fn cursor_just_before_retention_is_not_a_gap() {
        // Retained 5..=10: a client at 4 has missed nothing.
        let snap = snapshot(&window(5..=10), 10, 5, &epoch(), &after(4), 50);
        assert_eq!(snap.reset, None);
        assert_eq!(ids(&snap), [5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn cursor_older_than_retention_is_a_history_gap() {
        let snap = snapshot(&window(5..=10), 10, 5, &epoch(), &after(3), 50);
        assert_eq!(
            snap.reset,
            Some(Reset {
                reason: ResetReason::HistoryGap,
                oldest_id: 5
            })
        );
        assert_eq!(ids(&snap), [5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn foreign_epoch_resets_and_serves_the_new_history_from_its_start() {
        let cursor = Cursor {
            after: Some(3),
            epoch: Some("old".into()),
        };
        let snap = snapshot(&window(4..=10), 10, 4, &epoch(), &cursor, 2);
        assert_eq!(
            snap.reset.as_ref().map(|r| r.reason),
            Some(ResetReason::EpochChanged)
        );
        assert_eq!(ids(&snap), [4, 5], "the oldest retained first, paged");
        assert!(snap.more);
        let newcomer = snapshot(&window(4..=10), 10, 4, &epoch(), &Cursor::default(), 2);
        assert_eq!(ids(&newcomer), [9, 10], "a newcomer still gets the newest");
    }

    #[test]
    fn cursor_beyond_the_head_is_from_another_epoch() {
        let cursor = Cursor {
            after: Some(11),
            epoch: None,
        };
        let snap = snapshot(&window(1..=10), 10, 1, &epoch(), &cursor, 50);
        assert_eq!(
            snap.reset.as_ref().map(|r| r.reason),
            Some(ResetReason::EpochChanged)
        );
    }

    #[test]
    fn empty_room_has_nothing_and_no_reset() {
        let snap = snapshot(&VecDeque::new(), 0, 1, &epoch(), &after(0), 50);
        assert!(snap.messages.is_empty());
        assert_eq!(snap.reset, None);
        assert_eq!(snap.next_after(), 0);
    }

    #[test]
    fn a_read_is_capped_in_messages_and_bytes_and_says_more() {
        let snap = snapshot(&window(1..=1000), 1000, 1, &epoch(), &after(0), 5000);
        assert_eq!(snap.messages.len(), MAX_READ_MESSAGES);
        assert!(snap.more);
        assert_eq!(snap.next_after(), MAX_READ_MESSAGES as u64);

        let big: VecDeque<Arc<Envelope>> = (1..=20)
            .map(|id| {
                Arc::new(Envelope::new(
                    protocol::Message {
                        id,
                        room: "r".into(),
                        from: "a".into(),
                        text: "\"".repeat(60_000),
                        ts: 0,
                        key: None,
                    },
                    "e",
                ))
            })
            .collect();
        let size = big[0].json.len();
        assert!(size > 120_000, "quotes are escaped: {size} bytes");
        let snap = snapshot(&big, 20, 1, &epoch(), &after(0), 50);
        let bytes: usize = snap.messages.iter().map(|m| m.json.len()).sum();
        assert!(bytes <= MAX_READ_BYTES, "{bytes}");
        let kept = big[0].stored_bytes();
        assert_eq!(snap.messages.len(), MAX_READ_BYTES / kept);
        assert!(snap.more);
        // A newcomer gets the newest that fit.
        let snap = snapshot(&big, 20, 1, &epoch(), &Cursor::default(), 50);
        assert_eq!(snap.messages.last().map(|m| m.id), Some(20));
        assert_eq!(snap.messages.len(), MAX_READ_BYTES / kept);
    }

    proptest::proptest! {
        /// Against a reference model of the rule: from any history (ids `oldest..=last`, or
        /// none) and any cursor (a newcomer, in this epoch, from another one, ahead of the
        /// head, behind the history), paging with `next_after` until `more` is false yields
        /// exactly the ids the model says, once each and in order, with the model's reset
        /// on the first answer and none after.
        #[test]
        fn paging_yields_what_the_reference_model_says(
            oldest in 1u64..40,
            len in 0u64..60,
            after in proptest::option::of(0u64..120),
            foreign in proptest::bool::ANY,
            limit in 1usize..20,
        ) {
            let last = oldest + len - 1;
            let history = if len == 0 { VecDeque::new() } else { window(oldest..=last) };
            let cursor = Cursor {
                after,
                epoch: Some(if foreign { "old" } else { "e1" }.into()),
            };
            // The model.
            let reason = match after {
                _ if foreign => Some(ResetReason::EpochChanged),
                Some(a) if a > last => Some(ResetReason::EpochChanged),
                Some(a) if a + 1 < oldest => Some(ResetReason::HistoryGap),
                _ => None,
            };
            let expected: Vec<u64> = match (after, reason) {
                (None, _) => (oldest.max((last + 1).saturating_sub(limit as u64))..=last).collect(),
                (Some(_), Some(ResetReason::EpochChanged)) => (oldest..=last).collect(),
                (Some(a), _) => (a.max(oldest - 1) + 1..=last).collect(),
            };
            // The rule, paged as a client pages.
            let first = snapshot(&history, last, oldest, &epoch(), &cursor, limit);
            proptest::prop_assert_eq!(first.reset.as_ref().map(|r| r.reason), reason);
            let mut got = ids(&first);
            let mut more = first.more;
            let mut next = first.next_after();
            let mut pages = 0;
            while more {
                let page = snapshot(&history, last, oldest, &epoch(), &self::after(next), limit);
                proptest::prop_assert_eq!(page.reset.as_ref(), None);
                proptest::prop_assert!(!page.messages.is_empty(), "more promised, none given");
                got.extend(ids(&page));
                more = page.more;
                next = page.next_after();
                pages += 1;
                proptest::prop_assert!(pages <= 200, "paging does not end");
            }
            proptest::prop_assert_eq!(&got, &expected);
            if after.is_some() {
                proptest::prop_assert_eq!(next, last, "the cursor ends at the head");
            }
        }
    }
}
