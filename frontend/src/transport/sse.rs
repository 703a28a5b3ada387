//! Server-Sent Events link, on the browser's EventSource.
//!
//! EventSource reconnects by itself, but with the URL it was opened with and on its own
//! schedule. This link closes it on the first error instead and reconnects with the page's
//! current cursor and backoff, so every transport resumes and counts reconnects the same way.
//!
//! On web-sys's `EventSource` directly, not gloo-net's wrapper: the link listens for the
//! named events it needs and closes the source on its first error, where gloo-net's
//! subscriptions leave reconnection to the browser. (Not measured for size.)

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use web_sys::EventSource;

use super::listeners::{Listeners, text_of};
use super::{LinkContext, LinkEvent};
use crate::api;
use crate::model::Backoff;

/// The named events the relay sends (each carries a JSON event with its own `type`), and the
/// browser's error event. (EventSource hides the status of a refused stream, so a 503's
/// advice cannot be read here: the page's own backoff paces those retries.)
const EVENTS: [&str; 7] = [
    "welcome",
    "message",
    "reset",
    "reconnect",
    "presence",
    "typing",
    "error",
];

enum Item {
    Data(String),
    Error,
}

/// An EventSource; dropping it closes the stream (and its listeners detach).
struct Source {
    es: EventSource,
    _listeners: Listeners,
}

impl Source {
    fn open(url: &str, items: mpsc::UnboundedSender<Item>) -> Option<Source> {
        let es = EventSource::new(url).ok()?;
        let listeners = Listeners::attach(&es, &EVENTS, move |name, event| {
            let item = match text_of(event) {
                Some(data) if name != "error" => Item::Data(data),
                _ => Item::Error,
            };
            let _ = items.unbounded_send(item);
        })?;
        Some(Source {
            es,
            _listeners: listeners,
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.es.close();
    }
}

pub async fn run(ctx: Rc<LinkContext>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        let url = api::events_url(&ctx.room, ctx.member(), &(ctx.cursor)());
        let (tx, mut rx) = mpsc::unbounded();
        if let Some(_source) = Source::open(&url, tx) {
            while let Some(Item::Data(data)) = rx.next().await {
                ctx.deliver(&data, &mut backoff);
            }
        }
        ctx.lost(&mut backoff).await;
    }
}
