//! Item 4: memory is budgeted in bytes, not only messages. A room's history keeps at most
//! `RELAY_HISTORY_BYTES` (the newest message always stays), with the memory bus and with
//! Redis; texts cannot hold the control characters that escape to six bytes each (see
//! `names_11.rs`).
//!
//! Failed on the main of issue 10: 100 texts of 4000 escaped quotes were all retained.

use protocol::limits::DEFAULT_MAX_TEXT_BYTES;

use crate::support::redis::{RedisServer, relay_on_with};
use crate::support::*;

const BUDGET: usize = 64 * 1024;

async fn history_is_capped_in_bytes(relay: &Relay) {
    // The worst text there is: every character escapes to two bytes of JSON.
    let text = "\"".repeat(DEFAULT_MAX_TEXT_BYTES);
    for _ in 0..100 {
        relay.post("big", "a", &text).await;
    }
    let mut after = 0;
    let mut retained = Vec::new();
    loop {
        let answer = relay.poll("big", &format!("after={after}&limit=256")).await;
        retained.extend(answer.messages.iter().map(|m| (m.id, m.text.len())));
        after = answer.last_id;
        if !answer.more {
            break;
        }
    }
    // Each text costs at least twice its length kept (its JSON escapes every character),
    // so the texts retained add up to at most half the budget (the memory bus counts the
    // JSON, Redis the text plus overhead; either way a cap that counted half would fail).
    let bytes: usize = retained.iter().map(|(_, len)| len).sum();
    assert!(
        bytes <= BUDGET / 2 + DEFAULT_MAX_TEXT_BYTES,
        "{} messages, {bytes} bytes of text retained",
        retained.len()
    );
    assert!(
        retained.len() >= 5,
        "but not nothing: {} kept",
        retained.len()
    );
    assert_eq!(
        retained.last().map(|(id, _)| *id),
        Some(100),
        "the newest stays"
    );
}

fn budget(config: &mut ::relay::config::Config) {
    config.history_bytes = BUDGET;
}

#[tokio::test]
async fn history_is_capped_in_bytes_in_memory() {
    history_is_capped_in_bytes(&Relay::start_with(budget).await).await;
}

#[tokio::test]
async fn history_is_capped_in_bytes_with_redis() {
    let redis = RedisServer::start().await;
    history_is_capped_in_bytes(&relay_on_with(&redis, budget).await).await;
}
