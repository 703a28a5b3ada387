//! Links: one live connection to the relay over one transport, reconnecting by itself.
//!
//! A link runs as one local task that reports [`LinkEvent`]s to its owner. Each transport
//! module turns its wire format into the same [`Inbound`] events (polls synthesise the
//! welcome), so the page merges them without knowing which transport delivered what; each
//! takes its URL from `crate::api`.
//! Dropping a [`Link`] aborts its task, which drops the socket, EventSource, pending fetch or
//! timer it was holding: every browser resource has exactly one owner.

mod listeners;
mod ndjson;
mod poll;
mod sse;
mod stream;
mod ws;
mod wt;

use std::cell::Cell;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{AbortHandle, abortable};
use leptos::task::spawn_local;
use protocol::{ErrorBody, ErrorCode, PresenceChange, ServerEvent, Transport, Typing};
use web_sys::AbortController;

use crate::browser;
use crate::model::{Backoff, Cursor, Inbound, Wait, Why};

/// What a link reports to its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// A connection attempt or HTTP request starts.
    Attempt,
    /// Payload bytes received.
    Bytes(usize),
    Inbound(Inbound),
    /// The relay refused something this link sent (WebSocket error events).
    Refused(ErrorBody),
    /// The relay stored (or had stored) the send with this idempotency key.
    Acked(String),
    /// Who joined and left.
    Presence(PresenceChange),
    /// Someone is typing.
    Typing(Typing),
    /// The connection was lost; the next attempt follows after this wait.
    Lost {
        wait: Wait,
    },
}

/// Everything a link needs from the page.
pub struct LinkContext {
    pub id: u32,
    pub transport: Transport,
    pub room: String,
    pub name: String,
    /// The tab's client id.
    pub client: String,
    /// Where the page stands now: every (re)connection resumes from here.
    pub cursor: Rc<dyn Fn() -> Cursor>,
    pub poll_interval_ms: Rc<Cell<u32>>,
    pub emit: Rc<dyn Fn(u32, LinkEvent)>,
}

impl LinkContext {
    fn emit(&self, event: LinkEvent) {
        (self.emit)(self.id, event);
    }

    fn member(&self) -> crate::api::Member<'_> {
        crate::api::Member {
            name: &self.name,
            client: &self.client,
        }
    }

    /// Handles one JSON event from the relay; a welcome means the connection is good.
    fn deliver(&self, json: &str, backoff: &mut Backoff) {
        self.emit(LinkEvent::Bytes(json.len()));
        self.handle(crate::json::event(json), backoff);
    }

    fn handle(&self, event: Option<ServerEvent>, backoff: &mut Backoff) {
        match event {
            Some(ServerEvent::Welcome(welcome)) => {
                backoff.connected(browser::now_ms());
                self.emit(LinkEvent::Inbound(Inbound::Welcome(welcome)));
            }
            // The stream ends next (the relay is restarting): come back as advised.
            Some(ServerEvent::Reconnect(advice)) => {
                backoff.advise(advice.retry_after_ms, Why::Restarting);
            }
            Some(ServerEvent::Message(message)) => {
                self.emit(LinkEvent::Inbound(Inbound::Message(message)))
            }
            Some(ServerEvent::Reset(reset)) => self.emit(LinkEvent::Inbound(Inbound::Reset(reset))),
            Some(ServerEvent::Error(error)) => self.emit(LinkEvent::Refused(error)),
            Some(ServerEvent::Ack(ack)) => self.emit(LinkEvent::Acked(ack.key)),
            Some(ServerEvent::Presence(change)) => self.emit(LinkEvent::Presence(change)),
            Some(ServerEvent::Typing(typing)) => self.emit(LinkEvent::Typing(typing)),
            // A heartbeat: the stream is alive; nothing to show.
            Some(ServerEvent::Ping) => {}
            None => leptos::logging::warn!("ignoring an event the page does not understand"),
        }
    }

    /// Reports the loss and waits out the backoff delay (at least what the relay advised).
    async fn lost(&self, backoff: &mut Backoff) {
        let wait = backoff.next_wait(browser::now_ms(), browser::random());
        self.emit(LinkEvent::Lost { wait });
        gloo_timers::future::TimeoutFuture::new(wait.ms).await;
    }
}

/// Takes a refusal's `retry_after_ms` as advice for the next wait, with the reason the
/// status line gives.
fn advise_from(backoff: &mut Backoff, error: &ErrorBody) {
    let why = match error.code {
        ErrorCode::RateLimited => Why::RateLimited,
        ErrorCode::ShuttingDown => Why::Restarting,
        ErrorCode::Unavailable => Why::Unavailable,
        _ => Why::Busy,
    };
    if let Some(ms) = error.retry_after_ms {
        backoff.advise(ms, why);
    }
}

/// An open link. Dropping it closes the connection and releases everything it holds.
pub struct Link {
    task: AbortHandle,
    /// Text frames to send (WebSocket and WebTransport links only).
    outbox: Option<mpsc::UnboundedSender<String>>,
    /// Aborts an in-flight poll request, which dropping a fetch future does not do.
    fetches: Option<AbortController>,
}

impl Link {
    pub fn open(ctx: LinkContext) -> Link {
        let ctx = Rc::new(ctx);
        let mut outbox = None;
        let mut fetches = None;
        let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = match ctx.transport {
            Transport::Ws => {
                let (tx, rx) = mpsc::unbounded();
                outbox = Some(tx);
                Box::pin(ws::run(ctx, rx))
            }
            Transport::WebTransport => {
                let (tx, rx) = mpsc::unbounded();
                outbox = Some(tx);
                Box::pin(wt::run(ctx, rx))
            }
            Transport::Sse => Box::pin(sse::run(ctx)),
            Transport::Longpoll | Transport::Shortpoll | Transport::Stream => {
                let controller = AbortController::new().ok();
                let signal = controller.as_ref().map(AbortController::signal);
                fetches = controller;
                if ctx.transport == Transport::Stream {
                    Box::pin(stream::run(ctx, signal))
                } else {
                    Box::pin(poll::run(ctx, signal))
                }
            }
        };
        let (task, handle) = abortable(task);
        spawn_local(async move {
            let _ = task.await;
        });
        Link {
            task: handle,
            outbox,
            fetches,
        }
    }

    /// Queues a text frame on a WebSocket or WebTransport link; false if this link cannot
    /// send.
    pub fn send(&self, frame: String) -> bool {
        self.outbox
            .as_ref()
            .is_some_and(|outbox| outbox.unbounded_send(frame).is_ok())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(fetches) = &self.fetches {
            fetches.abort();
        }
    }
}
