//! `wasmgate config check FILE` and `serve --dry-run`: everything `serve`
//! checks before it listens, without listening.
//!
//! The config is read with its overrides, parsed and validated; the gateway
//! is then built exactly as `serve` builds it ([`Gateway::new`]: every
//! component compiled, its world checked against the role it is bound to,
//! golden cases run, providers and routes set up), without starting its
//! background tasks. With a descriptor set, every method of every routed
//! gRPC service is checked to be classified by an explicit entry
//! ([`super::grpc_coverage`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::{OutputFormat, OverrideArgs, grpc_coverage};
use crate::config::{Config, Overrides, overrides};
use crate::server::Gateway;

/// Options of `config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file.
    pub file: PathBuf,
    /// A serialized protobuf `FileDescriptorSet` of the upstreams' services
    /// (`protoc --descriptor_set_out`, `buf build -o`): every method of every
    /// routed gRPC service must be classified by an explicit entry.
    #[arg(long, value_name = "FILE")]
    pub upstream_descriptors: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Text (one line per check) or one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// An applied override, as shown (secret values redacted).
#[derive(Debug, Clone, Serialize)]
struct ShownOverride {
    path: String,
    value: String,
    source: overrides::Source,
}

/// Everything `config check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether every check passed.
    pub ok: bool,
    /// The config file.
    pub file: String,
    /// Each check, in order.
    pub checks: Vec<Check>,
    /// Why it failed (empty when `ok`).
    pub errors: Vec<String>,
    /// What `serve` would warn about.
    pub warnings: Vec<String>,
    /// The overrides applied, in order (later wins).
    overrides: Vec<ShownOverride>,
    /// The gRPC methods checked, with `--upstream-descriptors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<grpc_coverage::Coverage>,
    /// The file with its overrides applied, secrets redacted (defaults are
    /// not filled in); absent if it cannot be parsed.
    pub config: Option<serde_json::Value>,
}

impl Report {
    fn new(file: &Path) -> Self {
        Self {
            ok: true,
            file: file.display().to_string(),
            checks: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            overrides: Vec::new(),
            grpc: None,
            config: None,
        }
    }

    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok: true, detail: detail.into() });
    }

    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        let detail = detail.into();
        self.ok = false;
        self.errors.push(detail.clone());
        self.checks.push(Check { name: name.into(), ok: false, detail });
    }

    /// Prints the report: one line per check, or one JSON document.
    pub fn print(&self, format: OutputFormat) {
        match format {
            OutputFormat::Json => super::print_json(self),
            OutputFormat::Text => self.print_text(),
        }
    }

    fn print_text(&self) {
        println!("{}", self.file);
        for o in &self.overrides {
            let source = match o.source {
                overrides::Source::Env => "environment",
                overrides::Source::Flag => "flag",
            };
            println!("  override  {} = {} (from the {source})", o.path, o.value);
        }
        for c in &self.checks {
            println!("  {}  {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail);
        }
        if let Some(grpc) = &self.grpc {
            for m in &grpc.methods {
                let how = match (&m.entry, m.explicit) {
                    (Some(e), _) => format!("entry {e}"),
                    (None, Some(false)) => "UNCLASSIFIED (default-deny fallthrough)".to_owned(),
                    (None, _) => "unverified (custom classifier)".to_owned(),
                };
                println!("    {} {}: {} — {how}", m.route, m.method, m.class);
            }
        }
        for w in &self.warnings {
            println!("  warning: {w}");
        }
        if self.ok {
            println!("config ok");
        } else {
            println!("config refused: {} error(s)", self.errors.len());
        }
    }
}

/// `wasmgate config check FILE`: exit 0 if every check passes, else 1.
pub async fn config_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides::from_env_and_flags(&args.overrides.flags());
    let report = check(&args.file, args.upstream_descriptors.as_deref(), overrides).await;
    report.print(args.output);
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Runs every check on `file` with `overrides`.
pub async fn check(
    file: &Path,
    descriptors: Option<&Path>,
    overrides: Result<Overrides, crate::config::OverrideError>,
) -> Report {
    let mut report = Report::new(file);
    let overrides = match overrides {
        Ok(o) => o,
        Err(e) => {
            report.fail("overrides", e.to_string());
            return report;
        }
    };
    report.overrides = overrides
        .iter()
        .map(|o| ShownOverride { path: o.path(), value: o.shown_value().to_owned(), source: o.source() })
        .collect();
    if let Ok(tree) = Config::merged_tree(file, &overrides) {
        report.config = serde_json::to_value(overrides::redacted(&tree)).ok();
    }
    let cfg = match Config::load_with(file, &overrides) {
        Ok(cfg) => {
            report.pass(
                "config",
                format!(
                    "parsed and valid: {} route(s), {} identity provider(s), listen {}",
                    cfg.routes.len(),
                    cfg.auth.providers.len(),
                    cfg.listen
                ),
            );
            cfg
        }
        Err(e) => {
            report.fail("config", e.to_string());
            return report;
        }
    };
    report.warnings.extend(cfg.startup_warnings());
    report.warnings.extend(super::unlisted_methods_warning(&cfg));
    match super::missing_keys_dir(&cfg, file) {
        Some(why) => report.fail("gateway token keys", why),
        None => {
            if cfg.auth.gateway_tokens.is_some() {
                report.pass("gateway token keys", "present");
            }
        }
    }
    let gateway = match Gateway::new(&cfg).await {
        Ok(g) => g,
        Err(e) => {
            report.fail("gateway", e.to_string());
            return report;
        }
    };
    let policy = gateway.policy();
    for p in policy.plugins() {
        let cases = match p.golden_cases {
            0 => "no golden cases".to_owned(),
            n => format!("{n} golden case(s) passed"),
        };
        report.pass(
            format!("component {}", p.plugin.name()),
            format!("{} sha256:{} exports {}; {cases}", p.source, p.plugin.sha256(), p.plugin.exports()),
        );
    }
    for b in policy.bindings() {
        let shadow = b.shadow.map(|s| format!(" (shadow {s})")).unwrap_or_default();
        report.pass(format!("binding {} {}", b.role, scope_text(&b.scope)), format!("{}{shadow}", b.plugin));
    }
    let grpc_routes =
        cfg.routes.iter().filter(|r| matches!(r.matches, crate::config::RouteMatch::GrpcService(_))).count();
    if descriptors.is_none() && grpc_routes > 0 {
        report.warnings.push(format!(
            "{grpc_routes} gRPC route(s): pass --upstream-descriptors FILE to check every method is classified explicitly"
        ));
    }
    if let Some(path) = descriptors {
        match grpc_coverage::services(path) {
            Ok(services) => {
                let coverage = grpc_coverage::check(&cfg, &policy, &services).await;
                let n = coverage.methods.len();
                if coverage.errors.is_empty() {
                    report
                        .pass("grpc methods", format!("{n} method(s) of routed services, each classified explicitly"));
                } else {
                    for e in &coverage.errors {
                        report.fail("grpc methods", e.clone());
                    }
                }
                report.warnings.extend(coverage.warnings.iter().cloned());
                report.grpc = Some(coverage);
            }
            Err(e) => report.fail("grpc methods", super::error_text(&e)),
        }
    }
    report
}

fn scope_text(scope: &crate::plugins::Scope) -> String {
    use crate::plugins::Scope;
    match scope {
        Scope::Global => "(global)".to_owned(),
        Scope::Route(n) => format!("(route {n})"),
        Scope::Provider(n) => format!("(provider {n})"),
        Scope::Tenant(n) => format!("(tenant {n})"),
    }
}
