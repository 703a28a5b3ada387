//! What operators use: `/metrics`, health checks.

use std::process::Command;

use crate::support::*;

fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
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

    let response = http().get(relay.url("/metrics")).send().await.expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let metrics = response.text().await.expect("body");
    for transport in ["ws", "sse", "longpoll", "shortpoll"] {
        let delivered = sample(
            &metrics,
            &format!("relay_messages_delivered_total{{transport=\"{transport}\"}}"),
        );
        assert!(delivered > 0.0, "{transport} delivered {delivered}");
        let lagged = sample(
            &metrics,
            &format!("relay_delivery_lag_seconds_count{{transport=\"{transport}\"}}"),
        );
        assert_eq!(
            lagged, delivered,
            "{transport}: one lag sample per delivery"
        );
    }
    assert_eq!(
        sample(&metrics, "relay_messages_delivered_total{transport=\"ws\"}"),
        2.0
    );
    assert_eq!(
        sample(&metrics, "relay_messages_published_total{via=\"ws\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "relay_messages_published_total{via=\"http\"}"),
        1.0
    );
    assert_eq!(sample(&metrics, "relay_connections{transport=\"ws\"}"), 1.0);
    assert_eq!(
        sample(&metrics, "relay_connections{transport=\"sse\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "relay_rejected_total{reason=\"invalid_name\"}"),
        1.0
    );
    assert_eq!(sample(&metrics, "relay_rooms"), 1.0);

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
    relay.shutdown.cancel();
    let task = { relay }.task.take();
    if let Some(task) = task {
        let _ = within("the relay to stop", task).await;
    }
    assert_eq!(healthcheck(addr).await.code(), Some(1));
}
