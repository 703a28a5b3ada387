//! Checks on everything a client names or says: rooms, sender names, message text.
//!
//! Each check turns raw input into a value that is known to be within the limits, so code past
//! the HTTP boundary never re-checks (and never forgets to check).
//!
//! A leaf module: it depends on `protocol` only and reports with its own [`Invalid`], which
//! the HTTP boundary (`error.rs`) converts. (It used to return the boundary's error type,
//! which made `error` → `bus` → `validate` → `error` a cycle.)

use std::fmt;
use std::sync::Arc;

use protocol::ErrorCode;
use protocol::limits::{
    MAX_KEY_LEN, MAX_ROOM_LEN, Refusal, check_name, check_text, is_valid_key, is_valid_room,
};

/// Input that breaks a rule: the stable code clients match on, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: ErrorCode,
    pub message: String,
}

impl Invalid {
    fn new(code: ErrorCode, message: impl Into<String>) -> Invalid {
        Invalid {
            code,
            message: message.into(),
        }
    }
}

/// A room name: `[A-Za-z0-9_-]{1,64}` (`protocol::limits`). Cheap to clone; it keys the bus
/// and appears in every message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub fn parse(raw: &str) -> Result<RoomName, Invalid> {
        if is_valid_room(raw) {
            Ok(RoomName(raw.into()))
        } else {
            Err(Invalid::new(
                ErrorCode::InvalidRoom,
                format!("room names are 1-{MAX_ROOM_LEN} characters of A-Z, a-z, 0-9, _ and -"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size limits on what clients say, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct TextLimits {
    /// Longest message text, in bytes of UTF-8 after trimming.
    pub max_text_bytes: usize,
    /// Longest sender name, in characters after trimming.
    pub max_name_chars: usize,
}

impl TextLimits {
    /// A sender name: the rule both sides share (`protocol::limits::check_name`), with the
    /// configured limit.
    pub fn name(&self, raw: &str) -> Result<String, Invalid> {
        match check_name(raw, self.max_name_chars) {
            Ok(name) => Ok(name.to_owned()),
            Err(Refusal::ControlCharacter) => Err(Invalid::new(
                ErrorCode::InvalidName,
                "names may not contain control characters",
            )),
            Err(Refusal::InvisibleCharacter) => Err(Invalid::new(
                ErrorCode::InvalidName,
                "names may not contain invisible or direction-changing characters",
            )),
            Err(Refusal::Empty | Refusal::TooLong) => Err(Invalid::new(
                ErrorCode::InvalidName,
                format!("names are 1-{} characters", self.max_name_chars),
            )),
        }
    }

    /// Message text: the rule both sides share (`protocol::limits::check_text`), with the
    /// configured limit.
    pub fn text(&self, raw: &str) -> Result<String, Invalid> {
        match check_text(raw, self.max_text_bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(Refusal::TooLong) => Err(Invalid::new(
                ErrorCode::TextTooLong,
                format!(
                    "message text is {} bytes; the limit is {}",
                    raw.trim().len(),
                    self.max_text_bytes
                ),
            )),
            Err(Refusal::ControlCharacter | Refusal::InvisibleCharacter) => Err(Invalid::new(
                ErrorCode::InvalidText,
                "message text may not contain control characters other than tab and line feed",
            )),
            Err(Refusal::Empty) => Err(Invalid::new(
                ErrorCode::InvalidText,
                "message text is empty",
            )),
        }
    }
}

/// An idempotency key as the relay accepts it (`protocol::limits::is_valid_key`).
pub fn key(raw: &str) -> Result<&str, Invalid> {
    if is_valid_key(raw) {
        Ok(raw)
    } else {
        Err(Invalid::new(
            ErrorCode::BadRequest,
            format!("an idempotency key is 1 to {MAX_KEY_LEN} characters of A-Z a-z 0-9 . _ : -"),
        ))
    }
}

/// A client id as the relay accepts it (`protocol::presence::is_valid_client_id`).
pub fn client_id(raw: &str) -> Result<&str, Invalid> {
    if protocol::presence::is_valid_client_id(raw) {
        Ok(raw)
    } else {
        Err(Invalid::new(
            ErrorCode::BadRequest,
            "a client id is 8 to 64 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TextLimits = TextLimits {
        max_text_bytes: 8,
        max_name_chars: 4,
    };

    #[test]
    fn room_names_accept_the_documented_alphabet() {
        assert!(RoomName::parse("lobby").is_ok());
        assert!(RoomName::parse("A-z_09").is_ok());
        assert!(RoomName::parse(&"r".repeat(MAX_ROOM_LEN)).is_ok());
    }

    #[test]
    fn room_names_reject_everything_else() {
        for bad in ["", "a b", "a/b", "é", "a.b", "a%20"] {
            let err = RoomName::parse(bad).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidRoom, "{bad:?}");
        }
        assert!(RoomName::parse(&"r".repeat(MAX_ROOM_LEN + 1)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_counted_in_characters() {
        assert_eq!(LIMITS.name("  bob ").expect("valid"), "bob");
        assert_eq!(LIMITS.name("ééé").expect("4 chars max, 3 given"), "ééé");
        assert_eq!(
            LIMITS.name("abcde").expect_err("too long").code,
            ErrorCode::InvalidName
        );
        assert_eq!(
            LIMITS.name("   ").expect_err("empty").code,
            ErrorCode::InvalidName
        );
        assert_eq!(
            LIMITS.name("a\u{7}b").expect_err("control").code,
            ErrorCode::InvalidName
        );
    }

    #[test]
    fn text_is_trimmed_and_counted_in_bytes() {
        assert_eq!(LIMITS.text(" hi \n").expect("valid"), "hi");
        assert_eq!(LIMITS.text("a\nb").expect("inner newline kept"), "a\nb");
        assert_eq!(
            LIMITS.text(" \t\n").expect_err("blank").code,
            ErrorCode::InvalidText
        );
        // 5 characters but 10 bytes.
        assert_eq!(
            LIMITS.text("ééééé").expect_err("too many bytes").code,
            ErrorCode::TextTooLong
        );
        assert!(LIMITS.text("12345678").is_ok());
    }
}
