//! Long and short polling links: repeated `GET …/messages` from the link's own cursor.

use std::rc::Rc;

use protocol::limits::DEFAULT_LONGPOLL_MAX_SECS;
use protocol::{ErrorBody, PollResponse, ServerEvent, Transport, Welcome};
use web_sys::AbortSignal;

use super::{LinkContext, LinkEvent, advise_from};
use crate::model::{Backoff, Cursor, Inbound, Why};
use crate::{api, browser};

/// Messages per answer when catching up; `more` asks for the rest at once.
const PAGE: u32 = 200;

pub async fn run(ctx: Rc<LinkContext>, signal: Option<AbortSignal>) {
    let long = ctx.transport == Transport::Longpoll;
    let mut backoff = Backoff::default();
    let mut cursor = (ctx.cursor)();
    let mut epoch: Option<String> = None;
    // Where the link stands in the room's presence and typing events.
    let mut ev: Option<String> = None;
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
        let url = api::poll_url(&ctx.room, wait, limit, ctx.member(), ev.as_deref(), &cursor);
        let answer = match fetch(&url, signal.as_ref()).await {
            Polled::Answer(size, answer) => {
                ctx.emit(LinkEvent::Bytes(size));
                answer
            }
            Polled::Refused(error) => {
                advise_from(&mut backoff, &error);
                epoch = None;
                ctx.lost(&mut backoff).await;
                continue;
            }
            Polled::Failed => {
                epoch = None;
                ctx.lost(&mut backoff).await;
                continue;
            }
        };
        backoff.connected(browser::now_ms());
        // The first answer after (re)connecting, or one from a new epoch, plays the part of
        // the welcome: a loss forgets the epoch, so that the link is seen live again.
        if epoch.as_deref() != Some(answer.epoch.as_str()) {
            epoch = Some(answer.epoch.clone());
            ctx.emit(LinkEvent::Inbound(Inbound::Welcome(Welcome {
                transport: ctx.transport,
                room: ctx.room.clone(),
                epoch: answer.epoch.clone(),
                last_id: answer.last_id,
                // The answer's events carry the list (`members`) when the link is new here.
                presence: None,
            })));
        }
        if answer.ev.is_some() {
            ev = answer.ev;
        }
        for event in answer.events {
            ctx.handle(Some(event), &mut backoff);
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
        // A poll answered by a relay that is shutting down: come back as advised.
        if let Some(ms) = answer.retry_after_ms {
            backoff.advise(ms, Why::Restarting);
            epoch = None;
            ctx.lost(&mut backoff).await;
            continue;
        }
        if !long && !answer.more {
            let interval = ctx.poll_interval_ms.get();
            gloo_timers::future::TimeoutFuture::new(interval).await;
        }
    }
}

/// What one poll brought.
enum Polled {
    /// The answer, and its size.
    Answer(usize, PollResponse),
    /// The relay refused it, saying why (and perhaps when to come back).
    Refused(ErrorBody),
    /// Network failure, or an answer that is not the relay's.
    Failed,
}

async fn fetch(url: &str, signal: Option<&AbortSignal>) -> Polled {
    let Ok(answer) = crate::fetch::get(url, signal).await else {
        return Polled::Failed;
    };
    if !answer.ok() {
        return match crate::json::event(&answer.body) {
            Some(ServerEvent::Error(error)) => Polled::Refused(error),
            _ => Polled::Failed,
        };
    }
    match crate::json::poll(&answer.body) {
        Some(poll) => Polled::Answer(answer.body.len(), poll),
        None => Polled::Failed,
    }
}
