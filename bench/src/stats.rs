//! Accounting for one run: what was sent, what each receiver got, and the latency summary.

use std::collections::HashMap;

use serde::Serialize;

/// Identifies one sent message in every transport and server: sender index and sequence
/// number, carried in the message text (the Node peer has no ids of its own).
pub type Key = (u32, u64);

/// The text of a benchmark message: `b:{sender}:{seq}:{sent_us}:` then padding.
pub fn encode(sender: u32, seq: u64, sent_us: u64, payload: usize) -> String {
    let mut text = format!("b:{sender}:{seq}:{sent_us}:");
    let pad = payload.saturating_sub(text.len()).max(1);
    text.extend(std::iter::repeat_n('x', pad));
    text
}

/// Parses a benchmark message text back into its key and send time (µs since run start).
pub fn decode(text: &str) -> Option<(Key, u64)> {
    let mut parts = text.strip_prefix("b:")?.splitn(4, ':');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some(((sender, seq), sent_us))
}

/// The text of a relay `message` event's JSON, found without parsing the whole event: the
/// load tool's receiving thread must stay light (its cost per delivery is reported), and
/// benchmark texts hold no characters JSON escapes. `None` for every other event.
pub fn message_text(json: &str) -> Option<&str> {
    let rest = json.strip_prefix(r#"{"type":"message","#)?;
    let start = rest.find(r#""text":""#)? + r#""text":""#.len();
    let text = &rest[start..];
    Some(&text[..text.find('"')?])
}

/// What one receiver saw.
#[derive(Debug, Default)]
pub struct Receipts {
    /// Per sender, indexed by sequence number: how many times each message arrived.
    /// (Sequence numbers are consecutive from 1, so a vector is the cheapest set.)
    pub seen: HashMap<u32, Vec<u8>>,
    /// Newest sequence number seen per sender, to spot reordering.
    pub newest: HashMap<u32, u64>,
    pub out_of_order: u64,
    /// Latencies (µs) of deliveries of messages sent in the measured window.
    pub latencies_us: Vec<u64>,
    /// Deliveries of measured messages (first arrivals).
    pub delivered: u64,
}

impl Receipts {
    /// Records one arrival; `measured` says whether it was sent after the warm-up.
    pub fn record(&mut self, key: Key, latency_us: u64, measured: bool) {
        let counts = self.seen.entry(key.0).or_default();
        let at = key.1 as usize;
        if counts.len() <= at {
            counts.resize(at + 1, 0);
        }
        counts[at] = counts[at].saturating_add(1);
        if counts[at] > 1 {
            return;
        }
        let newest = self.newest.entry(key.0).or_insert(0);
        if key.1 < *newest {
            self.out_of_order += 1;
        }
        *newest = (*newest).max(key.1);
        if measured {
            self.delivered += 1;
            self.latencies_us.push(latency_us);
        }
    }

    pub fn duplicates(&self) -> u64 {
        self.seen
            .values()
            .flatten()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `samples` (µs), in milliseconds.
pub fn percentiles(samples: &mut [u64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    // Per-mille in integers: 99.9 % of 1000 samples is rank 999 exactly, not 999.0000001.
    let at = |per_mille: usize| {
        let rank = (per_mille * samples.len()).div_ceil(1000);
        samples[rank.clamp(1, samples.len()) - 1] as f64 / 1000.0
    };
    Percentiles {
        p50: at(500),
        p90: at(900),
        p99: at(990),
        p999: at(999),
        max: at(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_respect_the_payload_size() {
        let text = encode(3, 41, 123_456, 64);
        assert_eq!(text.len(), 64);
        assert_eq!(decode(&text), Some(((3, 41), 123_456)));
        assert_eq!(decode("connection established"), None);
    }

    #[test]
    fn the_text_of_a_message_event_is_found_and_other_events_are_skipped() {
        let event = protocol::ServerEvent::Message(protocol::Message {
            id: 7,
            room: "bench".into(),
            from: "r1".into(),
            text: encode(0, 9, 55, 64),
            ts: 1,
            key: None,
        });
        let json = serde_json::to_string(&event).expect("serializable");
        assert_eq!(message_text(&json), Some(encode(0, 9, 55, 64).as_str()));
        assert_eq!(message_text(r#"{"type":"welcome","last_id":3}"#), None);
    }

    #[test]
    fn receipts_count_duplicates_and_reordering() {
        let mut r = Receipts::default();
        r.record((0, 1), 10, true);
        r.record((0, 3), 10, true);
        r.record((0, 2), 10, true);
        r.record((0, 3), 10, true);
        r.record((1, 1), 10, false);
        assert_eq!(r.delivered, 3);
        assert_eq!(r.duplicates(), 1);
        assert_eq!(r.out_of_order, 1);
        assert_eq!(r.latencies_us.len(), 3);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).map(|ms| ms * 1000).collect();
        let p = percentiles(&mut samples);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(percentiles(&mut []), Percentiles::default());
    }
}
