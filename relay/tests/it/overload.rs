//! Admission (`RELAY_ACCEPT_RATE`): new streams over the rate are refused with the time to
//! come back, and a crowd refused together is told successive times.

use protocol::{ErrorCode, RetryAdvice, ServerEvent};

use crate::support::*;

#[tokio::test]
async fn streams_over_the_accept_rate_are_told_successive_times_to_come_back() {
    // One new stream per 20 s, a burst of one: nothing refills while the test runs, so the
    // figures below do not depend on how fast it runs.
    let relay = Relay::start_with(|c| c.accept_rate = 0.05).await;
    let mut first = Sse::connect(&relay.sse_url("busy", ""), &[])
        .await
        .expect("the burst admits one");
    first.welcome().await;

    let refused = http()
        .get(relay.sse_url("busy", ""))
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    let ServerEvent::Error(error) = refused.json().await.expect("JSON") else {
        panic!("an error event");
    };
    assert_eq!(error.code, ErrorCode::Overloaded);
    let ms = error.retry_after_ms.expect("when to come back");
    assert!((19_000..=20_000).contains(&ms), "the next slot: {ms}");
    assert_eq!(retry_after, ms.div_ceil(1000), "the header says the same");

    // A browser cannot read a refused handshake's status: the WebSocket opens and is closed
    // with 1013 and the slot after (capped at 30 s ahead).
    let mut ws = Ws::connect(&relay.ws_url("busy", "")).await;
    let frame = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1013);
    let advice: RetryAdvice = serde_json::from_str(&frame.reason).expect("JSON reason");
    assert!(
        (29_000..=30_000).contains(&advice.retry_after_ms),
        "{advice:?}"
    );

    // Polls are requests (paced per client), not streams: not held back.
    let answer = relay.poll("busy", "after=0").await;
    assert!(answer.messages.is_empty());
    // And what is open keeps working.
    relay.post("busy", "a", "still here").await;
    assert_eq!(first.message().await.text, "still here");
}
