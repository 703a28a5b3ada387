//! NDJSON framing on the page's side: bytes arrive in chunks that need not end at a line
//! (HTTP streaming's body, WebTransport's stream); [`Lines`] hands out each whole line once.

/// The longest line kept while waiting for its end: a relay's event is far smaller (a
/// message's text is bounded), so a longer one means the stream is not the relay's.
const MAX_LINE: usize = 1 << 20;

#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

/// The stream carried a line longer than any event the relay sends.
#[derive(Debug, PartialEq, Eq)]
pub struct Overlong;

impl Lines {
    /// Adds `chunk`; returns the lines it completed (without their `\n`), as text. A line
    /// that is not UTF-8 is dropped (it cannot be JSON). Empty lines are skipped.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, Overlong> {
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.partial);
            if let Ok(text) = String::from_utf8(line)
                && !text.trim().is_empty()
            {
                lines.push(text);
            }
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            return Err(Overlong);
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_come_out_whole_and_once() {
        let mut lines = Lines::default();
        assert_eq!(
            lines.push(b"{\"a\":1}\n{\"b\""),
            Ok(vec!["{\"a\":1}".into()])
        );
        assert_eq!(lines.push(b":2"), Ok(vec![]));
        assert_eq!(
            lines.push(b"}\n\n{\"c\":3}\n"),
            Ok(vec!["{\"b\":2}".into(), "{\"c\":3}".into()])
        );
    }

    #[test]
    fn a_character_split_between_chunks_is_decoded_whole() {
        let text = "{\"t\":\"é\"}\n".as_bytes();
        let at = text
            .iter()
            .position(|&b| b >= 0x80)
            .expect("a multi-byte character")
            + 1;
        let mut lines = Lines::default();
        assert_eq!(lines.push(&text[..at]), Ok(vec![]));
        assert_eq!(lines.push(&text[at..]), Ok(vec!["{\"t\":\"é\"}".into()]));
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(&vec![b'x'; MAX_LINE + 1]), Err(Overlong));
    }
}
