//! WebSocket frames the relay sends (RFC 6455 §5.2): final, unmasked, so that one encoding
//! of a message serves every receiver. Reading the clients' (masked) frames is left to
//! tungstenite (`transport/ws/codec.rs`).

use bytes::{BufMut, Bytes, BytesMut};

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// The head of a final frame with `opcode` and a payload of `len` bytes (2 to 10 bytes).
pub fn head(opcode: u8, len: usize) -> Bytes {
    let mut head = BytesMut::with_capacity(10);
    head.put_u8(0x80 | opcode);
    match len {
        0..=125 => head.put_u8(len as u8),
        126..=0xffff => {
            head.put_u8(126);
            head.put_u16(len as u16);
        }
        _ => {
            head.put_u8(127);
            head.put_u64(len as u64);
        }
    }
    head.freeze()
}

/// A whole frame, head and payload in one buffer.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::from(&head(opcode, payload.len())[..]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// A close frame: the code, then the reason (at most 123 bytes, as control frames carry at
/// most 125).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_use_the_shortest_length_form() {
        assert_eq!(&head(TEXT, 5)[..], &[0x81, 5]);
        assert_eq!(&head(TEXT, 125)[..], &[0x81, 125]);
        assert_eq!(&head(TEXT, 126)[..], &[0x81, 126, 0, 126]);
        assert_eq!(&head(TEXT, 65_535)[..], &[0x81, 126, 0xff, 0xff]);
        assert_eq!(
            &head(TEXT, 65_536)[..],
            &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn frames_read_back_with_tungstenite() {
        use tungstenite::protocol::frame::FrameHeader;
        let text = "é".repeat(100);
        let bytes = frame(TEXT, text.as_bytes());
        let mut cursor = std::io::Cursor::new(&bytes[..]);
        let (header, len) = FrameHeader::parse(&mut cursor)
            .expect("valid")
            .expect("complete");
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(len as usize, text.len());
        assert_eq!(&bytes[cursor.position() as usize..], text.as_bytes());
        let closing = close(4008, &"x".repeat(200));
        assert_eq!(
            closing.len(),
            2 + 125,
            "a control frame carries at most 125 bytes"
        );
        assert_eq!(&closing[2..4], &4008u16.to_be_bytes());
    }
}
