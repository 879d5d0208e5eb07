//! Authentication: OIDC providers, JWKS caching, JWT verification, sandbox secret.
//!
//! [`Authenticator`] is built once from [`AuthConfig`]. Per request,
//! [`Authenticator::extract`] finds the presented credentials and
//! [`Authenticator::authenticate`] checks them for the method's
//! [`AuthClass`]. Bearer tokens go through a strict pre-parse
//! ([`crate::jose`]) before any key lookup, and are then routed by their exact `iss`
//! either to one OIDC provider (keys from its JWKS only) or to the gateway's
//! own HMAC tokens ([`crate::tokens`]); the two never share keys. Every
//! failure is a typed [`AuthError`] that maps to one of four
//! [`AuthFailureKind`]s; nothing fails open.

mod cache;
mod error;
mod extract;
mod jwks;
mod provider;
mod secret;
mod strip;
#[doc(hidden)]
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod verified;
#[cfg(test)]
mod wycheproof;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::config::AuthConfig;
use crate::identity::{AuthClass, Principal, TokenSource};
use crate::jose::{self, now_unix};
use crate::tasks::Tasks;
use crate::tokens::GatewayTokens;

pub use crate::jose::JwtError;
pub use error::{AuthError, AuthFailureKind, TokenRejection};
pub use extract::Presented;
pub use verified::VerifiedToken;

use cache::VerifiedCache;
use extract::ExtractConfig;
use provider::Provider;
use secret::SandboxSecret;

/// What the credential the caller presented verified as: who, and how.
/// (The pipeline turns it into the policy's [`crate::identity::Authentication`].)
#[derive(Debug, Clone)]
pub enum Verified {
    /// No credential was needed (credentials were ignored).
    Anonymous,
    /// The sandbox secret matched.
    SandboxSecret,
    /// An OIDC token verified against its provider's keys.
    Oidc {
        /// The provider's configured name.
        provider: Arc<str>,
        /// The verified token.
        token: Arc<VerifiedToken>,
        /// Where the token was found.
        source: TokenSource,
    },
    /// A gateway token verified against the gateway's HMAC keys.
    Gateway {
        /// The principal the token names.
        principal: Principal,
        /// `exp`, Unix seconds.
        expires_at: i64,
        /// Where the token was found.
        source: TokenSource,
    },
}

/// One provider's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderStatus {
    /// The provider's name.
    pub name: String,
    /// True when fresh (not older than the maximum staleness) keys are loaded.
    pub has_keys: bool,
    /// The last fetch error, cleared by the next success.
    pub last_refresh_error: Option<String>,
    /// Usable keys.
    pub key_count: usize,
}

struct Inner {
    extract: ExtractConfig,
    sandbox: Option<SandboxSecret>,
    providers: Vec<Arc<Provider>>,
    by_issuer: HashMap<String, usize>,
    gateway: Option<GatewayTokens>,
    cache: VerifiedCache,
}

/// Authenticates requests. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("providers", &self.inner.providers)
            .field("gateway_tokens", &self.inner.gateway)
            .field("sandbox_secret", &self.inner.sandbox.is_some())
            .field("cache", &self.inner.cache)
            .finish()
    }
}

impl Authenticator {
    /// Builds the providers and the gateway-token verifier; nothing runs in
    /// the background until [`start`](Self::start), and nothing blocks on
    /// the network.
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let sandbox_header = HeaderName::from_bytes(cfg.sandbox_secret_header.as_bytes())
            .map_err(|_| AuthError::Config("auth.sandbox_secret_header is not a header name".into()))?;
        let sandbox = match &cfg.sandbox_secret {
            Some(src) => {
                let v = src.resolve().map_err(|e| AuthError::Config(e.to_string()))?;
                Some((SandboxSecret::new(v.expose()), jose::sha256(v.expose())))
            }
            None => None,
        };
        let gateway = match &cfg.gateway_tokens {
            Some(g) => Some(
                GatewayTokens::new(g)
                    .map_err(|e| AuthError::Config(e.to_string()))?
                    .with_limits(cfg.leeway_seconds, cfg.max_token_lifetime_seconds),
            ),
            None => None,
        };
        // Checklist 19: the sandbox secret must never double as an HMAC key,
        // neither at start nor after a reload of the key folder.
        if let (Some((_, digest)), Some(g)) = (&sandbox, &gateway)
            && g.forbid_key(*digest).is_err()
        {
            return Err(AuthError::Config("the sandbox secret must not be reused as a gateway token key".into()));
        }
        let client = if cfg.providers.is_empty() {
            None
        } else {
            let timeout = cfg.providers.iter().map(|p| p.jwks.fetch_timeout_ms).max().unwrap_or(5_000);
            Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_millis(timeout.max(1)))
                    .connect_timeout(Duration::from_millis(timeout.max(1)))
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("wasmgate/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| AuthError::Config(format!("HTTP client: {e}")))?,
            )
        };
        let mut providers = Vec::new();
        let mut by_issuer = HashMap::new();
        for p in &cfg.providers {
            if by_issuer.contains_key(&p.issuer) || gateway.as_ref().is_some_and(|g| g.issuer() == p.issuer) {
                return Err(AuthError::Config(format!("issuer of provider {:?} is not unique", p.name)));
            }
            let Some(client) = client.clone() else {
                return Err(AuthError::Config("no HTTP client".into()));
            };
            let provider = Provider::new(p, cfg.leeway_seconds, cfg.max_token_lifetime_seconds, client)?;
            by_issuer.insert(p.issuer.clone(), providers.len());
            providers.push(Arc::new(provider));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                extract: ExtractConfig {
                    sandbox_header,
                    cookie: cfg.cookie.clone(),
                    query_parameter: cfg.query_parameter.clone(),
                    max_token_bytes: cfg.max_token_bytes,
                },
                sandbox: sandbox.map(|(s, _)| s),
                providers,
                by_issuer,
                gateway,
                cache: VerifiedCache::new(cfg.token_cache.max_bytes),
            }),
        })
    }

    /// Starts the background work on `tasks`: each provider's JWKS discovery
    /// and refresh, and the watch of the gateway-token key folder and
    /// revocation file. Must be called within a Tokio runtime.
    pub fn start(&self, tasks: &Tasks) -> Result<(), AuthError> {
        if let Some(g) = &self.inner.gateway {
            g.watch(tasks).map_err(|e| AuthError::Config(e.to_string()))?;
        }
        if !self.inner.providers.is_empty() && tokio::runtime::Handle::try_current().is_err() {
            return Err(AuthError::Config("identity providers need a tokio runtime".into()));
        }
        for p in &self.inner.providers {
            tasks.spawn("jwks refresh", provider::refresh_loop(Arc::downgrade(p)));
        }
        Ok(())
    }

    /// Finds the credentials a request presents (before the method class is known).
    pub fn extract(&self, headers: &http::HeaderMap, uri: &http::Uri, allow_query: bool) -> Presented {
        extract::extract(&self.inner.extract, headers, uri, allow_query)
    }

    /// Removes the client's credentials from a request about to be
    /// forwarded: `Authorization` (unless `keep_authorization`), the
    /// sandbox-secret header, the token cookie, and the token query
    /// parameter when the route accepts query tokens (`allow_query_token`).
    /// Other cookies and parameters are kept.
    pub fn strip_credentials(
        &self,
        parts: &mut http::request::Parts,
        keep_authorization: bool,
        allow_query_token: bool,
    ) {
        strip::strip(&self.inner.extract, parts, keep_authorization, allow_query_token);
    }

    /// Authenticates a request of the given class.
    pub async fn authenticate(&self, class: AuthClass, presented: &Presented) -> Result<Verified, AuthError> {
        match class {
            AuthClass::Unauthenticated => Ok(Verified::Anonymous),
            AuthClass::SandboxSecret => self.check_sandbox(presented),
            // If a sandbox secret is presented it alone decides: no fallback to bearer.
            AuthClass::DualAuth if presented.has_sandbox_secret() => self.check_sandbox(presented),
            AuthClass::DualAuth | AuthClass::Bearer => self.check_bearer(presented, true).await,
        }
    }

    /// Verifies a bearer token without consulting or filling the verified-token
    /// cache (benchmarks and diagnostics).
    #[doc(hidden)]
    #[cfg(any(test, feature = "testing"))]
    pub async fn verify_bearer_uncached(&self, token: &str) -> Result<Verified, AuthError> {
        if token.len() > self.inner.extract.max_token_bytes {
            return Err(TokenRejection::TooLarge.into());
        }
        self.verify_token(token, TokenSource::AuthorizationHeader, false).await
    }

    /// Per-provider readiness (has usable keys).
    pub fn readiness(&self) -> Vec<ProviderStatus> {
        self.inner
            .providers
            .iter()
            .map(|p| {
                let (has_keys, key_count, last_refresh_error) = p.status();
                ProviderStatus { name: p.name.to_string(), has_keys, last_refresh_error, key_count }
            })
            .collect()
    }

    /// True when every provider has usable keys.
    pub fn ready(&self) -> bool {
        self.inner.providers.iter().all(|p| p.usable_keys().is_some())
    }

    fn check_sandbox(&self, presented: &Presented) -> Result<Verified, AuthError> {
        if presented.sandbox_conflict {
            return Err(AuthError::InvalidRequest("repeated_sandbox_secret"));
        }
        if presented.sandbox_oversized {
            return Err(TokenRejection::TooLarge.into());
        }
        let Some(given) = &presented.sandbox_secret else {
            return Err(AuthError::Missing);
        };
        let Some(secret) = &self.inner.sandbox else {
            return Err(TokenRejection::SandboxSecretNotConfigured.into());
        };
        if secret.matches(given.expose()) {
            Ok(Verified::SandboxSecret)
        } else {
            Err(TokenRejection::SandboxSecretMismatch.into())
        }
    }

    async fn check_bearer(&self, presented: &Presented, use_cache: bool) -> Result<Verified, AuthError> {
        if presented.bearer_conflict {
            return Err(AuthError::InvalidRequest("multiple_credentials"));
        }
        if presented.bearer_malformed {
            return Err(AuthError::InvalidRequest("malformed_authorization"));
        }
        if presented.bearer_oversized {
            return Err(TokenRejection::TooLarge.into());
        }
        let Some((token, source)) = &presented.bearer else {
            return Err(AuthError::Missing);
        };
        self.verify_token(token.expose(), *source, use_cache).await
    }

    async fn verify_token(&self, token: &str, source: TokenSource, use_cache: bool) -> Result<Verified, AuthError> {
        let inner = &*self.inner;
        let now = now_unix();
        let key = (use_cache && inner.cache.is_enabled()).then(|| cache::key_of(token));
        if let Some(key) = &key
            && let Some(hit) = inner.cache.get(key)
        {
            if let Some(verified) = self.still_valid(&hit, now, source) {
                crate::telemetry::record_current("wasmgate.auth.cache", "hit");
                return Ok(verified);
            }
            inner.cache.remove(key);
        }
        crate::telemetry::record_current("wasmgate.auth.cache", "miss");
        let parsed = jose::parse(token).map_err(TokenRejection::Malformed)?;
        let Some(iss) = parsed.issuer() else {
            return Err(TokenRejection::Claim("iss").into());
        };
        if let Some(g) = &inner.gateway
            && iss == g.issuer()
        {
            let (principal, expires_at) = g.verify_parsed(&parsed, now).map_err(TokenRejection::Gateway)?;
            if let Some(key) = key
                && let (Some(kid), Some(jti)) =
                    (parsed.header.kid.as_deref(), parsed.claims.get("jti").and_then(serde_json::Value::as_str))
            {
                inner.cache.insert(
                    key,
                    cache::Entry {
                        kind: cache::Kind::Gateway {
                            principal: Box::new(principal.clone()),
                            expires_at,
                            kid: kid.to_owned(),
                            jti: jti.to_owned(),
                        },
                        valid_until: expires_at.saturating_add(g.leeway()),
                    },
                );
            }
            return Ok(Verified::Gateway { principal, expires_at, source });
        }
        let Some(&idx) = inner.by_issuer.get(iss) else {
            return Err(TokenRejection::UnknownIssuer.into());
        };
        let provider = &inner.providers[idx];
        let (verified, provider_key) = provider.verify(&parsed, now).await?;
        let verified = Arc::new(verified);
        if let Some(key) = key {
            inner.cache.insert(
                key,
                cache::Entry {
                    kind: cache::Kind::Oidc { token: verified.clone(), provider: idx, key: provider_key },
                    valid_until: verified.expires_at.saturating_add(provider.leeway()),
                },
            );
        }
        Ok(Verified::Oidc { provider: provider.name.clone(), token: verified, source })
    }

    /// What a cached entry verified as, if it still holds at `now`: not past
    /// `exp` plus leeway, its key still in its key set (same material), and
    /// for a gateway token its `jti` not revoked.
    fn still_valid(&self, hit: &cache::Entry, now: i64, source: TokenSource) -> Option<Verified> {
        if now > hit.valid_until {
            return None;
        }
        match &hit.kind {
            cache::Kind::Oidc { token, provider, key } => {
                let provider = &self.inner.providers[*provider];
                provider.still_has(&key.kid, &key.fingerprint).then(|| Verified::Oidc {
                    provider: provider.name.clone(),
                    token: token.clone(),
                    source,
                })
            }
            // Retired keys and revoked jtis apply to cached tokens too.
            cache::Kind::Gateway { principal, expires_at, kid, jti } => {
                let g = self.inner.gateway.as_ref()?;
                (g.key_is_live(kid) && !g.is_revoked(jti)).then(|| Verified::Gateway {
                    principal: (**principal).clone(),
                    expires_at: *expires_at,
                    source,
                })
            }
        }
    }

    /// Entries in the token cache and their estimated bytes (eventually
    /// consistent: moka applies inserts and evictions in batches).
    pub fn token_cache_usage(&self) -> (u64, u64) {
        self.inner.cache.usage()
    }
}
