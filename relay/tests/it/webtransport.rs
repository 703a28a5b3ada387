//! WebTransport: sessions on the relay's UDP endpoint, trusted through the certificate hash
//! that `/api/transport-info` gives, carrying the room as NDJSON and send frames back.

use std::time::Duration;

use protocol::{ErrorCode, ServerEvent, Transport};

use crate::support::wt::transport_info;
use crate::support::*;

fn with_wt(config: &mut ::relay::config::Config) {
    config.wt_addr = Some("127.0.0.1:0".parse().expect("address"));
}

#[tokio::test]
async fn transport_info_says_where_webtransport_is_and_null_when_it_is_off() {
    let off = Relay::start().await;
    assert_eq!(transport_info(&off).await.webtransport, None);
    let on = Relay::start_with(with_wt).await;
    let info = transport_info(&on).await.webtransport.expect("on");
    assert!(info.url.starts_with("https://127.0.0.1:"), "{}", info.url);
    assert_eq!(info.cert_hashes.len(), 1);
    assert_eq!(info.cert_hashes[0].len(), 64);
}

#[tokio::test]
async fn a_session_follows_the_room_and_publishes_with_acks_and_errors() {
    let relay = Relay::start_with(with_wt).await;
    let mut wt = Wt::connect(&relay, "wt", "name=Ana", Some(&relay.origin()))
        .await
        .expect("the session opens");
    match wt.lines.event().await {
        ServerEvent::Welcome(welcome) => assert_eq!(welcome.transport, Transport::WebTransport),
        other => panic!("expected the welcome, got {other:?}"),
    }
    let id = relay.post("wt", "Bo", "from http").await;
    assert_eq!(wt.lines.message().await.id, id);
    wt.send_line(r#"{"type":"send","text":"from wt","key":"k-1"}"#)
        .await;
    // The ack and the message itself, in either order.
    let (mut mine, mut acked) = (None, None);
    while mine.is_none() || acked.is_none() {
        match wt.lines.event().await {
            ServerEvent::Message(message) => mine = Some(message),
            ServerEvent::Ack(ack) => acked = Some(ack),
            other => panic!("expected the message and its ack, got {other:?}"),
        }
    }
    let (mine, acked) = (mine.expect("message"), acked.expect("ack"));
    assert_eq!((mine.from.as_str(), mine.text.as_str()), ("Ana", "from wt"));
    assert_eq!((acked.id, acked.key.as_str()), (mine.id, "k-1"));
    wt.send_line(r#"{"type":"send","text":"   ","key":"k-2"}"#)
        .await;
    match wt.lines.event().await {
        ServerEvent::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidText);
            assert_eq!(error.key.as_deref(), Some("k-2"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(
        relay
            .metric("relay_messages_published_total{via=\"webtransport\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_foreign_origin_or_another_port_is_refused_and_the_page_s_own_origin_is_not() {
    let relay = Relay::start_with(with_wt).await;
    let refused = Wt::connect(&relay, "o", "", Some("https://evil.example")).await;
    assert!(refused.is_err(), "a foreign origin opened a session");
    relay
        .wait_metric("relay_rejected_total{reason=\"forbidden_origin\"}", 1.0)
        .await;
    // The page is served from the HTTP port; the session goes to the UDP one: allowed.
    let mut page = Wt::connect(&relay, "o", "", Some(&relay.origin()))
        .await
        .expect("the page's own host is allowed");
    assert!(matches!(page.lines.event().await, ServerEvent::Welcome(_)));
    // Another port of the same host is another site.
    let other_port = Wt::connect(&relay, "o", "", Some("http://127.0.0.1:1")).await;
    assert!(
        other_port.is_err(),
        "another port of the host opened a session"
    );
    relay
        .wait_metric("relay_rejected_total{reason=\"forbidden_origin\"}", 2.0)
        .await;
}

#[tokio::test]
async fn a_bad_room_is_told_why_on_the_stream() {
    let relay = Relay::start_with(with_wt).await;
    let mut wt = Wt::connect(&relay, "no%20spaces", "", None)
        .await
        .expect("opens");
    match wt.lines.event().await {
        ServerEvent::Error(error) => assert_eq!(error.code, ErrorCode::InvalidRoom),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_resumes_from_after_and_epoch() {
    let relay = Relay::start_with(with_wt).await;
    for i in 1..=5 {
        relay.post("re", "a", &format!("m{i}")).await;
    }
    let mut first = Wt::connect(&relay, "re", "limit=0", None)
        .await
        .expect("opens");
    let (epoch, head) = first.lines.welcome().await;
    assert_eq!(head, 5);
    drop(first);
    let mut resumed = Wt::connect(&relay, "re", &format!("after=2&epoch={epoch}"), None)
        .await
        .expect("opens");
    assert_eq!(resumed.lines.welcome().await, (epoch, 5));
    for id in 3..=5 {
        assert_eq!(
            resumed.lines.message().await.id,
            id,
            "exactly the missed ones"
        );
    }
}

#[tokio::test]
async fn a_renewed_certificate_keeps_old_sessions_and_serves_new_ones() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        // Renewed every 4 s (two thirds of its validity).
        c.wt_cert_validity = Duration::from_secs(6);
    })
    .await;
    let before = transport_info(&relay)
        .await
        .webtransport
        .expect("on")
        .cert_hashes;
    assert_eq!(before.len(), 1, "one certificate until the first renewal");
    let mut old = Wt::connect(&relay, "cert", "", None).await.expect("opens");
    old.lines.welcome().await;
    // Renewed: the advertised hashes change, the new one first and the one before it still
    // listed, for a page that asked just before.
    let after = eventually("the certificate to be renewed", || async {
        let now = transport_info(&relay)
            .await
            .webtransport
            .expect("on")
            .cert_hashes;
        (now != before).then_some(now)
    })
    .await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(!before.contains(&after[0]), "{before:?} → {after:?}");
    // A client that trusts none of the first certificate connects: the endpoint presents a
    // renewed one (the hash is advertised just before the endpoint switches, hence the
    // retries; any number of renewals may have happened meanwhile).
    let mut new = eventually("a session trusting only renewed certificates", || async {
        let renewed = |hashes: &[String]| -> Vec<String> {
            hashes
                .iter()
                .filter(|h| !before.contains(h))
                .cloned()
                .collect()
        };
        let mut new = Wt::connect_trusting(&relay, "cert", "", None, renewed)
            .await
            .ok()?;
        new.lines.welcome().await;
        Some(new)
    })
    .await;
    let id = relay.post("cert", "a", "still here").await;
    assert_eq!(
        old.lines.message().await.id,
        id,
        "the old session still serves"
    );
    assert_eq!(new.lines.message().await.id, id);
}

#[tokio::test]
async fn one_address_gets_its_connection_budget_and_no_more_over_webtransport() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        c.max_connections_per_client = 1;
    })
    .await;
    let mut first = Wt::connect(&relay, "budget", "", None)
        .await
        .expect("opens");
    first.lines.welcome().await;
    // Refused before its handshake (the place is taken then), and counted as the address's
    // connection budget.
    let second = Wt::connect(&relay, "budget", "", None).await;
    assert!(second.is_err(), "a second session from the same address");
    relay
        .wait_metric("relay_rejected_total{reason=\"too_many_connections\"}", 1.0)
        .await;
    // The first is untouched, and its place is given back when it goes.
    let id = relay.post("budget", "a", "still").await;
    assert_eq!(first.lines.message().await.id, id);
    drop(first);
    eventually("the place to be given back", || async {
        let mut again = Wt::connect(&relay, "budget", "", None).await.ok()?;
        match again.lines.event().await {
            ServerEvent::Welcome(_) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn a_session_that_stops_reading_is_closed_after_the_send_timeout() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        c.send_timeout = Duration::from_millis(300);
        c.history = 100_000;
        c.history_bytes = 1 << 30;
    })
    .await;
    // Never read: QUIC's flow control (the client's window, then the relay's send window)
    // fills, and the relay's writes wait.
    let _stalled = Wt::connect(&relay, "slow", "", None).await.expect("opens");
    publish_until_one_is_let_go(&relay, "slow", async |_| {}).await;
    relay
        .wait_metric("relay_connections{transport=\"webtransport\"}", 0.0)
        .await;
}

#[tokio::test]
async fn an_endless_line_is_refused_and_closes_the_session() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        c.max_frame_bytes = 1024;
    })
    .await;
    let mut wt = Wt::connect(&relay, "long", "", None).await.expect("opens");
    wt.lines.welcome().await;
    wt.send_bytes(&vec![b'x'; 2048]).await;
    match wt.lines.event().await {
        ServerEvent::Error(error) => assert_eq!(error.code, ErrorCode::PayloadTooLarge),
        other => panic!("expected payload_too_large, got {other:?}"),
    }
    relay
        .wait_metric("relay_connections{transport=\"webtransport\"}", 0.0)
        .await;
}

#[tokio::test]
async fn a_session_that_never_opens_its_stream_is_let_go_after_the_header_timeout() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        // Long enough for a handshake on a busy machine; far shorter than the bound of
        // `eventually` below, and the relay's keep-alives mean QUIC never idles the session
        // out on its own.
        c.header_timeout = Duration::from_secs(2);
        c.max_connections_per_client = 1;
    })
    .await;
    // Holds the address's only place, without ever opening a stream.
    let _idle = crate::support::wt::session_only(&relay, "idle", "").await;
    // The place comes back once the relay stops waiting for the stream (long before QUIC's
    // own idle timeout, 60 s): a full session gets in.
    eventually("the idle session's place to be given back", || async {
        let mut next = Wt::connect(&relay, "idle", "", None).await.ok()?;
        match next.lines.event().await {
            ServerEvent::Welcome(_) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn a_connection_over_the_address_s_request_budget_is_refused_before_its_handshake() {
    let relay = Relay::start_with(|c| {
        with_wt(c);
        // Three requests, then none for a long while: asking `transport-info` and a
        // connection, then asking again, and a connection that finds the budget spent.
        c.request_burst = 3.0;
        c.request_rate = 0.001;
    })
    .await;
    let mut first = Wt::connect(&relay, "spent", "", None).await.expect("opens");
    first.lines.welcome().await;
    let second = Wt::connect(&relay, "spent", "", None).await;
    assert!(second.is_err(), "a connection past the request budget");
    relay
        .wait_metric("relay_rejected_total{reason=\"rate_limited\"}", 1.0)
        .await;
    // The session that got in is untouched: it still sends (a frame is not a request) and
    // receives.
    first
        .send_line(r#"{"type":"send","text":"still here"}"#)
        .await;
    assert_eq!(first.lines.message().await.text, "still here");
}

#[tokio::test]
async fn a_path_that_is_not_a_room_s_session_is_answered_404() {
    let relay = Relay::start_with(with_wt).await;
    let refused = Wt::connect_path(&relay, "/api/rooms/x/events", None).await;
    let Err(why) = refused else {
        panic!("a session opened on a path that is not a session's");
    };
    // The client is told no more than "rejected" (the status is not in its error); the
    // relay counts why.
    assert!(why.contains("rejected"), "{why}");
    relay
        .wait_metric("relay_rejected_total{reason=\"not_found\"}", 1.0)
        .await;
}
