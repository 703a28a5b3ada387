//! Turns SIGINT/SIGTERM into a cancelled token.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM. Later signals change nothing: shutdown is
/// already bounded by `RELAY_SHUTDOWN_DEADLINE`.
///
/// The handlers are registered before this returns, not when a task first runs: a supervisor
/// may send SIGTERM as soon as the relay logs that it is listening, and an unregistered signal
/// would kill the process without a graceful stop. Must be called within the Tokio runtime.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: shutting down");
            token.cancel();
        }
    });
    Ok(())
}
