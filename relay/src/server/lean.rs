//! The lean path: bodiless `GET`/`HEAD` requests — the page's files, polls, SSE streams —
//! read and answered here, without hyper.
//!
//! Why not hyper for these: hyper gives every connection an 8 KiB read buffer and an 8 KiB
//! write buffer, for the connection's whole life and with no setting to shrink them; an
//! idle SSE stream or a pending long poll then costs about 15–20 KiB of RSS, twice the
//! budget. Here a request head is read into a buffer that starts at 1 KiB and is dropped
//! once parsed (kept only if the client pipelined more), and answers are written straight to
//! the socket. What these requests need is small: parse a head (`httparse`, the parser
//! hyper itself uses), frame an answer with `Content-Length` (or, for a stream, by closing
//! the connection), keep the connection alive between requests.
//!
//! Everything else — a body, `Expect`, `Upgrade` (WebSockets), anything unusual in the head —
//! is handed to hyper with the bytes read so far, and hyper serves the connection from then
//! on. So this path never has to be a complete HTTP/1.1 server: only a correct one for the
//! requests it accepts.

use std::future::poll_fn;
use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{
    HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header,
};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;

use super::MAX_HEAD_BYTES;
use crate::sync::lock;

/// First size of the buffer a request head is read into; it doubles as needed, up to
/// [`MAX_HEAD_BYTES`]. Browsers' heads are mostly under 1 KiB.
const HEAD_BUFFER: usize = 1024;

/// Most headers in a request head.
const MAX_HEADERS: usize = 64;

/// Most bytes of ready body frames gathered into one write.
const WRITE_GATHER: usize = 64 * 1024;

/// The connection's next request, as far as this path is concerned. (Short-lived and moved
/// once, so the request is not boxed to even out the variants.)
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A complete bodiless `GET`/`HEAD`, to answer with [`answer`].
    Request(Request<Body>),
    /// Not for this path: hyper serves the connection from here, starting with these bytes.
    Hyper(Bytes),
    /// The client closed the connection (or sent a head over the limit, already answered).
    Close,
}

/// Reads the next request head. `buffer` holds bytes read past the previous request
/// (pipelining) and is left holding any past this one. Cancel-safe: what was read stays in
/// `buffer`.
pub async fn read_head<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    buffer: &mut BytesMut,
    peer: SocketAddr,
) -> io::Result<Head> {
    let layout = loop {
        match parse(buffer) {
            Parsed::Complete(layout) => break layout,
            Parsed::Other => return Ok(Head::Hyper(buffer.split().freeze())),
            Parsed::Partial if buffer.len() >= MAX_HEAD_BYTES => {
                write_simple(io, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await?;
                return Ok(Head::Close);
            }
            Parsed::Partial => {
                if buffer.capacity() == buffer.len() {
                    let grow = buffer.len().clamp(HEAD_BUFFER, MAX_HEAD_BYTES);
                    buffer.reserve(grow);
                }
                if io.read_buf(buffer).await? == 0 {
                    return Ok(Head::Close);
                }
            }
        }
    };
    let head = buffer.split_to(layout.len).freeze();
    if buffer.is_empty() {
        // Nothing pipelined: give the buffer back rather than keep it for the connection's
        // life (the point of this path).
        *buffer = BytesMut::new();
    }
    match build(&head, &layout, peer) {
        Some(request) => Ok(Head::Request(request)),
        None => {
            // Parsed as complete, so this is a head whose names or values `http` refuses:
            // hyper answers it the standard way.
            let mut rest = BytesMut::from(&head[..]);
            rest.extend_from_slice(buffer);
            buffer.clear();
            Ok(Head::Hyper(rest.freeze()))
        }
    }
}

/// Answers one request read by [`read_head`]; `true` if the connection stays open. While
/// the answer is written, the socket is watched: a client that leaves ends it at once (its
/// stream or long poll gives back its place), and bytes it pipelines meanwhile go to `buffer`.
/// An answer that, once its head is written, serves the socket itself: an SSE stream, which
/// its room then writes to directly (see `bus/live.rs`). A handler puts it in the response's
/// extensions next to a body serving the same stream, used when the answer goes out through
/// hyper instead; whichever runs first takes the stream.
#[derive(Clone)]
pub struct Takeover(Arc<Mutex<Option<TakeoverFn>>>);

type TakeoverFn = Box<dyn FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Takeover {
    pub fn new(
        serve: impl FnOnce(TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static,
    ) -> Takeover {
        Takeover(Arc::new(Mutex::new(Some(Box::new(serve)))))
    }

    /// Serves `socket`, unless the stream was taken already.
    pub async fn run(self, socket: TcpStream) {
        let serve = lock(&self.0).take();
        if let Some(serve) = serve {
            serve(socket).await;
        }
    }
}

/// How an exchange ended.
pub enum Answered {
    /// Answered; the connection stays open for the next request if `true`.
    Done(bool),
    /// The head is written; the socket is the stream's from here on.
    Takeover(Takeover),
}

pub async fn answer<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    app: &Router,
    request: Request<Body>,
    buffer: &mut BytesMut,
) -> io::Result<Answered> {
    let version = request.version();
    let head_only = request.method() == Method::HEAD;
    let keep_alive = version == Version::HTTP_11 && !asks_to_close(request.headers());
    // A `Router` is always ready; its error type is `Infallible`.
    let mut app = app.clone();
    let call = app.call(request);
    tokio::pin!(call);
    let mut response = loop {
        tokio::select! {
            Ok(response) = &mut call => break response,
            gone = watch(io, buffer) => if gone? { return Ok(Answered::Done(false)) },
        }
    };
    if let Some(takeover) = response.extensions_mut().remove::<Takeover>()
        && !head_only
    {
        let (parts, _) = response.into_parts();
        let mut head = vec![head_bytes(&parts, version, false, None)];
        write_all(io, &mut head).await?;
        io.flush().await?;
        return Ok(Answered::Takeover(takeover));
    }
    // Boxed: a long poll waits in `call` above, and should not carry the writer's state.
    Box::pin(respond(
        io, response, version, keep_alive, head_only, buffer,
    ))
    .await
    .map(Answered::Done)
}

/// Reads what the client sends while its answer is pending; `true` once it has closed the
/// connection. Bytes it pipelines are kept (up to one head's worth, then it is not read
/// until its turn).
async fn watch<T: AsyncRead + Unpin>(io: &mut T, buffer: &mut BytesMut) -> io::Result<bool> {
    if buffer.len() >= MAX_HEAD_BYTES {
        return std::future::pending().await;
    }
    // Read onto the stack: a connection that sends nothing while it waits (nearly all of
    // them) then costs no buffer.
    let mut chunk = [0u8; 64];
    let n = io.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..n]);
    Ok(n == 0)
}

enum Parsed {
    /// A complete head, for this path.
    Complete(Layout),
    /// More bytes are needed.
    Partial,
    /// A head this path does not serve (or cannot parse): hyper's.
    Other,
}

/// Where the parts of a complete, lean head lie in its bytes: the head is parsed once, and the
/// request then built from views of those bytes, not copies (as hyper does).
struct Layout {
    len: usize,
    head_only: bool,
    http_11: bool,
    path: Range<usize>,
    /// Name and value of each header. (A `Vec` sized to the head, rather than an array of
    /// [`MAX_HEADERS`]: the layout is held while the connection waits for more bytes, in its
    /// task's memory.)
    headers: Vec<(Range<usize>, Range<usize>)>,
}

fn parse(buffer: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) if is_lean(&request) => {
            let at = |part: &[u8]| {
                let start = part.as_ptr() as usize - buffer.as_ptr() as usize;
                start..start + part.len()
            };
            Parsed::Complete(Layout {
                len,
                head_only: request.method == Some("HEAD"),
                http_11: request.version == Some(1),
                path: at(request.path.unwrap_or("/").as_bytes()),
                headers: request
                    .headers
                    .iter()
                    .map(|header| (at(header.name.as_bytes()), at(header.value)))
                    .collect(),
            })
        }
        Ok(httparse::Status::Complete(_)) | Err(_) => Parsed::Other,
        Ok(httparse::Status::Partial) => Parsed::Partial,
    }
}

/// For the fuzz targets: a head parsed as the lean path parses it, and built into a request.
pub(crate) fn fuzz_head(data: &[u8]) {
    if let Parsed::Complete(layout) = parse(data) {
        assert!(layout.len <= data.len());
        let head = Bytes::copy_from_slice(data);
        let _ = build(&head, &layout, SocketAddr::from(([127, 0, 0, 1], 1)));
    }
}

/// A `GET` or `HEAD` with no body and nothing that asks for more than an answer.
fn is_lean(request: &httparse::Request<'_, '_>) -> bool {
    matches!(request.method, Some("GET" | "HEAD"))
        && matches!(request.version, Some(0 | 1))
        && request.path.is_some_and(|path| path.starts_with('/'))
        && request.headers.iter().all(|h| {
            let name = h.name;
            !(name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
                || (name.eq_ignore_ascii_case("content-length") && h.value != b"0"))
        })
}

/// The request as axum sees it, from the head [`parse`] laid out.
fn build(head: &Bytes, layout: &Layout, peer: SocketAddr) -> Option<Request<Body>> {
    let version = if layout.http_11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let method = if layout.head_only {
        Method::HEAD
    } else {
        Method::GET
    };
    let uri = Uri::from_maybe_shared(head.slice(layout.path.clone())).ok()?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(Body::empty())
        .ok()?;
    let map = request.headers_mut();
    for (name, value) in &layout.headers {
        let name = HeaderName::from_bytes(&head[name.clone()]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
        map.append(name, value);
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(request)
}

fn asks_to_close(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// How an answer's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body at all (`HEAD`, 204, 304).
    None,
    /// `Content-Length` says.
    Length,
    /// A stream: the body ends when the connection closes.
    Close,
}

/// Writes `response`: its head, then its body frame by frame (gathering what is ready into
/// one write). Returns whether the connection stays open.
async fn respond<T: AsyncRead + AsyncWrite + Unpin>(
    io: &mut T,
    response: Response<Body>,
    version: Version,
    mut keep_alive: bool,
    head_only: bool,
    buffer: &mut BytesMut,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let has_length = parts.headers.contains_key(header::CONTENT_LENGTH);
    let framing = if head_only
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        Framing::None
    } else if has_length || body.size_hint().exact().is_some() {
        Framing::Length
    } else {
        // A body of unknown length is a stream (SSE), which ends only with the connection
        // anyway: delimited by the close, it goes out as it is, with no chunk framing to
        // format around every write.
        keep_alive = false;
        Framing::Close
    };
    let length = match framing {
        Framing::Length if !has_length => Some(body.size_hint().exact().unwrap_or(0)),
        _ => None,
    };
    let mut pending = vec![head_bytes(&parts, version, keep_alive, length)];
    if framing != Framing::None {
        if framing == Framing::Close {
            // A stream's head goes out at once: its first event may be a while coming. An
            // answer of known length goes out with its body, in one write (a second write
            // would wait on the first one's acknowledgement when Nagle's algorithm is on).
            write_all(io, &mut pending).await?;
            io.flush().await?;
        }
        let mut data = Vec::new();
        loop {
            // Wait for one frame (watching for the client leaving meanwhile), then take
            // whatever else is ready without waiting.
            let frame = tokio::select! {
                frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
                gone = watch(io, buffer) => {
                    if gone? {
                        return Ok(false);
                    }
                    continue;
                }
            };
            let Some(frame) = frame else {
                break;
            };
            data.clear();
            let mut gathered = push_data(&mut data, frame)?;
            let mut ended = false;
            while gathered < WRITE_GATHER {
                match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).now_or_never() {
                    Some(Some(frame)) => gathered += push_data(&mut data, frame)?,
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            if gathered > 0 {
                pending.append(&mut data);
                write_all(io, &mut pending).await?;
            }
            if ended {
                break;
            }
        }
    }
    write_all(io, &mut pending).await?;
    io.flush().await?;
    Ok(keep_alive)
}

/// The head of an answer: status line, headers (a `Date` if missing, `content-length: LENGTH`
/// if given, `connection: close` unless kept alive).
fn head_bytes(
    parts: &axum::http::response::Parts,
    version: Version,
    keep_alive: bool,
    length: Option<u64>,
) -> Bytes {
    let status = parts.status;
    let mut header_bytes = Vec::with_capacity(256);
    let _ = write!(
        header_bytes,
        "{} {} {}\r\n",
        if version == Version::HTTP_11 {
            "HTTP/1.1"
        } else {
            "HTTP/1.0"
        },
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        header_bytes.extend_from_slice(name.as_str().as_bytes());
        header_bytes.extend_from_slice(b": ");
        header_bytes.extend_from_slice(value.as_bytes());
        header_bytes.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        header_bytes.extend_from_slice(b"date: ");
        date(|now| header_bytes.extend_from_slice(now.as_bytes()));
        header_bytes.extend_from_slice(b"\r\n");
    }
    if let Some(length) = length {
        let _ = write!(header_bytes, "content-length: {length}\r\n");
    }
    if version == Version::HTTP_11 && !keep_alive {
        header_bytes.extend_from_slice(b"connection: close\r\n");
    }
    header_bytes.extend_from_slice(b"\r\n");
    Bytes::from(header_bytes)
}

/// Calls `with` on the current `Date` header value, formatted at most once a second per
/// thread (as hyper does): a long poller makes one request per message, and formatting a
/// date each time is measurable at thousands a second.
fn date(with: impl FnOnce(&str)) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        with(&cached.1);
    });
}

/// Appends a frame's data; returns its length. A body that fails (a file that cannot be read
/// any more) is an error: the connection is then closed without the answer's proper end, so
/// that the client sees it cut short rather than complete.
fn push_data(
    data: &mut Vec<Bytes>,
    frame: Result<http_body::Frame<Bytes>, axum::Error>,
) -> io::Result<usize> {
    match frame.map(http_body::Frame::into_data) {
        Ok(Ok(bytes)) => {
            let len = bytes.len();
            if len > 0 {
                data.push(bytes);
            }
            Ok(len)
        }
        // Trailers: nothing to write (no framing here carries them).
        Ok(Err(_)) => Ok(0),
        Err(err) => Err(io::Error::other(err)),
    }
}

/// Writes every byte of `pieces` with as few writes as the socket allows, then empties it.
async fn write_all<T: AsyncWrite + Unpin>(io: &mut T, pieces: &mut Vec<Bytes>) -> io::Result<()> {
    /// Pieces handed to one `writev`; more wait for the next.
    const SLICES: usize = 64;
    let mut at = 0;
    while at < pieces.len() {
        let mut slices = [IoSlice::new(&[]); SLICES];
        let count = (pieces.len() - at).min(SLICES);
        for (slice, piece) in slices.iter_mut().zip(&pieces[at..at + count]) {
            *slice = IoSlice::new(piece);
        }
        let mut written = io.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let first = &mut pieces[at];
            if written >= first.len() {
                written -= first.len();
                at += 1;
            } else {
                first.advance(written);
                written = 0;
            }
        }
    }
    pieces.clear();
    Ok(())
}

async fn write_simple<T: AsyncWrite + Unpin>(io: &mut T, status: StatusCode) -> io::Result<()> {
    let line = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    io.write_all(line.as_bytes()).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::duplex;

    fn app() -> Router {
        Router::new()
            .route("/small", get(|| async { "hello" }))
            .route(
                "/stream",
                get(|| async {
                    let chunks = futures_util::stream::iter(
                        ["one", "two"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))),
                    );
                    Body::from_stream(chunks)
                }),
            )
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().expect("an address")
    }

    async fn exchange(request: &[u8]) -> (String, Vec<String>) {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(request).await.expect("write");
        let mut buffer = BytesMut::new();
        let mut outcomes = Vec::new();
        loop {
            match read_head(&mut server, &mut buffer, peer())
                .await
                .expect("read")
            {
                Head::Request(request) => {
                    if matches!(
                        answer(&mut server, &app(), request, &mut buffer)
                            .await
                            .expect("answered"),
                        Answered::Done(true)
                    ) {
                        outcomes.push("keep-alive".to_owned());
                        if buffer.is_empty() {
                            break;
                        }
                    } else {
                        outcomes.push("close".to_owned());
                        break;
                    }
                }
                Head::Close => {
                    outcomes.push("close".to_owned());
                    break;
                }
                Head::Hyper(rest) => {
                    outcomes.push(format!("hyper:{}", String::from_utf8_lossy(&rest)));
                    break;
                }
            }
        }
        drop(server);
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("read");
        (answer, outcomes)
    }

    #[tokio::test]
    async fn a_get_is_answered_with_a_length_and_the_connection_kept() {
        let (answer, outcomes) = exchange(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("content-length: 5\r\n"), "{answer}");
        assert!(answer.contains("date: "), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        assert_eq!(outcomes, ["keep-alive"]);
    }

    #[tokio::test]
    async fn a_stream_ends_with_the_connection() {
        let (answer, outcomes) = exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(!answer.contains("chunked"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nonetwo"), "{answer}");
        assert_eq!(outcomes, ["close"]);
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let (answer, outcomes) = exchange(
            b"GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert!(
            answer.ends_with("connection: close\r\n\r\nhello"),
            "{answer}"
        );
        assert_eq!(outcomes, ["keep-alive", "close"]);
    }

    #[tokio::test]
    async fn http_1_0_streams_end_with_the_connection() {
        let (answer, outcomes) = exchange(b"GET /stream HTTP/1.0\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(!answer.contains("chunked"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nonetwo"), "{answer}");
        assert_eq!(outcomes, ["close"]);
    }

    #[tokio::test]
    async fn a_head_request_gets_no_body() {
        let (answer, _) = exchange(b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    }

    #[tokio::test]
    async fn bodies_upgrades_and_the_unusual_go_to_hyper_with_every_byte_read() {
        for request in [
            &b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..],
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            b"GET /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /small HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"BREW /pot HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01 not http at all\r\n\r\n",
        ] {
            let (answer, outcomes) = exchange(request).await;
            assert_eq!(answer, "", "nothing written for {request:?}");
            assert_eq!(
                outcomes,
                [format!("hyper:{}", String::from_utf8_lossy(request))]
            );
        }
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let mut request = b"GET /small HTTP/1.1\r\nX-Filler: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        request.extend_from_slice(b"\r\n\r\n");
        let (answer, outcomes) = exchange(&request).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert_eq!(outcomes, ["close"]);
    }
}
