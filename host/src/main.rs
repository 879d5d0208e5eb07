//! The `wasmgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An API gateway whose authorization policy runs as hot-swappable
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasmgate", version, about)]
struct Cli {
    /// Log filter (tracing-subscriber `EnvFilter` syntax).
    #[arg(long, env = "WASMGATE_LOG", default_value = "info", global = true)]
    log: String,
    /// Log format.
    #[arg(long, env = "WASMGATE_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a YAML config file (`--set` and WASMGATE__PATH__TO__KEY
    /// override its scalar settings; `--dry-run` only checks it).
    Serve(wasmgate::cli::ServeArgs),
    /// Check a config file, or print the config's JSON Schema.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Shell completions (bash, zsh, fish, elvish, powershell) or the man
    /// page (`man`), on stdout.
    Completions {
        /// The shell, or `man` for a roff man page.
        target: CompletionTarget,
    },
    /// Run a self-contained demo on loopback: a development OIDC issuer, the
    /// sample sandbox driver and the embedded default components.
    Demo {
        /// Where the gateway listens (loopback addresses only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(subcommand)]
        action: Option<DemoAction>,
    },
    // Its help (what it issues) is `DevIssuerArgs`' doc comment.
    DevIssuer(wasmgate::demo::DevIssuerArgs),
    /// Inspect or test policy components.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Log in to a gateway (OAuth device flow, or client credentials for
    /// CI) and store the tokens in the credentials file.
    Login(wasmgate::login::cli::LoginArgs),
    /// Access tokens from the credentials file; gateway tokens (mint, revoke).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// One HTTP call through a gateway with the stored token (renewed if
    /// needed); exits 2 on a status of 400 or more.
    Call(wasmgate::login::cli::CallArgs),
    /// Gateway token keys: rotate and retire versions.
    Keys {
        #[command(subcommand)]
        action: wasmgate::cli::KeysAction,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Parse and validate a config, compile and check every component as
    /// `serve` would, run their golden cases and (with
    /// `--upstream-descriptors`) check every routed gRPC method is
    /// classified explicitly; exits 0 or 1.
    Check(wasmgate::cli::CheckArgs),
    /// Print the JSON Schema of the config file (docs/config.schema.json).
    Schema,
}

/// What `wasmgate completions` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionTarget {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page (roff), e.g. `wasmgate completions man > wasmgate.1`.
    Man,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Print a valid access token for a gateway, renewing it if needed.
    Print(wasmgate::login::cli::TokenPrintArgs),
    /// Mint a gateway token signed with the active key and print it on
    /// stdout (its kid, jti and expiry go to stderr).
    Mint(wasmgate::cli::MintArgs),
    /// Add a gateway token's jti to the revocation file (atomically; expired
    /// entries are pruned). Running gateways reject it after their reload.
    Revoke(wasmgate::cli::RevokeArgs),
}

#[derive(Debug, Subcommand)]
enum DemoAction {
    /// A small gRPC client for the demo's sandbox API, through the gateway.
    Call(wasmgate::demo::CallArgs),
}

#[derive(Debug, Subcommand)]
enum PluginAction {
    /// Print the WIT package and policy interfaces a component exports, or
    /// why it cannot be used.
    Check {
        /// The component file.
        file: PathBuf,
        /// The cases file (default: NAME.cases.yaml beside NAME.wasm, else
        /// beside the crate whose target/ holds it).
        #[arg(long)]
        cases: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
        /// Text, or one JSON document.
        #[arg(long, value_enum, default_value = "text")]
        output: wasmgate::cli::OutputFormat,
    },
    /// Run a component's golden cases; exits non-zero on any mismatch.
    Test {
        /// The component file.
        file: PathBuf,
        /// The cases file (default: NAME.cases.yaml beside NAME.wasm, else
        /// beside the crate whose target/ holds it).
        #[arg(long)]
        cases: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
        /// Text, or one JSON document.
        #[arg(long, value_enum, default_value = "text")]
        output: wasmgate::cli::OutputFormat,
    },
}

/// The limits a gateway would apply (`plugins:` in the config).
#[derive(Debug, clap::Args)]
struct Limits {
    /// Linear memory cap of one instance, bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_memory_bytes: usize,
    /// Deadline of one call, milliseconds.
    #[arg(long, default_value_t = 50)]
    deadline_ms: u64,
}

impl From<Limits> for wasmgate::cli::PluginLimits {
    fn from(l: Limits) -> Self {
        Self { max_memory_bytes: l.max_memory_bytes, deadline_ms: l.deadline_ms }
    }
}

/// Prints completions or the man page; no runtime or logging needed.
fn completions(target: CompletionTarget) -> ExitCode {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let shell = match target {
        CompletionTarget::Bash => Shell::Bash,
        CompletionTarget::Zsh => Shell::Zsh,
        CompletionTarget::Fish => Shell::Fish,
        CompletionTarget::Elvish => Shell::Elvish,
        CompletionTarget::Powershell => Shell::PowerShell,
        CompletionTarget::Man => {
            return match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the man page: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    clap_complete::generate(shell, &mut cmd, "wasmgate", &mut std::io::stdout());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { target } => return completions(target),
        Command::Config { action: ConfigAction::Schema } => {
            return match serde_json::to_string_pretty(&wasmgate::config::schema()) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    init_logging(&cli.log, cli.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `workers:` sets the worker threads of `serve` (the runtime is built
    // before the config is served, so it is read here first).
    if let Command::Serve(args) = &cli.command
        && let Some(n) = wasmgate::cli::serve_workers(args)
    {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => wasmgate::cli::serve_with(args).await,
            Command::Config { action: ConfigAction::Check(args) } => wasmgate::cli::config_check(args).await,
            // Answered above, before the runtime.
            Command::Config { action: ConfigAction::Schema } | Command::Completions { .. } => Ok(ExitCode::SUCCESS),
            Command::Demo { listen, action: None } => wasmgate::demo::run(listen).await,
            Command::Demo { action: Some(DemoAction::Call(args)), .. } => wasmgate::demo::call(args).await,
            Command::DevIssuer(args) => wasmgate::demo::dev_issuer(args).await,
            Command::Plugin { action: PluginAction::Check { file, cases, limits, output } } => {
                wasmgate::cli::plugin_check(&file, cases.as_deref(), limits.into(), output).await
            }
            Command::Plugin { action: PluginAction::Test { file, cases, limits, output } } => {
                wasmgate::cli::plugin_test(&file, cases.as_deref(), limits.into(), output).await
            }
            Command::Login(args) => wasmgate::login::cli::login(args).await,
            Command::Token { action: TokenAction::Print(args) } => wasmgate::login::cli::token_print(args).await,
            Command::Token { action: TokenAction::Mint(args) } => wasmgate::cli::token_mint(args),
            Command::Token { action: TokenAction::Revoke(args) } => wasmgate::cli::token_revoke(args),
            Command::Call(args) => wasmgate::login::cli::call(args).await,
            Command::Keys { action } => wasmgate::cli::keys(action),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", wasmgate::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let format = match format {
        LogFormat::Text => wasmgate::telemetry::LogFormat::Text,
        LogFormat::Json => wasmgate::telemetry::LogFormat::Json,
    };
    wasmgate::telemetry::init_logging(filter, format);
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    #[test]
    fn dev_issuer_is_listed_and_its_help_says_what_it_issues() {
        let mut cli = Cli::command();
        let help = cli.render_help().to_string();
        assert!(help.contains("dev-issuer"), "listed in wasmgate --help:\n{help}");
        let sub = cli.find_subcommand_mut("dev-issuer").expect("dev-issuer");
        let help = sub.render_long_help().to_string();
        for what in [
            "iss",
            "aud",
            "realm_access.roles",
            "scope",
            "tenant",
            "--sub",
            "--tenant",
            "--role",
            "--scope",
            "--alg",
            "ES256",
            "RS256",
            "DEVELOPMENT ONLY",
        ] {
            assert!(help.contains(what), "{what} missing from dev-issuer --help:\n{help}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_and_config_check_take_overrides() {
        for args in [
            &[
                "wasmgate",
                "serve",
                "-c",
                "g.yaml",
                "--set",
                "a.b=1",
                "--set",
                "c=2",
                "--listen",
                "0.0.0.0:1",
                "--dry-run",
            ][..],
            &["wasmgate", "config", "check", "g.yaml", "--credentials-driver-socket", "/s", "--output", "json"],
            &["wasmgate", "config", "check", "g.yaml", "--upstream-descriptors", "d.binpb"],
            &["wasmgate", "token", "mint", "-c", "g.yaml", "--subject", "s", "--output", "json"],
        ] {
            let cli = Cli::try_parse_from(args);
            assert!(cli.is_ok(), "{args:?}: {cli:?}");
        }
        assert!(Cli::try_parse_from(["wasmgate", "config", "check", "g.yaml", "--output", "yaml"]).is_err());
    }

    #[test]
    fn plugin_check_takes_a_cases_file() {
        let cli = Cli::try_parse_from(["wasmgate", "plugin", "check", "x.wasm", "--cases", "x.cases.yaml"]);
        assert!(cli.is_ok(), "{cli:?}");
    }
}
