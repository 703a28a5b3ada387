//! Fan-out: N receivers on one transport, S senders over WebSocket, a fixed total rate.

use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::{Duration, Instant as Deadline};

use crate::clients::{self, Sent, Server, Transport, Window};
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
    /// Threads the receivers are spread over.
    pub threads: usize,
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
    /// `sent` over what the rate asked for in the window: below 1, the tool fell behind.
    pub sent_vs_offered: f64,
    /// How late the senders' ticks ran against their schedule (ms).
    pub send_late_ms: Percentiles,
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
    /// The load tool's own CPU (all its threads) per delivered message.
    pub tool_cpu_us_per_delivery: Option<f64>,
    /// Share of one core used by the tool's busiest receiving thread: near 1, the tool (not
    /// the server) set the pace, and latencies include its queueing.
    pub tool_receiver_busy: f64,
    /// Why this run does not count, if it does not: `lost`, `duplicated`, `reordered`,
    /// `sender_lagged`, `tool_saturated`. Reports average only runs where this is empty.
    pub flags: Vec<&'static str>,
}

/// The sender is lagging when it sent less than this share of what was asked...
const MIN_SENT_SHARE: f64 = 0.98;
/// ...or its ticks ran this late at p99 (the offered load came in bursts).
const MAX_LATE_P99_MS: f64 = 20.0;
/// The receiving thread is saturated above this share of a core.
const MAX_RECEIVER_BUSY: f64 = 0.9;

/// What the receiving threads are told once every receiver is connected.
#[derive(Clone, Copy)]
struct Go {
    window: Window,
    measure_from: Deadline,
    send_until: Deadline,
    read_until: Deadline,
}

/// What one receiving thread brings back.
struct Shard {
    receipts: Vec<Receipts>,
    /// CPU seconds of the thread over the measured window.
    cpu_s: f64,
}

/// One receiving thread: opens its receivers, reports ready, waits for the go, reads until
/// the end, and measures its own CPU time over the measured window.
fn receiving_thread(
    server: Server,
    load: Load,
    indices: Vec<usize>,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
    go: std::sync::mpsc::Receiver<Go>,
) -> anyhow::Result<Shard> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(indices.len().max(1))
            .build()?;
        let mut receivers = Vec::with_capacity(indices.len());
        let mut failed = None;
        'open: for batch in indices.chunks(CONNECT_BATCH) {
            let opened = join_all(
                batch
                    .iter()
                    .map(|&i| clients::open(&server, load.transport, i, &http)),
            )
            .await;
            for receiver in opened {
                match receiver {
                    Ok(receiver) => receivers.push(receiver),
                    Err(err) => {
                        failed = Some(err);
                        break 'open;
                    }
                }
            }
        }
        if let Some(err) = failed {
            let _ = ready.send(Err(anyhow::anyhow!("{err:#}")));
            return Err(err);
        }
        let _ = ready.send(Ok(()));
        // Waiting here blocks this thread's runtime, which has nothing else to do yet (what
        // the server sends meanwhile waits in the sockets).
        let go = go.recv()?;
        let readers: Vec<_> = receivers
            .into_iter()
            .map(|receiver| {
                let (server, http) = (server.clone(), http.clone());
                tokio::spawn(async move {
                    clients::receive(&server, receiver, go.window, go.read_until, http).await
                })
            })
            .collect();
        tokio::time::sleep_until(go.measure_from).await;
        let before = process::sample_this_thread()?;
        tokio::time::sleep_until(go.send_until).await;
        let after = process::sample_this_thread()?;
        let mut receipts = Vec::with_capacity(readers.len());
        for reader in readers {
            receipts.push(reader.await?);
        }
        Ok(Shard {
            receipts,
            cpu_s: after.cpu_s - before.cpu_s,
        })
    })
}

pub async fn run(server: &Server, load: &Load, pids: &[u32]) -> anyhow::Result<Report> {
    // The receivers are spread over `load.threads` threads, each with a runtime of its own
    // (a socket is served by the runtime that opened it), so that the tool's share of the
    // machine is known and one busy thread is detected rather than silently slowing a run.
    let threads = load.threads.clamp(1, load.receivers.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut gos = Vec::with_capacity(threads);
    let mut shards = Vec::with_capacity(threads);
    for t in 0..threads {
        let indices: Vec<usize> = (t..load.receivers).step_by(threads).collect();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        let (server, load, ready) = (server.clone(), load.clone(), ready_tx.clone());
        gos.push(go_tx);
        shards.push(std::thread::spawn(move || {
            receiving_thread(server, load, indices, ready, go_rx)
        }));
    }
    for _ in 0..threads {
        // Blocking is fine: this thread waits for nothing else meanwhile.
        ready_rx.recv()??;
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
    let go = Go {
        window,
        measure_from: start + load.warmup,
        send_until,
        read_until: send_until + DRAIN,
    };
    for go_tx in &gos {
        go_tx.send(go)?;
    }
    // The senders get a thread of their own, so that a busy receiving thread cannot make
    // them late (which would lower the load offered); their lateness is measured anyway.
    let per_sender = load.rate / load.senders.max(1) as f64;
    let senders = {
        let (server, load) = (server.clone(), load.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<Sent>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let all = (0..load.senders as u32).map(|i| {
                    clients::send(
                        server.clone(),
                        i,
                        per_sender,
                        load.payload,
                        window,
                        send_until,
                    )
                });
                join_all(all).await.into_iter().collect()
            })
        })
    };

    // Usage over the measured window only (after warm-up, before draining).
    tokio::time::sleep_until(go.measure_from).await;
    let before = process::sample_all(pids)?;
    let tool_before = process::sample(std::process::id())?;
    tokio::time::sleep_until(send_until).await;
    let after = process::sample_all(pids)?;
    let tool_after = process::sample(std::process::id())?;

    let mut all: Vec<Receipts> = Vec::with_capacity(load.receivers);
    let mut busiest: f64 = 0.0;
    for shard in shards {
        let shard = shard
            .join()
            .map_err(|_| anyhow::anyhow!("a receiving thread panicked"))??;
        busiest = busiest.max(shard.cpu_s);
        all.extend(shard.receipts);
    }
    let sent_by = senders
        .join()
        .map_err(|_| anyhow::anyhow!("a sender panicked"))??;
    let sent: u64 = sent_by.iter().map(|s| s.measured).sum();
    let mut late: Vec<u64> = sent_by.into_iter().flat_map(|s| s.late_us).collect();
    let delivered: u64 = all.iter().map(|r| r.delivered).sum();
    let mut latencies: Vec<u64> = all
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.latencies_us))
        .collect();
    let expected = sent * load.receivers as u64;
    let server_cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    let seconds = load.duration.as_secs_f64();
    let per_delivery = |cpu_s: f64| (delivered > 0).then(|| cpu_s * 1e6 / delivered as f64);
    let offered = load.rate * seconds;
    let mut report = Report {
        mode: "fanout",
        server: server.name,
        transport: load.transport,
        receivers: load.receivers,
        senders: load.senders,
        rate: load.rate,
        payload: load.payload,
        duration_s: seconds,
        sent,
        sent_vs_offered: if offered > 0.0 {
            sent as f64 / offered
        } else {
            1.0
        },
        send_late_ms: percentiles(&mut late),
        delivered,
        delivered_per_s: delivered as f64 / seconds,
        lost: expected.saturating_sub(delivered),
        duplicated: all.iter().map(Receipts::duplicates).sum(),
        out_of_order: all.iter().map(|r| r.out_of_order).sum(),
        latency_ms: percentiles(&mut latencies),
        cpu_us_per_delivery: server_cpu_s.and_then(per_delivery),
        server_cpu_s,
        server_rss_kib: after.map(|a| a.rss_kib),
        tool_cpu_us_per_delivery: per_delivery(tool_after.cpu_s - tool_before.cpu_s),
        tool_receiver_busy: busiest / seconds,
        flags: Vec::new(),
    };
    report.flags = flags(&report);
    Ok(report)
}

/// Why a run does not count (see [`Report::flags`]).
fn flags(r: &Report) -> Vec<&'static str> {
    [
        (r.lost > 0, "lost"),
        (r.duplicated > 0, "duplicated"),
        (r.out_of_order > 0, "reordered"),
        (
            r.sent_vs_offered < MIN_SENT_SHARE || r.send_late_ms.p99 > MAX_LATE_P99_MS,
            "sender_lagged",
        ),
        (r.tool_receiver_busy > MAX_RECEIVER_BUSY, "tool_saturated"),
    ]
    .into_iter()
    .filter_map(|(raised, flag)| raised.then_some(flag))
    .collect()
}

pub fn summary(r: &Report) -> String {
    let cpu = r.cpu_us_per_delivery.map_or(String::new(), |c| {
        format!(", server CPU {c:.2} µs/delivery")
    });
    let tool = r.tool_cpu_us_per_delivery.map_or(String::new(), |c| {
        format!(
            "; tool CPU {c:.2} µs/delivery, receiver thread {:.0} % busy, sent {:.1} % of offered",
            r.tool_receiver_busy * 100.0,
            r.sent_vs_offered * 100.0
        )
    });
    let flags = if r.flags.is_empty() {
        String::new()
    } else {
        format!(" [does not count: {}]", r.flags.join(", "))
    };
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
    ) + &tool
        + &flags
}
