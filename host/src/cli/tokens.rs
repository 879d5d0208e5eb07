//! `wasmgate token mint|revoke` and `wasmgate keys rotate|retire`: the
//! operator's side of gateway tokens (`token print` is the login CLI's). The file changes themselves live in
//! [`crate::tokens::files`]; a running gateway picks them up by watching.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{Config, GatewayTokensConfig};
use crate::tokens::{GatewayTokens, MintRequest, files};

/// `wasmgate keys ...`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysAction {
    /// Add a new random key version and make it active; older versions
    /// keep verifying until retired. Prints the new version on stdout.
    Rotate(RotateArgs),
    /// Remove a key version: tokens whose kid names it stop verifying once
    /// the gateway has reloaded the folder. The active version cannot be retired.
    Retire(RetireArgs),
}

/// Options of `token mint`.
#[derive(Debug, clap::Args)]
pub struct MintArgs {
    /// The gateway's config file (its `auth.gateway_tokens`).
    #[arg(long, short, env = "WASMGATE_CONFIG")]
    config: PathBuf,
    /// `sub` of the token.
    #[arg(long)]
    subject: String,
    /// `tenant` of the token.
    #[arg(long)]
    tenant: Option<String>,
    /// A role (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A scope (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Lifetime: `90d`, `12h`, `30m`, `3600s` or seconds (at most 366 days).
    #[arg(long, default_value = "90d", value_parser = parse_ttl)]
    ttl: Duration,
    /// `text`: the token on stdout, its kid, jti and expiry on stderr;
    /// `json`: one document `{token, kid, jti, exp}` on stdout.
    #[arg(long, value_enum, default_value = "text")]
    output: super::OutputFormat,
}

/// Options of `token revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The gateway's config file (its `auth.gateway_tokens.revoked_file`).
    #[arg(long, short, env = "WASMGATE_CONFIG")]
    config: PathBuf,
    /// The token's `jti`.
    jti: String,
    /// The token's `exp` (Unix seconds), so the entry is pruned once the
    /// token has expired anyway; kept forever without it.
    #[arg(long)]
    expires_at: Option<i64>,
}

/// Where the key folder is.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct KeysDirArgs {
    /// The gateway's config file (its `auth.gateway_tokens.keys_dir`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The key folder itself.
    #[arg(long)]
    keys_dir: Option<PathBuf>,
}

/// Options of `keys rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    dir: KeysDirArgs,
    /// Name of the new version (default: `v<N+1>` after the highest `vN`).
    #[arg(long)]
    version: Option<String>,
}

/// Options of `keys retire`.
#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    #[command(flatten)]
    dir: KeysDirArgs,
    /// The version to remove.
    version: String,
}

/// The config as `serve` reads it from the same environment: its
/// `WASMGATE__…` overrides apply (these commands have no `--set`).
fn gateway_tokens(config: &Path) -> anyhow::Result<(Config, GatewayTokensConfig)> {
    let overrides = crate::config::Overrides::from_env_and_flags(&[]).map_err(crate::config::ConfigError::from)?;
    let cfg = Config::load_with(config, &overrides)?;
    let g = cfg
        .auth
        .gateway_tokens
        .clone()
        .with_context(|| format!("{} has no auth.gateway_tokens section", config.display()))?;
    Ok((cfg, g))
}

/// `wasmgate keys rotate|retire`.
pub fn keys(action: KeysAction) -> anyhow::Result<ExitCode> {
    match action {
        KeysAction::Rotate(a) => {
            let dir = keys_dir(&a.dir)?;
            let r = files::rotate(&dir, a.version.as_deref())?;
            println!("{}", r.active);
            match &r.previous {
                Some(previous) => eprintln!(
                    "{} is now active in {}; {previous} still verifies until `wasmgate keys retire {previous}`",
                    r.active,
                    dir.display(),
                ),
                None => {
                    let what = if r.created_folder { "created the key folder" } else { "started the key folder" };
                    eprintln!(
                        "{what} {} with its first key {} (active); set auth.gateway_tokens.keys_dir to it and mint \
                         tokens with `wasmgate token mint --config FILE --subject NAME`",
                        dir.display(),
                        r.active
                    );
                    warn_if_open(&dir);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysAction::Retire(a) => {
            let dir = keys_dir(&a.dir)?;
            files::retire(&dir, &a.version)?;
            eprintln!("retired {}: its tokens stop verifying once the gateway has reloaded the folder", a.version);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A key folder others can read is worth a warning (the gateway reads it
/// as it is; Kubernetes mounts Secrets `0644` unless told otherwise).
fn warn_if_open(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(dir)
        && m.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "warning: {} is open to group or others (mode {:o}); `chmod 700 {}`",
            dir.display(),
            m.permissions().mode() & 0o777,
            dir.display()
        );
    }
}

fn keys_dir(a: &KeysDirArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &a.keys_dir {
        return Ok(d.clone());
    }
    let Some(config) = &a.config else { bail!("give --config or --keys-dir") };
    let (_, g) = gateway_tokens(config)?;
    g.keys_dir.with_context(|| {
        format!("{}: auth.gateway_tokens has inline keys; rotation from the CLI needs keys_dir", config.display())
    })
}

/// `wasmgate token mint`.
pub fn token_mint(a: MintArgs) -> anyhow::Result<ExitCode> {
    let (cfg, g) = gateway_tokens(&a.config)?;
    let max = cfg.auth.max_token_lifetime_seconds;
    if max > 0 && a.ttl.as_secs() > max {
        bail!("--ttl exceeds auth.max_token_lifetime_seconds ({max}): the gateway would reject the token");
    }
    if let Some(dir) = &g.keys_dir
        && !dir.exists()
    {
        bail!(
            "auth.gateway_tokens.keys_dir {} does not exist; create it with its first key: `wasmgate keys rotate \
             --config {}`",
            dir.display(),
            a.config.display()
        );
    }
    let tokens = GatewayTokens::new(&g)?;
    let req = MintRequest { subject: a.subject, tenant: a.tenant, roles: a.roles, scopes: a.scopes, ttl: a.ttl };
    let token = tokens.mint(&req)?;
    let parsed = crate::jose::parse(&token).context("parse the minted token")?;
    let claim = |n: &str| parsed.claims.get(n).map(ToString::to_string).unwrap_or_default();
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    if a.output == super::OutputFormat::Json {
        super::print_json(&serde_json::json!({
            "token": token,
            "kid": kid,
            "jti": parsed.claims.get("jti"),
            "exp": parsed.claims.get("exp"),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("kid={kid} jti={} exp={}", claim("jti").trim_matches('"'), claim("exp"));
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `wasmgate token revoke JTI`.
pub fn token_revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let (cfg, g) = gateway_tokens(&a.config)?;
    let path = g
        .revoked_file
        .with_context(|| format!("{}: auth.gateway_tokens.revoked_file is not set", a.config.display()))?;
    let leeway = i64::try_from(cfg.auth.leeway_seconds).unwrap_or(i64::MAX);
    let added = files::revoke(&path, &a.jti, a.expires_at, crate::jose::now_unix(), leeway)?;
    if added {
        eprintln!("revoked {} in {}", a.jti, path.display());
    } else {
        eprintln!("{} was already revoked in {}", a.jti, path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `90d`, `12h`, `30m`, `3600s`, `2w` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration like 90d, 12h, 30m or 3600s"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use s, m, h, d or w)")),
    };
    let secs = n.checked_mul(mult).filter(|&v| v > 0).ok_or_else(|| format!("{s:?} is out of range"))?;
    if secs > crate::tokens::MAX_MINT_TTL {
        return Err(format!("{s:?} exceeds 366 days"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_ttl("3600s"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("3600"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_ttl("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "d", "0s", "-1d", "1.5h", "10y", "367d", "99999999999999999999d", "1d2h"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
