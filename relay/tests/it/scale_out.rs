//! Several relays on one real Redis: the same rooms, ids, order and resume on every relay,
//! and an outage of Redis that loses nothing it acknowledged.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use protocol::{ErrorCode, ResetReason, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::cluster::*;
use crate::support::redis::{RedisServer, drop_subscriptions, relay_on, relay_on_with, wait_ready};
use crate::support::*;

#[tokio::test]
async fn two_relays_deliver_every_message_to_every_transport_once_in_one_order() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let both = vec![a.addr, b.addr];
    let room = "shared";

    // Readers of every transport, spread over both relays.
    let sse_a = sse_reader(sse_url(a.addr, room, "name=sse-a")).await;
    let sse_b = sse_reader(sse_url(b.addr, room, "name=sse-b")).await;
    let long_a = poller(vec![a.addr], room, 5, 200);
    let short_b = poller(vec![b.addr], room, 0, 1000);

    // Four WebSocket clients publish concurrently, two per relay, while reading everything;
    // two more publishers POST to both relays in turn.
    const PER_SOCKET: usize = 500;
    const PER_POSTER: usize = 250;
    let mut sockets = Vec::new();
    for (i, addr) in [a.addr, a.addr, b.addr, b.addr].into_iter().enumerate() {
        let (mut sink, reader) = ws_reader(ws_url(addr, room, &format!("name=ws{i}"))).await;
        let sender = tokio::spawn(async move {
            let mut texts = Vec::new();
            for n in 0..PER_SOCKET {
                let text = format!("ws{i}-{n}");
                sink.send(text.clone().into()).await.expect("frame sent");
                texts.push(text);
            }
            (sink, texts)
        });
        sockets.push((sender, reader));
    }
    let posters = [
        post_many(both.clone(), room, "post0".into(), PER_POSTER),
        post_many(vec![b.addr, a.addr], room, "post1".into(), PER_POSTER),
    ];

    let mut published = HashSet::new();
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    for (sender, reader) in sockets {
        let (sink, texts) = within("a WebSocket publisher", sender)
            .await
            .expect("sender");
        published.extend(texts);
        sinks.push(sink);
        readers.push(reader);
    }
    for poster in posters {
        published.extend(within("a POST publisher", poster).await.expect("poster"));
    }
    // Every publish has been acknowledged over POST; WebSocket frames are acknowledged by
    // their echo, which each reader waits for before END arrives.
    a.post(room, "end", END).await;

    let mut clients = Vec::new();
    for (i, reader) in readers.into_iter().enumerate() {
        clients.push((format!("ws{i}"), reader.await.expect("ws reader")));
    }
    for (name, task) in [
        ("sse on A", sse_a),
        ("sse on B", sse_b),
        ("long poll on A", long_a),
        ("short poll on B", short_b),
    ] {
        clients.push((name.to_owned(), task.await.expect("reader")));
    }
    drop(sinks);

    let history = history(&b, room).await;
    let total = 4 * PER_SOCKET + 2 * PER_POSTER;
    let ids: Vec<u64> = history.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        (1..=total as u64 + 1).collect::<Vec<_>>(),
        "ids 1.. with no gap across both relays"
    );
    let texts: HashSet<String> = history
        .iter()
        .filter(|m| m.text != END)
        .map(|m| m.text.clone())
        .collect();
    assert_eq!(texts, published, "every published text exactly once");
    let named: Vec<(&str, Received)> = clients
        .iter_mut()
        .map(|(name, received)| (name.as_str(), std::mem::take(received)))
        .collect();
    for (name, received) in &named {
        assert!(received.errors.is_empty(), "{name}: {:?}", received.errors);
    }
    assert_all_received(&named, &history);
}

#[tokio::test]
async fn a_long_poller_alternating_relays_misses_nothing() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let room = "alternating";
    // Small pages make for many requests, each to the other relay.
    let alternating = poller(vec![a.addr, b.addr], room, 5, 7);
    let posters = [
        post_many(vec![a.addr], room, "on-a".into(), 300),
        post_many(vec![b.addr], room, "on-b".into(), 300),
    ];
    for poster in posters {
        within("a publisher", poster).await.expect("poster");
    }
    b.post(room, "end", END).await;
    let received = within("the alternating poller", alternating)
        .await
        .expect("poller");
    let history = history(&a, room).await;
    assert_eq!(history.len(), 601);
    assert_all_received(&[("alternating long poller", received)], &history);
}

#[tokio::test]
async fn a_client_resumes_on_the_other_relay_with_exactly_what_it_missed() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let room = "resume";
    for n in 1..=5 {
        b.post(room, "b", &format!("m{n}")).await;
    }

    // WebSocket: read 1..=5 on A, leave, resume on B.
    let mut ws = Ws::connect(&a.ws_url(room, "limit=50")).await;
    let (epoch, head) = ws.welcome().await;
    assert_eq!(head, 5);
    let first: Vec<u64> = {
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(ws.message().await.id);
        }
        got
    };
    assert_eq!(first, [1, 2, 3, 4, 5]);
    drop(ws);
    for n in 6..=9 {
        a.post(room, "a", &format!("m{n}")).await;
    }
    let mut ws = Ws::connect(&b.ws_url(room, &format!("after=5&epoch={epoch}"))).await;
    assert_eq!(
        ws.welcome().await,
        (epoch.clone(), 9),
        "one epoch on both relays"
    );
    let mut missed = Vec::new();
    for _ in 6..=9 {
        missed.push(ws.message().await);
    }
    assert_eq!(ids(&missed), [6, 7, 8, 9]);
    assert_eq!(texts(&missed), ["m6", "m7", "m8", "m9"]);
    // Then live, whichever relay the message was published on.
    a.post(room, "a", "m10").await;
    assert_eq!(ws.message().await.text, "m10");

    // SSE, resuming the browser way (Last-Event-ID) on the other relay.
    let mut sse = Sse::connect(
        &b.url(&format!("/api/rooms/{room}/events")),
        &[("last-event-id", "8")],
    )
    .await
    .expect("SSE opens");
    sse.welcome().await;
    assert_eq!(sse.message().await.id, 9);
    assert_eq!(sse.message().await.id, 10);

    // Polling: a cursor from one relay is good on the other.
    let page = a
        .poll(room, &format!("after=3&epoch={epoch}&limit=2"))
        .await;
    assert_eq!((ids(&page.messages), page.more), (vec![4, 5], true));
    let page = b
        .poll(room, &format!("after={}&epoch={epoch}", page.last_id))
        .await;
    assert_eq!(ids(&page.messages), [6, 7, 8, 9, 10]);
    assert_eq!(page.reset, None);

    // A third relay, started later, serves the same room and epoch.
    let c = relay_on(&redis).await;
    let page = c.poll(room, &format!("after=9&epoch={epoch}")).await;
    assert_eq!(
        (page.epoch.as_str(), ids(&page.messages)),
        (epoch.as_str(), vec![10])
    );
}

#[tokio::test]
async fn a_redis_outage_refuses_publishing_keeps_clients_and_loses_nothing_acknowledged() {
    let mut redis = RedisServer::start_persistent().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let both = vec![a.addr, b.addr];
    let room = "outage";

    let (_sink_a, ws_a) = ws_reader(ws_url(a.addr, room, "name=ws-a")).await;
    let (mut sink_b, ws_b) = ws_reader(ws_url(b.addr, room, "name=ws-b")).await;
    let sse_b = sse_reader(sse_url(b.addr, room, "name=sse-b")).await;
    let poll_both = poller(both.clone(), room, 5, 100);

    // A publisher POSTs to both relays in turn throughout, recording what was acknowledged
    // and how long each answer took.
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn({
        let both = both.clone();
        async move {
            let client = http();
            let mut accepted: Vec<(u64, String)> = Vec::new();
            let mut refused = 0usize;
            let mut slowest = Duration::ZERO;
            for n in 0.. {
                if *stop.borrow_and_update() {
                    break;
                }
                let relay = both[n % 2];
                let text = format!("p{n}");
                let started = Instant::now();
                let response = client
                    .post(format!("http://{relay}/api/rooms/{room}/messages"))
                    .json(&json!({"from": "publisher", "text": text}))
                    .send()
                    .await
                    .expect("the relay answers");
                slowest = slowest.max(started.elapsed());
                match response.status() {
                    StatusCode::CREATED => {
                        let answer: protocol::PublishResponse =
                            response.json().await.expect("publish answer");
                        accepted.push((answer.id, text));
                    }
                    StatusCode::SERVICE_UNAVAILABLE => {
                        let body: protocol::ErrorBody = response.json().await.expect("error");
                        assert_eq!(body.code, ErrorCode::Unavailable);
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // Sent to Redis as it went away: not acknowledged, so not owed to
                    // anyone (a sender would retry it with its key).
                    StatusCode::GATEWAY_TIMEOUT => {
                        let body: protocol::ErrorBody = response.json().await.expect("error");
                        assert_eq!(body.code, ErrorCode::OutcomeUnknown);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("unexpected answer {other}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (accepted, refused, slowest)
        }
    });
    let progress = |relay: &Relay| {
        let relay = Client::new(relay.addr);
        async move { relay.poll(room, "limit=0").await.last_id }
    };
    within("messages before the outage", async {
        while progress(&a).await < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    redis.stop();
    wait_ready(&a, false).await;
    wait_ready(&b, false).await;
    within("/metrics to show the bus disconnected", async {
        loop {
            let metrics = http().get(a.url("/metrics")).send().await.expect("metrics");
            if metrics
                .text()
                .await
                .expect("metrics text")
                .contains("relay_bus_connected 0\n")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Publishing refuses at once, over POST and over a WebSocket; new subscriptions too.
    let started = Instant::now();
    let (status, body) = a
        .post_raw(room, json!({"from": "x", "text": "during"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    sink_b
        .send("during the outage".into())
        .await
        .expect("frame sent");
    let refused = Sse::connect(&sse_url(a.addr, room, ""), &[]).await.err();
    assert_eq!(
        refused.map(|(status, _)| status),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let refused = Ws::connect_with(&b.ws_url(room, ""), &[]).await.err();
    assert_eq!(refused.map(|(status, _)| status), Some(503));

    redis.restart().await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    let resumed_at = progress(&b).await;
    within("messages after the outage", async {
        while progress(&b).await < resumed_at + 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    stop_tx.send(true).expect("publisher listens");
    let (accepted, refused, slowest) = within("the publisher", publisher).await.expect("publisher");
    assert!(refused > 0, "the outage refused some publishes");
    assert!(
        slowest < Duration::from_secs(3),
        "a publish took {slowest:?}"
    );
    b.post(room, "end", END).await;

    let clients = [
        ("ws on A", ws_a.await.expect("ws a")),
        ("ws on B", ws_b.await.expect("ws b")),
        ("sse on B", sse_b.await.expect("sse b")),
        ("poller on both", poll_both.await.expect("poller")),
    ];
    assert_eq!(
        clients[1].1.errors,
        [ErrorCode::Unavailable],
        "the WebSocket publish during the outage was refused"
    );
    let history = history(&a, room).await;
    let kept: HashSet<(u64, &str)> = history.iter().map(|m| (m.id, m.text.as_str())).collect();
    for (id, text) in &accepted {
        assert!(
            kept.contains(&(*id, text.as_str())),
            "acknowledged {id} {text} was lost"
        );
    }
    assert_all_received(&clients, &history);
}

#[tokio::test]
async fn redis_losing_its_data_changes_the_epoch_and_clients_are_told() {
    let mut redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let b = relay_on(&redis).await;
    let room = "lost";
    let mut ws = Ws::connect(&a.ws_url(room, "")).await;
    let (epoch, _) = ws.welcome().await;
    for n in 1..=3 {
        b.post(room, "b", &format!("m{n}")).await;
        assert_eq!(ws.message().await.id, n);
    }

    // Restarted without persistence: every room's history is gone.
    redis.restart().await;
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    // The relay notices the new epoch and ends the stream, so the client reconnects...
    let close = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1013);
    // ...with its cursor, and learns that history was lost.
    let mut ws = Ws::connect(&a.ws_url(room, &format!("after=3&epoch={epoch}"))).await;
    let (new_epoch, head) = ws.welcome().await;
    assert_ne!(new_epoch, epoch);
    assert_eq!(head, 0);
    match ws.event().await {
        ServerEvent::Reset(reset) => assert_eq!(reset.reason, ResetReason::EpochChanged),
        other => panic!("expected a reset, got {other:?}"),
    }
    let page = b.poll(room, &format!("after=3&epoch={epoch}")).await;
    assert_eq!(
        page.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
    assert_eq!(page.epoch, new_epoch, "both relays agree on the new epoch");
    assert_eq!(b.post(room, "b", "fresh").await, 1);
    assert_eq!(ws.message().await.text, "fresh");
}

#[tokio::test]
async fn a_relay_that_lost_its_subscription_catches_up_what_it_missed() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let room = "missed";
    let mut ws = Ws::connect(&a.ws_url(room, "")).await;
    ws.welcome().await;
    a.post(room, "a", "m1").await;
    assert_eq!(ws.message().await.id, 1);

    // A message whose announcement never reaches the relay: appended to the room's stream
    // behind the relays' back (this knows the key layout, as an operator's tool might)...
    let mut conn = redis.connection().await;
    let id: String = ::redis::cmd("XADD")
        .arg("chat:{missed}:log")
        .arg("0-*")
        .arg(&["f", "ghost", "t", "unannounced", "ts", "1"])
        .query_async(&mut conn)
        .await
        .expect("XADD");
    assert_eq!(id, "0-2");
    // ...and the relay's subscription dropped, as by a network blip. Nothing later reveals
    // the gap: only catching up on resubscribing can deliver it.
    // The relay's message subscription (it delivered m1), and its presence subscription
    // if that one is up yet.
    let dropped = drop_subscriptions(&mut conn).await;
    assert!(
        (1..=2).contains(&dropped),
        "the relay's subscriptions: {dropped}"
    );
    let caught_up = ws.message().await;
    assert_eq!((caught_up.id, caught_up.text.as_str()), (2, "unannounced"));
    a.post(room, "a", "m3").await;
    assert_eq!(ws.message().await.id, 3);
}

#[tokio::test]
async fn the_room_budget_is_shared_by_all_relays() {
    let redis = RedisServer::start().await;
    // Short heartbeats and listen marks, so that a listener that leaves is noticed soon.
    let small = |config: &mut ::relay::config::Config| {
        config.max_rooms = 2;
        config.sse_heartbeat = Duration::from_millis(200);
        config.room_ttl = Duration::from_secs(4);
    };
    let a = relay_on_with(&redis, small).await;
    let b = relay_on_with(&redis, small).await;
    a.post("one", "a", "hi").await;
    b.post("two", "b", "hi").await;
    // Each room has a listener, on a different relay: no room may make way for a third,
    // whichever relay is asked.
    let mut on_a = Sse::connect(&a.sse_url("one", ""), &[]).await.expect("SSE");
    on_a.welcome().await;
    let mut on_b = Sse::connect(&b.sse_url("two", ""), &[]).await.expect("SSE");
    on_b.welcome().await;
    for relay in [&a, &b] {
        let (status, body) = relay
            .post_raw("three", json!({"from": "c", "text": "hi"}))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("too_many_rooms"), "{body}");
    }
    // Rooms that exist keep working on either relay.
    assert_eq!(b.post("one", "b", "again").await, 2);
    assert_eq!(a.post("two", "a", "again").await, 2);
    // Once nobody listens to a room, it makes way (on any relay).
    drop(on_a);
    eventually("room one to make way for room three", || async {
        let (status, _) = b
            .post_raw("three", json!({"from": "c", "text": "hi"}))
            .await;
        (status == StatusCode::CREATED).then_some(())
    })
    .await;
    drop(on_b);
}

#[tokio::test]
async fn redis_losing_its_latest_writes_starts_a_new_epoch() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let room = "rewound";
    let mut ws = Ws::connect(&a.ws_url(room, "")).await;
    let (epoch, _) = ws.welcome().await;
    for n in 1..=5 {
        a.post(room, "a", &format!("m{n}")).await;
        assert_eq!(ws.message().await.id, n);
    }

    // Redis forgets message 5, as after a crash with `appendfsync everysec` or the promotion of
    // a lagging replica (both of which also drop the relay's subscription).
    let mut conn = redis.connection().await;
    let deleted: i64 = ::redis::cmd("XDEL")
        .arg(&["chat:{rewound}:log", "0-5"])
        .query_async(&mut conn)
        .await
        .expect("XDEL");
    assert_eq!(deleted, 1);
    drop_subscriptions(&mut conn).await;

    // The relay notices on resubscribing: the stream ends, and the client, resuming, is told
    // that its ids belong to a lost history.
    let close = ws.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1013);
    let mut ws = Ws::connect(&a.ws_url(room, &format!("after=5&epoch={epoch}"))).await;
    let (new_epoch, head) = ws.welcome().await;
    assert_ne!(new_epoch, epoch, "a new epoch");
    assert_eq!(head, 4);
    match ws.event().await {
        ServerEvent::Reset(reset) => assert_eq!(reset.reason, ResetReason::EpochChanged),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_refused_within_the_timeout_and_the_relay_stays_alive() {
    let redis = RedisServer::start().await;
    // `relay_on` sets RELAY_REDIS_TIMEOUT to 1 s.
    let a = relay_on(&redis).await;
    let mut ws = Ws::connect(&a.ws_url("hung", "")).await;
    ws.welcome().await;
    a.post("hung", "a", "before").await;
    assert_eq!(ws.message().await.text, "before");

    redis.signal("STOP");
    let started = Instant::now();
    let (status, body) = a
        .post_raw("hung", json!({"from": "a", "text": "during"}))
        .await;
    let waited = started.elapsed();
    // Sent, and never answered: the relay cannot know whether it was stored, and says so.
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("\"outcome_unknown\""), "{body}");
    assert!(
        waited >= Duration::from_millis(900),
        "the relay waited for Redis ({waited:?})"
    );
    assert!(
        waited < Duration::from_secs(6),
        "answered within the 1 s timeout, give or take a busy machine ({waited:?})"
    );
    // Alive, though not ready: an orchestrator must not restart it for Redis's sake.
    let health = http().get(a.url("/healthz")).send().await.expect("GET");
    assert_eq!(health.status(), StatusCode::OK);
    wait_ready(&a, false).await;

    redis.signal("CONT");
    wait_ready(&a, true).await;
    let id = a.post("hung", "a", "after").await;
    // The open WebSocket carries on. (The publish whose outcome was unknown may have run
    // once Redis continued, and then arrives before "after": that is what `outcome_unknown`
    // says.)
    let mut message = ws.message().await;
    while message.text == "during" {
        message = ws.message().await;
    }
    assert_eq!((message.id, message.text.as_str()), (id, "after"));
}

/// Script calls Redis has run so far (`INFO commandstats`).
async fn script_calls(conn: &mut ::redis::aio::MultiplexedConnection) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn pollers_that_keep_up_are_answered_without_asking_redis() {
    let redis = RedisServer::start().await;
    let a = relay_on(&redis).await;
    let room = "local";
    // A listener makes the relay follow the room; twenty messages pass through it.
    let mut ws = Ws::connect(&a.ws_url(room, "")).await;
    let (epoch, _) = ws.welcome().await;
    for n in 1..=20 {
        a.post(room, "a", &format!("m{n}")).await;
    }
    for n in 1..=20 {
        assert_eq!(ws.message().await.id, n);
    }
    let mut conn = redis.connection().await;
    let before = script_calls(&mut conn).await;

    // Polls whose cursors the relay's recent messages cover, and a long poll woken by a new
    // message: only that message's publish reaches Redis.
    for after in [0, 7, 19, 20] {
        let page = a
            .poll(room, &format!("after={after}&epoch={epoch}&limit=5"))
            .await;
        let expected: Vec<u64> = (after + 1..=20).take(5).collect();
        assert_eq!(ids(&page.messages), expected, "after={after}");
        assert_eq!(page.more, after + 5 < 20);
    }
    let waiting = {
        let addr = a.addr;
        let epoch = epoch.clone();
        tokio::spawn(async move {
            Client::new(addr)
                .poll(room, &format!("after=20&epoch={epoch}&wait=20"))
                .await
        })
    };
    // Once the poll is parked, m21 wakes it, from the relay.
    a.wait_metric("relay_connections{transport=\"longpoll\"}", 1.0)
        .await;
    a.post(room, "a", "m21").await;
    assert_eq!(ws.message().await.id, 21);
    let woken = within("the long poll", waiting).await.expect("long poll");
    assert_eq!(ids(&woken.messages), [21]);
    assert_eq!(
        script_calls(&mut conn).await - before,
        1,
        "the publish of m21 and nothing else"
    );
}

#[tokio::test]
async fn a_crowd_resuming_a_room_together_is_answered_by_one_read() {
    let redis = RedisServer::start().await;
    // Patient, so that Redis may be held still while the crowd arrives.
    let a = relay_on_with(&redis, |config| {
        config.redis_timeout = Duration::from_secs(30)
    })
    .await;
    let room = "crowd";
    for n in 1..=5 {
        a.post(room, "a", &format!("m{n}")).await;
    }
    let epoch = a.poll(room, "limit=0").await.epoch;
    // A subscriber elsewhere loads the script that opens rooms into Redis's cache, so that
    // the count below is not swollen by a first NOSCRIPT round.
    let mut elsewhere = Ws::connect(&a.ws_url("elsewhere", "")).await;
    elsewhere.welcome().await;
    let mut conn = redis.connection().await;
    let before = script_calls(&mut conn).await;

    // Redis is held still (SIGSTOP): the first client's read of the room waits in flight, and
    // the others, resuming from the same cursor, join it instead of sending their own.
    redis.signal("STOP");
    const CROWD: usize = 20;
    let clients: Vec<_> = (0..CROWD)
        .map(|n| {
            let url = a.ws_url(room, &format!("name=c{n}&after=2&epoch={epoch}"));
            tokio::spawn(async move {
                let mut ws = Ws::connect(&url).await;
                ws.welcome().await;
                let mut got = Vec::new();
                for _ in 0..4 {
                    got.push(ws.message().await.text);
                }
                got
            })
        })
        .collect();
    a.wait_metric("relay_bus_reads_shared_total", (CROWD - 1) as f64)
        .await;
    redis.signal("CONT");
    // m6 is published after they all joined the room's queue: it arrives live.
    a.post(room, "a", "m6").await;
    for client in clients {
        let got = within_long("a resumed client", client)
            .await
            .expect("client");
        assert_eq!(got, ["m3", "m4", "m5", "m6"]);
    }
    // One read for the crowd and m6's publish, where twenty reads would be one each; at most
    // two more, should the relay's periodic mark of listened rooms (run every 5 s, perhaps
    // for the first time) fall in between.
    let calls = script_calls(&mut conn).await - before;
    assert!((2..=4).contains(&calls), "{calls} script calls");
}
