//! Which links are open and which one is current: the bookkeeping behind make-before-break
//! switching, kept apart from the links themselves (`crate::transport`) so it is testable.

use protocol::Transport;

use super::Wait;

/// Connection state of one link, as the status line shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkState {
    Connecting,
    Live,
    /// Lost; the next attempt follows this wait after the loss.
    Retrying(Wait),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Why;

    const WAIT: Wait = Wait {
        ms: 500,
        why: Why::Lost,
    };

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
        assert_eq!(links.set_state(a, LinkState::Retrying(WAIT)), [a]);
        assert_eq!(links.open_ids(), [b]);
        // The current link losing its connection is retried, not closed.
        assert!(links.set_state(b, LinkState::Retrying(WAIT)).is_empty());
        assert_eq!(
            links.current(),
            Some((b, Transport::Sse, LinkState::Retrying(WAIT)))
        );
    }
}
