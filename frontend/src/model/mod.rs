//! The page's pure logic, free of the browser so that it is unit-tested natively:
//! - [`Timeline`] (`timeline`): merges what every open link delivers into one list, in id
//!   order, once;
//! - [`Lines`] (`lines`): NDJSON lines out of the chunks a stream delivers;
//! - [`Links`] (`links`): make-before-break bookkeeping when the user switches transport;
//! - [`Backoff`] (`backoff`): the reconnection schedule, and the relay's advice it obeys;
//! - [`Outbox`] (`outbox`): sent texts not yet confirmed, each with its idempotency key;
//! - [`Roster`] (`presence`): who is here and who is typing;
//! - `number`: numbers as the page shows them, without float formatting;
//! - `LatencyStats` and [`EchoTracker`] (`stats`): echo latency of the user's own messages,
//!   and the per-transport figures the transport panel shows.
//!
//! The submodules are private: what the rest of the page uses is re-exported here, so it
//! writes `crate::model::Timeline` whichever file the type lives in. The URLs built from a
//! [`Cursor`] are the business of `crate::api`, not of the model.

mod backoff;
mod lines;
mod links;
pub mod number;
mod outbox;
mod presence;
mod stats;
mod timeline;

pub use backoff::{Backoff, Wait, Why};
pub use lines::Lines;
pub use links::{LinkState, Links};
pub use outbox::{Outbox, Pending};
pub use presence::Roster;
pub use stats::{Counters, EchoTracker, LatencySnapshot, TransportStats};
pub use timeline::{Cursor, Entry, Inbound, Timeline};

/// A message `m{id}` from `a` in room `r`, for the model's tests.
#[cfg(test)]
fn test_message(id: u64) -> protocol::Message {
    protocol::Message {
        id,
        room: "r".into(),
        from: "a".into(),
        text: format!("m{id}"),
        ts: 0,
        key: None,
    }
}

#[cfg(test)]
mod tests {
    use protocol::Transport;
    use protocol::limits::is_valid_room;

    // The page reads `?transport=` and the toggle's values with the protocol's parser, and
    // falls back to the default room with the protocol's rule; this pins that both still
    // accept what the page writes (`Transport::as_str`) and refuse what it must not use.
    #[test]
    fn transports_parse_from_their_wire_names() {
        for t in Transport::ALL {
            assert_eq!(t.as_str().parse::<Transport>().ok(), Some(t));
        }
        assert_eq!("carrier-pigeon".parse::<Transport>().ok(), None);
        assert!(is_valid_room("lobby") && !is_valid_room("a b") && !is_valid_room(""));
    }
}
