//! Clients that behave like the page, for the crowd tools (`storm`, `soak`): each resumes with
//! its cursor, obeys the relay's advice (close 1012/1013 reasons, `reconnect` events,
//! `retry_after_ms`), otherwise backs off with full jitter, and records every message id it
//! receives so that the tool can count what was lost, duplicated or reordered. A publisher
//! sends under idempotency keys and repeats each text until it is acknowledged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::api::{Endpoint, IDEMPOTENCY_KEY};
use protocol::{ErrorBody, PollResponse, RetryAdvice, ServerEvent, Transport};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as Frame;

/// What every client shares with the coordinator.
pub struct Shared {
    /// Clients with a live connection (a welcome, or a poll answered).
    pub live: AtomicUsize,
    /// Streams opened: (ms since start, relay index).
    pub accepts: Mutex<Vec<(u64, usize)>>,
    pub refusals: AtomicUsize,
    /// Connections that went live (a welcome, or a first poll answered).
    pub connections: AtomicUsize,
    /// The newest id each client has received.
    positions: Vec<AtomicU64>,
}

impl Shared {
    pub fn new(clients: usize) -> Shared {
        Shared {
            live: AtomicUsize::new(0),
            accepts: Mutex::new(Vec::new()),
            refusals: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            positions: (0..clients).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Waits until every client has received `last` (the newest acknowledged id).
    pub async fn caught_up(&self, last: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while self.positions.iter().any(|p| p.load(Relaxed) < last) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "clients did not receive id {last} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn received(&self, index: usize, id: u64) {
        self.positions[index].fetch_max(id, Relaxed);
    }
}

/// Waits (30 s at most) until the relay at `url` answers `/readyz` with 200.
pub async fn wait_ready(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
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

/// Ends a crowd run: stops the publisher, waits (within `patience`) until every client has the
/// last acknowledged message, so that what is missing afterwards is lost rather than late,
/// then stops the clients. Returns the acknowledged ids and what each client received.
pub async fn finish(
    stop_publisher: &watch::Sender<bool>,
    publisher: tokio::task::JoinHandle<anyhow::Result<Vec<u64>>>,
    shared: &Shared,
    stop_clients: &watch::Sender<bool>,
    clients: Vec<tokio::task::JoinHandle<Received>>,
    patience: Duration,
) -> anyhow::Result<(Vec<u64>, Vec<Received>)> {
    let _ = stop_publisher.send(true);
    let acked = publisher.await??;
    shared
        .caught_up(acked.last().copied().unwrap_or(0), patience)
        .await?;
    let _ = stop_clients.send(true);
    let mut received = Vec::new();
    for client in clients {
        received.push(client.await?);
    }
    Ok((acked, received))
}

/// What the clients received, against what was acknowledged (flattened into the reports).
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
    /// Clients that missed, repeated or reordered anything.
    pub clients_wrong: usize,
}

/// Each client is owed every acknowledged id after the room's head at its first welcome,
/// once, in order.
pub fn tally(acked: &[u64], received: &[Received]) -> Tally {
    let mut tally = Tally::default();
    for got in received {
        let from = got.first_after.unwrap_or(u64::MAX);
        let unique: HashSet<u64> = got.ids.iter().copied().collect();
        let missing = acked
            .iter()
            .filter(|id| **id > from && !unique.contains(id))
            .count();
        let duplicated = got.ids.len() - unique.len();
        let reordered = got.ids.windows(2).filter(|w| w[1] < w[0]).count();
        tally.lost += missing;
        tally.duplicated += duplicated;
        tally.reordered += reordered;
        if missing + duplicated + reordered > 0 {
            tally.clients_wrong += 1;
        }
    }
    tally
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes `rate` messages a second through `url` until stopped, each under its own
/// idempotency key and retried with it until acknowledged; returns the acknowledged ids.
pub async fn publish(
    http: reqwest::Client,
    url: String,
    room: &'static str,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<u64>> {
    let mut acked = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let path = Endpoint::Messages.path(room);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let key = format!("{room}-{n}");
        let body = serde_json::json!({"from": "publisher", "text": n.to_string()});
        // A relay that stops acknowledging ends the run with an error, not a hang.
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            anyhow::ensure!(
                Instant::now() < give_up,
                "message {n} was not acknowledged within 60 s"
            );
            let answer = http
                .post(format!("{url}{path}"))
                .header(IDEMPOTENCY_KEY, &key)
                .timeout(Duration::from_secs(10))
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
pub struct Received {
    /// The room's head at its first welcome: it is owed every message after it.
    pub first_after: Option<u64>,
    pub ids: Vec<u64>,
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

/// Where and how a client connects.
pub struct Plan {
    pub index: usize,
    pub room: &'static str,
    pub transport: Transport,
    /// The relays it may use: it starts on `index % len` and moves to the next after a drop.
    pub urls: Arc<Vec<String>>,
    /// When set, each connection is closed by the client after a time in this range (churn);
    /// otherwise connections last until the relay ends them.
    pub stay: Option<(Duration, Duration)>,
}

/// Connects, and reconnects after every end, until `stop`; returns what it received.
pub async fn client(
    plan: Plan,
    shared: Arc<Shared>,
    origin: Instant,
    stop: watch::Receiver<bool>,
) -> Received {
    let index = plan.index;
    let mut relay = index % plan.urls.len();
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
    let mut round = 0u32;
    while !*stop.borrow() {
        let went_live = AtomicBool::new(false);
        let session = Session {
            index,
            went_live: &went_live,
            room: plan.room,
            relay,
            url: &plan.urls[relay],
            shared: &shared,
            origin,
        };
        let mut stopping = stop.clone();
        let stay = plan.stay.map(|(least, most)| {
            least + (most.saturating_sub(least)).mul_f64(rand_unit(index, round | 1 << 31))
        });
        round += 1;
        let run = session.run(plan.transport, &http, &mut cursor);
        let ended = tokio::select! {
            ended = run => Some(ended),
            () = sleep_or_forever(stay) => None,
            _ = stopping.wait_for(|s| *s) => break,
        };
        let Some(ended) = ended else {
            // The client left on its own: it comes back soon, as a person reopening the tab.
            if went_live.load(Relaxed) {
                shared.live.fetch_sub(1, Relaxed);
            }
            failures = 0;
            let mut stopping = stop.clone();
            let pause = Duration::from_millis((500.0 * rand_unit(index, round)) as u64);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
            continue;
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
        relay = (relay + 1) % plan.urls.len();
    }
    cursor.received
}

async fn sleep_or_forever(stay: Option<Duration>) {
    match stay {
        Some(stay) => tokio::time::sleep(stay).await,
        None => std::future::pending().await,
    }
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
    /// Set once this connection went live (its end then takes it off `Shared::live`).
    went_live: &'a AtomicBool,
    room: &'static str,
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
            Transport::Longpoll => self.poll(http, cursor, true).await,
            Transport::Shortpoll => self.poll(http, cursor, false).await,
            Transport::Stream => self.stream(http, cursor).await,
            Transport::WebTransport => self.webtransport(http, cursor).await,
        }
    }

    fn opened(&self, stream: bool) {
        self.went_live.store(true, Relaxed);
        self.shared.live.fetch_add(1, Relaxed);
        self.shared.connections.fetch_add(1, Relaxed);
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
            Ok(ServerEvent::Message(message)) => {
                cursor.message(message.id);
                self.shared.received(self.index, message.id);
            }
            Ok(ServerEvent::Reconnect(advice)) => return Some(advice.retry_after_ms),
            _ => {}
        }
        None
    }

    async fn ws(&self, cursor: &mut Cursor) -> Ended {
        let base = self.url.replacen("http://", "ws://", 1);
        let url = format!(
            "{base}{}?name=c{}&{}",
            Endpoint::Ws.path(self.room),
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

    /// Opens an HTTP stream (SSE, HTTP streaming) at `endpoint`; how it ended instead, when
    /// it could not open or was refused.
    async fn open_http(
        &self,
        http: &reqwest::Client,
        endpoint: Endpoint,
        cursor: &Cursor,
    ) -> Result<reqwest::Response, Ended> {
        let url = format!(
            "{}{}?name=c{}&{}",
            self.url,
            endpoint.path(self.room),
            self.index,
            cursor.query()
        );
        let Ok(answer) = http.get(url).send().await else {
            return Err(Ended {
                advice_ms: None,
                live: false,
            });
        };
        if !answer.status().is_success() {
            let advice = match answer.json::<ServerEvent>().await {
                Ok(ServerEvent::Error(ErrorBody { retry_after_ms, .. })) => retry_after_ms,
                _ => None,
            };
            return Err(self.refused(advice));
        }
        Ok(answer)
    }

    async fn sse(&self, http: &reqwest::Client, cursor: &mut Cursor) -> Ended {
        let answer = match self.open_http(http, Endpoint::Events, cursor).await {
            Ok(answer) => answer,
            Err(ended) => return ended,
        };
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

    async fn stream(&self, http: &reqwest::Client, cursor: &mut Cursor) -> Ended {
        let answer = match self.open_http(http, Endpoint::Stream, cursor).await {
            Ok(answer) => answer,
            Err(ended) => return ended,
        };
        let chunks = answer
            .bytes_stream()
            .map(|chunk| chunk.map_err(anyhow::Error::from));
        self.lines(Box::pin(chunks), cursor).await
    }

    async fn webtransport(&self, http: &reqwest::Client, cursor: &mut Cursor) -> Ended {
        let query = format!("name=c{}&{}", self.index, cursor.query());
        let Ok((_session, chunks)) = crate::wt::open(http, self.url, self.room, &query).await
        else {
            return Ended {
                advice_ms: None,
                live: false,
            };
        };
        self.lines(chunks, cursor).await
    }

    /// Follows a stream of NDJSON events (HTTP streaming, WebTransport). A refusal arrives
    /// as an `error` event before the welcome.
    async fn lines(&self, mut chunks: crate::wt::Chunks, cursor: &mut Cursor) -> Ended {
        let mut live = false;
        let mut advice = None;
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = chunks.next().await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                if !live && let Ok(ServerEvent::Error(error)) = serde_json::from_str(&line) {
                    return self.refused(error.retry_after_ms);
                }
                advice = advice.or(self.event(&line, cursor, &mut live));
            }
        }
        Ended {
            advice_ms: advice,
            live,
        }
    }

    /// Long polls (`long`), or short polls once a second as the page does.
    async fn poll(&self, http: &reqwest::Client, cursor: &mut Cursor, long: bool) -> Ended {
        let mut live = false;
        loop {
            if live && !long {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let wait = if long && cursor.epoch.is_some() {
                25
            } else {
                0
            };
            let url = format!(
                "{}{}?wait={wait}&{}",
                self.url,
                Endpoint::Messages.path(self.room),
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
                self.shared.received(self.index, message.id);
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
