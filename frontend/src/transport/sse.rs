//! Server-Sent Events link, on the browser's EventSource.
//!
//! EventSource reconnects by itself, but with the URL it was opened with and on its own
//! schedule. This link closes it on the first error instead and reconnects with the page's
//! current cursor and backoff, so every transport resumes and counts reconnects the same way.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

use super::{LinkContext, LinkEvent};
use crate::model::{Backoff, encode};

/// The named events the relay sends (each carries a JSON event with its own `type`).
const EVENTS: [&str; 3] = ["welcome", "message", "reset"];

enum Item {
    Data(String),
    Error,
}

type Listener = Closure<dyn FnMut(web_sys::Event)>;

/// An EventSource and its listeners; dropping it closes the stream and detaches them.
struct Source {
    es: EventSource,
    listeners: Vec<(&'static str, Listener)>,
}

impl Source {
    fn open(url: &str, items: mpsc::UnboundedSender<Item>) -> Option<Source> {
        let es = EventSource::new(url).ok()?;
        let mut listeners = Vec::new();
        for name in EVENTS.into_iter().chain(["error"]) {
            let items = items.clone();
            let listener = Listener::new(move |event: web_sys::Event| {
                let item = match event
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string())
                {
                    Some(data) if name != "error" => Item::Data(data),
                    _ => Item::Error,
                };
                let _ = items.unbounded_send(item);
            });
            es.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
                .ok()?;
            listeners.push((name, listener));
        }
        Some(Source { es, listeners })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.es.close();
        for (name, listener) in &self.listeners {
            let _ = self
                .es
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
    }
}

pub async fn run(ctx: Rc<LinkContext>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        let cursor = (ctx.cursor)().query();
        let url = format!(
            "/api/rooms/{}/events?name={}&{cursor}",
            ctx.room,
            encode(&ctx.name)
        );
        let (tx, mut rx) = mpsc::unbounded();
        if let Some(_source) = Source::open(&url, tx) {
            while let Some(Item::Data(data)) = rx.next().await {
                ctx.deliver(&data, &mut backoff);
            }
        }
        ctx.lost(&mut backoff).await;
    }
}
