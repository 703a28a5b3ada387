//! Item 2 (the slow-reader half; the per-client cap is in `budgets_2.rs`): an SSE client that
//! stops reading is dropped once a write has waited `RELAY_SEND_TIMEOUT`, and its connection
//! slot is freed; readers that keep up lose nothing.
//!
//! Failed on the main of issue 10: SSE writes had no time limit, so the 200 streams below
//! kept their slots for ever.

use std::time::Duration;

use crate::support::raw::RawSse;
use crate::support::*;

const STALLED: usize = 200;
const MESSAGES: usize = 40;

#[tokio::test]
async fn sse_streams_that_never_read_are_dropped_and_their_slots_freed() {
    // Small socket buffers on both ends (set explicitly), so that a few messages fill them.
    let relay = Relay::start_with_small_send_buffer(|c| {
        c.send_timeout = Duration::from_secs(1);
        c.sse_heartbeat = Duration::from_secs(1);
    })
    .await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        stalled.push(RawSse::connect(relay.addr, &relay.sse_path("stall")).await);
    }
    let mut healthy = Sse::connect(&relay.sse_url("stall", ""), &[])
        .await
        .expect("SSE opens");
    healthy.welcome().await;
    relay
        .wait_metric("relay_connections{transport=\"sse\"}", (STALLED + 1) as f64)
        .await;

    // Far more than the stalled sockets' buffers hold; the healthy reader keeps up.
    let text = "x".repeat(4000);
    for i in 0..MESSAGES {
        relay.post("stall", "flood", &format!("{i} {text}")).await;
        assert!(healthy.message().await.text.starts_with(&format!("{i} ")));
    }
    // Every stalled stream is dropped by the send limit (plus a heartbeat for the write
    // that finds the socket full); only the healthy one remains.
    relay
        .wait_metric("relay_connections{transport=\"sse\"}", 1.0)
        .await;
    let sockets = relay.metric("relay_sockets").await.expect("a gauge");
    assert!(
        sockets < 10.0,
        "the stalled sockets are closed too ({sockets} open)"
    );
    // The slots are free: another client connects and the healthy one carries on.
    let mut newcomer = Sse::connect(&relay.sse_url("stall", ""), &[])
        .await
        .expect("SSE opens");
    newcomer.welcome().await;
    relay.post("stall", "a", "after").await;
    assert_eq!(healthy.message().await.text, "after");
    drop(stalled);
}
