//! WebTransport link: one session to the relay's HTTP/3 endpoint, one bidirectional stream
//! on it. The relay writes NDJSON events to the page; the page writes its send frames (the
//! WebSocket's `{"type":"send",…}`), one per line, and gets `ack` or `error` events back.
//!
//! Each attempt asks the relay where its endpoint is and which certificate hashes to trust
//! (`GET /api/transport-info`): a relay with a self-signed certificate renews it every few
//! days, and the page must trust the one it has now (`serverCertificateHashes`).

use std::rc::Rc;

use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::{StreamExt, pin_mut};
use js_sys::Uint8Array;
use protocol::WebTransportInfo;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    WebTransport, WebTransportBidirectionalStream, WebTransportHash, WebTransportOptions,
    WritableStreamDefaultWriter,
};

use super::{LinkContext, LinkEvent, ndjson};
use crate::api;
use crate::model::Backoff;

/// A session; dropping it closes the session (and with it the stream).
struct Session {
    transport: WebTransport,
    stream: WebTransportBidirectionalStream,
    writer: WritableStreamDefaultWriter,
}

impl Session {
    async fn open(ctx: &LinkContext) -> Option<Session> {
        let info = api::transport_info().await?.webtransport?;
        let url = api::wt_url(&info.url, &ctx.room, ctx.member(), &(ctx.cursor)());
        let transport = WebTransport::new_with_options(&url, &options(&info)).ok()?;
        // Owned from here: a failure below closes it.
        let mut session = Session {
            stream: WebTransportBidirectionalStream::from(wasm_bindgen::JsValue::UNDEFINED),
            writer: WritableStreamDefaultWriter::from(wasm_bindgen::JsValue::UNDEFINED),
            transport,
        };
        JsFuture::from(session.transport.ready()).await.ok()?;
        let stream = JsFuture::from(session.transport.create_bidirectional_stream())
            .await
            .ok()?;
        session.stream = stream.unchecked_into();
        session.writer = session.stream.writable().get_writer().ok()?;
        Some(session)
    }

    /// Writes one frame as a line; false if the stream is gone.
    async fn write(&self, frame: &str) -> bool {
        let mut line = Vec::with_capacity(frame.len() + 1);
        line.extend_from_slice(frame.as_bytes());
        line.push(b'\n');
        let chunk = Uint8Array::from(line.as_slice());
        JsFuture::from(self.writer.write_with_chunk(&chunk))
            .await
            .is_ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.transport.close();
    }
}

/// The session's options: the self-signed certificate's hashes, when the relay has one.
fn options(info: &WebTransportInfo) -> WebTransportOptions {
    let options = WebTransportOptions::new();
    let hashes: Vec<WebTransportHash> = info
        .cert_hashes
        .iter()
        .map(|hex| {
            let hash = WebTransportHash::new();
            hash.set_algorithm("sha-256");
            hash.set_value_u8_array(&Uint8Array::from(decode_hex(hex).as_slice()));
            hash
        })
        .collect();
    if !hashes.is_empty() {
        options.set_server_certificate_hashes(&hashes);
    }
    options
}

/// The bytes of a hash in hex, as `transport-info` gives it. Written for size (the page is at
/// its budget): a malformed hash only makes the handshake fail, as a wrong one would.
fn decode_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex
        .chars()
        .filter_map(|c| c.to_digit(16))
        .map(|d| d as u8)
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0))
        .collect()
}

pub async fn run(ctx: Rc<LinkContext>, mut outbox: mpsc::UnboundedReceiver<String>) {
    let mut backoff = Backoff::default();
    loop {
        ctx.emit(LinkEvent::Attempt);
        if let Some(session) = Session::open(&ctx).await {
            let readable = session.stream.readable();
            let reading = ndjson::follow(&ctx, &readable, &mut backoff);
            let writing = async {
                while let Some(frame) = outbox.next().await {
                    if !session.write(&frame).await {
                        return false;
                    }
                }
                // The owner dropped the sender: the link is being closed.
                true
            };
            pin_mut!(reading, writing);
            if let Either::Right((true, _)) = select(reading, writing).await {
                return;
            }
        }
        ctx.lost(&mut backoff).await;
    }
}
