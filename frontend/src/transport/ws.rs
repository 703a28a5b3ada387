//! WebSocket link: one socket carries the room's events in and the user's messages out.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{Either, select};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{MessageEvent, WebSocket};

use super::{LinkContext, LinkEvent};
use crate::browser::ws_base;
use crate::model::{Backoff, encode};

type Listener = Closure<dyn FnMut(web_sys::Event)>;

enum Item {
    Text(String),
    Closed,
}

/// A socket and its listeners; dropping it closes the socket and detaches them.
struct Socket {
    ws: WebSocket,
    listeners: Vec<(&'static str, Listener)>,
}

impl Socket {
    fn open(url: &str, items: mpsc::UnboundedSender<Item>) -> Option<Socket> {
        let ws = WebSocket::new(url).ok()?;
        let mut listeners = Vec::new();
        for name in ["message", "close", "error"] {
            let items = items.clone();
            let listener = Listener::new(move |event: web_sys::Event| {
                let text = event
                    .dyn_ref::<MessageEvent>()
                    .and_then(|m| m.data().as_string());
                let item = match text {
                    Some(text) if name == "message" => Item::Text(text),
                    // Binary frames are not part of the protocol; ignore them.
                    None if name == "message" => return,
                    _ => Item::Closed,
                };
                let _ = items.unbounded_send(item);
            });
            ws.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
                .ok()?;
            listeners.push((name, listener));
        }
        Some(Socket { ws, listeners })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        for (name, listener) in &self.listeners {
            let _ = self
                .ws
                .remove_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
        }
        let _ = self.ws.close();
    }
}

pub async fn run(ctx: Rc<LinkContext>, mut outbox: mpsc::UnboundedReceiver<String>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        let cursor = (ctx.cursor)().query();
        let url = format!(
            "{}/rooms/{}/ws?name={}&{cursor}",
            ws_base(),
            ctx.room,
            encode(&ctx.name)
        );
        let (tx, mut rx) = mpsc::unbounded();
        if let Some(socket) = Socket::open(&url, tx) {
            loop {
                match select(rx.next(), outbox.next()).await {
                    Either::Left((Some(Item::Text(text)), _)) => ctx.deliver(&text, &mut backoff),
                    // Closed or failed: reconnect below.
                    Either::Left((Some(Item::Closed) | None, _)) => break,
                    Either::Right((Some(frame), _)) => {
                        if socket.ws.send_with_str(&frame).is_err() {
                            break;
                        }
                    }
                    // The owner dropped the sender: the link is being closed.
                    Either::Right((None, _)) => return,
                }
            }
        }
        ctx.lost(&mut backoff).await;
    }
}
