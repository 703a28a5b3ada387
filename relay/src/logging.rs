//! The relay's log: where it goes, in which format, and the summary of refusals.
//!
//! Log lines go through a non-blocking writer: a dedicated thread writes them to stderr, and a
//! request never waits for a terminal, a full pipe or a slow log collector. When the writer
//! falls behind by [`BUFFERED_LINES`], further lines are dropped (and counted by the writer)
//! rather than queued without bound or allowed to block.
//!
//! Refusals are logged at debug, one line each (see `error`); at info, one line every
//! `RELAY_LOG_SUMMARY` tells how many requests were refused since the last, by reason.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::metrics::Metrics;

/// Lines the writer may be behind before it drops new ones.
const BUFFERED_LINES: usize = 16_384;

/// `RELAY_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global logger; keep the guard until exit (dropping it flushes the log).
/// `RUST_LOG` chooses the levels (default `info`).
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// Every `period`, logs how many requests were refused since the last time, by reason (and
/// nothing when none were).
pub async fn summarize_refusals(
    metrics: Arc<Metrics>,
    period: Duration,
    shutdown: CancellationToken,
) {
    let mut last = metrics.rejections();
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = metrics.rejections();
        let since: BTreeMap<&str, u64> = now
            .iter()
            .map(|(reason, count)| (*reason, count - last.get(reason).copied().unwrap_or(0)))
            .filter(|(_, count)| *count > 0)
            .collect();
        last = now;
        if since.is_empty() {
            continue;
        }
        let total: u64 = since.values().sum();
        let by_reason = since
            .iter()
            .map(|(reason, count)| format!("{reason}={count}"))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!(total, by_reason = %by_reason, ?period, "requests refused");
    }
}
