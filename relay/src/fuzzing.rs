//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz run NAME`): the relay's
//! readers of client input and its event encoder, reachable from outside the crate only here.
//! Not an API: hidden from the docs, and free to change with the targets.
//!
//! Each function takes arbitrary bytes and must neither panic nor loop; the encoder's must
//! also give back what it was given (a round trip).

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, Uri};
use protocol::ServerEvent;

use crate::transport::poll::PollQuery;
use crate::transport::ws::codec::ClientFrames;
use crate::transport::{StreamQuery, cursor, parse_last_event_id};

/// A client's WebSocket bytes, as a session's codec reads them (with the default frame limit):
/// frames until the bytes run out or one is refused — after which, as in a session, the
/// codec is not read again (the connection is closed).
pub fn client_frames(data: &[u8]) {
    let mut codec = ClientFrames::new(64 * 1024);
    // Fed in two pieces, as a socket may deliver them.
    let (first, rest) = data.split_at(data.len() / 2);
    for piece in [first, rest] {
        codec.feed(piece);
        loop {
            match codec.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let _ = codec.take_output();
    }
}

/// A request head on the lean path: parsed, and built into the request axum sees.
pub fn request_head(data: &[u8]) {
    crate::server::lean::fuzz_head(data);
}

/// A query string, as the stream and poll handlers read it.
pub fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/api/rooms/r/messages?{text}").parse::<Uri>() else {
        return;
    };
    if let Ok(Query(poll)) = Query::<PollQuery>::try_from_uri(&uri) {
        let _ = cursor(poll.after, poll.epoch);
    }
    if let Ok(Query(stream)) = Query::<StreamQuery>::try_from_uri(&uri) {
        let _ = cursor(stream.after, stream.epoch);
    }
}

/// A `Last-Event-ID` header value.
pub fn last_event_id(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert("last-event-id", value);
    // What parses is what the relay writes: writing it again gives the same value.
    if let Ok(Some((Some(epoch), id))) = parse_last_event_id(&headers) {
        let again = protocol::event_id(&epoch, id);
        assert_eq!(
            protocol::parse_event_id(&again),
            Some((Some(epoch.as_str()), id))
        );
    }
}

/// Any event the relay could send, decoded from JSON, then encoded by the relay as JSON and as
/// an SSE frame: both decode back to the same event, and the frame holds exactly one `data:`
/// line (a line break inside the JSON would split the event).
pub fn event_round_trip(data: &[u8]) {
    let Ok(event) = serde_json::from_slice::<ServerEvent>(data) else {
        return;
    };
    let json = crate::event::json(&event);
    let back: ServerEvent = serde_json::from_str(&json).expect("the relay's JSON decodes");
    assert_eq!(back, event);
    let frame = crate::event::sse(None, &event);
    assert!(frame.ends_with("\n\n"));
    let data_lines: Vec<&str> = frame
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect();
    assert_eq!(data_lines.len(), 1, "{frame:?}");
    let back: ServerEvent = serde_json::from_str(data_lines[0]).expect("the frame's data decodes");
    assert_eq!(back, event);
}
