//! Item 7: DNS rebinding. A page on `attacker.example` whose name now resolves to 127.0.0.1
//! sends `Host: attacker.example:PORT` and a matching `Origin`, which passes the same-origin
//! check; only the `Host` allow-list stops it.
//!
//! Failed on the main of issue 10: the POST below was answered 201.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_rebound_host_name_is_refused_on_every_path() {
    let relay = Relay::start().await;
    let port = relay.addr.port();
    let host = format!("attacker.example:{port}");
    let origin = format!("http://{host}");
    let post = http()
        .post(relay.url("/api/rooms/r/messages"))
        .header("host", &host)
        .header("origin", &origin)
        .json(&json!({"from": "mallory", "text": "hi"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(post.text().await.expect("body").contains("invalid_host"));
    for path in [
        "/",
        "/api/rooms/r/messages",
        "/api/rooms/r/events",
        "/healthz",
    ] {
        let answer = http()
            .get(relay.url(path))
            .header("host", &host)
            .send()
            .await
            .expect("GET");
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    let ws = Ws::connect_with(
        &relay.ws_url("r", ""),
        &[("host", host.as_str()), ("origin", origin.as_str())],
    )
    .await;
    assert_eq!(ws.err().map(|(status, _)| status), Some(421));
    // Nothing was published, and loopback names still work.
    for name in ["localhost", "127.0.0.1"] {
        let answer = http()
            .get(relay.url("/api/rooms/r/messages"))
            .header("host", format!("{name}:{port}"))
            .send()
            .await
            .expect("GET");
        assert_eq!(answer.status(), StatusCode::OK, "{name}");
    }
    assert_eq!(relay.poll("r", "").await.messages.len(), 0);
    assert_eq!(
        relay
            .metric("relay_rejected_total{reason=\"invalid_host\"}")
            .await,
        Some(6.0)
    );
}

#[tokio::test]
async fn listed_hosts_are_served_and_a_star_serves_any() {
    let relay = Relay::start_with(|c| c.allowed_hosts = vec!["chat.example".into()]).await;
    let get = |host: &'static str| {
        let url = relay.url("/healthz");
        async move {
            http()
                .get(url)
                .header("host", host)
                .send()
                .await
                .expect("GET")
                .status()
        }
    };
    assert_eq!(get("chat.example").await, StatusCode::OK);
    assert_eq!(get("chat.example:8443").await, StatusCode::OK);
    assert_eq!(get("localhost").await, StatusCode::MISDIRECTED_REQUEST);
    let any = Relay::start_with(|c| c.allowed_hosts = vec!["*".into()]).await;
    let answer = http()
        .get(any.url("/healthz"))
        .header("host", "anything.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status(), StatusCode::OK);
}
