//! SIGTERM: the real binary stops within its deadline, and every client sees a clean end.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::Process;
use crate::support::*;

/// Starts the relay binary on port 0 with a shutdown deadline (and a drain window shorter).
async fn spawn_relay(deadline: &str) -> (Process, std::net::SocketAddr) {
    Process::spawn(
        &["--shutdown-deadline", deadline, "--drain-window", "500ms"],
        &[],
    )
    .await
}

/// The advice in a close reason or event body: `{"retry_after_ms":N}`.
fn advice(json: &str) -> u64 {
    let advice: protocol::RetryAdvice =
        serde_json::from_str(json).unwrap_or_else(|err| panic!("{json:?}: {err}"));
    advice.retry_after_ms
}

#[tokio::test]
async fn sigterm_ends_every_stream_with_advice_within_the_deadline() {
    let (mut process, addr) = Process::spawn(
        &[
            "--shutdown-deadline",
            "5s",
            "--drain-window",
            "1s",
            "--wt-addr",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    let relay = Client::new(addr);
    let mut ws = Ws::connect(&relay.ws_url("bye", "")).await;
    ws.welcome().await;
    let mut sse = Sse::connect(&relay.sse_url("bye", ""), &[])
        .await
        .expect("SSE opens");
    sse.welcome().await;
    let (mut stream, _) = Ndjson::connect(&relay.stream_url("bye", ""), &[])
        .await
        .expect("the HTTP stream opens");
    stream.welcome().await;
    let mut session = Wt::connect(&relay, "bye", "", None)
        .await
        .expect("the WebTransport session opens");
    session.lines.welcome().await;
    // A WebTransport session still setting up (it never opens its stream) has nothing to
    // drain: it must not hold the exit until the deadline (the header timeout, 10 s, is
    // longer than the 5 s deadline).
    let _setting_up = crate::support::wt::session_only(&relay, "bye", "").await;
    let long_poll =
        tokio::spawn(async move { Client::new(addr).poll("bye", "after=0&wait=25").await });
    // Every client is live: a message reaches each, and answers the first long poll.
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;
    relay.post("bye", "a", "before").await;
    assert_eq!(ws.message().await.text, "before");
    assert_eq!(sse.message().await.text, "before");
    assert_eq!(stream.message().await.text, "before");
    assert_eq!(session.lines.message().await.text, "before");
    let first = within("the first long poll", long_poll)
        .await
        .expect("poll");
    assert_eq!(texts(&first.messages), ["before"]);
    // A second long poll is parked (counted once subscribed); a shutdown must answer it.
    let long_poll =
        tokio::spawn(async move { Client::new(addr).poll("bye", "after=1&wait=25").await });
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;

    process.sigterm();

    // Each is told to come back within the drain window (1 s).
    let frame = ws.closed().await.expect("a close frame");
    assert_eq!(
        u16::from(frame.code),
        1012,
        "WebSocket closed as restarting"
    );
    assert!(advice(&frame.reason) <= 1000, "{frame:?}");
    let (event, parsed) = sse.event().await;
    let protocol::ServerEvent::Reconnect(told) = parsed else {
        panic!("a reconnect event before the end: {event:?}");
    };
    assert_eq!(event.event.as_deref(), Some("reconnect"));
    assert_eq!(
        event.retry,
        Some(told.retry_after_ms),
        "a plain EventSource waits as long"
    );
    assert!(told.retry_after_ms <= 1000);
    assert_eq!(sse.next().await, None, "then the SSE stream ends cleanly");
    for (transport, lines) in [
        ("stream", &mut stream),
        ("webtransport", &mut session.lines),
    ] {
        match lines.event().await {
            protocol::ServerEvent::Reconnect(told) => {
                assert!(told.retry_after_ms <= 1000, "{transport}: {told:?}")
            }
            other => panic!("{transport}: a reconnect line before the end, not {other:?}"),
        }
        assert_eq!(
            lines.next().await,
            None,
            "then the {transport} stream ends cleanly"
        );
    }
    let answer = within("the long poll to be answered", long_poll)
        .await
        .expect("long poll answered with 200");
    assert!(answer.messages.is_empty());
    assert!(
        answer.retry_after_ms.is_some_and(|ms| ms <= 1000),
        "{answer:?}"
    );

    let status = process.exited().await;
    assert!(status.success(), "exit status {status}");
    // Stopped because every stream ended, not because the 5 s deadline cut it short.
    let log = process.rest_of_log().await;
    assert!(
        !log.iter()
            .any(|line| line.contains("shutdown deadline passed")),
        "{log:#?}"
    );
    assert!(log.iter().any(|line| line.ends_with("stopped")), "{log:#?}");
}

#[tokio::test]
async fn the_drain_closes_streams_one_after_another_over_its_window() {
    let window = Duration::from_secs(4);
    let (mut process, addr) =
        Process::spawn(&["--shutdown-deadline", "10s", "--drain-window", "4s"], &[]).await;
    let relay = Client::new(addr);
    let mut sockets = Vec::new();
    for _ in 0..8 {
        let mut ws = Ws::connect(&relay.ws_url("drain", "")).await;
        ws.welcome().await;
        sockets.push(ws);
    }
    let signalled = Instant::now();
    process.sigterm();
    let closes = futures_util::future::join_all(sockets.iter_mut().map(|ws| async {
        let frame = ws.closed().await.expect("a close frame");
        (Instant::now(), u16::from(frame.code), advice(&frame.reason))
    }))
    .await;
    let mut at: Vec<Duration> = closes.iter().map(|(t, ..)| *t - signalled).collect();
    at.sort();
    // The k-th of 8 closes no earlier than k/8 of the window after the drain began (which
    // is after the signal): lower bounds, which a busy machine cannot break. All at once,
    // the last would close with the first.
    for (k, at) in at.iter().enumerate() {
        let turn = window.mul_f64(k as f64 / 8.0);
        assert!(
            *at >= turn,
            "close {k} at {at:?}, before its turn at {turn:?}: {closes:?}"
        );
    }
    // And they did not all wait for the end: the first turn is at once, and even a very
    // busy machine closes one socket in less than the 3.5 s before the last turn.
    assert!(
        at[0] < window.mul_f64(7.0 / 8.0),
        "the first close waited until {:?}",
        at[0]
    );
    assert!(closes.iter().all(|(_, code, _)| *code == 1012));
    let told: std::collections::BTreeSet<u64> = closes.iter().map(|(.., ms)| *ms).collect();
    assert!(
        told.iter().all(|ms| *ms <= 4000),
        "within a window: {told:?}"
    );
    assert!(told.len() > 1, "jittered, not one time for all: {told:?}");
    assert!(process.exited().await.success());
}

/// A request in flight that never finishes: a `POST` whose body never comes. A graceful
/// shutdown must wait for it (an idle connection, or one with half a request head, is simply
/// closed). `Expect: 100-continue` makes the relay say when the handler starts reading the
/// body, so the test knows the request is in flight rather than guessing.
async fn unfinished_post(addr: std::net::SocketAddr) -> TcpStream {
    let mut stuck = TcpStream::connect(addr).await.expect("connect");
    stuck
        .write_all(
            b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
    let mut answer = [0u8; 25];
    within("100 Continue", stuck.read_exact(&mut answer))
        .await
        .expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    stuck
}

#[tokio::test]
async fn sigterm_exits_by_the_deadline_even_if_a_client_hangs_on() {
    let (mut process, addr) = spawn_relay("1s").await;
    let stuck = unfinished_post(addr).await;
    let started = Instant::now();
    process.sigterm();
    // The stuck client held the shutdown open until the deadline, and no longer.
    process.logged("shutdown deadline passed").await;
    let status = process.exited().await;
    assert!(status.success(), "exit status {status}");
    // Held open until the 1 s deadline (a lower bound, which load cannot break); that it
    // then exited rather than hung is `exited`'s bounded wait.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "held open until the 1 s deadline ({:?})",
        started.elapsed()
    );
    drop(stuck);
}

#[tokio::test]
async fn while_draining_new_connections_and_readiness_probes_are_refused() {
    let (mut process, addr) = spawn_relay("10s").await;
    // Holds the drain open, so that there is a "while".
    let stuck = unfinished_post(addr).await;
    process.sigterm();
    process.logged("SIGTERM: shutting down").await;
    // An orchestrator's readiness probe (and any new client) is turned away at once.
    eventually("new connections to be refused", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    let probe = http().get(format!("http://{addr}/readyz")).send().await;
    assert!(probe.is_err(), "readyz during the drain: {probe:?}");
    assert!(
        process.child.try_wait().expect("wait").is_none(),
        "still draining, not exited"
    );
    // The last request ending ends the drain, well before the deadline.
    drop(stuck);
    let status = process.exited().await;
    assert!(status.success(), "exit status {status}");
}
