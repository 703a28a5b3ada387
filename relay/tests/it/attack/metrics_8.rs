//! Item 8: with `RELAY_METRICS_ADDR`, `/metrics` is served only there; the public port
//! answers 404. Every refusal reason's counter exists from the start, at zero.
//!
//! Failed on the main of issue 10: there was no such setting (the binary refused the
//! variable's flag), and `/metrics` was on the public port.

use reqwest::StatusCode;

use crate::support::process::Process;
use crate::support::*;

#[tokio::test]
async fn metrics_are_served_only_on_their_own_address() {
    let (mut process, addr) = Process::spawn(&[], &[("RELAY_METRICS_ADDR", "127.0.0.1:0")]).await;
    let metrics_addr = process.logged_addr("metrics listening").await;
    let public = http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let private = Client::new(metrics_addr).metrics().await;
    for reason in [
        "invalid_host",
        "rate_limited",
        "too_many_connections",
        "slow_consumer",
    ] {
        let series = format!("relay_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(
            sample(&private, &series),
            Some(0.0),
            "{series} starts at zero"
        );
    }
    // The refusal above is not counted as a client error of the metrics port's own.
    let relay = Client::new(addr);
    let _ = relay.poll("ok", "").await;
    assert_eq!(
        http()
            .get(format!("http://{metrics_addr}/api/rooms/ok/messages"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::NOT_FOUND,
        "the metrics port serves nothing else"
    );
}
