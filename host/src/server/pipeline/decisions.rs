//! The decision cache: an authorizer's allow or deny, reused for a later
//! call whose input is the same.
//!
//! The WIT contract requires an authorizer's answer to be a pure function
//! of its input, so the host may reuse it. The key is everything the
//! authorizer receives, the whole [`AuthzRequest`] (call, classification,
//! authentication with the principal), plus the policy generation (which
//! fixes the component, its settings and which tenant gets which
//! authorizer), in a canonical length-prefixed encoding compared byte for
//! byte: two different inputs never share an entry. An entry is never
//! served past the policy generation (part of the key), nor past the `exp`
//! of the token whose call stored it, and only answers are cached, never a
//! failure. A binding with `cache_decisions: false` is asked every time.
//!
//! A binding's shadow still runs on a cached call, against the cached
//! answer, so it keeps seeing all live traffic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use tracing::Span;

use crate::auth::Verified;
use crate::identity::{Authentication, AuthzRequest, CallInfo, Classification, Decision, Principal};
use crate::plugins::{PolicyError, ShadowRun, Slot};

/// Bytes the decision cache may hold (keys, deny reasons and a fixed
/// overhead per entry): about 10 000 decisions of typical size.
pub(super) const MAX_BYTES: u64 = 4 << 20;

/// No decision is kept longer than this, whatever the token's `exp`.
const TIME_TO_LIVE: Duration = Duration::from_secs(600);

/// What an entry costs besides its key and reason (the entry, moka's node).
const ENTRY_OVERHEAD: u32 = 96;

/// An authorizer's answer for one call.
#[derive(Debug)]
pub(super) struct Answer {
    /// The decision, or why there is none (the call is then denied).
    pub(super) decision: Result<Decision, PolicyError>,
    /// The shadow's evaluation, when the slot has a shadow.
    pub(super) shadow: Option<ShadowRun>,
    /// The decision came from the cache: the component was not called.
    pub(super) cached: bool,
}

/// What a lookup depends on besides the request.
#[derive(Debug, Clone, Copy)]
struct Lookup {
    /// The policy generation.
    generation: u64,
    /// The binding lets its decisions be cached.
    enabled: bool,
    /// The `exp` of the caller's token (Unix seconds).
    expires_at: Option<i64>,
    /// Now, Unix seconds.
    now: i64,
}

#[derive(Debug, Clone)]
struct Entry {
    decision: Decision,
    /// The `exp` (Unix seconds) of the token whose call stored it.
    expires_at: Option<i64>,
}

/// Authorizer decisions per (policy generation, authorization request),
/// bounded in bytes.
#[derive(Debug)]
pub(in crate::server) struct Decisions {
    cache: Cache<Box<[u8]>, Entry>,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The `exp` of the token a call was authenticated with (`None` without a
/// token: anonymous or sandbox-secret calls).
pub(super) fn expiry(verified: &Verified) -> Option<i64> {
    match verified {
        Verified::Anonymous | Verified::SandboxSecret => None,
        Verified::Oidc { token, .. } => Some(token.expires_at),
        Verified::Gateway { expires_at, .. } => Some(*expires_at),
    }
}

impl Decisions {
    /// An empty cache of at most `max_bytes`.
    // moka's weigher takes `&K`, and the key is a `Box<[u8]>`.
    #[allow(clippy::borrowed_box)]
    pub(super) fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Box<[u8]>, e: &Entry| {
                let reason = match &e.decision {
                    Decision::Allow => 0,
                    Decision::Deny(r) => r.len(),
                };
                u32::try_from(k.len() + reason).unwrap_or(u32::MAX).saturating_add(ENTRY_OVERHEAD)
            })
            .time_to_live(TIME_TO_LIVE)
            .build();
        Self { cache }
    }

    /// `slot`'s decision on `request` in policy `generation`: from the cache
    /// when the slot allows it and an entry for exactly this input is there
    /// and unexpired, else from the component (an answer is then stored
    /// until `expires_at`, the token's `exp`; a failure is not).
    pub(super) async fn authorize(
        &self,
        generation: u64,
        slot: &Slot,
        request: &AuthzRequest,
        expires_at: Option<i64>,
    ) -> Answer {
        let lookup = Lookup { generation, enabled: slot.caches_decisions(), expires_at, now: now_secs() };
        let on_hit = move |d: &Decision| slot.shadow_authorize(request, d);
        self.decide(lookup, request, on_hit, move || slot.authorize_with_shadow(request)).await
    }

    /// [`Decisions::authorize`] with the component's call (`ask`) and the
    /// shadow's on a cached call (`on_hit`) as functions.
    async fn decide<Fut>(
        &self,
        lookup: Lookup,
        request: &AuthzRequest,
        on_hit: impl FnOnce(&Decision) -> Option<ShadowRun>,
        ask: impl FnOnce() -> Fut,
    ) -> Answer
    where
        Fut: Future<Output = (Result<Decision, PolicyError>, Option<ShadowRun>)>,
    {
        if !lookup.enabled {
            let (decision, shadow) = ask().await;
            return Answer { decision, shadow, cached: false };
        }
        let key = key(lookup.generation, request);
        if let Some(decision) = self.get(&key, lookup.now) {
            let shadow = on_hit(&decision);
            return Answer { decision: Ok(decision), shadow, cached: true };
        }
        let (decision, shadow) = ask().await;
        if let Ok(d) = &decision {
            self.put(key, d.clone(), lookup.expires_at, lookup.now);
        }
        Answer { decision, shadow, cached: false }
    }

    /// The decision stored under `key`, unless its token expired by `now`.
    fn get(&self, key: &[u8], now: i64) -> Option<Decision> {
        let entry = self.cache.get(key)?;
        if entry.expires_at.is_some_and(|exp| exp <= now) {
            self.cache.invalidate(key);
            return None;
        }
        Some(entry.decision)
    }

    /// Stores `decision` under `key` until `expires_at`; nothing if that
    /// is already past.
    fn put(&self, key: Vec<u8>, decision: Decision, expires_at: Option<i64>, now: i64) {
        if expires_at.is_some_and(|exp| exp <= now) {
            return;
        }
        self.cache.insert(key.into_boxed_slice(), Entry { decision, expires_at });
    }
}

/// Records `answer` on its span ([`super::policy::policy_span`]).
pub(super) fn record(span: &Span, answer: &Answer) {
    if span.is_disabled() {
        return;
    }
    span.record("wasmgate.decision.cached", answer.cached);
    super::policy::record_answer(span, answer.decision.as_ref().map(|d| Some(matches!(d, Decision::Allow))));
}

/// The canonical encoding of everything the authorizer receives, with the
/// policy generation: every string and list length-prefixed (LEB128),
/// every enum and option tagged. The destructuring names every field, so a
/// field added to the request does not compile until it is keyed here.
fn key(generation: u64, request: &AuthzRequest) -> Vec<u8> {
    let AuthzRequest { call, classification, authentication } = request;
    let CallInfo { protocol, http_method, path, grpc_service, grpc_method, route, authority } = call;
    let Classification { class, required_scopes } = classification;
    let Authentication { kind, source, provider, principal } = authentication;
    let mut k = Key(Vec::with_capacity(160 + path.len() + authority.len()));
    k.uint(generation);
    k.tag(*protocol as u8);
    for s in [http_method, path, grpc_service, grpc_method, route, authority] {
        k.str(s);
    }
    k.tag(*class as u8);
    k.list(required_scopes);
    k.tag(*kind as u8);
    k.tag(*source as u8);
    k.opt_str(provider.as_deref());
    match principal {
        None => k.tag(0),
        Some(Principal { subject, tenant, roles, scopes, groups }) => {
            k.tag(1);
            k.str(subject);
            k.opt_str(tenant.as_deref());
            k.list(roles);
            k.list(scopes);
            k.list(groups);
        }
    }
    k.0
}

struct Key(Vec<u8>);

impl Key {
    fn uint(&mut self, mut n: u64) {
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(low);
                return;
            }
            self.0.push(low | 0x80);
        }
    }

    fn tag(&mut self, t: u8) {
        self.0.push(t);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }

    fn list(&mut self, items: &[String]) {
        self.uint(items.len() as u64);
        for s in items {
            self.str(s);
        }
    }
}

#[cfg(feature = "testing")]
pub use bench::PolicyStage;

/// The policy stage as the pipeline runs it, for benchmarks.
#[cfg(feature = "testing")]
mod bench {
    use crate::auth::Verified;
    use crate::identity::{AuthzRequest, CallInfo, Decision};
    use crate::plugins::PolicySet;

    /// The pipeline's policy stage over its real caches: classify (cached
    /// per path), map (cached per token), authorize (through the decision
    /// cache unless the binding opts out). For benchmarks only.
    #[derive(Debug)]
    pub struct PolicyStage {
        caches: super::super::Caches,
    }

    impl Default for PolicyStage {
        fn default() -> Self {
            Self { caches: super::super::Caches::new() }
        }
    }

    impl PolicyStage {
        /// One call's classify, map and authorize on route `route` (its
        /// index) of `policy`; the call is given back.
        pub async fn run(
            &self,
            policy: &PolicySet,
            route: usize,
            method: &http::Method,
            call: CallInfo,
            verified: &Verified,
        ) -> (CallInfo, Result<Decision, String>) {
            let classification = self.caches.classify(policy, route, method, &call).await;
            let authentication = match self.caches.authentication(policy, verified).await {
                Ok(a) => a,
                Err(e) => return (call, Err(e)),
            };
            let request = AuthzRequest { call, classification, authentication };
            let tenant = request.authentication.principal.as_ref().and_then(|p| p.tenant.as_deref());
            let slot = policy.authorizer(tenant);
            let expires_at = super::expiry(verified);
            let answer = self.caches.decisions.authorize(policy.generation(), slot, &request, expires_at).await;
            (request.call, answer.decision.map_err(|e| e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests;
