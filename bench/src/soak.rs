//! `relay-bench soak`: a relay under connection churn for a long while. Clients on all four
//! transports connect, stay a random while, leave and come back with their cursor, as people
//! opening and closing tabs do; a publisher sends steadily. Every `--sample` the tool reads the
//! relay's resident memory and open file descriptors from `/proc`. After the warm-up, both
//! must stay within ±10 % of their first sample after it: a relay that leaked a buffer, a
//! task or a socket per connection would climb through the run. Every client must also have
//! received every acknowledged message once, in order, across all its reconnections.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use protocol::Transport;
use serde::Serialize;
use tokio::sync::watch;

use crate::crowd::{Plan, Shared, Tally, client, finish, publish, tally, wait_ready};
use crate::process::{self, Spawned};

const ROOM: &str = "soak";
/// How far a sample may stray from the first one after the warm-up.
const TOLERANCE: f64 = 0.10;

pub struct Options {
    pub relay_bin: PathBuf,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub sample_every: Duration,
    /// Messages per second from the publisher.
    pub rate: f64,
    /// How long a client stays connected: a random time in this range.
    pub stay: (Duration, Duration),
}

#[derive(Debug, Serialize)]
pub struct Sample {
    pub at_s: u64,
    pub rss_kib: u64,
    pub fds: u64,
    /// Clients connected at that moment.
    pub live: usize,
    /// Connections made since the start.
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub clients: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub stay_ms: (u64, u64),
    pub publish_rate: f64,
    pub samples: Vec<Sample>,
    /// Largest deviation after the warm-up from the first sample after it, as a fraction.
    pub rss_drift: f64,
    pub fds_drift: f64,
    pub connections: usize,
    pub published: usize,
    #[serde(flatten)]
    pub delivery: Tally,
    pub met: bool,
}

fn start_relay(options: &Options) -> anyhow::Result<(Spawned, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(&options.relay_bin)
        .env("RELAY_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("RELAY_REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    Ok((Spawned(child), format!("http://127.0.0.1:{port}")))
}

/// The largest relative distance of `values` from the first of them.
fn drift(values: impl Iterator<Item = u64>) -> f64 {
    let mut values = values.peekable();
    let Some(&base) = values.peek() else {
        return 0.0;
    };
    values
        .map(|v| (v as f64 - base as f64).abs() / (base.max(1) as f64))
        .fold(0.0, f64::max)
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.clients > 0 && options.rate > 0.0, "nothing to do");
    anyhow::ensure!(
        options.warmup < options.duration,
        "the warm-up must end before the run does"
    );
    let (relay, url) = start_relay(options)?;
    let http = reqwest::Client::new();
    wait_ready(&http, &url).await?;

    let origin = Instant::now();
    let shared = Arc::new(Shared::new(options.clients));
    let (stop_clients, stop) = watch::channel(false);
    let (stop_publisher, publisher_stop) = watch::channel(false);
    let publisher = tokio::spawn(publish(
        http.clone(),
        url.clone(),
        ROOM,
        options.rate,
        publisher_stop,
    ));
    let urls = Arc::new(vec![url]);
    let clients: Vec<_> = (0..options.clients)
        .map(|index| {
            let plan = Plan {
                index,
                room: ROOM,
                transport: Transport::ALL[index % Transport::ALL.len()],
                urls: urls.clone(),
                stay: Some(options.stay),
            };
            tokio::spawn(client(plan, shared.clone(), origin, stop.clone()))
        })
        .collect();

    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(options.sample_every);
    while origin.elapsed() < options.duration {
        tick.tick().await;
        let rss_kib = process::sample(relay.id())?.rss_kib;
        let fds = process::open_fds(relay.id())?;
        let sample = Sample {
            at_s: origin.elapsed().as_secs(),
            rss_kib,
            fds,
            live: shared.live.load(Relaxed),
            connections: shared.connections.load(Relaxed),
        };
        eprintln!(
            "soak: {:>4} s  rss {:>7} KiB  fds {:>5}  live {:>5}  connections {:>7}",
            sample.at_s, sample.rss_kib, sample.fds, sample.live, sample.connections
        );
        samples.push(sample);
    }

    let patience = Duration::from_secs(60);
    let (acked, received) = finish(
        &stop_publisher,
        publisher,
        &shared,
        &stop_clients,
        clients,
        patience,
    )
    .await?;
    relay.terminate()?;
    let _ = tokio::task::spawn_blocking(move || drop(relay)).await;

    let warm = options.warmup.as_secs();
    let after_warmup = || samples.iter().filter(move |s| s.at_s >= warm);
    let judged = after_warmup().count();
    let rss_drift = drift(after_warmup().map(|s| s.rss_kib));
    let fds_drift = drift(after_warmup().map(|s| s.fds));
    let tally = tally(&acked, &received);
    Ok(Report {
        mode: "soak",
        clients: options.clients,
        duration_s: options.duration.as_secs(),
        warmup_s: warm,
        stay_ms: (
            options.stay.0.as_millis() as u64,
            options.stay.1.as_millis() as u64,
        ),
        publish_rate: options.rate,
        rss_drift,
        fds_drift,
        connections: shared.connections.load(Relaxed),
        published: acked.len(),
        // Judged only on a run that measured something: several samples after the warm-up,
        // and messages published.
        met: judged >= 3
            && !acked.is_empty()
            && rss_drift <= TOLERANCE
            && fds_drift <= TOLERANCE
            && tally.clients_wrong == 0,
        delivery: tally,
        samples,
    })
}

pub fn summary(r: &Report) -> String {
    format!(
        "soak: {} clients on all four transports for {} s (staying {}–{} ms each time), {} \
         connections, {} published; after {} s of warm-up, resident memory within {:.1} % and \
         descriptors within {:.1} % of their first sample (allowed {:.0} %); lost {}, \
         duplicated {}, reordered {} ({} clients wrong): {}",
        r.clients,
        r.duration_s,
        r.stay_ms.0,
        r.stay_ms.1,
        r.connections,
        r.published,
        r.warmup_s,
        100.0 * r.rss_drift,
        100.0 * r.fds_drift,
        100.0 * TOLERANCE,
        r.delivery.lost,
        r.delivery.duplicated,
        r.delivery.reordered,
        r.delivery.clients_wrong,
        if r.met { "met" } else { "NOT met" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_the_largest_distance_from_the_first_sample() {
        assert_eq!(drift([100, 105, 95, 109].into_iter()), 0.09);
        assert_eq!(drift([100, 120].into_iter()), 0.2);
        assert_eq!(drift(std::iter::empty()), 0.0);
    }
}
