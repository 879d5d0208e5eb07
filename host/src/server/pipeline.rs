//! One call, end to end: sanitize, route, classify, authenticate, map,
//! authorize, forward, record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{HeaderMap, Request, Response};
use moka::sync::Cache;

use super::State;
use super::reject::Rejection;
use super::routes::Route;
use crate::auth::Authenticated;
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

fn call_info(parts: &http::request::Parts, route: &Route, grpc: bool) -> CallInfo {
    let path = parts.uri.path().to_owned();
    let (grpc_service, grpc_method) = if grpc {
        let mut it = path.trim_start_matches('/').splitn(2, '/');
        (it.next().unwrap_or_default().to_owned(), it.next().unwrap_or_default().to_owned())
    } else {
        (String::new(), String::new())
    };
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
        .unwrap_or_default();
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
    // 1. sanitize: nothing the client claims about identity survives.
    state.strip.strip(&mut parts.headers);

    let path = parts.uri.path().to_owned();
    let Some((route_idx, route)) = state.routes.find(&path) else {
        let log = DecisionLog { route: "", path: &path, started, grpc };
        return log.reject(None, None, Rejection::NoRoute, "no route");
    };
    let log = DecisionLog { route: &route.cfg.name, path: &path, started, grpc };
    let call = call_info(&parts, route, grpc);
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
    let upstream = &state.upstreams[route_idx];
    match upstream.send(Request::from_parts(parts, body), Some(&client_authority)).await {
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
    authenticated: &Authenticated,
    token: Option<&str>,
) -> Result<Authentication, String> {
    Ok(match authenticated {
        Authenticated::Anonymous => Authentication::anonymous(),
        Authenticated::SandboxSecret => Authentication {
            kind: CredentialKind::SandboxSecret,
            source: TokenSource::SandboxHeader,
            provider: None,
            principal: None,
        },
        Authenticated::Gateway { principal, source, .. } => Authentication {
            kind: CredentialKind::GatewayToken,
            source: *source,
            provider: None,
            principal: Some(principal.clone()),
        },
        Authenticated::Oidc { provider, token: verified, source } => {
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
