//! WebSocket link: one socket carries the room's events in and the user's messages out.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{Either, select};
use web_sys::WebSocket;

use super::listeners::{Listeners, text_of};
use super::{LinkContext, LinkEvent};
use crate::api;
use crate::browser::ws_base;
use crate::model::Backoff;

enum Item {
    Text(String),
    Closed,
}

/// A socket; dropping it closes the socket (and its listeners detach).
struct Socket {
    ws: WebSocket,
    _listeners: Listeners,
}

impl Socket {
    fn open(url: &str, items: mpsc::UnboundedSender<Item>) -> Option<Socket> {
        let ws = WebSocket::new(url).ok()?;
        let listeners =
            Listeners::attach(&ws, &["message", "close", "error"], move |name, event| {
                let item = match (name, text_of(event)) {
                    ("message", Some(text)) => Item::Text(text),
                    // Binary frames are not part of the protocol; ignore them.
                    ("message", None) => return,
                    _ => Item::Closed,
                };
                let _ = items.unbounded_send(item);
            })?;
        Some(Socket {
            ws,
            _listeners: listeners,
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}

pub async fn run(ctx: Rc<LinkContext>, mut outbox: mpsc::UnboundedReceiver<String>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        let url = api::ws_url(&ws_base(), &ctx.room, &ctx.name, &(ctx.cursor)());
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
