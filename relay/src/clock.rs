//! The wall clock in Unix milliseconds: a message's `ts`, and the reference the delivery-lag
//! metric measures against. One definition, so that both always read the same clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch. A clock before 1970 gives 0 rather than
/// failing a publish.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
