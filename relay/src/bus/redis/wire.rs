//! What Redis sends back, parsed: announcements from the channel, the read script's reply and
//! the stream entries in it, our stream ids, and the server version from `INFO`.
//!
//! Nothing here talks to Redis or holds state, so the shapes can be unit-tested without a
//! server. A reply of the wrong shape becomes [`BusError::Unavailable`] (via
//! [`unexpected`]), never a panic: it is network input like any other.

use std::collections::VecDeque;
use std::sync::Arc;

use ::redis::Value;
use protocol::Message;

use crate::bus::{BusError, Envelope};
use crate::validate::RoomName;

/// An announcement: `room\nepoch\nstream id\nts\nkey\nfrom\ntext` (the key empty when the
/// sender gave none; the text may hold line breaks).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Announcement<'a> {
    pub(super) room: &'a str,
    pub(super) epoch: &'a str,
    pub(super) id: u64,
    pub(super) ts: u64,
    pub(super) key: Option<&'a str>,
    pub(super) from: &'a str,
    pub(super) text: &'a str,
}

impl<'a> Announcement<'a> {
    pub(super) fn parse(payload: &'a [u8]) -> Option<Announcement<'a>> {
        let payload = std::str::from_utf8(payload).ok()?;
        let mut parts = payload.splitn(7, '\n');
        Some(Announcement {
            room: parts.next()?,
            epoch: parts.next()?,
            id: parse_id(parts.next()?)?,
            ts: parts.next()?.parse().ok()?,
            key: Some(parts.next()?).filter(|key| !key.is_empty()),
            from: parts.next()?,
            text: parts.next()?,
        })
    }
}

/// `(major, minor)` from the `redis_version:` line of `INFO server`.
pub(super) fn redis_version(info: &str) -> Option<(u32, u32)> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?;
    let mut parts = version.trim().split('.').map(|part| part.parse().ok());
    Some((parts.next()??, parts.next()??))
}

/// Our stream ids are `0-<id>`.
pub(super) fn parse_id(stream_id: &str) -> Option<u64> {
    stream_id.strip_prefix("0-")?.parse().ok()
}

pub(super) fn unexpected(what: &str, got: impl std::fmt::Debug) -> BusError {
    BusError::Unavailable(format!("unexpected reply from Redis for {what}: {got:?}"))
}

/// The read and open scripts' reply: `{epoch, newest id, oldest id, entries[, created]}`.
pub(super) struct View {
    /// Empty for a room that does not exist.
    pub(super) epoch: String,
    pub(super) head: u64,
    pub(super) oldest: u64,
    pub(super) window: VecDeque<Arc<Envelope>>,
    /// Whether the open script brought the room into being.
    pub(super) created: bool,
}

impl View {
    pub(super) fn parse(room: &RoomName, reply: Value) -> Result<View, BusError> {
        let Value::Array(mut parts) = reply else {
            return Err(unexpected("read", reply));
        };
        let created = parts.len() == 5 && matches!(parts.pop(), Some(Value::Int(1)));
        let [epoch, head, oldest, Value::Array(entries)] =
            <[Value; 4]>::try_from(parts).map_err(|parts| unexpected("read", parts))?
        else {
            return Err(unexpected("read", "entries are not an array"));
        };
        let id_of = |value| text_id(value).ok_or_else(|| unexpected("read", "a stream id"));
        let epoch = text(epoch).ok_or_else(|| unexpected("read", "the epoch"))?;
        let window = entries
            .into_iter()
            .map(|entry| entry_envelope(room, &epoch, entry))
            .collect::<Result<_, _>>()?;
        Ok(View {
            epoch,
            head: id_of(head)?,
            oldest: id_of(oldest)?,
            window,
            created,
        })
    }
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// A stream entry `[id, [f, from, t, text, ts, ts]]` as the message it holds.
fn entry_envelope(room: &RoomName, epoch: &str, entry: Value) -> Result<Arc<Envelope>, BusError> {
    let bad = || unexpected("a stream entry", "");
    let Value::Array(parts) = entry else {
        return Err(bad());
    };
    let [id, Value::Array(fields)] = <[Value; 2]>::try_from(parts).map_err(|_| bad())? else {
        return Err(bad());
    };
    let mut fields = fields.into_iter().map(text);
    let mut field = |name: &str| match (fields.next().flatten(), fields.next().flatten()) {
        (Some(key), Some(value)) if key == name => Some(value),
        _ => None,
    };
    let from = field("f").ok_or_else(bad)?;
    let text = field("t").ok_or_else(bad)?;
    let ts = field("ts").and_then(|ts| ts.parse().ok()).ok_or_else(bad)?;
    let _size = field("n");
    let key = field("k");
    let id = text_id(id).ok_or_else(bad)?;
    Ok(Arc::new(Envelope::new(
        Message {
            id,
            room: room.to_string(),
            from,
            text,
            ts,
            key,
        },
        epoch,
    )))
}

fn text_id(value: Value) -> Option<u64> {
    text(value).and_then(|s| parse_id(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_with_line_breaks_in_the_text() {
        let payload = b"lobby\nr1f\n0-42\n1700000000000\ntab.7\nann\nline one\nline two";
        assert_eq!(
            Announcement::parse(payload),
            Some(Announcement {
                room: "lobby",
                epoch: "r1f",
                id: 42,
                ts: 1_700_000_000_000,
                key: Some("tab.7"),
                from: "ann",
                text: "line one\nline two",
            })
        );
        let keyless = Announcement::parse(b"lobby\nr1f\n0-43\n1\n\nann\nhi").expect("parses");
        assert_eq!((keyless.key, keyless.text), (None, "hi"));
    }

    #[test]
    fn malformed_announcements_are_refused() {
        assert_eq!(Announcement::parse(b"lobby\nr1f\n42\n1\na\nt"), None);
        assert_eq!(Announcement::parse(b"lobby\nr1f\n0-42\n1\na"), None);
        assert_eq!(Announcement::parse(b"\xff\nr\n0-1\n1\na\nt"), None);
    }

    #[test]
    fn the_server_version_comes_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info), Some((7, 0)));
        assert_eq!(redis_version("redis_version:6.2.14\r\n"), Some((6, 2)));
        assert_eq!(redis_version("# Server\r\n"), None);
    }

    #[test]
    fn stream_ids_carry_our_ids_in_the_sequence_part() {
        assert_eq!(parse_id("0-7"), Some(7));
        assert_eq!(parse_id("1700000000000-0"), None);
        assert_eq!(parse_id("0-"), None);
    }

    #[test]
    fn stream_entries_become_messages() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = Value::Array(vec![
            bulk("0-3"),
            Value::Array(vec![
                bulk("f"),
                bulk("ann"),
                bulk("t"),
                bulk("hi"),
                bulk("ts"),
                bulk("12"),
            ]),
        ]);
        let room = RoomName::parse("r").expect("valid room");
        let envelope = entry_envelope(&room, "r1", entry).expect("an entry");
        assert_eq!((envelope.id, envelope.ts), (3, 12));
        assert!(
            std::str::from_utf8(&envelope.json)
                .expect("UTF-8")
                .contains(r#""text":"hi""#)
        );
    }
}
