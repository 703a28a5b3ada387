//! Rules both sides must agree on, defined once: the relay enforces them, the page checks
//! them before sending (and sizes its inputs by them), and the load tool respects them.
//!
//! Text and name limits are the relay's *defaults*; an operator may change them with
//! `RELAY_MAX_TEXT_BYTES` / `RELAY_MAX_NAME_CHARS`, and the relay's answer is then the
//! authority (the page shows its error).

/// Longest room name, in bytes. Room names appear in URLs, logs and Redis keys, so they are
/// kept short and free of characters that need escaping anywhere.
pub const MAX_ROOM_LEN: usize = 64;

/// Default longest message text, in bytes of UTF-8 after trimming.
pub const DEFAULT_MAX_TEXT_BYTES: usize = 4096;

/// Default longest sender name, in characters after trimming.
pub const DEFAULT_MAX_NAME_CHARS: usize = 32;

/// Default longest a long poll is held, in seconds: below the 60 s idle timeout common in
/// proxies. The page asks for exactly this `wait`; the relay caps any `wait` at its own
/// `RELAY_LONGPOLL_MAX`, whose default this is.
pub const DEFAULT_LONGPOLL_MAX_SECS: u64 = 25;

/// Whether `name` is a valid room name: 1 to [`MAX_ROOM_LEN`] bytes of `A-Z a-z 0-9 _ -`.
pub fn is_valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_accept_the_documented_alphabet_only() {
        assert!(is_valid_room("lobby"));
        assert!(is_valid_room("A-z_09"));
        assert!(is_valid_room(&"r".repeat(MAX_ROOM_LEN)));
        for bad in ["", "a b", "a/b", "é", "a.b", "a%20"] {
            assert!(!is_valid_room(bad), "{bad:?}");
        }
        assert!(!is_valid_room(&"r".repeat(MAX_ROOM_LEN + 1)));
    }
}
