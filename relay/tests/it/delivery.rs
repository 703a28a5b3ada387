//! Every message reaches every client on every transport, once, in id order.

use std::time::Duration;

use futures_util::StreamExt;
use protocol::{ServerEvent, Transport};

use crate::support::*;

#[tokio::test]
async fn every_transport_receives_every_message_once_in_the_same_order() {
    let relay = Relay::start_with(|c| c.wt_addr = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let room = "cross";
    let mut ws = Ws::connect(&relay.ws_url(room, "name=ws-user")).await;
    let (epoch, head) = ws.welcome().await;
    assert_eq!(head, 0);
    let mut sse = Sse::connect(
        &relay.url(&format!("/api/rooms/{room}/events?name=sse-user")),
        &[],
    )
    .await
    .expect("SSE opens");
    assert_eq!(sse.welcome().await.0, epoch, "one epoch for all transports");
    let (mut stream, _) = Ndjson::connect(&relay.stream_url(room, "name=stream-user"), &[])
        .await
        .expect("the HTTP stream opens");
    assert_eq!(
        stream.welcome().await.0,
        epoch,
        "one epoch for all transports"
    );
    let mut session = Wt::connect(&relay, room, "name=wt-user", None)
        .await
        .expect("the WebTransport session opens");
    assert_eq!(
        session.lines.welcome().await.0,
        epoch,
        "one epoch for all transports"
    );

    // Pollers start from the (empty) head and follow concurrently with the publishing.
    let long = {
        let relay_url = relay.addr;
        tokio::spawn(async move {
            let relay = Client::new(relay_url);
            poll_until(&relay, "cross", 0, 6, 5).await
        })
    };
    let short = {
        let relay_url = relay.addr;
        tokio::spawn(async move {
            let relay = Client::new(relay_url);
            poll_until(&relay, "cross", 0, 6, 0).await
        })
    };

    // One message from a client of each transport; WebSocket publishes on its own socket.
    ws.send("from ws").await;
    relay.post(room, "sse-user", "from sse").await;
    relay.post(room, "long-user", "from longpoll").await;
    relay.post(room, "short-user", "from shortpoll").await;
    relay.post(room, "stream-user", "from stream").await;
    session
        .send_line(r#"{"type":"send","text":"from webtransport"}"#)
        .await;

    let mut via_ws = Vec::new();
    let mut via_sse = Vec::new();
    let mut via_stream = Vec::new();
    let mut via_wt = Vec::new();
    for _ in 0..6 {
        via_ws.push(ws.message().await);
        via_sse.push(sse.message().await);
        via_stream.push(stream.message().await);
        via_wt.push(session.lines.message().await);
    }
    let via_long = long.await.expect("long poller");
    let via_short = short.await.expect("short poller");

    assert_eq!(
        ids(&via_ws),
        [1, 2, 3, 4, 5, 6],
        "ids are 1.. in publish order"
    );
    assert_eq!(
        texts(&via_ws),
        [
            "from ws",
            "from sse",
            "from longpoll",
            "from shortpoll",
            "from stream",
            "from webtransport"
        ]
    );
    assert_eq!(
        via_ws[0].from, "ws-user",
        "WebSocket sends carry the socket's name"
    );
    for (transport, got) in [
        ("sse", &via_sse),
        ("stream", &via_stream),
        ("webtransport", &via_wt),
        ("longpoll", &via_long),
        ("shortpoll", &via_short),
    ] {
        assert_eq!(got, &via_ws, "{transport} saw a different stream than ws");
    }
}

#[tokio::test]
async fn websocket_greets_like_the_tutorial_and_echoes_to_the_sender() {
    let relay = Relay::start().await;
    let mut ws = Ws::connect(&relay.ws_url("lobby", "")).await;
    match ws.event().await {
        ServerEvent::Welcome(welcome) => {
            assert_eq!(welcome.transport, Transport::Ws);
            assert_eq!(welcome.room, "lobby");
            assert!(!welcome.epoch.is_empty());
        }
        other => panic!("expected the welcome first, got {other:?}"),
    }
    // The tutorial's `webSocket.send('hello')`: a plain text frame is the message.
    ws.send("hello").await;
    let echo = ws.message().await;
    assert_eq!(
        (echo.text.as_str(), echo.from.as_str()),
        ("hello", "anonymous")
    );
    // The JSON form works too.
    ws.send(r#"{"type":"send","text":"  padded  "}"#).await;
    assert_eq!(ws.message().await.text, "padded", "text is trimmed");
}

#[tokio::test]
async fn newcomers_see_recent_history_then_live_messages() {
    let relay = Relay::start_with(|c| c.join_history = 3).await;
    for i in 1..=5 {
        relay.post("hist", "a", &format!("m{i}")).await;
    }
    let mut ws = Ws::connect(&relay.ws_url("hist", "")).await;
    assert_eq!(ws.welcome().await.1, 5);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(ws.message().await);
    }
    assert_eq!(
        texts(&seen),
        ["m3", "m4", "m5"],
        "the newest join_history messages"
    );

    let mut sse = Sse::connect(&relay.url("/api/rooms/hist/events?limit=2"), &[])
        .await
        .expect("SSE opens");
    sse.welcome().await;
    assert_eq!(
        sse.message().await.text,
        "m4",
        "`limit` overrides the default"
    );
    assert_eq!(sse.message().await.text, "m5");

    relay.post("hist", "a", "live").await;
    assert_eq!(ws.message().await.text, "live");
    assert_eq!(sse.message().await.text, "live");

    let answer = relay.poll("hist", "limit=2").await;
    assert_eq!(texts(&answer.messages), ["m5", "live"]);
    assert_eq!(answer.last_id, 6);
}

#[tokio::test]
async fn history_is_bounded_per_room() {
    let relay = Relay::start_with(|c| c.history = 4).await;
    for i in 1..=10 {
        relay.post("bounded", "a", &format!("m{i}")).await;
    }
    let answer = relay.poll("bounded", "limit=100").await;
    assert_eq!(ids(&answer.messages), [7, 8, 9, 10]);
}

#[tokio::test]
async fn long_poll_waits_for_the_next_message_and_times_out_empty() {
    let relay = Relay::start_with(|c| c.longpoll_max = Duration::from_millis(300)).await;
    relay.post("lp", "a", "first").await;
    // Nothing newer: the poll is held for the (capped) wait, then answers empty at the head.
    let started = std::time::Instant::now();
    let answer = relay.poll("lp", "after=1&wait=30").await;
    assert!(answer.messages.is_empty());
    assert_eq!(answer.last_id, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "a long poll with nothing new is held (answered after {:?})",
        started.elapsed()
    );

    let relay = Relay::start().await;
    let waiting = {
        let addr = relay.addr;
        tokio::spawn(async move { Client::new(addr).poll("lp2", "after=0&wait=20").await })
    };
    // Once the poll is parked (the relay counts it as a connection only once it holds its
    // subscription), a publish wakes it: the live path, not a read of history.
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;
    relay.post("lp2", "a", "wake").await;
    let answer = within("the long poll to answer", waiting)
        .await
        .expect("poll task");
    assert_eq!(texts(&answer.messages), ["wake"]);
}

#[tokio::test]
async fn a_long_poll_woken_soon_after_it_arrived_carries_what_follows_in_one_answer() {
    let linger = Duration::from_secs(5);
    let relay = Relay::start_with(|c| c.longpoll_linger = linger).await;
    relay.post("linger", "a", "one").await;
    let started = std::time::Instant::now();
    let waiting = {
        let addr = relay.addr;
        tokio::spawn(async move { Client::new(addr).poll("linger", "after=1&wait=20").await })
    };
    relay
        .wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;
    // Woken by "two" well within the linger of its arrival, the poll waits out the linger
    // and then carries "three" too: one answer, not two requests. (The margin is the
    // linger, 5 s, against two local POSTs.)
    relay.post("linger", "a", "two").await;
    relay.post("linger", "a", "three").await;
    let answer = within_long("the long poll to answer", waiting)
        .await
        .expect("poll task");
    assert_eq!(texts(&answer.messages), ["two", "three"]);
    assert!(
        started.elapsed() >= linger,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_long_poll_that_finds_a_fresh_message_waits_out_the_linger_for_more() {
    let linger = Duration::from_secs(5);
    let relay = Relay::start_with(|c| c.longpoll_linger = linger).await;
    let posted = std::time::Instant::now();
    relay.post("fresh", "a", "one").await;
    // "one" is seconds younger than the linger when the poll arrives: the answer waits until
    // "one" is a linger old and carries "two" as well. (The margin is the linger, 5 s,
    // against a local POST and a request.)
    let waiting = {
        let addr = relay.addr;
        tokio::spawn(async move { Client::new(addr).poll("fresh", "after=0&wait=20").await })
    };
    relay.post("fresh", "a", "two").await;
    let answer = within_long("the long poll to answer", waiting)
        .await
        .expect("poll task");
    assert_eq!(texts(&answer.messages), ["one", "two"]);
    let held = posted.elapsed();
    // A message's time has millisecond resolution.
    assert!(
        held + Duration::from_millis(2) >= linger,
        "held until \"one\" was a linger old ({held:?})"
    );
    assert!(
        held < Duration::from_secs(20),
        "not for the whole wait ({held:?})"
    );
}

#[tokio::test]
async fn a_long_poll_that_finds_a_message_a_linger_old_is_answered_at_once() {
    let linger = Duration::from_secs(3);
    let relay = Relay::start_with(|c| c.longpoll_linger = linger).await;
    relay.post("late", "a", "one").await;
    // The precondition is an age, so time must pass here: "one" is older than the linger
    // when the poller comes back (a poller that fell behind). It already carries a linger's
    // worth of messages, so holding it further would only add latency.
    tokio::time::sleep(linger + Duration::from_millis(100)).await;
    let asked = std::time::Instant::now();
    let answer = Client::new(relay.addr)
        .poll("late", "after=0&wait=20")
        .await;
    assert_eq!(texts(&answer.messages), ["one"]);
    let took = asked.elapsed();
    assert!(took < linger, "not held for another linger ({took:?})");
}

#[tokio::test]
async fn sse_opens_with_retry_and_sends_keep_alive_comments() {
    let relay = Relay::start_with(|c| c.sse_heartbeat = Duration::from_millis(100)).await;
    let mut sse = Sse::connect(&relay.url("/api/rooms/hb/events"), &[])
        .await
        .expect("SSE opens");
    let first = sse.next().await.expect("welcome");
    assert_eq!(first.retry, Some(1000), "retry: field in the first event");
    assert_eq!(first.event.as_deref(), Some("welcome"));
    let beat = sse.next().await.expect("a heartbeat");
    assert!(beat.comment, "expected a keep-alive comment, got {beat:?}");
}

#[tokio::test]
async fn websocket_that_never_answers_pings_is_closed() {
    let relay = Relay::start_with(|c| c.ws_ping = Duration::from_millis(100)).await;
    let mut silent = Ws::connect(&relay.ws_url("ping", "")).await;
    // Not reading means not answering pings: the relay gives up after one unanswered ping.
    // Reading would answer them, so the test waits for the relay's own count of the timeout
    // first; reading then only drains what the relay already decided.
    relay
        .wait_metric("relay_rejected_total{reason=\"ping_timeout\"}", 1.0)
        .await;
    let frame = silent.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason.as_str(), "ping timeout");
}

#[tokio::test]
async fn websocket_that_answers_pings_stays_open() {
    let relay = Relay::start_with(|c| c.ws_ping = Duration::from_millis(50)).await;
    let mut ws = Ws::connect(&relay.ws_url("ping", "")).await;
    ws.welcome().await;
    // Reading answers pings (tungstenite replies automatically). Counting them, rather than
    // sleeping, shows the relay did ping, and that answered pings keep the socket open: one
    // unanswered ping would have closed it by the next.
    let mut pings = 0;
    while pings < 4 {
        match within("a ping", ws.socket.next()).await {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_))) => pings += 1,
            other => panic!("expected pings on an idle socket, got {other:?}"),
        }
    }
    relay.post("ping", "a", "still here").await;
    let message = ws.message().await;
    assert_eq!(message.text, "still here");
}
