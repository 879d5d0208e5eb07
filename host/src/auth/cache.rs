//! The token cache: one entry per verified token (OIDC or gateway), keyed
//! by the SHA-256 of the token text (collision-safe, and 32 bytes instead
//! of the whole token), so a repeated token costs a hash lookup instead of
//! a signature check. An OIDC entry also carries the principal the claims
//! mapper made of it (see [`VerifiedToken::mapped_principal`]), so a token
//! is cached once, not twice.
//!
//! Bounded in bytes (`auth.token_cache.max_bytes`): each entry weighs an
//! estimate of the heap it holds, moka's bookkeeping included. Entries
//! expire at the token's `exp` (plus leeway) and are ignored once the key
//! that verified them has left its key set (a JWKS refresh, a retired
//! gateway key) or, for gateway tokens, once their `jti` is revoked.

use std::mem::size_of;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use super::VerifiedToken;
use super::jwks::ProviderKey;
use crate::identity::Principal;

/// The cache key: SHA-256 of the token text.
pub(crate) type TokenKey = [u8; 32];

/// The key of `token`.
pub(crate) fn key_of(token: &str) -> TokenKey {
    crate::jose::sha256(token.as_bytes())
}

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
    /// Verified against a provider's key (shared with the key set, so it
    /// costs a pointer per entry).
    Oidc { token: Arc<VerifiedToken>, provider: usize, key: Arc<ProviderKey> },
    /// Verified against a gateway key version.
    /// (The principal is boxed: it would make every entry as large as it.)
    Gateway { principal: Box<Principal>, expires_at: i64, kid: String, jti: String },
}

struct UntilExp;

impl Expiry<TokenKey, Arc<Entry>> for UntilExp {
    fn expire_after_create(&self, _key: &TokenKey, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        let left = value.valid_until.saturating_sub(crate::jose::now_unix()).max(0);
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)).saturating_add(Duration::from_secs(1)))
    }
}

/// What moka keeps per entry besides key and value: its hash-table node,
/// the entry's metadata, its nodes in the access-order and write-order
/// queues and in the expiry timer wheel (each its own allocation).
const MOKA_PER_ENTRY: usize = 320;
/// What the allocator adds per allocation (header and rounding), roughly.
const PER_ALLOCATION: usize = 16;
/// An `Arc`'s two counters.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Estimated heap bytes of a principal's strings and vectors.
fn principal_bytes(p: &Principal) -> usize {
    let strings = |v: &[String]| v.iter().map(|s| s.capacity() + PER_ALLOCATION).sum::<usize>();
    let vecs = [&p.roles, &p.scopes, &p.groups]
        .iter()
        .map(|v| v.capacity() * size_of::<String>() + PER_ALLOCATION + strings(v))
        .sum::<usize>();
    p.subject.capacity() + PER_ALLOCATION + p.tenant.as_ref().map_or(0, |t| t.capacity() + PER_ALLOCATION) + vecs
}

/// The weight of an entry: an honest estimate of the bytes it holds.
/// An OIDC entry's principal is mapped after it is inserted, so it is
/// reserved up front: a principal is a projection of the claims, so its
/// strings are taken as no larger than the claims JSON.
fn weigh(_key: &TokenKey, entry: &Arc<Entry>) -> u32 {
    let fixed = MOKA_PER_ENTRY + size_of::<TokenKey>() + ARC_HEADER + size_of::<Entry>() + PER_ALLOCATION;
    let kind = match &entry.kind {
        Kind::Oidc { token, .. } => {
            let token_bytes = ARC_HEADER + size_of::<VerifiedToken>() + 4 * PER_ALLOCATION + token.heap_bytes();
            let reserved_principal = 2 * ARC_HEADER
                + size_of::<u64>()
                + size_of::<Arc<Principal>>()
                + size_of::<Principal>()
                + 2 * PER_ALLOCATION
                + token.claims_json.len()
                + 8 * PER_ALLOCATION;
            token_bytes + reserved_principal
        }
        Kind::Gateway { principal, kid, jti, .. } => {
            size_of::<Principal>()
                + PER_ALLOCATION
                + principal_bytes(principal)
                + kid.capacity()
                + jti.capacity()
                + 2 * PER_ALLOCATION
        }
    };
    u32::try_from(fixed + kind).unwrap_or(u32::MAX)
}

/// The cache, bounded in bytes; disabled (every token verified every
/// time) when the bound is 0.
#[derive(Clone)]
pub(crate) struct VerifiedCache(Option<Cache<TokenKey, Arc<Entry>>>);

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self.usage();
        f.debug_struct("VerifiedCache").field("entries", &entries).field("bytes", &bytes).finish()
    }
}

impl VerifiedCache {
    /// A cache holding at most about `max_bytes` (by the entries' weights).
    pub fn new(max_bytes: u64) -> Self {
        Self(
            (max_bytes > 0)
                .then(|| Cache::builder().max_capacity(max_bytes).weigher(weigh).expire_after(UntilExp).build()),
        )
    }

    /// False when the bound is 0 (nothing is ever cached).
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    pub fn get(&self, key: &TokenKey) -> Option<Arc<Entry>> {
        self.0.as_ref()?.get(key)
    }

    pub fn insert(&self, key: TokenKey, entry: Entry) {
        if let Some(c) = &self.0 {
            c.insert(key, Arc::new(entry));
        }
    }

    pub fn remove(&self, key: &TokenKey) {
        if let Some(c) = &self.0 {
            c.invalidate(key);
        }
    }

    /// Entries and their summed weight (bytes), as moka last counted them
    /// (eventually consistent).
    pub fn usage(&self) -> (u64, u64) {
        self.0.as_ref().map_or((0, 0), |c| (c.entry_count(), c.weighted_size()))
    }

    /// Applies pending inserts and evictions now (tests).
    #[cfg(test)]
    pub fn settle(&self) {
        if let Some(c) = &self.0 {
            c.run_pending_tasks();
        }
    }

    /// The weight an entry would have (tests).
    #[cfg(test)]
    pub fn weight_of(entry: Entry) -> u32 {
        weigh(&[0; 32], &Arc::new(entry))
    }
}
