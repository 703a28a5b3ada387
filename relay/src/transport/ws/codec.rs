//! The clients' frames, read with tungstenite used as a codec over bytes the session reads
//! itself: tungstenite checks masking, fragmentation, UTF-8, sizes and control frames, and
//! answers pings and closes; nothing it writes goes to the socket directly. What it writes
//! (pongs, the close reply) is taken out with [`ClientFrames::take_output`] and sent through
//! the connection's outlet, in order with everything else.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

/// tungstenite reads from [`Memory`] in steps of this many bytes. Small: the codec of an
/// idle connection holds its buffer for the connection's life, and clients send short
/// frames (a larger one is read in more steps, up to `RELAY_MAX_FRAME_BYTES`).
const READ_STEP: usize = 512;

/// The bytes between the session and tungstenite.
#[derive(Debug, Default)]
struct Memory {
    input: BytesMut,
    output: Vec<u8>,
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input.split_to(n));
        Ok(n)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
pub struct ClientFrames {
    socket: WebSocket<Memory>,
}

impl ClientFrames {
    /// A codec accepting messages and frames of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> ClientFrames {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_STEP)
            .write_buffer_size(0)
            .max_message_size(Some(max_bytes))
            .max_frame_size(Some(max_bytes));
        ClientFrames {
            socket: WebSocket::from_raw_socket(Memory::default(), Role::Server, Some(config)),
        }
    }

    /// Bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.socket.get_mut().input.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Message>, Error> {
        match self.socket.read() {
            Ok(message) => Ok(Some(message)),
            Err(Error::Io(err)) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// What tungstenite wrote (pongs, a close reply), to be sent.
    pub fn take_output(&mut self) -> Option<Bytes> {
        // Pushes out a reply tungstenite queued but has not written yet.
        let _ = self.socket.flush();
        let output = &mut self.socket.get_mut().output;
        (!output.is_empty()).then(|| Bytes::from(std::mem::take(output)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7u8, 1, 2, 3];
        assert!(payload.len() < 126);
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn text_arrives_whole_even_when_fed_a_byte_at_a_time() {
        let mut codec = ClientFrames::new(1024);
        let frame = client_frame(0x1, b"hello");
        for byte in &frame[..frame.len() - 1] {
            codec.feed(&[*byte]);
            assert!(codec.next().expect("valid so far").is_none());
        }
        codec.feed(&frame[frame.len() - 1..]);
        assert_eq!(
            codec.next().expect("valid"),
            Some(Message::Text("hello".into()))
        );
        assert!(codec.take_output().is_none(), "nothing to answer");
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_through_the_output() {
        let mut codec = ClientFrames::new(1024);
        codec.feed(&client_frame(0x9, b"p"));
        assert_eq!(
            codec.next().expect("valid"),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert!(codec.next().expect("nothing more").is_none());
        let pong = codec.take_output().expect("a pong");
        assert_eq!(
            &pong[..],
            &[0x8a, 1, b'p'],
            "unmasked pong echoing the payload"
        );
    }

    #[test]
    fn frames_over_the_limit_and_unmasked_frames_are_errors() {
        let mut codec = ClientFrames::new(4);
        codec.feed(&client_frame(0x1, b"too long"));
        assert!(matches!(codec.next(), Err(Error::Capacity(_))));
        let mut codec = ClientFrames::new(1024);
        codec.feed(&[0x81, 2, b'h', b'i']);
        assert!(codec.next().is_err(), "a client must mask its frames");
    }
}
