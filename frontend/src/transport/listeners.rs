//! Browser event listeners owned from Rust: attached together, detached when dropped, so a
//! closed socket or EventSource leaves no callback behind.

use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{Event, EventTarget, MessageEvent};

type Callback = Closure<dyn FnMut(Event)>;

pub struct Listeners {
    target: EventTarget,
    attached: Vec<(&'static str, Callback)>,
}

impl Listeners {
    /// Calls `on(name, event)` for each event named; `None` if the browser refuses one.
    pub fn attach(
        target: &EventTarget,
        names: &[&'static str],
        on: impl Fn(&'static str, &Event) + Clone + 'static,
    ) -> Option<Listeners> {
        let mut listeners = Listeners {
            target: target.clone(),
            attached: Vec::with_capacity(names.len()),
        };
        for &name in names {
            let on = on.clone();
            let callback = Callback::new(move |event: Event| on(name, &event));
            target
                .add_event_listener_with_callback(name, callback.as_ref().unchecked_ref())
                .ok()?;
            listeners.attached.push((name, callback));
        }
        Some(listeners)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for (name, callback) in &self.attached {
            let _ = self
                .target
                .remove_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
        }
    }
}

/// The text carried by a message event (WebSocket frame, SSE `data:`), if any.
pub fn text_of(event: &Event) -> Option<String> {
    event
        .dyn_ref::<MessageEvent>()
        .and_then(|m| m.data().as_string())
}
