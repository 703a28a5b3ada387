//! A WebSocket echo server made of the relay's own WebSocket parts — its handshake check
//! (`transport::ws::accept_key`), its codec with the same settings (`ClientFrames`, 64 KiB
//! messages, 512-byte read steps), its frame encoder (`wsframe`) and its close on an
//! oversized message (1009) — for the Autobahn conformance cases (`relay/examples/ws_echo.rs`,
//! docs/RELIABILITY.md). The relay itself answers text with chat events, not echoes, and
//! refuses binary frames; everything else a client's bytes meet is the same here.
//! Not an API: hidden from the docs.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::Message;

use crate::transport::ws::accept_key;
use crate::transport::ws::codec::ClientFrames;
use crate::wsframe;

const MAX_BYTES: usize = 64 * 1024;
const BINARY: u8 = 0x2;

/// Serves echo connections on `listener` until the process ends.
pub async fn echo(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(socket).await;
        });
    }
}

async fn serve(mut socket: TcpStream) -> std::io::Result<()> {
    let mut read = Vec::new();
    let mut chunk = [0u8; 2048];
    let head_len = loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || read.len() > 16 * 1024 {
            return Ok(());
        }
        read.extend_from_slice(&chunk[..n]);
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let mut parsed = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut parsed);
    if !matches!(
        request.parse(&read[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return Ok(());
    }
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }
    let Ok(accept) = accept_key(&headers) else {
        socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Accept: "
        .to_vec();
    answer.extend_from_slice(accept.as_bytes());
    answer.extend_from_slice(b"\r\n\r\n");
    socket.write_all(&answer).await?;

    let mut codec = ClientFrames::new(MAX_BYTES);
    codec.feed(&read[head_len..]);
    loop {
        loop {
            let next = codec.next();
            // Pongs and the close reply, in order with the echoes.
            if let Some(output) = codec.take_output() {
                socket.write_all(&output).await?;
            }
            match next {
                Ok(Some(Message::Text(text))) => {
                    socket
                        .write_all(&wsframe::frame(wsframe::TEXT, text.as_bytes()))
                        .await?;
                }
                Ok(Some(Message::Binary(data))) => {
                    socket.write_all(&wsframe::frame(BINARY, &data)).await?;
                }
                Ok(Some(Message::Close(_))) => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => break,
                // As a session: a message over the limit is closed with 1009; any other
                // violation fails the connection.
                Err(tungstenite::Error::Capacity(_)) => {
                    socket
                        .write_all(&wsframe::close(1009, "message too big"))
                        .await?;
                    return Ok(());
                }
                Err(_) => return Ok(()),
            }
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        codec.feed(&chunk[..n]);
    }
}
