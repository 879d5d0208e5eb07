//! The edges of the command line: `serve`, `plugin check` and `plugin test`;
//! `config check` in [`config_check`] (gRPC coverage in [`grpc_coverage`]);
//! gateway tokens and their keys in [`tokens`].

mod config_check;
mod grpc_coverage;
mod tokens;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, PluginsConfig};
use crate::plugins::{CaseFile, PluginEngine};
use crate::server::{Gateway, Listener, TlsFiles};

pub use config_check::{Check, CheckArgs, Report, check, config_check};
pub use grpc_coverage::{Coverage, MethodCoverage};
pub use tokens::{KeysAction, MintArgs, RevokeArgs, keys, parse_ttl, token_mint, token_revoke};

/// How a command prints its structured result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Lines for people (the default).
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Prints `value` as one pretty JSON document on stdout (a closed pipe,
/// `| head`, is not an error).
fn print_json(value: &impl serde::Serialize) {
    use std::io::Write as _;
    let text = serde_json::to_string_pretty(value)
        // Only a map with non-string keys fails; none of ours has one.
        .unwrap_or_else(|e| serde_json::json!({"ok": false, "errors": [e.to_string()]}).to_string());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Overrides of scalar settings (`config::overrides`): `--set` and the
/// named flags, which are shorthands for it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverrideArgs {
    /// Set a scalar setting, `path.to.key=value` (repeatable; the value is
    /// read as a YAML scalar). Wins over `WASMGATE__PATH__TO__KEY=value`
    /// environment variables, which win over the file.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Shorthand for `--set listen=ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Shorthand for `--set admin.listen=ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Shorthand for `--set drivers.credentials.socket=PATH`.
    #[arg(long, value_name = "PATH")]
    pub credentials_driver_socket: Option<String>,
    /// Shorthand for `--set plugins.dir=DIR`.
    #[arg(long, value_name = "DIR")]
    pub plugins_dir: Option<String>,
}

impl OverrideArgs {
    /// Every flag as `path=value`: the named ones first, then each `--set`
    /// in order (so a `--set` of the same key wins).
    pub fn flags(&self) -> Vec<String> {
        let named = [
            ("listen", &self.listen),
            ("admin.listen", &self.admin_listen),
            ("drivers.credentials.socket", &self.credentials_driver_socket),
            ("plugins.dir", &self.plugins_dir),
        ];
        named
            .into_iter()
            .filter_map(|(path, v)| v.as_ref().map(|v| format!("{path}={v}")))
            .chain(self.set.iter().cloned())
            .collect()
    }
}

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The config file.
    #[arg(long, short, env = "WASMGATE_CONFIG")]
    pub config: std::path::PathBuf,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Check the config and its components as `config check` does, print
    /// the result and exit 0 or 1 without serving.
    #[arg(long)]
    pub dry_run: bool,
}

/// `wasmgate serve`: installs the overrides (flags and `WASMGATE__…`
/// variables) for the process, so start and every reload read the same
/// config, then checks (`--dry-run`) or serves.
pub async fn serve_with(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = crate::config::Overrides::from_env_and_flags(&args.overrides.flags());
    if args.dry_run {
        let report = check(&args.config, None, overrides).await;
        report.print(OutputFormat::Text);
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    crate::config::overrides::install(overrides.map_err(crate::config::ConfigError::from)?);
    serve(&args.config).await
}

/// The async runtime's worker threads for `serve`: `workers:` from the
/// config with its overrides, or `None` for the default (the available
/// parallelism). A config that cannot be read gives `None` here; `serve`
/// then reports why.
pub fn serve_workers(args: &ServeArgs) -> Option<usize> {
    let overrides = crate::config::Overrides::from_env_and_flags(&args.overrides.flags()).ok()?;
    Config::load_with(&args.config, &overrides).ok()?.workers
}

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
    if let Some(why) = missing_keys_dir(&cfg, path) {
        anyhow::bail!(why);
    }
    if let Some(w) = unlisted_methods_warning(&cfg) {
        tracing::warn!("{w}");
    }
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
    // Reload first: it remembers the config it started with, which a
    // reload from the admin listener compares against.
    crate::reload::start(&tasks, gateway.clone(), config_path.clone(), cfg.plugins.dir.clone())
        .context("watch the config and plugin folders")?;
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
    let (first, second) = shutdown_signals();
    let served = gateway.serve_until(listener, first, second).await;
    tasks.shutdown(std::time::Duration::from_secs(5)).await;
    telemetry.shutdown().await;
    served?;
    tracing::info!("wasmgate stopped");
    Ok(ExitCode::SUCCESS)
}

/// Why `serve` cannot start with `cfg` (read from `path`): the gateway
/// token key folder is missing.
fn missing_keys_dir(cfg: &Config, path: &Path) -> Option<String> {
    let dir = cfg.auth.gateway_tokens.as_ref().and_then(|g| g.keys_dir.as_ref())?;
    (!dir.exists()).then(|| {
        format!(
            "auth.gateway_tokens.keys_dir {} does not exist; create it with its first key: `wasmgate keys rotate \
             --config {}`",
            dir.display(),
            path.display()
        )
    })
}

/// The embedded classifier without `methods` makes every call `bearer`
/// requiring its wildcard scope (`wasmgate:all`): a new authorizer that
/// checks required scopes then only ever sees denials. Said once at start.
fn unlisted_methods_warning(cfg: &Config) -> Option<String> {
    let bare: Vec<(&str, &crate::config::BindingConfig)> = cfg
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.classifier.as_ref().unwrap_or(&cfg.policy.classifier)))
        .filter(|(_, b)| b.plugin == "builtin:default-classifier" && !b.settings.contains_key("methods"))
        .collect();
    let (_, first) = bare.first()?;
    let routes: Vec<&str> = bare.iter().map(|(r, _)| *r).collect();
    let scope = first.settings.get("wildcard-scope").and_then(|v| v.as_str()).unwrap_or("wasmgate:all");
    Some(format!(
        "the classifier builtin:default-classifier has no `methods` (routes {}): every call on these routes is \
         `bearer` and requires the scope {scope:?}, so an authorizer that checks required scopes denies them all; \
         list your methods in its settings (docs/plugins.md, \"Run it in a gateway\")",
        routes.join(",")
    ))
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
/// why it cannot be used. `--output json` prints the same as one document
/// (`ok`, `file`, `wit`, `sha256`, `size`, `exports`, `cases`, `errors`).
pub async fn plugin_check(
    file: &Path,
    cases: Option<&Path>,
    limits: PluginLimits,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let engine = limits.engine()?;
    let text = output == OutputFormat::Text;
    let mut doc = serde_json::json!({"ok": false, "file": file.display().to_string(), "errors": []});
    let plugin = match engine.load_file(file).await {
        Ok(plugin) => plugin,
        Err(e) => {
            if text {
                println!("{}: cannot be used: {e}", file.display());
            } else {
                doc["errors"] = serde_json::json!([format!("cannot be used: {e}")]);
                print_json(&doc);
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let exports: Vec<&str> = plugin.exports().iter().map(|i| i.wit_name()).collect();
    if text {
        println!("{}: usable policy component", file.display());
        println!("  wit:     {}", crate::plugins::WIT_PACKAGE);
        println!("  sha256:  {}", plugin.sha256());
        println!("  size:    {size} bytes");
        println!("  exports: {}", plugin.exports());
        for iface in &exports {
            println!("    - {iface}");
        }
    }
    doc["wit"] = crate::plugins::WIT_PACKAGE.into();
    doc["sha256"] = plugin.sha256().into();
    doc["size"] = size.into();
    doc["exports"] = exports.into();
    let code = match find_cases(file, cases) {
        Ok(Some(c)) => {
            if text {
                println!(
                    "  golden cases: {} in {} (run them with `wasmgate plugin test`)",
                    c.len(),
                    c.path().display()
                );
                print_warnings(&c);
            }
            doc["cases"] = serde_json::json!({
                "count": c.len(), "file": c.path().display().to_string(), "warnings": c.warnings(),
            });
            ExitCode::SUCCESS
        }
        Ok(None) => {
            if text {
                println!("  golden cases: none ({})", not_found(file));
            }
            doc["cases"] = serde_json::Value::Null;
            ExitCode::SUCCESS
        }
        Err(e) => {
            if text {
                println!("  golden cases: {e}");
            }
            doc["errors"] = serde_json::json!([format!("golden cases: {e}")]);
            ExitCode::FAILURE
        }
    };
    if !text {
        doc["ok"] = (code == ExitCode::SUCCESS).into();
        print_json(&doc);
    }
    Ok(code)
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
/// cannot be loaded. `--output json` prints one document (`ok`, `file`,
/// `cases_file`, `passed`, `failed`, `results`: `name`, `ok`, `failure`).
pub async fn plugin_test(
    file: &Path,
    cases: Option<&Path>,
    limits: PluginLimits,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let Some(cases) = find_cases(file, cases)? else {
        anyhow::bail!("no golden cases for {} ({})", file.display(), not_found(file));
    };
    let text = output == OutputFormat::Text;
    let cases_path = cases.path().to_owned();
    let engine = limits.engine()?;
    let plugin = match engine.load_file(file).await {
        Ok(p) => p,
        Err(e) => {
            if text {
                println!("{}: cannot be used: {e}", file.display());
            } else {
                print_json(&serde_json::json!({
                    "ok": false, "file": file.display().to_string(), "errors": [format!("cannot be used: {e}")],
                }));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if text {
        println!("{} ({}) against {}", file.display(), plugin.exports(), cases_path.display());
        print_warnings(&cases);
    }
    let started = std::time::Instant::now();
    let results = cases.run(&engine, &plugin).await;
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    if text {
        for r in &results {
            match &r.failure {
                None => println!("  ok    {}", r.name),
                Some(why) => println!("  FAIL  {}: {why}", r.name),
            }
        }
        println!("{} passed, {failed} failed ({} ms)", results.len() - failed, started.elapsed().as_millis());
    } else {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "ok": r.failure.is_none(), "failure": r.failure}))
            .collect();
        print_json(&serde_json::json!({
            "ok": failed == 0,
            "file": file.display().to_string(),
            "cases_file": cases_path.display().to_string(),
            "warnings": cases.warnings(),
            "passed": results.len() - failed,
            "failed": failed,
            "results": list,
        }));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
