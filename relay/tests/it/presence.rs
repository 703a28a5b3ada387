//! Presence and typing: who is here and who is typing, on every transport. They are signals,
//! not messages: no id, no history, no replay.

use std::time::Duration;

use protocol::api::Endpoint;
use protocol::{PresenceChange, ServerEvent, Transport};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const ANA: &str = "client-ana-0001";
const BO: &str = "client-bo-00001";
const PAT: &str = "client-pat-0001";

/// Reads a WebSocket until a `presence` event for which `wanted` holds; other events pass.
async fn presence_until(
    ws: &mut Ws,
    mut wanted: impl FnMut(&PresenceChange) -> bool,
) -> PresenceChange {
    within("a presence event", async {
        loop {
            if let ServerEvent::Presence(change) = ws.event().await
                && wanted(&change)
            {
                return change;
            }
        }
    })
    .await
}

fn named(change: &PresenceChange, name: &str) -> bool {
    change.joined.iter().any(|m| m.name == name)
}

async fn post_json(relay: &Client, path: &str, body: Value) -> (StatusCode, String) {
    let response = http()
        .post(relay.url(path))
        .json(&body)
        .send()
        .await
        .expect("POST reaches the relay");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

async fn typing(relay: &Client, room: &str, client: &str) -> bool {
    let (status, body) = post_json(
        relay,
        &Endpoint::Typing.path(room),
        json!({ "client": client }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "typing answered {body}");
    serde_json::from_str::<Value>(&body).expect("JSON")["sent"]
        .as_bool()
        .expect("sent is a boolean")
}

async fn listed(relay: &Client, room: &str) -> Value {
    http()
        .get(relay.url(&Endpoint::Presence.path(room)))
        .send()
        .await
        .expect("GET reaches the relay")
        .json()
        .await
        .expect("JSON")
}

/// Long-polls as Pat from `ev` until an answer carries a presence change for which `wanted`
/// holds (Pat's own arrival may come first); returns it and the position after it.
async fn long_poll_until(
    relay: &Client,
    room: &str,
    mut ev: String,
    wanted: impl Fn(&PresenceChange) -> bool,
) -> (PresenceChange, String, usize) {
    within("a long poll answered with the change", async {
        loop {
            let answer = relay
                .poll(
                    room,
                    &format!("wait=20&name=Pat&client={PAT}&after=1&ev={ev}"),
                )
                .await;
            ev = answer.ev.expect("a position");
            let found = answer.events.iter().find_map(|e| match e {
                ServerEvent::Presence(c) if wanted(c) => Some(c.clone()),
                _ => None,
            });
            if let Some(change) = found {
                return (change, ev, answer.messages.len());
            }
        }
    })
    .await
}

#[tokio::test]
async fn signals_take_no_message_id_and_are_never_in_history_or_a_resume() {
    let relay = Relay::start().await;
    let mut ana = Ws::connect(&relay.ws_url("sig", &format!("name=Ana&client={ANA}"))).await;
    let welcome = match ana.event().await {
        ServerEvent::Welcome(welcome) => welcome,
        other => panic!("expected a welcome, got {other:?}"),
    };
    let snapshot = welcome
        .presence
        .expect("a client that names itself gets the list");
    assert_eq!(snapshot.count, 1);
    assert_eq!(snapshot.members[0].name, "Ana");
    assert_eq!(
        snapshot.you.as_deref(),
        Some(snapshot.members[0].id.as_str())
    );
    assert_ne!(snapshot.members[0].id, ANA, "the client id is never shown");

    let mut bo = Sse::connect(&relay.sse_url("sig", &format!("name=Bo&client={BO}")), &[])
        .await
        .expect("SSE opens");
    let (_, welcome) = bo.event().await;
    let ServerEvent::Welcome(welcome) = welcome else {
        panic!("expected a welcome")
    };
    assert_eq!(
        welcome.presence.expect("list").count,
        2,
        "Bo sees Ana and himself"
    );
    let joined = presence_until(&mut ana, |c| named(c, "Bo")).await;
    assert_eq!(joined.count, 2);
    assert_eq!(joined.joined[0].transports, [Transport::Sse]);

    // Bo types (over HTTP: he is on SSE); Ana is told, with his name.
    assert!(typing(&relay, "sig", BO).await);
    let typed = within("Ana hears Bo typing", async {
        loop {
            if let ServerEvent::Typing(typing) = ana.event().await {
                return typing;
            }
        }
    })
    .await;
    assert_eq!(typed.name, "Bo");
    // And on SSE, Bo hears his own (the page ignores it by id): no `id:` line.
    let raw = within("Bo's stream carries the typing event", async {
        loop {
            let (raw, event) = bo.event().await;
            if matches!(event, ServerEvent::Typing(_)) {
                return raw;
            }
        }
    })
    .await;
    assert_eq!(
        raw.id, None,
        "signals have no SSE id: Last-Event-ID stays the last message's"
    );

    // Nothing so far took an id: the first message is 1.
    assert_eq!(relay.post("sig", "Ana", "first").await, 1);
    let history = relay.poll("sig", "after=0").await;
    assert_eq!(texts(&history.messages), ["first"]);
    assert!(
        history.events.is_empty() && history.ev.is_none(),
        "a plain poll is unchanged"
    );

    // A resume from the start replays the message, never the typing or the joins.
    let mut again =
        Ws::connect(&relay.ws_url("sig", &format!("after=0&name=Ana&client={ANA}"))).await;
    again.welcome().await;
    relay.post("sig", "Ana", "second").await;
    let mut seen = Vec::new();
    within("the resume reaches the new message", async {
        loop {
            match again.event().await {
                ServerEvent::Message(m) => {
                    seen.push(m.text.clone());
                    if m.text == "second" {
                        return;
                    }
                }
                // Ana's own new stream changes her transports: a presence change, live.
                ServerEvent::Presence(change) => assert!(change.left.is_empty(), "{change:?}"),
                other => panic!("nothing but messages and live presence: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(seen, ["first", "second"]);
}

#[tokio::test]
async fn a_poll_only_member_appears_then_expires_after_the_ttl_announced_once() {
    let relay = Relay::start_with(|c| c.presence_ttl = Duration::from_secs(1)).await;
    let mut observer = Ws::connect(&relay.ws_url("polls", "name=Obs&client=client-obs-0001")).await;
    observer.welcome().await;

    let first = relay
        .poll("polls", &format!("wait=0&name=Pat&client={PAT}"))
        .await;
    let list = match first.events.as_slice() {
        [ServerEvent::Presence(change)] => change.clone(),
        other => panic!("a member's first poll gets the list: {other:?}"),
    };
    let members = list.members.expect("the whole list");
    let pat = members
        .iter()
        .find(|m| m.name == "Pat")
        .expect("Pat is listed")
        .clone();
    assert_eq!(list.you.as_deref(), Some(pat.id.as_str()));
    assert_eq!(pat.transports, [Transport::Shortpoll]);
    assert!(first.ev.is_some(), "where to continue");
    let listed_now = listed(&relay, "polls").await;
    assert!(
        listed_now["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["name"] == "Pat"),
        "{listed_now}"
    );
    assert!(listed_now["members"][0].get("client").is_none());
    presence_until(&mut observer, |c| named(c, "Pat")).await;

    // Pat stops polling: gone a TTL later, announced once.
    let left = presence_until(&mut observer, |c| c.left.contains(&pat.id)).await;
    assert_eq!(left.count, 1, "the observer is alone again");
    let now = listed(&relay, "polls").await;
    assert_eq!(now["count"], 1, "{now}");
    relay.post("polls", "Obs", "marker").await;
    within("the marker, with no second leave before it", async {
        loop {
            match observer.event().await {
                ServerEvent::Message(m) if m.text == "marker" => return,
                ServerEvent::Presence(c) => assert!(!c.left.contains(&pat.id), "left twice: {c:?}"),
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn typing_is_rate_limited_per_member_and_only_from_members() {
    let relay = Relay::start().await;
    let mut ana = Ws::connect(&relay.ws_url("typing", &format!("name=Ana&client={ANA}"))).await;
    ana.welcome().await;
    relay
        .poll("typing", &format!("wait=0&name=Pat&client={PAT}"))
        .await;
    assert!(typing(&relay, "typing", PAT).await, "the first is sent");
    assert!(
        !typing(&relay, "typing", PAT).await,
        "the second, at once, is dropped"
    );
    assert!(
        !typing(&relay, "typing", "client-stranger").await,
        "not a member: dropped"
    );
    // Over the WebSocket too: one frame sent, the next dropped, nothing answered.
    ana.send(r#"{"type":"typing"}"#).await;
    ana.send(r#"{"type":"typing"}"#).await;
    relay
        .wait_metric("relay_typing_total{outcome=\"sent\"}", 2.0)
        .await;
    relay
        .wait_metric("relay_typing_total{outcome=\"dropped\"}", 3.0)
        .await;
    // Ana hears Pat once (the dropped ones were never queued: the counters above are final),
    // and her own frames are never answered with an error.
    within("Pat's typing reaches Ana", async {
        loop {
            match ana.event().await {
                ServerEvent::Typing(t) if t.name == "Pat" => return,
                ServerEvent::Error(e) => panic!("typing is never an error: {e:?}"),
                _ => {}
            }
        }
    })
    .await;
    relay.post("typing", "Obs", "marker").await;
    for event in until_marker(&mut ana, "marker").await {
        match event {
            ServerEvent::Typing(t) => assert_ne!(t.name, "Pat", "Pat's second signal was dropped"),
            ServerEvent::Error(e) => panic!("typing is never an error: {e:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_leave_removes_the_member_at_once_and_a_long_poll_hears_it() {
    // A TTL far longer than the test: only the leave can remove Bo.
    let relay = Relay::start_with(|c| c.presence_ttl = Duration::from_secs(600)).await;
    // Polling makes a member of a room that exists (reading does not create one).
    let nobody = relay
        .poll("leave", &format!("wait=0&name=Pat&client={PAT}"))
        .await;
    assert!(
        nobody.ev.is_none() && nobody.events.is_empty(),
        "no room, no presence"
    );
    assert_eq!(relay.post("leave", "Pat", "hello").await, 1);
    let first = relay
        .poll("leave", &format!("wait=0&name=Pat&client={PAT}"))
        .await;
    let ev = first.ev.expect("a position");
    let bo = Ws::connect(&relay.ws_url("leave", &format!("name=Bo&client={BO}"))).await;
    // Pat's long polls at that position are answered by Bo's arrival, long before their
    // wait is over.
    let (arrived, ev, messages) = long_poll_until(&relay, "leave", ev, |c| named(c, "Bo")).await;
    let bo_id = arrived
        .joined
        .iter()
        .find(|m| m.name == "Bo")
        .expect("Bo")
        .id
        .clone();
    assert_eq!(messages, 0, "signals are not messages");
    drop(bo);
    let (status, body) = post_json(
        &relay,
        &Endpoint::Presence.path("leave"),
        json!({ "client": BO, "leave": true }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    long_poll_until(&relay, "leave", ev, |c| c.left.contains(&bo_id)).await;
    let now = listed(&relay, "leave").await;
    assert_eq!(now["count"], 1, "only Pat: {now}");
    // A malformed client id is a clear error.
    let (status, body) = post_json(
        &relay,
        &Endpoint::Presence.path("leave"),
        json!({ "client": "x", "leave": true }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("bad_request"), "{body}");
}

/// The events a WebSocket gets until the marker message, for counting (every other kind
/// passes by).
async fn until_marker(ws: &mut Ws, marker: &str) -> Vec<ServerEvent> {
    within("the marker", async {
        let mut events = Vec::new();
        loop {
            match ws.event().await {
                ServerEvent::Message(m) if m.text == marker => return events,
                event => events.push(event),
            }
        }
    })
    .await
}

#[tokio::test]
async fn relays_on_one_redis_share_one_list_and_a_killed_relay_s_members_leave_once() {
    let redis = redis::RedisServer::start().await;
    let ttl = |c: &mut ::relay::config::Config| c.presence_ttl = Duration::from_secs(2);
    let a = redis::relay_on_with(&redis, ttl).await;
    let c = redis::relay_on_with(&redis, ttl).await;
    let url = redis.url();
    let (mut b_process, b_addr) = process::Process::spawn(
        &[],
        &[
            ("RELAY_REDIS_URL", url.as_str()),
            ("RELAY_PRESENCE_TTL", "2s"),
        ],
    )
    .await;
    let b = Client::new(b_addr);
    redis::wait_ready(&b, true).await;

    // Ana on relay A, Cy on relay C, Bo (and Pat, polling) on relay B.
    let mut ana = Ws::connect(&a.ws_url("shared", &format!("name=Ana&client={ANA}"))).await;
    ana.welcome().await;
    let mut cy = Ws::connect(&c.ws_url("shared", "name=Cy&client=client-cy-00001")).await;
    cy.welcome().await;
    let mut bo = Ws::connect(&b.ws_url("shared", &format!("name=Bo&client={BO}"))).await;
    let bo_welcome = match bo.event().await {
        ServerEvent::Welcome(w) => w,
        other => panic!("expected a welcome, got {other:?}"),
    };
    let bo_id = bo_welcome.presence.expect("list").you.expect("Bo's id");
    b.poll("shared", &format!("wait=0&name=Pat&client={PAT}"))
        .await;
    for ws in [&mut ana, &mut cy] {
        let mut names = std::collections::BTreeSet::new();
        presence_until(ws, |change| {
            // A relay new to the room may hear of some only in its first whole list.
            if let Some(members) = &change.members {
                names.extend(members.iter().map(|m| m.name.clone()));
            }
            names.extend(change.joined.iter().map(|m| m.name.clone()));
            ["Ana", "Bo", "Cy", "Pat"]
                .iter()
                .all(|n| names.contains(*n))
        })
        .await;
    }
    for relay in [&*a, &b, &*c] {
        let list = eventually("every relay lists all four", || async {
            let list = listed(relay, "shared").await;
            (list["count"] == 4).then_some(list)
        })
        .await;
        let bo_listed = list["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["name"] == "Bo")
            .expect("Bo")
            .clone();
        assert_eq!(bo_listed["transports"], json!(["ws"]));
    }

    // Typing on relay B reaches relay A.
    bo.send(r#"{"type":"typing"}"#).await;
    within("Ana hears Bo typing across relays", async {
        loop {
            if let ServerEvent::Typing(t) = ana.event().await
                && t.name == "Bo"
            {
                return;
            }
        }
    })
    .await;

    // Relay B dies without a word: Bo and Pat leave within the TTL (and a sweep), each
    // announced once, though two relays sweep the room.
    b_process.child.kill().expect("SIGKILL");
    let killed = std::time::Instant::now();
    presence_until(&mut ana, |change| change.left.contains(&bo_id)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 3),
        "gone {:?} after the kill",
        killed.elapsed()
    );
    let now = eventually("relay A counts two", || async {
        let list = listed(&a, "shared").await;
        (list["count"] == 2).then_some(list)
    })
    .await;
    assert_eq!(now["members"].as_array().expect("members").len(), 2);
    // Both survivors sweep the room again (their calls to Redis are counted): a second
    // announcement would have been made by now. Then a marker.
    let calls = "relay_presence_redis_calls_total";
    for relay in [&*a, &*c] {
        let before = relay.metric(calls).await.expect("counted");
        relay.wait_metric_at_least(calls, before + 3.0).await;
    }
    a.post("shared", "Ana", "marker").await;
    for (who, ws) in [("Ana", &mut ana), ("Cy", &mut cy)] {
        let leaves: usize = until_marker(ws, "marker")
            .await
            .iter()
            .filter(|e| matches!(e, ServerEvent::Presence(c) if c.left.contains(&bo_id)))
            .count();
        let expected = usize::from(who == "Cy");
        assert_eq!(leaves, expected, "{who}: Bo's leave, once in all");
    }
}
