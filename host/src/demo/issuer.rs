//! A development-only OIDC issuer: discovery and JWKS over HTTP on loopback,
//! a throwaway ES256 (or RS256) key generated at start, and a token minter.
//! Never use it for anything but demos and tests. `wasmgate dev-issuer`
//! runs it on its own ([`DevIssuerArgs`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The signing algorithm of a development issuer's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DevAlg {
    /// ECDSA P-256 with SHA-256.
    #[default]
    #[value(name = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, a 2048-bit key.
    #[value(name = "RS256")]
    Rs256,
}

impl DevAlg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    key: EncodingKey,
    alg: DevAlg,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.issuer).field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A token to mint.
#[derive(Debug, Clone)]
pub struct DevClaims<'a> {
    /// Subject.
    pub subject: &'a str,
    /// Audience.
    pub audience: &'a str,
    /// Realm roles (Keycloak layout: `realm_access.roles`).
    pub roles: &'a [&'a str],
    /// Space-separated scopes.
    pub scope: &'a str,
    /// Tenant claim (left out when empty).
    pub tenant: &'a str,
    /// Lifetime, seconds.
    pub ttl_seconds: i64,
}

/// A fresh P-256 signing key with its `kid` and public JWK, for the
/// development and test issuers.
pub(crate) struct DevKey {
    pub kid: String,
    pub jwk: Value,
    pub key: EncodingKey,
}

impl DevKey {
    /// Generates a P-256 key whose `kid` is `PREFIX-` and 16 hex digits of the key.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn generate(kid_prefix: &str) -> anyhow::Result<Self> {
        Self::generate_for(kid_prefix, DevAlg::Es256)
    }

    /// Generates a key for `alg` (RS256: 2048 bits) whose `kid` is `PREFIX-`
    /// and 16 hex digits of the public key.
    pub(crate) fn generate_for(kid_prefix: &str, alg: DevAlg) -> anyhow::Result<Self> {
        match alg {
            DevAlg::Es256 => Self::generate_ec(kid_prefix),
            DevAlg::Rs256 => Self::generate_rsa(kid_prefix),
        }
    }

    fn generate_rsa(kid_prefix: &str) -> anyhow::Result<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
        let pkcs8 = pair.as_der().map_err(|_| anyhow::anyhow!("cannot encode the generated RSA key"))?;
        let pkcs1 = pkcs8_private_key(pkcs8.as_ref()).context("unexpected PKCS#8 encoding of the RSA key")?;
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let kid = format!("{kid_prefix}-{}", hex::encode(n.get(..8).unwrap_or_default()));
        let jwk = json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(&n),
            "e": URL_SAFE_NO_PAD.encode(&e),
        });
        Ok(Self { kid, jwk, key: EncodingKey::from_rsa_der(pkcs1) })
    }

    fn generate_ec(kid_prefix: &str) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot parse the generated key"))?;
        let point = pair.public_key().as_ref();
        anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected public key encoding");
        let kid = format!("{kid_prefix}-{}", hex::encode(&point[1..9]));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Ok(Self { kid, jwk, key: EncodingKey::from_ec_der(pkcs8.as_ref()) })
    }
}

/// The `privateKey` octets of a PKCS#8 `PrivateKeyInfo` (for RSA: the
/// PKCS#1 `RSAPrivateKey`).
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    /// One DER element: (tag, contents, rest).
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, b) = b.split_first()?;
        let (len, b) = if first < 0x80 {
            (usize::from(first), b)
        } else {
            let n = usize::from(first & 0x7f);
            let (len_bytes, b) = b.split_at_checked(n)?;
            (len_bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)), b)
        };
        let (contents, rest) = b.split_at_checked(len)?;
        Some((tag, contents, rest))
    }
    let (0x30, info, _) = tlv(der)? else { return None };
    let (0x02, _version, rest) = tlv(info)? else { return None };
    let (0x30, _algorithm, rest) = tlv(rest)? else { return None };
    let (0x04, key, _) = tlv(rest)? else { return None };
    Some(key)
}

impl DevIssuer {
    /// Generates an ES256 key and serves discovery and JWKS on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// Like [`DevIssuer::start`], on a given loopback port.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::start_with(port, DevAlg::Es256).await
    }

    /// Like [`DevIssuer::start_on`], with a key for `alg`.
    pub async fn start_with(port: u16, alg: DevAlg) -> anyhow::Result<Self> {
        let DevKey { kid, jwk, key } = DevKey::generate_for("dev", alg)?;

        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .context("bind the dev issuer")?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "id_token_signing_alg_values_supported": [alg.as_str()],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        });
        let jwks = json!({ "keys": [jwk] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { Json::<Value>(d) }
                }),
            )
            .route(
                "/jwks.json",
                get(move || {
                    let k = jwks.clone();
                    async move { Json::<Value>(k) }
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "dev issuer stopped");
            }
        });
        Ok(Self { issuer, kid, key, alg })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The algorithm of its key.
    pub fn alg(&self) -> DevAlg {
        self.alg
    }

    /// The `kid` of its key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs arbitrary claims with the issuer's key (for tests of odd tokens).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// Mints an access token signed with the issuer's key.
    pub fn mint(&self, c: &DevClaims<'_>) -> anyhow::Result<String> {
        self.sign(&self.claims(c)?)
    }

    /// The claims [`DevIssuer::mint`] signs: `iss`, `aud`, `sub`, `iat`,
    /// `nbf`, `exp`, `realm_access.roles` (Keycloak's layout), `scope`
    /// (space-separated) and `tenant` (unless empty).
    pub fn claims(&self, c: &DevClaims<'_>) -> anyhow::Result<Value> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": c.audience,
            "sub": c.subject,
            "iat": now,
            "nbf": now,
            "exp": now + c.ttl_seconds,
            "realm_access": { "roles": c.roles },
            "scope": c.scope,
        });
        if !c.tenant.is_empty() {
            claims["tenant"] = c.tenant.into();
        }
        Ok(claims)
    }
}

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
/// one per line, unless `--out` names a file for them. A gateway trusts it
/// with a provider `{issuer: "http://127.0.0.1:PORT", audiences: [AUDIENCE],
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
    #[arg(long, default_value = super::DEMO_AUDIENCE)]
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

    /// Mints every token the arguments ask for.
    pub(crate) fn mint(&self, issuer: &DevIssuer) -> anyhow::Result<Vec<String>> {
        let (roles, scope) = (self.roles(), self.scope());
        let ttl_seconds = i64::try_from(self.ttl.as_secs()).context("--ttl is out of range")?;
        (0..self.tokens.max(1))
            .map(|i| {
                let subject = self.subject(i);
                issuer.mint(&DevClaims {
                    subject: &subject,
                    audience: &self.audience,
                    roles: &roles,
                    scope: &scope,
                    tenant: &self.tenant,
                    ttl_seconds,
                })
            })
            .collect()
    }
}

/// Runs `wasmgate dev-issuer` until SIGINT or SIGTERM.
pub async fn dev_issuer(args: DevIssuerArgs) -> anyhow::Result<ExitCode> {
    let issuer = DevIssuer::start_with(args.port, args.alg).await?;
    let tokens = args.mint(&issuer)?;
    println!("{}", issuer.issuer());
    let mut text = tokens.join("\n");
    text.push('\n');
    match &args.out {
        Some(out) => std::fs::write(out, text).with_context(|| format!("write {}", out.display()))?,
        None => print!("{text}"),
    }
    {
        use std::io::Write as _;
        std::io::stdout().flush().context("write to stdout")?;
    }
    eprintln!(
        "dev-issuer {} (DEVELOPMENT ONLY): {} {} token(s) for aud={} sub={} tenant={} roles={} scope={:?}, valid {} s{}",
        issuer.issuer(),
        tokens.len(),
        args.alg.as_str(),
        args.audience,
        if args.tokens > 1 { format!("{}-0…", args.sub) } else { args.sub.clone() },
        if args.tenant.is_empty() { "(none)" } else { &args.tenant },
        args.roles().join(","),
        args.scope(),
        args.ttl.as_secs(),
        args.out.as_ref().map(|o| format!(", written to {}", o.display())).unwrap_or_default(),
    );
    crate::cli::shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

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
            (Some(super::super::DEMO_AUDIENCE), Some("sandbox.read sandbox.write"))
        );
        assert_eq!(claims["realm_access"]["roles"], json!(["user"]));
        assert!(Cmd::try_parse_from(["dev-issuer", "--alg", "HS256"]).is_err(), "only ES256 and RS256");
    }
}
