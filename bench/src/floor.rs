//! The floor: the least work a server can do to deliver a chat message on this machine.
//!
//! One thread, readiness-driven (`mio`, edge-triggered epoll), speaking just enough WebSocket
//! for the load tool's `--peer` clients: it answers the upgrade, reads the senders' frames and,
//! for each text frame, encodes one unmasked server frame **once** and hands the same bytes to
//! every connected socket with one non-blocking `write` each. A socket that cannot take the
//! whole frame keeps the rest in its own buffer, written when epoll says it is writable, so
//! nothing is lost or reordered. No ids, no history, no limits, no timers, no logging: what is
//! left is what a delivery physically costs — the system call — so a server's CPU per
//! delivery divided by this program's, under the same load in the same run, is its overhead.
//!
//! Written by hand (not with a WebSocket crate) because the point is to do nothing else; it
//! is a benchmark instrument, not a server for anyone to use.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use anyhow::Context;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

const LISTENER: Token = Token(usize::MAX);
/// A request head larger than this is not from the load tool: the connection is dropped.
const MAX_HEAD: usize = 8 * 1024;
/// Frames larger than this are not from the load tool either.
const MAX_FRAME: usize = 64 * 1024;

enum Phase {
    /// Reading the upgrade request.
    Handshake,
    Open,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    /// Bytes the socket could not take yet, in order.
    output: Vec<u8>,
}

/// Serves on `addr` until killed; prints `listening on ADDR` once ready.
pub fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr).with_context(|| format!("cannot bind {addr}"))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None).or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        for event in events.iter() {
            if event.token() == LISTENER {
                accept(&poll, &listener, &mut conns, &mut free)?;
                continue;
            }
            let index = event.token().0;
            let mut frames = Vec::new();
            let alive = match conns.get_mut(index).and_then(Option::as_mut) {
                Some(conn) => {
                    (!event.is_writable() || flush(conn).is_ok())
                        && (!event.is_readable() || read(conn, &mut scratch, &mut frames).is_ok())
                }
                None => continue,
            };
            for frame in &frames {
                broadcast(&mut conns, frame);
            }
            if !alive && let Some(mut conn) = conns[index].take() {
                let _ = poll.registry().deregister(&mut conn.stream);
                free.push(index);
            }
        }
    }
}

fn accept(
    poll: &Poll,
    listener: &TcpListener,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let index = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns[index] = Some(Conn {
            stream,
            phase: Phase::Handshake,
            input: Vec::new(),
            output: Vec::new(),
        });
    }
}

/// Reads everything available; completes the handshake; collects the text frames' payloads.
fn read(conn: &mut Conn, scratch: &mut [u8], frames: &mut Vec<Vec<u8>>) -> io::Result<()> {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => conn.input.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if let Phase::Handshake = conn.phase {
        let Some(end) = find(&conn.input, b"\r\n\r\n") else {
            return if conn.input.len() > MAX_HEAD {
                Err(io::ErrorKind::InvalidData.into())
            } else {
                Ok(())
            };
        };
        let key = websocket_key(&conn.input[..end]).ok_or(io::ErrorKind::InvalidData)?;
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        conn.input.drain(..end + 4);
        conn.phase = Phase::Open;
        send(conn, answer.as_bytes())?;
    }
    let mut at = 0;
    while let Some((opcode, payload, used)) = parse_frame(&conn.input[at..])? {
        at += used;
        match opcode {
            0x1 => frames.push(server_frame(&payload)),
            0x8 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
    }
    conn.input.drain(..at);
    Ok(())
}

/// One client frame: (opcode, unmasked payload, bytes used), or `None` if incomplete.
fn parse_frame(buf: &[u8]) -> io::Result<Option<(u8, Vec<u8>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        126 | 127 => return Ok(None),
        short => (short as usize, 2),
    };
    if len > MAX_FRAME {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mask = if masked {
        let Some(mask) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        [mask[0], mask[1], mask[2], mask[3]]
    } else {
        [0; 4]
    };
    let Some(body) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = body
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((opcode, payload, at + len)))
}

/// A final, unmasked text frame: the same bytes for every receiver.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x81);
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// One `write` per open socket; what a socket cannot take now waits in its buffer.
fn broadcast(conns: &mut [Option<Conn>], frame: &[u8]) {
    for conn in conns.iter_mut().flatten() {
        if let Phase::Open = conn.phase {
            // A failed socket is noticed (and dropped) on its next readiness event.
            let _ = send(conn, frame);
        }
    }
}

fn send(conn: &mut Conn, bytes: &[u8]) -> io::Result<()> {
    if !conn.output.is_empty() {
        conn.output.extend_from_slice(bytes);
        return Ok(());
    }
    match conn.stream.write(bytes) {
        Ok(n) => conn.output.extend_from_slice(&bytes[n..]),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.output.extend_from_slice(bytes),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Writes what the socket's buffer holds, as far as the socket takes it.
fn flush(conn: &mut Conn) -> io::Result<()> {
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn websocket_key(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_client_frame_is_unmasked_and_reframed_unmasked() {
        let payload = b"hello";
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame.extend_from_slice(&[0x81]); // the start of the next frame
        let (opcode, body, used) = parse_frame(&frame).expect("valid").expect("complete");
        assert_eq!((opcode, body.as_slice(), used), (1, &payload[..], 11));
        assert_eq!(server_frame(&body), b"\x81\x05hello");
        assert!(parse_frame(&frame[..8]).expect("valid").is_none());
    }

    #[test]
    fn lengths_past_125_use_the_extended_forms() {
        let long = vec![b'x'; 300];
        let frame = server_frame(&long);
        assert_eq!(&frame[..4], &[0x81, 126, 0x01, 0x2c]);
        assert_eq!(frame.len(), 304);
        let (_, body, used) = parse_frame(&frame).expect("valid").expect("complete");
        assert_eq!((body.len(), used), (300, 304));
    }
}
