use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use relay::config::{Cli, Command};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.command == Some(Command::Healthcheck) {
        return Ok(match relay::healthcheck::check(cli.config.addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("unhealthy: {why}");
                ExitCode::FAILURE
            }
        });
    }
    if let Err(invalid) = cli.config.validate() {
        // Exit code 2, as for any other command-line mistake (clap uses it too).
        eprintln!("error: {invalid}");
        return Ok(ExitCode::from(2));
    }
    // Held until exit: dropping it flushes the log.
    let _log = relay::logging::init(cli.config.log_format);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(cli.config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: relay::config::Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    relay::shutdown::cancel_on_signal(shutdown.clone()).context("cannot listen for signals")?;
    let listener = TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, static_dir = %config.static_dir.display(), "listening");
    relay::serve(listener, config, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
