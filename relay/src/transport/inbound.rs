//! What a client sends on a two-way transport (WebSocket, WebTransport): text frames that
//! publish a message (`{"type":"send","text":…,"key":…}`, or bare text as the tutorial sends
//! it) or say the client is typing (`{"type":"typing"}`). Each transport frames the text its
//! own way; what a frame means, and what answers it, is decided here once.

use std::time::Instant;

use protocol::{Ack, ClientFrame, ServerEvent};

use super::OpenStream;
use crate::bus::Draft;
use crate::client::ClientKey;
use crate::error::ApiError;
use crate::metrics::Via;
use crate::rate::TokenBucket;
use crate::state::AppState;
use crate::validate;

/// A connection's sending side: its own budget, and whose shared budgets it spends.
pub struct Inbound {
    state: AppState,
    /// This connection's own send budget (`RELAY_RATE`).
    bucket: TokenBucket,
    /// Whose publish budget (`RELAY_CLIENT_RATE`) this connection's messages also spend.
    client: ClientKey,
    via: Via,
}

impl Inbound {
    pub fn new(state: &AppState, client: ClientKey, via: Via) -> Inbound {
        Inbound {
            bucket: TokenBucket::new(state.config.rate_limit(), Instant::now()),
            state: state.clone(),
            client,
            via,
        }
    }

    /// Handles one text frame; returns what to answer with: an `ack` for a keyed send, an
    /// `error` (naming the send's key) for a refused one, nothing otherwise. A refusal keeps
    /// the connection open.
    pub async fn frame(&mut self, stream: &OpenStream, frame: &str) -> Option<ServerEvent> {
        if is_typing(frame) {
            // A hint: one too many is dropped, not answered (see `presence`). Each spends the
            // client's request budget, as a `POST …/typing` would.
            if self
                .state
                .budgets
                .requests
                .take(self.client, Instant::now())
                .is_ok()
            {
                self.state.presence.typing(&stream.room, stream.member.id());
            } else {
                stream.conn.metrics.typing(false);
            }
            return None;
        }
        match self.publish(stream, frame).await {
            Ok(None) => None,
            // A keyed send is answered with its id: how the sender learns that a repeat was
            // not stored again (its first copy is the message it already has).
            Ok(Some(ack)) => Some(ServerEvent::Ack(ack)),
            Err(err) => {
                tracing::debug!(peer = %stream.conn.peer, code = err.code.as_str(), "frame refused");
                stream.conn.metrics.rejected(err.code.as_str());
                let mut event = err.event();
                // The sender learns which of its sends this is about (refused frames are rare:
                // reading the key again costs nothing on the way of accepted ones).
                if let ServerEvent::Error(body) = &mut event {
                    body.key = frame_key(frame);
                }
                Some(event)
            }
        }
    }

    async fn publish(&mut self, stream: &OpenStream, frame: &str) -> Result<Option<Ack>, ApiError> {
        let now = Instant::now();
        self.bucket.take(now).map_err(ApiError::rate_limited)?;
        self.state
            .budgets
            .publish
            .take(self.client, now)
            .map_err(ApiError::rate_limited)?;
        // A frame that looks like JSON must be a valid client frame; anything else is the
        // message text itself, as the tutorial's `webSocket.send('hello')` sends it.
        let (text, key) = if frame.trim_start().starts_with('{') {
            match serde_json::from_str(frame)? {
                ClientFrame::Send { text, key } => (text, key),
                ClientFrame::Typing => return Ok(None),
            }
        } else {
            (frame.to_owned(), None)
        };
        let text = self.state.limits.text(&text)?;
        let key = key.as_deref().map(validate::key).transpose()?;
        let draft = Draft {
            from: &stream.name,
            text: &text,
            key,
        };
        let published = self.state.publish(&stream.room, draft, self.client).await?;
        if !published.duplicate {
            stream.conn.metrics.published(self.via);
        }
        Ok(key.map(|key| Ack {
            id: published.id,
            key: key.to_owned(),
            duplicate: published.duplicate,
        }))
    }
}

/// The key of a send frame, if it is one and has a valid key.
fn frame_key(frame: &str) -> Option<String> {
    if !frame.trim_start().starts_with('{') {
        return None;
    }
    match serde_json::from_str(frame) {
        Ok(ClientFrame::Send { key, .. }) => key.filter(|k| validate::key(k).is_ok()),
        Ok(ClientFrame::Typing) | Err(_) => None,
    }
}

/// Whether a text frame is a typing signal (`{"type":"typing"}`): checked before anything
/// else is parsed, since a typist sends one every couple of seconds.
fn is_typing(frame: &str) -> bool {
    let frame = frame.trim();
    frame.starts_with('{')
        && frame.contains("\"typing\"")
        && matches!(serde_json::from_str(frame), Ok(ClientFrame::Typing))
}
