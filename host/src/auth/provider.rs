//! One OIDC identity provider: its key set (swapped atomically), the
//! single-flight fetch, the background refresh loop, and token verification.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::jwks::{self, FetchError, KeySet, ProviderKey};
use super::{AuthError, TokenRejection, VerifiedToken};
use crate::config::{JwksConfig, ProviderConfig};
use crate::jose::{self, ParsedJwt, TimeError, check_times};
use crate::retry::Backoff;

/// State that only the holder of the fetch lock touches.
#[derive(Debug, Default)]
struct FetchState {
    /// The JWKS URL found through discovery (cleared when a fetch from it fails).
    discovered: Option<String>,
    /// When the last fetch triggered by an unknown `kid` started.
    last_on_demand: Option<Instant>,
}

/// A provider and its keys.
pub(crate) struct Provider {
    pub name: Arc<str>,
    pub issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    required_typ: Option<String>,
    jwks_url: Option<String>,
    cfg: JwksConfig,
    leeway: i64,
    max_lifetime: i64,
    client: reqwest::Client,
    keys: ArcSwapOption<KeySet>,
    /// Held across a fetch: concurrent callers wait for the fetch in flight.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Completed fetch attempts (success or failure).
    attempts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("key_count", &self.keys.load().as_ref().map_or(0, |k| k.keys.len()))
            .finish_non_exhaustive()
    }
}

/// Outcome of looking a key up.
pub(crate) enum Lookup {
    Found(Arc<ProviderKey>),
    /// Keys are usable but none matches.
    Unknown,
    /// No usable (present and fresh) key set.
    NoKeys,
}

impl Provider {
    pub fn new(
        cfg: &ProviderConfig,
        leeway: u64,
        max_lifetime: u64,
        client: reqwest::Client,
    ) -> Result<Self, AuthError> {
        let mut algorithms = Vec::new();
        for name in &cfg.algorithms {
            let alg = jose::alg_from_name(name)
                .ok_or_else(|| AuthError::Config(format!("provider {:?}: unknown algorithm {name:?}", cfg.name)))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(AuthError::Config(format!(
                    "provider {:?}: HMAC algorithms are never accepted from identity providers",
                    cfg.name
                )));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() || cfg.audiences.is_empty() || cfg.audiences.iter().any(String::is_empty) {
            return Err(AuthError::Config(format!("provider {:?} needs algorithms and non-empty audiences", cfg.name)));
        }
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            issuer: cfg.issuer.clone(),
            audiences: cfg.audiences.clone(),
            algorithms,
            required_typ: cfg.required_typ.clone(),
            jwks_url: cfg.jwks_url.clone(),
            cfg: cfg.jwks.clone(),
            leeway: i64::try_from(leeway).unwrap_or(i64::MAX),
            max_lifetime: i64::try_from(max_lifetime).unwrap_or(i64::MAX),
            client,
            keys: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            attempts: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// The clock-skew leeway, seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The current key set if it is present and not older than the maximum staleness.
    pub fn usable_keys(&self) -> Option<Arc<KeySet>> {
        let ks = self.keys.load_full()?;
        (ks.fetched_at.elapsed() <= Duration::from_secs(self.cfg.max_staleness_seconds)).then_some(ks)
    }

    pub fn lookup(&self, kid: Option<&str>) -> Lookup {
        let Some(ks) = self.usable_keys() else {
            return Lookup::NoKeys;
        };
        let key = match kid {
            Some(kid) => ks.keys.get(kid).cloned(),
            None if ks.keys.len() == 1 => ks.keys.values().next().cloned(),
            None => None,
        };
        key.map_or(Lookup::Unknown, Lookup::Found)
    }

    /// True when the key that verified a cached token is still served.
    pub fn still_has(&self, kid: &str, fingerprint: &[u8; 32]) -> bool {
        self.usable_keys().and_then(|ks| ks.keys.get(kid).map(|k| &k.fingerprint == fingerprint)).unwrap_or(false)
    }

    pub fn status(&self) -> (bool, usize, Option<String>) {
        let usable = self.usable_keys();
        let count = usable.as_ref().map_or(0, |k| k.keys.len());
        let err = self.last_error.lock().map(|e| e.clone()).unwrap_or_else(|p| p.into_inner().clone());
        (usable.is_some(), count, err)
    }

    fn set_error(&self, e: Option<String>) {
        match self.last_error.lock() {
            Ok(mut g) => *g = e,
            Err(p) => *p.into_inner() = e,
        }
    }

    /// One fetch, with the fetch lock held. Keeps the last good keys on failure.
    async fn fetch_locked(&self, st: &mut FetchState) -> Result<Option<Duration>, FetchError> {
        let result = self.fetch_inner(st).await;
        crate::metrics::jwks_fetch(&self.name, result.as_ref().map_or_else(FetchError::kind, |_| "success"));
        match &result {
            Ok(_) => self.set_error(None),
            Err(e) => {
                tracing::warn!(provider = %self.name, error = %e, "JWKS refresh failed; keeping last good keys");
                self.set_error(Some(e.to_string()));
            }
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    async fn fetch_inner(&self, st: &mut FetchState) -> Result<Option<Duration>, FetchError> {
        let max = self.cfg.max_body_bytes;
        let url = match (&self.jwks_url, &st.discovered) {
            (Some(u), _) | (None, Some(u)) => u.clone(),
            (None, None) => {
                let (body, _) = jwks::fetch(&self.client, &jwks::discovery_url(&self.issuer), max).await?;
                let u = jwks::parse_discovery(&self.issuer, &body)?;
                st.discovered = Some(u.clone());
                u
            }
        };
        let fetched = async {
            let (body, ttl) = jwks::fetch(&self.client, &url, max).await?;
            let keys = jwks::parse_jwks(&self.name, &body, &self.algorithms)?;
            Ok::<_, FetchError>((keys, ttl))
        }
        .await;
        let (keys, ttl) = match fetched {
            Ok(v) => v,
            Err(e) => {
                if self.jwks_url.is_none() {
                    st.discovered = None;
                }
                return Err(e);
            }
        };
        tracing::debug!(provider = %self.name, keys = keys.len(), "JWKS refreshed");
        crate::metrics::jwks_keys(&self.name, keys.len());
        self.keys.store(Some(Arc::new(KeySet { keys, fetched_at: Instant::now() })));
        Ok(ttl)
    }

    /// A background (scheduled) fetch.
    async fn refresh(&self) -> Result<Option<Duration>, FetchError> {
        let mut st = self.fetch.lock().await;
        self.fetch_locked(&mut st).await
    }

    /// Refetches because a token names an unknown key (or no keys are usable):
    /// single-flight (callers that waited for a fetch in flight reuse it) and at
    /// most once per cooldown.
    pub async fn refetch_on_demand(&self) {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut st = self.fetch.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return; // a fetch completed while we waited: use its result
        }
        let cooldown = Duration::from_secs(self.cfg.cooldown_seconds);
        if st.last_on_demand.is_some_and(|t| t.elapsed() < cooldown) {
            return;
        }
        st.last_on_demand = Some(Instant::now());
        let _ = self.fetch_locked(&mut st).await;
    }

    /// Verifies a strictly parsed token whose `iss` is this provider's.
    pub async fn verify(
        &self,
        parsed: &ParsedJwt<'_>,
        now: i64,
    ) -> Result<(VerifiedToken, Arc<ProviderKey>), AuthError> {
        let kid = parsed.header.kid.as_deref();
        let key = match self.lookup(kid) {
            Lookup::Found(k) => k,
            Lookup::Unknown | Lookup::NoKeys => {
                self.refetch_on_demand().await;
                match self.lookup(kid) {
                    Lookup::Found(k) => k,
                    Lookup::Unknown if kid.is_none() => {
                        return Err(TokenRejection::MissingKid.into());
                    }
                    Lookup::Unknown => return Err(TokenRejection::UnknownKid.into()),
                    Lookup::NoKeys => {
                        return Err(AuthError::Unavailable { provider: self.name.clone() });
                    }
                }
            }
        };
        // The key decides the algorithm; the header must agree with it.
        if parsed.header.alg != key.alg {
            return Err(TokenRejection::AlgorithmMismatch.into());
        }
        // The token was split, decoded and strictly parsed once (`jose::parse`):
        // the signature is checked over those bytes with the key's parsed
        // public key, then every claim rule below (checklist 8 to 12, 28).
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(TokenRejection::BadSignature.into());
        }
        let verified = self.check_claims(parsed, now)?;
        Ok((verified, key))
    }

    fn check_claims(&self, parsed: &ParsedJwt<'_>, now: i64) -> Result<VerifiedToken, AuthError> {
        let c = &parsed.claims;
        if let Some(required) = &self.required_typ {
            let typ = parsed.header.typ.as_deref().unwrap_or("");
            let bare = |s: &str| {
                let lower = s.to_ascii_lowercase();
                lower.strip_prefix("application/").map(str::to_owned).unwrap_or(lower)
            };
            if bare(typ) != bare(required) {
                return Err(TokenRejection::Typ.into());
            }
        }
        let issuer = match c.get("iss") {
            Some(Value::String(s)) if *s == self.issuer => s.clone(),
            _ => return Err(TokenRejection::Issuer.into()),
        };
        if !jose::audience_matches(c.get("aud"), &self.audiences) {
            return Err(TokenRejection::Audience.into());
        }
        let exp = jose::numeric_date(c, "exp")
            .map_err(|_| TokenRejection::Claim("exp"))?
            .ok_or(TokenRejection::Claim("exp"))?;
        let nbf = jose::numeric_date(c, "nbf").map_err(|_| TokenRejection::Claim("nbf"))?;
        let iat = jose::numeric_date(c, "iat").map_err(|_| TokenRejection::Claim("iat"))?;
        check_times(exp, nbf, iat, now, self.leeway, self.max_lifetime).map_err(|e| match e {
            TimeError::Expired => TokenRejection::Expired,
            TimeError::NotYetValid => TokenRejection::NotYetValid,
            TimeError::IssuedInFuture => TokenRejection::IssuedInFuture,
            TimeError::LifetimeTooLong => TokenRejection::LifetimeTooLong,
        })?;
        let subject = match c.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(TokenRejection::Claim("sub").into()),
        };
        let claims_json = serde_json::to_string(c).map_err(|_| TokenRejection::Claim("payload"))?;
        Ok(VerifiedToken::new(claims_json, subject, exp, issuer))
    }
}

/// The delay before the next scheduled fetch: after success the refresh
/// interval, shortened by `Cache-Control: max-age` but never below the
/// cooldown; after `failures` consecutive failures an exponential backoff
/// from 1 s capped at the interval (and at 5 minutes). `jitter` in `[0, 1)`
/// spreads replicas by up to ±10 %.
pub(crate) fn next_refresh_delay(cfg: &JwksConfig, max_age: Option<Duration>, failures: u32, jitter: f64) -> Duration {
    let interval = Duration::from_secs(cfg.refresh_seconds.max(1));
    let base = if failures == 0 {
        match max_age {
            Some(age) => interval.min(age.max(Duration::from_secs(cfg.cooldown_seconds.max(1)))),
            None => interval,
        }
    } else {
        Backoff { base: Duration::from_secs(1), cap: interval.min(Duration::from_secs(300)) }.delay(failures)
    };
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    base.mul_f64(factor).max(Duration::from_millis(500))
}

fn jitter() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = [0u8; 4];
    if aws_lc_rs::rand::SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// The background refresh loop; ends when the provider is dropped.
pub(crate) async fn refresh_loop(provider: Weak<Provider>) {
    let mut failures: u32 = 0;
    loop {
        let delay = {
            let Some(p) = provider.upgrade() else { return };
            let outcome = p.refresh().await;
            let max_age = match outcome {
                Ok(age) => {
                    failures = 0;
                    age
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    None
                }
            };
            next_refresh_delay(&p.cfg, max_age, failures, jitter())
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_delay_rules() {
        let cfg = JwksConfig { refresh_seconds: 300, cooldown_seconds: 10, ..JwksConfig::default() };
        let mid = 0.5;
        assert_eq!(next_refresh_delay(&cfg, None, 0, mid), Duration::from_secs(300));
        assert_eq!(next_refresh_delay(&cfg, Some(Duration::from_secs(60)), 0, mid), Duration::from_secs(60));
        assert_eq!(next_refresh_delay(&cfg, Some(Duration::from_secs(1)), 0, mid), Duration::from_secs(10));
        assert_eq!(next_refresh_delay(&cfg, Some(Duration::from_secs(9999)), 0, mid), Duration::from_secs(300));
        assert_eq!(next_refresh_delay(&cfg, None, 1, mid), Duration::from_secs(1));
        assert_eq!(next_refresh_delay(&cfg, None, 4, mid), Duration::from_secs(8));
        assert_eq!(next_refresh_delay(&cfg, None, 30, mid), Duration::from_secs(300));
        let lo = next_refresh_delay(&cfg, None, 0, 0.0);
        let hi = next_refresh_delay(&cfg, None, 0, 0.999_999);
        assert!(lo >= Duration::from_secs(270) && hi <= Duration::from_secs(330) && lo < hi);
    }
}
