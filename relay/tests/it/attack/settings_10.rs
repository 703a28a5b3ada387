//! Item 10: settings that would panic in a request path are refused at startup (exit code 2,
//! naming the setting), and arithmetic on client-supplied numbers cannot overflow.
//!
//! Failed on the main of issue 10: `RELAY_RATE=0`, `RELAY_SSE_HEARTBEAT=0` and
//! `RELAY_WS_PING=0` started a relay that panicked on the first stream or publish.

use std::process::{Command, Stdio};

use protocol::{ResetReason, ServerEvent};

use crate::support::redis::{RedisServer, relay_on};
use crate::support::*;

/// Runs the binary with one setting in its environment; returns its exit code and stderr.
async fn run_with(variable: &str, value: &str) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RELAY_") {
            command.env_remove(name);
        }
    }
    let child = command
        .env("RELAY_ADDR", "127.0.0.1:0")
        .env(variable, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay binary starts");
    // A relay that accepted the setting would serve for ever: the wait is bounded, and the
    // process is killed if it is still running (the guard's drop, as the test fails).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(child);
    let status = eventually(&format!("the relay to refuse {variable}={value}"), || {
        let status = child.0.try_wait().expect("wait");
        async move { status }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr is readable");
    (status.code(), stderr)
}

#[tokio::test]
async fn zero_and_nonsensical_settings_are_refused_at_startup_naming_the_setting() {
    let cases = [
        ("RELAY_RATE", "0"),
        ("RELAY_RATE", "-1"),
        ("RELAY_RATE", "NaN"),
        ("RELAY_BURST", "0.5"),
        ("RELAY_SSE_HEARTBEAT", "0"),
        ("RELAY_WS_PING", "0s"),
        ("RELAY_SEND_TIMEOUT", "0ms"),
        ("RELAY_LONGPOLL_MAX", "0"),
        ("RELAY_LONGPOLL_LINGER", "6s"),
        ("RELAY_MAX_CONNECTIONS", "0"),
        ("RELAY_MAX_ROOMS", "0"),
        ("RELAY_MAX_TEXT_BYTES", "0"),
    ];
    for (variable, value) in cases {
        let (code, stderr) = run_with(variable, value).await;
        assert_eq!(
            code,
            Some(2),
            "{variable}={value}: exit code; stderr: {stderr}"
        );
        assert!(
            stderr.contains(variable),
            "{variable}={value}: the message names the setting: {stderr}"
        );
    }
}

/// `after` is a client's number: the largest one is a cursor from another history, answered
/// with a reset on every transport, never a panic or a wrapped comparison.
async fn the_largest_cursor_is_an_epoch_change(relay: &Relay) {
    relay.post("big", "a", "one").await;
    let max = u64::MAX;
    let answer = relay.poll("big", &format!("after={max}")).await;
    let reset = answer.reset.expect("a reset for a cursor beyond the head");
    assert_eq!(reset.reason, ResetReason::EpochChanged);
    assert_eq!(texts(&answer.messages), ["one"]);

    let mut ws = Ws::connect(&relay.ws_url("big", &format!("after={max}"))).await;
    ws.welcome().await;
    match ws.event().await {
        ServerEvent::Reset(reset) => assert_eq!(reset.reason, ResetReason::EpochChanged),
        other => panic!("expected a reset on the WebSocket, got {other:?}"),
    }
    let mut sse = Sse::connect(
        &relay.sse_url("big", ""),
        &[("last-event-id", &max.to_string())],
    )
    .await
    .expect("SSE opens");
    sse.welcome().await;
    match sse.event().await.1 {
        ServerEvent::Reset(reset) => assert_eq!(reset.reason, ResetReason::EpochChanged),
        other => panic!("expected a reset on SSE, got {other:?}"),
    }
    // The reset is followed by the room as a newcomer sees it, then live messages.
    relay.post("big", "a", "two").await;
    assert_eq!(ws.message().await.text, "one");
    assert_eq!(ws.message().await.text, "two");
    assert_eq!(sse.message().await.text, "one");
    assert_eq!(sse.message().await.text, "two");
}

#[tokio::test]
async fn the_largest_cursor_is_an_epoch_change_in_memory() {
    the_largest_cursor_is_an_epoch_change(&Relay::start().await).await;
}

#[tokio::test]
async fn the_largest_cursor_is_an_epoch_change_with_redis() {
    let redis = RedisServer::start().await;
    the_largest_cursor_is_an_epoch_change(&relay_on(&redis).await).await;
}
