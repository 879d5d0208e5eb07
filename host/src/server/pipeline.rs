//! One call, end to end: `handle` runs the phases over one [`Call`] and
//! writes its one decision record when the response head is known.
//!
//! sanitize → route → classify → authenticate → map → authorize →
//! credentials → forward → record. Each phase is a method on [`Call`]
//! returning `Result<_, Reject>`; the first rejection answers the call.

mod decisions;
mod policy;
mod target;

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Request, Response, request::Parts};
use tracing::{Instrument as _, Span};

#[cfg(feature = "testing")]
pub use decisions::PolicyStage;
pub(super) use policy::Caches;

use super::State;
use super::call::{Call, Phase, Reject};
use super::reject::Rejection;
use super::routes::Unresolved;
use crate::identity::{AuthzRequest, CallInfo, Decision, Protocol};
use crate::plugins::PolicySet;
use crate::telemetry;

/// An accepted `Upgrade: websocket`: the client's side of the connection
/// and the protocol to offer upstream.
type Upgrade = (hyper::upgrade::OnUpgrade, http::HeaderValue);

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Handles one gateway call, in its server span (when tracing is on) and
/// with its ids on every log line it writes.
pub(super) async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut call = Call::new(&parts.method, parts.uri.path(), is_grpc(&parts.headers));
    let span = telemetry::server_span(&parts.method, &parts.headers);
    call.trace_id = telemetry::trace_id(&span);
    let ids = telemetry::CallIds { decision_id: call.decision_id.clone(), trace_id: call.trace_id.clone() };
    telemetry::with_ids(ids, call.serve(&state, parts, body, &span).instrument(span.clone())).await
}

impl Call {
    /// The phases, the forwarding, and the end of the call.
    async fn serve(mut self, state: &State, mut parts: Parts, body: Body, span: &Span) -> Response<Body> {
        let run = self.run(state, &mut parts).await;
        let series = match self.route {
            Some(i) => state.upstreams[i].metrics(),
            None => crate::metrics::unrouted(),
        };
        let (mut response, rejected) = match run {
            Err(reject) => {
                self.decided(series, Some(reject.rejection));
                (reject.rejection.into_response(self.grpc), Some(reject))
            }
            Ok(upgrade) => {
                self.decided(series, None);
                match self.forward(state, parts, body, upgrade).await {
                    Ok(resp) => (resp, None),
                    Err(reject) => (reject.rejection.into_response(self.grpc), Some(reject)),
                }
            }
        };
        self.finish(&state.decision_log, series, &mut response, rejected.as_ref());
        self.record_server_span(span, response.status());
        response
    }

    /// The server span's attributes known at the end (HTTP semantic
    /// conventions); nothing when tracing is off.
    fn record_server_span(&self, span: &Span, status: http::StatusCode) {
        if span.is_disabled() {
            return;
        }
        if !self.route_name.is_empty() {
            telemetry::rename(span, format!("{} {}", self.method, self.route_name));
            span.record("http.route", self.route_name.as_str());
        }
        span.record("url.path", self.path.as_str());
        let (host, port) = telemetry::split_authority(&self.authority);
        if !host.is_empty() {
            span.record("server.address", host);
        }
        if let Some(port) = port {
            span.record("server.port", i64::from(port));
        }
        span.record("wasmgate.decision_id", self.decision_id.as_str());
        telemetry::record_status(span, status.as_u16(), true);
    }

    /// Every phase up to the forwarding decision; on `Ok` the request in
    /// `parts` is what the upstream gets.
    async fn run(&mut self, state: &State, parts: &mut Parts) -> Result<Option<Upgrade>, Reject> {
        self.sanitize(state, parts)?;
        let upgrade = self.route(state, parts)?;
        let policy = state.policy.load_full();
        self.generation = Some(policy.generation());
        self.classify(state, &policy, &parts.method).await;
        let caller = self.authenticate(state, parts).await?;
        self.map(state, &policy, &caller).await?;
        self.authorize(state, &policy, decisions::expiry(&caller.verified)).await?;
        self.credentials(state, &policy, parts).await?;
        Ok(upgrade)
    }

    /// Sanitize: one authority, a gRPC path of the right shape, and nothing
    /// the client claims about identity: no gateway identity header, no
    /// header that would rewrite the call after policy, and no forwarding
    /// header from a peer that is not a trusted proxy.
    fn sanitize(&mut self, state: &State, parts: &mut Parts) -> Result<(), Reject> {
        self.authority = target::request_authority(parts).map_err(|r| Reject::new(Rejection::BadRequest, r))?;
        if self.grpc && !crate::canonical::is_grpc_path(parts.uri.path()) {
            return Err(Reject::new(Rejection::BadRequest, "a gRPC path must be /<service>/<method>"));
        }
        state.identity.strip(&mut parts.headers);
        state.strip_rewrites.strip(&mut parts.headers);
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        state.forwarding.apply(&mut parts.headers, peer, &self.authority);
        self.done(Phase::Sanitize);
        Ok(())
    }

    /// Route: the one canonical path (which the route match, every policy
    /// call, the log and the upstream all use), the route, and what the
    /// route allows of the request itself (an upgrade, the body's size).
    fn route(&mut self, state: &State, parts: &mut Parts) -> Result<Option<Upgrade>, Reject> {
        let bad = |reason: String| Reject::new(Rejection::BadRequest, reason);
        let (idx, route, path) = match state.routes.resolve(parts.uri.path()) {
            Ok(resolved) => resolved,
            Err(Unresolved::NoRoute(path)) => {
                self.path = path;
                return Err(Reject::new(Rejection::NoRoute, "no route"));
            }
            Err(Unresolved::Path(e)) => return Err(bad(format!("path refused: {e}"))),
            Err(Unresolved::Ambiguous) => {
                return Err(bad("path refused: under its route's options it matches another route".into()));
            }
        };
        self.path = path;
        target::set_target(parts, &self.path).map_err(|_| bad("the canonical target is not a valid URI".into()))?;
        self.route = Some(idx);
        self.route_name.clone_from(&route.cfg.name);
        let upgrade = match target::upgrade_requested(parts) {
            None => None,
            Some(proto)
                if route.cfg.allow_upgrade
                    && parts.version == http::Version::HTTP_11
                    && parts.method == http::Method::GET
                    && proto.eq_ignore_ascii_case("websocket") =>
            {
                let on = parts
                    .extensions
                    .remove::<hyper::upgrade::OnUpgrade>()
                    .ok_or_else(|| Reject::new(Rejection::UpgradeRefused, "connection cannot be upgraded"))?;
                Some((on, http::HeaderValue::from_static("websocket")))
            }
            Some(proto) => {
                return Err(Reject::new(
                    Rejection::UpgradeRefused,
                    format!("upgrade to {proto:?} is not allowed here"),
                ));
            }
        };
        let declared =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.upstreams[idx].max_request_body_bytes()) {
            return Err(Reject::new(
                Rejection::PayloadTooLarge,
                "content-length over the route's max_request_body_bytes",
            ));
        }
        let protocol = if self.grpc { Protocol::Grpc } else { Protocol::Http };
        self.info = Some(CallInfo::new(protocol, parts.method.as_str(), &self.path, &route.cfg.name, &self.authority));
        self.done(Phase::Route);
        Ok(upgrade)
    }

    /// Classify (cached per generation, route, method and path); a failing
    /// classifier is read as strictly as possible, never as a rejection.
    async fn classify(&mut self, state: &State, policy: &PolicySet, method: &http::Method) {
        let (Some(idx), Some(info)) = (self.route, &self.info) else { return };
        let classifier = policy.classifier(&info.route);
        self.classification = Some(state.caches.classify(policy, idx, method, info).await);
        self.decided_by(classifier);
        self.done(Phase::Classify);
    }

    /// Authenticate the credential the class asks for.
    async fn authenticate(&mut self, state: &State, parts: &Parts) -> Result<Caller, Reject> {
        let class = self.class().unwrap_or(crate::identity::AuthClass::Bearer);
        let allow_query = self.route.is_some_and(|i| state.routes.routes()[i].cfg.allow_query_token);
        let presented = state.auth.extract(&parts.headers, &parts.uri, allow_query);
        // `wasmgate.auth.cache` (hit or miss) is recorded by `auth` itself.
        let span = telemetry::span!(
            "authenticate",
            wasmgate.auth.class = class.as_str(),
            wasmgate.credential.kind = tracing::field::Empty,
            wasmgate.auth.provider = tracing::field::Empty,
            wasmgate.auth.cache = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let verified = state.auth.authenticate(class, &presented).instrument(span.clone()).await;
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                let reject = Reject::new(Rejection::from(&e), super::call::scrub(e.to_string(), &presented));
                telemetry::record_error(&span, reject.rejection.outcome());
                return Err(reject);
            }
        };
        if !span.is_disabled() {
            let (kind, provider) = match &verified {
                crate::auth::Verified::Anonymous => (crate::identity::AuthKind::None, None),
                crate::auth::Verified::SandboxSecret => (crate::identity::AuthKind::SandboxSecret, None),
                crate::auth::Verified::Oidc { provider, .. } => {
                    (crate::identity::AuthKind::OidcToken, Some(&**provider))
                }
                crate::auth::Verified::Gateway { .. } => (crate::identity::AuthKind::GatewayToken, None),
            };
            span.record("wasmgate.credential.kind", kind.as_str());
            if let Some(provider) = provider {
                span.record("wasmgate.auth.provider", provider);
            }
        }
        self.done(Phase::Authenticate);
        Ok(Caller { verified })
    }

    /// Map the verified claims to a principal (cached per token until it
    /// expires), and confine it to its provider's tenants.
    async fn map(&mut self, state: &State, policy: &PolicySet, caller: &Caller) -> Result<(), Reject> {
        if let crate::auth::Verified::Oidc { provider, .. } = &caller.verified
            && let Some(mapper) = policy.mapper(provider)
        {
            self.decided_by(mapper);
        }
        let authentication = state
            .caches
            .authentication(policy, &caller.verified)
            .await
            .map_err(|reason| Reject::new(Rejection::Forbidden, reason))?;
        self.authentication = Some(authentication);
        self.done(Phase::Map);
        Ok(())
    }

    /// Authorize, from the decision cache when the same input was decided
    /// before in this policy generation (until the token's `expires_at`);
    /// any failure of the component denies.
    async fn authorize(&mut self, state: &State, policy: &PolicySet, expires_at: Option<i64>) -> Result<(), Reject> {
        let request = self.request()?;
        let tenant = request.authentication.principal.as_ref().and_then(|p| p.tenant.as_deref());
        let slot = policy.authorizer(tenant);
        self.decided_by(slot);
        let span = policy::policy_span(slot);
        let answer = state
            .caches
            .decisions
            .authorize(policy.generation(), slot, &request, expires_at)
            .instrument(span.clone())
            .await;
        decisions::record(&span, &answer);
        if answer.cached {
            self.decided_from_cache();
        }
        self.shadow = answer.shadow;
        let verdict = match answer.decision {
            Ok(Decision::Allow) => Ok(()),
            Ok(Decision::Deny(reason)) => Err(reason),
            Err(e) => Err(format!("failed closed: {e}")),
        };
        self.restore(request);
        self.done(Phase::Authorize);
        let reason = verdict.err();
        self.allowed = reason.is_none();
        reason.map_or(Ok(()), |r| Err(Reject::new(Rejection::Forbidden, r)))
    }

    /// Upstream credentials: the credential policy picks from the driver's
    /// catalogue, the host resolves them (cached); no fallback if it
    /// cannot. Then the request gets the gateway's identity headers and
    /// loses every client credential.
    async fn credentials(&mut self, state: &State, policy: &PolicySet, parts: &mut Parts) -> Result<(), Reject> {
        let request = self.request()?;
        let span = telemetry::span!(
            "credentials",
            wasmgate.credentials.count = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let mut consulted = None;
        let injected = match &state.credentials {
            None => Ok(Vec::new()),
            Some(resolver) => {
                policy::credentials_for(resolver, policy, &request, &mut consulted).instrument(span.clone()).await
            }
        };
        if let Some(slot) = consulted {
            self.decided_by(slot);
        }
        match &injected {
            Ok(list) => {
                span.record("wasmgate.credentials.count", list.len() as i64);
            }
            Err(reject) => telemetry::record_error(&span, reject.rejection.outcome()),
        }
        drop(span);
        self.restore(request);
        // A rejection here comes after the policy allowed the call.
        let injected = injected.inspect_err(|_| self.allowed = false)?;
        let route = &state.routes.routes()[self.route.unwrap_or_default()];
        state.auth.strip_credentials(parts, route.cfg.keep_authorization, route.cfg.allow_query_token);
        if let Some(auth) = &self.authentication {
            state.identity.set_identity(&mut parts.headers, auth);
        }
        for (credential, name, value) in injected {
            parts.headers.insert(name, value);
            self.injected.push(credential);
        }
        self.done(Phase::Credentials);
        Ok(())
    }

    /// Forward: the upstream's response head, or why there is none.
    async fn forward(
        &mut self,
        state: &State,
        parts: Parts,
        body: Body,
        upgrade: Option<Upgrade>,
    ) -> Result<Response<Body>, Reject> {
        let upstream = &state.upstreams[self.route.unwrap_or_default()];
        let mut parts = parts;
        let span = upstream.client_span(&parts.method);
        // The upstream's parent is this span, not the client's.
        telemetry::inject(&span, &mut parts.headers);
        let sent = upstream
            .send(Request::from_parts(parts, body), Some(&self.authority), self.grpc, upgrade)
            .instrument(span.clone())
            .await;
        self.done(Phase::Forward);
        match sent {
            Ok(resp) => {
                telemetry::record_status(&span, resp.status().as_u16(), false);
                self.upstream_status = Some(resp.status());
                Ok(resp)
            }
            Err(failed) => {
                telemetry::record_error(&span, failed.failure.map_or("gateway", super::forward::Failure::as_str));
                self.upstream_failure = failed.failure;
                Err(Reject::new(failed.rejection, failed.reason))
            }
        }
    }

    /// The authorization request, built from the phases' results; given
    /// back with [`Call::restore`].
    fn request(&mut self) -> Result<AuthzRequest, Reject> {
        let call =
            self.info.take().ok_or_else(|| Reject::new(Rejection::Forbidden, "failed closed: call not routed"))?;
        Ok(AuthzRequest {
            call,
            classification: self.classification.take().unwrap_or_else(crate::identity::Classification::fail_closed),
            authentication: self.authentication.take().unwrap_or_else(crate::identity::Authentication::anonymous),
        })
    }

    fn restore(&mut self, request: AuthzRequest) {
        self.info = Some(request.call);
        self.classification = Some(request.classification);
        self.authentication = Some(request.authentication);
    }
}

/// The authenticate phase's result, for the map phase.
struct Caller {
    /// What the credential verified as; for an OIDC token, its token-cache
    /// entry, which also keeps the mapped principal.
    verified: crate::auth::Verified,
}
