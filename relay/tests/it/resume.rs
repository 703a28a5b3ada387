//! Resuming with `after` (or `Last-Event-ID`): exactly the missed messages, no gap and no
//! repeat at the seam, and an explicit signal when the cursor cannot be continued.

use protocol::{Message, ResetReason, ServerEvent};

use crate::support::*;

/// Publishes `count` messages ("1".."count") from a separate task, as fast as POST allows.
fn publish_in_background(
    relay: &Relay,
    room: &'static str,
    count: u64,
) -> tokio::task::JoinHandle<()> {
    let addr = relay.addr;
    tokio::spawn(async move {
        let relay = Client::new(addr);
        for i in 1..=count {
            relay.post(room, "pub", &i.to_string()).await;
        }
    })
}

fn assert_exact_sequence(got: &[Message], count: u64, transport: &str) {
    let expected: Vec<u64> = (1..=count).collect();
    assert_eq!(
        ids(got),
        expected,
        "{transport}: every id exactly once, in order, across reconnects"
    );
    for message in got {
        assert_eq!(
            message.text,
            message.id.to_string(),
            "{transport}: text matches id"
        );
    }
}

#[tokio::test]
async fn websocket_resume_gets_exactly_the_missed_messages() {
    let relay = Relay::start().await;
    let mut ws = Ws::connect(&relay.ws_url("r", "")).await;
    let (epoch, _) = ws.welcome().await;
    relay.post("r", "a", "1").await;
    assert_eq!(ws.message().await.id, 1);
    drop(ws);

    relay.post("r", "a", "2").await;
    relay.post("r", "a", "3").await;
    let mut ws = Ws::connect(&relay.ws_url("r", &format!("after=1&epoch={epoch}"))).await;
    assert_eq!(ws.welcome().await, (epoch, 3));
    assert_eq!(ws.message().await.text, "2");
    assert_eq!(ws.message().await.text, "3");
    // Nothing else was queued: the next event is the next live message.
    relay.post("r", "a", "4").await;
    assert_eq!(ws.message().await.text, "4");
}

#[tokio::test]
async fn sse_resumes_from_last_event_id() {
    let relay = Relay::start().await;
    let url = relay.url("/api/rooms/r/events");
    let mut sse = Sse::connect(&url, &[]).await.expect("SSE opens");
    sse.welcome().await;
    relay.post("r", "a", "1").await;
    assert_eq!(sse.message().await.id, 1);
    drop(sse);

    relay.post("r", "a", "2").await;
    relay.post("r", "a", "3").await;
    // What EventSource sends when it reconnects by itself.
    let mut sse = Sse::connect(&url, &[("last-event-id", "1")])
        .await
        .expect("SSE reopens");
    sse.welcome().await;
    assert_eq!(sse.message().await.text, "2");
    assert_eq!(sse.message().await.text, "3");
    relay.post("r", "a", "4").await;
    assert_eq!(sse.message().await.text, "4");

    // The header wins over the URL's `after`: an EventSource reconnecting by itself sends
    // the URL it was opened with (where it started) and the header (where it is).
    let mut sse = Sse::connect(&format!("{url}?after=1"), &[("last-event-id", "3")])
        .await
        .expect("SSE reopens");
    sse.welcome().await;
    assert_eq!(sse.message().await.text, "4");
}

#[tokio::test]
async fn an_sse_id_names_its_epoch_so_a_last_event_id_from_another_history_is_reset() {
    let relay = Relay::start().await;
    let url = relay.url("/api/rooms/e/events");
    let mut sse = Sse::connect(&url, &[]).await.expect("SSE opens");
    let (epoch, _) = sse.welcome().await;
    relay.post("e", "a", "1").await;
    // `message` checks the form: `id: EPOCH:1`, in the welcome's epoch.
    assert_eq!(sse.message().await.id, 1);
    drop(sse);
    for text in ["2", "3"] {
        relay.post("e", "a", text).await;
    }
    // In its own epoch, the id resumes exactly.
    let last = format!("{epoch}:1");
    let mut sse = Sse::connect(&url, &[("last-event-id", &last)])
        .await
        .expect("SSE reopens");
    sse.welcome().await;
    assert_eq!(sse.message().await.text, "2");
    assert_eq!(sse.message().await.text, "3");
    // From another history (a relay that restarted since): ids 1..=2 of this one are not
    // skipped as the bare id would skip them; the client is told and gets them all.
    let mut sse = Sse::connect(&url, &[("last-event-id", "gone-epoch:2")])
        .await
        .expect("SSE reopens");
    sse.welcome().await;
    match sse.event().await {
        (_, ServerEvent::Reset(reset)) => {
            assert_eq!(reset.reason, ResetReason::EpochChanged);
            assert_eq!(reset.oldest_id, 1);
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    for text in ["1", "2", "3"] {
        assert_eq!(sse.message().await.text, text);
    }
    // The bare form is still understood (as an id of the current history).
    let mut sse = Sse::connect(&url, &[("last-event-id", "2")])
        .await
        .expect("SSE reopens");
    sse.welcome().await;
    assert_eq!(sse.message().await.text, "3");
}

#[tokio::test]
async fn a_client_from_a_replaced_history_is_sent_all_of_the_new_one_not_only_the_newest() {
    // More messages in the new history than a newcomer is shown (the join window, 50).
    let relay = Relay::start().await;
    for i in 1..=60 {
        relay.post("replaced", "a", &i.to_string()).await;
    }
    let everything: Vec<String> = (1..=60).map(|i| i.to_string()).collect();
    // A WebSocket resuming with a cursor from a history that is gone.
    let mut ws = Ws::connect(&relay.ws_url("replaced", "after=70&epoch=gone")).await;
    ws.welcome().await;
    match ws.event().await {
        ServerEvent::Reset(reset) => {
            assert_eq!(reset.reason, ResetReason::EpochChanged);
            assert_eq!(reset.oldest_id, 1);
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    let mut got = Vec::new();
    for _ in 1..=60 {
        got.push(ws.message().await.text);
    }
    assert_eq!(
        got, everything,
        "every message of the new history, from its start"
    );
    // A poller: told once, then paged from the start.
    let first = relay.poll("replaced", "after=70&epoch=gone&limit=40").await;
    assert_eq!(
        first.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
    assert!(first.more);
    let mut got: Vec<String> = first.messages.iter().map(|m| m.text.clone()).collect();
    let rest = relay
        .poll(
            "replaced",
            &format!("after={}&epoch={}&limit=40", first.last_id, first.epoch),
        )
        .await;
    assert!(rest.reset.is_none());
    got.extend(rest.messages.iter().map(|m| m.text.clone()));
    assert_eq!(got, everything);
}

#[tokio::test]
async fn with_redis_a_client_from_a_replaced_history_is_read_from_its_start() {
    let redis = crate::support::redis::RedisServer::start().await;
    let relay = crate::support::redis::relay_on(&redis).await;
    for i in 1..=60 {
        relay.post("replaced", "a", &i.to_string()).await;
    }
    let first = relay.poll("replaced", "after=70&epoch=gone&limit=40").await;
    assert_eq!(
        first.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
    assert_eq!(ids(&first.messages), (1..=40).collect::<Vec<u64>>());
    assert!(first.more);
}

#[tokio::test]
async fn polling_resume_gets_exactly_the_missed_messages() {
    let relay = Relay::start().await;
    for i in 1..=5 {
        relay.post("r", "a", &i.to_string()).await;
    }
    let answer = relay.poll("r", "after=2").await;
    assert_eq!(texts(&answer.messages), ["3", "4", "5"]);
    assert_eq!(answer.last_id, 5);
    assert!(answer.reset.is_none());

    // `limit` pages through, oldest first, and says there is more.
    let page = relay.poll("r", "after=0&limit=2").await;
    assert_eq!(ids(&page.messages), [1, 2]);
    assert!(page.more);
    let page = relay
        .poll("r", &format!("after={}&limit=2", page.last_id))
        .await;
    assert_eq!(ids(&page.messages), [3, 4]);

    // A long poll with missed messages answers at once.
    let answer = relay.poll("r", "after=4&wait=20").await;
    assert_eq!(texts(&answer.messages), ["5"]);
}

/// A streaming connection of either kind, for the seam tests.
enum Stream {
    Ws(Box<Ws>),
    Sse(Sse),
    Ndjson(Ndjson),
}

impl Stream {
    async fn open(relay: &Relay, kind: &str, room: &str, after: u64) -> Stream {
        match kind {
            "ws" => Stream::Ws(Box::new(
                Ws::connect(&relay.ws_url(room, &format!("after={after}"))).await,
            )),
            "stream" => {
                let url = relay.stream_url(room, &format!("after={after}"));
                Stream::Ndjson(Ndjson::connect(&url, &[]).await.expect("opens").0)
            }
            _ => {
                // What EventSource sends when it reconnects by itself.
                let last = after.to_string();
                let sse = Sse::connect(&relay.sse_url(room, ""), &[("last-event-id", &last)])
                    .await
                    .expect("SSE opens");
                Stream::Sse(sse)
            }
        }
    }

    async fn welcome(&mut self) -> (String, u64) {
        match self {
            Stream::Ws(ws) => ws.welcome().await,
            Stream::Sse(sse) => sse.welcome().await,
            Stream::Ndjson(stream) => stream.welcome().await,
        }
    }

    async fn message(&mut self) -> Message {
        match self {
            Stream::Ws(ws) => ws.message().await,
            Stream::Sse(sse) => sse.message().await,
            Stream::Ndjson(stream) => stream.message().await,
        }
    }
}

/// Follows `room` while 300 messages are published concurrently, dropping the connection
/// every 7 messages and resuming from the last id. One resumption is arranged to cross the
/// seam for certain: the publisher pauses after the first half, the follower reconnects 3
/// messages behind it (history) and only then releases the second half (live).
async fn seam_under_concurrent_publishing(kind: &str, room: &'static str) {
    const COUNT: u64 = 300;
    const HALF: u64 = 150;
    const BEHIND: u64 = 3;
    let relay = Relay::start().await;
    let (half_done, mut half_published) = tokio::sync::oneshot::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (mut half_done, mut released) = (Some(half_done), Some(released));
    let publisher = {
        let client = relay.client();
        tokio::spawn(async move {
            for i in 1..=COUNT {
                if i == HALF + 1
                    && let (Some(half_done), Some(released)) = (half_done.take(), released.take())
                {
                    let _ = half_done.send(());
                    released
                        .await
                        .expect("the follower releases the second half");
                }
                client.post(room, "pub", &i.to_string()).await;
            }
        })
    };
    let mut release = Some(release);
    let mut got: Vec<Message> = Vec::new();
    let mut crossed = false;
    within(
        &format!("the {kind} follower to see every message"),
        async {
            while got.last().map_or(0, |m| m.id) < COUNT {
                let after = got.last().map_or(0, |m| m.id);
                let arranged = release.is_some() && after == HALF - BEHIND;
                if arranged {
                    (&mut half_published)
                        .await
                        .expect("the publisher reaches half");
                }
                let mut stream = Stream::open(&relay, kind, room, after).await;
                let (_, head) = stream.welcome().await;
                if arranged {
                    assert_eq!(head, HALF, "the publisher is paused at half");
                    if let Some(tx) = release.take() {
                        let _ = tx.send(());
                    }
                }
                let (mut from_history, mut live) = (0, 0);
                for _ in 0..7 {
                    let message = stream.message().await;
                    if message.id <= head {
                        from_history += 1;
                    } else {
                        live += 1;
                    }
                    let id = message.id;
                    got.push(message);
                    // Before the arranged crossing, stop exactly `BEHIND` short of the pause.
                    if id == COUNT || (release.is_some() && id == HALF - BEHIND) {
                        break;
                    }
                }
                if arranged {
                    assert_eq!(
                        (from_history, live),
                        (BEHIND, 7 - BEHIND),
                        "the arranged connection read history, then live messages"
                    );
                    crossed = true;
                }
            }
        },
    )
    .await;
    within("the publisher", publisher).await.expect("publisher");
    assert!(
        crossed,
        "{kind}: one connection crossed from history to live"
    );
    assert_exact_sequence(&got, COUNT, kind);
}

#[tokio::test]
async fn websocket_seam_has_no_gap_or_duplicate_under_concurrent_publishing() {
    seam_under_concurrent_publishing("ws", "seam-ws").await;
}

#[tokio::test]
async fn sse_seam_has_no_gap_or_duplicate_under_concurrent_publishing() {
    seam_under_concurrent_publishing("sse", "seam-sse").await;
}

#[tokio::test]
async fn http_stream_seam_has_no_gap_or_duplicate_under_concurrent_publishing() {
    seam_under_concurrent_publishing("stream", "seam-stream").await;
}

#[tokio::test]
async fn long_and_short_polls_have_no_gap_or_duplicate_under_concurrent_publishing() {
    let relay = Relay::start().await;
    const COUNT: u64 = 300;
    let publisher = publish_in_background(&relay, "seam-poll", COUNT);
    // Small pages force many requests, each one a seam.
    let mut followers = Vec::new();
    for wait in [5, 0] {
        let addr = relay.addr;
        followers.push(tokio::spawn(async move {
            let relay = Client::new(addr);
            let mut got: Vec<Message> = Vec::new();
            let mut after = 0;
            while got.last().map_or(0, |m| m.id) < COUNT {
                let answer = relay
                    .poll("seam-poll", &format!("after={after}&wait={wait}&limit=5"))
                    .await;
                after = answer.last_id;
                got.extend(answer.messages);
            }
            got
        }));
    }
    let transports = ["longpoll", "shortpoll"];
    for (follower, transport) in followers.into_iter().zip(transports) {
        let got = within("a poller to see every message", follower)
            .await
            .expect("poller");
        assert_exact_sequence(&got, COUNT, transport);
    }
    publisher.await.expect("publisher");
}

#[tokio::test]
async fn foreign_epoch_is_reported_on_every_transport() {
    let relay = Relay::start().await;
    for i in 1..=3 {
        relay.post("ep", "a", &i.to_string()).await;
    }
    // A client from a previous run of the relay: its ids mean nothing here.
    let query = "after=2&epoch=previous-run";

    let mut ws = Ws::connect(&relay.ws_url("ep", query)).await;
    let (epoch, _) = ws.welcome().await;
    assert_ne!(epoch, "previous-run");
    match ws.event().await {
        ServerEvent::Reset(reset) => assert_eq!(reset.reason, ResetReason::EpochChanged),
        other => panic!("expected reset(epoch_changed), got {other:?}"),
    }
    // Then the room as a newcomer sees it.
    assert_eq!(ws.message().await.id, 1);

    let mut sse = Sse::connect(&relay.url(&format!("/api/rooms/ep/events?{query}")), &[])
        .await
        .expect("SSE opens");
    sse.welcome().await;
    match sse.event().await {
        (raw, ServerEvent::Reset(reset)) => {
            assert_eq!(raw.event.as_deref(), Some("reset"));
            assert_eq!(reset.reason, ResetReason::EpochChanged);
        }
        other => panic!("expected reset(epoch_changed), got {other:?}"),
    }

    let answer = relay.poll("ep", query).await;
    assert_eq!(
        answer.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
    assert_eq!(answer.epoch, epoch);
    assert_eq!(ids(&answer.messages), [1, 2, 3]);

    // A cursor beyond anything the room has is also from another history.
    let answer = relay.poll("ep", "after=99").await;
    assert_eq!(
        answer.reset.map(|r| r.reason),
        Some(ResetReason::EpochChanged)
    );
}

#[tokio::test]
async fn cursor_older_than_history_is_reported_as_a_gap() {
    let relay = Relay::start_with(|c| c.history = 5).await;
    for i in 1..=10 {
        relay.post("gap", "a", &i.to_string()).await;
    }
    let answer = relay.poll("gap", "after=2").await;
    let reset = answer.reset.expect("a reset");
    assert_eq!(
        (reset.reason, reset.oldest_id),
        (ResetReason::HistoryGap, 6)
    );
    assert_eq!(ids(&answer.messages), [6, 7, 8, 9, 10]);

    let mut ws = Ws::connect(&relay.ws_url("gap", "after=2")).await;
    ws.welcome().await;
    match ws.event().await {
        ServerEvent::Reset(reset) => {
            assert_eq!(
                (reset.reason, reset.oldest_id),
                (ResetReason::HistoryGap, 6)
            )
        }
        other => panic!("expected reset(history_gap), got {other:?}"),
    }
    assert_eq!(ws.message().await.id, 6);

    // Exactly at the edge of retention is not a gap: nothing was missed.
    let answer = relay.poll("gap", "after=5").await;
    assert!(answer.reset.is_none());
    assert_eq!(ids(&answer.messages), [6, 7, 8, 9, 10]);
}
