//! One call, end to end: canonical target, route, sanitize, classify,
//! authenticate, map, authorize, credentials, forward, record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{HeaderMap, Request, Response};
use moka::sync::Cache;

use super::State;
use super::reject::Rejection;
use super::routes::{Route, Unresolved};
use crate::auth::Verified;
use crate::identity::{
    AuthClass, Authentication, AuthzRequest, CallInfo, Classification, CredentialKind, Decision, Principal, Protocol,
    TokenSource,
};
use crate::metrics;
use crate::plugins::PolicySet;

/// Caches of policy answers that do not change between calls.
#[derive(Debug)]
pub(super) struct Caches {
    /// Classification per (policy generation, route, HTTP method, path).
    classify: Cache<(u64, usize, http::Method, String), Classification>,
    /// Mapped principal per token, with the policy generation that mapped it
    /// and the token's expiry; never served past either.
    principals: Cache<Arc<str>, (u64, i64, Arc<Principal>)>,
}

impl Caches {
    pub(super) fn new() -> Self {
        Self {
            classify: Cache::builder().max_capacity(10_000).build(),
            principals: Cache::builder().max_capacity(50_000).time_to_live(Duration::from_secs(600)).build(),
        }
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The one authority of a request: the target's (absolute-form, or h2
/// `:authority`) or the `Host` header's, which must agree. Two `Host`
/// headers, a malformed one, or none on an HTTP/1.1 request are refused.
fn request_authority(parts: &http::request::Parts) -> Result<String, &'static str> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("two Host headers");
    }
    let host = host.map(|h| h.to_str().map_err(|_| "Host is not visible ASCII")).transpose()?;
    let valid = |a: &str| -> Result<String, &'static str> {
        match http::uri::Authority::try_from(a) {
            Ok(parsed) if !a.contains('@') && !parsed.host().is_empty() => Ok(a.to_owned()),
            _ => Err("malformed authority"),
        }
    };
    match (parts.uri.authority().map(http::uri::Authority::as_str), host) {
        (Some(target), Some(h)) if !target.eq_ignore_ascii_case(h) => Err("Host differs from the target's authority"),
        (Some(a), _) | (None, Some(a)) => valid(a),
        (None, None) if parts.version == http::Version::HTTP_11 => Err("HTTP/1.1 request without Host"),
        (None, None) => Ok(String::new()),
    }
}

/// The protocol a request asks to switch to, if any: HTTP/1.1 `Upgrade`
/// (an `h2c` upgrade is ignored, as servers may, and answered in HTTP/1.1)
/// or a `CONNECT`. The gateway negotiates none of them.
fn upgrade_requested(parts: &http::request::Parts) -> Option<String> {
    if parts.method == http::Method::CONNECT {
        return Some("CONNECT".to_owned());
    }
    let wanted: Vec<&str> = parts
        .headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    (!wanted.is_empty()).then(|| wanted.join(", "))
}

/// Rewrites the request target to origin-form with the canonical path and
/// the query exactly as received.
fn set_target(parts: &mut http::request::Parts, path: &str) -> Result<(), http::uri::InvalidUri> {
    let pq = match parts.uri.query() {
        None => http::uri::PathAndQuery::try_from(path)?,
        Some(q) => http::uri::PathAndQuery::try_from(format!("{path}?{q}"))?,
    };
    parts.uri = http::Uri::from(pq);
    Ok(())
}

fn call_info(parts: &http::request::Parts, route: &Route, grpc: bool, path: String, authority: String) -> CallInfo {
    let (grpc_service, grpc_method) = if grpc {
        let mut it = path.trim_start_matches('/').splitn(2, '/');
        (it.next().unwrap_or_default().to_owned(), it.next().unwrap_or_default().to_owned())
    } else {
        (String::new(), String::new())
    };
    CallInfo {
        protocol: if grpc { Protocol::Grpc } else { Protocol::Http },
        http_method: parts.method.as_str().to_owned(),
        path,
        grpc_service,
        grpc_method,
        route: route.cfg.name.clone(),
        authority,
    }
}

/// Writes the one decision log line (and metrics) of a call.
struct DecisionLog<'a> {
    route: &'a str,
    path: &'a str,
    started: Instant,
    grpc: bool,
}

impl DecisionLog<'_> {
    fn record(
        &self,
        class: Option<AuthClass>,
        auth: Option<&Authentication>,
        result: Result<(), Rejection>,
        reason: &str,
    ) {
        let elapsed = self.started.elapsed();
        metrics::pipeline_duration(elapsed.as_secs_f64());
        let outcome = match result {
            Ok(()) => "allow",
            Err(r) => r.outcome(),
        };
        metrics::decision(self.route, outcome);
        let principal = auth.and_then(|a| a.principal.as_ref());
        tracing::info!(
            target: "wasmgate::decision",
            route = self.route,
            path = self.path,
            class = class.map(AuthClass::as_str).unwrap_or(""),
            credential = auth.map(|a| a.kind.as_str()).unwrap_or(""),
            subject = principal.map(|p| p.subject.as_str()).unwrap_or(""),
            tenant = principal.and_then(|p| p.tenant.as_deref()).unwrap_or(""),
            outcome,
            reason,
            micros = elapsed.as_micros() as u64,
        );
    }

    /// Records a rejection and answers it.
    fn reject(
        &self,
        class: Option<AuthClass>,
        auth: Option<&Authentication>,
        r: Rejection,
        reason: &str,
    ) -> Response<Body> {
        self.record(class, auth, Err(r), reason);
        r.into_response(self.grpc)
    }
}

/// Handles one gateway call.
pub(super) async fn handle(state: Arc<State>, req: Request<Body>) -> Response<Body> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);

    // 0. the target: one authority and one canonical path, which the route
    //    match, every policy call, the log and the upstream all use.
    let refuse = |path: &str, reason: &str| {
        let log = DecisionLog { route: "", path, started, grpc };
        log.reject(None, None, Rejection::BadRequest, reason)
    };
    let authority = match request_authority(&parts) {
        Ok(a) => a,
        Err(reason) => return refuse(parts.uri.path(), reason),
    };
    if grpc && !crate::canonical::is_grpc_path(parts.uri.path()) {
        return refuse(parts.uri.path(), "a gRPC path must be /<service>/<method>");
    }
    let (route_idx, route, path) = match state.routes.resolve(parts.uri.path()) {
        Ok(resolved) => resolved,
        Err(Unresolved::NoRoute(path)) => {
            let log = DecisionLog { route: "", path: &path, started, grpc };
            return log.reject(None, None, Rejection::NoRoute, "no route");
        }
        Err(Unresolved::Path(e)) => return refuse(parts.uri.path(), &format!("path refused: {e}")),
        Err(Unresolved::Ambiguous) => {
            return refuse(parts.uri.path(), "path refused: under its route's options it matches another route");
        }
    };
    if set_target(&mut parts, &path).is_err() {
        return refuse(&path, "the canonical target is not a valid URI");
    }
    let log = DecisionLog { route: &route.cfg.name, path: &path, started, grpc };
    let upstream = &state.upstreams[route_idx];
    let websocket = match upgrade_requested(&parts) {
        None => None,
        Some(proto)
            if route.cfg.allow_upgrade
                && parts.version == http::Version::HTTP_11
                && parts.method == http::Method::GET
                && proto.eq_ignore_ascii_case("websocket") =>
        {
            match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
                Some(on) => Some((on, http::HeaderValue::from_static("websocket"))),
                None => return log.reject(None, None, Rejection::UpgradeRefused, "connection cannot be upgraded"),
            }
        }
        Some(proto) => {
            return log.reject(
                None,
                None,
                Rejection::UpgradeRefused,
                &format!("upgrade to {proto:?} is not allowed here"),
            );
        }
    };
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > upstream.max_request_body_bytes()) {
        return log.reject(
            None,
            None,
            Rejection::PayloadTooLarge,
            "content-length over the route's max_request_body_bytes",
        );
    }

    // 1. sanitize: nothing the client claims about identity survives, nor
    //    a header that would rewrite the call after policy, nor forwarding
    //    headers from a peer that is not a trusted proxy.
    state.strip.strip(&mut parts.headers);
    state.strip_rewrites.strip(&mut parts.headers);
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    state.forwarding.apply(&mut parts.headers, peer, &authority);

    let call = call_info(&parts, route, grpc, path.clone(), authority);
    let policy = state.policy.load_full();

    // 2. classify (cached per generation, route, method and path).
    let classification = classify(&state.caches, &policy, route_idx, &parts.method, &call).await;
    let class = Some(classification.class);

    // 3. authenticate by class.
    let presented = state.auth.extract(&parts.headers, &parts.uri, route.cfg.allow_query_token);
    let authenticated = match state.auth.authenticate(classification.class, &presented).await {
        Ok(a) => a,
        Err(e) => return log.reject(class, None, Rejection::from(&e), &e.to_string()),
    };

    // 4. map claims to a principal (cached per token until it expires).
    let token = presented.bearer().map(|(t, _)| t.expose());
    let authentication = match authentication_of(&state, &policy, &authenticated, token).await {
        Ok(a) => a,
        Err(reason) => return log.reject(class, None, Rejection::Forbidden, &reason),
    };

    // 5. authorize; any failure of the component denies.
    let request = AuthzRequest { call, classification, authentication };
    let tenant = request.authentication.principal.as_ref().and_then(|p| p.tenant.as_deref());
    let verdict = match policy.authorizer(tenant).authorize(&request).await {
        Ok(Decision::Allow) => Ok(()),
        Ok(Decision::Deny(reason)) => Err(reason),
        Err(e) => Err(format!("failed closed: {e}")),
    };
    if let Err(reason) = verdict {
        return log.reject(class, Some(&request.authentication), Rejection::Forbidden, &reason);
    }

    // 6. upstream credentials: the credential policy picks from the driver's
    //    catalogue, the host resolves them (cached); no fallback if it cannot.
    let injected = match state.drivers.credentials() {
        None => Vec::new(),
        Some(resolver) => match credentials_for(resolver, &policy, &request, tenant).await {
            Ok(v) => v,
            Err((rejection, reason)) => {
                return log.reject(class, Some(&request.authentication), rejection, &reason);
            }
        },
    };

    // 7. forward with the gateway's identity headers, the injected
    //    credentials and no client credentials.
    prepare_upstream_request(&state, route, &mut parts, &request.authentication);
    for (name, value) in injected {
        parts.headers.insert(name, value);
    }
    log.record(class, Some(&request.authentication), Ok(()), "");
    let client_authority = request.call.authority.clone();
    match upstream.send(Request::from_parts(parts, body), Some(&client_authority), grpc, websocket).await {
        Ok(resp) => resp,
        Err(r) => r.into_response(grpc),
    }
}

/// The headers the call's credential policy injects, each resolved through
/// the credentials driver. A policy failure denies; a credential that cannot
/// be had is 503, never forwarded without it.
async fn credentials_for(
    resolver: &crate::credentials::CredentialResolver,
    policy: &PolicySet,
    request: &AuthzRequest,
    tenant: Option<&str>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, (Rejection, String)> {
    let unavailable = |e: crate::credentials::CredentialError| (Rejection::from(&e), e.to_string());
    let catalogue = resolver.catalogue().await.map_err(unavailable)?;
    if catalogue.is_empty() {
        return Ok(Vec::new());
    }
    let principal = request.authentication.principal.as_ref();
    let uses = policy
        .credential_policy(tenant)
        .select_credentials(&request.call, principal, &catalogue)
        .await
        .map_err(|e| (Rejection::Forbidden, format!("credential policy failed closed: {e}")))?;
    let mut headers = Vec::with_capacity(uses.len());
    for u in &uses {
        let credential = resolver.resolve(&u.credential).await.map_err(unavailable)?;
        let value = credential.header_value(u).map_err(unavailable)?;
        let name = http::HeaderName::try_from(u.header.as_str())
            .map_err(|_| (Rejection::Forbidden, format!("credential header {:?} is not a header name", u.header)))?;
        headers.push((name, value));
    }
    if !uses.is_empty() && tracing::enabled!(target: "wasmgate::credentials", tracing::Level::DEBUG) {
        let names: Vec<&str> = uses.iter().map(|u| u.credential.as_str()).collect();
        tracing::debug!(target: "wasmgate::credentials", credentials = %names.join(","), path = %request.call.path, "injected upstream credentials");
    }
    Ok(headers)
}

async fn classify(
    caches: &Caches,
    policy: &PolicySet,
    route_idx: usize,
    method: &http::Method,
    call: &CallInfo,
) -> Classification {
    let key = (policy.generation(), route_idx, method.clone(), call.path.clone());
    if let Some(c) = caches.classify.get(&key) {
        return c;
    }
    match policy.classifier(&call.route).classify(call).await {
        Ok(c) => {
            caches.classify.insert(key, c.clone());
            c
        }
        Err(e) => {
            // Not cached: a transient failure must not stick.
            tracing::warn!(route = %call.route, path = %call.path, error = %e, "classifier failed; treating the method as strictly as possible");
            Classification::fail_closed()
        }
    }
}

async fn authentication_of(
    state: &State,
    policy: &PolicySet,
    authenticated: &Verified,
    token: Option<&str>,
) -> Result<Authentication, String> {
    Ok(match authenticated {
        Verified::Anonymous => Authentication::anonymous(),
        Verified::SandboxSecret => Authentication {
            kind: CredentialKind::SandboxSecret,
            source: TokenSource::SandboxHeader,
            provider: None,
            principal: None,
        },
        Verified::Gateway { principal, source, .. } => Authentication {
            kind: CredentialKind::GatewayToken,
            source: *source,
            provider: None,
            principal: Some(principal.clone()),
        },
        Verified::Oidc { provider, token: verified, source } => {
            let principal =
                map_principal(state, policy, provider, &verified.claims_json, verified.expires_at, token).await?;
            Authentication {
                kind: CredentialKind::OidcToken,
                source: *source,
                provider: Some(provider.to_string()),
                principal: Some((*principal).clone()),
            }
        }
    })
}

async fn map_principal(
    state: &State,
    policy: &PolicySet,
    provider: &str,
    claims_json: &str,
    expires_at: i64,
    token: Option<&str>,
) -> Result<Arc<Principal>, String> {
    if let Some(t) = token
        && let Some((generation, exp, p)) = state.caches.principals.get(t)
        && generation == policy.generation()
        && exp > now_secs()
    {
        return Ok(p);
    }
    let mapper = policy.mapper(provider).ok_or_else(|| format!("no claims-mapper bound for provider {provider}"))?;
    let principal =
        Arc::new(mapper.map_claims(provider, claims_json).await.map_err(|e| format!("failed closed: {e}"))?);
    policy.confine_tenant(provider, &principal)?;
    if let Some(t) = token {
        state.caches.principals.insert(Arc::from(t), (policy.generation(), expires_at, principal.clone()));
    }
    Ok(principal)
}

fn prepare_upstream_request(state: &State, route: &Route, parts: &mut http::request::Parts, auth: &Authentication) {
    let headers = &mut parts.headers;
    if !route.cfg.keep_authorization {
        headers.remove(http::header::AUTHORIZATION);
    }
    // The sandbox secret and a token cookie never leave the gateway.
    headers.remove(state.sandbox_header.as_str());
    if let Some(cookie) = &state.cookie_name {
        super::headers::remove_cookie(headers, cookie);
    }
    if let (Some(param), Some(query)) = (&state.query_param, parts.uri.query())
        && route.cfg.allow_query_token
    {
        let kept = super::headers::remove_query_param(query, param);
        let pq = if kept.is_empty() { parts.uri.path().to_owned() } else { format!("{}?{kept}", parts.uri.path()) };
        if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(pq);
            if let Ok(u) = http::Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
    }
    state.strip.set_identity(headers, auth);
}
