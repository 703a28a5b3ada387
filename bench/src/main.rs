//! `relay-bench`: load and measure the chat relay (or the tutorial's Node server) on this
//! machine. Every mode is bounded in time and refuses anything but a loopback address.
//! Results: one JSON line per run on stdout, a human summary on stderr.

mod clients;
mod crowd;
mod fanout;
mod fill;
mod floor;
mod idle;
mod presence;
mod process;
mod ramp;
mod soak;
mod stats;
mod storm;
mod wt;

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::clients::{Server, Transport};
use crate::fanout::Load;

#[derive(Parser)]
#[command(name = "relay-bench", version, about = "Load tool for the chat relay")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Clone)]
struct Target {
    /// Server address; loopback only.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// The server is the tutorial's Node server (WebSocket only, raw text frames on `/`).
    #[arg(long)]
    peer: bool,
    /// The server is `relay-bench floor` (it speaks as the peer does).
    #[arg(long)]
    floor: bool,
    #[arg(long, default_value = "bench")]
    room: String,
    /// The server's pid, to report its CPU time and memory; repeat it for several processes
    /// (relays, Redis), whose figures are then added up.
    #[arg(long)]
    pid: Vec<u32>,
    /// Where senders connect, when not `--url`: another relay sharing the room through Redis.
    #[arg(long)]
    send_url: Option<String>,
    /// Delay between short polls.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
}

#[derive(Args, Clone)]
struct LoadArgs {
    #[arg(long, default_value = "ws")]
    transport: Transport,
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Threads the receivers are spread over (each with its own runtime); the senders always
    /// have one more of their own.
    #[arg(long, default_value_t = 1)]
    receiver_threads: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Message text size in bytes.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds measured (after the warm-up); at most 300.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Subcommand)]
enum Mode {
    /// N receivers, S senders, a total rate: throughput, latency, loss, server CPU.
    Fanout {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// K idle connections: server memory per connection (needs --pid).
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "ws")]
        transport: Transport,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to let the server settle before measuring.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
    },
    /// Every room filled past its history budget with the costliest texts: the server's
    /// worst-case memory for retained messages (needs --pid).
    Fill {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1000)]
        rooms: usize,
        /// Messages published to each room (enough to pass RELAY_HISTORY_BYTES).
        #[arg(long, default_value_t = 40)]
        messages: usize,
        /// Text size in bytes (the relay's limit by default).
        #[arg(long, default_value_t = protocol::limits::DEFAULT_MAX_TEXT_BYTES)]
        text_bytes: usize,
    },
    /// The floor program: a minimal one-thread WebSocket fan-out (one `write` of the same
    /// pre-encoded frame per socket per message), to measure what a delivery physically costs
    /// on this machine. Load it with `--floor`.
    Floor {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: std::net::SocketAddr,
    },
    /// A relay restarts under a crowd: two relays on Redis (started here), clients on every
    /// streaming transport, a steady publisher; relay A gets SIGTERM and comes back. Reports
    /// the surviving relay's admissions per 100 ms, the time until every client is back, and
    /// loss, duplicates and order per client.
    Storm {
        /// The relay binary to start (twice).
        #[arg(long, default_value = "target/release/relay")]
        relay_bin: std::path::PathBuf,
        /// The Redis both relays share (loopback).
        #[arg(long)]
        redis_url: String,
        #[arg(long, default_value_t = 2000)]
        clients: usize,
        /// `RELAY_ACCEPT_RATE` for both relays (low enough that the returning crowd meets
        /// it: the point of the run).
        #[arg(long, default_value_t = 100.0)]
        accept_rate: f64,
        /// `RELAY_DRAIN_WINDOW` for both relays, in seconds.
        #[arg(long, default_value_t = 3.0)]
        drain_window: f64,
        /// Messages per second from the publisher.
        #[arg(long, default_value_t = 5.0)]
        rate: f64,
    },
    /// Connection churn on all four transports for a long while (one relay, in memory): the
    /// relay's resident memory and open descriptors sampled throughout must stay within
    /// ±10 % after the warm-up, and nothing may be lost, duplicated or reordered.
    Soak {
        /// The relay binary to start.
        #[arg(long, default_value = "target/release/relay")]
        relay_bin: std::path::PathBuf,
        #[arg(long, default_value_t = 300)]
        clients: usize,
        /// Length of the run, in seconds.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// Seconds before the samples that are judged.
        #[arg(long, default_value_t = 120)]
        warmup: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10)]
        sample: u64,
        /// Messages per second from the publisher.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Shortest and longest stay of a client's connection, in seconds.
        #[arg(long, default_value_t = 1.0)]
        stay_min: f64,
        #[arg(long, default_value_t = 10.0)]
        stay_max: f64,
    },
    /// What presence costs: N members join one room at once, stay, then vanish (relays
    /// started here; two sharing Redis with --redis-url, else one in memory).
    Presence {
        /// The relay binary to start.
        #[arg(long, default_value = "target/release/relay")]
        relay_bin: std::path::PathBuf,
        /// A Redis (loopback) for two relays to share.
        #[arg(long)]
        redis_url: Option<String>,
        /// Redis's pid, to count its CPU time too.
        #[arg(long)]
        redis_pid: Option<u32>,
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Seconds the members stay while their cost is measured.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// `RELAY_PRESENCE_TTL` of the relays, in seconds.
        #[arg(long, default_value_t = 5.0)]
        ttl: f64,
    },
    /// Fan-out at rising rates until p99 passes a threshold: the highest sustained rate.
    Ramp {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        load: LoadArgs,
        /// Each step multiplies the rate by this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        #[arg(long, default_value_t = 10)]
        max_steps: usize,
        /// The p99 latency (ms) a step must stay under to count as sustained.
        #[arg(long, default_value_t = 100.0)]
        max_p99_ms: f64,
    },
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (0.0..=300.0).contains(&value),
        "{what} must be between 0 and 300 s"
    );
    Ok(Duration::from_secs_f64(value))
}

impl Target {
    fn server(&self) -> anyhow::Result<Server> {
        let http = loopback(&self.url)?;
        let send_http = match &self.send_url {
            Some(url) => loopback(url)?,
            None => http.clone(),
        };
        Ok(Server {
            http,
            send_http,
            room: self.room.clone(),
            peer: self.peer || self.floor,
            name: if self.floor {
                "floor"
            } else if self.peer {
                "node-peer"
            } else {
                "relay"
            },
            poll_interval: Duration::from_millis(self.poll_interval_ms),
        })
    }
}

/// `http://host:port` of a URL on this machine.
fn loopback(url: &str) -> anyhow::Result<String> {
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .with_context(|| format!("{url:?} must look like http://127.0.0.1:3000"))?;
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    anyhow::ensure!(
        name == "localhost" || name == "[::1]" || name.starts_with("127."),
        "refusing {name}: this tool only loads servers on this machine (loopback)"
    );
    Ok(format!("http://{host}"))
}

impl LoadArgs {
    fn load(&self) -> anyhow::Result<Load> {
        Ok(Load {
            transport: self.transport,
            receivers: self.receivers,
            senders: self.senders.max(1),
            rate: self.rate,
            payload: self.payload,
            threads: self.receiver_threads,
            warmup: seconds(self.warmup, "--warmup")?,
            duration: seconds(self.duration, "--duration")?,
        })
    }
}

fn emit(json: &impl serde::Serialize, summary: String) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(json)?);
    eprintln!("{summary}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mode = Cli::parse().mode;
    if let Mode::Floor { addr } = mode {
        return floor::run(addr);
    }
    // The coordinating thread; receivers and senders get threads of their own (see
    // `fanout::run`), so that the tool takes a known share of the machine's cores and its
    // own CPU per delivery can be reported next to the server's.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(measure(mode))
}

async fn measure(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Floor { .. } => unreachable!("served above"),
        Mode::Fanout { target, load } => {
            let report = fanout::run(&target.server()?, &load.load()?, &target.pid).await?;
            emit(&report, fanout::summary(&report))
        }
        Mode::Idle {
            target,
            transport,
            connections,
            settle,
        } => {
            anyhow::ensure!(
                !target.pid.is_empty(),
                "idle mode measures the server: give --pid"
            );
            let pid = target.pid.clone();
            let report = idle::run(
                &target.server()?,
                transport,
                connections,
                pid,
                seconds(settle, "--settle")?,
            )
            .await?;
            emit(&report, idle::summary(&report))
        }
        Mode::Fill {
            target,
            rooms,
            messages,
            text_bytes,
        } => {
            anyhow::ensure!(
                !target.pid.is_empty(),
                "fill mode measures the server: give --pid"
            );
            let pid = target.pid.clone();
            let report = fill::run(&target.server()?, rooms, messages, text_bytes, pid).await?;
            emit(&report, fill::summary(&report))
        }
        Mode::Storm {
            relay_bin,
            redis_url,
            clients,
            accept_rate,
            drain_window,
            rate,
        } => {
            loopback(&redis_url.replacen("redis://", "http://", 1))?;
            anyhow::ensure!(accept_rate > 0.0, "--accept-rate must be positive");
            let report = storm::run(&storm::Options {
                relay_bin,
                redis_url,
                clients,
                accept_rate,
                drain_window: seconds(drain_window, "--drain-window")?,
                rate,
            })
            .await?;
            emit(&report, storm::summary(&report))
        }
        Mode::Soak {
            relay_bin,
            clients,
            duration,
            warmup,
            sample,
            rate,
            stay_min,
            stay_max,
        } => {
            anyhow::ensure!(sample > 0, "--sample must be positive");
            anyhow::ensure!(
                stay_min <= stay_max,
                "--stay-min must not exceed --stay-max"
            );
            let report = soak::run(&soak::Options {
                relay_bin,
                clients,
                duration: Duration::from_secs(duration),
                warmup: Duration::from_secs(warmup),
                sample_every: Duration::from_secs(sample),
                rate,
                stay: (
                    seconds(stay_min, "--stay-min")?,
                    seconds(stay_max, "--stay-max")?,
                ),
            })
            .await?;
            emit(&report, soak::summary(&report))
        }
        Mode::Presence {
            relay_bin,
            redis_url,
            redis_pid,
            members,
            duration,
            ttl,
        } => {
            if let Some(url) = &redis_url {
                loopback(&url.replacen("redis://", "http://", 1))?;
            }
            let report = presence::run(&presence::Options {
                relay_bin,
                redis_url,
                redis_pid,
                members,
                duration: seconds(duration, "--duration")?,
                ttl: seconds(ttl, "--ttl")?,
            })
            .await?;
            emit(&report, presence::summary(&report))
        }
        Mode::Ramp {
            target,
            load,
            factor,
            max_steps,
            max_p99_ms,
        } => {
            anyhow::ensure!(factor > 1.0, "--factor must be above 1");
            let report = ramp::run(
                &target.server()?,
                load.load()?,
                factor,
                max_steps.min(20),
                max_p99_ms,
                &target.pid,
            )
            .await?;
            emit(&report, ramp::summary(&report))
        }
    }
}
