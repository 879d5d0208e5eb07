//! Serving: the listener (HTTP/1.1 and HTTP/2, cleartext or TLS), health
//! endpoints (`/healthz`, `/readyz`, `grpc.health.v1.Health`), the request
//! pipeline and forwarding; readiness and the shutdown drain.

mod call;
mod forward;
mod front;
mod headers;
mod health;
mod listener;
mod pipeline;
mod reject;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;

pub use headers::IdentityHeaders;
pub use listener::{Listener, TlsFiles};
/// The pipeline's policy stage over its real caches, for benchmarks.
#[cfg(feature = "testing")]
pub use pipeline::PolicyStage;
pub use reject::Rejection;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::plugins::{PluginEngine, PolicySet};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Config rejected.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A component could not be loaded.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::LoadError),
    /// Authentication could not be set up.
    #[error("authentication: {0}")]
    Auth(String),
    /// A route is invalid.
    #[error("routes: {0}")]
    Routes(String),
    /// The listener could not be bound or TLS set up.
    #[error("listener: {0}")]
    Listen(String),
    /// The decision log could not be set up.
    #[error("{0}")]
    DecisionLog(String),
}

/// Everything a call needs, shared by all connections.
#[derive(Debug)]
struct State {
    routes: routes::RouteTable,
    upstreams: Vec<forward::Upstream>,
    auth: Authenticator,
    policy: ArcSwap<PolicySet>,
    reloads: std::sync::Mutex<ReloadStatus>,
    /// The config file's text as the gateway started with it, which a
    /// reload compares the file against (`reload`: restart required).
    started_config: std::sync::OnceLock<String>,
    /// One candidate is built at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// The gateway's identity headers: stripped from clients, set for upstreams.
    identity: IdentityHeaders,
    /// Headers that rewrite a request after policy (`requests.strip_headers`).
    strip_rewrites: headers::HeaderNames,
    /// `X-Forwarded-*` from the connection, or from a trusted proxy.
    forwarding: headers::Forwarding,
    caches: pipeline::Caches,
    engine: PluginEngine,
    drivers: crate::drivers::Drivers,
    /// Upstream credentials, when a credentials driver is configured.
    credentials: Option<crate::credentials::CredentialResolver>,
    /// `login:`, served at the well-known login path.
    login: Option<crate::config::LoginConfig>,
    /// `server:`, the listener's HTTP/1.1 and HTTP/2 limits.
    server: crate::config::ServerConfig,
    /// Where each call's decision record goes.
    decision_log: crate::audit::DecisionLog,
    /// `shutdown:`, the drain delay and grace period.
    shutdown: crate::config::ShutdownConfig,
    /// True once shutdown started: readiness is off from then on.
    draining: tokio::sync::watch::Sender<bool>,
    /// When the gateway was built.
    started: std::time::Instant,
}

impl State {
    /// Readiness: not shutting down, every identity provider has usable
    /// keys and every required driver answers its health check.
    fn is_ready(&self) -> bool {
        !*self.draining.borrow() && self.auth.ready() && self.drivers.is_ready()
    }
}

/// A configured gateway, ready to serve.
#[derive(Debug, Clone)]
pub struct Gateway {
    state: Arc<State>,
}

impl Gateway {
    /// Builds the gateway from a config: loads and checks every component,
    /// sets up identity providers (keys are fetched in the background) and
    /// upstream clients. Must run inside a tokio runtime.
    pub async fn new(cfg: &Config) -> Result<Self, StartError> {
        cfg.ensure_valid()?;
        cfg.startup_warnings().iter().for_each(|w| tracing::warn!("{w}"));
        crate::metrics::build_info(crate::plugins::WIT_PACKAGE);
        health::warn_about_shadowed_routes(&cfg.routes);
        let engine = PluginEngine::new(&cfg.plugins)?;
        let policy = PolicySet::build(&engine, cfg, 1, None).await?;
        let auth = Authenticator::new(&cfg.auth).map_err(|e| StartError::Auth(e.to_string()))?;
        let routes = routes::RouteTable::new(&cfg.routes, &cfg.requests.paths).map_err(StartError::Routes)?;
        let trusted = crate::config::TrustedProxies::parse(&cfg.requests.trusted_proxies)
            .map_err(|e| StartError::Routes(e.to_string()))?;
        let upstreams = routes.routes().iter().map(forward::Upstream::new).collect();
        let decision_log =
            crate::audit::DecisionLog::new(&cfg.decision_log).map_err(|e| StartError::DecisionLog(e.to_string()))?;
        let drivers = crate::drivers::Drivers::new(&cfg.drivers);
        let credentials = drivers
            .credentials()
            .map(|d| crate::credentials::CredentialResolver::new(d.clone(), &cfg.drivers.credential_cache));
        Ok(Self {
            state: Arc::new(State {
                routes,
                upstreams,
                auth,
                policy: ArcSwap::from_pointee(policy),
                reload_lock: tokio::sync::Mutex::new(()),
                started_config: std::sync::OnceLock::new(),
                reloads: std::sync::Mutex::new(ReloadStatus {
                    generation: 1,
                    loaded_at_unix: unix_now(),
                    ..ReloadStatus::default()
                }),
                identity: IdentityHeaders::new(&cfg.identity_headers),
                strip_rewrites: headers::HeaderNames::new(&cfg.requests.strip_headers),
                forwarding: headers::Forwarding::new(trusted, cfg.tls.is_some()),
                caches: pipeline::Caches::new(),
                engine,
                drivers,
                credentials,
                login: cfg.login.clone(),
                server: cfg.server.clone(),
                decision_log,
                shutdown: cfg.shutdown.clone(),
                draining: tokio::sync::watch::Sender::new(false),
                started: std::time::Instant::now(),
            }),
        })
    }

    /// Starts every background task the gateway needs, on `tasks`: JWKS
    /// refresh, the gateway-token key watch, the drivers' health watches and
    /// refreshing upstream credentials ahead of expiry. The one place they start; [`Tasks::shutdown`] stops them.
    ///
    /// [`Tasks::shutdown`]: crate::tasks::Tasks::shutdown
    pub fn start(&self, tasks: &crate::tasks::Tasks) -> Result<(), StartError> {
        self.state.auth.start(tasks).map_err(|e| StartError::Auth(e.to_string()))?;
        self.state.drivers.start(tasks);
        self.state.decision_log.start(tasks).map_err(|e| StartError::DecisionLog(e.to_string()))?;
        if let Some(resolver) = &self.state.credentials {
            resolver.start(tasks);
        }
        Ok(())
    }

    /// Whether the gateway can serve authenticated calls and is not shutting
    /// down: components loaded, every identity provider has usable keys and
    /// every required driver answers its health check.
    pub fn ready(&self) -> bool {
        self.state.is_ready()
    }

    /// Whether shutdown has started (readiness is off, connections drain).
    pub fn draining(&self) -> bool {
        *self.state.draining.borrow()
    }

    /// Starts the drain: readiness (`/readyz`, gRPC health) turns false at
    /// once. [`Gateway::serve`] calls it when its shutdown future resolves.
    pub fn begin_drain(&self) {
        if !self.state.draining.send_replace(true) {
            tracing::info!("shutting down: readiness is now off");
        }
    }

    /// How long the gateway has been up.
    pub fn uptime(&self) -> std::time::Duration {
        self.state.started.elapsed()
    }

    /// Authenticates an admin call by the bearer token in its
    /// `Authorization` header (a cookie or query token is never accepted: a
    /// mutating call must not ride on ambient credentials), with the
    /// gateway's own authentication (OIDC providers, mapped by their claims
    /// mapper, or gateway tokens), and checks that its principal has
    /// `scope`. Fails closed: no token, an invalid one, or one without a
    /// principal is a rejection.
    pub async fn authorize_admin(
        &self,
        headers: &http::HeaderMap,
        scope: &str,
    ) -> Result<crate::identity::Principal, Rejection> {
        let state = &self.state;
        let presented = state.auth.extract(headers, &http::Uri::from_static("/"), false);
        match presented.bearer() {
            Some((_, crate::identity::TokenSource::AuthorizationHeader)) => {}
            Some(_) => return Err(Rejection::InvalidRequest),
            None => return Err(Rejection::MissingCredential),
        }
        let verified = state
            .auth
            .authenticate(crate::identity::AuthClass::Bearer, &presented)
            .await
            .map_err(|e| Rejection::from(&e))?;
        let policy = self.policy();
        let authentication = state.caches.authentication(&policy, &verified).await.map_err(|reason| {
            tracing::info!(%reason, "admin call refused: the token maps to no principal");
            Rejection::Forbidden
        })?;
        let principal = authentication.principal.ok_or(Rejection::Forbidden)?;
        if principal.scopes.iter().any(|s| s == scope) { Ok(principal) } else { Err(Rejection::Forbidden) }
    }

    /// The current policy set.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.state.policy.load_full()
    }

    /// Builds a new policy set from `cfg` off the request path and swaps it
    /// in atomically; calls in flight finish on the set they started with.
    /// On any failure the current set keeps serving. Only the policy
    /// bindings and components are reloaded; other settings need a restart.
    pub async fn reload_policy(&self, cfg: &Config) -> Result<u64, StartError> {
        let _one_at_a_time = self.state.reload_lock.lock().await;
        let result = self.build_policy(cfg).await;
        if let Ok(mut status) = self.state.reloads.lock() {
            match &result {
                Ok(generation) => {
                    status.generation = *generation;
                    status.loaded_at_unix = unix_now();
                    status.consecutive_failures = 0;
                }
                Err(e) => {
                    status.last_error = Some(e.to_string());
                    status.last_error_at_unix = Some(unix_now());
                    status.consecutive_failures = status.consecutive_failures.saturating_add(1);
                }
            }
        }
        result
    }

    async fn build_policy(&self, cfg: &Config) -> Result<u64, StartError> {
        cfg.ensure_valid()?;
        let current = self.state.policy.load_full();
        let generation = current.generation() + 1;
        let set = PolicySet::build(&self.state.engine, cfg, generation, Some(&current)).await?;
        self.state.policy.store(Arc::new(set));
        Ok(generation)
    }

    /// The outcome of policy loads so far.
    pub fn reload_status(&self) -> ReloadStatus {
        self.state.reloads.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Records the reason of a rejected reload for the admin surface:
    /// `new_failure` for one [`Gateway::reload_policy`] never saw (a config
    /// file that cannot be read or parsed), otherwise a fuller explanation
    /// of the one it just recorded.
    pub fn note_reload_error(&self, reason: &str, new_failure: bool) {
        if let Ok(mut status) = self.state.reloads.lock() {
            status.last_error = Some(reason.to_owned());
            if new_failure {
                status.last_error_at_unix = Some(unix_now());
                status.consecutive_failures = status.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// Keeps the config file's text as the gateway started with it; the
    /// first call wins.
    pub fn remember_started_config(&self, text: String) {
        let _ = self.state.started_config.set(text);
    }

    /// The config file's text as the gateway started with it, once
    /// [remembered](Self::remember_started_config).
    pub fn started_config(&self) -> Option<&str> {
        self.state.started_config.get().map(String::as_str)
    }

    /// Records the config keys changed since start that a reload does not
    /// apply (empty: none), for the admin surface.
    pub fn note_restart_required(&self, keys: Vec<String>) {
        if let Ok(mut status) = self.state.reloads.lock() {
            status.restart_required = keys;
        }
    }

    /// The axum router: health endpoints (`/healthz`, `/readyz`,
    /// `grpc.health.v1.Health`) and the login settings (unauthenticated),
    /// then every other path through the pipeline.
    pub fn router(&self) -> Router {
        let ready_state = self.state.clone();
        let grpc_health = health::service(self.state.clone());
        let login = self.state.login.clone().map(axum::Json);
        let state = self.state.clone();
        Router::new()
            .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
            .route(
                crate::config::LOGIN_WELL_KNOWN_PATH,
                get(move || {
                    let login = login.clone();
                    async move { login.ok_or((StatusCode::NOT_FOUND, "login is not configured\n")) }
                }),
            )
            .route(
                "/readyz",
                get(move || {
                    let state = ready_state.clone();
                    async move { readyz(&state).into_response() }
                }),
            )
            // The whole service, so that no route can shadow any of it.
            .route_service("/grpc.health.v1.Health/{*method}", grpc_health)
            .fallback(move |req: Request| {
                let state = state.clone();
                async move { pipeline::handle(state, req.map(Body::new)).await }
            })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains as
    /// `shutdown:` says: readiness off at once ([`Gateway::begin_drain`]),
    /// accepting and serving for `drain_delay_ms`, then calls and streams
    /// in flight get `grace_ms` to finish.
    pub async fn serve(&self, listener: Listener, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        self.serve_until(listener, shutdown, std::future::pending()).await
    }

    /// Like [`Gateway::serve`]; when `abort` resolves (e.g. a second
    /// signal), the drain is cut short and every connection closes at once.
    pub async fn serve_until(
        &self,
        listener: Listener,
        shutdown: impl Future<Output = ()> + Send,
        abort: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let cfg = &self.state.shutdown;
        let drain = listener::Drain { delay: cfg.drain_delay(), grace: cfg.grace() };
        let shutdown = async {
            shutdown.await;
            self.begin_drain();
        };
        let front = front::Front::new(self.router(), self.state.clone());
        listener.serve(front, &self.state.server, drain, shutdown, abort).await
    }
}

/// What the last policy loads did, for the admin surface.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Generation of the policy set serving now.
    pub generation: u64,
    /// When it was loaded (Unix seconds).
    pub loaded_at_unix: u64,
    /// The last rejected candidate's reason.
    pub last_error: Option<String>,
    /// When that was (Unix seconds).
    pub last_error_at_unix: Option<u64>,
    /// Rejected candidates since the last successful load.
    pub consecutive_failures: u32,
    /// Config keys changed in the file since start that only a restart
    /// applies (`listen`, `routes[api].timeout_ms`, ...); empty when the
    /// file matches what is running.
    pub restart_required: Vec<String>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn readyz(state: &State) -> (StatusCode, String) {
    let providers = state.auth.readiness();
    let mut body = String::new();
    let mut ready = true;
    if *state.draining.borrow() {
        ready = false;
        body.push_str("shutting down: draining\n");
    }
    for p in &providers {
        let line = if p.has_keys {
            format!("provider {}: ready ({} keys)\n", p.name, p.key_count)
        } else {
            ready = false;
            format!("provider {}: not ready (no usable keys)\n", p.name)
        };
        body.push_str(&line);
    }
    for d in state.drivers.readiness() {
        let line = match (d.ready, d.required) {
            (true, _) => format!("driver {}: ready\n", d.name),
            (false, required) => {
                ready &= !required;
                format!(
                    "driver {}: not ready{} ({})\n",
                    d.name,
                    if required { "" } else { ", not required" },
                    d.last_error.as_deref().unwrap_or("no health check answered yet")
                )
            }
        };
        body.push_str(&line);
    }
    let policy = state.policy.load();
    body.push_str(&format!("policy: {} components loaded\n", policy.plugins().len()));
    if ready { (StatusCode::OK, body) } else { (StatusCode::SERVICE_UNAVAILABLE, body) }
}

/// The address a TCP listener is bound to, for messages.
pub fn describe(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}
