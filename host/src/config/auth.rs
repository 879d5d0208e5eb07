//! `auth:` and `identity_headers:` — how callers are authenticated: the
//! sandbox secret, where bearer tokens are read from, identity providers
//! (see [`providers`]) and the gateway's own tokens; and which client-sent
//! identity headers are removed before anything else happens.

mod providers;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use providers::{JwksConfig, ProviderConfig};

use super::SecretSource;

/// Why the `auth:` or `identity_headers:` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// `identity_headers.prefix` (lowercased) is too short or not a header name.
    #[error("identity_headers.prefix {0:?} must be 3+ header-name characters")]
    IdentityHeaderPrefix(String),
    /// Two providers share a name.
    #[error("provider name {0:?} is used twice")]
    DuplicateProvider(String),
    /// A provider's `audiences` is empty.
    #[error("provider {0:?} needs at least one audience")]
    NoAudience(String),
    /// A provider's `algorithms` is empty.
    #[error("provider {0:?} allows no algorithm")]
    NoAlgorithm(String),
    /// A provider's `issuer` is not an `http(s)://` URL.
    #[error("provider {0:?}: issuer must be an http(s) URL")]
    IssuerNotHttp(String),
    /// Two providers share an issuer.
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    /// `gateway_tokens.issuer` is the issuer of this provider.
    #[error("gateway_tokens.issuer equals provider {0:?}'s issuer")]
    GatewayIssuerTaken(String),
    /// A provider's `tenants` is present but empty.
    #[error("provider {0:?}: tenants is empty (omit it for no bound)")]
    EmptyTenants(String),
    /// A tenant in a provider's `tenants` is not a usable name.
    #[error("provider {provider:?}: tenant {tenant:?} must be 1..=256 visible ASCII characters without commas")]
    TenantName {
        /// The provider.
        provider: String,
        /// The tenant as written.
        tenant: String,
    },
    /// A tenant is listed twice in a provider's `tenants`.
    #[error("provider {provider:?}: tenant {tenant:?} is listed twice")]
    DuplicateTenant {
        /// The provider.
        provider: String,
        /// The tenant.
        tenant: String,
    },
    /// `gateway_tokens` has both `keys_dir` and `active_key`.
    #[error("gateway_tokens: set either keys_dir or active_key and keys, not both")]
    KeysDirAndActiveKey,
    /// `gateway_tokens` has both `keys_dir` and `keys`.
    #[error("gateway_tokens: set either keys_dir or keys, not both")]
    KeysDirAndKeys,
    /// `gateway_tokens` has no keys at all.
    #[error("gateway_tokens needs keys_dir, or active_key and keys")]
    NoGatewayKeys,
    /// `gateway_tokens.active_key` names no entry of `keys`.
    #[error("gateway_tokens.active_key {0:?} is not among keys")]
    UnknownActiveKey(String),
}

/// Client-sent identity headers to strip.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// Every request header starting with this prefix is removed (compared
    /// case-insensitively, with `_` and `-` treated alike). The gateway sets
    /// its own identity headers under this prefix.
    pub prefix: String,
    /// More header names removed the same way (e.g. `x-remote-user`).
    pub also_strip: Vec<String>,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            prefix: "x-wasmgate-".to_owned(),
            also_strip: vec![
                "x-remote-user".to_owned(),
                "x-forwarded-user".to_owned(),
                "x-auth-request-user".to_owned(),
                "x-auth-request-email".to_owned(),
            ],
        }
    }
}

impl IdentityHeadersConfig {
    /// Checks the prefix: 3+ header-name characters.
    pub(super) fn validate(&self) -> Result<(), AuthConfigError> {
        let prefix = self.prefix.to_ascii_lowercase();
        if prefix.len() < 3 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(AuthConfigError::IdentityHeaderPrefix(prefix));
        }
        Ok(())
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The sandbox secret, if sandbox-secret methods are used.
    pub sandbox_secret: Option<SecretSource>,
    /// The header that carries the sandbox secret.
    pub sandbox_secret_header: String,
    /// A cookie that may carry a bearer token (not read when unset).
    pub cookie: Option<String>,
    /// A query parameter that may carry a bearer token; only read on routes
    /// with `allow_query_token: true`.
    pub query_parameter: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, seconds.
    pub leeway_seconds: u64,
    /// Tokens whose `exp - iat` exceeds this are rejected (0 = no limit).
    pub max_token_lifetime_seconds: u64,
    /// Credentials longer than this are rejected before parsing, bytes.
    pub max_token_bytes: usize,
    /// Identity providers.
    pub providers: Vec<ProviderConfig>,
    /// The gateway's own tokens; disabled when absent.
    pub gateway_tokens: Option<GatewayTokensConfig>,
    /// The cache of verified tokens (and their mapped principals).
    pub token_cache: TokenCacheConfig,
}

/// The cache of verified tokens: one entry per token, holding what it
/// verified as and, for an OIDC token, the principal its claims mapped to.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TokenCacheConfig {
    /// The bound on the cache's estimated size, bytes (token digest,
    /// claims, principal and the cache's own bookkeeping per entry); the
    /// least useful entries are evicted beyond it. 0 disables the cache:
    /// every token is verified and mapped on every request.
    pub max_bytes: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024 }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            sandbox_secret: None,
            sandbox_secret_header: "x-sandbox-secret".to_owned(),
            cookie: None,
            query_parameter: None,
            leeway_seconds: 30,
            max_token_lifetime_seconds: 0,
            max_token_bytes: 8 * 1024,
            providers: Vec::new(),
            gateway_tokens: None,
            token_cache: TokenCacheConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Checks every provider (alone, and against the others and the
    /// gateway's own issuer), then the gateway-token keys.
    pub(super) fn validate(&self) -> Result<(), AuthConfigError> {
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            if !names.insert(p.name.as_str()) {
                return Err(AuthConfigError::DuplicateProvider(p.name.clone()));
            }
            p.validate_alone()?;
            if self.providers.iter().filter(|q| q.issuer == p.issuer).count() > 1 {
                return Err(AuthConfigError::DuplicateIssuer(p.issuer.clone()));
            }
            if let Some(g) = &self.gateway_tokens
                && g.issuer == p.issuer
            {
                return Err(AuthConfigError::GatewayIssuerTaken(p.name.clone()));
            }
            p.validate_tenants()?;
        }
        self.gateway_tokens.as_ref().map_or(Ok(()), GatewayTokensConfig::validate)
    }

    /// What `wasmgate serve` warns about: see [`super::Config::startup_warnings`].
    pub(super) fn tenant_warnings(&self) -> Vec<String> {
        providers::tenant_warnings(&self.providers)
    }
}

/// The gateway's own HMAC tokens. Keys come either inline (`active_key` and
/// `keys`) or from `keys_dir`, never both.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokensConfig {
    /// The `iss` of gateway tokens; must differ from every provider's issuer.
    #[serde(default = "default_gateway_issuer")]
    pub issuer: String,
    /// The `aud` of gateway tokens.
    #[serde(default = "default_gateway_issuer")]
    pub audience: String,
    /// Inline form: the version (`kid`) used to sign new tokens.
    #[serde(default)]
    pub active_key: Option<String>,
    /// Inline form: key versions that verify tokens (retired versions are
    /// removed from here; a change needs a restart).
    #[serde(default)]
    pub keys: BTreeMap<String, SecretSource>,
    /// Folder form, laid out as a mounted Kubernetes Secret: a file `active`
    /// naming the active version and one file per version holding its key.
    /// Watched and reloaded live.
    #[serde(default)]
    pub keys_dir: Option<PathBuf>,
    /// Revoked `jti`s, one per line (`JTI [EXP]`, `#` comments), laid out
    /// as a mounted ConfigMap would be. Watched and reloaded live.
    #[serde(default)]
    pub revoked_file: Option<PathBuf>,
}

impl GatewayTokensConfig {
    /// Inline keys: `active` signs, every entry of `keys` verifies.
    pub fn inline(active: &str, keys: BTreeMap<String, SecretSource>) -> Self {
        Self {
            issuer: default_gateway_issuer(),
            audience: default_gateway_issuer(),
            active_key: Some(active.to_owned()),
            keys,
            keys_dir: None,
            revoked_file: None,
        }
    }

    /// Keys from a folder.
    pub fn from_dir(keys_dir: PathBuf, revoked_file: Option<PathBuf>) -> Self {
        Self {
            issuer: default_gateway_issuer(),
            audience: default_gateway_issuer(),
            active_key: None,
            keys: BTreeMap::new(),
            keys_dir: Some(keys_dir),
            revoked_file,
        }
    }

    /// Checks the keys come in exactly one form, and the inline active key
    /// is among them.
    fn validate(&self) -> Result<(), AuthConfigError> {
        match (&self.keys_dir, &self.active_key) {
            (Some(_), Some(_)) => Err(AuthConfigError::KeysDirAndActiveKey),
            (Some(_), None) if !self.keys.is_empty() => Err(AuthConfigError::KeysDirAndKeys),
            (Some(_), None) => Ok(()),
            (None, None) => Err(AuthConfigError::NoGatewayKeys),
            (None, Some(active)) if !self.keys.contains_key(active) => {
                Err(AuthConfigError::UnknownActiveKey(active.clone()))
            }
            (None, Some(_)) => Ok(()),
        }
    }
}

fn default_gateway_issuer() -> String {
    "wasmgate".to_owned()
}
