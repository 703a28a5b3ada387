//! A WebSocket client that stops reading slows nobody else and is closed as documented.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Enough 4 KiB messages to overflow the socket buffers between relay and client many times
/// over, and the room's history and live queue too.
const COUNT: usize = 3000;

async fn flood(relay: &Relay, room: &str) {
    let sender = Ws::connect(&relay.ws_url(room, "name=flood&limit=0")).await;
    // The sender reads its own echoes while it writes: a client that stops reading is the
    // subject of these tests, and the sender must not become one.
    let (mut tx, mut rx) = sender.socket.split();
    let payload = "p".repeat(4000);
    let send = async {
        for i in 0..COUNT {
            within("a flood send", tx.send(format!("{i} {payload}").into()))
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
    let relay = Relay::start_with(|c| {
        c.send_timeout = Duration::from_secs(60);
        // The flood outpaces a debug-build reader; enough history lets it catch up rather
        // than be told of a gap, which is not what this test is about.
        c.history = COUNT as u64;
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
    drop(stalled);
}

#[tokio::test]
async fn stalled_reader_is_closed_so_that_it_resumes() {
    let relay = Relay::start_with(|c| {
        c.send_timeout = Duration::from_millis(300);
        c.history = COUNT as u64;
    })
    .await;
    let mut stalled = Ws::connect_small_buffer(&relay.ws_url("slow2", ""), relay.addr).await;
    stalled.welcome().await;
    flood(&relay, "slow2").await;
    // Now read: whatever was buffered, then the end of the connection. If the close frame
    // got through, it carries the documented code.
    if let Some(frame) = stalled.closed().await {
        assert_eq!(u16::from(frame.code), 4008, "{frame:?}");
    }
}
