//! Exactly-once sending: a send repeated with the same idempotency key is stored once, on any
//! transport and any relay, and a sender whose answer was lost is told so truthfully.

use std::time::Duration;

use protocol::api::{Endpoint, IDEMPOTENCY_KEY};
use protocol::{ErrorCode, PublishResponse, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::redis::{RedisServer, relay_on, relay_on_with};
use crate::support::*;

/// `POST`s `text` with `key`; the status and the answer's body.
async fn post_keyed(relay: &Client, room: &str, key: &str, text: &str) -> (StatusCode, String) {
    let response = http()
        .post(relay.url(&Endpoint::Messages.path(room)))
        .header(IDEMPOTENCY_KEY, key)
        .json(&json!({"from": "ann", "text": text}))
        .send()
        .await
        .expect("POST reaches the relay");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

fn id_of(body: &str) -> u64 {
    serde_json::from_str::<PublishResponse>(body)
        .expect("a publish answer")
        .id
}

#[tokio::test]
async fn a_post_repeated_with_its_key_is_stored_once_and_answered_with_the_first_id() {
    let relay = Relay::start().await;
    let (status, first) = post_keyed(&relay, "once", "tab-1.1", "hello").await;
    assert_eq!(status, StatusCode::CREATED);
    relay.post("once", "bob", "in between").await;
    // The draft's quoted form names the same key.
    let (status, again) = post_keyed(&relay, "once", "\"tab-1.1\"", "hello").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a repeat is not a creation: {again}"
    );
    assert_eq!(id_of(&again), id_of(&first));
    let answer = relay.poll("once", "after=0").await;
    assert_eq!(texts(&answer.messages), ["hello", "in between"]);
    assert_eq!(
        answer.messages[0].key.as_deref(),
        Some("tab-1.1"),
        "the key travels"
    );
    assert_eq!(answer.messages[1].key, None);
    // The key is bound to its text: someone who guessed it cannot stand in for another
    // message (nor make this sender's retry look stored).
    let (status, body) = post_keyed(&relay, "once", "tab-1.1", "not hello").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("\"key_reused\""), "{body}");
    // A key that is not one is refused, not ignored.
    let (status, body) = post_keyed(&relay, "once", "no spaces", "x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        texts(&relay.poll("once", "after=0").await.messages),
        ["hello", "in between"]
    );
}

#[tokio::test]
async fn a_websocket_send_repeated_with_its_key_is_stored_once_and_acknowledged() {
    let relay = Relay::start().await;
    let mut ws = Ws::connect(&relay.ws_url("once-ws", "name=ann")).await;
    ws.welcome().await;
    let frame = json!({"type": "send", "text": "hi", "key": "tab-2.1"}).to_string();
    ws.send(&frame).await;
    let mut acks = Vec::new();
    let mut messages = Vec::new();
    // The message (carrying the key) and the acknowledgement, in either order.
    while acks.is_empty() || messages.is_empty() {
        match ws.event().await {
            ServerEvent::Ack(ack) => acks.push(ack),
            ServerEvent::Message(message) => messages.push(message),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(messages[0].key.as_deref(), Some("tab-2.1"));
    assert_eq!(acks[0].id, messages[0].id);
    assert!(!acks[0].duplicate);
    // Sent again (its acknowledgement was lost, say): acknowledged with the same id, and
    // nobody receives it twice.
    ws.send(&frame).await;
    match ws.event().await {
        ServerEvent::Ack(ack) => {
            assert_eq!(ack.id, messages[0].id);
            assert!(ack.duplicate);
        }
        other => panic!("expected an ack, got {other:?}"),
    }
    relay.post("once-ws", "bob", "next").await;
    assert_eq!(ws.message().await.text, "next", "no second copy before it");
    let answer = relay.poll("once-ws", "after=0").await;
    assert_eq!(texts(&answer.messages), ["hi", "next"]);
}

#[tokio::test]
async fn a_send_retried_on_another_relay_is_stored_once() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let (status, first) = post_keyed(&a, "shared", "tab-3.1", "hello").await;
    assert_eq!(status, StatusCode::CREATED);
    // The answer was lost on the way back; the page tries again through another relay.
    let (status, again) = post_keyed(&b, "shared", "tab-3.1", "hello").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(id_of(&again), id_of(&first));
    let (status, body) = post_keyed(&b, "shared", "tab-3.1", "other").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bound across relays: {body}"
    );
    for relay in [&a, &b] {
        let answer = relay.poll("shared", "after=0").await;
        assert_eq!(texts(&answer.messages), ["hello"]);
        assert_eq!(answer.messages[0].key.as_deref(), Some("tab-3.1"));
    }
}

#[tokio::test]
async fn a_publish_redis_never_answers_is_said_to_be_unknown_and_its_retry_stores_it_once() {
    let redis = RedisServer::start().await;
    let relay = relay_on_with(&redis, |c| c.redis_timeout = Duration::from_millis(500)).await;
    relay.post("paused", "ann", "before").await;
    // Redis stops executing writes (its clients' commands wait), as in a stall of the
    // server or of the network to it: the relay's command is sent and not answered in time.
    let mut conn = redis.connection().await;
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3_000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let (status, body) = post_keyed(&relay, "paused", "tab-4.1", "during").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    let ServerEvent::Error(error) = serde_json::from_str(&body).expect("an error event") else {
        panic!("{body}");
    };
    assert_eq!(error.code, ErrorCode::OutcomeUnknown);
    // The page retries with the same key until it gets an answer; once Redis runs again
    // (the paused script may then have run too), there is exactly one "during".
    let answered = eventually("a retry to be answered", || async {
        let (status, body) = post_keyed(&relay, "paused", "tab-4.1", "during").await;
        (status == StatusCode::OK || status == StatusCode::CREATED).then(|| id_of(&body))
    })
    .await;
    let answer = relay.poll("paused", "after=0").await;
    assert_eq!(texts(&answer.messages), ["before", "during"]);
    assert_eq!(answer.messages[1].id, answered);
}
