//! JSON through the browser: `JSON.parse` reads what the relay sends and serde-wasm-bindgen
//! reads the protocol types out of the parsed value; outgoing frames go the other way, through
//! `JSON.stringify`. A JSON parser and writer (and their number formatting) thus stay out of
//! the page's WebAssembly.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `text` as a `T`, or `None` when it is not JSON or not a `T`.
pub fn decode<T: DeserializeOwned>(text: &str) -> Option<T> {
    let value = js_sys::JSON::parse(text).ok()?;
    serde_wasm_bindgen::from_value(value).ok()
}

/// `value` as JSON text; `None` only if it cannot be represented (never, for the protocol's
/// frames).
pub fn encode<T: Serialize>(value: &T) -> Option<String> {
    let value = value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .ok()?;
    js_sys::JSON::stringify(&value).ok()?.as_string()
}
