//! `relay-bench storm`: a relay restarts under a crowd. Two relays share Redis; clients on
//! every streaming transport are spread over both and a publisher sends steadily through
//! the second. Relay A gets SIGTERM (it drains, telling each client when to come back) and is
//! started again on its port. The report says how fast the surviving relay admitted the
//! returning clients (per 100 ms, against `RELAY_ACCEPT_RATE` and its burst), how long until
//! every client was back, and what each client received: nothing lost, duplicated or
//! reordered.
//!
//! The clients behave as the page does (see [`crate::crowd`]), and try the other relay after
//! a drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use protocol::Transport;
use serde::Serialize;
use tokio::sync::watch;

use crate::crowd::{Plan, Shared, Tally, client, finish, lock, publish, tally, wait_ready};
use crate::process::Spawned;

const ROOM: &str = "storm";
/// Transports the crowd is spread over, in turn.
const TRANSPORTS: [Transport; 3] = [Transport::Ws, Transport::Sse, Transport::Longpoll];

pub struct Options {
    pub relay_bin: PathBuf,
    pub redis_url: String,
    pub clients: usize,
    pub accept_rate: f64,
    pub drain_window: Duration,
    /// Messages per second from the publisher.
    pub rate: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub clients: usize,
    pub accept_rate: f64,
    pub drain_window_ms: u64,
    pub publish_rate: f64,
    /// New streams the surviving relay opened, per 100 ms, from the SIGTERM until every
    /// client was back.
    pub accepts_per_100ms: Vec<usize>,
    /// The most in any 100 ms, and in any second (the budget is the rate, plus a burst of
    /// as many).
    pub max_accepts_100ms: usize,
    pub max_accepts_1s: usize,
    pub allowed_1s: f64,
    /// Refusals clients were told (1013, 503 `overloaded`).
    pub refusals: usize,
    /// From the SIGTERM until every client was connected again.
    pub back_after_ms: u64,
    /// The bound: clients / rate + window + 5 s.
    pub back_bound_ms: u64,
    pub published: usize,
    #[serde(flatten)]
    pub delivery: Tally,
    pub met: bool,
}

/// A relay process the tool started.
struct Relay {
    child: Spawned,
    port: u16,
}

impl Relay {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_relay(options: &Options, port: u16) -> anyhow::Result<Relay> {
    let child = Command::new(&options.relay_bin)
        .env("RELAY_ADDR", format!("127.0.0.1:{port}"))
        .env("RELAY_REDIS_URL", &options.redis_url)
        .env("RELAY_ACCEPT_RATE", options.accept_rate.to_string())
        .env(
            "RELAY_DRAIN_WINDOW",
            format!("{}ms", options.drain_window.as_millis()),
        )
        .env("RELAY_MAX_CONNECTIONS", "30000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Relay {
        child: Spawned(child),
        port,
    })
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.clients > 0 && options.rate > 0.0, "nothing to do");
    let http = reqwest::Client::new();
    let mut a = start_relay(options, free_port()?)?;
    let b = start_relay(options, free_port()?)?;
    let urls = Arc::new(vec![a.url(), b.url()]);
    for url in urls.iter() {
        wait_ready(&http, url).await?;
    }
    let origin = Instant::now();
    let shared = Arc::new(Shared::new(options.clients));
    let (stop_tx, stop) = watch::channel(false);
    let (stop_publisher, publisher_stop) = watch::channel(false);

    let publisher = tokio::spawn(publish(
        http.clone(),
        urls[1].clone(),
        ROOM,
        options.rate,
        publisher_stop,
    ));
    let clients: Vec<_> = (0..options.clients)
        .map(|i| {
            let plan = Plan {
                index: i,
                room: ROOM,
                transport: TRANSPORTS[i % TRANSPORTS.len()],
                urls: urls.clone(),
                stay: None,
            };
            tokio::spawn(client(plan, shared.clone(), origin, stop.clone()))
        })
        .collect();

    // Everyone connected (admission paces this too), and a moment of steady traffic.
    let joining = Duration::from_secs_f64(options.clients as f64 / options.accept_rate) * 2
        + Duration::from_secs(30);
    wait_until(joining, || shared.live.load(Relaxed) == options.clients).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Instant::now();
    let killed_ms = killed.duration_since(origin).as_millis() as u64;
    a.child.terminate()?;
    // A drains, exits, and is started again on its port.
    let port = a.port;
    let exited = tokio::task::spawn_blocking(move || a.child.0.wait().map(|_| ())).await?;
    exited?;
    a = start_relay(options, port)?;
    wait_ready(&http, &a.url()).await?;
    let bound = Duration::from_secs_f64(options.clients as f64 / options.accept_rate)
        + options.drain_window
        + Duration::from_secs(5);
    wait_until(bound * 3, || shared.live.load(Relaxed) == options.clients).await?;
    let back = killed.elapsed();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let patience = Duration::from_secs(30);
    let (acked, received) = finish(
        &stop_publisher,
        publisher,
        &shared,
        &stop_tx,
        clients,
        patience,
    )
    .await?;
    for relay in [&a, &b] {
        let _ = relay.child.terminate();
    }
    for mut relay in [a, b] {
        let _ = tokio::task::spawn_blocking(move || relay.child.0.wait()).await;
    }

    // B's openings from the SIGTERM until everyone was back.
    let until_ms = killed_ms + back.as_millis() as u64;
    let mut buckets = vec![0usize; ((until_ms - killed_ms) / 100 + 1) as usize];
    for &(at, relay) in lock(&shared.accepts).iter() {
        if relay == 1 && (killed_ms..=until_ms).contains(&at) {
            buckets[((at - killed_ms) / 100) as usize] += 1;
        }
    }
    let max_1s = buckets
        .windows(10.min(buckets.len()))
        .map(|w| w.iter().sum::<usize>())
        .max()
        .unwrap_or(0);

    let tally = tally(&acked, &received);
    let allowed_1s = options.accept_rate * 2.0;
    let back_ms = back.as_millis() as u64;
    let bound_ms = bound.as_millis() as u64;
    Ok(Report {
        mode: "storm",
        clients: options.clients,
        accept_rate: options.accept_rate,
        drain_window_ms: options.drain_window.as_millis() as u64,
        publish_rate: options.rate,
        max_accepts_100ms: buckets.iter().copied().max().unwrap_or(0),
        max_accepts_1s: max_1s,
        accepts_per_100ms: buckets,
        allowed_1s,
        refusals: shared.refusals.load(Relaxed),
        back_after_ms: back_ms,
        back_bound_ms: bound_ms,
        published: acked.len(),
        met: (max_1s as f64) <= allowed_1s && back_ms <= bound_ms && tally.clients_wrong == 0,
        delivery: tally,
    })
}

pub fn summary(r: &Report) -> String {
    format!(
        "storm: {} clients, accept rate {}/s, drain window {} ms: the surviving relay opened at \
         most {} streams in 100 ms and {} in a second (allowed {}); every client back {} ms \
         after SIGTERM (bound {} ms); {} refusals told; {} published, lost {}, duplicated {}, \
         reordered {} ({} clients wrong): {}",
        r.clients,
        r.accept_rate,
        r.drain_window_ms,
        r.max_accepts_100ms,
        r.max_accepts_1s,
        r.allowed_1s,
        r.back_after_ms,
        r.back_bound_ms,
        r.refusals,
        r.published,
        r.delivery.lost,
        r.delivery.duplicated,
        r.delivery.reordered,
        r.delivery.clients_wrong,
        if r.met { "met" } else { "NOT met" }
    )
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
