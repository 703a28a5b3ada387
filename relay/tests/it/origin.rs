//! Cross-site requests are refused on the WebSocket upgrade, SSE and POST; same-origin,
//! configured and origin-less requests pass.

use protocol::{ErrorCode, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

const FORGED: &str = "http://evil.example";

#[tokio::test]
async fn forged_origin_is_refused_everywhere() {
    let relay = Relay::start().await;
    let refused = Ws::connect_with(&relay.ws_url("o", ""), &[("origin", FORGED)]).await;
    let (status, body) = refused.err().expect("cross-site WebSocket refused");
    assert_eq!(status, 403);
    assert!(
        matches!(serde_json::from_str(&body), Ok(ServerEvent::Error(e)) if e.code == ErrorCode::ForbiddenOrigin),
        "{body}"
    );

    let refused = Sse::connect(&relay.url("/api/rooms/o/events"), &[("origin", FORGED)]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(StatusCode::FORBIDDEN));

    let response = http()
        .post(relay.url("/api/rooms/o/messages"))
        .header("origin", FORGED)
        .json(&json!({"from": "mallory", "text": "hi"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Nothing was published.
    assert!(relay.poll("o", "").await.messages.is_empty());
}

#[tokio::test]
async fn same_origin_and_configured_origins_are_allowed() {
    let relay =
        Relay::start_with(|c| c.allowed_origins = vec!["http://127.0.0.1:8080".into()]).await;
    let same = relay.origin();
    for (room, origin) in [("same", same.as_str()), ("listed", "http://127.0.0.1:8080")] {
        let mut ws = Ws::connect_with(&relay.ws_url(room, ""), &[("origin", origin)])
            .await
            .unwrap_or_else(|e| panic!("WebSocket from {origin} refused: {e:?}"));
        ws.welcome().await;
        let mut sse = Sse::connect(
            &relay.url(&format!("/api/rooms/{room}/events")),
            &[("origin", origin)],
        )
        .await
        .unwrap_or_else(|e| panic!("SSE from {origin} refused: {e:?}"));
        sse.welcome().await;
        let response = http()
            .post(relay.url(&format!("/api/rooms/{room}/messages")))
            .header("origin", origin)
            .json(&json!({"from": "a", "text": origin}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), StatusCode::CREATED, "POST from {origin}");
        assert_eq!(ws.message().await.text, origin);
        assert_eq!(sse.message().await.text, origin);
    }
    // A listed origin on another port is a different origin.
    let refused = Ws::connect_with(
        &relay.ws_url("o", ""),
        &[("origin", "http://127.0.0.1:8081")],
    )
    .await;
    assert_eq!(refused.err().map(|e| e.0), Some(403));
}
