//! Clients on raw sockets, for what a well-behaved client library would not do: stop
//! reading, speak HTTP/1.0.

use protocol::ServerEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{SMALL_BUFFER, within};

/// An SSE reader on a raw socket with a small receive buffer (set explicitly), so that it can
/// stop reading with only a few kilobytes in flight. It asks in HTTP/1.0, so the body comes as
/// plain SSE text until the connection closes, with no chunked encoding to undo.
pub struct RawSse {
    socket: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawSse {
    pub async fn connect(addr: std::net::SocketAddr, path: &str) -> RawSse {
        RawSse::connect_expecting(addr, path, "text/event-stream").await
    }

    /// The same for any streamed response (HTTP streaming's NDJSON too): only the head is
    /// checked; read the body with [`RawSse::until`].
    pub async fn connect_expecting(
        addr: std::net::SocketAddr,
        path: &str,
        content_type: &str,
    ) -> RawSse {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(SMALL_BUFFER)
            .expect("SO_RCVBUF");
        let mut socket = within("TCP connect", socket.connect(addr))
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.0\r\nAccept: {content_type}\r\n\r\n");
        socket
            .write_all(request.as_bytes())
            .await
            .expect("request sent");
        let mut sse = RawSse {
            socket,
            buffer: Vec::new(),
        };
        let head = sse.until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&head);
        assert!(head.contains(" 200 "), "SSE response: {head}");
        assert!(head.contains(content_type), "streamed response: {head}");
        sse
    }

    /// The bytes up to and including `end`, reading more as needed.
    pub async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buffer.windows(end.len()).position(|w| w == end) {
                return self.buffer.drain(..at + end.len()).collect();
            }
            let mut chunk = [0u8; 4096];
            let n = within("SSE bytes", self.socket.read(&mut chunk))
                .await
                .expect("reads");
            assert!(n > 0, "the SSE stream ended");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Everything until the relay closes the connection (whole lines only: a line cut off by
    /// the close is dropped).
    pub async fn rest(&mut self) -> Vec<u8> {
        loop {
            let mut chunk = [0u8; 4096];
            let n = within("the stream to end", self.socket.read(&mut chunk))
                .await
                .unwrap_or(0);
            if n == 0 {
                let mut rest = std::mem::take(&mut self.buffer);
                let whole = rest
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |at| at + 1);
                rest.truncate(whole);
                return rest;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event's data, skipping comments (keep-alives).
    pub async fn event(&mut self) -> ServerEvent {
        loop {
            let block = self.until(b"\n\n").await;
            let block = String::from_utf8(block).expect("SSE is UTF-8");
            if let Some(data) = block.lines().find_map(|line| line.strip_prefix("data: ")) {
                return serde_json::from_str(data).expect("data is a ServerEvent");
            }
        }
    }

    pub async fn message(&mut self) -> protocol::Message {
        match self.event().await {
            ServerEvent::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
