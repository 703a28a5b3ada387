//! Idle: K open connections that receive nothing; the server's memory per connection.

use anyhow::Context;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::Duration;

use crate::clients::{self, Server, Transport};
use crate::process;

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub server: &'static str,
    pub transport: Transport,
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub bytes_per_connection: f64,
}

pub async fn run(
    server: &Server,
    transport: Transport,
    connections: usize,
    pids: Vec<u32>,
    settle: Duration,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        transport != Transport::Shortpoll,
        "short polling holds no connection between requests"
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let before = process::sample_all(&pids)?.context("no pid")?;
    let mut open = Vec::with_capacity(connections);
    for batch in (0..connections).collect::<Vec<_>>().chunks(200) {
        for receiver in join_all(
            batch
                .iter()
                .map(|&i| clients::open(server, transport, i, &http)),
        )
        .await
        {
            open.push(receiver?);
        }
    }
    // Long polls hold a connection only while a request is pending: start one on each.
    let mut pending = Vec::new();
    if transport == Transport::Longpoll {
        for receiver in open.drain(..) {
            let (server, http) = (server.clone(), http.clone());
            let window = clients::Window {
                origin: std::time::Instant::now(),
                from_us: 0,
                to_us: 0,
            };
            let until = tokio::time::Instant::now() + settle + Duration::from_secs(5);
            pending.push(tokio::spawn(async move {
                clients::receive(&server, receiver, window, until, http).await
            }));
        }
    }
    tokio::time::sleep(settle).await;
    let after = process::sample_all(&pids)?.context("no pid")?;
    for task in pending {
        task.abort();
    }
    drop(open);
    Ok(Report {
        mode: "idle",
        server: server.name,
        transport,
        connections,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        bytes_per_connection: (after.rss_kib.saturating_sub(before.rss_kib) * 1024) as f64
            / connections.max(1) as f64,
    })
}

pub fn summary(r: &Report) -> String {
    format!(
        "{} {:?}: {} idle connections: RSS {} → {} KiB, {:.0} bytes per connection",
        r.server,
        r.transport,
        r.connections,
        r.rss_before_kib,
        r.rss_after_kib,
        r.bytes_per_connection
    )
}
