//! A helper both buses use: a lock for short, non-async critical sections. It lives here
//! rather than in `mod.rs` so that the bus's interface file holds the interface only.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex that is only held for short, non-async updates.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the data is plain and still usable,
    // and refusing every later request would turn one bug into an outage.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
