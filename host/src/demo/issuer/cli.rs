//! `wasmgate dev-issuer`: the development issuer on its own, its tokens in
//! a file or on stdout, key rotation on SIGHUP.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::{DevAlg, DevClaims, DevIssuer};

/// Development only: an OIDC issuer on loopback that mints tokens (your
/// subject, tenant, roles and scopes; ES256 or RS256) for trying a gateway.
///
/// It serves `http://127.0.0.1:PORT/.well-known/openid-configuration` and
/// the JWKS with a key generated at start (thrown away on exit, so its
/// tokens stop verifying then). Each token has `iss` =
/// `http://127.0.0.1:PORT`, `aud` = `--audience`, `sub`, `iat`, `nbf`, `exp`,
/// the roles in `realm_access.roles` (Keycloak's layout, which the built-in
/// claims-mapper reads), `scope` (space-separated) and `tenant` (left out
/// with `--tenant ''`; read it with the mapper's `tenant-claim: tenant`).
///
/// The first line on stdout is the issuer URL; the tokens follow on stdout,
/// one per line, unless `--out` names a file for them (written whole, then
/// renamed into place). `--public-key-pem` writes the signing key's public
/// half as PEM, for verifiers without JWKS (HAProxy's `jwt_verify`).
/// SIGHUP rotates the key: a new one signs, the JWKS keeps the previous
/// ones, and the tokens (and the PEM) are minted and written again with the
/// new key. A gateway trusts it with a provider
/// `{issuer: "http://127.0.0.1:PORT", audiences: [AUDIENCE],
/// algorithms: [ALG]}`. DEVELOPMENT ONLY.
#[derive(Debug, clap::Args)]
pub struct DevIssuerArgs {
    /// Port on 127.0.0.1 (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// `sub` of the token (with --tokens N > 1: SUB-0 … SUB-(N-1)).
    #[arg(long, default_value = "user")]
    sub: String,
    /// `tenant` of the token ('' leaves the claim out).
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// A role, in `realm_access.roles` (repeatable; default: user).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A scope, in `scope` (repeatable; default: sandbox.read sandbox.write).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The key's algorithm (RS256: a 2048-bit RSA key).
    #[arg(long, value_enum, default_value_t = DevAlg::Es256)]
    alg: DevAlg,
    /// `aud` of the token.
    #[arg(long, default_value = crate::demo::DEMO_AUDIENCE)]
    audience: String,
    /// Lifetime: `1h`, `30m`, `12h`, `3600s`, `7d` or seconds.
    #[arg(long, default_value = "1h", value_parser = crate::cli::parse_ttl)]
    ttl: Duration,
    /// How many tokens to mint (distinct subjects).
    #[arg(long, default_value_t = 1)]
    tokens: usize,
    /// Write the tokens to this file, one per line, instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the signing key's public key to this file as PEM
    /// (SubjectPublicKeyInfo), rewritten on each rotation.
    #[arg(long)]
    public_key_pem: Option<PathBuf>,
}

impl DevIssuerArgs {
    /// The claims of the `i`-th token (of [`DevIssuerArgs::tokens`]).
    fn subject(&self, i: usize) -> String {
        if self.tokens > 1 { format!("{}-{i}", self.sub) } else { self.sub.clone() }
    }

    fn roles(&self) -> Vec<&str> {
        if self.roles.is_empty() { vec!["user"] } else { self.roles.iter().map(String::as_str).collect() }
    }

    fn scope(&self) -> String {
        if self.scopes.is_empty() { "sandbox.read sandbox.write".to_owned() } else { self.scopes.join(" ") }
    }

    /// Mints every token the arguments ask for, on every core.
    pub(crate) fn mint(&self, issuer: &DevIssuer) -> anyhow::Result<Vec<String>> {
        let (roles, scope) = (self.roles(), self.scope());
        let ttl_seconds = i64::try_from(self.ttl.as_secs()).context("--ttl is out of range")?;
        issuer.mint_many(self.tokens.max(1), |i| {
            let subject = self.subject(i);
            issuer.claims(&DevClaims {
                subject: &subject,
                audience: &self.audience,
                roles: &roles,
                scope: &scope,
                tenant: &self.tenant,
                ttl_seconds,
            })
        })
    }

    /// Mints the tokens with the key that signs now and writes them (to
    /// `--out`, else stdout) and the public key (to `--public-key-pem`).
    fn publish(&self, issuer: &DevIssuer) -> anyhow::Result<usize> {
        let tokens = self.mint(issuer)?;
        let mut text = tokens.join("\n");
        text.push('\n');
        match &self.out {
            Some(out) => write_whole(out, text.as_bytes())?,
            None => print!("{text}"),
        }
        if let Some(pem) = &self.public_key_pem {
            write_whole(pem, issuer.public_key_pem().as_bytes())?;
        }
        use std::io::Write as _;
        std::io::stdout().flush().context("write to stdout")?;
        Ok(tokens.len())
    }
}

/// Writes `path` whole: a temporary file beside it, then a rename, so a
/// reader never sees half a token list.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().with_context(|| format!("{} names no file", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// Runs `wasmgate dev-issuer` until SIGINT or SIGTERM; SIGHUP rotates the key.
pub async fn dev_issuer(args: DevIssuerArgs) -> anyhow::Result<ExitCode> {
    let issuer = DevIssuer::start_with(args.port, args.alg).await?;
    println!("{}", issuer.issuer());
    let started = std::time::Instant::now();
    let minted = args.publish(&issuer)?;
    eprintln!(
        "dev-issuer {} (DEVELOPMENT ONLY): {} {} token(s) for aud={} sub={} tenant={} roles={} scope={:?}, valid {} s, \
         kid={}, minted in {:.1} s{}{}",
        issuer.issuer(),
        minted,
        args.alg.as_str(),
        args.audience,
        if args.tokens > 1 { format!("{}-0…", args.sub) } else { args.sub.clone() },
        if args.tenant.is_empty() { "(none)" } else { &args.tenant },
        args.roles().join(","),
        args.scope(),
        args.ttl.as_secs(),
        issuer.kid(),
        started.elapsed().as_secs_f64(),
        args.out.as_ref().map(|o| format!(", written to {}", o.display())).unwrap_or_default(),
        args.public_key_pem.as_ref().map(|p| format!(", public key PEM in {}", p.display())).unwrap_or_default(),
    );
    let shutdown = crate::cli::shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangups = hangups();
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(ExitCode::SUCCESS),
            Some(()) = hangups.recv() => {
                let started = std::time::Instant::now();
                let kid = issuer.rotate()?;
                let minted = args.publish(&issuer)?;
                eprintln!(
                    "dev-issuer rotated: kid={kid} signs now, JWKS [{}]; {minted} token(s) minted again in {:.1} s{}",
                    issuer.published_kids().join(", "),
                    started.elapsed().as_secs_f64(),
                    args.out.as_ref().map(|o| format!(", written to {}", o.display())).unwrap_or_default(),
                );
            }
        }
    }
}

/// One message per SIGHUP (none where there are no such signals).
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // A rotation already asked for covers this one too.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "dev-issuer: no SIGHUP handler, key rotation disabled"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use clap::Parser as _;
    use jsonwebtoken::Algorithm;
    use serde_json::{Value, json};

    #[derive(Debug, clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: DevIssuerArgs,
    }

    fn parse(args: &[&str]) -> DevIssuerArgs {
        Cmd::try_parse_from(std::iter::once("dev-issuer").chain(args.iter().copied())).expect("valid arguments").args
    }

    fn payload(token: &str) -> Value {
        let part = token.split('.').nth(1).expect("payload");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
    }

    fn header(token: &str) -> Value {
        let part = token.split('.').next().expect("header");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("json")
    }

    /// Verifies `token` with the issuer's published JWK.
    fn verify(token: &str, jwk: &Value, alg: Algorithm, audience: &str) -> Value {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).expect("jwk");
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut v = jsonwebtoken::Validation::new(alg);
        v.set_audience(&[audience]);
        jsonwebtoken::decode::<Value>(token, &key, &v).expect("verifies").claims
    }

    #[tokio::test]
    async fn claims_come_from_the_options_and_verify_with_the_published_key() {
        for alg in [DevAlg::Es256, DevAlg::Rs256] {
            let args = parse(&[
                "--sub",
                "alice",
                "--tenant",
                "acme",
                "--role",
                "user",
                "--role",
                "auditor",
                "--scope",
                "a.read",
                "--scope",
                "b.write",
                "--alg",
                alg.as_str(),
                "--audience",
                "gw",
                "--ttl",
                "30m",
            ]);
            let issuer = DevIssuer::start_with(0, args.alg).await.expect("issuer");
            let tokens = args.mint(&issuer).expect("mint");
            assert_eq!(tokens.len(), 1);
            assert_eq!(header(&tokens[0])["alg"], alg.as_str());
            let jwks: Value =
                reqwest::get(format!("{}/jwks.json", issuer.issuer())).await.expect("jwks").json().await.expect("json");
            let jwk = &jwks["keys"][0];
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], header(&tokens[0])["kid"]);
            let claims = verify(&tokens[0], jwk, alg.jwt(), "gw");
            assert_eq!(claims["iss"], issuer.issuer());
            assert_eq!((claims["sub"].as_str(), claims["tenant"].as_str()), (Some("alice"), Some("acme")));
            assert_eq!(claims["realm_access"]["roles"], json!(["user", "auditor"]));
            assert_eq!(claims["scope"], "a.read b.write");
            assert_eq!(claims["exp"].as_i64().zip(claims["iat"].as_i64()).map(|(e, i)| e - i), Some(1800));
        }
    }

    #[tokio::test]
    async fn defaults_and_several_tokens() {
        let args = parse(&["--tokens", "3", "--tenant", ""]);
        assert_eq!(args.alg, DevAlg::Es256);
        let issuer = DevIssuer::start_with(0, args.alg).await.expect("issuer");
        let tokens = args.mint(&issuer).expect("mint");
        let subs: Vec<Value> = tokens.iter().map(|t| payload(t)["sub"].clone()).collect();
        assert_eq!(subs, [json!("user-0"), json!("user-1"), json!("user-2")]);
        let claims = payload(&tokens[0]);
        assert!(claims.get("tenant").is_none(), "--tenant '' leaves the claim out: {claims}");
        assert_eq!(
            (claims["aud"].as_str(), claims["scope"].as_str()),
            (Some(crate::demo::DEMO_AUDIENCE), Some("sandbox.read sandbox.write"))
        );
        assert_eq!(claims["realm_access"]["roles"], json!(["user"]));
        assert!(Cmd::try_parse_from(["dev-issuer", "--alg", "HS256"]).is_err(), "only ES256 and RS256");
    }

    #[tokio::test]
    async fn out_and_pem_are_written_whole_and_again_after_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (out, pem) = (dir.path().join("tokens"), dir.path().join("key.pem"));
        let (out_s, pem_s) = (out.display().to_string(), pem.display().to_string());
        let args = parse(&["--alg", "RS256", "--tokens", "5", "--out", &out_s, "--public-key-pem", &pem_s]);
        let issuer = DevIssuer::start_with(0, args.alg).await.expect("issuer");
        assert_eq!(args.publish(&issuer).expect("publish"), 5);
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        let first = read(&out);
        assert_eq!(first.lines().count(), 5);
        assert!(first.lines().all(|t| header(t)["kid"] == issuer.kid()), "{first}");
        let first_pem = read(&pem);
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(first_pem.as_bytes()).expect("PEM");
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&[crate::demo::DEMO_AUDIENCE]);
        for t in first.lines() {
            jsonwebtoken::decode::<Value>(t, &key, &v).expect("a token verifies with the PEM");
        }
        let new_kid = issuer.rotate().expect("rotate");
        args.publish(&issuer).expect("publish");
        let second = read(&out);
        assert_eq!(second.lines().count(), 5);
        assert!(second.lines().all(|t| header(t)["kid"] == new_kid.as_str()), "{second}");
        assert_ne!(read(&pem), first_pem, "the PEM follows the signing key");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left behind: {left:?}");
    }
}
