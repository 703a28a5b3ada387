//! Fan-out: N receivers on one transport, S senders over WebSocket, a fixed total rate.

use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::{Duration, Instant as Deadline};

use crate::clients::{self, Server, Transport, Window};
use crate::process;
use crate::stats::{Percentiles, Receipts, percentiles};

/// Connections opened at once: keeps the server's accept backlog from overflowing.
const CONNECT_BATCH: usize = 200;
/// How long receivers keep reading after the last send, for messages still in flight
/// (a short poll's interval, a long poll's round trip).
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Load {
    pub transport: Transport,
    pub receivers: usize,
    pub senders: usize,
    /// Messages per second, all senders together.
    pub rate: f64,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub server: &'static str,
    pub transport: Transport,
    pub receivers: usize,
    pub senders: usize,
    pub rate: f64,
    pub payload: usize,
    pub duration_s: f64,
    /// Messages sent in the measured window.
    pub sent: u64,
    /// First deliveries of those messages, over all receivers.
    pub delivered: u64,
    pub delivered_per_s: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub latency_ms: Percentiles,
    /// Server CPU (user + system) per delivered message, when its pid was given.
    pub cpu_us_per_delivery: Option<f64>,
    pub server_cpu_s: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

pub async fn run(server: &Server, load: &Load, pids: &[u32]) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(load.receivers.max(1))
        .build()?;
    let mut receivers = Vec::with_capacity(load.receivers);
    for batch in (0..load.receivers)
        .collect::<Vec<_>>()
        .chunks(CONNECT_BATCH)
    {
        let opened = join_all(
            batch
                .iter()
                .map(|&i| clients::open(server, load.transport, i, &http)),
        )
        .await;
        for receiver in opened {
            receivers.push(receiver?);
        }
    }

    let origin = Instant::now();
    let from_us = load.warmup.as_micros() as u64;
    let window = Window {
        origin,
        from_us,
        to_us: from_us + load.duration.as_micros() as u64,
    };
    let start = Deadline::now();
    let send_until = start + load.warmup + load.duration;
    let read_until = send_until + DRAIN;

    let readers: Vec<_> = receivers
        .into_iter()
        .map(|receiver| {
            let (server, http) = (server.clone(), http.clone());
            tokio::spawn(async move {
                clients::receive(&server, receiver, window, read_until, http).await
            })
        })
        .collect();
    let per_sender = load.rate / load.senders.max(1) as f64;
    let senders: Vec<_> = (0..load.senders as u32)
        .map(|i| {
            tokio::spawn(clients::send(
                server.clone(),
                i,
                per_sender,
                load.payload,
                window,
                send_until,
            ))
        })
        .collect();

    // Server usage over the measured window only (after warm-up, before draining).
    tokio::time::sleep_until(start + load.warmup).await;
    let before = process::sample_all(pids)?;
    tokio::time::sleep_until(send_until).await;
    let after = process::sample_all(pids)?;

    let mut sent = 0;
    for sender in senders {
        sent += sender.await??;
    }
    let mut all: Vec<Receipts> = Vec::with_capacity(readers.len());
    for reader in readers {
        all.push(reader.await?);
    }
    let delivered: u64 = all.iter().map(|r| r.delivered).sum();
    let mut latencies: Vec<u64> = all
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.latencies_us))
        .collect();
    let expected = sent * load.receivers as u64;
    let server_cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    Ok(Report {
        mode: "fanout",
        server: if server.peer { "node-peer" } else { "relay" },
        transport: load.transport,
        receivers: load.receivers,
        senders: load.senders,
        rate: load.rate,
        payload: load.payload,
        duration_s: load.duration.as_secs_f64(),
        sent,
        delivered,
        delivered_per_s: delivered as f64 / load.duration.as_secs_f64(),
        lost: expected.saturating_sub(delivered),
        duplicated: all.iter().map(Receipts::duplicates).sum(),
        out_of_order: all.iter().map(|r| r.out_of_order).sum(),
        latency_ms: percentiles(&mut latencies),
        cpu_us_per_delivery: server_cpu_s
            .filter(|_| delivered > 0)
            .map(|s| s * 1e6 / delivered as f64),
        server_cpu_s,
        server_rss_kib: after.map(|a| a.rss_kib),
    })
}

pub fn summary(r: &Report) -> String {
    let cpu = r.cpu_us_per_delivery.map_or(String::new(), |c| {
        format!(", server CPU {c:.2} µs/delivery")
    });
    format!(
        "{} {:?}: {} receivers × {} msg/s ({} B): {:.0} deliveries/s; p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms; lost {} dup {} reordered {}{cpu}",
        r.server,
        r.transport,
        r.receivers,
        r.rate,
        r.payload,
        r.delivered_per_s,
        r.latency_ms.p50,
        r.latency_ms.p90,
        r.latency_ms.p99,
        r.latency_ms.p999,
        r.latency_ms.max,
        r.lost,
        r.duplicated,
        r.out_of_order
    )
}
