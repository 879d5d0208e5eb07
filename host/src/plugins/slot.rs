//! A role slot: the binding that decides, and optionally a shadow binding
//! that runs on the same live input next to it.
//!
//! The shadow's answer is compared with the active one's, disagreements are
//! logged (target `wasmgate::shadow`) and counted, and the shadow never
//! changes the outcome: it runs on a background task after the active
//! answer is known, so it adds no latency to the call, and at most
//! [`MAX_SHADOW_IN_FLIGHT`] shadow evaluations run at once across the
//! gateway (more are skipped and counted, never queued).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

use super::PolicyError;
use super::{Binding, Interface};
use crate::identity as id;
use crate::metrics;

/// Shadow evaluations that may run at once, gateway-wide.
pub const MAX_SHADOW_IN_FLIGHT: usize = 64;

static SHADOW_PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_SHADOW_IN_FLIGHT)));

/// A shadow evaluation started next to an active answer.
#[derive(Debug)]
pub enum ShadowRun {
    /// Too many were running; this one was skipped.
    Skipped,
    /// Running; the receiver gets its answer (`allow`, `deny`,
    /// `failed (<kind>)`) when it finishes.
    Running(tokio::sync::oneshot::Receiver<String>),
}

/// Where a slot applies, for logs and the admin surface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Scope {
    /// The global binding of the role.
    Global,
    /// One route's classifier.
    Route(String),
    /// One identity provider's claims-mapper.
    Provider(String),
    /// One tenant's authorizer or credential policy.
    Tenant(String),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Route(n) => write!(f, "route {n}"),
            Self::Provider(n) => write!(f, "provider {n}"),
            Self::Tenant(n) => write!(f, "tenant {n}"),
        }
    }
}

/// How a shadow has compared with its active binding so far.
#[derive(Debug, Default)]
pub struct ShadowStats {
    agreements: AtomicU64,
    disagreements: AtomicU64,
    skipped: AtomicU64,
}

/// A snapshot of [`ShadowStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShadowCounts {
    /// Evaluations where the shadow answered like the active binding.
    pub agreements: u64,
    /// Evaluations where it did not (including a shadow failure where the
    /// active binding answered).
    pub disagreements: u64,
    /// Evaluations skipped because too many were already running.
    pub skipped: u64,
}

#[derive(Debug, Clone)]
struct Shadow {
    binding: Binding,
    stats: Arc<ShadowStats>,
}

/// The binding serving a role in one scope, and its shadow if any.
#[derive(Debug, Clone)]
pub struct Slot {
    role: Interface,
    scope: Scope,
    active: Binding,
    shadow: Option<Shadow>,
    /// Whether the gateway may reuse this authorizer's decisions
    /// (`cache_decisions`); meaningless for other roles.
    cache_decisions: bool,
}

impl Slot {
    /// A slot for `role` in `scope` answered by `active`, with an optional shadow.
    pub fn new(role: Interface, scope: Scope, active: Binding, shadow: Option<Binding>) -> Self {
        let shadow = shadow.map(|binding| Shadow { binding, stats: Arc::default() });
        Self { role, scope, active, shadow, cache_decisions: true }
    }

    /// The same slot, with its decisions cached or not (`cache_decisions`;
    /// on by default).
    pub fn with_decision_cache(mut self, on: bool) -> Self {
        self.cache_decisions = on;
        self
    }

    /// Whether the gateway may reuse this slot's decisions for a later call
    /// with the same input.
    pub fn caches_decisions(&self) -> bool {
        self.cache_decisions
    }

    /// The role.
    pub fn role(&self) -> Interface {
        self.role
    }

    /// Where the slot applies.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The binding whose answers count.
    pub fn active(&self) -> &Binding {
        &self.active
    }

    /// The shadow binding, if any.
    pub fn shadow(&self) -> Option<&Binding> {
        self.shadow.as_ref().map(|s| &s.binding)
    }

    /// How the shadow compared so far (`None` without a shadow).
    pub fn shadow_counts(&self) -> Option<ShadowCounts> {
        self.shadow.as_ref().map(|s| ShadowCounts {
            agreements: s.stats.agreements.load(Ordering::Relaxed),
            disagreements: s.stats.disagreements.load(Ordering::Relaxed),
            skipped: s.stats.skipped.load(Ordering::Relaxed),
        })
    }

    /// Classifies with the active binding; the shadow, if any, runs after.
    pub async fn classify(&self, call: &id::CallInfo) -> Result<id::Classification, PolicyError> {
        let got = self.active.classify(call).await;
        if let Some(shadow) = &self.shadow {
            let active = got.as_ref().map(classification_text).map_err(|e| e.kind());
            let (b, call) = (shadow.binding.clone(), call.clone());
            let path = call.path.clone();
            self.spawn_shadow(shadow, active, path, String::new(), async move {
                b.classify(&call).await.as_ref().map(classification_text).map_err(|e| e.kind())
            });
        }
        got
    }

    /// Maps claims with the active binding; the shadow, if any, runs after.
    pub async fn map_claims(&self, provider: &str, claims_json: &str) -> Result<id::Principal, PolicyError> {
        let got = self.active.map_claims(provider, claims_json).await;
        if let Some(shadow) = &self.shadow {
            let active = got.as_ref().map(principal_text).map_err(|e| e.kind());
            let subject = got.as_ref().map(|p| p.subject.clone()).unwrap_or_default();
            let (b, provider, claims) = (shadow.binding.clone(), provider.to_owned(), claims_json.to_owned());
            self.spawn_shadow(shadow, active, String::new(), subject, async move {
                b.map_claims(&provider, &claims).await.as_ref().map(principal_text).map_err(|e| e.kind())
            });
        }
        got
    }

    /// Authorizes with the active binding; the shadow, if any, runs after.
    /// Deny reasons are logged but not compared: allow and deny are.
    pub async fn authorize(&self, request: &id::AuthzRequest) -> Result<id::Decision, PolicyError> {
        self.authorize_with_shadow(request).await.0
    }

    /// [`authorize`](Self::authorize), and how to learn the shadow's
    /// answer (`None` without a shadow), for the call's decision record.
    pub async fn authorize_with_shadow(
        &self,
        request: &id::AuthzRequest,
    ) -> (Result<id::Decision, PolicyError>, Option<ShadowRun>) {
        let got = self.active.authorize(request).await;
        let run = self.shadow_of(request, got.as_ref().map(decision_text).map_err(|e| e.kind()));
        (got, run)
    }

    /// Starts the shadow's evaluation of `request` (`None` without a
    /// shadow) against `active`, a decision the host already had for it (a
    /// cached one): the shadow still sees every call.
    pub fn shadow_authorize(&self, request: &id::AuthzRequest, active: &id::Decision) -> Option<ShadowRun> {
        self.shadow_of(request, Ok(decision_text(active)))
    }

    fn shadow_of(&self, request: &id::AuthzRequest, active: Result<String, &'static str>) -> Option<ShadowRun> {
        self.shadow.as_ref().map(|shadow| {
            let (b, request) = (shadow.binding.clone(), request.clone());
            let path = request.call.path.clone();
            let subject = request.authentication.principal.as_ref().map(|p| p.subject.clone()).unwrap_or_default();
            self.spawn_shadow(shadow, active, path, subject, async move {
                b.authorize(&request).await.as_ref().map(decision_text).map_err(|e| e.kind())
            })
        })
    }

    /// Selects credentials with the active binding; the shadow, if any, runs after.
    pub async fn select_credentials(
        &self,
        call: &id::CallInfo,
        principal: Option<&id::Principal>,
        catalogue: &[id::CredentialInfo],
    ) -> Result<Vec<id::CredentialUse>, PolicyError> {
        let got = self.active.select_credentials(call, principal, catalogue).await;
        if let Some(shadow) = &self.shadow {
            let active = got.as_ref().map(|u| uses_text(u)).map_err(|e| e.kind());
            let (b, call, principal, catalogue) =
                (shadow.binding.clone(), call.clone(), principal.cloned(), catalogue.to_vec());
            let subject = principal.as_ref().map(|p| p.subject.clone()).unwrap_or_default();
            let path = call.path.clone();
            self.spawn_shadow(shadow, active, path, subject, async move {
                b.select_credentials(&call, principal.as_ref(), &catalogue)
                    .await
                    .as_ref()
                    .map(|u| uses_text(u))
                    .map_err(|e| e.kind())
            });
        }
        got
    }

    /// Runs `evaluate` (the shadow's call) in the background and records
    /// how its answer compares with `active` (an answer's canonical text, or
    /// the failure kind).
    fn spawn_shadow(
        &self,
        shadow: &Shadow,
        active: Result<String, &'static str>,
        path: String,
        subject: String,
        evaluate: impl Future<Output = Result<String, &'static str>> + Send + 'static,
    ) -> ShadowRun {
        let role = self.role.role();
        let active_plugin = self.active.plugin().name().to_owned();
        let shadow_plugin = shadow.binding.plugin().name().to_owned();
        let Ok(permit) = SHADOW_PERMITS.clone().try_acquire_owned() else {
            shadow.stats.skipped.fetch_add(1, Ordering::Relaxed);
            metrics::shadow(role, &active_plugin, &shadow_plugin, "skipped");
            return ShadowRun::Skipped;
        };
        let (answered, answer) = tokio::sync::oneshot::channel();
        let (stats, scope) = (shadow.stats.clone(), self.scope.to_string());
        tokio::spawn(async move {
            let got = evaluate.await;
            drop(permit);
            let agree = got == active;
            let counter = if agree { &stats.agreements } else { &stats.disagreements };
            counter.fetch_add(1, Ordering::Relaxed);
            metrics::shadow(role, &active_plugin, &shadow_plugin, if agree { "agree" } else { "disagree" });
            let show = |r: &Result<String, &'static str>| match r {
                Ok(v) => v.clone(),
                Err(kind) => format!("failed ({kind})"),
            };
            let _ = answered.send(show(&got));
            if agree {
                tracing::debug!(target: "wasmgate::shadow", role, %scope, active = %active_plugin, shadow = %shadow_plugin, path, subject, outcome = %show(&got), "shadow agrees");
            } else {
                tracing::info!(target: "wasmgate::shadow", role, %scope, active = %active_plugin, shadow = %shadow_plugin, path, subject, active_outcome = %show(&active), shadow_outcome = %show(&got), "shadow disagrees");
            }
        });
        ShadowRun::Running(answer)
    }
}

fn classification_text(c: &id::Classification) -> String {
    let scopes: BTreeSet<&str> = c.required_scopes.iter().map(String::as_str).collect();
    format!("{} {:?}", c.class.as_str(), scopes)
}

fn principal_text(p: &id::Principal) -> String {
    fn set(v: &[String]) -> BTreeSet<&str> {
        v.iter().map(String::as_str).collect()
    }
    format!(
        "subject={:?} tenant={:?} roles={:?} scopes={:?} groups={:?}",
        p.subject,
        p.tenant,
        set(&p.roles),
        set(&p.scopes),
        set(&p.groups)
    )
}

fn decision_text(d: &id::Decision) -> String {
    match d {
        id::Decision::Allow => "allow".to_owned(),
        id::Decision::Deny(_) => "deny".to_owned(),
    }
}

fn uses_text(uses: &[id::CredentialUse]) -> String {
    let v: Vec<String> = uses.iter().map(|u| format!("{}→{}:{:?}", u.credential, u.header, u.prefix)).collect();
    v.join(", ")
}
