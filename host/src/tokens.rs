//! The gateway's own stateless tokens: HS256 JWTs signed with versioned
//! HMAC keys (`kid` = key version), and a denylist of revoked `jti`s.
//!
//! Keys come inline from [`GatewayTokensConfig`] or from a key folder
//! ([`keys`]); revoked `jti`s from a revocation file ([`revoked`]); both
//! files are watched and swapped in atomically ([`GatewayTokens::watch`]).
//! [`files`] holds the atomic file operations of the CLI (rotate, retire,
//! revoke). Verification uses the same strict pre-parse as OIDC tokens, then
//! checks the HMAC in constant time (aws-lc-rs) with the key that the
//! token's `kid` names; the key decides the algorithm, and only HS256 exists
//! here.

pub mod files;
pub mod keys;
mod live;
mod mint;
pub mod revoked;
mod verify;
mod watch;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::GatewayTokensConfig;
use crate::jose::JwtError;

use keys::KeyMaterial;
use live::{KeySet, Live};
use revoked::RevokedSet;

pub use watch::DEBOUNCE as RELOAD_DEBOUNCE;

/// Shortest accepted HMAC key, bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_KEY_BYTES: usize = 32;

/// Longest token lifetime when minting, seconds (366 days).
pub const MAX_MINT_TTL: u64 = 366 * 24 * 3600;

/// Errors of gateway tokens. Messages never contain token or key contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayTokenError {
    /// The configuration cannot be used (missing key, short key, ...).
    #[error("gateway token configuration: {0}")]
    Config(String),
    /// A mint request is unusable.
    #[error("invalid mint request: {0}")]
    InvalidRequest(&'static str),
    /// Signing failed.
    #[error("signing failed")]
    Sign,
    /// The token failed the strict pre-parse.
    #[error(transparent)]
    Malformed(#[from] JwtError),
    /// `alg` is not HS256.
    #[error("algorithm not accepted for gateway tokens")]
    Algorithm,
    /// No `kid`.
    #[error("gateway token has no kid")]
    MissingKid,
    /// The `kid` names no current key (unknown or retired).
    #[error("gateway token kid is unknown or retired")]
    UnknownKid,
    /// The HMAC does not verify.
    #[error("gateway token signature is invalid")]
    BadSignature,
    /// `typ` is present and not `JWT`.
    #[error("gateway token typ is not JWT")]
    Typ,
    /// `iss` is not the gateway's.
    #[error("gateway token issuer mismatch")]
    Issuer,
    /// `aud` does not name the gateway.
    #[error("gateway token audience mismatch")]
    Audience,
    /// Past `exp` (plus leeway).
    #[error("gateway token expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("gateway token not yet valid")]
    NotYetValid,
    /// `iat` in the future beyond leeway.
    #[error("gateway token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` above the configured maximum.
    #[error("gateway token lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// A claim is missing or has the wrong type.
    #[error("gateway token claim {0:?} is missing or malformed")]
    Claim(&'static str),
    /// The token's `jti` is in the revocation list.
    #[error("gateway token is revoked")]
    Revoked,
}

/// What to put in a new gateway token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    /// `sub`.
    pub subject: String,
    /// `tenant`.
    pub tenant: Option<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `scope` (joined with spaces; a scope may not contain whitespace).
    pub scopes: Vec<String>,
    /// Lifetime (`exp - iat`), at least one second.
    pub ttl: Duration,
}

/// Mints and verifies the gateway's HS256 tokens. `Debug` never shows keys.
pub struct GatewayTokens {
    issuer: String,
    audience: String,
    live: Arc<Live>,
    leeway: i64,
    max_lifetime: i64,
}

impl fmt::Debug for GatewayTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.live.keys.load();
        let mut versions: Vec<_> = keys.keys.keys().cloned().collect();
        versions.sort();
        f.debug_struct("GatewayTokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("active", &keys.active)
            .field("key_versions", &versions)
            .field("keys_dir", &self.live.keys_dir)
            .field("revoked", &self.live.revoked.load().len())
            .finish_non_exhaustive()
    }
}

impl GatewayTokens {
    /// Loads the keys (inline, or from `keys_dir`) and the revocation file.
    /// A missing or unreadable folder or file, keys shorter than
    /// [`MIN_KEY_BYTES`], a missing active key, or an invalid version name
    /// are refused. Nothing is watched until [`Self::watch`].
    pub fn new(cfg: &GatewayTokensConfig) -> Result<Self, GatewayTokenError> {
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err(GatewayTokenError::Config("issuer and audience must not be empty".into()));
        }
        let material = match (&cfg.keys_dir, &cfg.active_key) {
            (Some(dir), None) if cfg.keys.is_empty() => KeyMaterial::read_dir(dir)?,
            (None, Some(active)) => {
                let mut keys = std::collections::BTreeMap::new();
                for (version, source) in &cfg.keys {
                    let secret =
                        source.resolve().map_err(|e| GatewayTokenError::Config(format!("key {version:?}: {e}")))?;
                    keys.insert(version.clone(), secret);
                }
                KeyMaterial::new(active.clone(), keys)?
            }
            _ => return Err(GatewayTokenError::Config("set either keys_dir, or active_key and keys".into())),
        };
        for s in &material.skipped {
            tracing::warn!(entry = %s, "key folder entry ignored");
        }
        let revoked = match &cfg.revoked_file {
            Some(path) => {
                let (set, warnings) = RevokedSet::read(path)?;
                for w in &warnings {
                    tracing::warn!(warning = %w, "revocation list line");
                }
                set
            }
            None => RevokedSet::default(),
        };
        Ok(Self {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            live: Arc::new(Live {
                keys: ArcSwap::from_pointee(KeySet::build(&material, None)?),
                revoked: ArcSwap::from_pointee(revoked),
                keys_dir: cfg.keys_dir.clone(),
                revoked_file: cfg.revoked_file.clone(),
                forbidden: OnceLock::new(),
            }),
            leeway: 30,
            max_lifetime: 0,
        })
    }

    /// Watches `keys_dir` and the revocation file's folder on `tasks`
    /// (within a tokio runtime) and swaps in each good update; stops when
    /// the tasks stop or `self` is dropped.
    pub fn watch(&self, tasks: &crate::tasks::Tasks) -> Result<(), GatewayTokenError> {
        watch::spawn(tasks, &self.live)
    }

    /// Re-reads the key folder and the revocation file now (what the watcher
    /// does after a change). On error the current sets stay.
    pub fn reload(&self) -> Result<(), GatewayTokenError> {
        let keys = self.live.reload_keys();
        self.live.reload_revoked()?;
        keys.map(|_| ())
    }

    /// Refuses, from now on, any key whose SHA-256 is `digest` (at start and
    /// in every reload). Fails if a current key already equals it.
    pub(crate) fn forbid_key(&self, digest: [u8; 32]) -> Result<(), GatewayTokenError> {
        if self.has_key_equal_to(&digest) {
            return Err(GatewayTokenError::Config("a key equals the sandbox secret".into()));
        }
        let _ = self.live.forbidden.set(digest);
        Ok(())
    }

    /// The version that signs new tokens.
    pub fn active_version(&self) -> String {
        self.live.keys.load().active.clone()
    }

    /// Every version that verifies, sorted.
    pub fn key_versions(&self) -> Vec<String> {
        let mut v: Vec<_> = self.live.keys.load().keys.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when `jti` is in the revocation list.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.live.revoked.load().contains(jti)
    }

    /// The `aud` of gateway tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Sets the clock-skew leeway and maximum lifetime (0 = none), seconds.
    pub fn with_limits(mut self, leeway_seconds: u64, max_lifetime_seconds: u64) -> Self {
        self.leeway = i64::try_from(leeway_seconds).unwrap_or(i64::MAX);
        self.max_lifetime = i64::try_from(max_lifetime_seconds).unwrap_or(i64::MAX);
        self
    }

    /// The `iss` of gateway tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// True when some key's bytes equal `secret` (used to refuse a sandbox
    /// secret that doubles as an HMAC key).
    pub(crate) fn has_key_equal_to(&self, digest: &[u8; 32]) -> bool {
        use subtle::ConstantTimeEq;
        self.live.keys.load().keys.values().any(|k| bool::from(k.digest.ct_eq(digest)))
    }

    /// Whether key version `kid` still verifies (not retired).
    pub(crate) fn key_is_live(&self, kid: &str) -> bool {
        self.live.keys.load().keys.contains_key(kid)
    }

    /// The leeway applied to `exp`, `nbf` and `iat`, seconds.
    pub(crate) fn leeway(&self) -> i64 {
        self.leeway
    }
}

#[cfg(test)]
mod tests;
