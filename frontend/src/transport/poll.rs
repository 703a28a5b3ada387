//! Long and short polling links: repeated `GET …/messages` from the link's own cursor.

use std::rc::Rc;

use protocol::limits::DEFAULT_LONGPOLL_MAX_SECS;
use protocol::{PollResponse, Transport, Welcome};
use web_sys::AbortSignal;

use super::{LinkContext, LinkEvent};
use crate::api;
use crate::model::{Backoff, Cursor, Inbound};

/// Messages per answer when catching up; `more` asks for the rest at once.
const PAGE: u32 = 200;

pub async fn run(ctx: Rc<LinkContext>, signal: Option<AbortSignal>) {
    let long = ctx.transport == Transport::Longpoll;
    let mut backoff = Backoff::default();
    let mut cursor = (ctx.cursor)();
    let mut epoch: Option<String> = None;
    loop {
        ctx.emit(LinkEvent::Attempt);
        // The first request answers at once, so the link learns the room's epoch and head
        // (and the user sees it connected) without waiting for the next message.
        // Later ones ask for the relay's default hold; a relay configured for less caps it.
        let wait = if long && epoch.is_some() {
            DEFAULT_LONGPOLL_MAX_SECS
        } else {
            0
        };
        // A newcomer gets the relay's default history; a resuming link pages through.
        let limit = cursor.after.is_some().then_some(PAGE);
        let url = api::poll_url(&ctx.room, wait, limit, &cursor);
        let Some(answer) = fetch(&url, signal.as_ref()).await else {
            ctx.lost(&mut backoff).await;
            continue;
        };
        ctx.emit(LinkEvent::Bytes(answer.0));
        let answer = answer.1;
        backoff.reset();
        // The first answer (or one from a new epoch) plays the part of the welcome.
        if epoch.as_deref() != Some(answer.epoch.as_str()) {
            epoch = Some(answer.epoch.clone());
            ctx.emit(LinkEvent::Inbound(Inbound::Welcome(Welcome {
                transport: ctx.transport,
                room: ctx.room.clone(),
                epoch: answer.epoch.clone(),
                last_id: answer.last_id,
            })));
        }
        if let Some(reset) = answer.reset {
            ctx.emit(LinkEvent::Inbound(Inbound::Reset(reset)));
        }
        for message in answer.messages {
            ctx.emit(LinkEvent::Inbound(Inbound::Message(message)));
        }
        cursor = Cursor {
            after: Some(answer.last_id),
            epoch: Some(answer.epoch),
        };
        if !long && !answer.more {
            let interval = ctx.poll_interval_ms.get();
            gloo_timers::future::TimeoutFuture::new(interval).await;
        }
    }
}

/// One poll: the answer and its size, or `None` on any failure (network, status, body).
async fn fetch(url: &str, signal: Option<&AbortSignal>) -> Option<(usize, PollResponse)> {
    let answer = crate::fetch::get(url, signal).await.ok()?;
    if !answer.ok() {
        return None;
    }
    let poll = serde_json::from_str(&answer.body).ok()?;
    Some((answer.body.len(), poll))
}
