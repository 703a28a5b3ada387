//! The four ways a page can follow a room. Each module owns its routes' handlers:
//! - [`ws`]: WebSocket, both directions on one socket;
//! - [`sse`]: Server-Sent Events, server to client (clients publish with `POST`);
//! - [`poll`]: `GET …/messages` for short and long polling, and `POST …/messages` to publish,
//!   which every transport but WebSocket uses.
//!
//! All of them read the same [`Cursor`] and deliver the same pre-serialized messages.

pub mod poll;
pub mod sse;
pub mod ws;

use serde::Deserialize;

use crate::bus::Cursor;
use crate::state::AppState;

/// Query of the streaming endpoints (`/ws` and `/events`).
#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    pub name: Option<String>,
    pub after: Option<u64>,
    pub epoch: Option<String>,
    pub limit: Option<usize>,
}

impl StreamQuery {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            after: self.after,
            epoch: self.epoch.clone().filter(|e| !e.is_empty()),
        }
    }
}

/// How many messages a newcomer is shown: `limit` if given, capped by what is retained.
pub fn join_limit(state: &AppState, limit: Option<usize>) -> usize {
    limit
        .unwrap_or(state.config.join_history)
        .min(state.bus_retention())
}
