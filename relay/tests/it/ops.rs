//! What operators use: `/metrics`, health checks.

use std::process::Command;

use crate::support::*;

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_count_deliveries_on_every_transport() {
    let relay = Relay::start().await;
    let mut ws = Ws::connect(&relay.ws_url("m", "")).await;
    ws.welcome().await;
    let mut sse = Sse::connect(&relay.url("/api/rooms/m/events"), &[])
        .await
        .expect("SSE opens");
    sse.welcome().await;
    ws.send("over ws").await;
    relay.post("m", "a", "over http").await;
    for _ in 0..2 {
        ws.message().await;
        sse.message().await;
    }
    assert_eq!(relay.poll("m", "after=0").await.messages.len(), 2);
    assert_eq!(relay.poll("m", "after=1&wait=5").await.messages.len(), 1);
    // A refusal, counted by its code.
    let (status, _) = relay
        .post_raw("m", serde_json::json!({"from": "", "text": "x"}))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);

    let metrics = relay.metrics().await;
    // What each transport delivered, counted from what the clients above received: two
    // messages to the WebSocket and to the SSE stream, two to the short poll (after=0), one
    // to the long poll (after=1). Each delivery is one lag sample.
    for (transport, expected) in [
        ("ws", 2.0),
        ("sse", 2.0),
        ("shortpoll", 2.0),
        ("longpoll", 1.0),
    ] {
        let delivered = value(
            &metrics,
            &format!("relay_messages_delivered_total{{transport=\"{transport}\"}}"),
        );
        assert_eq!(delivered, expected, "{transport}: deliveries");
        let lagged = value(
            &metrics,
            &format!("relay_delivery_lag_seconds_count{{transport=\"{transport}\"}}"),
        );
        assert_eq!(lagged, expected, "{transport}: one lag sample per delivery");
        let below_inf = value(
            &metrics,
            &format!("relay_delivery_lag_seconds_bucket{{transport=\"{transport}\",le=\"+Inf\"}}"),
        );
        assert_eq!(
            below_inf, expected,
            "{transport}: the +Inf bucket counts them all"
        );
    }
    assert_eq!(
        value(&metrics, "relay_messages_published_total{via=\"ws\"}"),
        1.0
    );
    assert_eq!(
        value(&metrics, "relay_messages_published_total{via=\"http\"}"),
        1.0
    );
    assert_eq!(value(&metrics, "relay_connections{transport=\"ws\"}"), 1.0);
    assert_eq!(value(&metrics, "relay_connections{transport=\"sse\"}"), 1.0);
    assert_eq!(
        value(&metrics, "relay_rejected_total{reason=\"invalid_name\"}"),
        1.0
    );
    assert_eq!(value(&metrics, "relay_rooms"), 1.0);

    drop(ws);
    drop(sse);
}

/// Runs `relay --addr ADDR healthcheck` off the test's runtime, which serves the relay.
async fn healthcheck(addr: std::net::SocketAddr) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["--addr", &addr.to_string(), "healthcheck"])
            .status()
            .expect("relay healthcheck runs")
    })
    .await
    .expect("healthcheck task")
}

#[tokio::test]
async fn healthcheck_subcommand_reports_the_relay_state() {
    let relay = Relay::start().await;
    let healthy = healthcheck(relay.addr).await;
    assert!(healthy.success(), "healthy relay: {healthy}");

    // Nothing listens on the port of a relay that has stopped.
    let addr = relay.addr;
    relay.stop().await;
    assert_eq!(healthcheck(addr).await.code(), Some(1));
}
