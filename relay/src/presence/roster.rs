//! A room's members as this relay knows them, in the order they joined: what snapshots list.
//!
//! In memory it is the truth, changed by each tick's diff of the relay's members (see
//! `Presence`). With Redis it is a mirror of the room's members there, loaded when the relay
//! first needs it and changed by every relay's announcements.

use std::collections::HashMap;

use protocol::presence::MAX_LISTED_MEMBERS;
use protocol::{Member, PresenceChange, PresenceSnapshot};

use super::member::MemberId;

#[derive(Debug, Default)]
pub struct Roster {
    /// Each member, with the order it joined in.
    members: HashMap<MemberId, (u64, Member)>,
    joined: u64,
}

impl Roster {
    pub fn count(&self) -> u64 {
        self.members.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn get(&self, id: &MemberId) -> Option<&Member> {
        self.members.get(id).map(|(_, member)| member)
    }

    pub fn ids(&self) -> impl Iterator<Item = &MemberId> {
        self.members.keys()
    }

    /// Adds `member`, or replaces it in place (a change of transports keeps its place).
    pub fn put(&mut self, member: Member) {
        let id = MemberId::from_public(&member.id);
        match self.members.get_mut(&id) {
            Some((_, listed)) => *listed = member,
            None => {
                self.joined += 1;
                self.members.insert(id, (self.joined, member));
            }
        }
    }

    pub fn remove(&mut self, id: &MemberId) -> bool {
        self.members.remove(id).is_some()
    }

    /// Applies an announced change; the whole list when it carries one.
    pub fn apply(&mut self, change: &PresenceChange) {
        if let Some(members) = &change.members {
            // Those still there keep their place (and a reload that finds nothing new
            // changes nothing).
            let listed: std::collections::HashSet<&str> =
                members.iter().map(|m| m.id.as_str()).collect();
            self.members.retain(|id, _| listed.contains(id.as_str()));
            for member in members {
                self.put(member.clone());
            }
        }
        for member in &change.joined {
            self.put(member.clone());
        }
        for id in &change.left {
            self.remove(&MemberId::from_public(id));
        }
    }

    /// The first [`MAX_LISTED_MEMBERS`] members to have joined, and the exact count.
    pub fn snapshot(&self, you: Option<&MemberId>) -> PresenceSnapshot {
        let mut listed: Vec<&(u64, Member)> = self.members.values().collect();
        listed.sort_unstable_by_key(|(order, _)| *order);
        PresenceSnapshot {
            members: listed
                .into_iter()
                .take(MAX_LISTED_MEMBERS)
                .map(|(_, member)| member.clone())
                .collect(),
            count: self.count(),
            you: you.map(MemberId::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::Transport;

    use super::*;

    fn member(id: &str, transport: Transport) -> Member {
        Member {
            id: id.into(),
            name: id.to_uppercase(),
            transports: vec![transport],
        }
    }

    #[test]
    fn snapshots_list_in_join_order_capped_with_the_exact_count() {
        let mut roster = Roster::default();
        for i in 0..MAX_LISTED_MEMBERS + 5 {
            roster.put(member(&format!("m{i:04}"), Transport::Ws));
        }
        // A change of transports keeps the member's place.
        roster.put(member("m0000", Transport::Sse));
        let snapshot = roster.snapshot(None);
        assert_eq!(snapshot.count, (MAX_LISTED_MEMBERS + 5) as u64);
        assert_eq!(snapshot.members.len(), MAX_LISTED_MEMBERS);
        assert_eq!(snapshot.members[0].id, "m0000");
        assert_eq!(snapshot.members[0].transports, [Transport::Sse]);
        assert_eq!(snapshot.members[1].id, "m0001");
    }

    #[test]
    fn changes_apply_joins_leaves_and_whole_lists() {
        let mut roster = Roster::default();
        roster.apply(&PresenceChange {
            joined: vec![member("a", Transport::Ws), member("b", Transport::Sse)],
            ..PresenceChange::default()
        });
        roster.apply(&PresenceChange {
            left: vec!["a".into()],
            ..PresenceChange::default()
        });
        assert_eq!(roster.count(), 1);
        roster.apply(&PresenceChange {
            members: Some(vec![member("c", Transport::Longpoll)]),
            ..PresenceChange::default()
        });
        let ids: Vec<String> = roster
            .snapshot(None)
            .members
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["c"]);
        // A whole list that holds what is there already changes nothing, order included.
        roster.put(member("d", Transport::Ws));
        let before = roster.snapshot(None);
        roster.apply(&PresenceChange {
            members: Some(vec![
                member("d", Transport::Ws),
                member("c", Transport::Longpoll),
            ]),
            ..PresenceChange::default()
        });
        assert_eq!(roster.snapshot(None), before);
    }
}
