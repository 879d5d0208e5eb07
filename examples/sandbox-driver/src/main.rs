//! `sandbox-driver`: serves the sample sandbox driver on a Unix socket until
//! SIGINT or SIGTERM, then removes the socket file.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Sample wasmgate sandbox driver (gRPC + REST on one Unix socket).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the Unix socket to listen on (a stale socket there is replaced).
    #[arg(long, env = "SANDBOX_DRIVER_SOCKET")]
    socket: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();

    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            _ = sigint.recv() => tracing::info!("SIGINT received"),
        }
    };

    let listener = sandbox_driver::bind(&args.socket).with_context(|| format!("binding {}", args.socket.display()))?;
    tracing::info!(socket = %args.socket.display(), "sandbox driver listening");
    let served = sandbox_driver::serve(listener, shutdown).await;
    if let Err(e) = std::fs::remove_file(&args.socket) {
        tracing::warn!(error = %e, socket = %args.socket.display(), "removing socket file");
    }
    served.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
