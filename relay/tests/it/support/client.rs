//! Plain clients of a relay: HTTP requests ([`Client`]), a WebSocket ([`Ws`]) and a
//! Server-Sent Events reader ([`Sse`]) that parses the stream as a browser would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::api::Endpoint;
use protocol::{Message, PollResponse, PublishResponse, ServerEvent};
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, protocol::CloseFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{http, http_from, within};

/// Where a relay listens, and the requests tests make of it. Cheap to clone into tasks; it
/// does not own the relay (a [`super::Relay`] or a spawned process does).
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client { addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, room: &str, query: &str) -> String {
        format!("ws://{}{}?{query}", self.addr, Endpoint::Ws.path(room))
    }

    /// `/api/rooms/{room}/events`
    pub fn sse_path(&self, room: &str) -> String {
        Endpoint::Events.path(room)
    }

    /// `http://ADDR/api/rooms/{room}/events?{query}`
    pub fn sse_url(&self, room: &str, query: &str) -> String {
        self.url(&format!("{}?{query}", Endpoint::Events.path(room)))
    }

    /// `http://ADDR/api/rooms/{room}/stream?{query}`
    pub fn stream_url(&self, room: &str, query: &str) -> String {
        self.url(&format!("{}?{query}", Endpoint::Stream.path(room)))
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Publishes over `POST`, expecting success; returns the id.
    pub async fn post(&self, room: &str, from: &str, text: &str) -> u64 {
        let (status, body) = self
            .post_raw(room, json!({"from": from, "text": text}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "publish answered {body}");
        let answer: PublishResponse = serde_json::from_str(&body).expect("publish answer");
        answer.id
    }

    pub async fn post_raw(&self, room: &str, body: serde_json::Value) -> (StatusCode, String) {
        let response = http()
            .post(self.url(&Endpoint::Messages.path(room)))
            .json(&body)
            .send()
            .await
            .expect("POST reaches the relay");
        let status = response.status();
        (status, response.text().await.expect("POST body"))
    }

    /// `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = within("GET /metrics", http().get(self.url("/metrics")).send())
            .await
            .expect("GET /metrics reaches the relay");
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        response.text().await.expect("metrics body")
    }

    /// The value of one series in `/metrics` (e.g. `relay_rooms` or
    /// `relay_connections{transport="ws"}`), or `None` when the relay does not report it.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.metrics().await, series)
    }

    /// Waits until `series` reads `value`: for state a test cannot be told about directly
    /// (a long poll parked, a connection released).
    pub async fn wait_metric(&self, series: &str, value: f64) {
        super::eventually(&format!("{series} to read {value}"), || async {
            (self.metric(series).await == Some(value)).then_some(())
        })
        .await
    }

    /// Waits until the counter `series` reaches `value`.
    pub async fn wait_metric_at_least(&self, series: &str, value: f64) {
        super::eventually(&format!("{series} to reach {value}"), || async {
            (self.metric(series).await >= Some(value)).then_some(())
        })
        .await
    }

    /// Publishes over `POST` as the client `forwarded_for` names (for a relay that trusts
    /// 127.0.0.1 as a proxy); returns the status and body.
    pub async fn post_as(
        &self,
        forwarded_for: &str,
        room: &str,
        text: &str,
    ) -> (StatusCode, String) {
        let response = http()
            .post(self.url(&Endpoint::Messages.path(room)))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"from": "a", "text": text}))
            .send()
            .await
            .expect("POST reaches the relay");
        let status = response.status();
        (status, response.text().await.expect("POST body"))
    }

    /// `GET …/messages?{query}`, expecting success.
    pub async fn poll(&self, room: &str, query: &str) -> PollResponse {
        let response = http()
            .get(self.url(&format!("{}?{query}", Endpoint::Messages.path(room))))
            .send()
            .await
            .expect("GET reaches the relay");
        assert_eq!(response.status(), StatusCode::OK, "poll of {room}?{query}");
        response
            .json()
            .await
            .expect("poll answer is a PollResponse")
    }
}

/// The next protocol event on a WebSocket (whole or the reading half of a split one),
/// skipping pings and pongs; panics on a close or a break.
pub async fn ws_event<S>(frames: &mut S) -> ServerEvent
where
    S: futures_util::Stream<Item = Result<tungstenite::Message, tungstenite::Error>> + Unpin,
{
    loop {
        let frame = within("a WebSocket event", frames.next())
            .await
            .expect("socket still open")
            .expect("frame reads");
        match frame {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(&text).expect("event is a ServerEvent");
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// The value of `series` in a Prometheus text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// A WebSocket client speaking the relay's protocol.
pub struct Ws {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn connect(url: &str) -> Ws {
        Ws::connect_with(url, &[]).await.expect("WebSocket opens")
    }

    /// Connects with extra headers; the HTTP status of a refused handshake is the error.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
        let mut request = url.into_client_request().expect("valid ws url");
        for (name, value) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        match within(
            "the WebSocket handshake",
            tokio_tungstenite::connect_async(request),
        )
        .await
        {
            Ok((socket, _)) => Ok(Ws { socket }),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Err(other) => panic!("WebSocket handshake failed: {other}"),
        }
    }

    /// Connects from a given local address (`127.0.0.2`, …): another client, as the relay
    /// counts them. The HTTP status of a refused handshake is the error.
    pub async fn connect_from(url: &str, addr: SocketAddr, local: IpAddr) -> Result<Ws, u16> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind a local address");
        let stream = socket.connect(addr).await.expect("TCP connect");
        match within(
            "the WebSocket handshake",
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        {
            Ok((socket, _)) => Ok(Ws { socket }),
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("WebSocket handshake failed: {other}"),
        }
    }

    /// Connects with a tiny receive buffer, so that a client that stops reading fills the
    /// pipe quickly instead of after megabytes of kernel buffering.
    pub async fn connect_small_buffer(url: &str, addr: SocketAddr) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(super::SMALL_BUFFER)
            .expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("TCP connect");
        let (socket, _) = within(
            "the WebSocket handshake",
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("WebSocket opens");
        Ws { socket }
    }

    /// The next protocol event, skipping pings and pongs.
    pub async fn event(&mut self) -> ServerEvent {
        ws_event(&mut self.socket).await
    }

    pub async fn message(&mut self) -> Message {
        match self.event().await {
            ServerEvent::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Reads the welcome; returns its epoch and last id.
    pub async fn welcome(&mut self) -> (String, u64) {
        match self.event().await {
            ServerEvent::Welcome(welcome) => (welcome.epoch, welcome.last_id),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, text: &str) {
        within("a WebSocket send", self.socket.send(text.into()))
            .await
            .expect("frame sent");
    }

    /// Reads until the relay closes the socket; returns its close frame, if it sent one.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match within("the relay to close the socket", self.socket.next()).await {
                Some(Ok(tungstenite::Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// One Server-Sent Event, or a comment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    pub comment: bool,
}

/// A Server-Sent Events client that parses the stream itself, so tests see exactly what a
/// browser's EventSource would.
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The epoch of the welcome, which every message's SSE id must name.
    epoch: Option<String>,
}

impl Sse {
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Sse, (StatusCode, String)> {
        Sse::connect_via(http(), url, headers).await
    }

    /// Connects from a given local address (`127.0.0.2`, …): another client, as the relay
    /// counts them.
    pub async fn connect_from(local: IpAddr, url: &str) -> Result<Sse, (StatusCode, String)> {
        Sse::connect_via(http_from(local), url, &[]).await
    }

    async fn connect_via(
        client: reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, (StatusCode, String)> {
        let mut request = client.get(url).header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        // No overall timeout on a stream: each read is bounded by `within` instead.
        let response = within("the SSE response headers", request.send())
            .await
            .expect("SSE request reaches the relay");
        let status = response.status();
        if status != StatusCode::OK {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "SSE content type"
        );
        Ok(Sse {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            epoch: None,
        })
    }

    /// The next event or comment; `None` when the relay ended the stream cleanly.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            match within("an SSE event", self.body.next()).await {
                Some(Ok(chunk)) => self
                    .buffer
                    .push_str(std::str::from_utf8(&chunk).expect("SSE is UTF-8")),
                Some(Err(err)) => panic!("SSE stream broke instead of ending cleanly: {err}"),
                None => return None,
            }
        }
    }

    /// The next protocol event, skipping comments.
    pub async fn event(&mut self) -> (SseEvent, ServerEvent) {
        loop {
            let raw = self.next().await.expect("SSE stream still open");
            if raw.comment {
                continue;
            }
            let event = serde_json::from_str(&raw.data).expect("data is a ServerEvent");
            return (raw, event);
        }
    }

    pub async fn message(&mut self) -> Message {
        match self.event().await {
            (raw, ServerEvent::Message(message)) => {
                assert_eq!(raw.event.as_deref(), Some("message"));
                let id = raw.id.as_deref().expect("an SSE id");
                let (epoch, parsed) = protocol::parse_event_id(id).expect("EPOCH:ID");
                assert_eq!(parsed, message.id, "SSE id names the message");
                let epoch = epoch.expect("the id carries the epoch");
                if let Some(welcomed) = &self.epoch {
                    assert_eq!(epoch, welcomed, "the stream's epoch");
                }
                message
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub async fn welcome(&mut self) -> (String, u64) {
        match self.event().await {
            (_, ServerEvent::Welcome(welcome)) => {
                self.epoch = Some(welcome.epoch.clone());
                (welcome.epoch, welcome.last_id)
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }
}

fn parse_block(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if line.starts_with(':') {
            event.comment = true;
        } else if let Some((field, value)) = line.split_once(": ") {
            match field {
                "event" => event.event = Some(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                "data" => event.data.push_str(value),
                "retry" => event.retry = value.parse().ok(),
                other => panic!("unexpected SSE field {other:?}"),
            }
        }
    }
    event
}

/// Polls until `count` messages after `after` have arrived (long polls when `wait` > 0).
pub async fn poll_until(
    relay: &Client,
    room: &str,
    mut after: u64,
    count: usize,
    wait: u32,
) -> Vec<Message> {
    let mut received = Vec::new();
    within(&format!("{count} messages by polling"), async {
        while received.len() < count {
            let answer = relay
                .poll(room, &format!("after={after}&wait={wait}&limit=1000"))
                .await;
            after = answer.last_id;
            received.extend(answer.messages);
            if wait == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    received
}
