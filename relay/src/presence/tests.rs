//! The tick's decisions, with the clock passed in (the tick task never runs: these tests do
//! not yield to it).

use super::*;

const TTL: Duration = Duration::from_secs(30);

fn presence(max_per_client: usize) -> Presence {
    Presence::new(
        Limits {
            ttl: TTL,
            max_members: 100,
            max_per_client,
        },
        Arc::new(Metrics::default()),
        None,
    )
    .expect("in memory")
}

fn room() -> RoomName {
    RoomName::parse("lobby").expect("valid")
}

fn who<'a>(client: &'a str, name: &'a str) -> Who<'a> {
    Who {
        client: Some(client),
        name,
        owner: ClientKey::of("127.0.0.1".parse().expect("address")),
    }
}

/// The events a tick at `now` sends to a stream of the room.
fn tick(p: &Presence, listener: &mut broadcast::Receiver<Arc<Batch>>, now: Instant) -> Vec<String> {
    p.inner.tick(now);
    let mut events = Vec::new();
    while let Ok(batch) = listener.try_recv() {
        for json in &batch.events {
            events.push(String::from_utf8(json.to_vec()).expect("UTF-8"));
        }
    }
    events
}

#[tokio::test]
async fn joins_are_gathered_per_tick_and_a_switch_is_no_leave() {
    let p = presence(10);
    let mut listener = p.signals(&room());
    let ana = p.attach(&room(), who("client-ana-1", "Ana"), Transport::Ws);
    let _bo = p.attach(&room(), who("client-bo-22", "Bo"), Transport::Sse);
    let welcome = p.snapshot(&room(), Some(ana.id()));
    assert_eq!(welcome.count, 2, "a newcomer sees itself before the tick");
    assert_eq!(welcome.you.as_deref(), Some(ana.id().as_str()));
    let now = Instant::now();
    let events = tick(&p, &mut listener, now);
    assert_eq!(events.len(), 1, "two joins, one event: {events:?}");
    assert!(events[0].contains(r#""type":"presence""#) && events[0].contains(r#""count":2"#));
    // Ana switches: the new stream opens before the old one closes.
    let ana_sse = p.attach(&room(), who("client-ana-1", "Ana"), Transport::Sse);
    drop(ana);
    let events = tick(&p, &mut listener, now);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains(r#""left":[]"#),
        "no leave: {}",
        events[0]
    );
    assert!(
        events[0].contains(r#""transports":["sse"]"#),
        "{}",
        events[0]
    );
    // Nothing changed: nothing sent.
    assert!(tick(&p, &mut listener, now).is_empty());
    // Her last stream closes: still here within the TTL, gone after it, announced once.
    drop(ana_sse);
    assert!(tick(&p, &mut listener, Instant::now() + TTL / 2).is_empty());
    let events = tick(&p, &mut listener, Instant::now() + TTL);
    assert_eq!(events.len(), 1);
    assert!(events[0].contains(r#""left":[""#) && events[0].contains(r#""count":1"#));
    assert!(tick(&p, &mut listener, Instant::now() + TTL * 2).is_empty());
}

#[tokio::test]
async fn a_leave_is_announced_with_the_next_tick_and_a_poller_expires() {
    let p = presence(10);
    let mut listener = p.signals(&room());
    let id = p
        .polled(&room(), who("client-poll-1", "Cy"), Transport::Shortpoll)
        .expect("a member");
    let now = Instant::now();
    let events = tick(&p, &mut listener, now);
    assert!(
        events[0].contains(r#""transports":["shortpoll"]"#),
        "{events:?}"
    );
    p.leave(&room(), "client-poll-1");
    let events = tick(&p, &mut listener, now);
    assert!(
        events[0].contains(&format!(r#""left":["{id}"]"#)),
        "{events:?}"
    );
    // Back (a restored page), then silent for a TTL.
    p.polled(&room(), who("client-poll-1", "Cy"), Transport::Shortpoll);
    assert_eq!(tick(&p, &mut listener, now).len(), 1);
    let events = tick(&p, &mut listener, Instant::now() + TTL);
    assert!(events[0].contains(r#""count":0"#), "{events:?}");
    assert_eq!(p.snapshot(&room(), None).count, 0);
}

#[tokio::test]
async fn typing_goes_out_once_per_interval_from_members_only() {
    let p = presence(10);
    let mut listener = p.signals(&room());
    let ana = p.attach(&room(), who("client-ana-1", "Ana"), Transport::Ws);
    assert!(p.typing(&room(), ana.id()));
    assert!(!p.typing(&room(), ana.id()), "within the interval: dropped");
    let stranger = MemberId::of_client("client-nobody");
    assert!(!p.typing(&room(), &stranger), "not a member");
    let events = tick(&p, &mut listener, Instant::now());
    let typing: Vec<&String> = events
        .iter()
        .filter(|e| e.contains(r#""type":"typing""#))
        .collect();
    assert_eq!(typing.len(), 1, "{events:?}");
    assert!(typing[0].contains(r#""name":"Ana""#));
}

#[tokio::test]
async fn pollers_get_what_they_missed_or_the_whole_list() {
    let p = presence(10);
    let me = p
        .polled(&room(), who("client-poll-1", "Cy"), Transport::Longpoll)
        .expect("member");
    let Missed {
        events,
        position: start,
        resync,
    } = p.since(&room(), None, Some(&me)).expect("room");
    assert!(!resync, "a newcomer's list is news");
    assert_eq!(events.len(), 1, "a first poll gets the list");
    let first = std::str::from_utf8(&events[0]).expect("UTF-8");
    assert!(
        first.contains(r#""members":[{"#) && first.contains(r#""you":""#),
        "{first}"
    );
    let _ana = p.attach(&room(), who("client-ana-1", "Ana"), Transport::Ws);
    p.inner.tick(Instant::now());
    let Missed {
        events,
        position: next,
        ..
    } = p.since(&room(), Some(start), Some(&me)).expect("room");
    assert_eq!(events.len(), 1);
    assert!(
        std::str::from_utf8(&events[0])
            .expect("UTF-8")
            .contains(r#""joined":[{"#)
    );
    let missed = p.since(&room(), Some(next), Some(&me)).expect("room");
    assert!(missed.events.is_empty());
    // A position from elsewhere gets the list, marked as such.
    let elsewhere = p
        .since(&room(), Some(Position::NOWHERE), Some(&me))
        .expect("room");
    assert!(elsewhere.resync && elsewhere.events.len() == 1);
}

#[tokio::test]
async fn one_address_cannot_fill_a_room_with_invented_members() {
    let p = presence(2);
    assert!(
        p.polled(&room(), who("client-aaaa-1", "A"), Transport::Shortpoll)
            .is_some()
    );
    assert!(
        p.polled(&room(), who("client-aaaa-2", "A"), Transport::Shortpoll)
            .is_some()
    );
    assert!(
        p.polled(&room(), who("client-aaaa-3", "A"), Transport::Shortpoll)
            .is_none()
    );
    // A member already known is still seen.
    assert!(
        p.polled(&room(), who("client-aaaa-1", "A"), Transport::Shortpoll)
            .is_some()
    );
    // Once they expire, the budget is back.
    p.inner.tick(Instant::now() + TTL);
    assert!(
        p.polled(&room(), who("client-aaaa-3", "A"), Transport::Shortpoll)
            .is_some()
    );
}

#[tokio::test]
async fn a_stream_without_a_client_id_or_past_its_budget_leaves_no_lingering_member() {
    let p = presence(1);
    let mut listener = p.signals(&room());
    let anonymous = p.attach(
        &room(),
        Who {
            client: None,
            name: "tool",
            owner: ClientKey::of("127.0.0.2".parse().expect("address")),
        },
        Transport::Ws,
    );
    let first = p.attach(&room(), who("client-aaaa-1", "A"), Transport::Ws);
    let churned = p.attach(&room(), who("client-aaaa-2", "A"), Transport::Ws);
    let now = Instant::now();
    assert!(tick(&p, &mut listener, now)[0].contains(r#""count":3"#));
    drop((anonymous, churned));
    // Nobody can name the anonymous one again, and the second of one address's members is
    // past its budget: both go at once; the first keeps its grace.
    drop(first);
    let events = tick(&p, &mut listener, now);
    assert!(events[0].contains(r#""count":1"#), "{events:?}");
    assert_eq!(p.snapshot(&room(), None).members[0].name, "A");
}

#[tokio::test]
async fn typing_brings_back_a_member_that_said_it_left_while_its_stream_is_open() {
    let p = presence(10);
    let mut listener = p.signals(&room());
    let ana = p.attach(&room(), who("client-ana-1", "Ana"), Transport::Ws);
    let now = Instant::now();
    tick(&p, &mut listener, now);
    // A duplicated tab (same client id) closed and said so; this one is still here.
    p.leave(&room(), "client-ana-1");
    assert!(tick(&p, &mut listener, now)[0].contains(r#""count":0"#));
    assert!(p.typing(&room(), ana.id()), "typing is a sign of life");
    let events = tick(&p, &mut listener, now);
    assert!(
        events.iter().any(|e| e.contains(r#""count":1"#)),
        "{events:?}"
    );
}
