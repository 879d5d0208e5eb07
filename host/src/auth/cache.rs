//! Verified tokens (OIDC and gateway), keyed by the exact token text, so a
//! repeated token costs a hash lookup instead of a signature check. Entries
//! expire at the token's `exp` (plus leeway) and are ignored once the key
//! that verified them has left its key set (a JWKS refresh, a retired
//! gateway key) or, for gateway tokens, once their `jti` is revoked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::VerifiedToken;
use crate::identity::Principal;

/// Entries kept at most.
pub(crate) const CAPACITY: u64 = 10_000;

/// One verified token and what it depends on.
#[derive(Debug)]
pub(crate) struct Entry {
    /// What verified it.
    pub kind: Kind,
    /// `exp` plus leeway, Unix seconds.
    pub valid_until: i64,
}

/// The two kinds of verified token.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Verified against a provider's key.
    Oidc { token: Arc<VerifiedToken>, provider: usize, kid: String, fingerprint: [u8; 32] },
    /// Verified against a gateway key version.
    Gateway { principal: Principal, expires_at: i64, kid: String, jti: String },
}

struct UntilExp;

impl Expiry<String, Arc<Entry>> for UntilExp {
    fn expire_after_create(&self, _key: &String, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        let left = value.valid_until.saturating_sub(crate::jose::now_unix()).max(0);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)).saturating_add(Duration::from_secs(1)))
    }
}

/// The bounded cache.
#[derive(Clone)]
pub(crate) struct VerifiedCache(Cache<String, Arc<Entry>>);

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache").field("entries", &self.0.entry_count()).finish()
    }
}

impl VerifiedCache {
    pub fn new(capacity: u64) -> Self {
        Self(Cache::builder().max_capacity(capacity).expire_after(UntilExp).build())
    }

    pub fn get(&self, token: &str) -> Option<Arc<Entry>> {
        self.0.get(token)
    }

    pub fn insert(&self, token: &str, entry: Entry) {
        self.0.insert(token.to_owned(), Arc::new(entry));
    }

    pub fn remove(&self, token: &str) {
        self.0.invalidate(token);
    }
}
