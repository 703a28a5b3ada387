//! HTTP streaming (`GET …/stream`, NDJSON): its head, its heartbeat, resuming from the URL's
//! cursor, and a reader that stops reading.

use std::time::Duration;

use protocol::{ResetReason, ServerEvent, Transport};

use crate::support::raw::RawSse;
use crate::support::*;

#[tokio::test]
async fn the_stream_is_ndjson_that_proxies_must_not_buffer_or_transform_with_a_ping_per_beat() {
    let relay = Relay::start_with(|c| c.sse_heartbeat = Duration::from_millis(100)).await;
    let (mut stream, head) = Ndjson::connect(&relay.stream_url("hb", "name=Ana"), &[])
        .await
        .expect("the stream opens");
    assert_eq!(head["content-type"], "application/x-ndjson");
    assert_eq!(head["cache-control"], "no-cache, no-transform");
    assert_eq!(head["x-accel-buffering"], "no");
    assert!(head.get("content-encoding").is_none(), "never compressed");
    match stream.next().await {
        Some(ServerEvent::Welcome(welcome)) => {
            assert_eq!(welcome.transport, Transport::Stream);
            assert_eq!(welcome.last_id, 0);
        }
        other => panic!("expected the welcome first, got {other:?}"),
    }
    assert_eq!(stream.next().await, Some(ServerEvent::Ping), "a heartbeat");
    let id = relay.post("hb", "Bo", "hello").await;
    let message = stream.message().await;
    assert_eq!((message.id, message.text.as_str()), (id, "hello"));
}

#[tokio::test]
async fn a_stream_asking_for_compression_is_still_sent_plain() {
    let relay = Relay::start().await;
    let (mut stream, head) = Ndjson::connect(
        &relay.stream_url("plain", ""),
        &[("accept-encoding", "gzip, br, zstd")],
    )
    .await
    .expect("the stream opens");
    assert!(head.get("content-encoding").is_none(), "{head:?}");
    stream.welcome().await;
}

#[tokio::test]
async fn the_stream_resumes_from_after_and_epoch_and_is_told_when_the_epoch_is_foreign() {
    let relay = Relay::start().await;
    for i in 1..=5 {
        relay.post("re", "a", &format!("m{i}")).await;
    }
    let (mut first, _) = Ndjson::connect(&relay.stream_url("re", "limit=0"), &[])
        .await
        .expect("opens");
    let (epoch, head) = first.welcome().await;
    assert_eq!(head, 5);
    drop(first);
    // Missed while away.
    relay.post("re", "a", "m6").await;
    let (mut resumed, _) = Ndjson::connect(
        &relay.stream_url("re", &format!("after=3&epoch={epoch}")),
        &[],
    )
    .await
    .expect("opens");
    assert_eq!(resumed.welcome().await, (epoch.clone(), 6));
    for id in 4..=6 {
        assert_eq!(resumed.message().await.id, id, "exactly the missed ones");
    }
    let live = relay.post("re", "a", "m7").await;
    assert_eq!(resumed.message().await.id, live, "then live");

    let (mut stranger, _) = Ndjson::connect(&relay.stream_url("re", "after=3&epoch=gone.1"), &[])
        .await
        .expect("opens");
    stranger.welcome().await;
    match stranger.event().await {
        ServerEvent::Reset(reset) => {
            assert_eq!(reset.reason, ResetReason::EpochChanged);
            assert_eq!(reset.oldest_id, 1);
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    assert_eq!(
        stranger.message().await.id,
        1,
        "the new history from its start"
    );
}

#[tokio::test]
async fn a_stream_reader_that_stops_reading_is_let_go_after_the_send_timeout() {
    let relay = Relay::start_with_small_send_buffer(|c| {
        c.send_timeout = Duration::from_millis(300);
        c.history = 100_000;
        c.history_bytes = 1 << 30;
    })
    .await;
    let path = format!("{}?name=slow", protocol::api::Endpoint::Stream.path("slow"));
    let mut stalled = RawSse::connect_expecting(relay.addr, &path, "application/x-ndjson").await;
    let welcome = stalled.until(b"\n").await;
    assert!(String::from_utf8_lossy(&welcome).contains("\"welcome\""));
    let (mut healthy, _) = Ndjson::connect(&relay.stream_url("slow", "name=fine"), &[])
        .await
        .expect("opens");
    healthy.welcome().await;

    // Publish until the relay says it gave up on the stalled reader; the healthy one reads
    // everything as it goes.
    let published = publish_until_one_is_let_go(&relay, "slow", async |id| {
        assert_eq!(
            healthy.message().await.id,
            id,
            "the healthy reader keeps up"
        );
    })
    .await;
    relay
        .wait_metric("relay_connections{transport=\"stream\"}", 1.0)
        .await;
    // What the stalled reader had been sent ends cleanly, without a gap.
    let mut got = Vec::new();
    let rest = stalled.rest().await;
    for line in String::from_utf8(rest).expect("UTF-8").lines() {
        match serde_json::from_str(line) {
            Ok(ServerEvent::Message(m)) => got.push(m.id),
            Ok(ServerEvent::Ping) => {}
            other => panic!("expected messages, got {other:?} from {line:?}"),
        }
    }
    let expected: Vec<u64> = (1..=got.len() as u64).collect();
    assert_eq!(got, expected, "an unbroken run from the first message");
    assert!(
        (got.len() as u64) < published,
        "let go before it had everything"
    );
}
