//! Benchmark clients: receivers for each transport and paced senders, against our relay or
//! the tutorial's Node server (the peer, which speaks raw text frames on `/`).

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use protocol::api::Endpoint;
use protocol::{PollResponse, ServerEvent};
use tokio::time::{Duration, Instant as Deadline, timeout_at};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::stats::{Receipts, decode};

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
    /// The tutorial's Node server: WebSocket only, raw text frames, no ids or history.
    pub peer: bool,
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
    Poll { after: u64, wait: u64 },
}

pub async fn open(
    server: &Server,
    transport: Transport,
    index: usize,
    http: &reqwest::Client,
) -> anyhow::Result<Receiver> {
    match transport {
        Transport::Ws => {
            let (socket, _) =
                tokio_tungstenite::connect_async(server.ws(&format!("r{index}"))).await?;
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
    match receiver {
        Receiver::Ws(mut socket) => {
            while let Ok(Some(Ok(frame))) = timeout_at(until, socket.next()).await {
                if let Frame::Text(text) = frame {
                    if server.peer {
                        window.record(&mut receipts, &text);
                    } else if let Ok(ServerEvent::Message(m)) = serde_json::from_str(&text) {
                        window.record(&mut receipts, &m.text);
                    }
                }
            }
        }
        Receiver::Sse(mut body) => {
            let mut buffer = String::new();
            while let Ok(Some(Ok(chunk))) = timeout_at(until, body.next()).await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                    if let Some(Ok(ServerEvent::Message(m))) = data.map(serde_json::from_str) {
                        window.record(&mut receipts, &m.text);
                    }
                }
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

/// Sends `rate` messages per second of `payload` bytes until `until`; returns how many of
/// them fall in the measured window. It reads (and drops) what the server sends back, so
/// that it is never the slow consumer.
pub async fn send(
    server: Server,
    index: u32,
    rate: f64,
    payload: usize,
    window: Window,
    until: Deadline,
) -> anyhow::Result<u64> {
    let (socket, _) =
        tokio_tungstenite::connect_async(server.ws_at(&server.send_http, &format!("s{index}")))
            .await?;
    let (mut sink, mut stream) = socket.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    // Ticks of 5 ms with a fractional budget: steady rates well above the timer resolution.
    const TICK: Duration = Duration::from_millis(5);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_tick = rate * TICK.as_secs_f64();
    let (mut budget, mut seq, mut measured) = (0.0, 0u64, 0u64);
    while Deadline::now() < until {
        ticker.tick().await;
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            seq += 1;
            let sent_us = window.now_us();
            if (window.from_us..window.to_us).contains(&sent_us) {
                measured += 1;
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
    Ok(measured)
}
