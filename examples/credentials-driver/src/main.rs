//! `credentials-driver`: serves the reference credentials driver on a Unix
//! socket until SIGINT or SIGTERM, then removes the socket file.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Reference wasmgate credentials driver (gRPC on a Unix socket).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The driver's YAML configuration file.
    #[arg(long, short, env = "CREDENTIALS_DRIVER_CONFIG")]
    config: PathBuf,
    /// Unix socket to listen on; overrides `socket:` in the config file.
    #[arg(long, env = "CREDENTIALS_DRIVER_SOCKET")]
    socket: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();
    let config = credentials_driver::Config::load(&args.config)?;
    let socket = args
        .socket
        .or_else(|| config.socket.clone())
        .context("no socket: pass --socket or set `socket:` in the config file")?;
    let driver = credentials_driver::Driver::start(&config)?;

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            _ = sigint.recv() => tracing::info!("SIGINT received"),
        }
    };

    let listener = credentials_driver::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    tracing::info!(socket = %socket.display(), credentials = driver.service.list().len(), "credentials driver listening");
    let served = credentials_driver::serve(listener, driver.service, shutdown).await;
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!(error = %e, socket = %socket.display(), "removing socket file");
    }
    served.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
