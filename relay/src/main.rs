use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use relay::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, static_dir = %config.static_dir.display(), "listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(relay::shutdown::cancel_on_signal(shutdown.clone()));
    relay::serve(listener, config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
