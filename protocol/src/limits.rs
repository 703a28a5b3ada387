//! Rules both sides must agree on, defined once: the relay enforces them, the page checks
//! them before sending (and sizes its inputs by them), and the load tool respects them.
//!
//! Text and name limits are the relay's *defaults*; an operator may change them with
//! `RELAY_MAX_TEXT_BYTES` / `RELAY_MAX_NAME_CHARS`, and the relay's answer is then the
//! authority (the page shows its error).

/// The longest validity browsers accept for a self-signed certificate they are told to trust
/// by its hash (WebTransport's `serverCertificateHashes`): 14 days.
pub const MAX_HASHED_CERT_VALIDITY_SECS: u64 = 14 * 24 * 3600;

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

/// Most messages one poll answer (or one read of history) carries; a larger `limit` is capped,
/// not refused, and the answer says `more`. Bounds the copy each answer makes and, with Redis,
/// how long one read holds the server that every relay shares.
pub const MAX_READ_MESSAGES: usize = 256;

/// Most bytes of messages one poll answer (or one read of history) carries, whatever the
/// texts: at least one message, then as many as fit.
pub const MAX_READ_BYTES: usize = 1024 * 1024;

/// Longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// How long the relay remembers an idempotency key by default, in seconds
/// (`RELAY_DEDUP_WINDOW`): longer than any page waits before sending again.
pub const DEFAULT_DEDUP_WINDOW_SECS: u64 = 300;

/// Whether `key` is a valid idempotency key: 1 to [`MAX_KEY_LEN`] bytes of
/// `A-Z a-z 0-9 . _ : -` (it travels in a header, a Redis key and the message's JSON).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `name` is a valid room name: 1 to [`MAX_ROOM_LEN`] bytes of `A-Z a-z 0-9 _ -`.
pub fn is_valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROOM_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a sender name or a message text breaks the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing left after trimming.
    Empty,
    /// More characters (names) or bytes (text) than the limit.
    TooLong,
    /// A control character, which would let one sender forge line breaks or terminal escapes
    /// in other people's views and in logs (and costs six bytes once JSON-escaped).
    ControlCharacter,
    /// An invisible or direction-changing character in a name: it would let `alice` + U+200B
    /// pass for `alice`, or reorder how a line reads.
    InvisibleCharacter,
}

/// Whether `c` is invisible or changes the direction of text: zero-width characters, joiners,
/// bidirectional marks, embeddings, overrides and isolates, and the other format characters
/// Unicode says renderers may ignore (its `Default_Ignorable_Code_Point` set, written out
/// here because the ranges are few and stable, and a table crate would cost the page bytes).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// A sender name as the relay accepts it: trimmed, 1 to `max_chars` characters, no control
/// characters and nothing invisible or direction-changing ([`is_invisible`]): a name is how
/// people tell each other apart, so two names that look the same must be the same.
pub fn check_name(raw: &str, max_chars: usize) -> Result<&str, Refusal> {
    let name = raw.trim();
    match name.chars().count() {
        0 => Err(Refusal::Empty),
        n if n > max_chars => Err(Refusal::TooLong),
        _ if name.chars().any(char::is_control) => Err(Refusal::ControlCharacter),
        _ if name.chars().any(is_invisible) => Err(Refusal::InvisibleCharacter),
        _ => Ok(name),
    }
}

/// Message text as the relay accepts it: trimmed, non-empty, at most `max_bytes` bytes of
/// UTF-8, and no control characters but tab and line feed. Inner line breaks are kept:
/// multi-line messages are legitimate and pages render them as text. Joiners and variation
/// selectors are kept too (emoji sequences need them); the page isolates every text, so
/// direction marks in one message cannot reorder another.
pub fn check_text(raw: &str, max_bytes: usize) -> Result<&str, Refusal> {
    let text = raw.trim();
    if text.is_empty() {
        Err(Refusal::Empty)
    } else if text.len() > max_bytes {
        Err(Refusal::TooLong)
    } else if text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        Err(Refusal::ControlCharacter)
    } else {
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_counted_in_characters_and_free_of_control_characters() {
        assert_eq!(check_name("  bob ", 4), Ok("bob"));
        assert_eq!(
            check_name("ééé", 4),
            Ok("ééé"),
            "4 characters allowed, 3 given"
        );
        assert_eq!(check_name("abcde", 4), Err(Refusal::TooLong));
        assert_eq!(check_name("   ", 4), Err(Refusal::Empty));
        assert_eq!(check_name("a\u{7}b", 4), Err(Refusal::ControlCharacter));
    }

    #[test]
    fn names_refuse_invisible_and_direction_changing_characters() {
        for bad in [
            "alice\u{200B}",
            "al\u{200D}ice",
            "\u{202E}ecila",
            "\u{2066}bob\u{2069}",
            "b\u{FEFF}ob",
            "bob\u{E0041}",
            "\u{061C}bob",
        ] {
            assert_eq!(
                check_name(bad, 32),
                Err(Refusal::InvisibleCharacter),
                "{bad:?}"
            );
        }
        assert_eq!(check_name("Zoë", 32), Ok("Zoë"));
        assert_eq!(
            check_name("محمد", 32),
            Ok("محمد"),
            "right-to-left letters are fine"
        );
    }

    #[test]
    fn text_refuses_control_characters_but_tab_and_line_feed() {
        assert_eq!(check_text("a\tb\nc", 16), Ok("a\tb\nc"));
        for bad in ["a\u{1}b", "a\rb", "a\u{1b}[31mb", "a\u{7f}b", "a\u{85}b"] {
            assert_eq!(
                check_text(bad, 16),
                Err(Refusal::ControlCharacter),
                "{bad:?}"
            );
        }
        // An emoji family (zero-width joiners) and a heart with its variation selector.
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467} \u{2764}\u{FE0F}";
        assert_eq!(check_text(family, 64), Ok(family));
        assert_eq!(check_text("\u{202E}reversed", 16), Ok("\u{202E}reversed"));
    }

    #[test]
    fn text_is_trimmed_and_counted_in_bytes() {
        assert_eq!(check_text(" hi \n", 8), Ok("hi"));
        assert_eq!(check_text("a\nb", 8), Ok("a\nb"), "inner line break kept");
        assert_eq!(check_text(" \t\n", 8), Err(Refusal::Empty));
        // 5 characters, 10 bytes.
        assert_eq!(check_text("ééééé", 8), Err(Refusal::TooLong));
        assert_eq!(check_text("12345678", 8), Ok("12345678"));
    }

    #[test]
    fn keys_accept_the_documented_alphabet_and_length_only() {
        assert!(is_valid_key("tab-3f9c.12:7_a"));
        assert!(is_valid_key(&"k".repeat(MAX_KEY_LEN)));
        for bad in ["", "a b", "a\nb", "é", "a/b", "a\"b"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
        assert!(!is_valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
    }

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
