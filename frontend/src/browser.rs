//! Small wrappers over browser APIs: the URL, local storage, clocks and randomness.

use protocol::Transport;
use protocol::api::PREFIX;
use protocol::limits::is_valid_room;
use wasm_bindgen::JsValue;

pub const DEFAULT_ROOM: &str = "lobby";
const NAME_KEY: &str = "chat.name";
/// This tab's client id, in `sessionStorage`: the same member across reloads and transport
/// switches of one tab, another member in another tab.
const CLIENT_KEY: &str = "chat.client";

fn window() -> web_sys::Window {
    leptos::prelude::window()
}

/// Why this page cannot use WebTransport whatever the relay offers, if it cannot.
pub fn webtransport_blocked() -> Option<&'static str> {
    let window = window();
    if !window.is_secure_context() {
        return Some("needs https or localhost");
    }
    let present = js_sys::Reflect::has(&window, &JsValue::from_str("WebTransport"));
    if !present.unwrap_or(false) {
        return Some("not in this browser");
    }
    None
}

/// Milliseconds since the page loaded, monotonic: for latencies.
pub fn now_ms() -> f64 {
    window()
        .performance()
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// A random number in [0, 1).
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// A fresh idempotency key: 128 random bits from the browser's cryptographic generator, so
/// that nobody who sees this page's earlier keys (they travel with its messages) can guess
/// its next one. (`Math.random` would not do: its state can be recovered from its outputs.)
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    let filled = window()
        .crypto()
        .and_then(|crypto| crypto.get_random_values_with_u8_array(&mut bytes));
    if filled.is_err() {
        // No Web Crypto (very old browsers): a key that is at least unique.
        for byte in &mut bytes {
            *byte = (random() * 256.0) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn query_param(name: &str) -> Option<String> {
    let search = window().location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// `?room=`, if it is a valid room name; otherwise `lobby`.
pub fn room_from_url() -> String {
    query_param("room")
        .filter(|r| is_valid_room(r))
        .unwrap_or_else(|| DEFAULT_ROOM.to_owned())
}

/// `?transport=`, defaulting to WebSocket.
pub fn transport_from_url() -> Transport {
    query_param("transport")
        .and_then(|t| t.parse::<Transport>().ok())
        .unwrap_or(Transport::Ws)
}

/// `?name=`, if given (checked by the page like a typed name).
pub fn name_from_url() -> Option<String> {
    query_param("name").filter(|n| !n.trim().is_empty())
}

/// Rewrites `?room=…&transport=…&name=…` in place (no reload), so that the address bar always
/// holds a link that reproduces the current setup.
pub fn write_url(room: &str, transport: Transport, name: &str) {
    let location = window().location();
    let path = location.pathname().unwrap_or_else(|_| "/".into());
    let name = String::from(js_sys::encode_uri_component(name));
    let url = format!(
        "{path}?room={room}&transport={}&name={name}",
        transport.as_str()
    );
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&url));
    }
}

/// The remembered name, or a fresh `guest-NNNN` (remembered from now on).
pub fn stored_name() -> String {
    let storage = window().local_storage().ok().flatten();
    if let Some(name) = storage
        .as_ref()
        .and_then(|s| s.get_item(NAME_KEY).ok().flatten())
        .filter(|n| !n.trim().is_empty())
    {
        return name;
    }
    let name = format!("guest-{}", 1000 + (random() * 9000.0) as u32);
    store_name(&name);
    name
}

/// This tab's client id (see [`CLIENT_KEY`]), made on first use.
pub fn client_id() -> String {
    let storage = window().session_storage().ok().flatten();
    if let Some(id) = storage
        .as_ref()
        .and_then(|s| s.get_item(CLIENT_KEY).ok().flatten())
        .filter(|id| protocol::presence::is_valid_client_id(id))
    {
        return id;
    }
    let id = random_key();
    if let Some(storage) = storage {
        let _ = storage.set_item(CLIENT_KEY, &id);
    }
    id
}

pub fn store_name(name: &str) {
    if let Some(storage) = window().local_storage().ok().flatten() {
        let _ = storage.set_item(NAME_KEY, name);
    }
}

/// Where WebSocket URLs start: `ws://host/api` (or `wss://`) on the page's own origin;
/// `crate::api::ws_url` puts the room's path after it.
///
/// `trunk serve` cannot proxy plain HTTP and WebSockets under the same prefix, so the dev
/// setup (`scripts/dev.sh`) builds with `CHAT_WS_PREFIX=/api-ws` and proxies that prefix to the
/// relay's `/api` as WebSockets.
pub fn ws_base() -> String {
    let location = window().location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let prefix = option_env!("CHAT_WS_PREFIX").unwrap_or(PREFIX);
    format!("{scheme}://{}{prefix}", location.host().unwrap_or_default())
}

/// Whether the browser believes it has a network at all.
pub fn online() -> bool {
    window().navigator().on_line()
}

/// Local wall-clock time of a message's `ts` (Unix ms), as HH:MM:SS.
pub fn clock(ts: u64) -> String {
    let date = js_sys::Date::new(&JsValue::from_f64(ts as f64));
    format!(
        "{:02}:{:02}:{:02}",
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds()
    )
}
