//! `relay-bench storm`: a relay restarts under a crowd. Two relays share Redis; clients on
//! every streaming transport are spread over both and a publisher sends steadily through
//! the second. Relay A gets SIGTERM (it drains, telling each client when to come back) and is
//! started again on its port. The report says how fast the surviving relay admitted the
//! returning clients (per 100 ms, against `RELAY_ACCEPT_RATE` and its burst), how long until
//! every client was back, and what each client received: nothing lost, duplicated or
//! reordered.
//!
//! The clients behave as the page does: they resume with their cursor, obey the relay's
//! advice (close 1012/1013 reasons, `reconnect` events, `retry_after_ms`), otherwise back off
//! with full jitter, and try the other relay after a drop.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::api::{Endpoint, IDEMPOTENCY_KEY};
use protocol::{ErrorBody, PollResponse, RetryAdvice, ServerEvent, Transport};
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as Frame;

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
    pub lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
    /// Clients that missed, repeated or reordered anything.
    pub clients_wrong: usize,
    pub met: bool,
}

/// What every client shares with the coordinator.
#[derive(Default)]
struct Shared {
    /// Clients with a live connection (a welcome, or a poll answered).
    live: AtomicUsize,
    /// Streams opened: (ms since start, relay index).
    accepts: Mutex<Vec<(u64, usize)>>,
    refusals: AtomicUsize,
}

/// A relay process the tool started.
struct Relay {
    child: Child,
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
    Ok(Relay { child, port })
}

async fn wait_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = http.get(format!("{url}/readyz")).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{url} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigterm(child: &Child) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    Ok(())
}

pub async fn run(options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.clients > 0 && options.rate > 0.0, "nothing to do");
    let http = reqwest::Client::new();
    let mut a = start_relay(options, free_port()?)?;
    let b = start_relay(options, free_port()?)?;
    let urls = Arc::new([a.url(), b.url()]);
    for url in urls.iter() {
        wait_ready(&http, url).await?;
    }
    let origin = Instant::now();
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop) = watch::channel(false);

    let publisher = tokio::spawn(publish(
        http.clone(),
        urls[1].clone(),
        options.rate,
        stop.clone(),
    ));
    let clients: Vec<_> = (0..options.clients)
        .map(|i| {
            tokio::spawn(client(
                i,
                TRANSPORTS[i % TRANSPORTS.len()],
                urls.clone(),
                shared.clone(),
                origin,
                stop.clone(),
            ))
        })
        .collect();

    // Everyone connected (admission paces this too), and a moment of steady traffic.
    let joining = Duration::from_secs_f64(options.clients as f64 / options.accept_rate) * 2
        + Duration::from_secs(30);
    wait_until(joining, || shared.live.load(Relaxed) == options.clients).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let killed = Instant::now();
    let killed_ms = killed.duration_since(origin).as_millis() as u64;
    sigterm(&a.child)?;
    // A drains, exits, and is started again on its port.
    let port = a.port;
    let exited = tokio::task::spawn_blocking(move || a.child.wait().map(|_| ())).await?;
    exited?;
    a = start_relay(options, port)?;
    wait_ready(&http, &a.url()).await?;
    let bound = Duration::from_secs_f64(options.clients as f64 / options.accept_rate)
        + options.drain_window
        + Duration::from_secs(5);
    wait_until(bound * 3, || shared.live.load(Relaxed) == options.clients).await?;
    let back = killed.elapsed();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let acked = publisher.await??;
    let mut received = Vec::new();
    for client in clients {
        received.push(client.await?);
    }
    for relay in [&a, &b] {
        let _ = sigterm(&relay.child);
    }
    for mut relay in [a, b] {
        let _ = tokio::task::spawn_blocking(move || relay.child.wait()).await;
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

    let acked_set: Vec<u64> = acked;
    let (mut lost, mut duplicated, mut reordered, mut wrong) = (0, 0, 0, 0);
    for got in &received {
        let from = got.first_after.unwrap_or(u64::MAX);
        let expected: Vec<u64> = acked_set.iter().copied().filter(|id| *id > from).collect();
        let unique: HashSet<u64> = got.ids.iter().copied().collect();
        let missing = expected.iter().filter(|id| !unique.contains(id)).count();
        let dup = got.ids.len() - unique.len();
        let back_steps = got.ids.windows(2).filter(|w| w[1] < w[0]).count();
        lost += missing;
        duplicated += dup;
        reordered += back_steps;
        if missing + dup + back_steps > 0 {
            wrong += 1;
        }
    }
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
        published: acked_set.len(),
        lost,
        duplicated,
        reordered,
        clients_wrong: wrong,
        met: (max_1s as f64) <= allowed_1s && back_ms <= bound_ms && wrong == 0,
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
        r.lost,
        r.duplicated,
        r.reordered,
        r.clients_wrong,
        if r.met { "met" } else { "NOT met" }
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Publishes `rate` messages a second through `url` until stopped, each under its own
/// idempotency key and retried with it until acknowledged; returns the acknowledged ids.
async fn publish(
    http: reqwest::Client,
    url: String,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u64>> {
    let mut acked = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let path = Endpoint::Messages.path(ROOM);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let key = format!("storm-{n}");
        let body = serde_json::json!({"from": "publisher", "text": n.to_string()});
        loop {
            let answer = http
                .post(format!("{url}{path}"))
                .header(IDEMPOTENCY_KEY, &key)
                .json(&body)
                .send()
                .await;
            if let Ok(answer) = answer
                && answer.status().is_success()
                && let Ok(published) = answer.json::<protocol::PublishResponse>().await
            {
                acked.push(published.id);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(acked)
}

/// What one client received.
struct Received {
    /// The room's head at its first welcome: it is owed every message after it.
    first_after: Option<u64>,
    ids: Vec<u64>,
}

/// A client's place in the room, carried across its connections.
struct Cursor {
    after: Option<u64>,
    epoch: Option<String>,
    received: Received,
}

impl Cursor {
    fn query(&self) -> String {
        match (&self.after, &self.epoch) {
            (Some(after), Some(epoch)) => format!("after={after}&epoch={epoch}"),
            _ => "limit=0".to_owned(),
        }
    }

    fn welcome(&mut self, epoch: &str, last_id: u64) {
        if self.epoch.is_none() {
            self.epoch = Some(epoch.to_owned());
            self.after = Some(last_id);
            self.received.first_after = Some(last_id);
        }
    }

    fn message(&mut self, id: u64) {
        self.received.ids.push(id);
        self.after = Some(self.after.map_or(id, |a| a.max(id)));
    }
}

/// How one connection ended: what the relay advised, and whether it had been live.
struct Ended {
    advice_ms: Option<u64>,
    live: bool,
}

async fn client(
    index: usize,
    transport: Transport,
    urls: Arc<[String; 2]>,
    shared: Arc<Shared>,
    origin: Instant,
    stop: watch::Receiver<bool>,
) -> Received {
    let mut relay = index % 2;
    let mut cursor = Cursor {
        after: None,
        epoch: None,
        received: Received {
            first_after: None,
            ids: Vec::new(),
        },
    };
    let http = reqwest::Client::new();
    let mut failures = 0u32;
    while !*stop.borrow() {
        let session = Session {
            index,
            relay,
            url: &urls[relay],
            shared: &shared,
            origin,
        };
        let mut stopping = stop.clone();
        let ended = tokio::select! {
            ended = session.run(transport, &http, &mut cursor) => ended,
            _ = stopping.wait_for(|s| *s) => break,
        };
        if ended.live {
            shared.live.fetch_sub(1, Relaxed);
            failures = 0;
        }
        // As the page: the advice is a floor; the first retry is full jitter in 0–1 s, later
        // ones back off.
        let jitter = rand_unit(index, failures);
        let own = if failures == 0 {
            1000.0 * jitter
        } else {
            (500.0 * 2f64.powi(failures.min(5) as i32)).min(10_000.0) * (0.5 + 0.5 * jitter)
        };
        failures += 1;
        let wait = (own as u64).max(ended.advice_ms.unwrap_or(0));
        let mut stopping = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
        relay = 1 - relay;
    }
    cursor.received
}

/// A cheap, well-spread number in [0, 1) per client and attempt (no RNG dependency).
fn rand_unit(index: usize, attempt: u32) -> f64 {
    let mut x = (index as u64) << 32 | u64::from(attempt);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

struct Session<'a> {
    index: usize,
    relay: usize,
    url: &'a str,
    shared: &'a Shared,
    origin: Instant,
}

impl Session<'_> {
    async fn run(
        &self,
        transport: Transport,
        http: &reqwest::Client,
        cursor: &mut Cursor,
    ) -> Ended {
        match transport {
            Transport::Ws => self.ws(cursor).await,
            Transport::Sse => self.sse(http, cursor).await,
            _ => self.poll(http, cursor).await,
        }
    }

    fn opened(&self, stream: bool) {
        self.shared.live.fetch_add(1, Relaxed);
        if stream {
            let at = self.origin.elapsed().as_millis() as u64;
            lock(&self.shared.accepts).push((at, self.relay));
        }
    }

    fn refused(&self, advice: Option<u64>) -> Ended {
        self.shared.refusals.fetch_add(1, Relaxed);
        Ended {
            advice_ms: advice,
            live: false,
        }
    }

    /// Handles one event; `Some` when the stream is to end with that advice.
    fn event(&self, json: &str, cursor: &mut Cursor, live: &mut bool) -> Option<u64> {
        match serde_json::from_str::<ServerEvent>(json) {
            Ok(ServerEvent::Welcome(welcome)) => {
                cursor.welcome(&welcome.epoch, welcome.last_id);
                if !*live {
                    *live = true;
                    self.opened(true);
                }
            }
            Ok(ServerEvent::Message(message)) => cursor.message(message.id),
            Ok(ServerEvent::Reconnect(advice)) => return Some(advice.retry_after_ms),
            _ => {}
        }
        None
    }

    async fn ws(&self, cursor: &mut Cursor) -> Ended {
        let base = self.url.replacen("http://", "ws://", 1);
        let url = format!(
            "{base}{}?name=c{}&{}",
            Endpoint::Ws.path(ROOM),
            self.index,
            cursor.query()
        );
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await else {
            return Ended {
                advice_ms: None,
                live: false,
            };
        };
        let mut live = false;
        while let Some(Ok(frame)) = socket.next().await {
            match frame {
                Frame::Text(text) => {
                    self.event(text.as_str(), cursor, &mut live);
                }
                Frame::Close(close) => {
                    let (code, reason) = close
                        .map(|c| (u16::from(c.code), c.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    let advice = serde_json::from_str::<RetryAdvice>(&reason)
                        .ok()
                        .map(|a| a.retry_after_ms);
                    if code == protocol::close::TRY_AGAIN && !live {
                        return self.refused(advice);
                    }
                    return Ended {
                        advice_ms: advice,
                        live,
                    };
                }
                _ => {}
            }
        }
        Ended {
            advice_ms: None,
            live,
        }
    }

    async fn sse(&self, http: &reqwest::Client, cursor: &mut Cursor) -> Ended {
        let url = format!(
            "{}{}?name=c{}&{}",
            self.url,
            Endpoint::Events.path(ROOM),
            self.index,
            cursor.query()
        );
        let Ok(answer) = http.get(url).send().await else {
            return Ended {
                advice_ms: None,
                live: false,
            };
        };
        if !answer.status().is_success() {
            let advice = answer
                .json::<ServerEvent>()
                .await
                .ok()
                .and_then(|e| match e {
                    ServerEvent::Error(ErrorBody { retry_after_ms, .. }) => retry_after_ms,
                    _ => None,
                });
            return self.refused(advice);
        }
        let mut live = false;
        let mut advice = None;
        let mut buffer = String::new();
        let mut body = answer.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    advice = advice.or(self.event(data, cursor, &mut live));
                }
            }
        }
        Ended {
            advice_ms: advice,
            live,
        }
    }

    async fn poll(&self, http: &reqwest::Client, cursor: &mut Cursor) -> Ended {
        let mut live = false;
        loop {
            let wait = if cursor.epoch.is_some() { 25 } else { 0 };
            let url = format!(
                "{}{}?wait={wait}&{}",
                self.url,
                Endpoint::Messages.path(ROOM),
                cursor.query()
            );
            let Ok(answer) = http.get(url).send().await else {
                return Ended {
                    advice_ms: None,
                    live,
                };
            };
            if !answer.status().is_success() {
                return Ended {
                    advice_ms: None,
                    live,
                };
            }
            let Ok(answer) = answer.json::<PollResponse>().await else {
                return Ended {
                    advice_ms: None,
                    live,
                };
            };
            cursor.welcome(&answer.epoch, answer.last_id);
            if !live {
                live = true;
                self.opened(false);
            }
            for message in &answer.messages {
                cursor.message(message.id);
            }
            cursor.after = Some(answer.last_id.max(cursor.after.unwrap_or(0)));
            if let Some(ms) = answer.retry_after_ms {
                return Ended {
                    advice_ms: Some(ms),
                    live,
                };
            }
        }
    }
}
