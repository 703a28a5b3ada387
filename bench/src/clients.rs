//! Benchmark clients: receivers for each transport and paced senders, against our relay or
//! the tutorial's Node server (the peer, which speaks raw text frames on `/`).

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use protocol::PollResponse;
use protocol::api::Endpoint;
use tokio::time::{Duration, Instant as Deadline, timeout_at};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::stats::{Receipts, decode, message_text};

/// What is being measured: the protocol's own transport names.
pub use protocol::Transport;

/// Where the server is, and which protocol it speaks.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://host:port`
    pub http: String,
    /// Where senders connect: `http`, or another relay sharing the room.
    pub send_http: String,
    pub room: String,
    /// The tutorial's Node server (or the floor program, which speaks the same): WebSocket
    /// only, raw text frames, no ids or history.
    pub peer: bool,
    /// What the reports call the server: `relay`, `node-peer` or `floor`.
    pub name: &'static str,
    pub poll_interval: Duration,
}

impl Server {
    fn messages_path(&self) -> String {
        Endpoint::Messages.path(&self.room)
    }

    fn ws(&self, name: &str) -> String {
        self.ws_at(&self.http, name)
    }

    fn ws_at(&self, http: &str, name: &str) -> String {
        let base = http.replacen("http://", "ws://", 1);
        if self.peer {
            format!("{base}/")
        } else {
            let path = Endpoint::Ws.path(&self.room);
            format!("{base}{path}?name={name}&limit=0")
        }
    }
}

/// Measurement window, in µs since `origin`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub origin: Instant,
    pub from_us: u64,
    pub to_us: u64,
}

impl Window {
    pub fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn record(&self, receipts: &mut Receipts, text: &str) {
        if let Some((key, sent_us)) = decode(text) {
            let measured = (self.from_us..self.to_us).contains(&sent_us);
            receipts.record(key, self.now_us().saturating_sub(sent_us), measured);
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open receiver, ready to read.
pub enum Receiver {
    Ws(Box<Socket>),
    Sse(std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>),
    Poll {
        after: u64,
        wait: u64,
    },
    /// NDJSON lines: HTTP streaming's body, or a WebTransport stream (its session held here,
    /// open until the receiver is dropped).
    Lines {
        chunks: crate::wt::Chunks,
        _session: Option<crate::wt::Session>,
    },
}

pub async fn open(
    server: &Server,
    transport: Transport,
    index: usize,
    http: &reqwest::Client,
) -> anyhow::Result<Receiver> {
    match transport {
        Transport::Ws => {
            let (socket, _) = tokio_tungstenite::connect_async_with_config(
                server.ws(&format!("r{index}")),
                Some(small_buffers()),
                false,
            )
            .await?;
            Ok(Receiver::Ws(Box::new(socket)))
        }
        Transport::Sse => {
            anyhow::ensure!(!server.peer, "the peer only speaks WebSocket");
            let url = format!(
                "{}{}?limit=0",
                server.http,
                Endpoint::Events.path(&server.room)
            );
            let response = http.get(url).send().await?.error_for_status()?;
            Ok(Receiver::Sse(Box::pin(response.bytes_stream())))
        }
        Transport::Stream => {
            anyhow::ensure!(!server.peer, "the peer only speaks WebSocket");
            let url = format!(
                "{}{}?limit=0",
                server.http,
                Endpoint::Stream.path(&server.room)
            );
            let response = http.get(url).send().await?.error_for_status()?;
            let chunks = response
                .bytes_stream()
                .map(|chunk| chunk.map_err(anyhow::Error::from));
            Ok(Receiver::Lines {
                chunks: Box::pin(chunks),
                _session: None,
            })
        }
        Transport::WebTransport => {
            anyhow::ensure!(!server.peer, "the peer only speaks WebSocket");
            let (session, chunks) =
                crate::wt::open(http, &server.http, &server.room, "limit=0").await?;
            Ok(Receiver::Lines {
                chunks,
                _session: Some(session),
            })
        }
        Transport::Longpoll | Transport::Shortpoll => {
            anyhow::ensure!(!server.peer, "the peer only speaks WebSocket");
            // The first answer, with no cursor and limit=0, is the room's head.
            let url = format!("{}{}?limit=0", server.http, server.messages_path());
            let head: PollResponse = http
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            // Long polls wait as long as the relay allows by default, as the page's do.
            let wait = if transport == Transport::Longpoll {
                protocol::limits::DEFAULT_LONGPOLL_MAX_SECS
            } else {
                0
            };
            Ok(Receiver::Poll {
                after: head.last_id,
                wait,
            })
        }
    }
}

/// Reads until `until`, recording every benchmark message.
pub async fn receive(
    server: &Server,
    receiver: Receiver,
    window: Window,
    until: Deadline,
    http: reqwest::Client,
) -> Receipts {
    let mut receipts = Receipts::default();
    // One timer for the whole read, not one per message: the receiving thread's cost per
    // delivery is part of the report.
    let deadline = tokio::time::sleep_until(until);
    tokio::pin!(deadline);
    match receiver {
        Receiver::Ws(mut socket) => loop {
            let frame = tokio::select! {
                biased;
                frame = socket.next() => frame,
                _ = &mut deadline => break,
            };
            match frame {
                Some(Ok(Frame::Text(text))) if server.peer => window.record(&mut receipts, &text),
                Some(Ok(Frame::Text(text))) => {
                    if let Some(text) = message_text(&text) {
                        window.record(&mut receipts, text);
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        },
        Receiver::Sse(mut body) => {
            let mut buffer: Vec<u8> = Vec::new();
            loop {
                let chunk = tokio::select! {
                    biased;
                    chunk = body.next() => chunk,
                    _ = &mut deadline => break,
                };
                let Some(Ok(chunk)) = chunk else { break };
                buffer.extend_from_slice(&chunk);
                let mut used = 0;
                while let Some(end) = find(&buffer[used..], b"\n\n") {
                    let block = String::from_utf8_lossy(&buffer[used..used + end]);
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                    if let Some(text) = data.and_then(message_text) {
                        window.record(&mut receipts, text);
                    }
                    used += end + 2;
                }
                buffer.drain(..used);
            }
        }
        Receiver::Lines { mut chunks, .. } => {
            let mut buffer: Vec<u8> = Vec::new();
            loop {
                let chunk = tokio::select! {
                    biased;
                    chunk = chunks.next() => chunk,
                    _ = &mut deadline => break,
                };
                let Some(Ok(chunk)) = chunk else { break };
                buffer.extend_from_slice(&chunk);
                let mut used = 0;
                while let Some(end) = buffer[used..].iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&buffer[used..used + end]);
                    if let Some(text) = message_text(&line) {
                        window.record(&mut receipts, text);
                    }
                    used += end + 1;
                }
                buffer.drain(..used);
            }
        }
        Receiver::Poll { mut after, wait } => {
            while Deadline::now() < until {
                let url = format!(
                    "{}{}?after={after}&wait={wait}&limit=1000",
                    server.http,
                    server.messages_path()
                );
                let answer = match timeout_at(until, async {
                    http.get(url)
                        .send()
                        .await?
                        .error_for_status()?
                        .json::<PollResponse>()
                        .await
                })
                .await
                {
                    Ok(Ok(answer)) => answer,
                    _ => break,
                };
                after = answer.last_id;
                for m in &answer.messages {
                    window.record(&mut receipts, &m.text);
                }
                if wait == 0 && !answer.more {
                    tokio::time::sleep(server.poll_interval).await;
                }
            }
        }
    }
    receipts
}

/// tungstenite's default read buffer (128 KiB) is zeroed on every read: with a thousand
/// receivers that `memset` was a third of the tool's CPU. Messages here are small.
fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a sender managed: how many of its messages fall in the measured window, and how far
/// behind its schedule it ran (a sender that cannot keep up makes the offered load a lie).
#[derive(Debug, Default)]
pub struct Sent {
    pub measured: u64,
    /// Per tick: how late the tick ran against its schedule, in µs.
    pub late_us: Vec<u64>,
}

/// Sends `rate` messages per second of `payload` bytes until `until`. It reads (and drops)
/// what the server sends back, so that it is never the slow consumer.
pub async fn send(
    server: Server,
    index: u32,
    rate: f64,
    payload: usize,
    window: Window,
    until: Deadline,
) -> anyhow::Result<Sent> {
    let (socket, _) = tokio_tungstenite::connect_async_with_config(
        server.ws_at(&server.send_http, &format!("s{index}")),
        Some(small_buffers()),
        false,
    )
    .await?;
    let (mut sink, mut stream) = socket.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    // Ticks of 5 ms with a fractional budget: steady rates well above the timer resolution.
    // Missed ticks are made up at once (`Burst`), so a late sender still sends its count, and
    // its lateness is recorded.
    const TICK: Duration = Duration::from_millis(5);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = rate * TICK.as_secs_f64();
    let (mut budget, mut seq) = (0.0, 0u64);
    let mut sent = Sent::default();
    while Deadline::now() < until {
        let scheduled = ticker.tick().await;
        let sent_us = window.now_us();
        let in_window = (window.from_us..window.to_us).contains(&sent_us);
        if in_window {
            sent.late_us
                .push(Deadline::now().duration_since(scheduled).as_micros() as u64);
        }
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            seq += 1;
            if in_window {
                sent.measured += 1;
            }
            sink.feed(Frame::text(crate::stats::encode(
                index, seq, sent_us, payload,
            )))
            .await?;
        }
        sink.flush().await?;
    }
    let _ = sink.close().await;
    drain.abort();
    Ok(sent)
}
