//! WebSocket link: one socket carries the room's events in and the user's messages out.
//!
//! On web-sys's `WebSocket` directly, not gloo-net's wrapper (which the page uses for HTTP,
//! `crate::fetch`). The link must read the close code and its JSON reason for every way a
//! socket ends (1012/1013 advice, 4008, 1009), tell a socket that never opened from one that
//! dropped, and close a superseded socket itself when a switch completes (make-before-break);
//! gloo-net's stream ends with an error value for some of these and closes on drop. The
//! listeners here (`listeners.rs`) are the few lines those needs take; the wrapper's size was
//! not measured.

use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{Either, select};
use protocol::{ErrorBody, ErrorCode, close};
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, WebSocket};

use super::listeners::{Listeners, text_of};
use super::{LinkContext, LinkEvent};
use crate::api;
use crate::browser::ws_base;
use crate::model::{Backoff, Why};

enum Item {
    Text(String),
    /// The socket closed, with the relay's close code and reason (1006 and none when the
    /// connection just failed).
    Closed(u16, String),
}

/// A socket; dropping it closes the socket (and its listeners detach).
struct Socket {
    ws: WebSocket,
    _listeners: Listeners,
}

impl Socket {
    fn open(url: &str, items: mpsc::UnboundedSender<Item>) -> Option<Socket> {
        let ws = WebSocket::new(url).ok()?;
        // A failed socket fires `error` and then `close`: the close carries the code.
        let listeners = Listeners::attach(&ws, &["message", "close"], move |name, event| {
            let item = match (name, text_of(event)) {
                ("message", Some(text)) => Item::Text(text),
                // Binary frames are not part of the protocol; ignore them.
                ("message", None) => return,
                _ => match event.dyn_ref::<CloseEvent>() {
                    Some(close) => Item::Closed(close.code(), close.reason()),
                    None => Item::Closed(1006, String::new()),
                },
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
        let url = api::ws_url(&ws_base(), &ctx.room, ctx.member(), &(ctx.cursor)());
        let (tx, mut rx) = mpsc::unbounded();
        if let Some(socket) = Socket::open(&url, tx) {
            loop {
                match select(rx.next(), outbox.next()).await {
                    Either::Left((Some(Item::Text(text)), _)) => ctx.deliver(&text, &mut backoff),
                    // Closed or failed: reconnect below, as the close code says.
                    Either::Left((Some(Item::Closed(code, reason)), _)) => {
                        on_close(&ctx, &mut backoff, code, &reason);
                        break;
                    }
                    Either::Left((None, _)) => break,
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

/// What the relay's close code asks of the page (see `protocol::close`).
fn on_close(ctx: &LinkContext, backoff: &mut Backoff, code: u16, reason: &str) {
    let advice = crate::json::advice(reason);
    match code {
        close::RESTART | close::TRY_AGAIN => {
            let why = if code == close::RESTART {
                Why::Restarting
            } else {
                Why::Busy
            };
            if let Some(advice) = advice {
                backoff.advise(advice.retry_after_ms, why);
            }
        }
        // Nothing was lost: the relay only would not wait for this page to read.
        close::TOO_SLOW => backoff.resume_now(),
        // The text sent was too large: say so; it is not sent again.
        close::TOO_BIG => ctx.emit(LinkEvent::Refused(ErrorBody {
            code: ErrorCode::PayloadTooLarge,
            message: "that message was too large for the relay and was not sent".into(),
            retry_after_ms: None,
            key: None,
        })),
        _ => {}
    }
}
