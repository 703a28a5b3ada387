//! Reading a `ReadableStream` of NDJSON (HTTP streaming's body, WebTransport's stream): each
//! line is one event, handled as every transport's are.

use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ReadableStream, ReadableStreamDefaultReader, ReadableStreamReadResult};

use super::LinkContext;
use crate::model::{Backoff, Lines};

/// Delivers every event the stream carries until it ends, fails or is cancelled (the link's
/// owner aborts the fetch, or closes the session).
pub async fn follow(ctx: &LinkContext, stream: &ReadableStream, backoff: &mut Backoff) {
    let Ok(reader) = stream
        .get_reader()
        .dyn_into::<ReadableStreamDefaultReader>()
    else {
        return;
    };
    let mut lines = Lines::default();
    while let Ok(result) = JsFuture::from(reader.read()).await {
        let result: ReadableStreamReadResult = result.unchecked_into();
        if result.get_done().unwrap_or(true) {
            break;
        }
        let chunk = Uint8Array::new(&result.get_value()).to_vec();
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
