//! Item 11 (the relay's half; the page's is in `e2e/chat.test.mjs`): a name cannot look like
//! another person's or reorder a line, and a text cannot smuggle control characters.
//!
//! Failed on the main of issue 10: `alice` + U+200B and a right-to-left override in a name
//! were accepted, and so was a text of U+0001s (six bytes each once escaped).

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn invisible_and_direction_changing_names_are_refused_on_every_way_in() {
    let relay = Relay::start().await;
    for name in [
        "alice\u{200B}",
        "\u{202E}ecila",
        "bo\u{2066}b",
        "\u{FEFF}carol",
    ] {
        let (status, body) = relay
            .post_raw("r", json!({"from": name, "text": "hi"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert!(body.contains("invalid_name"), "{name:?}: {body}");
        let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
        let refused = Sse::connect(&relay.sse_url("r", &format!("name={encoded}")), &[])
            .await
            .err()
            .expect("the stream is refused");
        assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{name:?}");
        assert!(
            refused.1.contains("invalid_name"),
            "{name:?}: {}",
            refused.1
        );
    }
    // A WebSocket that was admitted under an allowed name publishes under it; the name check
    // ran at the handshake, so nothing else can slip one in.
    let refused = Ws::connect_with(&relay.ws_url("r", "name=alice%E2%80%8B"), &[]).await;
    assert_eq!(refused.err().map(|(status, _)| status), Some(400));
}

#[tokio::test]
async fn control_characters_in_text_are_refused_but_emoji_sequences_pass() {
    let relay = Relay::start().await;
    for text in [
        "\u{1}".repeat(100),
        "bell\u{7}".into(),
        "a\rb".into(),
        "\u{1b}[2J".into(),
    ] {
        let (status, body) = relay
            .post_raw("r", json!({"from": "a", "text": text}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text:?}: {body}");
        assert!(body.contains("invalid_text"), "{text:?}: {body}");
    }
    let mut ws = Ws::connect(&relay.ws_url("r", "name=a")).await;
    ws.welcome().await;
    ws.send("tab\there").await;
    assert_eq!(ws.message().await.text, "tab\there");
    ws.send("\u{7}").await;
    match ws.event().await {
        protocol::ServerEvent::Error(error) => {
            assert_eq!(error.code, protocol::ErrorCode::InvalidText)
        }
        other => panic!("expected invalid_text, got {other:?}"),
    }
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{2764}\u{FE0F} \u{202E}RTL text";
    relay.post("r", "a", family).await;
    assert_eq!(ws.message().await.text, family);
}
