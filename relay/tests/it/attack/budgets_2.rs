//! Item 2 (the per-client half; slow readers are in `slow_readers_2.rs`): one client address
//! cannot take every connection slot. At `RELAY_MAX_CONNECTIONS_PER_CLIENT` its next stream,
//! WebSocket or long poll gets 503 `too_many_connections` with `Retry-After`; another client
//! still connects.
//!
//! Failed on the main of issue 10: there was no per-client cap (the relay's global one was the
//! only one, so one client could hold all of it).

use std::net::IpAddr;

use reqwest::StatusCode;

use crate::support::*;

const HOG: [u8; 4] = [127, 0, 0, 2];
const OTHER: [u8; 4] = [127, 0, 0, 3];
const CAP: usize = 4;

#[tokio::test]
async fn one_client_at_its_connection_cap_does_not_lock_out_another() {
    let relay = Relay::start_with(|c| {
        c.max_connections_per_client = CAP;
        // The relay as a whole has room to spare: only the per-client cap can refuse.
        c.max_connections = 1000;
    })
    .await;
    let hog = IpAddr::from(HOG);
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut sse = Sse::connect_from(hog, &relay.sse_url("r", ""))
            .await
            .expect("within the cap");
        sse.welcome().await;
        held.push(sse);
    }
    // Over the cap, on every transport.
    let (status, body) = Sse::connect_from(hog, &relay.sse_url("r", ""))
        .await
        .err()
        .expect("over the cap");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("too_many_connections"), "{body}");
    let ws = Ws::connect_from(&relay.ws_url("r", ""), relay.addr, hog).await;
    assert_eq!(ws.err(), Some(503));
    let poll = http_from(hog)
        .get(relay.url("/api/rooms/r/messages?after=0&wait=5"))
        .send()
        .await
        .expect("GET");
    assert_eq!(poll.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = poll.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!(retry >= 1, "Retry-After: {retry}");

    // Another client connects on every transport meanwhile.
    let other = IpAddr::from(OTHER);
    let mut sse = Sse::connect_from(other, &relay.sse_url("r", ""))
        .await
        .expect("another client");
    sse.welcome().await;
    let mut ws = Ws::connect_from(&relay.ws_url("r", ""), relay.addr, other)
        .await
        .expect("another client's WebSocket");
    ws.welcome().await;

    // A place given back is usable again.
    held.pop();
    eventually("the hog's closed stream to be released", || async {
        let opened = Sse::connect_from(hog, &relay.sse_url("r", "")).await.ok();
        opened.map(|_| ())
    })
    .await;
}
