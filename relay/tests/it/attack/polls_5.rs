//! Item 5: a poll answer carries at most 256 messages and 1 MiB whatever `limit` asks (a
//! larger `limit` is capped, not refused) and says `more`; the rest follows, in order. With
//! the memory bus and with Redis (where one read fetches no more than that).
//!
//! Failed on the main of issue 10: `limit=100000` was honoured up to the whole history
//! (about 2.5 MB here in one answer).

use protocol::limits::{DEFAULT_MAX_TEXT_BYTES, MAX_READ_BYTES, MAX_READ_MESSAGES};
use reqwest::StatusCode;

use crate::support::redis::{RedisServer, relay_on_with};
use crate::support::*;

const PUBLISHED: u64 = 300;

async fn poll_answers_are_bounded(relay: &Relay) {
    // The worst texts: each escapes to twice its size in JSON.
    let text = "\"".repeat(DEFAULT_MAX_TEXT_BYTES);
    for _ in 0..PUBLISHED {
        relay.post("worst", "a", &text).await;
    }
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let response = http()
            .get(relay.url(&format!(
                "/api/rooms/worst/messages?after={after}&limit=100000"
            )))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a large limit is capped, not refused"
        );
        let body = response.bytes().await.expect("body");
        assert!(
            body.len() <= MAX_READ_BYTES + 4096,
            "an answer of {} bytes",
            body.len()
        );
        let answer: protocol::PollResponse = serde_json::from_slice(&body).expect("an answer");
        assert!(answer.messages.len() <= MAX_READ_MESSAGES);
        ids.extend(answer.messages.iter().map(|m| m.id));
        after = answer.last_id;
        if !answer.more {
            break;
        }
        assert!(!answer.messages.is_empty(), "an answer with more moves on");
    }
    assert_eq!(
        ids,
        (1..=PUBLISHED).collect::<Vec<_>>(),
        "everything, in order"
    );
    // Small messages: the count is the bound.
    for _ in 0..PUBLISHED {
        relay.post("small", "a", "x").await;
    }
    let answer = relay.poll("small", "after=0&limit=100000").await;
    assert_eq!(answer.messages.len(), MAX_READ_MESSAGES);
    assert!(answer.more);
}

fn roomy(config: &mut ::relay::config::Config) {
    config.history_bytes = 64 << 20;
}

#[tokio::test]
async fn poll_answers_are_bounded_in_memory() {
    poll_answers_are_bounded(&Relay::start_with(roomy).await).await;
}

#[tokio::test]
async fn poll_answers_are_bounded_with_redis() {
    let redis = RedisServer::start().await;
    poll_answers_are_bounded(&relay_on_with(&redis, roomy).await).await;
}
