//! An in-process OAuth 2.0 / OIDC authorization server over HTTP on
//! loopback, for tests of `wasmgate login` only: OIDC discovery, JWKS, the
//! device authorization endpoint and a token endpoint with the device-code
//! grant (by default: `authorization_pending`, then `slow_down`, then tokens
//! once approved; polling sooner than the interval also gets `slow_down`),
//! refresh-token (rotation with reuse detection) and client-credentials
//! grants. Access tokens are ES256 JWTs a gateway can verify with the JWKS.
//! Never use it for anything but tests and demos.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::store::unix_now;
use crate::demo::DevKey;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct TestServerOptions {
    /// `aud` of access tokens.
    pub audience: String,
    /// `sub` of device-flow tokens.
    pub subject: String,
    /// `realm_access.roles`.
    pub roles: Vec<String>,
    /// `scope` claim.
    pub scope: String,
    /// `tenant` claim.
    pub tenant: String,
    /// Access token lifetime, seconds.
    pub access_ttl_seconds: u64,
    /// The device code's polling interval, seconds.
    pub device_interval_seconds: u64,
    /// The device code's lifetime, seconds.
    pub device_expires_in_seconds: u64,
    /// The first polls answered `authorization_pending` even if approved.
    pub pending_polls: u32,
    /// The poll (1-based) answered `slow_down` whatever the state.
    pub slow_down_on_poll: Option<u32>,
    /// Whether reusing a refresh token revokes its whole family.
    pub revoke_family_on_reuse: bool,
    /// Clients: id and, for confidential ones, the secret.
    pub clients: Vec<(String, Option<String>)>,
}

impl Default for TestServerOptions {
    fn default() -> Self {
        Self {
            audience: crate::demo::DEMO_AUDIENCE.to_owned(),
            subject: "dana".to_owned(),
            roles: vec!["user".to_owned()],
            scope: "sandbox.read sandbox.write".to_owned(),
            tenant: "acme".to_owned(),
            access_ttl_seconds: 300,
            device_interval_seconds: 1,
            device_expires_in_seconds: 120,
            pending_polls: 1,
            slow_down_on_poll: Some(2),
            revoke_family_on_reuse: true,
            clients: vec![("wasmgate-cli".to_owned(), None), ("ci-bot".to_owned(), Some("ci-secret".to_owned()))],
        }
    }
}

/// What the server has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestServerStats {
    /// Device authorization requests.
    pub device_authorizations: u32,
    /// Device-code polls of the token endpoint.
    pub device_polls: u32,
    /// Polls that came sooner than the interval asked for.
    pub too_fast_polls: u32,
    /// `slow_down` answers.
    pub slow_downs: u32,
    /// Successful refresh grants (each one a rotation).
    pub refreshes: u32,
    /// Refresh attempts with an already used refresh token.
    pub reused_refresh_tokens: u32,
    /// `invalid_grant` answers to refresh requests.
    pub refresh_invalid_grants: u32,
    /// Successful client-credentials grants.
    pub client_credentials: u32,
}

/// Tokens issued directly, for setting up tests.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Lifetime, seconds.
    pub expires_in: u64,
}

type Hook = Box<dyn FnOnce(&TestOAuthServer) + Send>;

struct Device {
    user_code: String,
    client_id: String,
    approved: bool,
    polls: u32,
    last_poll: Option<Instant>,
    interval: Duration,
    expires: Instant,
}

struct RefreshState {
    family: u64,
    used: bool,
    revoked: bool,
    client_id: String,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<String, Device>,
    refresh: HashMap<String, RefreshState>,
    next_family: u64,
    latest_refresh: Option<String>,
    stats: TestServerStats,
    before_refresh: Option<Hook>,
}

struct Shared {
    issuer: String,
    kid: String,
    key: EncodingKey,
    options: TestServerOptions,
    inner: Mutex<Inner>,
}

/// The server; clones share it. Stops with the runtime.
#[derive(Clone)]
pub struct TestOAuthServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestOAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOAuthServer").field("issuer", &self.shared.issuer).finish_non_exhaustive()
    }
}

impl TestOAuthServer {
    /// Generates a key and serves on `127.0.0.1:0`.
    pub async fn start(options: TestServerOptions) -> anyhow::Result<Self> {
        let DevKey { kid, jwk, key } = DevKey::generate("login-test")?;
        let jwks = json!({ "keys": [jwk] });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("bind the test OAuth server")?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let server = Self {
            shared: Arc::new(Shared { issuer: issuer.clone(), kid, key, options, inner: Mutex::new(Inner::default()) }),
        };
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks.json"),
            "token_endpoint": format!("{issuer}/token"),
            "device_authorization_endpoint": format!("{issuer}/device"),
            "grant_types_supported": [
                "urn:ietf:params:oauth:grant-type:device_code", "refresh_token", "client_credentials"
            ],
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        });
        let (device_server, token_server) = (server.clone(), server.clone());
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { Json(discovery) }))
            .route("/jwks.json", get(move || async move { Json(jwks) }))
            .route("/device", post(move |body: Bytes| async move { device_server.device_authorization(&body) }))
            .route(
                "/token",
                post(move |headers: HeaderMap, body: Bytes| async move { token_server.token(&headers, &body) }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "test OAuth server stopped");
            }
        });
        Ok(server)
    }

    /// The issuer URL (also the base of every endpoint).
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// Approves the device login showing `user_code`; false if unknown.
    pub fn approve(&self, user_code: &str) -> bool {
        let mut inner = self.inner();
        match inner.devices.values_mut().find(|d| d.user_code == user_code) {
            Some(d) => {
                d.approved = true;
                true
            }
            None => false,
        }
    }

    /// What the server has seen so far.
    pub fn stats(&self) -> TestServerStats {
        self.inner().stats.clone()
    }

    /// The refresh token issued last.
    pub fn latest_refresh_token(&self) -> Option<String> {
        self.inner().latest_refresh.clone()
    }

    /// Runs `hook` once, at the start of the next refresh request (to act as
    /// another process racing this one).
    pub fn before_next_refresh(&self, hook: impl FnOnce(&TestOAuthServer) + Send + 'static) {
        self.inner().before_refresh = Some(Box::new(hook));
    }

    /// Issues tokens to `client_id` without a flow (test set-up).
    pub fn issue(&self, client_id: &str) -> anyhow::Result<IssuedTokens> {
        let mut inner = self.inner();
        inner.next_family += 1;
        let family = inner.next_family;
        let refresh_token = new_refresh(&mut inner, family, client_id);
        drop(inner);
        Ok(IssuedTokens {
            access_token: self.access_token(&self.shared.options.subject, client_id)?,
            refresh_token,
            expires_in: self.shared.options.access_ttl_seconds,
        })
    }

    /// Rotates `refresh_token` as the token endpoint would; `None` when it
    /// is not usable.
    pub fn rotate(&self, refresh_token: &str) -> Option<IssuedTokens> {
        let (rt, client_id) = self.rotate_inner(refresh_token).ok()?;
        Some(IssuedTokens {
            access_token: self.access_token(&self.shared.options.subject, &client_id).ok()?,
            refresh_token: rt,
            expires_in: self.shared.options.access_ttl_seconds,
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn access_token(&self, subject: &str, client_id: &str) -> anyhow::Result<String> {
        let o = &self.shared.options;
        let now = unix_now();
        let claims = json!({
            "iss": self.shared.issuer, "aud": o.audience, "sub": subject, "client_id": client_id,
            "iat": now, "nbf": now, "exp": now + o.access_ttl_seconds,
            "jti": random_token(12), "scope": o.scope, "tenant": o.tenant,
            "realm_access": { "roles": o.roles },
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.shared.kid.clone());
        header.typ = Some("at+jwt".into());
        Ok(jsonwebtoken::encode(&header, &claims, &self.shared.key)?)
    }

    fn tokens_response(&self, subject: &str, client_id: &str, refresh: Option<String>) -> Response {
        match self.access_token(subject, client_id) {
            Ok(at) => {
                let mut body = json!({
                    "access_token": at, "token_type": "Bearer",
                    "expires_in": self.shared.options.access_ttl_seconds, "scope": self.shared.options.scope,
                });
                if let Some(rt) = refresh {
                    body["refresh_token"] = rt.into();
                }
                (StatusCode::OK, [("cache-control", "no-store")], Json(body)).into_response()
            }
            Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
        }
    }

    fn device_authorization(&self, body: &[u8]) -> Response {
        let form = parse_form(body);
        let Some(client_id) = form.get("client_id").cloned() else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_id is required");
        };
        if !self.shared.options.clients.iter().any(|(id, _)| *id == client_id) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
        }
        let o = &self.shared.options;
        let device_code = random_token(24);
        let code = random_token(4).to_ascii_uppercase();
        let user_code = format!("{}-{}", &code[..4], &code[4..]);
        let mut inner = self.inner();
        inner.stats.device_authorizations += 1;
        inner.devices.insert(
            device_code.clone(),
            Device {
                user_code: user_code.clone(),
                client_id,
                approved: false,
                polls: 0,
                last_poll: None,
                interval: Duration::from_secs(o.device_interval_seconds),
                expires: Instant::now() + Duration::from_secs(o.device_expires_in_seconds),
            },
        );
        let verify = format!("{}/activate", self.shared.issuer);
        Json(json!({
            "device_code": device_code, "user_code": user_code,
            "verification_uri": verify, "verification_uri_complete": format!("{verify}?user_code={user_code}"),
            "expires_in": o.device_expires_in_seconds, "interval": o.device_interval_seconds,
        }))
        .into_response()
    }

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let form = parse_form(body);
        match form.get("grant_type").map(String::as_str) {
            Some("urn:ietf:params:oauth:grant-type:device_code") => self.device_token(&form),
            Some("refresh_token") => self.refresh_token(&form),
            Some("client_credentials") => self.client_credentials(headers, &form),
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "unsupported grant_type"),
        }
    }

    fn device_token(&self, form: &HashMap<String, String>) -> Response {
        let code = form.get("device_code").cloned().unwrap_or_default();
        let mut inner = self.inner();
        inner.stats.device_polls += 1;
        let Some(device) = inner.devices.get_mut(&code) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown device code");
        };
        if form.get("client_id") != Some(&device.client_id) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "device code issued to another client");
        }
        let now = Instant::now();
        if now >= device.expires {
            return oauth_error(StatusCode::BAD_REQUEST, "expired_token", "the device code expired");
        }
        device.polls += 1;
        let polls = device.polls;
        // 100 ms of slack for scheduling.
        let too_fast = device.last_poll.is_some_and(|t| now + Duration::from_millis(100) < t + device.interval);
        device.last_poll = Some(now);
        if too_fast || self.shared.options.slow_down_on_poll == Some(polls) {
            device.interval += Duration::from_secs(5);
            inner.stats.slow_downs += 1;
            if too_fast {
                inner.stats.too_fast_polls += 1;
            }
            return oauth_error(StatusCode::BAD_REQUEST, "slow_down", "polling too fast");
        }
        if !device.approved || polls <= self.shared.options.pending_polls {
            return oauth_error(StatusCode::BAD_REQUEST, "authorization_pending", "not approved yet");
        }
        let client_id = device.client_id.clone();
        inner.devices.remove(&code);
        inner.next_family += 1;
        let family = inner.next_family;
        let rt = new_refresh(&mut inner, family, &client_id);
        drop(inner);
        self.tokens_response(&self.shared.options.subject, &client_id, Some(rt))
    }

    fn rotate_inner(&self, refresh_token: &str) -> Result<(String, String), &'static str> {
        let mut inner = self.inner();
        let revoke_family = self.shared.options.revoke_family_on_reuse;
        let Some(state) = inner.refresh.get_mut(refresh_token) else {
            return Err("unknown refresh token");
        };
        if state.revoked {
            return Err("refresh token revoked");
        }
        if state.used {
            let family = state.family;
            inner.stats.reused_refresh_tokens += 1;
            if revoke_family {
                for s in inner.refresh.values_mut().filter(|s| s.family == family) {
                    s.revoked = true;
                }
            }
            return Err("refresh token already used");
        }
        state.used = true;
        let (family, client_id) = (state.family, state.client_id.clone());
        inner.stats.refreshes += 1;
        Ok((new_refresh(&mut inner, family, &client_id), client_id))
    }

    fn refresh_token(&self, form: &HashMap<String, String>) -> Response {
        let hook = self.inner().before_refresh.take();
        if let Some(hook) = hook {
            hook(self);
        }
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let owner = self.inner().refresh.get(&rt).map(|s| s.client_id.clone());
        if owner.is_some_and(|o| o != client_id) {
            self.inner().stats.refresh_invalid_grants += 1;
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token issued to another client");
        }
        match self.rotate_inner(&rt) {
            Ok((new_rt, client_id)) => self.tokens_response(&self.shared.options.subject, &client_id, Some(new_rt)),
            Err(why) => {
                self.inner().stats.refresh_invalid_grants += 1;
                oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
            }
        }
    }

    fn client_credentials(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
        let basic = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (id, secret) = s.split_once(':')?;
                Some((form_decode(id), form_decode(secret)))
            });
        let (id, secret) = match basic {
            Some(pair) => pair,
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        let known = self.shared.options.clients.iter().any(|(i, s)| *i == id && s.as_deref() == Some(secret.as_str()));
        if !known {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        }
        self.inner().stats.client_credentials += 1;
        self.tokens_response(&id, &id, None)
    }
}

fn new_refresh(inner: &mut Inner, family: u64, client_id: &str) -> String {
    let rt = random_token(32);
    inner.refresh.insert(rt.clone(), RefreshState { family, used: false, revoked: false, client_id: client_id.into() });
    inner.latest_refresh = Some(rt.clone());
    rt
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, [("cache-control", "no-store")], Json(json!({"error": code, "error_description": description})))
        .into_response()
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    oauth2::url::form_urlencoded::parse(body).into_owned().collect()
}

/// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
fn form_decode(s: &str) -> String {
    oauth2::url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

/// A JSON value helper for tests: decodes a JWT's claims without checking.
pub fn claims_of(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}
