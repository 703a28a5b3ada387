//! The message list's order: what every open link delivers, merged into one list in id order,
//! each message once, with a notice wherever the relay's history could not be followed.

use protocol::{Message, Reset, ResetReason, Welcome};

/// Where a new link should start: the relay's cursor, as sent in `after=` and `epoch=`
/// (`crate::api` writes it into each URL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub after: Option<u64>,
    pub epoch: Option<String>,
}

/// What a link delivers, in the order it arrived on that link.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Welcome(Welcome),
    Message(Message),
    Reset(Reset),
}

/// One line of the message list.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Message {
        key: u64,
        message: Message,
    },
    Notice {
        key: u64,
        text: String,
        /// Warnings (gaps, lost history) are styled apart from "connection established".
        warning: bool,
    },
}

impl Entry {
    /// A key unique within the page's lifetime, for keyed list rendering.
    pub fn key(&self) -> u64 {
        match self {
            Entry::Message { key, .. } | Entry::Notice { key, .. } => *key,
        }
    }
}

/// Merges the streams of every open link into one ordered list.
///
/// Every link delivers contiguous ids from the cursor it was opened with, and every cursor is
/// at or behind what the timeline already holds. So accepting a message exactly when its id is
/// newer than the newest accepted one yields every message once, in order, whichever link
/// delivers it first.
#[derive(Debug, Default)]
pub struct Timeline {
    epoch: Option<String>,
    last_id: Option<u64>,
    next_key: u64,
}

impl Timeline {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            after: self.last_id,
            epoch: self.epoch.clone(),
        }
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// A line of the page's own (e.g. "connection established").
    pub fn notice(&mut self, text: impl Into<String>, warning: bool) -> Entry {
        Entry::Notice {
            key: self.key(),
            text: text.into(),
            warning,
        }
    }

    /// Applies one event from a link whose history is `link_epoch` (taken from that link's
    /// welcome). Returns the lines to append to the list.
    pub fn apply(&mut self, link_epoch: &str, inbound: Inbound) -> Vec<Entry> {
        match inbound {
            Inbound::Welcome(welcome) => match &self.epoch {
                None => {
                    self.epoch = Some(welcome.epoch);
                    Vec::new()
                }
                Some(current) if *current == welcome.epoch => Vec::new(),
                // The room did not exist when this page first asked (no epoch, no messages):
                // its first incarnation is not a reset.
                Some(current) if current.is_empty() => {
                    self.epoch = Some(welcome.epoch);
                    Vec::new()
                }
                Some(_) => {
                    self.epoch = Some(welcome.epoch);
                    self.last_id = None;
                    vec![self.notice(
                        "The relay's history was reset (it restarted): earlier messages may be missing.",
                        true,
                    )]
                }
            },
            // Events from a link still on a previous history are stale.
            _ if self.epoch.as_deref() != Some(link_epoch) => Vec::new(),
            Inbound::Reset(reset) => match reset.reason {
                // Already handled by the welcome that carried the new epoch, unless the relay
                // says so within one epoch (our cursor was ahead of its history).
                ResetReason::EpochChanged => {
                    if self.last_id.is_some() {
                        self.last_id = None;
                        vec![self.notice(
                            "The relay no longer knows where this page left off: earlier messages may be missing.",
                            true,
                        )]
                    } else {
                        Vec::new()
                    }
                }
                ResetReason::HistoryGap => {
                    let before = reset.oldest_id.saturating_sub(1);
                    let missed = before.saturating_sub(self.last_id.unwrap_or(before));
                    self.last_id = Some(self.last_id.unwrap_or(0).max(before));
                    vec![self.notice(
                        format!(
                            "{missed} message(s) were missed: the relay keeps only recent history."
                        ),
                        true,
                    )]
                }
            },
            Inbound::Message(message) => {
                if self.last_id.is_some_and(|last| message.id <= last) {
                    return Vec::new(); // a duplicate from an overlapping link
                }
                let mut out = Vec::new();
                if let Some(last) = self.last_id
                    && message.id > last + 1
                {
                    // Cannot happen while the relay keeps its promises; say so if it does.
                    out.push(self.notice(
                        format!("{} message(s) missing here.", message.id - last - 1),
                        true,
                    ));
                }
                self.last_id = Some(message.id);
                out.push(Entry::Message {
                    key: self.key(),
                    message,
                });
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::Transport;

    use super::*;

    use super::super::test_message as msg;

    fn welcome(epoch: &str) -> Inbound {
        Inbound::Welcome(Welcome {
            transport: Transport::Ws,
            room: "r".into(),
            epoch: epoch.into(),
            presence: None,
            last_id: 0,
        })
    }

    fn shown(entries: &[Entry]) -> Vec<u64> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Message { message, .. } => Some(message.id),
                Entry::Notice { .. } => None,
            })
            .collect()
    }

    #[test]
    fn overlapping_links_are_merged_in_order_without_duplicates() {
        let mut t = Timeline::default();
        let mut out = Vec::new();
        out.extend(t.apply("e", welcome("e")));
        for id in 1..=3 {
            out.extend(t.apply("e", Inbound::Message(msg(id))));
        }
        // A second link opened at after=3 while the first keeps delivering.
        assert_eq!(t.cursor().after, Some(3));
        out.extend(t.apply("e", welcome("e")));
        for (id, _link) in [(4, 'b'), (4, 'a'), (5, 'a'), (5, 'b'), (6, 'b'), (6, 'a')] {
            out.extend(t.apply("e", Inbound::Message(msg(id))));
        }
        assert_eq!(shown(&out), [1, 2, 3, 4, 5, 6]);
        let keys: std::collections::HashSet<u64> = out.iter().map(Entry::key).collect();
        assert_eq!(keys.len(), out.len(), "keys are unique");
    }

    #[test]
    fn newcomer_accepts_history_from_any_id() {
        let mut t = Timeline::default();
        t.apply("e", welcome("e"));
        assert_eq!(
            t.cursor(),
            Cursor {
                after: None,
                epoch: Some("e".into())
            }
        );
        let out = t.apply("e", Inbound::Message(msg(51)));
        assert_eq!(shown(&out), [51]);
    }

    #[test]
    fn new_epoch_is_announced_and_restarts_ids() {
        let mut t = Timeline::default();
        t.apply("e1", welcome("e1"));
        t.apply("e1", Inbound::Message(msg(7)));
        let out = t.apply("e2", welcome("e2"));
        assert!(matches!(&out[..], [Entry::Notice { warning: true, .. }]));
        // The reset that follows on the same link is not announced twice.
        let reset = Reset {
            reason: ResetReason::EpochChanged,
            oldest_id: 1,
        };
        assert!(t.apply("e2", Inbound::Reset(reset)).is_empty());
        assert_eq!(shown(&t.apply("e2", Inbound::Message(msg(1)))), [1]);
        // A stale link of the old epoch is ignored.
        assert!(t.apply("e1", Inbound::Message(msg(8))).is_empty());
        assert_eq!(
            t.cursor(),
            Cursor {
                after: Some(1),
                epoch: Some("e2".into())
            }
        );
    }

    #[test]
    fn a_room_that_did_not_exist_yet_begins_without_a_notice() {
        let mut t = Timeline::default();
        // A poll of a room nobody has used: no epoch, no messages.
        assert!(t.apply("", welcome("")).is_empty());
        // Someone posts: the room's first incarnation.
        assert!(t.apply("e1", welcome("e1")).is_empty(), "no reset notice");
        assert_eq!(shown(&t.apply("e1", Inbound::Message(msg(1)))), [1]);
    }

    #[test]
    fn history_gap_is_announced_and_skipped() {
        let mut t = Timeline::default();
        t.apply("e", welcome("e"));
        t.apply("e", Inbound::Message(msg(3)));
        let out = t.apply(
            "e",
            Inbound::Reset(Reset {
                reason: ResetReason::HistoryGap,
                oldest_id: 10,
            }),
        );
        match &out[..] {
            [
                Entry::Notice {
                    text,
                    warning: true,
                    ..
                },
            ] => assert!(text.starts_with("6 message(s)")),
            other => panic!("expected a warning, got {other:?}"),
        }
        assert_eq!(shown(&t.apply("e", Inbound::Message(msg(10)))), [10]);
    }

    #[test]
    fn an_unannounced_gap_is_made_visible() {
        let mut t = Timeline::default();
        t.apply("e", welcome("e"));
        t.apply("e", Inbound::Message(msg(1)));
        let out = t.apply("e", Inbound::Message(msg(4)));
        assert!(matches!(&out[0], Entry::Notice { warning: true, .. }));
        assert_eq!(shown(&out), [4]);
    }

    /// One step of a page's life: a link opened from where the timeline stands, or a link
    /// delivering its next message.
    #[derive(Debug, Clone)]
    enum Step {
        Open,
        Deliver(usize),
    }

    fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![1 => Just(Step::Open), 6 => (0usize..4).prop_map(Step::Deliver)],
            0..120,
        )
    }

    proptest::proptest! {
        /// Against the model "every message once, in id order": links opened at any moment
        /// (each from the timeline's cursor then, as the page opens them when switching) and
        /// delivering in any interleaving — one ahead, another catching up, overlaps — show
        /// ids 1..=n exactly once, in order, with no notice of a gap.
        #[test]
        fn any_interleaving_of_links_shows_every_message_once_in_order(
            n in 1u64..60,
            script in steps(),
        ) {
            let mut timeline = Timeline::default();
            let mut out = Vec::new();
            // Each link: the next id it will deliver.
            let mut links: Vec<u64> = Vec::new();
            let open = |timeline: &mut Timeline, links: &mut Vec<u64>, out: &mut Vec<Entry>| {
                let from = timeline.cursor().after.unwrap_or(0);
                out.extend(timeline.apply("e", welcome("e")));
                links.push(from + 1);
            };
            open(&mut timeline, &mut links, &mut out);
            for step in script {
                match step {
                    Step::Open => open(&mut timeline, &mut links, &mut out),
                    Step::Deliver(i) => {
                        let i = i % links.len();
                        if links[i] <= n {
                            out.extend(timeline.apply("e", Inbound::Message(msg(links[i]))));
                            links[i] += 1;
                        }
                    }
                }
            }
            // Every link runs to the end.
            for next in links.iter_mut() {
                while *next <= n {
                    out.extend(timeline.apply("e", Inbound::Message(msg(*next))));
                    *next += 1;
                }
            }
            proptest::prop_assert_eq!(shown(&out), (1..=n).collect::<Vec<u64>>());
            let notices = out.iter().filter(|e| matches!(e, Entry::Notice { .. })).count();
            proptest::prop_assert_eq!(notices, 0);
        }
    }
}
