//! Test support: a real relay on port 0 ([`Relay`], which owns it) and plain clients for
//! each transport ([`Client`] for HTTP, [`Ws`], [`Sse`], [`Ndjson`]), a real Redis ([`redis`]) and the
//! harness of the several-relays tests ([`cluster`]).
//!
//! Every wait goes through [`within`], so a missing message fails the test with a message
//! that says what was expected instead of hanging it.

pub mod client;
pub mod cluster;
pub mod fault;
pub mod ndjson;
pub mod process;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod wt;

use std::future::Future;
use std::time::Duration;

use protocol::Message;

pub use client::*;
pub use ndjson::Ndjson;
pub use relay::*;
pub use wt::Wt;

/// Socket buffer size, in bytes, for tests about clients that stop reading: set explicitly on
/// both ends so that such tests do not depend on the kernel's defaults or autotuning.
pub const SMALL_BUFFER: u32 = 4096;

/// How long any single expected event may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a whole flood (many requests, on a machine whose cores are busy) may take.
pub const LONG_PATIENCE: Duration = Duration::from_secs(120);

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    within_for(PATIENCE, what, future).await
}

pub async fn within_long<F: Future>(what: &str, future: F) -> F::Output {
    within_for(LONG_PATIENCE, what, future).await
}

async fn within_for<F: Future>(patience: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(patience, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {patience:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns `Some`, every few milliseconds, within [`PATIENCE`]: for
/// state that is observable but not announced (a gauge in `/metrics`, a process exit).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// An HTTP client whose connections come from `local` (any 127.x.y.z works on Linux):
/// another client address, as the relay counts them.
pub fn http_from(local: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .expect("HTTP client")
}

pub fn texts(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

pub fn ids(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

/// Publishes 4 KB messages over `POST` (no stream of its own that could be too slow), twenty
/// at a time, until the relay reports that it let a slow reader go (`slow_consumer`): however
/// large the buffers on the way, this ends. `each` is given every published id as it goes.
/// Fails if more than one reader was let go. Returns how many were published.
pub async fn publish_until_one_is_let_go(
    relay: &Client,
    room: &str,
    mut each: impl AsyncFnMut(u64),
) -> u64 {
    let mut published = 0u64;
    within_long("the relay to let a slow reader go", async {
        loop {
            for _ in 0..20 {
                published += 1;
                let text = format!("{published} {}", "p".repeat(4000));
                let id = relay.post(room, "flood", &text).await;
                each(id).await;
            }
            let slow = relay
                .metric("relay_rejected_total{reason=\"slow_consumer\"}")
                .await;
            if slow.is_some_and(|n| n >= 1.0) {
                assert_eq!(
                    slow,
                    Some(1.0),
                    "one slow reader, and no one else, is let go"
                );
                break;
            }
        }
    })
    .await;
    published
}
