//! `relay-bench presence`: what presence costs. N members (WebSockets that name themselves,
//! as pages do) join one room at once; the tool reports how long until every relay lists them
//! all and in how many events, then the relays' (and Redis's) CPU time and the relays' calls
//! to Redis per member per minute while the members stay, then how long until they are all
//! gone once they vanish without a word (the TTL's grace) and in how many events.
//!
//! With `--redis-url` two relays share the room (members split between them); without, one
//! relay keeps presence in memory. The relays are started here, with a short TTL.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::api::Endpoint;
use serde::Serialize;

use crate::crowd::wait_ready;
use crate::process::{self, Spawned};

const ROOM: &str = "presence";

pub struct Options {
    pub relay_bin: PathBuf,
    pub redis_url: Option<String>,
    /// Redis's pid, to count its CPU time with the relays'.
    pub redis_pid: Option<u32>,
    pub members: usize,
    pub duration: Duration,
    /// `RELAY_PRESENCE_TTL` of the relays.
    pub ttl: Duration,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub members: usize,
    pub relays: usize,
    pub redis: bool,
    pub ttl_s: f64,
    /// From the first connection until every relay lists every member.
    pub join_ms: u64,
    /// Presence batches the relays sent while the crowd joined (one per room per tick).
    pub join_batches: u64,
    /// Presence events one member received while the crowd joined, on average.
    pub join_events_per_member: f64,
    pub steady_s: f64,
    /// CPU time of the relays (and Redis, with `--redis-pid`) while the members stayed.
    pub cpu_ms_per_member_per_min: f64,
    pub redis_cpu_ms_per_member_per_min: Option<f64>,
    pub redis_calls_per_member_per_min: f64,
    /// Events a member received while nothing changed (should be none).
    pub steady_events: u64,
    /// From the members vanishing until every relay lists none.
    pub leave_ms: u64,
    pub leave_batches: u64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_relay(options: &Options) -> anyhow::Result<(Spawned, String)> {
    let port = free_port()?;
    let mut command = Command::new(&options.relay_bin);
    command
        .env("RELAY_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "RELAY_PRESENCE_TTL",
            format!("{}ms", options.ttl.as_millis()),
        )
        .env("RELAY_MAX_CONNECTIONS", "30000")
        .env("RELAY_MAX_CONNECTIONS_PER_CLIENT", "30000")
        .env("RELAY_MAX_SOCKETS_PER_CLIENT", "30000")
        .env("RELAY_REQUEST_RATE", "100000")
        .env("RELAY_REQUEST_BURST", "100000")
        .env("RELAY_ACCEPT_RATE", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    if let Some(url) = &options.redis_url {
        command.env("RELAY_REDIS_URL", url);
    }
    Ok((
        Spawned(command.spawn()?),
        format!("http://127.0.0.1:{port}"),
    ))
}

async fn metric(http: &reqwest::Client, url: &str, series: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

async fn summed(http: &reqwest::Client, urls: &[String], series: &str) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for url in urls {
        sum += metric(http, url, series).await?;
    }
    Ok(sum)
}

async fn count(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let list: serde_json::Value = http
        .get(format!("{url}{}", Endpoint::Presence.path(ROOM)))
        .send()
        .await?
        .json()
        .await?;
    Ok(list["count"].as_u64().unwrap_or(0))
}

/// Waits (within `limit`) until every relay counts `want` members.
async fn until_counted(
    http: &reqwest::Client,
    urls: &[String],
    want: u64,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let mut all = true;
        for url in urls {
            all &= count(http, url).await? == want;
        }
        if all {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "the relays did not count {want} members within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.members > 0, "nothing to do");
    let relays: Vec<(Spawned, String)> = (0..if options.redis_url.is_some() { 2 } else { 1 })
        .map(|_| start_relay(options))
        .collect::<anyhow::Result<_>>()?;
    let urls: Vec<String> = relays.iter().map(|(_, url)| url.clone()).collect();
    let mut pids: Vec<u32> = relays.iter().map(|(child, _)| child.id()).collect();
    // No kept-alive connections: one left idle through the steady phase would meet the
    // relay's idle timeout just as it is reused.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    for url in &urls {
        wait_ready(&http, url).await?;
    }
    let batches = "relay_presence_batches_total";

    // The crowd joins: every member a WebSocket that names itself, spread over the relays.
    let events = Arc::new(AtomicU64::new(0));
    let before_join = summed(&http, &urls, batches).await?;
    let started = Instant::now();
    let mut readers = Vec::with_capacity(options.members);
    for chunk in (0..options.members).collect::<Vec<_>>().chunks(100) {
        let opened = futures_util::future::join_all(chunk.iter().map(|&i| {
            let url = &urls[i % urls.len()];
            let ws = url.replacen("http://", "ws://", 1);
            let address = format!(
                "{ws}{}?name=m{i}&client=bench-member-{i:06}&limit=0",
                Endpoint::Ws.path(ROOM)
            );
            async move { tokio_tungstenite::connect_async(address).await }
        }))
        .await;
        for socket in opened {
            let (socket, _) = socket?;
            let events = events.clone();
            readers.push(tokio::spawn(async move {
                let mut socket = socket;
                while let Some(Ok(frame)) = socket.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = frame
                        && text.contains(r#""type":"presence""#)
                    {
                        events.fetch_add(1, Relaxed);
                    }
                }
            }));
        }
    }
    let want = options.members as u64;
    until_counted(&http, &urls, want, Duration::from_secs(120)).await?;
    let join = started.elapsed();
    // Every member has heard of every other: the last event is in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let join_batches = (summed(&http, &urls, batches).await? - before_join) as u64;
    let join_events = events.swap(0, Relaxed);

    // The members stay: what that costs.
    let calls = "relay_presence_redis_calls_total";
    let cpu_before = process::sample_all(&pids)?.map_or(0.0, |s| s.cpu_s);
    let redis_before = options.redis_pid.map(process::sample).transpose()?;
    let calls_before = summed(&http, &urls, calls).await?;
    let steady_start = Instant::now();
    tokio::time::sleep(options.duration).await;
    let steady = steady_start.elapsed().as_secs_f64();
    let cpu = process::sample_all(&pids)?.map_or(0.0, |s| s.cpu_s) - cpu_before;
    let redis_cpu = match (options.redis_pid, redis_before) {
        (Some(pid), Some(before)) => Some(process::sample(pid)?.cpu_s - before.cpu_s),
        _ => None,
    };
    let redis_calls = summed(&http, &urls, calls).await? - calls_before;
    let steady_events = events.swap(0, Relaxed);
    let per = |amount: f64| amount / options.members as f64 / (steady / 60.0);

    // They vanish without a word: gone after the grace.
    let before_leave = summed(&http, &urls, batches).await?;
    for reader in &readers {
        reader.abort();
    }
    let gone = Instant::now();
    until_counted(&http, &urls, 0, options.ttl + Duration::from_secs(60)).await?;
    let leave = gone.elapsed();
    let leave_batches = (summed(&http, &urls, batches).await? - before_leave) as u64;
    pids.clear();
    Ok(Report {
        mode: "presence",
        members: options.members,
        relays: urls.len(),
        redis: options.redis_url.is_some(),
        ttl_s: options.ttl.as_secs_f64(),
        join_ms: join.as_millis() as u64,
        join_batches,
        join_events_per_member: join_events as f64 / options.members as f64,
        steady_s: steady,
        cpu_ms_per_member_per_min: per(cpu * 1000.0),
        redis_cpu_ms_per_member_per_min: redis_cpu.map(|s| per(s * 1000.0)),
        redis_calls_per_member_per_min: per(redis_calls),
        steady_events,
        leave_ms: leave.as_millis() as u64,
        leave_batches,
    })
}

pub fn summary(r: &Report) -> String {
    let redis = match r.redis_cpu_ms_per_member_per_min {
        Some(ms) => format!(", Redis {ms:.3} ms"),
        None => String::new(),
    };
    format!(
        "{} members on {} relay(s){}: listed everywhere in {} ms ({} batches, {:.1} events per \
         member); staying costs {:.3} ms of relay CPU{redis} and {:.3} Redis calls per member \
         per minute ({} events while quiet); gone {} ms after vanishing (TTL {} s, {} batches)",
        r.members,
        r.relays,
        if r.redis {
            " sharing Redis"
        } else {
            ", in memory"
        },
        r.join_ms,
        r.join_batches,
        r.join_events_per_member,
        r.cpu_ms_per_member_per_min,
        r.redis_calls_per_member_per_min,
        r.steady_events,
        r.leave_ms,
        r.ttl_s,
        r.leave_batches,
    )
}
