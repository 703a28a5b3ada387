//! Reading a `ReadableStream` of NDJSON (HTTP streaming's body, WebTransport's stream): each
//! line is one event, handled as every transport's are.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader};

use super::LinkContext;
use crate::model::{Backoff, Lines};

/// Delivers every event the stream carries until it ends, fails or is cancelled (the link's
/// owner aborts the fetch, or closes the session).
pub async fn follow(ctx: &LinkContext, stream: &ReadableStream, backoff: &mut Backoff) {
    // `getReader()` with no mode is always a default reader.
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut lines = Lines::default();
    while let Ok(result) = JsFuture::from(reader.read()).await {
        // `{done, value}`, read as plain properties (fewer bindings than the typed result).
        let field = |name| Reflect::get(&result, &JsValue::from_str(name)).unwrap_or_default();
        if field("done").is_truthy() {
            break;
        }
        let chunk = Uint8Array::new(&field("value")).to_vec();
        let Ok(events) = lines.push(&chunk) else {
            break;
        };
        for line in events {
            ctx.deliver(&line, backoff);
        }
    }
    // Lets go of the stream whichever way the loop ended.
    let _ = reader.cancel();
}
