//! The one encoder of server events, for every transport: JSON (a WebSocket text frame, a
//! poll answer's element, an HTTP error body) and the Server-Sent Events frame around it.

use protocol::ServerEvent;

/// The event as JSON.
pub fn json(event: &ServerEvent) -> String {
    // The wire types are strings, integers and enums of them: serializing them cannot fail.
    // The fallback keeps this total rather than putting an `unwrap` in every request path.
    let mut json = serde_json::to_string(event).unwrap_or_else(|_| String::from("{}"));
    // The buffer grew by doubling; a message's JSON is kept in history, and should cost what
    // it holds, not up to twice that.
    json.shrink_to_fit();
    json
}

/// Events as one JSON array (`[]` for none).
pub fn json_array(events: &[ServerEvent]) -> String {
    to_json(&events)
}

/// Any wire value as JSON (the wire types cannot fail to serialize; see [`json`]).
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("null"))
}

/// The event as one SSE frame: `id:` (for messages, `EPOCH:ID` from `protocol::event_id`,
/// so that `Last-Event-ID` resumes), `event:` (its type) and one `data:` line. serde_json
/// escapes line breaks inside strings, so the JSON never spans lines.
pub fn sse(id: Option<&str>, event: &ServerEvent) -> String {
    sse_frame(id, event.name(), &json(event))
}

/// An SSE frame around already-encoded JSON.
pub fn sse_frame(id: Option<&str>, name: &str, json: &str) -> String {
    format!("{}{json}{SSE_TAIL}", sse_head(id, name))
}

/// What an SSE frame holds before its JSON: `id:`, `event:` and `data: `. Written in front of
/// a message's shared JSON bytes, with [`SSE_TAIL`] after them, so that a message is stored
/// once (as JSON) and framed as it is written.
pub fn sse_head(id: Option<&str>, name: &str) -> String {
    match id {
        Some(id) => format!("id: {id}\nevent: {name}\ndata: "),
        None => format!("event: {name}\ndata: "),
    }
}

/// The event as one NDJSON line (HTTP streaming, WebTransport): its JSON and a line feed.
/// serde_json escapes line breaks inside strings, so the JSON is one line.
pub fn ndjson(event: &ServerEvent) -> String {
    let mut line = json(event);
    line.push('\n');
    line
}

/// What ends an SSE frame after its JSON.
pub const SSE_TAIL: &str = "\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Reset, ResetReason};

    #[test]
    fn sse_frame_names_the_event_by_its_type_and_carries_one_data_line() {
        let reset = ServerEvent::Reset(Reset {
            reason: ResetReason::HistoryGap,
            oldest_id: 3,
        });
        assert_eq!(
            sse(None, &reset),
            "event: reset\ndata: {\"type\":\"reset\",\"reason\":\"history_gap\",\"oldest_id\":3}\n\n"
        );
        assert_eq!(
            sse_frame(Some("e:9"), "message", "{}"),
            "id: e:9\nevent: message\ndata: {}\n\n"
        );
    }
}
