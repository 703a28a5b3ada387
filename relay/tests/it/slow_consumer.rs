//! A WebSocket client that stops reading slows nobody else and is closed as documented.
//!
//! Nothing here depends on how much the kernel buffers: the stalled client's receive buffer
//! is set small explicitly, and the tests flood until the relay *reports* what they wait for
//! (its `slow_consumer` refusal counter) rather than for a count of messages that happens to
//! overflow this machine's socket buffers.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::ServerEvent;
use tokio_tungstenite::tungstenite::Message;

use crate::support::raw::RawSse;
use crate::support::*;

/// Enough 4 KiB messages to overflow the socket buffers between relay and client many times
/// over, and the room's history and live queue too.
const COUNT: usize = 3000;

/// 4 KB of text: few messages fill a socket buffer.
fn payload(i: usize) -> String {
    format!("{i} {}", "p".repeat(4000))
}

async fn flood(relay: &Relay, room: &str) {
    let sender = Ws::connect(&relay.ws_url(room, "name=flood&limit=0")).await;
    // The sender reads its own echoes while it writes: a client that stops reading is the
    // subject of these tests, and the sender must not become one.
    let (mut tx, mut rx) = sender.socket.split();
    let send = async {
        for i in 0..COUNT {
            within("a flood send", tx.send(payload(i).into()))
                .await
                .expect("flood frame sent");
        }
    };
    let drain = async {
        let mut echoes = 0;
        while echoes < COUNT {
            match within("a flood echo", rx.next()).await {
                Some(Ok(Message::Text(text))) if text.contains("\"type\":\"message\"") => {
                    echoes += 1
                }
                Some(Ok(_)) => {}
                other => panic!("flood sender's socket ended: {other:?}"),
            }
        }
    };
    tokio::join!(send, drain);
}

#[tokio::test]
async fn stalled_reader_does_not_delay_others() {
    // The stalled client is kept for a minute: everything below happens while it is stuck.
    // Its socket holds a few kilobytes on each end (set explicitly), so the relay's writes to
    // it block after a handful of the 3000 messages, whatever the kernel's defaults.
    let relay = Relay::start_with_small_send_buffer(|c| {
        c.send_timeout = Duration::from_secs(60);
        // The flood outpaces a debug-build reader; enough history lets it catch up rather
        // than be told of a gap, which is not what this test is about.
        c.history = COUNT as u64;
        // Counted in messages here, not bytes.
        c.history_bytes = 1 << 30;
    })
    .await;
    let mut stalled = Ws::connect_small_buffer(&relay.ws_url("slow", ""), relay.addr).await;
    stalled.welcome().await;
    let mut healthy = Ws::connect(&relay.ws_url("slow", "")).await;
    healthy.welcome().await;

    let reader = async {
        let mut got = Vec::with_capacity(COUNT);
        for _ in 0..COUNT {
            got.push(healthy.message().await.id);
        }
        got
    };
    let ((), got) = tokio::join!(flood(&relay, "slow"), reader);
    let expected: Vec<u64> = (1..=COUNT as u64).collect();
    assert_eq!(got, expected, "the healthy client got everything, in order");
    assert_eq!(
        relay
            .metric("relay_rejected_total{reason=\"slow_consumer\"}")
            .await,
        Some(0.0),
        "a minute's send timeout was not reached"
    );
    // The stalled client was held back, not dropped: reading now, it catches up.
    let mut caught_up = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        caught_up.push(stalled.message().await.id);
    }
    assert_eq!(
        caught_up, expected,
        "the stalled client catches up, in order"
    );
}

#[tokio::test]
async fn stalled_reader_is_closed_so_that_it_resumes() {
    let relay = Relay::start_with_small_send_buffer(|c| {
        c.send_timeout = Duration::from_millis(300);
        // Everything published stays in history, so the closed client can resume exactly.
        c.history = 100_000;
        // Counted in messages here, not bytes.
        c.history_bytes = 1 << 30;
    })
    .await;
    let mut stalled = Ws::connect_small_buffer(&relay.ws_url("slow2", ""), relay.addr).await;
    let (epoch, _) = stalled.welcome().await;

    // Publish until the relay says it gave up on the stalled reader.
    let published = publish_until_one_is_let_go(&relay, "slow2", async |_| {}).await as usize;

    // Now read: what was buffered (an unbroken run from id 1), then the documented close.
    // The relay gives the close frame a second to leave; the buffers between it and this
    // client hold a few kilobytes, which this reads at once.
    let mut got = Vec::new();
    let frame = loop {
        match within("the stalled reader's socket to end", stalled.socket.next()).await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                Ok(ServerEvent::Message(m)) => got.push(m.id),
                other => panic!("expected only messages, got {other:?}"),
            },
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    let frame = frame.expect("the close frame carries a code");
    assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
    let expected: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(got, expected, "what arrived before the close has no gap");
    assert!(
        got.len() < published,
        "the reader was closed before it had everything ({} of {published})",
        got.len()
    );
    // The slot was given back.
    eventually("the stalled connection to be released", || async {
        let open = relay.metric("relay_connections{transport=\"ws\"}").await;
        (open == Some(0.0)).then_some(())
    })
    .await;

    // Resuming from the last id it has gives exactly the rest.
    let last = got.last().copied().unwrap_or(0);
    let mut resumed =
        Ws::connect(&relay.ws_url("slow2", &format!("after={last}&epoch={epoch}"))).await;
    assert_eq!(resumed.welcome().await, (epoch, published as u64));
    for id in last + 1..=published as u64 {
        assert_eq!(resumed.message().await.id, id, "resumed without a gap");
    }
}

/// Publishes `count` 4 KB messages over POST.
async fn publish(relay: &Relay, room: &str, count: usize) {
    for i in 1..=count {
        relay.post(room, "flood", &payload(i)).await;
    }
}

/// Reads ids until a reset; returns the ids before it and the reset.
async fn until_reset(mut next: impl AsyncFnMut() -> ServerEvent) -> (Vec<u64>, protocol::Reset) {
    let mut ids = Vec::new();
    loop {
        match next().await {
            ServerEvent::Message(m) => ids.push(m.id),
            ServerEvent::Reset(reset) => return (ids, reset),
            other => panic!("expected messages then a reset, got {other:?}"),
        }
    }
}

/// What a client behind history must have seen: an unbroken run from id 1, then a
/// `history_gap` reset pointing at the oldest message still held.
fn assert_told_of_gap(client: &str, before: &[u64], reset: &protocol::Reset, oldest: u64) {
    let unbroken: Vec<u64> = (1..=before.len() as u64).collect();
    assert_eq!(before, unbroken, "{client}: no gap before the reset");
    assert_eq!(
        (reset.reason, reset.oldest_id),
        (protocol::ResetReason::HistoryGap, oldest),
        "{client}: the reset"
    );
}

/// A live client (WebSocket or SSE) that falls further behind than the room's history is told
/// of the gap (`reset` `history_gap`), then carries on from the oldest message still held.
/// The relay's send buffer and the clients' receive buffers are small, so 1000 messages of
/// 4 KB are far more than the 256 the live queue holds plus what the sockets and the HTTP
/// layer's write buffer (about 400 KB) hold.
#[tokio::test]
async fn live_client_further_behind_than_history_is_told_of_the_gap_and_carries_on() {
    const PUBLISHED: usize = 1000;
    const HISTORY: u64 = 100;
    let relay = Relay::start_with_small_send_buffer(|c| {
        c.send_timeout = Duration::from_secs(120);
        c.history = HISTORY;
        // Counted in messages here, not bytes.
        c.history_bytes = 1 << 30;
    })
    .await;
    let mut ws = Ws::connect_small_buffer(&relay.ws_url("behind", ""), relay.addr).await;
    ws.welcome().await;
    let mut sse = RawSse::connect(relay.addr, &relay.sse_path("behind")).await;
    assert!(matches!(sse.event().await, ServerEvent::Welcome(_)));
    // Neither client reads while the room moves on.
    within_long("the flood", publish(&relay, "behind", PUBLISHED)).await;

    let oldest = PUBLISHED as u64 - HISTORY + 1;
    let (before, reset) = until_reset(async || ws.event().await).await;
    assert_told_of_gap("ws", &before, &reset, oldest);
    let (before, reset) = until_reset(async || sse.event().await).await;
    assert_told_of_gap("sse", &before, &reset, oldest);
    for id in oldest..=PUBLISHED as u64 {
        assert_eq!(
            ws.message().await.id,
            id,
            "ws carries on from the oldest retained"
        );
        assert_eq!(
            sse.message().await.id,
            id,
            "sse carries on from the oldest retained"
        );
    }
    let next = relay.post("behind", "a", "live again").await;
    assert_eq!(ws.message().await.id, next);
    assert_eq!(sse.message().await.id, next);
}
