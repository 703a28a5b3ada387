//! The poison-tolerant lock for short, non-async critical sections, used by the buses, the
//! limiters and the connection bookkeeping.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex that is only held for short, non-async updates.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic mid-update elsewhere; the data is plain and still usable,
    // and refusing every later request would turn one bug into an outage.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
