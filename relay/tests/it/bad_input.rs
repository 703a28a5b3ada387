//! Every limit gets its documented answer, and well-behaved clients on other connections keep
//! receiving throughout.

use std::time::Duration;

use futures_util::SinkExt;

use protocol::{ErrorBody, ErrorCode, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn error_of(body: &str) -> ErrorBody {
    match serde_json::from_str(body) {
        Ok(ServerEvent::Error(error)) => error,
        other => panic!("expected a JSON error event, got {other:?} from {body:?}"),
    }
}

async fn expect_ws_error(ws: &mut Ws, code: ErrorCode) -> ErrorBody {
    match ws.event().await {
        ServerEvent::Error(error) => {
            assert_eq!(error.code, code, "{error:?}");
            error
        }
        other => panic!("expected error {code:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_battery_leaves_other_clients_unharmed() {
    let relay = Relay::start().await;
    let room = "battery";
    let mut watcher = Ws::connect(&relay.ws_url(room, "name=watcher")).await;
    watcher.welcome().await;
    let mut sse_watcher = Sse::connect(&relay.url(&format!("/api/rooms/{room}/events")), &[])
        .await
        .expect("SSE opens");
    sse_watcher.welcome().await;
    let mut expected = Vec::new();

    // POST: each malformed or out-of-limit body gets its code, and nothing is published.
    let long_text = "x".repeat(4097);
    let long_name = "n".repeat(33);
    let cases: Vec<(serde_json::Value, StatusCode, ErrorCode)> = vec![
        (
            json!({"from": "a", "text": "  \n "}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidText,
        ),
        (
            json!({"from": "a", "text": long_text}),
            StatusCode::BAD_REQUEST,
            ErrorCode::TextTooLong,
        ),
        (
            json!({"from": long_name, "text": "hi"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidName,
        ),
        (
            json!({"from": "", "text": "hi"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidName,
        ),
        (
            json!({"from": "a\u{1b}[31m", "text": "hi"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidName,
        ),
        (
            json!({"text": "no sender"}),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            json!(["not", "an", "object"]),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            json!({"from": "a", "text": 42}),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let (got_status, got_body) = relay.post_raw(room, body.clone()).await;
        assert_eq!(got_status, status, "case {i}: {body}");
        assert_eq!(error_of(&got_body).code, code, "case {i}: {body}");
        // A valid message between bad ones: the stream goes on.
        relay.post(room, "good", &format!("ok-{i}")).await;
        expected.push(format!("ok-{i}"));
    }
    // 4096 bytes is allowed; multi-byte characters count as bytes.
    relay.post(room, "good", &"é".repeat(2048)).await;
    expected.push("é".repeat(2048));

    // Raw bodies: not JSON at all, not UTF-8, too large.
    let client = http();
    let url = relay.url(&format!("/api/rooms/{room}/messages"));
    for (body, status, code) in [
        (
            b"{\"from\": \"a\", \"te".to_vec(),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            vec![0xff, 0xfe, 0x00],
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            vec![b' '; 64 * 1024 + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
        ),
    ] {
        let response = client.post(&url).body(body).send().await.expect("POST");
        assert_eq!(response.status(), status);
        assert_eq!(error_of(&response.text().await.expect("body")).code, code);
    }

    // Names of rooms, and query parameters.
    for path in [
        "/api/rooms/a.b/messages",
        &format!("/api/rooms/{}/messages", "r".repeat(65)),
        "/api/rooms/%20/messages",
    ] {
        let response = client.get(relay.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            error_of(&response.text().await.expect("body")).code,
            ErrorCode::InvalidRoom
        );
    }
    for query in ["after=abc", "after=-1", "wait=soon", "limit=x"] {
        let response = client
            .get(relay.url(&format!("/api/rooms/{room}/messages?{query}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            error_of(&response.text().await.expect("body")).code,
            ErrorCode::BadRequest
        );
    }
    let response = client
        .get(relay.url(&format!("/api/rooms/{room}/events")))
        .header("last-event-id", "not-a-number")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Unknown API paths and methods answer JSON, not the page.
    let response = client
        .get(relay.url("/api/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&response.text().await.expect("body")).code,
        ErrorCode::NotFound
    );
    let response = client
        .delete(relay.url(&format!("/api/rooms/{room}/messages")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A plain GET of the WebSocket endpoint is not an upgrade.
    let response = client
        .get(relay.url(&format!("/api/rooms/{room}/ws")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&response.text().await.expect("body")).code,
        ErrorCode::BadRequest
    );

    // WebSocket: bad frames get an error event and the socket stays open.
    let mut ws = Ws::connect(&relay.ws_url(room, "name=frames&limit=0")).await;
    ws.welcome().await;
    ws.send("{not json").await;
    expect_ws_error(&mut ws, ErrorCode::BadRequest).await;
    ws.send(r#"{"type":"shout","text":"x"}"#).await;
    expect_ws_error(&mut ws, ErrorCode::BadRequest).await;
    ws.send("   ").await;
    expect_ws_error(&mut ws, ErrorCode::InvalidText).await;
    ws.send(&"y".repeat(4097)).await;
    expect_ws_error(&mut ws, ErrorCode::TextTooLong).await;
    ws.send("ok-ws").await;
    expected.push("ok-ws".into());
    assert_eq!(
        ws.message().await.text,
        "ok-ws",
        "the socket survived its bad frames"
    );

    // Oversized frame: closed with 1009.
    let mut big = Ws::connect(&relay.ws_url(room, "")).await;
    big.welcome().await;
    let _ = big.socket.send("z".repeat(64 * 1024 + 1).into()).await;
    let frame = big.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);

    // Binary frame: closed with 1003.
    let mut binary = Ws::connect(&relay.ws_url(room, "")).await;
    binary.welcome().await;
    let _ = binary
        .socket
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await;
    let frame = binary.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1003);

    // A bad name refuses the upgrade itself.
    let refused = Ws::connect_with(&relay.ws_url(room, "name=%07bell"), &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(400));

    // Throughout all this, the watchers saw exactly the valid messages, in order.
    relay.post(room, "good", "the end").await;
    expected.push("the end".into());
    for want in &expected {
        assert_eq!(&watcher.message().await.text, want, "WebSocket watcher");
        assert_eq!(&sse_watcher.message().await.text, want, "SSE watcher");
    }
}

#[tokio::test]
async fn rate_limits_answer_with_retry_after() {
    // One token per 1000 s: nothing refills during the test, however slowly it runs, so the
    // fourth message is refused for certain.
    let relay = Relay::start_with(|c| {
        c.rate = 0.001;
        c.burst = 3.0;
    })
    .await;
    let mut watcher = Ws::connect(&relay.ws_url("rl", "")).await;
    watcher.welcome().await;

    // POST: the burst passes, then 429 with Retry-After.
    for i in 0..3 {
        relay.post("rl", "a", &format!("post-{i}")).await;
    }
    let (status, body) = relay
        .post_raw("rl", json!({"from": "a", "text": "over"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let error = error_of(&body);
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert!(
        error
            .retry_after_ms
            .is_some_and(|ms| ms > 990_000 && ms <= 1_000_000),
        "the wait for one token: {error:?}"
    );
    let response = http()
        .post(relay.url("/api/rooms/rl/messages"))
        .json(&json!({"from": "a", "text": "over"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.headers()["retry-after"], "1000");

    // WebSocket: its own bucket; the excess frame gets an error event, the socket stays.
    let mut ws = Ws::connect(&relay.ws_url("rl", "name=fast")).await;
    ws.welcome().await;
    for _ in 0..3 {
        ws.message().await; // history: the three posts
    }
    for i in 0..3 {
        ws.send(&format!("ws-{i}")).await;
    }
    ws.send("ws-over").await;
    let mut texts_seen = Vec::new();
    let mut limited = false;
    while texts_seen.len() < 3 || !limited {
        match ws.event().await {
            ServerEvent::Message(m) => texts_seen.push(m.text),
            ServerEvent::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms.is_some());
                limited = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts_seen, ["ws-0", "ws-1", "ws-2"]);
    for want in ["post-0", "post-1", "post-2", "ws-0", "ws-1", "ws-2"] {
        assert_eq!(watcher.message().await.text, want);
    }
}

#[tokio::test]
async fn connection_and_room_limits_answer_503() {
    let relay = Relay::start_with(|c| {
        c.max_connections = 2;
        c.max_rooms = 2;
        // A vanished SSE client is noticed when the next write fails: the heartbeat bounds
        // how long its slot stays taken.
        c.sse_heartbeat = Duration::from_millis(100);
    })
    .await;
    let mut first = Ws::connect(&relay.ws_url("one", "")).await;
    first.welcome().await;
    let mut second = Sse::connect(&relay.url("/api/rooms/two/events"), &[])
        .await
        .expect("second connection");
    second.welcome().await;

    let refused = Ws::connect_with(&relay.ws_url("one", ""), &[]).await;
    let (status, body) = refused.err().expect("third WebSocket refused");
    assert_eq!(status, 503);
    assert_eq!(error_of(&body).code, ErrorCode::TooManyConnections);
    let refused = Sse::connect(&relay.url("/api/rooms/one/events"), &[]).await;
    let (status, body) = refused.err().expect("third SSE refused");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_of(&body).code, ErrorCode::TooManyConnections);

    // Both rooms are in use; a third cannot be created.
    let (status, body) = relay
        .post_raw("three", json!({"from": "a", "text": "hi"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_of(&body).code, ErrorCode::TooManyRooms);

    // Existing rooms still work, and closing a connection frees its slot.
    relay.post("one", "a", "still fine").await;
    assert_eq!(first.message().await.text, "still fine");
    drop(second);
    within("the slot to be released", async {
        loop {
            if let Ok(mut ws) = Ws::connect_with(&relay.ws_url("one", ""), &[]).await {
                ws.welcome().await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_pending_long_poll_takes_a_connection_slot() {
    let relay = Relay::start_with(|c| c.max_connections = 1).await;
    let waiting = {
        let client = relay.client();
        tokio::spawn(async move { client.poll("lp", "after=0&wait=20").await })
    };
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;

    // While it waits, the relay is full: streams and other long polls are refused...
    let refused = Ws::connect_with(&relay.ws_url("lp", ""), &[]).await;
    let (status, body) = refused
        .err()
        .expect("WebSocket refused while the poll waits");
    assert_eq!(status, 503);
    assert_eq!(error_of(&body).code, ErrorCode::TooManyConnections);
    let response = http()
        .get(relay.url("/api/rooms/lp/messages?after=0&wait=20"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        error_of(&response.text().await.expect("body")).code,
        ErrorCode::TooManyConnections
    );
    // ...but a short poll is not a connection.
    assert!(relay.poll("lp", "after=0").await.messages.is_empty());

    // A message answers the poll, which gives its slot back.
    relay.post("lp", "a", "wake").await;
    let answer = within("the long poll", waiting).await.expect("poll task");
    assert_eq!(texts(&answer.messages), ["wake"]);
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 0.0)
        .await;
    let mut ws = Ws::connect(&relay.ws_url("lp", "")).await;
    ws.welcome().await;
}
