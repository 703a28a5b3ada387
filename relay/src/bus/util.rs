//! Two small helpers both buses use: a lock for short, non-async critical sections and the
//! wall clock in Unix milliseconds. They live here rather than in `mod.rs` so that the bus's
//! interface file holds the interface only; they are not part of it.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks a mutex that is only held for short, non-async updates.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the data is plain and still usable,
    // and refusing every later request would turn one bug into an outage.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Now, in milliseconds since the Unix epoch: a message's `ts`. A clock before 1970 gives 0
/// rather than failing a publish.
pub(super) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
