//! The harness of the several-relays tests: readers of every transport that collect until a
//! final `END` message, a poller that alternates relays, publishers spread over relays, and
//! the check that every client received exactly the room's history.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use protocol::api::Endpoint;
use protocol::{ErrorCode, Message, PollResponse, ServerEvent};
use reqwest::StatusCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::*;

/// The text of the last message each test publishes: every reader stops at it, and because
/// delivery is in one total order, it then holds everything published before.
pub const END: &str = "END";

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one client received before `END`, and the error codes it was sent.
#[derive(Debug, Default)]
pub struct Received {
    pub messages: Vec<Message>,
    pub errors: Vec<ErrorCode>,
}

pub async fn ws_collect(mut stream: SplitStream<Socket>) -> Received {
    let mut received = Received::default();
    loop {
        match ws_event(&mut stream).await {
            ServerEvent::Message(m) if m.text == END => return received,
            ServerEvent::Message(m) => received.messages.push(m),
            ServerEvent::Error(e) => received.errors.push(e.code),
            ServerEvent::Welcome(_) | ServerEvent::Ping => {}
            ServerEvent::Reset(reset) => panic!("unexpected reset {reset:?}"),
            ServerEvent::Reconnect(advice) => panic!("unexpected reconnect {advice:?}"),
            ServerEvent::Ack(ack) => panic!("unexpected ack {ack:?}"),
            // Only clients that name themselves (`client=`) get these.
            event @ (ServerEvent::Presence(_) | ServerEvent::Typing(_)) => {
                panic!("unexpected signal {event:?}")
            }
        }
    }
}

/// A WebSocket client that reads everything until `END`; returns its sending half too.
pub async fn ws_reader(
    url: String,
) -> (
    SplitSink<Socket, tungstenite::Message>,
    tokio::task::JoinHandle<Received>,
) {
    let (sink, mut stream) = Ws::connect(&url).await.socket.split();
    assert!(matches!(
        ws_event(&mut stream).await,
        ServerEvent::Welcome(_)
    ));
    (sink, tokio::spawn(ws_collect(stream)))
}

/// An SSE client that reads everything until `END`.
pub async fn sse_reader(url: String) -> tokio::task::JoinHandle<Received> {
    let mut sse = Sse::connect(&url, &[]).await.expect("SSE opens");
    sse.welcome().await;
    tokio::spawn(async move {
        let mut received = Received::default();
        loop {
            match sse.event().await.1 {
                ServerEvent::Message(m) if m.text == END => return received,
                ServerEvent::Message(m) => received.messages.push(m),
                other => panic!("unexpected SSE event {other:?}"),
            }
        }
    })
}

/// A poller that sends each request to the next relay in turn (no sticky sessions), with
/// `wait` seconds (0 = short polling); it rides out refusals (an outage) by retrying.
pub fn poller(
    relays: Vec<SocketAddr>,
    room: &'static str,
    wait: u32,
    limit: usize,
) -> tokio::task::JoinHandle<Received> {
    tokio::spawn(async move {
        let client = http();
        let mut received = Received::default();
        let mut after = 0;
        let mut epoch = String::new();
        for turn in 0.. {
            let relay = relays[turn % relays.len()];
            let url = Client::new(relay).url(&format!(
                "{}?after={after}&epoch={epoch}&wait={wait}&limit={limit}",
                Endpoint::Messages.path(room)
            ));
            let response = within("a poll answer", client.get(&url).send()).await;
            let answer = match response {
                Ok(response) if response.status() == StatusCode::OK => response
                    .json::<PollResponse>()
                    .await
                    .expect("a PollResponse"),
                Ok(response) => {
                    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                    received.errors.push(ErrorCode::Unavailable);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(err) => panic!("poll failed: {err}"),
            };
            assert_eq!(answer.reset, None, "no reset expected (turn {turn})");
            epoch = answer.epoch;
            after = answer.last_id;
            for m in answer.messages {
                if m.text == END {
                    return received;
                }
                received.messages.push(m);
            }
            if wait == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        unreachable!()
    })
}

/// The room's whole history, read from one relay page by page.
pub async fn history(relay: &Client, room: &str) -> Vec<Message> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = relay.poll(room, &format!("after={after}&limit=1000")).await;
        after = page.last_id;
        all.extend(page.messages);
        if !page.more {
            return all;
        }
    }
}

/// Every client received exactly the room's history (before `END`), in id order, once.
pub fn assert_all_received(clients: &[(&str, Received)], history: &[Message]) {
    let before_end: Vec<(u64, &str)> = history
        .iter()
        .take_while(|m| m.text != END)
        .map(|m| (m.id, m.text.as_str()))
        .collect();
    assert!(
        before_end.windows(2).all(|w| w[0].0 < w[1].0),
        "history is in increasing id order"
    );
    for (name, received) in clients {
        let got: Vec<(u64, &str)> = received
            .messages
            .iter()
            .map(|m| (m.id, m.text.as_str()))
            .collect();
        if got != before_end {
            let first_difference = got.iter().zip(&before_end).position(|(a, b)| a != b);
            panic!(
                "{name} received {} messages, history holds {}; first difference at {first_difference:?}",
                got.len(),
                before_end.len()
            );
        }
    }
}

pub fn ws_url(addr: SocketAddr, room: &str, query: &str) -> String {
    Client::new(addr).ws_url(room, query)
}

pub fn sse_url(addr: SocketAddr, room: &str, query: &str) -> String {
    Client::new(addr).sse_url(room, query)
}

/// POSTs `count` messages `{prefix}-{n}`, alternating between the relays.
pub fn post_many(
    relays: Vec<SocketAddr>,
    room: &'static str,
    prefix: String,
    count: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut texts = Vec::with_capacity(count);
        for n in 0..count {
            let text = format!("{prefix}-{n}");
            Client::new(relays[n % relays.len()])
                .post(room, &prefix, &text)
                .await;
            texts.push(text);
        }
        texts
    })
}
