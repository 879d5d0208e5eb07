//! The edges of the command line: `serve` and `plugin check`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, PluginsConfig};
use crate::plugins::PluginEngine;
use crate::server::{Gateway, Listener, TlsFiles};

/// `wasmgate serve --config FILE`.
pub async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    let gateway = Gateway::new(&cfg).await?;
    let tls = cfg.tls.as_ref().map(|t| TlsFiles { cert: t.cert.clone(), key: t.key.clone() });
    let listener = Listener::bind(cfg.listen, tls.as_ref()).await?;
    let config_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    if let Some(admin) = &cfg.admin {
        let listener = tokio::net::TcpListener::bind(admin.listen)
            .await
            .with_context(|| format!("cannot bind the admin listener on {}", admin.listen))?;
        let (gateway, config_path) = (gateway.clone(), config_path.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::admin::serve(listener, gateway, config_path).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        address = %crate::server::describe(addr, listener.is_tls()),
        routes = cfg.routes.len(),
        providers = cfg.auth.providers.len(),
        "wasmgate serving"
    );
    crate::reload::spawn(gateway.clone(), config_path, cfg.plugins.dir.clone())
        .context("watch the config and plugin folders")?;
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("wasmgate stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining connections");
}

/// `wasmgate plugin check FILE`: exit 0 and the exports, or exit 1 and why not.
pub async fn plugin_check(file: &Path) -> anyhow::Result<ExitCode> {
    let engine = PluginEngine::new(&PluginsConfig::default())?;
    match engine.load_file(file).await {
        Ok(plugin) => {
            println!("{}: usable policy component (wasmgate:policy@0.1.0)", file.display());
            println!("  sha256:  {}", plugin.sha256());
            println!("  exports: {}", plugin.exports());
            for iface in plugin.exports().iter() {
                println!("    - {}", iface.wit_name());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: cannot be used: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
