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
pub mod revoked;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use serde_json::{Map, Value, json};

use crate::auth::jwt::{self, JwtError, ParsedJwt};
use crate::config::GatewayTokensConfig;
use crate::identity::Principal;

use keys::KeyMaterial;
use revoked::RevokedSet;

pub use watch::DEBOUNCE as RELOAD_DEBOUNCE;

/// Shortest accepted HMAC key, bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_KEY_BYTES: usize = 32;

/// Longest token lifetime when minting, seconds (366 days).
pub const MAX_MINT_TTL: u64 = 366 * 24 * 3600;

/// Errors of gateway tokens. Messages never contain token or key contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
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

struct GatewayKey {
    hmac: hmac::Key,
    encoding: jsonwebtoken::EncodingKey,
    digest: [u8; 32],
}

/// The keys that verify, and the version that signs.
struct KeySet {
    active: String,
    keys: HashMap<String, GatewayKey>,
}

impl KeySet {
    fn build(m: &KeyMaterial, forbidden: Option<&[u8; 32]>) -> Result<Self, TokenError> {
        let mut keys = HashMap::new();
        for (version, secret) in &m.keys {
            let bytes = secret.expose();
            let digest = crate::auth::secret::sha256(bytes);
            if forbidden.is_some_and(|f| bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &f[..]))) {
                return Err(TokenError::Config(format!("key {version:?} equals the sandbox secret")));
            }
            let key = GatewayKey {
                hmac: hmac::Key::new(hmac::HMAC_SHA256, bytes),
                encoding: jsonwebtoken::EncodingKey::from_secret(bytes),
                digest,
            };
            keys.insert(version.clone(), key);
        }
        Ok(Self { active: m.active.clone(), keys })
    }

    /// `active=v2 versions=[v1, v2]`.
    fn describe(&self) -> String {
        let mut versions: Vec<_> = self.keys.keys().map(String::as_str).collect();
        versions.sort_unstable();
        format!("active={} versions=[{}]", self.active, versions.join(", "))
    }

    fn same_as(&self, other: &Self) -> bool {
        self.active == other.active
            && self.keys.len() == other.keys.len()
            && self.keys.iter().all(|(v, k)| other.keys.get(v).is_some_and(|o| o.digest == k.digest))
    }
}

/// The state the watcher swaps.
struct Live {
    keys: ArcSwap<KeySet>,
    revoked: ArcSwap<RevokedSet>,
    keys_dir: Option<PathBuf>,
    revoked_file: Option<PathBuf>,
    /// SHA-256 of a secret no key may equal (the sandbox secret).
    forbidden: OnceLock<[u8; 32]>,
}

impl Live {
    /// Rebuilds the key set from the folder; `Some(description)` when it changed.
    fn reload_keys(&self) -> Result<Option<String>, TokenError> {
        let Some(dir) = &self.keys_dir else { return Ok(None) };
        let material = KeyMaterial::read_dir(dir)?;
        let set = KeySet::build(&material, self.forbidden.get())?;
        if set.same_as(&self.keys.load()) {
            return Ok(None);
        }
        for s in &material.skipped {
            tracing::warn!(entry = %s, "key folder entry ignored");
        }
        let change = set.describe();
        self.keys.store(Arc::new(set));
        Ok(Some(change))
    }

    /// Rebuilds the revocation set from its file; `Some(description)` when it changed.
    fn reload_revoked(&self) -> Result<Option<String>, TokenError> {
        let Some(path) = &self.revoked_file else { return Ok(None) };
        let (set, warnings) = RevokedSet::read(path)?;
        if set == **self.revoked.load() {
            return Ok(None);
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "revocation list line");
        }
        let change = format!("{} revoked jtis", set.len());
        self.revoked.store(Arc::new(set));
        Ok(Some(change))
    }
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

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl GatewayTokens {
    /// Loads the keys (inline, or from `keys_dir`) and the revocation file.
    /// A missing or unreadable folder or file, keys shorter than
    /// [`MIN_KEY_BYTES`], a missing active key, or an invalid version name
    /// are refused. Nothing is watched until [`Self::watch`].
    pub fn new(cfg: &GatewayTokensConfig) -> Result<Self, TokenError> {
        if cfg.issuer.is_empty() || cfg.audience.is_empty() {
            return Err(TokenError::Config("issuer and audience must not be empty".into()));
        }
        let material = match (&cfg.keys_dir, &cfg.active_key) {
            (Some(dir), None) if cfg.keys.is_empty() => KeyMaterial::read_dir(dir)?,
            (None, Some(active)) => {
                let mut keys = std::collections::BTreeMap::new();
                for (version, source) in &cfg.keys {
                    let secret = source.resolve().map_err(|e| TokenError::Config(format!("key {version:?}: {e}")))?;
                    keys.insert(version.clone(), secret);
                }
                KeyMaterial::new(active.clone(), keys)?
            }
            _ => return Err(TokenError::Config("set either keys_dir, or active_key and keys".into())),
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

    /// Watches `keys_dir` and the revocation file's folder on the current
    /// tokio runtime (required when either is configured) and swaps in each
    /// good update; stops when `self` is dropped.
    pub fn watch(&self) -> Result<(), TokenError> {
        watch::spawn(&self.live)
    }

    /// Re-reads the key folder and the revocation file now (what the watcher
    /// does after a change). On error the current sets stay.
    pub fn reload(&self) -> Result<(), TokenError> {
        let keys = self.live.reload_keys();
        self.live.reload_revoked()?;
        keys.map(|_| ())
    }

    /// Refuses, from now on, any key whose SHA-256 is `digest` (at start and
    /// in every reload). Fails if a current key already equals it.
    pub(crate) fn forbid_key(&self, digest: [u8; 32]) -> Result<(), TokenError> {
        if self.has_key_equal_to(&digest) {
            return Err(TokenError::Config("a key equals the sandbox secret".into()));
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

    /// Mints a token signed with the active key, valid from now for `req.ttl`.
    pub fn mint(&self, req: &MintRequest) -> Result<String, TokenError> {
        self.mint_at(req, now_unix())
    }

    /// Mints a token as if the time were `now` (Unix seconds).
    pub fn mint_at(&self, req: &MintRequest, now: i64) -> Result<String, TokenError> {
        if req.subject.is_empty() {
            return Err(TokenError::InvalidRequest("subject is empty"));
        }
        let ttl = req.ttl.as_secs();
        if ttl == 0 || ttl > MAX_MINT_TTL {
            return Err(TokenError::InvalidRequest("ttl must be between 1 second and 366 days"));
        }
        if req.scopes.iter().any(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return Err(TokenError::InvalidRequest("scopes must be non-empty and contain no whitespace"));
        }
        let set = self.live.keys.load();
        let key = set.keys.get(&set.active).ok_or(TokenError::UnknownKid)?;
        let exp = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": req.subject,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": random_jti()?,
        });
        if let Some(t) = &req.tenant {
            claims["tenant"] = t.as_str().into();
        }
        if !req.roles.is_empty() {
            claims["roles"] = req.roles.clone().into();
        }
        if !req.scopes.is_empty() {
            claims["scope"] = req.scopes.join(" ").into();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.typ = Some("JWT".into());
        header.kid = Some(set.active.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|_| TokenError::Sign)
    }

    /// Verifies `token` at time `now` (Unix seconds); returns the principal and `exp`.
    pub fn verify(&self, token: &str, now: i64) -> Result<(Principal, i64), TokenError> {
        let parsed = jwt::parse(token)?;
        self.verify_parsed(&parsed, now)
    }

    /// The signature layer of [`Self::verify`]: `alg` must be HS256 and
    /// `kid` a current version whose HMAC over `signing_input` is `signature`.
    fn check_signature(
        &self,
        header: &jwt::JwtHeader,
        signing_input: &str,
        signature: &[u8],
    ) -> Result<(), TokenError> {
        if header.alg != jsonwebtoken::Algorithm::HS256 {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::MissingKid)?;
        self.verify_mac(kid, signing_input.as_bytes(), signature)
    }

    /// The MAC primitive of [`Self::verify`]: key version `kid` must exist and
    /// its HMAC-SHA256 over `message` must equal `tag` (constant time).
    /// Wycheproof vectors and fuzzing only.
    #[doc(hidden)]
    pub fn verify_mac(&self, kid: &str, message: &[u8], tag: &[u8]) -> Result<(), TokenError> {
        let set = self.live.keys.load();
        let key = set.keys.get(kid).ok_or(TokenError::UnknownKid)?;
        hmac::verify(&key.hmac, message, tag).map_err(|_| TokenError::BadSignature)
    }

    /// [`Self::verify`] without the claims: the strict pre-parse minus its
    /// payload rules, then the signature layer. Wycheproof vectors (whose
    /// payloads are not JWT claims) and fuzzing only.
    #[doc(hidden)]
    pub fn verify_jws_signature(&self, token: &str) -> Result<(), TokenError> {
        let jws = jwt::parse_jws(token)?;
        self.check_signature(&jws.header, jws.signing_input, &jws.signature)
    }

    /// Verifies a token that already passed the strict pre-parse.
    /// Whether key version `kid` still verifies (not retired).
    pub(crate) fn key_is_live(&self, kid: &str) -> bool {
        self.live.keys.load().keys.contains_key(kid)
    }

    /// The leeway applied to `exp`, `nbf` and `iat`, seconds.
    pub(crate) fn leeway(&self) -> i64 {
        self.leeway
    }

    pub(crate) fn verify_parsed(&self, parsed: &ParsedJwt<'_>, now: i64) -> Result<(Principal, i64), TokenError> {
        self.check_signature(&parsed.header, parsed.signing_input, &parsed.signature)?;
        if parsed.header.typ.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(TokenError::Typ);
        }
        let c = &parsed.claims;
        if c.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
        if !jwt::audience_matches(c.get("aud"), std::slice::from_ref(&self.audience)) {
            return Err(TokenError::Audience);
        }
        let exp = jwt::numeric_date(c, "exp").map_err(|_| TokenError::Claim("exp"))?.ok_or(TokenError::Claim("exp"))?;
        let nbf = jwt::numeric_date(c, "nbf").map_err(|_| TokenError::Claim("nbf"))?;
        let iat = jwt::numeric_date(c, "iat").map_err(|_| TokenError::Claim("iat"))?;
        check_times(exp, nbf, iat, now, self.leeway, self.max_lifetime)?;
        // Checklist 17: the denylist is by `jti`, so any re-encoding or
        // re-signing of a revoked token is still refused.
        match c.get("jti") {
            Some(Value::String(j)) if !j.is_empty() && j.len() <= revoked::MAX_JTI_LEN => {
                if self.live.revoked.load().contains(j) {
                    return Err(TokenError::Revoked);
                }
            }
            _ => return Err(TokenError::Claim("jti")),
        }
        Ok((principal_from(c)?, exp))
    }
}

/// The time rules shared by gateway and OIDC tokens.
pub(crate) fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
    leeway: i64,
    max_lifetime: i64,
) -> Result<(), TokenError> {
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    // Without `iat`, the remaining lifetime from now is bounded instead.
    if max_lifetime > 0 && exp.saturating_sub(iat.unwrap_or(now)) > max_lifetime {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(())
}

fn string_list(c: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, TokenError> {
    match c.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or(TokenError::Claim(name))).collect()
        }
        Some(_) => Err(TokenError::Claim(name)),
    }
}

fn principal_from(c: &Map<String, Value>) -> Result<Principal, TokenError> {
    let subject = match c.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TokenError::Claim("sub")),
    };
    let tenant = match c.get("tenant") {
        None => None,
        Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
        Some(_) => return Err(TokenError::Claim("tenant")),
    };
    let scopes = match c.get("scope") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(TokenError::Claim("scope")),
    };
    Ok(Principal { subject, tenant, roles: string_list(c, "roles")?, scopes, groups: Vec::new() })
}

/// 128 random bits, hex.
fn random_jti() -> Result<String, TokenError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut b).map_err(|_| TokenError::Sign)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::B64URL;
    use crate::config::SecretSource;
    use base64::Engine as _;
    use std::collections::BTreeMap;

    const K1: &str = "0123456789abcdef0123456789abcdef-v1";
    const K2: &str = "0123456789abcdef0123456789abcdef-v2";
    const NOW: i64 = 1_800_000_000;

    fn cfg(active: &str, keys: &[(&str, &str)]) -> GatewayTokensConfig {
        GatewayTokensConfig::inline(
            active,
            keys.iter()
                .map(|(k, v)| ((*k).to_owned(), SecretSource::Value((*v).to_owned())))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn tokens() -> GatewayTokens {
        GatewayTokens::new(&cfg("v1", &[("v1", K1), ("v2", K2)])).expect("config")
    }

    fn req() -> MintRequest {
        MintRequest {
            subject: "alice".into(),
            tenant: Some("acme".into()),
            roles: vec!["admin".into()],
            scopes: vec!["sandbox:read".into(), "sandbox:write".into()],
            ttl: Duration::from_secs(600),
        }
    }

    /// Signs arbitrary header/payload JSON with `key` (HS256).
    fn hs256(header: &str, payload: &str, key: &[u8]) -> String {
        let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), input.as_bytes());
        format!("{input}.{}", B64URL.encode(tag.as_ref()))
    }

    fn payload(extra: &str) -> String {
        format!(
            r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"alice","iat":{NOW},"exp":{},"jti":"j1"{extra}}}"#,
            NOW + 600
        )
    }

    #[test]
    fn mint_then_verify_round_trip() {
        let t = tokens();
        let tok = t.mint_at(&req(), NOW).expect("mint");
        let (p, exp) = t.verify(&tok, NOW + 1).expect("verify");
        assert_eq!(exp, NOW + 600);
        assert_eq!(p.subject, "alice");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.roles, vec!["admin"]);
        assert_eq!(p.scopes, vec!["sandbox:read", "sandbox:write"]);
        let parsed = jwt::parse(&tok).expect("parse");
        assert_eq!(parsed.header.kid.as_deref(), Some("v1"));
        assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
        let jti = parsed.claims["jti"].as_str().expect("jti");
        assert_eq!(jti.len(), 32);
        assert_ne!(jti, jwt::parse(&t.mint_at(&req(), NOW).expect("mint")).expect("p").claims["jti"]);
    }

    #[test]
    fn expiry_and_time_rules() {
        let t = tokens();
        let tok = t.mint_at(&req(), NOW).expect("mint");
        assert!(t.verify(&tok, NOW + 600 + 30).is_ok(), "inside leeway");
        assert_eq!(t.verify(&tok, NOW + 600 + 31).err(), Some(TokenError::Expired));
        assert_eq!(t.verify(&tok, NOW - 31).err(), Some(TokenError::NotYetValid));
        let strict = tokens().with_limits(0, 300);
        assert_eq!(strict.verify(&tok, NOW).err(), Some(TokenError::LifetimeTooLong));
    }

    /// Checklist 18: unknown or retired kid, wrong alg, missing kid, other key: rejected.
    #[test]
    fn checklist_18_wrong_keys_rejected() {
        let t = tokens();
        let good = hs256(r#"{"alg":"HS256","kid":"v2"}"#, &payload(""), K2.as_bytes());
        assert!(t.verify(&good, NOW).is_ok());
        let unknown = hs256(r#"{"alg":"HS256","kid":"v9"}"#, &payload(""), K2.as_bytes());
        assert_eq!(t.verify(&unknown, NOW).err(), Some(TokenError::UnknownKid));
        let no_kid = hs256(r#"{"alg":"HS256"}"#, &payload(""), K1.as_bytes());
        assert_eq!(t.verify(&no_kid, NOW).err(), Some(TokenError::MissingKid));
        let cross = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &payload(""), K2.as_bytes());
        assert_eq!(t.verify(&cross, NOW).err(), Some(TokenError::BadSignature));
        let rs = hs256(r#"{"alg":"RS256","kid":"v1"}"#, &payload(""), K1.as_bytes());
        assert_eq!(t.verify(&rs, NOW).err(), Some(TokenError::Algorithm));
        // Retired: v2 removed from the config.
        let retired = GatewayTokens::new(&cfg("v1", &[("v1", K1)])).expect("config");
        assert_eq!(retired.verify(&good, NOW).err(), Some(TokenError::UnknownKid));
        // Short or empty keys are refused at start.
        assert!(GatewayTokens::new(&cfg("v1", &[("v1", "short")])).is_err());
        assert!(GatewayTokens::new(&cfg("v1", &[("v1", "")])).is_err());
        assert!(GatewayTokens::new(&cfg("v3", &[("v1", K1)])).is_err());
    }

    /// Checklist 8 and 9 for gateway tokens: exp required and integer; iss/aud/jti/sub enforced.
    #[test]
    fn checklist_08_09_gateway_claims_enforced() {
        let t = tokens();
        let h = r#"{"alg":"HS256","kid":"v1"}"#;
        let sign = |p: &str| hs256(h, p, K1.as_bytes());
        let cases: [(String, TokenError); 9] = [
            (r#"{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j"}"#.into(), TokenError::Claim("exp")),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":"{}"}}"#, NOW + 60),
                TokenError::Claim("exp"),
            ),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{}.0}}"#, NOW + 60),
                TokenError::Claim("exp"),
            ),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{},"nbf":null}}"#, NOW + 60),
                TokenError::Claim("nbf"),
            ),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","jti":"j","exp":{},"iat":true}}"#, NOW + 60),
                TokenError::Claim("iat"),
            ),
            (format!(r#"{{"aud":"wasmgate","sub":"a","jti":"j","exp":{}}}"#, NOW + 60), TokenError::Issuer),
            (format!(r#"{{"iss":"wasmgate","sub":"a","jti":"j","exp":{}}}"#, NOW + 60), TokenError::Audience),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"a","exp":{}}}"#, NOW + 60),
                TokenError::Claim("jti"),
            ),
            (
                format!(r#"{{"iss":"wasmgate","aud":"wasmgate","sub":"","jti":"j","exp":{}}}"#, NOW + 60),
                TokenError::Claim("sub"),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(t.verify(&sign(&p), NOW).err(), Some(want), "{p}");
        }
    }

    /// Checklist 19: a token HMAC-signed with the sandbox secret is not a gateway token.
    #[test]
    fn checklist_19_sandbox_secret_is_not_an_hmac_key() {
        let t = tokens();
        let sandbox = b"the-sandbox-secret-that-is-32-bytes-long";
        for kid in ["v1", "v2", "sandbox"] {
            let tok = hs256(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), &payload(""), sandbox);
            assert!(t.verify(&tok, NOW).is_err(), "kid {kid}");
        }
    }

    #[test]
    fn mint_request_validation_and_debug() {
        let t = tokens();
        let mut r = req();
        r.ttl = Duration::ZERO;
        assert!(t.mint_at(&r, NOW).is_err());
        let mut r = req();
        r.scopes = vec!["a b".into()];
        assert!(t.mint_at(&r, NOW).is_err());
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    /// A key folder with `active` and the given versions, and an empty revocation file.
    fn folder(active: &str, keys: &[(&str, &str)]) -> (tempfile::TempDir, GatewayTokensConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let kd = dir.path().join("keys");
        std::fs::create_dir(&kd).expect("mkdir");
        std::fs::write(kd.join("active"), format!("{active}\n")).expect("write");
        for (v, k) in keys {
            std::fs::write(kd.join(v), k).expect("write");
        }
        let revoked = dir.path().join("revoked");
        std::fs::write(&revoked, "").expect("write");
        let cfg = GatewayTokensConfig::from_dir(kd, Some(revoked));
        (dir, cfg)
    }

    fn jti_of(token: &str) -> String {
        jwt::parse(token).expect("parse").claims["jti"].as_str().expect("jti").to_owned()
    }

    /// Checklist 17: a revoked token, re-encoded or re-signed with any current key, stays rejected.
    #[test]
    fn checklist_17_revoked_jti_rejected_however_reencoded_or_resigned() {
        let (dir, c) = folder("v1", &[("v1", K1), ("v2", K2)]);
        let t = GatewayTokens::new(&c).expect("folder config");
        let tok = t.mint_at(&req(), NOW).expect("mint");
        let other = t.mint_at(&req(), NOW).expect("mint");
        assert!(t.verify(&tok, NOW).is_ok());
        let jti = jti_of(&tok);
        std::fs::write(dir.path().join("revoked"), format!("# revoked\n{jti} {}\n", NOW + 600)).expect("write");
        t.reload().expect("reload");
        assert!(t.is_revoked(&jti));
        assert_eq!(t.verify(&tok, NOW).err(), Some(TokenError::Revoked));
        assert!(t.verify(&other, NOW).is_ok(), "only that jti");
        let p = payload("").replace("\"j1\"", &format!("{jti:?}"));
        let resigned = hs256(r#"{"alg":"HS256","kid":"v2"}"#, &p, K2.as_bytes());
        assert_eq!(t.verify(&resigned, NOW).err(), Some(TokenError::Revoked), "re-signed with another key");
        let reencoded = hs256(r#"{"typ":"JWT", "kid":"v1","alg":"HS256"}"#, &p.replace(',', ", "), K1.as_bytes());
        assert_eq!(t.verify(&reencoded, NOW).err(), Some(TokenError::Revoked), "re-encoded header and payload");
        let later = p.replace(&format!("\"iat\":{NOW}"), &format!("\"iat\":{}", NOW + 1));
        let reissued = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &later, K1.as_bytes());
        assert_eq!(t.verify(&reissued, NOW + 1).err(), Some(TokenError::Revoked), "other claims, same jti");
    }

    /// Checklist 18 after a reload: a retired version stops verifying; a bad
    /// update is refused and the last good keys keep verifying.
    #[test]
    fn checklist_18_retired_key_rejected_after_reload_and_bad_updates_refused() {
        let (dir, c) = folder("v2", &[("v1", K1), ("v2", K2)]);
        let kd = dir.path().join("keys");
        let t = GatewayTokens::new(&c).expect("folder config");
        let old = hs256(r#"{"alg":"HS256","kid":"v1"}"#, &payload(""), K1.as_bytes());
        let new = t.mint_at(&req(), NOW).expect("mint");
        assert_eq!(jwt::parse(&new).expect("parse").header.kid.as_deref(), Some("v2"));
        assert!(t.verify(&old, NOW).is_ok() && t.verify(&new, NOW).is_ok());
        std::fs::remove_file(kd.join("v1")).expect("retire v1");
        t.reload().expect("reload");
        assert_eq!(t.verify(&old, NOW).err(), Some(TokenError::UnknownKid), "retired");
        assert_eq!(t.key_versions(), ["v2"]);
        // Bad updates: a short key, an active version that does not exist, no active file.
        std::fs::write(kd.join("v3"), "short").expect("write");
        assert!(t.reload().is_err());
        std::fs::remove_file(kd.join("v3")).expect("rm");
        std::fs::write(kd.join("active"), "v9").expect("write");
        assert!(t.reload().is_err());
        std::fs::remove_file(kd.join("active")).expect("rm");
        assert!(t.reload().is_err());
        assert!(t.verify(&new, NOW).is_ok(), "the last good set keeps verifying");
        assert_eq!(t.active_version(), "v2");
        // A key equal to a forbidden secret (the sandbox secret) is refused on reload too.
        std::fs::write(kd.join("active"), "v2").expect("write");
        t.forbid_key(crate::auth::secret::sha256(K1.as_bytes())).expect("no current key equals it");
        std::fs::write(kd.join("v1"), K1).expect("write");
        assert!(t.reload().is_err());
        assert_eq!(t.key_versions(), ["v2"]);
    }

    #[test]
    fn unreadable_sources_are_start_errors() {
        let (dir, c) = folder("v1", &[("v1", K1)]);
        assert!(GatewayTokens::new(&c).is_ok());
        let mut missing_dir = c.clone();
        missing_dir.keys_dir = Some(dir.path().join("nope"));
        assert!(GatewayTokens::new(&missing_dir).is_err());
        let mut missing_list = c.clone();
        missing_list.revoked_file = Some(dir.path().join("nope"));
        assert!(GatewayTokens::new(&missing_list).is_err());
        let mut both = c;
        both.active_key = Some("v1".into());
        assert!(GatewayTokens::new(&both).is_err());
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The watcher sees Kubernetes `..data` swaps of the key folder and
    /// in-place renames of the revocation file, and ignores a bad update.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watcher_reloads_rotation_retirement_and_revocation_live() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kd = dir.path().join("keys");
        let ts = kd.join("..2025_06_01_00_00_00.1");
        std::fs::create_dir_all(&ts).expect("mkdir");
        std::fs::write(ts.join("active"), "v1\n").expect("write");
        std::fs::write(ts.join("v1"), K1).expect("write");
        for name in ["active", "v1"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), kd.join(name)).expect("link");
        }
        std::os::unix::fs::symlink("..2025_06_01_00_00_00.1", kd.join("..data")).expect("link");
        let revoked = dir.path().join("lists").join("revoked");
        std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
        std::fs::write(&revoked, "").expect("write");
        let t = GatewayTokens::new(&GatewayTokensConfig::from_dir(kd.clone(), Some(revoked.clone()))).expect("cfg");
        t.watch().expect("watch");
        let now = now_unix();
        let old = t.mint_at(&req(), now).expect("mint");

        files::rotate(&kd, None).expect("rotate");
        eventually("v2 active", || t.active_version() == "v2").await;
        let new = t.mint_at(&req(), now).expect("mint");
        assert!(t.verify(&old, now).is_ok(), "the old version verifies until retired");

        files::retire(&kd, "v1").expect("retire");
        eventually("v1 retired", || t.verify(&old, now) == Err(TokenError::UnknownKid)).await;

        files::revoke(&revoked, &jti_of(&new), Some(now + 600), now, 30).expect("revoke");
        eventually("revoked", || t.verify(&new, now) == Err(TokenError::Revoked)).await;

        // A bad Secret update (active names a missing version) is refused.
        let bad = kd.join("..bad");
        std::fs::create_dir(&bad).expect("mkdir");
        std::fs::write(bad.join("active"), "v7").expect("write");
        std::os::unix::fs::symlink("..bad", kd.join("..data_tmp")).expect("link");
        std::fs::rename(kd.join("..data_tmp"), kd.join("..data")).expect("swap");
        tokio::time::sleep(RELOAD_DEBOUNCE * 6).await;
        assert_eq!(t.active_version(), "v2");
        assert_eq!(t.verify(&new, now), Err(TokenError::Revoked));
        assert!(t.mint_at(&req(), now).is_ok_and(|tok| t.verify(&tok, now).is_ok()), "v2 still signs and verifies");
    }
}
