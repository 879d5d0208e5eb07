//! A development-only OIDC issuer: discovery and JWKS over HTTP on loopback,
//! a throwaway ES256 (or RS256) key generated at start, and a token minter.
//! Never use it for anything but demos, tests and benchmarks. `wasmgate
//! dev-issuer` runs it on its own ([`DevIssuerArgs`]).
//!
//! Its key can be rotated ([`DevIssuer::rotate`]; SIGHUP for `wasmgate
//! dev-issuer`): a new key signs from then on, and the JWKS keeps the
//! previous ones, as an identity provider does during a rotation.

mod cli;
mod key;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

pub use cli::{DevIssuerArgs, dev_issuer};
#[cfg(any(test, feature = "testing"))]
pub(crate) use key::DevKey;
use key::SigningKey;

/// Keys the JWKS keeps after a rotation: the signing one and the ones before it.
const KEPT_KEYS: usize = 3;

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

    #[cfg_attr(not(test), allow(dead_code))]
    fn jwt(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

/// The signing key and the published key set.
struct Keys {
    current: Arc<SigningKey>,
    /// The JWKS document: the current key first, then up to
    /// `KEPT_KEYS - 1` previous ones.
    jwks: Arc<Value>,
}

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    alg: DevAlg,
    keys: Arc<RwLock<Keys>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer").field("issuer", &self.issuer).field("kid", &self.kid()).finish_non_exhaustive()
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
        let key = SigningKey::generate("dev", alg)?;
        let jwks = Arc::new(json!({ "keys": [key.jwk.clone()] }));
        let keys = Arc::new(RwLock::new(Keys { current: Arc::new(key), jwks }));

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
        let served = keys.clone();
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
                    let jwks = served.read().unwrap_or_else(PoisonError::into_inner).jwks.clone();
                    async move { Json::<Value>(Value::clone(&jwks)) }
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "dev issuer stopped");
            }
        });
        Ok(Self { issuer, alg, keys })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The algorithm of its key.
    pub fn alg(&self) -> DevAlg {
        self.alg
    }

    fn current(&self) -> Arc<SigningKey> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).current.clone()
    }

    /// The `kid` of the key that signs now.
    pub fn kid(&self) -> String {
        self.current().kid.clone()
    }

    /// The public key that signs now, as a PEM `PUBLIC KEY`
    /// (SubjectPublicKeyInfo), for verifiers without JWKS such as HAProxy.
    pub fn public_key_pem(&self) -> String {
        self.current().public_key_pem()
    }

    /// The `kid`s the JWKS publishes, the signing one first.
    pub fn published_kids(&self) -> Vec<String> {
        let jwks = self.keys.read().unwrap_or_else(PoisonError::into_inner).jwks.clone();
        jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect()
    }

    /// Rotates the key: a new one (same algorithm) signs from now on and is
    /// published first; the JWKS keeps the previous ones (up to three keys
    /// in all), so tokens already issued keep verifying. Returns the new `kid`.
    pub fn rotate(&self) -> anyhow::Result<String> {
        let key = Arc::new(SigningKey::generate("dev", self.alg)?);
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let mut published = vec![key.jwk.clone()];
        published.extend(keys.jwks["keys"].as_array().into_iter().flatten().take(KEPT_KEYS - 1).cloned());
        keys.jwks = Arc::new(json!({ "keys": published }));
        keys.current = key.clone();
        Ok(key.kid.clone())
    }

    /// Signs arbitrary claims with the issuer's key (for tests of odd tokens).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.current().sign(claims)
    }

    /// Mints an access token signed with the issuer's key.
    pub fn mint(&self, c: &DevClaims<'_>) -> anyhow::Result<String> {
        self.sign(&self.claims(c)?)
    }

    /// Mints `n` tokens, the claims of the `i`-th from `claims(i)`, all with
    /// the key that signs now, on every core (an RS256 signature costs about
    /// a millisecond: benchmarks ask for 100 000 tokens and more).
    pub fn mint_many<F>(&self, n: usize, claims: F) -> anyhow::Result<Vec<String>>
    where
        F: Fn(usize) -> anyhow::Result<Value> + Sync,
    {
        let key = self.current();
        let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 16).min(n.max(1));
        let chunk = n.div_ceil(threads).max(1);
        let (key, claims) = (&key, &claims);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|from| {
                    scope.spawn(move || {
                        (from..(from + chunk).min(n)).map(|i| key.sign(&claims(i)?)).collect::<anyhow::Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut tokens = Vec::with_capacity(n);
            for handle in handles {
                let part = handle.join().map_err(|_| anyhow::anyhow!("a minting thread panicked"))??;
                tokens.extend(part);
            }
            Ok(tokens)
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    async fn jwks(issuer: &DevIssuer) -> Value {
        reqwest::get(format!("{}/jwks.json", issuer.issuer())).await.expect("jwks").json().await.expect("json")
    }

    fn verifies(token: &str, jwks: &Value, alg: DevAlg) -> bool {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).expect("jwk set");
        let Ok(header) = jsonwebtoken::decode_header(token) else { return false };
        let Some(jwk) = header.kid.as_deref().and_then(|kid| set.find(kid)) else { return false };
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
        let mut v = jsonwebtoken::Validation::new(alg.jwt());
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
    }

    #[tokio::test]
    async fn rotation_signs_with_a_new_key_and_keeps_the_old_ones_published() {
        let issuer = DevIssuer::start_with(0, DevAlg::Es256).await.expect("issuer");
        let claims = json!({ "sub": "a", "exp": 4_000_000_000_i64 });
        let old = issuer.sign(&claims).expect("sign");
        let first = issuer.kid();
        let second = issuer.rotate().expect("rotate");
        assert_ne!(first, second);
        assert_eq!(issuer.kid(), second);
        assert_eq!(issuer.published_kids(), [second.clone(), first.clone()]);
        let new = issuer.sign(&claims).expect("sign");
        let served = jwks(&issuer).await;
        assert!(verifies(&old, &served, DevAlg::Es256), "a token of the previous key still verifies");
        assert!(verifies(&new, &served, DevAlg::Es256), "a token of the new key verifies");
        assert_eq!(jsonwebtoken::decode_header(&new).expect("header").kid.as_deref(), Some(second.as_str()));
        // The set is bounded: after more rotations the first key is retired.
        issuer.rotate().expect("rotate");
        issuer.rotate().expect("rotate");
        let served = jwks(&issuer).await;
        assert_eq!(served["keys"].as_array().map(Vec::len), Some(KEPT_KEYS));
        assert!(!issuer.published_kids().contains(&first));
        assert!(!verifies(&old, &served, DevAlg::Es256), "a retired key's token no longer verifies");
    }

    #[tokio::test]
    async fn mint_many_keeps_the_order_and_signs_every_token() {
        for alg in [DevAlg::Es256, DevAlg::Rs256] {
            let issuer = DevIssuer::start_with(0, alg).await.expect("issuer");
            let tokens = issuer.mint_many(7, |i| Ok(json!({ "sub": format!("s-{i}"), "exp": 4_000_000_000_i64 })));
            let tokens = tokens.expect("mint");
            let served = jwks(&issuer).await;
            for (i, token) in tokens.iter().enumerate() {
                assert!(verifies(token, &served, alg), "token {i} verifies");
                let payload = token.split('.').nth(1).expect("payload");
                let claims: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
                assert_eq!(claims["sub"], format!("s-{i}"));
            }
            assert!(issuer.mint_many(0, |_| Ok(json!({}))).expect("none").is_empty());
        }
    }
}
