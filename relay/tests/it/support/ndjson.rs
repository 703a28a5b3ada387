//! A reader of the NDJSON transports (HTTP streaming, and WebTransport's stream): one event
//! per line, parsed as the page parses it.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use protocol::{Message, ServerEvent};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::{http, within};

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

pub struct Ndjson {
    chunks: Chunks,
    buffer: Vec<u8>,
    /// The epoch of the welcome.
    pub epoch: Option<String>,
    /// `{"type":"ping"}` lines skipped so far.
    pub pings: usize,
}

impl Ndjson {
    /// Opens `GET url` (an `…/stream` URL), returning the stream and the response's head.
    pub async fn connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Ndjson, HeaderMap), (StatusCode, String)> {
        let mut request = http().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = within("the stream's response head", request.send())
            .await
            .expect("the stream request reaches the relay");
        let status = response.status();
        if status != StatusCode::OK {
            return Err((status, response.text().await.unwrap_or_default()));
        }
        let head = response.headers().clone();
        let chunks = response
            .bytes_stream()
            .map(|c| c.map_err(|e| e.to_string()));
        Ok((Ndjson::over(Box::pin(chunks)), head))
    }

    /// Reads lines from any stream of byte chunks.
    pub fn over(chunks: Chunks) -> Ndjson {
        Ndjson {
            chunks,
            buffer: Vec::new(),
            epoch: None,
            pings: 0,
        }
    }

    /// The next line's event, pings included; `None` when the stream ended cleanly.
    pub async fn next(&mut self) -> Option<ServerEvent> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = std::str::from_utf8(&line).expect("NDJSON is UTF-8");
                return Some(serde_json::from_str(line).expect("each line is a ServerEvent"));
            }
            match within("an NDJSON line", self.chunks.next()).await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => panic!("the stream broke instead of ending cleanly: {err}"),
                None => {
                    assert!(self.buffer.is_empty(), "a partial last line");
                    return None;
                }
            }
        }
    }

    /// The next event that is not a ping.
    pub async fn event(&mut self) -> ServerEvent {
        loop {
            match self.next().await.expect("the stream is still open") {
                ServerEvent::Ping => self.pings += 1,
                event => return event,
            }
        }
    }

    pub async fn message(&mut self) -> Message {
        match self.event().await {
            ServerEvent::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub async fn welcome(&mut self) -> (String, u64) {
        match self.event().await {
            ServerEvent::Welcome(welcome) => {
                self.epoch = Some(welcome.epoch.clone());
                (welcome.epoch, welcome.last_id)
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }
}
