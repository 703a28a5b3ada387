//! Presence shared by several relays through Redis.
//!
//! Each room's members are a sorted set of public ids scored by when each expires (Redis's
//! clock), with a hash of their details beside it. Every relay's tick refreshes the members
//! it holds, removes those that said they left, sweeps those whose time ran out, and — in the
//! same script, so that no two relays remove (and announce) the same leave — publishes what
//! changed on one channel, with the room's typing signals. Every relay applies those
//! announcements to its mirror of the room's list ([`super::roster::Roster`]) and hands them
//! to its streams and pollers. A relay that dies stops refreshing its members: another relay's
//! sweep removes them once their time is up, each announced once.
//!
//! Pub/sub delivers at most once: whenever the subscription (re)starts, every room's mirror is
//! loaded again, and its streams are sent the whole list.

use std::sync::Weak;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script};
use futures_util::StreamExt;
use protocol::{Member, ServerEvent};

use super::Inner;
use crate::validate::RoomName;

/// The channel of presence announcements, for every room. Versioned with their format.
pub const CHANNEL: &str = "chat:presence:1";

/// Most members a relay loads into its mirror of a room (Lua's `unpack` has a bound, and a
/// list is for reading: snapshots show the first `MAX_LISTED_MEMBERS`).
const LOAD_MAX: usize = 5_000;

/// How long a room's presence keys outlive their last refresh: nobody refreshes a room whose
/// relays all went away, and its keys should not stay forever.
fn keep(ttl: Duration) -> Duration {
    ttl * 2 + Duration::from_secs(60)
}

fn members_key(room: &str) -> String {
    format!("chat:{{{room}}}:presence")
}

fn details_key(room: &str) -> String {
    format!("chat:{{{room}}}:presence:members")
}

/// What one relay's tick sends for one room.
#[derive(Debug, Default)]
pub struct Job {
    /// Its present members: public id, time to live, details JSON, whether the details
    /// changed since it last said.
    pub entries: Vec<(String, u64, String, bool)>,
    /// Public ids of members that said they left.
    pub leaves: Vec<String>,
    /// Typing events, as a JSON array (`[]` for none).
    pub typing: String,
}

pub struct Store {
    conn: ConnectionManager,
    client: Client,
    tick: Script,
    load: Script,
    timeout: Duration,
    ttl: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Connects lazily, as the bus does: the relay starts while Redis is down.
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Store, RedisError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Store {
            conn: ConnectionManager::new_lazy_with_config(client.clone(), config)?,
            client,
            tick: Script::new(include_str!("lua/tick.lua")),
            load: Script::new(include_str!("lua/load.lua")),
            timeout,
            ttl,
        })
    }

    /// Runs one room's tick; the room's member count after it.
    pub async fn tick(&self, room: &RoomName, job: &Job) -> Result<u64, RedisError> {
        let mut invocation = self.tick.prepare_invoke();
        invocation
            .key(members_key(room.as_str()))
            .key(details_key(room.as_str()))
            .arg(room.as_str())
            .arg(CHANNEL)
            .arg(&job.typing)
            .arg(keep(self.ttl).as_millis() as u64)
            .arg(job.entries.len());
        for (id, ttl_ms, details, changed) in &job.entries {
            invocation
                .arg(id)
                .arg(*ttl_ms)
                .arg(details)
                .arg(if *changed { "1" } else { "0" });
        }
        for id in &job.leaves {
            invocation.arg(id);
        }
        let mut conn = self.conn.clone();
        invocation.invoke_async(&mut conn).await
    }

    /// The room's members now.
    pub async fn load(&self, room: &RoomName) -> Result<Vec<Member>, RedisError> {
        let mut conn = self.conn.clone();
        let details: Vec<Option<String>> = self
            .load
            .key(members_key(room.as_str()))
            .key(details_key(room.as_str()))
            .arg(LOAD_MAX)
            .invoke_async(&mut conn)
            .await?;
        Ok(details
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// One announcement from the channel.
#[derive(Debug, PartialEq)]
pub struct Announcement {
    pub room: String,
    pub count: u64,
    pub left: Vec<String>,
    /// Those of `left` that said they left (the others' time ran out).
    pub said: Vec<String>,
    pub typing: Vec<ServerEvent>,
    pub joined: Vec<Member>,
}

impl Announcement {
    /// `room\ncount\nleft ids\nids that said they left\ntyping JSON array\nmember JSON…`
    /// (ids comma-separated; see
    /// `lua/tick.lua`); `None` if it is not one (network input: never a panic).
    pub fn parse(payload: &[u8]) -> Option<Announcement> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut lines = text.split('\n');
        let room = lines.next()?.to_owned();
        let count = lines.next()?.parse().ok()?;
        let ids = |line: &str| -> Vec<String> {
            line.split(',')
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let left = ids(lines.next()?);
        let said = ids(lines.next()?);
        let typing = serde_json::from_str(lines.next()?).ok()?;
        let joined = lines
            .map(serde_json::from_str)
            .collect::<Result<Vec<Member>, _>>()
            .ok()?;
        Some(Announcement {
            room,
            count,
            left,
            said,
            typing,
            joined,
        })
    }
}

/// Keeps the relay subscribed to [`CHANNEL`], handing each announcement to the rooms here,
/// and reloading every room's list whenever the subscription (re)starts. Ends with the
/// presence it serves.
pub async fn listen(presence: Weak<Inner>, client: Client, timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, RedisError>(pubsub)
        };
        match tokio::time::timeout(timeout, subscribe).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                match presence.upgrade() {
                    Some(inner) => inner.reload_all(),
                    None => return,
                }
                let mut messages = pubsub.into_on_message();
                // A silent channel cannot tell a quiet relay set from a dead connection:
                // the ticks' own calls notice a dead Redis, and the connection's end ends this.
                while let Some(message) = messages.next().await {
                    let Some(inner) = presence.upgrade() else {
                        return;
                    };
                    match Announcement::parse(message.get_payload_bytes()) {
                        Some(announcement) => inner.announced(announcement),
                        None => {
                            tracing::debug!("ignoring a presence announcement of another shape")
                        }
                    }
                }
                tracing::debug!("lost the presence subscription; resubscribing");
            }
            Ok(Err(err)) => tracing::debug!(%err, "cannot subscribe to presence; retrying"),
            Err(_) => tracing::debug!("presence subscription timed out; retrying"),
        }
        if presence.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl Store {
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

#[cfg(test)]
mod tests {
    use protocol::Transport;

    use super::*;

    #[test]
    fn announcements_parse_and_anything_else_is_refused() {
        let payload = concat!(
            "lobby\n2\nab,cd\ncd\n",
            r#"[{"type":"typing","name":"Ana","id":"ef"}]"#,
            "\n",
            r#"{"id":"ef","name":"Ana","transports":["ws"]}"#
        );
        let parsed = Announcement::parse(payload.as_bytes()).expect("parses");
        assert_eq!(parsed.room, "lobby");
        assert_eq!(parsed.count, 2);
        assert_eq!(parsed.left, ["ab", "cd"]);
        assert_eq!(parsed.said, ["cd"]);
        assert_eq!(parsed.typing.len(), 1);
        assert_eq!(parsed.joined[0].transports, [Transport::Ws]);
        let quiet = Announcement::parse(b"lobby\n0\n\n\n[]").expect("parses");
        assert!(quiet.left.is_empty() && quiet.joined.is_empty());
        for bad in [
            &b"lobby"[..],
            b"lobby\nx\n\n\n[]",
            b"lobby\n1\n\n\nnot json",
            b"lobby\n1\n\n[]",
            b"\xff",
        ] {
            assert_eq!(Announcement::parse(bad), None);
        }
    }
}
