//! Who is in a room and who is typing: the shapes of presence and typing events, and the
//! rules both sides share about them. `docs/PROTOCOL.md`, "Presence and typing", is the prose
//! version.
//!
//! Presence and typing are *signals*, not messages: they carry no id, are never stored in a
//! room's history, never move a cursor and are never replayed on a resume. A client that
//! missed some (a poller that came back to another relay, a stream that fell behind) is sent
//! the whole list again instead ([`PresenceChange::members`]).

use serde::{Deserialize, Serialize};

use crate::Transport;

/// Most members a snapshot lists (a welcome, a `GET …/presence`, a resync); the count stays
/// exact. A room of thousands is not a list anyone reads, and one snapshot must not cost a
/// newcomer (and the relay) more than a page of text.
pub const MAX_LISTED_MEMBERS: usize = 100;

/// A client sends at most one typing signal per this many milliseconds; more are dropped
/// (`{"sent":false}`), not refused: typing is a hint.
pub const TYPING_EVERY_MS: u64 = 2_000;

/// How long a receiver shows "… is typing" after a typing signal, unless that person's
/// message arrives first: a little over two signals' spacing, so that someone who keeps
/// typing stays shown without a gap.
pub const TYPING_SHOWN_MS: u64 = 5_000;

/// Default `RELAY_PRESENCE_TTL`, in seconds: how long a member stays listed after its last
/// sign of life (a poll, or its last stream closing) when it did not say it left. Long enough
/// for a page to reconnect after a relay restart (or a short poller to poll again) without
/// flickering out and back in; short enough that a vanished tab is gone within half a minute.
pub const DEFAULT_PRESENCE_TTL_SECS: u64 = 30;

/// Shortest and longest client id, in bytes.
pub const CLIENT_ID_LEN: std::ops::RangeInclusive<usize> = 8..=64;

/// Whether `id` is a valid client id (`client=` on the stream and poll URLs, `client` in
/// request bodies): 8 to 64 bytes of `A-Z a-z 0-9 . _ : -`, like an idempotency key. It is
/// the tab's secret: the relay never shows it, only a digest of it ([`Member::id`]).
pub fn is_valid_client_id(id: &str) -> bool {
    CLIENT_ID_LEN.contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// One member of a room, as everyone sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's public id: a digest of its client id, the same on every relay, telling
    /// apart two members of the same name. Not the client id, which only its tab knows.
    pub id: String,
    pub name: String,
    /// The transports it follows the room with now (more than one while it switches), or
    /// the last one it used while it is reconnecting.
    pub transports: Vec<Transport>,
}

/// Who is in a room: the welcome's `presence` and the answer of `GET …/presence`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PresenceSnapshot {
    /// At most [`MAX_LISTED_MEMBERS`], in the order they joined.
    pub members: Vec<Member>,
    /// How many members the room has (exact, whatever the list holds).
    pub count: u64,
    /// In a welcome: the public id of the member this connection belongs to, so that a page
    /// can tell itself in the list (and ignore its own typing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub you: Option<String>,
}

/// A `presence` event: who joined (or changed transports) and who left since the last one.
/// Changes are gathered for a moment before they are sent, so a crowd reconnecting at once is
/// a few events, not one per person.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PresenceChange {
    /// Members new to the room, or whose transports changed (the same `id` again: replace).
    pub joined: Vec<Member>,
    /// Public ids of members that left.
    pub left: Vec<String>,
    /// The room's member count after the change.
    pub count: u64,
    /// Present when the receiver may have missed changes (a poller new to this relay, a
    /// stream that fell behind): the whole list (at most [`MAX_LISTED_MEMBERS`]), which
    /// replaces what the receiver has; `joined` and `left` are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    /// With `members`, to a poller: its own public id (see [`PresenceSnapshot::you`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub you: Option<String>,
}

/// A `typing` event: `name` is typing now. Shown for [`TYPING_SHOWN_MS`] or until a message
/// from `name` arrives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Typing {
    pub name: String,
    /// The typist's public id ([`Member::id`]): a page ignores its own.
    pub id: String,
}

/// `POST /api/rooms/{room}/presence` body: `{"client":ID,"leave":true}` says the tab is
/// leaving (a page sends it with `navigator.sendBeacon` on `pagehide`), so the others see it
/// go at once rather than after `RELAY_PRESENCE_TTL`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PresenceRequest {
    pub client: String,
    #[serde(default)]
    pub leave: bool,
}

/// `POST /api/rooms/{room}/typing` body (the non-WebSocket transports' typing signal). The
/// name shown is the member's, as its stream or poll gave it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TypingRequest {
    pub client: String,
}

/// The answer to a typing signal: `sent` is false when it came within [`TYPING_EVERY_MS`] of
/// the client's previous one and was dropped.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingResponse {
    pub sent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_take_the_key_alphabet_and_8_to_64_bytes() {
        assert!(is_valid_client_id("tab-3f9c.12:7_a"));
        assert!(is_valid_client_id(&"c".repeat(64)));
        for bad in ["", "short", "a b c d e f", "ééééé", &"c".repeat(65)] {
            assert!(!is_valid_client_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_change_without_a_resync_has_no_members_field() {
        let change = PresenceChange {
            joined: vec![Member {
                id: "ab".into(),
                name: "Ana".into(),
                transports: vec![Transport::Ws, Transport::Sse],
            }],
            left: vec!["cd".into()],
            count: 1,
            members: None,
            you: None,
        };
        assert_eq!(
            serde_json::to_string(&change).expect("serializes"),
            r#"{"joined":[{"id":"ab","name":"Ana","transports":["ws","sse"]}],"left":["cd"],"count":1}"#
        );
    }
}
