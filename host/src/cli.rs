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

/// An error and its causes on one line, each said once: a cause whose text
/// is already part of the message before it (`cannot read x: No such file
/// or directory (os error 2)` caused by `No such file or directory (os
/// error 2)`) is not repeated.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `wasmgate serve --config FILE`.
pub async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(path)?;
    if let Some(dir) = cfg.auth.gateway_tokens.as_ref().and_then(|g| g.keys_dir.as_ref())
        && !dir.exists()
    {
        anyhow::bail!(
            "auth.gateway_tokens.keys_dir {} does not exist; create it with its first key: `wasmgate keys rotate \
             --config {}`",
            dir.display(),
            path.display()
        );
    }
    warn_about_unlisted_methods(&cfg);
    let telemetry = crate::telemetry::start(&cfg.telemetry)?;
    let gateway = Gateway::new(&cfg).await?;
    // Every background task starts here and stops at the end of `serve`.
    let tasks = crate::tasks::Tasks::new();
    gateway.start(&tasks)?;
    let tls = cfg.tls.as_ref().map(|t| TlsFiles { cert: t.cert.clone(), key: t.key.clone() });
    let listener = Listener::bind(cfg.listen, tls.as_ref()).await?;
    // The folder canonical, the name kept: the file may be a symlink that
    // a ConfigMap update swaps (`gateway.yaml -> ..data/gateway.yaml`).
    let config_path = crate::config::paths::config_file(path);
    if let Some(admin) = &cfg.admin {
        crate::admin::start(admin, &tasks, gateway.clone(), config_path.clone()).await?;
    }
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        address = %crate::server::describe(addr, listener.is_tls()),
        routes = cfg.routes.len(),
        providers = cfg.auth.providers.len(),
        "wasmgate serving"
    );
    crate::reload::start(&tasks, gateway.clone(), config_path, cfg.plugins.dir.clone())
        .context("watch the config and plugin folders")?;
    let (first, second) = shutdown_signals();
    let served = gateway.serve_until(listener, first, second).await;
    tasks.shutdown(std::time::Duration::from_secs(5)).await;
    telemetry.shutdown().await;
    served?;
    tracing::info!("wasmgate stopped");
    Ok(ExitCode::SUCCESS)
}

/// The embedded classifier without `methods` makes every call `bearer`
/// requiring its wildcard scope (`wasmgate:all`): a new authorizer that
/// checks required scopes then only ever sees denials. Said once at start.
fn warn_about_unlisted_methods(cfg: &Config) {
    let bare: Vec<(&str, &crate::config::BindingConfig)> = cfg
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.classifier.as_ref().unwrap_or(&cfg.policy.classifier)))
        .filter(|(_, b)| b.plugin == "builtin:default-classifier" && !b.settings.contains_key("methods"))
        .collect();
    if let Some((_, first)) = bare.first() {
        let routes: Vec<&str> = bare.iter().map(|(r, _)| *r).collect();
        let scope = first.settings.get("wildcard-scope").and_then(|v| v.as_str()).unwrap_or("wasmgate:all");
        tracing::warn!(
            routes = %routes.join(","),
            "the classifier builtin:default-classifier has no `methods`: every call on these routes is `bearer` and \
             requires the scope {scope:?}, so an authorizer that checks required scopes denies them all; list your \
             methods in its settings (docs/plugins.md, \"Run it in a gateway\")"
        );
    }
}

/// The first SIGINT or SIGTERM (drain), and the second (stop now). Both
/// listen from their first poll, so no signal falls between them.
pub fn shutdown_signals() -> (impl Future<Output = ()> + Send, impl Future<Output = ()> + Send) {
    (shutdown_signal(), second_signal())
}

/// Resolves on the second SIGINT or SIGTERM.
async fn second_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return std::future::pending().await;
        };
        for _ in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        tracing::warn!("second shutdown signal: not waiting for the drain");
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await
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
    tracing::info!("shutdown signal received");
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

/// `wasmgate plugin check FILE [--cases CASES]`: exit 0 with the WIT
/// package, the exports and the golden cases found (`--cases`, else
/// `NAME.cases.yaml` beside the `.wasm` or beside the crate), or exit 1 and
/// why it cannot be used.
pub async fn plugin_check(file: &Path, cases: Option<&Path>, limits: PluginLimits) -> anyhow::Result<ExitCode> {
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
            match find_cases(file, cases) {
                Ok(Some(c)) => {
                    println!(
                        "  golden cases: {} in {} (run them with `wasmgate plugin test`)",
                        c.len(),
                        c.path().display()
                    );
                    print_warnings(&c);
                }
                Ok(None) => println!("  golden cases: none ({})", not_found(file)),
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

/// `--cases`, or the first cases file found for `file`.
fn find_cases(file: &Path, cases: Option<&Path>) -> Result<Option<CaseFile>, crate::plugins::CasesError> {
    match cases {
        Some(path) => CaseFile::load(path).map(Some),
        None => CaseFile::find(file),
    }
}

fn not_found(file: &Path) -> String {
    let tried: Vec<String> =
        crate::plugins::cases_candidates_for(file).iter().map(|p| p.display().to_string()).collect();
    format!("looked for {}; pass --cases FILE", tried.join(", "))
}

fn print_warnings(cases: &CaseFile) {
    for w in cases.warnings() {
        println!("  warning: {w}");
    }
}

/// `wasmgate plugin test FILE [--cases CASES]`: runs the golden cases
/// (`--cases`, else `NAME.cases.yaml` beside the `.wasm` or beside the
/// crate) and exits 1 if any case fails, none are found, or the component
/// cannot be loaded.
pub async fn plugin_test(file: &Path, cases: Option<&Path>, limits: PluginLimits) -> anyhow::Result<ExitCode> {
    let Some(cases) = find_cases(file, cases)? else {
        anyhow::bail!("no golden cases for {} ({})", file.display(), not_found(file));
    };
    let cases_path = cases.path().to_owned();
    let engine = limits.engine()?;
    let plugin = match engine.load_file(file).await {
        Ok(p) => p,
        Err(e) => {
            println!("{}: cannot be used: {e}", file.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("{} ({}) against {}", file.display(), plugin.exports(), cases_path.display());
    print_warnings(&cases);
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
