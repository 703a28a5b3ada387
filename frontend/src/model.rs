//! The page's pure logic, free of the browser so that it is unit-tested natively:
//! - [`Timeline`]: merges what every open link delivers into one list, in id order, once;
//! - [`Links`]: make-before-break bookkeeping when the user switches transport;
//! - [`Backoff`]: the reconnection schedule;
//! - [`LatencyStats`] and [`EchoTracker`]: echo latency of the user's own messages.

use std::collections::VecDeque;

use protocol::{Message, Reset, ResetReason, Transport, Welcome};

/// Where a new link should start: the relay's cursor, as sent in `after=` and `epoch=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub after: Option<u64>,
    pub epoch: Option<String>,
}

impl Cursor {
    /// The query-string form (`after=41&epoch=…`), empty for a newcomer.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(after) = self.after {
            parts.push(format!("after={after}"));
        }
        if let Some(epoch) = &self.epoch {
            parts.push(format!("epoch={}", encode(epoch)));
        }
        parts.join("&")
    }
}

/// Percent-encodes a query value (names and epochs are user- or relay-chosen text).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
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

/// Connection state of one link, as the status line shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkState {
    Connecting,
    Live,
    /// Lost; the next attempt is this many milliseconds after the loss.
    Retrying(u32),
}

#[derive(Debug, Clone, PartialEq)]
struct LinkEntry {
    id: u32,
    transport: Transport,
    state: LinkState,
}

/// Make-before-break switching: the link the user chose is `current`; the one it replaces
/// stays open (`retiring`) until the new one is live, so messages keep flowing meanwhile.
/// Correctness never depends on the old link — a new link starts from the timeline's cursor,
/// and everything before that is already shown — so closing one early only costs liveness.
#[derive(Debug, Default)]
pub struct Links {
    next_id: u32,
    current: Option<LinkEntry>,
    retiring: Vec<LinkEntry>,
}

impl Links {
    /// Registers a new current link. Returns its id and the links to close now.
    pub fn open(&mut self, transport: Transport) -> (u32, Vec<u32>) {
        self.next_id += 1;
        let id = self.next_id;
        let mut close = Vec::new();
        if let Some(previous) = self.current.take() {
            if previous.state == LinkState::Live && self.retiring.is_empty() {
                self.retiring.push(previous);
            } else {
                // Already covered by an older live link (or never live): not worth keeping.
                close.push(previous.id);
            }
        }
        self.current = Some(LinkEntry {
            id,
            transport,
            state: LinkState::Connecting,
        });
        (id, close)
    }

    /// Records a link's state. Returns the links to close: when the current link becomes
    /// live, every retiring one; a retiring link that is lost is closed rather than retried.
    pub fn set_state(&mut self, id: u32, state: LinkState) -> Vec<u32> {
        match &mut self.current {
            Some(current) if current.id == id => {
                current.state = state;
                if state == LinkState::Live {
                    return self.retiring.drain(..).map(|l| l.id).collect();
                }
                Vec::new()
            }
            _ => {
                if matches!(state, LinkState::Retrying(_)) {
                    let before = self.retiring.len();
                    self.retiring.retain(|l| l.id != id);
                    if self.retiring.len() < before {
                        return vec![id];
                    }
                }
                Vec::new()
            }
        }
    }

    pub fn is_current(&self, id: u32) -> bool {
        self.current.as_ref().is_some_and(|c| c.id == id)
    }

    pub fn current(&self) -> Option<(u32, Transport, LinkState)> {
        self.current.as_ref().map(|c| (c.id, c.transport, c.state))
    }

    /// Every open link (current first).
    pub fn open_ids(&self) -> Vec<u32> {
        self.current
            .iter()
            .chain(self.retiring.iter())
            .map(|l| l.id)
            .collect()
    }

    /// Forgets every link (e.g. when the page is torn down); returns them to close.
    pub fn close_all(&mut self) -> Vec<u32> {
        let ids = self.open_ids();
        self.current = None;
        self.retiring.clear();
        ids
    }
}

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
}

/// The label people see for a transport.
pub fn label(transport: Transport) -> &'static str {
    match transport {
        Transport::Ws => "WebSocket",
        Transport::Sse => "Server-Sent Events",
        Transport::Longpoll => "Long polling",
        Transport::Shortpoll => "Short polling",
    }
}

/// Parses a transport's wire name (`?transport=` and the toggle's values).
pub fn parse_transport(value: &str) -> Option<Transport> {
    Transport::ALL.into_iter().find(|t| t.as_str() == value)
}

/// Names a room may have (the relay's rule); anything else falls back to the default room.
pub fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64) -> Message {
        Message {
            id,
            room: "r".into(),
            from: "a".into(),
            text: format!("m{id}"),
            ts: 0,
        }
    }

    fn welcome(epoch: &str) -> Inbound {
        Inbound::Welcome(Welcome {
            transport: Transport::Ws,
            room: "r".into(),
            epoch: epoch.into(),
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

    #[test]
    fn switching_keeps_the_old_link_until_the_new_one_is_live() {
        let mut links = Links::default();
        let (ws, close) = links.open(Transport::Ws);
        assert!(close.is_empty());
        assert!(links.set_state(ws, LinkState::Live).is_empty());
        let (sse, close) = links.open(Transport::Sse);
        assert!(
            close.is_empty(),
            "the live WebSocket stays while SSE connects"
        );
        assert_eq!(links.open_ids(), [sse, ws]);
        assert_eq!(links.set_state(sse, LinkState::Live), [ws]);
        assert_eq!(links.open_ids(), [sse]);
        assert!(links.is_current(sse));
    }

    #[test]
    fn rapid_switching_keeps_only_the_last_live_link_and_the_newest() {
        let mut links = Links::default();
        let (a, _) = links.open(Transport::Ws);
        links.set_state(a, LinkState::Live);
        let (b, close) = links.open(Transport::Sse);
        assert!(close.is_empty());
        // b never became live: switching again closes it at once, and a keeps flowing.
        let (c, close) = links.open(Transport::Longpoll);
        assert_eq!(close, [b]);
        assert_eq!(links.open_ids(), [c, a]);
        assert_eq!(links.set_state(c, LinkState::Live), [a]);
        // c is live and current; switching from it retires it.
        let (d, close) = links.open(Transport::Shortpoll);
        assert!(close.is_empty());
        assert_eq!(links.open_ids(), [d, c]);
    }

    #[test]
    fn a_retiring_link_that_drops_is_closed_not_retried() {
        let mut links = Links::default();
        let (a, _) = links.open(Transport::Ws);
        links.set_state(a, LinkState::Live);
        let (b, _) = links.open(Transport::Sse);
        assert_eq!(links.set_state(a, LinkState::Retrying(500)), [a]);
        assert_eq!(links.open_ids(), [b]);
        // The current link losing its connection is retried, not closed.
        assert!(links.set_state(b, LinkState::Retrying(500)).is_empty());
        assert_eq!(
            links.current(),
            Some((b, Transport::Sse, LinkState::Retrying(500)))
        );
    }

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

    #[test]
    fn cursor_query_encodes_values() {
        let cursor = Cursor {
            after: Some(4),
            epoch: Some("a b&c".into()),
        };
        assert_eq!(cursor.query(), "after=4&epoch=a%20b%26c");
        assert_eq!(Cursor::default().query(), "");
    }

    #[test]
    fn transports_parse_from_their_wire_names() {
        for t in Transport::ALL {
            assert_eq!(parse_transport(t.as_str()), Some(t));
        }
        assert_eq!(parse_transport("carrier-pigeon"), None);
        assert!(valid_room("lobby") && !valid_room("a b") && !valid_room(""));
    }
}
