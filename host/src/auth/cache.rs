//! Verified OIDC tokens, keyed by the exact token text, so a repeated token
//! costs a hash lookup instead of a signature check. Entries expire at the
//! token's `exp` (plus leeway) and are ignored once the key that verified
//! them has left the provider's key set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::VerifiedToken;

/// Entries kept at most.
pub(crate) const CAPACITY: u64 = 10_000;

/// One verified token and what it depends on.
#[derive(Debug)]
pub(crate) struct Entry {
    pub token: Arc<VerifiedToken>,
    pub provider: usize,
    pub kid: String,
    pub fingerprint: [u8; 32],
    /// `exp` plus leeway, Unix seconds.
    pub valid_until: i64,
}

struct UntilExp;

impl Expiry<String, Arc<Entry>> for UntilExp {
    fn expire_after_create(&self, _key: &String, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        let left = value.valid_until.saturating_sub(super::now_unix()).max(0);
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
