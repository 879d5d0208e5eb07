//! The edges of the command line: `serve`, `plugin check` and `plugin test`;
//! gateway tokens and their keys in [`tokens`].

mod tokens;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, PluginsConfig};
use crate::plugins::{CaseFile, PluginEngine};
use crate::server::{Gateway, Listener, TlsFiles};

pub use tokens::{KeysAction, MintArgs, RevokeArgs, keys, parse_ttl, token_mint, token_revoke};

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

/// Limits for the offline plugin commands, as `plugins:` in the config.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    /// `plugins.max_memory_bytes`.
    pub max_memory_bytes: usize,
    /// `plugins.deadline_ms`.
    pub deadline_ms: u64,
}

impl PluginLimits {
    fn engine(self) -> anyhow::Result<PluginEngine> {
        let cfg = PluginsConfig {
            max_memory_bytes: self.max_memory_bytes,
            deadline_ms: self.deadline_ms,
            max_instances: 16,
            ..PluginsConfig::default()
        };
        Ok(PluginEngine::new(&cfg)?)
    }
}

/// `wasmgate plugin check FILE`: exit 0 with the WIT package, the exports
/// and the golden cases beside it, or exit 1 and why it cannot be used.
pub async fn plugin_check(file: &Path, limits: PluginLimits) -> anyhow::Result<ExitCode> {
    let engine = limits.engine()?;
    match engine.load_file(file).await {
        Ok(plugin) => {
            println!("{}: usable policy component", file.display());
            println!("  wit:     {}", crate::plugins::WIT_PACKAGE);
            println!("  sha256:  {}", plugin.sha256());
            println!("  size:    {} bytes", std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
            println!("  exports: {}", plugin.exports());
            for iface in plugin.exports().iter() {
                println!("    - {}", iface.wit_name());
            }
            let cases = crate::plugins::cases_path_for(file);
            match CaseFile::beside(file) {
                Ok(Some(c)) => println!(
                    "  golden cases: {} in {} (run them with `wasmgate plugin test`)",
                    c.len(),
                    cases.display()
                ),
                Ok(None) => println!("  golden cases: none ({} does not exist)", cases.display()),
                Err(e) => {
                    println!("  golden cases: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: cannot be used: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `wasmgate plugin test FILE [--cases CASES]`: runs the golden cases and
/// exits 1 if any case fails or the component cannot be loaded.
pub async fn plugin_test(file: &Path, cases: Option<&Path>, limits: PluginLimits) -> anyhow::Result<ExitCode> {
    let cases_path = cases.map(Path::to_owned).unwrap_or_else(|| crate::plugins::cases_path_for(file));
    let cases = CaseFile::load(&cases_path)?;
    let engine = limits.engine()?;
    let plugin = match engine.load_file(file).await {
        Ok(p) => p,
        Err(e) => {
            println!("{}: cannot be used: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{} ({}) against {}", file.display(), plugin.exports(), cases_path.display());
    let started = std::time::Instant::now();
    let results = cases.run(&engine, &plugin).await;
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    for r in &results {
        match &r.failure {
            None => println!("  ok    {}", r.name),
            Some(why) => println!("  FAIL  {}: {why}", r.name),
        }
    }
    println!("{} passed, {failed} failed ({} ms)", results.len() - failed, started.elapsed().as_millis());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
