//! The pipeline's policy calls and their caches: classification,
//! principals, and upstream credentials.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use tracing::{Instrument as _, Span};

use super::super::reject::Rejection;
use super::Reject;
use crate::auth::{Verified, VerifiedToken};
use crate::credentials::CredentialResolver;
use crate::identity::{AuthKind, Authentication, AuthzRequest, CallInfo, Classification, Principal, TokenSource};
use crate::plugins::{PolicySet, Slot};

/// Caches of policy answers that do not change between calls.
#[derive(Debug)]
pub(in crate::server) struct Caches {
    /// Classification per (policy generation, route, HTTP method, path).
    classify: Cache<(u64, usize, http::Method, String), Classification>,
    // Mapped principals are kept in the token cache's entry itself (see
    // `crate::auth::VerifiedToken::mapped_principal`), not here.
    /// Authorizer decisions per (policy generation, whole request), until
    /// the token's expiry ([`super::decisions`]).
    pub(super) decisions: super::decisions::Decisions,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Caches {
    pub(in crate::server) fn new() -> Self {
        Self {
            classify: Cache::builder().max_capacity(10_000).build(),
            decisions: super::decisions::Decisions::new(super::decisions::MAX_BYTES),
        }
    }

    /// The call's classification; a failing classifier is not cached (a
    /// transient failure must not stick) and reads as strictly as possible.
    pub(super) async fn classify(
        &self,
        policy: &PolicySet,
        route_idx: usize,
        method: &http::Method,
        call: &CallInfo,
    ) -> Classification {
        let key = (policy.generation(), route_idx, method.clone(), call.path.clone());
        if let Some(c) = self.classify.get(&key) {
            return c;
        }
        let slot = policy.classifier(&call.route);
        let span = policy_span(slot);
        let answer = slot.classify(call).instrument(span.clone()).await;
        record_answer(&span, answer.as_ref().map(|_| None));
        match answer {
            Ok(c) => {
                self.classify.insert(key, c.clone());
                c
            }
            Err(e) => {
                tracing::warn!(route = %call.route, path = %call.path, error = %e, "classifier failed; treating the method as strictly as possible");
                Classification::fail_closed()
            }
        }
    }

    /// Who the caller is, as the policy sees it.
    pub(in crate::server) async fn authentication(
        &self,
        policy: &PolicySet,
        verified: &Verified,
    ) -> Result<Authentication, String> {
        Ok(match verified {
            Verified::Anonymous => Authentication::anonymous(),
            Verified::SandboxSecret => Authentication {
                kind: AuthKind::SandboxSecret,
                source: TokenSource::SandboxHeader,
                provider: None,
                principal: None,
            },
            Verified::Gateway { principal, source, .. } => Authentication {
                kind: AuthKind::GatewayToken,
                source: *source,
                provider: None,
                principal: Some(principal.clone()),
            },
            Verified::Oidc { provider, token: verified, source } => {
                let principal = self.principal(policy, provider, verified).await?;
                Authentication {
                    kind: AuthKind::OidcToken,
                    source: *source,
                    provider: Some(provider.to_string()),
                    principal: Some((*principal).clone()),
                }
            }
        })
    }

    /// Claims mapped to a principal, kept in the token's cache entry (the
    /// one `authenticate` found, no second lookup) until the token expires
    /// or the policy changes.
    async fn principal(
        &self,
        policy: &PolicySet,
        provider: &str,
        verified: &VerifiedToken,
    ) -> Result<Arc<Principal>, String> {
        let generation = policy.generation();
        if verified.expires_at > now_secs()
            && let Some(p) = verified.mapped_principal(generation)
        {
            return Ok(p);
        }
        let mapper =
            policy.mapper(provider).ok_or_else(|| format!("no claims-mapper bound for provider {provider}"))?;
        let span = policy_span(mapper);
        let mapped = mapper.map_claims(provider, &verified.claims_json).instrument(span.clone()).await;
        record_answer(&span, mapped.as_ref().map(|_| None));
        let principal = Arc::new(mapped.map_err(|e| format!("failed closed: {e}"))?);
        policy.confine_tenant(provider, &principal)?;
        verified.remember_principal(generation, principal.clone());
        Ok(principal)
    }
}

/// The span of one policy call (role, component name and digest, and for
/// an authorizer whether the decision cache answered), child of the
/// current span; `Span::none()` when tracing is off.
pub(super) fn policy_span(slot: &Slot) -> Span {
    let plugin = slot.active().plugin();
    crate::telemetry::span!(
        "policy",
        otel.name = format_args!("policy {}", slot.role().role()),
        wasmgate.role = slot.role().role(),
        wasmgate.component = plugin.name(),
        wasmgate.component.sha256 = plugin.sha256(),
        wasmgate.decision = tracing::field::Empty,
        wasmgate.decision.cached = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a policy call's answer on its span: the authorizer's allow
/// (`Some(true)`) or deny; a failure (trap, timeout, bad answer) is an
/// error.
pub(super) fn record_answer<E>(span: &Span, answer: Result<Option<bool>, &E>) {
    match answer {
        Ok(Some(allowed)) => {
            span.record("wasmgate.decision", if allowed { "allow" } else { "deny" });
        }
        Ok(None) => {}
        Err(_) => crate::telemetry::record_error(span, "policy_error"),
    }
}

/// An upstream credential to inject: its catalogue name, the header, the value.
pub(super) type Injected = (String, http::HeaderName, http::HeaderValue);

/// The headers the call's credential policy injects, each resolved through
/// the credentials driver. A policy failure denies; a credential that cannot
/// be had is 503, never forwarded without it. `consulted` is set to the
/// credential policy's slot when it was asked (for the decision record).
pub(super) async fn credentials_for<'p>(
    resolver: &CredentialResolver,
    policy: &'p PolicySet,
    request: &AuthzRequest,
    consulted: &mut Option<&'p Slot>,
) -> Result<Vec<Injected>, Reject> {
    let unavailable = |e: crate::credentials::CredentialError| Reject::new(Rejection::from(&e), e.to_string());
    let catalogue = resolver.catalogue().await.map_err(unavailable)?;
    if catalogue.is_empty() {
        return Ok(Vec::new());
    }
    let principal = request.authentication.principal.as_ref();
    let tenant = principal.and_then(|p| p.tenant.as_deref());
    let slot = policy.credential_policy(tenant);
    *consulted = Some(slot);
    let span = policy_span(slot);
    let uses = slot.select_credentials(&request.call, principal, &catalogue).instrument(span.clone()).await;
    record_answer(&span, uses.as_ref().map(|_| None));
    let uses = uses.map_err(|e| Reject::new(Rejection::Forbidden, format!("credential policy failed closed: {e}")))?;
    let mut headers = Vec::with_capacity(uses.len());
    for u in &uses {
        let credential = resolver.resolve(&u.credential).await.map_err(unavailable)?;
        let value = credential.header_value(u).map_err(unavailable)?;
        let name = http::HeaderName::try_from(u.header.as_str()).map_err(|_| {
            Reject::new(Rejection::Forbidden, format!("credential header {:?} is not a header name", u.header))
        })?;
        headers.push((u.credential.clone(), name, value));
    }
    if !uses.is_empty() && tracing::enabled!(target: "wasmgate::credentials", tracing::Level::DEBUG) {
        let names: Vec<&str> = uses.iter().map(|u| u.credential.as_str()).collect();
        tracing::debug!(target: "wasmgate::credentials", credentials = %names.join(","), path = %request.call.path, "injected upstream credentials");
    }
    Ok(headers)
}
