//! A development-only OIDC issuer: discovery and JWKS over HTTP on loopback,
//! a throwaway ES256 key generated at start, and a token minter. Never use
//! it for anything but demos and tests.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::Json;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    key: EncodingKey,
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
    /// Tenant claim.
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
    /// Generates a key whose `kid` is `PREFIX-` and 16 hex digits of the key.
    pub(crate) fn generate(kid_prefix: &str) -> anyhow::Result<Self> {
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

impl DevIssuer {
    /// Generates a key and serves discovery and JWKS on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// Like [`DevIssuer::start`], on a given loopback port.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let DevKey { kid, jwk, key } = DevKey::generate("dev")?;

        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .context("bind the dev issuer")?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "id_token_signing_alg_values_supported": ["ES256"],
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
        Ok(Self { issuer, kid, key })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs arbitrary claims with the issuer's key (for tests of odd tokens).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// Mints an ES256 access token.
    pub fn mint(&self, c: &DevClaims<'_>) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let claims = json!({
            "iss": self.issuer,
            "aud": c.audience,
            "sub": c.subject,
            "iat": now,
            "nbf": now,
            "exp": now + c.ttl_seconds,
            "realm_access": { "roles": c.roles },
            "scope": c.scope,
            "tenant": c.tenant,
        });
        self.sign(&claims)
    }
}
