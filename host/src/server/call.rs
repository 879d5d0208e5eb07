//! The context of one call as it flows through the pipeline's phases, the
//! typed rejection a phase ends it with, and the one decision record
//! ([`crate::audit::DecisionRecord`]) offered to the decision log when the
//! response head is known.

use std::time::{Duration, Instant};

use http::StatusCode;

use super::forward::Failure;
use super::reject::Rejection;
use crate::audit::{ComponentRef, DecisionRecord, PolicyRevision};
use crate::identity::{AuthClass, AuthKind, Authentication, CallInfo, Classification};
use crate::metrics;

/// The response header that carries the call's decision id.
pub(super) const DECISION_ID_HEADER: &str = "x-decision-id";

/// 128 bits, hex, unique per call across replicas and restarts: a
/// per-process call counter through a bijective mix (keyed with 64 random
/// bits), then 64 random bits drawn once per process, so two calls of one
/// process never share an id and ids do not count calls in the open. One
/// draw from the system RNG per process instead of one per call.
fn new_decision_id() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: LazyLock<[u64; 2]> = LazyLock::new(|| {
        let mut bytes = [0u8; 16];
        // The system RNG does not fail on a supported platform; zero keys
        // would still give ids unique within the process, never a panic.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let (a, b) = bytes.split_at(8);
        [u64::from_le_bytes(a.try_into().unwrap_or_default()), u64::from_le_bytes(b.try_into().unwrap_or_default())]
    });
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let [process, key] = *KEYS;
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    // The per-call half first: decision-log sampling reads the first 64 bits.
    bytes[..8].copy_from_slice(&mix(n ^ key).to_be_bytes());
    bytes[8..].copy_from_slice(&process.to_be_bytes());
    hex::encode(bytes)
}

/// SplitMix64's finalizer: a bijection on `u64`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the decision record says instead of a reason that quotes the
/// presented credential.
const WITHHELD: &str = "credential refused (reason withheld: it quoted the credential)";

/// `reason`, unless it contains the presented bearer token, the sandbox
/// secret or a part of the token (a JWS segment) long enough to matter:
/// token contents never reach the decision log. No reason the gateway
/// writes quotes a token; this keeps it so if one ever did.
pub(super) fn scrub(reason: String, presented: &crate::auth::Presented) -> String {
    let token = presented.bearer().map(|(t, _)| t.expose());
    let secret = presented.sandbox_secret.as_ref().map(|s| s.expose());
    let quotes = |needle: &[u8]| needle.len() >= 8 && reason.as_bytes().windows(needle.len()).any(|w| w == needle);
    let leaks = token.is_some_and(|t| quotes(t.as_bytes()) || t.split('.').any(|part| quotes(part.as_bytes())))
        || secret.is_some_and(quotes);
    if leaks { WITHHELD.to_owned() } else { reason }
}

/// The phases of a call, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// One authority and a well-formed target; no client-claimed identity.
    Sanitize,
    /// The route and the canonical path.
    Route,
    /// The method's class and required scopes.
    Classify,
    /// The presented credential, verified.
    Authenticate,
    /// Claims mapped to a principal.
    Map,
    /// The authorizer's decision.
    Authorize,
    /// Upstream credentials selected and resolved.
    Credentials,
    /// Sent upstream, until the response head.
    Forward,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sanitize => "sanitize",
            Self::Route => "route",
            Self::Classify => "classify",
            Self::Authenticate => "authenticate",
            Self::Map => "map",
            Self::Authorize => "authorize",
            Self::Credentials => "credentials",
            Self::Forward => "forward",
        }
    }
}

/// Why a phase ended the call: the rejection the client gets, and the
/// reason only the log gets.
#[derive(Debug)]
pub(super) struct Reject {
    pub(super) rejection: Rejection,
    pub(super) reason: String,
}

impl Reject {
    pub(super) fn new(rejection: Rejection, reason: impl Into<String>) -> Self {
        Self { rejection, reason: reason.into() }
    }
}

/// What the shadow binding of the authorizer answered, when the route's
/// authorizer has one and it finished by the time the record is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ShadowOutcome {
    /// It answered (`allow`, `deny`, or `failed (<kind>)`).
    Answered(String),
    /// It was still running; its own `wasmgate::shadow` line follows.
    Pending,
    /// Too many shadow evaluations were running; it was skipped.
    Skipped,
}

/// One call: what every phase found, and what the upstream answered.
#[derive(Debug)]
pub(super) struct Call {
    started: Instant,
    /// When the current phase began.
    mark: Instant,
    /// Time spent in each phase so far, in order.
    timings: Vec<(Phase, Duration)>,
    /// The call's id: in its decision record, its log lines and the
    /// `x-decision-id` response header.
    pub(super) decision_id: String,
    /// The W3C trace id of the call's server span, when tracing is on.
    pub(super) trace_id: Option<String>,
    /// The request method.
    pub(super) method: http::Method,
    /// A gRPC call (content type `application/grpc*`).
    pub(super) grpc: bool,
    /// The path as received until the route phase, then the canonical path.
    pub(super) path: String,
    /// The request's one authority (target or `Host`).
    pub(super) authority: String,
    /// The route's index in the table, once routed.
    pub(super) route: Option<usize>,
    /// The route's name, once routed.
    pub(super) route_name: String,
    /// The call as the policy sees it, once routed.
    pub(super) info: Option<CallInfo>,
    /// Once classified.
    pub(super) classification: Option<Classification>,
    /// Once authenticated and mapped.
    pub(super) authentication: Option<Authentication>,
    /// The authorizer allowed the call.
    pub(super) allowed: bool,
    /// Names of the upstream credentials injected.
    pub(super) injected: Vec<String>,
    /// The status the upstream answered with.
    pub(super) upstream_status: Option<StatusCode>,
    /// Why the upstream gave no usable response.
    pub(super) upstream_failure: Option<Failure>,
    /// The authorizer's shadow, if it has one.
    pub(super) shadow: Option<crate::plugins::ShadowRun>,
    /// The policy generation the call was decided on, once loaded.
    pub(super) generation: Option<u64>,
    /// The components that answered for this call, in order.
    deciders: Vec<ComponentRef>,
}

impl Call {
    pub(super) fn new(method: &http::Method, path: &str, grpc: bool) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            mark: now,
            timings: Vec::with_capacity(8),
            decision_id: new_decision_id(),
            trace_id: None,
            method: method.clone(),
            grpc,
            path: path.to_owned(),
            authority: String::new(),
            route: None,
            route_name: String::new(),
            info: None,
            classification: None,
            authentication: None,
            allowed: false,
            injected: Vec::new(),
            upstream_status: None,
            upstream_failure: None,
            shadow: None,
            generation: None,
            deciders: Vec::new(),
        }
    }

    /// Ends `phase`: its time is what passed since the previous one ended.
    pub(super) fn done(&mut self, phase: Phase) {
        let now = Instant::now();
        self.timings.push((phase, now - self.mark));
        self.mark = now;
    }

    /// The time from the request to the forwarding decision, for the
    /// pipeline histogram (observed once, when the decision is made).
    pub(super) fn decided(&self, series: &metrics::RouteMetrics, rejected: Option<Rejection>) {
        series.pipeline_duration(self.started.elapsed().as_secs_f64());
        series.decision(rejected.map_or("allow", Rejection::outcome));
    }

    /// Ends the call when the response head is known: the decision id goes
    /// to the client, the request metrics and the decision record are
    /// written.
    pub(super) fn finish(
        &mut self,
        log: &crate::audit::DecisionLog,
        series: &metrics::RouteMetrics,
        response: &mut http::Response<axum::body::Body>,
        rejected: Option<&Reject>,
    ) {
        if let Ok(id) = http::HeaderValue::from_str(&self.decision_id) {
            response.headers_mut().insert(DECISION_ID_HEADER, id);
        }
        let status = response.status();
        series.http_request(&self.method, status, self.started.elapsed().as_secs_f64());
        // A trailers-only gRPC answer carries its status in the head.
        let grpc_status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
        self.record(log, status, grpc_status, rejected);
    }

    /// Writes the call's one decision record, when the response head is
    /// known: `status` is what the client gets, `rejected` the rejection
    /// that produced it (policy, or the upstream's failure). The record is
    /// built only when the log wants it (sampling, `sink: none`) and handed
    /// to its queue without waiting.
    fn record(
        &mut self,
        log: &crate::audit::DecisionLog,
        status: StatusCode,
        grpc_status: Option<u16>,
        rejected: Option<&Reject>,
    ) {
        // Once the policy allowed the call, an upstream failure is its
        // status and reason, not a different decision.
        let outcome = match rejected {
            Some(r) if !self.allowed => r.rejection.outcome(),
            _ => "allow",
        };
        // Sampling applies only to a clean allow: an allowed call that
        // failed afterwards (upstream, body too large) is always kept.
        if !log.wants(&self.decision_id, outcome == "allow" && rejected.is_none(), status.as_u16()) {
            return;
        }
        let elapsed = self.started.elapsed();
        let authentication = self.authentication.as_ref();
        let principal = authentication.and_then(|a| a.principal.as_ref());
        let shadow = self.shadow.as_mut().map(|run| match run {
            crate::plugins::ShadowRun::Skipped => ShadowOutcome::Skipped,
            crate::plugins::ShadowRun::Running(answer) => match answer.try_recv() {
                Ok(text) => ShadowOutcome::Answered(text),
                Err(_) => ShadowOutcome::Pending,
            },
        });
        let shadow = shadow.map(|s| match s {
            ShadowOutcome::Answered(text) => text,
            ShadowOutcome::Pending => "pending".to_owned(),
            ShadowOutcome::Skipped => "skipped".to_owned(),
        });
        let provider = authentication.and_then(|a| match a.kind {
            AuthKind::GatewayToken => Some("gateway".to_owned()),
            _ => a.provider.clone(),
        });
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        log.submit(DecisionRecord {
            decision_id: self.decision_id.clone(),
            trace_id: self.trace_id.clone(),
            timestamp: std::time::SystemTime::now(),
            route: nonempty(&self.route_name),
            method: self.method.as_str().to_owned(),
            path: nonempty(&self.path),
            class: self.classification.as_ref().map(|c| c.class.as_str().to_owned()),
            credential: authentication.map(|a| a.kind.as_str().to_owned()),
            provider,
            subject: principal.map(|p| p.subject.clone()),
            tenant: principal.and_then(|p| p.tenant.clone()),
            outcome: outcome.to_owned(),
            reason: rejected.map(|r| r.reason.clone()),
            status: status.as_u16(),
            grpc_status,
            upstream_status: self.upstream_status.map(|s| s.as_u16()),
            upstream_failure: self.upstream_failure.map(Failure::as_str),
            injected: std::mem::take(&mut self.injected),
            shadow,
            policy: PolicyRevision { generation: self.generation, components: std::mem::take(&mut self.deciders) },
            duration_us: elapsed.as_micros() as u64,
            phases_us: self.timings.iter().map(|(p, took)| (p.as_str(), took.as_micros() as u64)).collect(),
        });
    }

    /// Notes that `slot`'s active component answered for this call, in the
    /// decision record's `policy.components`.
    pub(super) fn decided_by(&mut self, slot: &crate::plugins::Slot) {
        let plugin = slot.active().plugin();
        self.deciders.push(ComponentRef {
            role: slot.role().role(),
            name: plugin.name().to_owned(),
            sha256: plugin.sha256().to_owned(),
            cached: false,
        });
    }

    /// Notes that the last component [`Call::decided_by`] named answered
    /// from the decision cache.
    pub(super) fn decided_from_cache(&mut self) {
        if let Some(last) = self.deciders.last_mut() {
            last.cached = true;
        }
    }

    /// The class, once classified.
    pub(super) fn class(&self) -> Option<AuthClass> {
        self.classification.as_ref().map(|c| c.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_quote_the_credential_are_withheld() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
        let cfg = crate::config::AuthConfig::default();
        let auth = crate::auth::Authenticator::new(&cfg).expect("authenticator");
        let presented = auth.extract(&headers, &"/x".parse().expect("uri"), false);
        assert_eq!(scrub("bad signature".into(), &presented), "bad signature");
        assert_eq!(scrub(format!("invalid token: {token}"), &presented), WITHHELD);
        assert_eq!(scrub("claims eyJzdWIiOiJhbGljZSJ9 refused".into(), &presented), WITHHELD, "one segment");
    }

    #[test]
    fn decision_ids_are_distinct_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_decision_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn phases_are_timed_in_order() {
        let mut call = Call::new(&http::Method::GET, "/x", false);
        call.done(Phase::Sanitize);
        call.done(Phase::Route);
        let names: Vec<&str> = call.timings.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["sanitize", "route"]);
        assert!(call.class().is_none());
    }
}
