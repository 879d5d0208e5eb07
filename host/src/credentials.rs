//! Upstream credentials from the credentials driver, cached.
//!
//! [`CredentialResolver::resolve`] serves a credential from the cache until
//! `refresh_skew` before its `expires_at_ms` (a credential without expiry is
//! kept for `default_ttl`); `refresh_ahead` before that point the next call
//! starts one background refresh and keeps serving the current credential.
//! Misses are single-flight: concurrent callers share one driver call and its
//! outcome. When the driver cannot answer, the error is typed
//! ([`CredentialError`], all of which the server maps to 503 / `UNAVAILABLE`);
//! there is never a fallback credential. The catalogue (`ListCredentials`) is
//! cached for `catalogue_ttl`, also single-flight.

mod flight;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use wasmgate_proto::credentials::credentials_driver_client::CredentialsDriverClient;
use wasmgate_proto::credentials::{ListCredentialsRequest, ResolveCredentialRequest, ResolveCredentialResponse};

use self::flight::Flight;
use crate::config::{CredentialCacheConfig, SecretValue};
use crate::drivers::{Driver, DriverError};
use crate::identity::{CredentialInfo, CredentialUse};
use crate::tasks::Tasks;

/// Longest token accepted from the driver, bytes.
const MAX_TOKEN: usize = 16 * 1024;
/// Longest token type accepted from the driver, bytes.
const MAX_TOKEN_TYPE: usize = 64;
/// Pause before another background refresh after one failed.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

/// Why a credential (or the catalogue) cannot be had. The server maps every
/// variant to 503 / `UNAVAILABLE`. Never contains a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The driver is down, unreachable, or cannot give the credential now.
    #[error("credentials driver unavailable: {reason}")]
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// The driver did not answer within the deadline.
    #[error("credentials driver did not answer within {0:?}")]
    DeadlineExceeded(Duration),
    /// The driver does not know the credential.
    #[error("unknown credential {name:?}")]
    UnknownCredential {
        /// The credential's name.
        name: String,
    },
    /// The driver's answer cannot be used.
    #[error("credentials driver gave an invalid answer for {name:?}: {reason}")]
    InvalidAnswer {
        /// The credential's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A [`CredentialUse`] names another credential or its prefix cannot be
    /// in a header (policy output is validated before, so this is a bug).
    #[error("credential use for {credential:?} cannot be applied")]
    InvalidUse {
        /// The credential named by the use.
        credential: String,
    },
}

impl From<DriverError> for CredentialError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Unavailable { reason, .. } => Self::Unavailable { reason },
            DriverError::DeadlineExceeded { timeout, .. } => Self::DeadlineExceeded(timeout),
            DriverError::Status { code, message, .. } => {
                Self::Unavailable { reason: format!("driver answered {code:?}: {message}") }
            }
        }
    }
}

/// A credential's token. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct CredentialToken(SecretValue);

impl CredentialToken {
    /// The token bytes (visible ASCII). Never log them.
    pub fn expose(&self) -> &[u8] {
        self.0.expose()
    }
}

impl fmt::Debug for CredentialToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialToken([redacted; {} bytes])", self.0.expose().len())
    }
}

impl fmt::Display for CredentialToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A credential as resolved by the driver.
#[derive(Debug, Clone)]
pub struct ResolvedCredential {
    name: String,
    token: CredentialToken,
    token_type: String,
    expires_at: Option<SystemTime>,
}

impl ResolvedCredential {
    /// The credential's catalogue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token.
    pub fn token(&self) -> &CredentialToken {
        &self.token
    }

    /// For example `Bearer` (may be empty).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the driver says the token must no longer be used; `None` when
    /// it gives no expiry.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The value of `use_.header`: `use_.prefix` followed by the token,
    /// marked sensitive (never indexed by HPACK, hidden from `Debug`).
    pub fn header_value(&self, use_: &CredentialUse) -> Result<HeaderValue, CredentialError> {
        let invalid = || CredentialError::InvalidUse { credential: use_.credential.clone() };
        if use_.credential != self.name {
            return Err(invalid());
        }
        let token = self.token.expose();
        let mut bytes = Vec::with_capacity(use_.prefix.len() + token.len());
        bytes.extend_from_slice(use_.prefix.as_bytes());
        bytes.extend_from_slice(token);
        let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes)).map_err(|_| invalid())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// How long from `now` until a credential expiring at `expires_at` reaches
/// `skew` before its expiry; zero when that point has passed.
pub fn refresh_in(now: SystemTime, expires_at: SystemTime, skew: Duration) -> Duration {
    expires_at.checked_sub(skew).and_then(|t| t.duration_since(now).ok()).unwrap_or(Duration::ZERO)
}

/// When a credential fetched at `fetched` stops being served (`stale`) and
/// when its background refresh starts (`refresh`), as offsets from `fetched`.
fn schedule(fetched: SystemTime, expires_at: Option<SystemTime>, cfg: &CacheSettings) -> (Duration, Duration) {
    let stale = match expires_at {
        Some(e) => refresh_in(fetched, e, cfg.skew),
        None => cfg.default_ttl,
    };
    let refresh = stale - cfg.refresh_ahead.min(stale / 2);
    (stale, refresh)
}

#[derive(Debug, Clone, Copy)]
struct CacheSettings {
    skew: Duration,
    refresh_ahead: Duration,
    default_ttl: Duration,
    catalogue_ttl: Duration,
}

impl From<&CredentialCacheConfig> for CacheSettings {
    fn from(c: &CredentialCacheConfig) -> Self {
        Self {
            skew: Duration::from_millis(c.refresh_skew_ms),
            refresh_ahead: Duration::from_millis(c.refresh_ahead_ms),
            default_ttl: Duration::from_millis(c.default_ttl_ms),
            catalogue_ttl: Duration::from_millis(c.catalogue_ttl_ms),
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn add_ms(t: SystemTime, d: Duration) -> i64 {
    unix_ms(t).saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug)]
struct Entry {
    credential: Arc<ResolvedCredential>,
    /// Not served from this point (Unix ms).
    stale_at_ms: i64,
    /// A background refresh starts from this point (Unix ms).
    refresh_at_ms: i64,
}

/// One credential's place in the cache: its current entry, the single
/// flight fetching it, and the refresh-ahead state.
#[derive(Debug, Default)]
struct CachedCredential {
    current: ArcSwapOption<Entry>,
    flight: Flight<Arc<ResolvedCredential>, CredentialError>,
    refreshing: AtomicBool,
    retry_at_ms: AtomicI64,
}

impl CachedCredential {
    fn fresh(&self, now_ms: i64) -> Option<Arc<ResolvedCredential>> {
        self.current.load().as_ref().filter(|e| now_ms < e.stale_at_ms).map(|e| Arc::clone(&e.credential))
    }
}

type Catalogue = Arc<[CredentialInfo]>;

#[derive(Debug)]
struct Inner {
    driver: Driver,
    client: CredentialsDriverClient<tonic::transport::Channel>,
    cfg: CacheSettings,
    slots: RwLock<HashMap<String, Arc<CachedCredential>>>,
    catalogue: ArcSwapOption<(Catalogue, Instant)>,
    catalogue_flight: Flight<Catalogue, CredentialError>,
    /// Where refreshes ahead of expiry run, once started.
    tasks: std::sync::OnceLock<Tasks>,
}

/// Resolves credentials through the credentials driver, with caching,
/// refresh-ahead and single-flight. Clones share the cache.
#[derive(Debug, Clone)]
pub struct CredentialResolver {
    inner: Arc<Inner>,
}

impl CredentialResolver {
    /// A resolver over a started credentials [`Driver`].
    pub fn new(driver: Driver, cfg: &CredentialCacheConfig) -> Self {
        let client = CredentialsDriverClient::new(driver.channel());
        Self {
            inner: Arc::new(Inner {
                driver,
                client,
                cfg: CacheSettings::from(cfg),
                slots: RwLock::default(),
                catalogue: ArcSwapOption::empty(),
                catalogue_flight: Flight::default(),
                tasks: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Refreshes credentials ahead of their expiry on `tasks` from now on;
    /// before, a credential is fetched only once it is stale.
    pub fn start(&self, tasks: &Tasks) {
        let _ = self.inner.tasks.set(tasks.clone());
    }

    /// The driver behind this resolver (for readiness).
    pub fn driver(&self) -> &Driver {
        &self.inner.driver
    }

    /// The credential `name`: cached until `refresh_skew` before it expires,
    /// refreshed in the background ahead of that, fetched single-flight on a
    /// miss. Must be called within a Tokio runtime.
    pub async fn resolve(&self, name: &str) -> Result<Arc<ResolvedCredential>, CredentialError> {
        let slot = self.slot(name);
        let now = unix_ms(SystemTime::now());
        if let Some(e) = slot.current.load().as_ref()
            && now < e.stale_at_ms
        {
            if now >= e.refresh_at_ms {
                self.spawn_refresh(name, &slot, now);
            }
            crate::metrics::credential_cache("hit");
            return Ok(Arc::clone(&e.credential));
        }
        crate::metrics::credential_cache("miss");
        let result = slot.flight.run(|| slot.fresh(unix_ms(SystemTime::now())), || self.inner.fetch(name, &slot)).await;
        if result.is_err() && slot.current.load().is_none() {
            // Keep no slot for names that never resolved (unknown credentials).
            let mut slots = self.inner.slots.write().unwrap_or_else(PoisonError::into_inner);
            if slots.get(name).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(name);
            }
        }
        result
    }

    fn slot(&self, name: &str) -> Arc<CachedCredential> {
        if let Some(s) = self.inner.slots.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Arc::clone(s);
        }
        let mut slots = self.inner.slots.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(name.to_owned()).or_default())
    }

    fn spawn_refresh(&self, name: &str, slot: &Arc<CachedCredential>, now: i64) {
        let Some(tasks) = self.inner.tasks.get() else { return };
        if now < slot.retry_at_ms.load(Ordering::Acquire) || slot.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let slot = Arc::clone(slot);
        let name = name.to_owned();
        tasks.spawn("credential refresh", async move {
            let not_due = || {
                let now = unix_ms(SystemTime::now());
                slot.current.load().as_ref().filter(|e| now < e.refresh_at_ms).map(|e| Arc::clone(&e.credential))
            };
            if let Err(e) = slot.flight.run(not_due, || inner.fetch(&name, &slot)).await {
                tracing::warn!(credential = %name, error = %e, "background credential refresh failed");
                crate::metrics::credential_refresh_failure();
                slot.retry_at_ms.store(add_ms(SystemTime::now(), REFRESH_RETRY), Ordering::Release);
            }
            slot.refreshing.store(false, Ordering::Release);
        });
    }

    /// The driver's catalogue, cached for `catalogue_ttl`, single-flight.
    pub async fn catalogue(&self) -> Result<Arc<[CredentialInfo]>, CredentialError> {
        let fresh = || {
            self.inner
                .catalogue
                .load()
                .as_ref()
                .filter(|c| c.1.elapsed() < self.inner.cfg.catalogue_ttl)
                .map(|c| Arc::clone(&c.0))
        };
        if let Some(c) = fresh() {
            return Ok(c);
        }
        self.inner.catalogue_flight.run(fresh, || self.inner.fetch_catalogue()).await
    }
}

impl Inner {
    async fn fetch(&self, name: &str, slot: &CachedCredential) -> Result<Arc<ResolvedCredential>, CredentialError> {
        let mut client = self.client.clone();
        let request = self.driver.request(ResolveCredentialRequest { name: name.to_owned() });
        let answer =
            self.driver.call("ResolveCredential", client.resolve_credential(request)).await.map_err(|e| match e {
                DriverError::Status { code: tonic::Code::NotFound, .. } => {
                    CredentialError::UnknownCredential { name: name.to_owned() }
                }
                e => e.into(),
            })?;
        let fetched = SystemTime::now();
        let credential = Arc::new(validate(name, answer, fetched)?);
        let (stale, refresh) = schedule(fetched, credential.expires_at, &self.cfg);
        slot.current.store(Some(Arc::new(Entry {
            credential: Arc::clone(&credential),
            stale_at_ms: add_ms(fetched, stale),
            refresh_at_ms: add_ms(fetched, refresh),
        })));
        tracing::debug!(credential = name, cached_for = ?stale, "credential resolved");
        Ok(credential)
    }

    async fn fetch_catalogue(&self) -> Result<Catalogue, CredentialError> {
        let mut client = self.client.clone();
        let request = self.driver.request(ListCredentialsRequest {});
        let answer = self.driver.call("ListCredentials", client.list_credentials(request)).await?;
        let list: Catalogue = answer
            .credentials
            .into_iter()
            .map(|c| CredentialInfo { name: c.name, scopes: c.scopes })
            .collect::<Vec<_>>()
            .into();
        self.catalogue.store(Some(Arc::new((Arc::clone(&list), Instant::now()))));
        Ok(list)
    }
}

/// Checks a driver answer: a header-safe token, a word for the type, and an
/// expiry that has not passed.
fn validate(
    name: &str,
    answer: ResolveCredentialResponse,
    now: SystemTime,
) -> Result<ResolvedCredential, CredentialError> {
    let invalid = |reason| CredentialError::InvalidAnswer { name: name.to_owned(), reason };
    let token = answer.token.as_bytes();
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(invalid("token is empty or too long"));
    }
    if !token.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(invalid("token is not visible ASCII"));
    }
    if answer.token_type.len() > MAX_TOKEN_TYPE
        || !answer.token_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid("token type is not a word"));
    }
    let expires_at = match answer.expires_at_ms {
        0 => None,
        ms if ms < 0 => return Err(invalid("negative expiry")),
        ms => {
            let t = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
            if t <= now {
                return Err(invalid("credential has already expired"));
            }
            Some(t)
        }
    };
    Ok(ResolvedCredential {
        name: name.to_owned(),
        token: CredentialToken(SecretValue::new(answer.token.into_bytes())),
        token_type: answer.token_type,
        expires_at,
    })
}
