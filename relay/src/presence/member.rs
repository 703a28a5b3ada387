//! One member as this relay knows it: its public id, and the connections and polls that
//! keep it present here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{Member, Transport};

use crate::client::ClientKey;

/// A member's public id: the first 16 hex digits of the SHA-256 of its client id. The same
/// on every relay (so that several relays agree on who is who) and not the client id itself,
/// which is the tab's secret: anyone who knew it could make the tab "leave" or type as it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(Arc<str>);

impl MemberId {
    /// The public id of the tab whose (valid) client id is `client`.
    pub fn of_client(client: &str) -> MemberId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(client.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        MemberId(Arc::from(hex))
    }

    /// An id as it came back from Redis or a client (already public).
    pub fn from_public(id: &str) -> MemberId {
        MemberId(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What keeps one member present on this relay.
#[derive(Debug, Clone)]
pub struct Local {
    pub name: Arc<str>,
    /// Open streams (and pending long polls), per transport.
    streams: [u32; Transport::ALL.len()],
    /// The transport it used last: listed while it has no stream open (it is polling, or
    /// reconnecting).
    last: Transport,
    /// Its last sign of life: a poll, a publish, a stream closing.
    seen: Instant,
    /// It said it left (`POST …/presence` with `leave`): not listed until its next sign of
    /// life, and forgotten once its last stream closes.
    gone: bool,
    /// The address that brought it in, charged for it (see `Presence`'s budgets).
    pub owner: ClientKey,
    /// Whether it stays for the TTL after its last stream closes. Not for a member nobody
    /// can name again (a stream without a client id), nor for one brought in past its
    /// address's budget: one address churning connections under made-up ids cannot keep
    /// more members lingering than its budget.
    pub grace: bool,
}

impl Local {
    pub fn new(name: &str, transport: Transport, owner: ClientKey, now: Instant) -> Local {
        Local {
            name: Arc::from(name),
            streams: [0; Transport::ALL.len()],
            last: transport,
            seen: now,
            gone: false,
            owner,
            grace: true,
        }
    }

    /// A stream (or long poll) of `transport` opened.
    pub fn attach(&mut self, name: &str, transport: Transport, now: Instant) {
        self.streams[transport.index()] += 1;
        self.signs_of_life(name, transport, now);
    }

    /// A stream of `transport` closed: the member stays for the TTL from now, unless another
    /// stream is open or it comes back.
    pub fn detach(&mut self, transport: Transport, now: Instant) {
        let open = &mut self.streams[transport.index()];
        *open = open.saturating_sub(1);
        self.seen = now;
        if !self.grace && !self.has_streams() {
            self.gone = true;
        }
    }

    /// A poll (or any request naming the client) of `transport` arrived.
    pub fn signs_of_life(&mut self, name: &str, transport: Transport, now: Instant) {
        if *self.name != *name {
            self.name = Arc::from(name);
        }
        self.last = transport;
        self.seen = now;
        self.gone = false;
    }

    /// A publish or a typing signal: alive, on whatever transport it was (and back, if it
    /// had said it left: a restored page, or the twin of a duplicated tab).
    pub fn touch(&mut self, now: Instant) {
        self.seen = now;
        if self.has_streams() || self.grace {
            self.gone = false;
        }
    }

    pub fn leave(&mut self) {
        self.gone = true;
    }

    pub fn has_streams(&self) -> bool {
        self.streams.iter().any(|&n| n > 0)
    }

    /// Whether it is listed now.
    pub fn present(&self, now: Instant, ttl: Duration) -> bool {
        !self.gone && (self.has_streams() || now.saturating_duration_since(self.seen) < ttl)
    }

    /// Whether this relay can forget it: it is neither listed nor connected.
    pub fn forgettable(&self, now: Instant, ttl: Duration) -> bool {
        !self.has_streams() && !self.present(now, ttl)
    }

    /// When it stops being present unless something happens: a TTL from now while a stream
    /// is open (the next refresh moves it on), a TTL after its last sign of life otherwise.
    pub fn deadline(&self, now: Instant, ttl: Duration) -> Instant {
        if self.has_streams() {
            now + ttl
        } else {
            self.seen + ttl
        }
    }

    /// Transports with a stream open, in `Transport::ALL` order; the last one used when
    /// none is.
    pub fn transports(&self) -> Vec<Transport> {
        self.listed_transports().collect()
    }

    fn listed_transports(&self) -> impl Iterator<Item = Transport> + '_ {
        let open = self.has_streams();
        Transport::ALL.into_iter().filter(move |t| {
            if open {
                self.streams[t.index()] > 0
            } else {
                *t == self.last
            }
        })
    }

    /// Whether `member` is how others see it now (compared without building a [`Member`]:
    /// each tick asks this of every member).
    pub fn is_described_by(&self, member: &Member) -> bool {
        *self.name == *member.name
            && self
                .listed_transports()
                .eq(member.transports.iter().copied())
    }

    /// How others see it.
    pub fn member(&self, id: &MemberId) -> Member {
        Member {
            id: id.to_string(),
            name: self.name.to_string(),
            transports: self.transports(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> ClientKey {
        ClientKey::of("127.0.0.1".parse().expect("address"))
    }

    #[test]
    fn public_ids_are_stable_digests_not_the_client_id() {
        let a = MemberId::of_client("tab-0123456789");
        assert_eq!(a, MemberId::of_client("tab-0123456789"));
        assert_ne!(a, MemberId::of_client("tab-0123456780"));
        assert_eq!(a.as_str().len(), 16);
        assert!(!a.as_str().contains("tab"));
    }

    #[test]
    fn a_switch_keeps_the_member_and_lists_what_is_open_or_last_used() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut local = Local::new("Ana", Transport::Ws, owner(), t0);
        local.attach("Ana", Transport::Ws, t0);
        assert_eq!(local.transports(), [Transport::Ws]);
        // Make before break: the new stream opens before the old one closes.
        local.attach("Ana", Transport::Sse, t0);
        assert_eq!(local.transports(), [Transport::Ws, Transport::Sse]);
        local.detach(Transport::Ws, t0);
        assert_eq!(local.transports(), [Transport::Sse]);
        // The stream drops: still listed, under the transport it will come back on.
        local.detach(Transport::Sse, t0);
        assert!(local.present(t0 + ttl / 2, ttl));
        assert_eq!(local.transports(), [Transport::Sse]);
        assert!(!local.present(t0 + ttl, ttl), "gone a TTL after the close");
        assert!(local.forgettable(t0 + ttl, ttl));
    }

    #[test]
    fn a_description_matches_only_the_same_name_and_transports() {
        let t0 = Instant::now();
        let id = MemberId::of_client("client-ana-1");
        let mut local = Local::new("Ana", Transport::Ws, owner(), t0);
        local.attach("Ana", Transport::Ws, t0);
        let listed = local.member(&id);
        assert!(local.is_described_by(&listed));
        local.attach("Ana", Transport::Sse, t0);
        assert!(!local.is_described_by(&listed), "a transport more");
        assert!(local.is_described_by(&local.member(&id)));
        local.signs_of_life("Ana B", Transport::Sse, t0);
        let renamed = local.member(&id);
        assert_eq!(renamed.name, "Ana B");
        assert!(!local.is_described_by(&Member {
            name: "Ana".into(),
            ..renamed.clone()
        }));
        // No stream open: described by the last transport alone.
        local.detach(Transport::Ws, t0);
        local.detach(Transport::Sse, t0);
        assert!(local.is_described_by(&Member {
            transports: vec![Transport::Sse],
            ..renamed
        }));
    }

    #[test]
    fn a_leave_hides_it_until_its_next_sign_of_life() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let mut local = Local::new("Bo", Transport::Shortpoll, owner(), t0);
        assert!(local.present(t0, ttl), "a poll makes it present");
        local.leave();
        assert!(!local.present(t0, ttl));
        local.signs_of_life("Bo", Transport::Shortpoll, t0);
        assert!(
            local.present(t0, ttl),
            "back after the leave (a page restored)"
        );
        assert_eq!(local.deadline(t0, ttl), t0 + ttl);
        local.attach("Bo", Transport::Ws, t0 + ttl);
        assert_eq!(
            local.deadline(t0 + ttl * 2, ttl),
            t0 + ttl * 3,
            "a stream keeps it"
        );
    }
}
