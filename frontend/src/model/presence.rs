//! Who is here and who is typing, as the page shows it: the room's members from the
//! welcome's snapshot and the `presence` events after it, and the typing line.

use protocol::presence::TYPING_SHOWN_MS;
use protocol::{Member, PresenceChange, PresenceSnapshot, Typing};

#[derive(Debug, Default)]
pub struct Roster {
    /// In the order they arrived.
    members: Vec<Member>,
    count: u64,
    /// This tab's public id, from its welcome (or a poll's whole list).
    you: Option<String>,
    /// Who is typing, until when (`now_ms` clock), oldest first.
    typing: Vec<(Typing, f64)>,
}

impl Roster {
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn you(&self) -> Option<&str> {
        self.you.as_deref()
    }

    /// The whole list (a welcome): replaces what the page had.
    pub fn snapshot(&mut self, snapshot: PresenceSnapshot) {
        self.members = snapshot.members;
        self.count = snapshot.count;
        if snapshot.you.is_some() {
            self.you = snapshot.you;
        }
    }

    /// A `presence` event.
    pub fn change(&mut self, change: PresenceChange) {
        if let Some(members) = change.members {
            self.snapshot(PresenceSnapshot {
                members,
                count: change.count,
                you: change.you,
            });
        }
        for member in change.joined {
            match self.members.iter_mut().find(|m| m.id == member.id) {
                Some(listed) => *listed = member,
                None => self.members.push(member),
            }
        }
        self.members.retain(|m| !change.left.contains(&m.id));
        self.typing.retain(|(t, _)| !change.left.contains(&t.id));
        self.count = change.count;
    }

    /// A `typing` event at `now`: `false` when it is this tab's own (not shown).
    pub fn typing(&mut self, typing: Typing, now: f64) -> bool {
        if self.you.as_deref() == Some(typing.id.as_str()) {
            return false;
        }
        self.typing.retain(|(t, _)| t.id != typing.id);
        self.typing.push((typing, now + TYPING_SHOWN_MS as f64));
        true
    }

    /// A message from `name` arrived: they are no longer typing. `true` if that changed the
    /// line.
    pub fn message_from(&mut self, name: &str) -> bool {
        let before = self.typing.len();
        self.typing.retain(|(t, _)| t.name != name);
        self.typing.len() != before
    }

    /// Drops typing older than [`TYPING_SHOWN_MS`]; `true` if that changed the line.
    pub fn expire(&mut self, now: f64) -> bool {
        let before = self.typing.len();
        self.typing.retain(|(_, until)| *until > now);
        self.typing.len() != before
    }

    /// "Ana is typing…", "Ana and Bo are typing…", "3 people are typing…", or nothing.
    pub fn typing_line(&self) -> String {
        match self.typing.as_slice() {
            [] => String::new(),
            [(one, _)] => format!("{} is typing…", one.name),
            [(a, _), (b, _)] => format!("{} and {} are typing…", a.name, b.name),
            many => format!("{} people are typing…", many.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::Transport;

    use super::*;

    fn member(id: &str, name: &str, t: Transport) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            transports: vec![t],
        }
    }

    fn typing(id: &str, name: &str) -> Typing {
        Typing {
            name: name.into(),
            id: id.into(),
        }
    }

    #[test]
    fn changes_keep_places_replace_transports_and_drop_the_leavers() {
        let mut roster = Roster::default();
        roster.snapshot(PresenceSnapshot {
            members: vec![member("a", "Ana", Transport::Ws)],
            count: 1,
            you: Some("a".into()),
        });
        roster.change(PresenceChange {
            joined: vec![
                member("b", "Bo", Transport::Sse),
                member("a", "Ana", Transport::Longpoll),
            ],
            count: 2,
            ..PresenceChange::default()
        });
        let names: Vec<&str> = roster.members().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Ana", "Bo"]);
        assert_eq!(roster.members()[0].transports, [Transport::Longpoll]);
        roster.change(PresenceChange {
            left: vec!["b".into()],
            count: 1,
            ..PresenceChange::default()
        });
        assert_eq!((roster.members().len(), roster.count()), (1, 1));
        // A whole list replaces everything, and keeps `you` when it does not say.
        roster.change(PresenceChange {
            members: Some(vec![member("c", "Cy", Transport::Shortpoll)]),
            count: 7,
            ..PresenceChange::default()
        });
        assert_eq!(
            (roster.members()[0].name.as_str(), roster.count()),
            ("Cy", 7)
        );
        assert_eq!(roster.you(), Some("a"));
    }

    #[test]
    fn the_typing_line_names_one_or_two_and_counts_more() {
        let mut roster = Roster::default();
        roster.snapshot(PresenceSnapshot {
            you: Some("me".into()),
            ..PresenceSnapshot::default()
        });
        assert!(
            !roster.typing(typing("me", "Me"), 0.0),
            "one's own is not shown"
        );
        assert_eq!(roster.typing_line(), "");
        roster.typing(typing("a", "Ana"), 0.0);
        assert_eq!(roster.typing_line(), "Ana is typing…");
        roster.typing(typing("b", "Bo"), 1000.0);
        assert_eq!(roster.typing_line(), "Ana and Bo are typing…");
        roster.typing(typing("c", "Cy"), 1000.0);
        assert_eq!(roster.typing_line(), "3 people are typing…");
        // Ana's message arrives: she is done.
        assert!(roster.message_from("Ana"));
        assert_eq!(roster.typing_line(), "Bo and Cy are typing…");
        // Five seconds after their signal, the others fade.
        assert!(!roster.expire(TYPING_SHOWN_MS as f64));
        assert!(roster.expire(1000.0 + TYPING_SHOWN_MS as f64));
        assert_eq!(roster.typing_line(), "");
    }
}
