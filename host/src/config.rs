//! The gateway's configuration: the YAML file given to `wasmgate serve`.
//!
//! Every section has production defaults; `docs/config.md` is the reference
//! and `examples/wasmgate.yaml` a commented example. Unknown keys are
//! rejected so a typo never silently weakens a setting.

mod drivers;
mod login;
pub mod paths;
mod requests;
mod secret;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use drivers::{CredentialCacheConfig, DriverConfig, DriversConfig, RetryConfig};
pub use login::{LoginConfig, WELL_KNOWN_PATH as LOGIN_WELL_KNOWN_PATH};
pub use requests::{EscapedSlashes, PathOptions, RequestsConfig, RoutePathOptions, TrustedProxies};
pub use secret::{SecretSource, SecretValue};
pub use server::{Http1Config, Http2Config, ServerConfig};

/// Errors while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown keys.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the main listener (HTTP/1.1 and HTTP/2, TLS if `tls` is set).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS for the main listener; cleartext (with h2c) when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The admin listener (metrics, loaded components); off when absent.
    /// It is not authenticated: keep it on loopback or a private network.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Which client-sent headers are removed before anything else happens.
    #[serde(default)]
    pub identity_headers: IdentityHeadersConfig,
    /// How requests are read before policy: canonical paths, headers that
    /// rewrite a request after policy, trusted proxies.
    #[serde(default)]
    pub requests: RequestsConfig,
    /// Authentication: identity providers, sandbox secret, token sources.
    /// (Enums such as secret sources are written as one-key maps:
    /// `{file: /path}`.)
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    pub auth: AuthConfig,
    /// Policy components and their limits.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Which component serves which role.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Routes, tried in order; the first match wins.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    pub routes: Vec<RouteConfig>,
    /// Drivers on Unix sockets (credentials); see `docs/drivers.md`.
    #[serde(default, deserialize_with = "DriversConfig::deserialize_checked")]
    pub drivers: DriversConfig,
    /// What `wasmgate login` uses, served at `/.well-known/wasmgate-login`;
    /// that path answers 404 when absent.
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// Limits of the main listener's HTTP/1.1 and HTTP/2 serving.
    #[serde(default)]
    pub server: ServerConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address; `127.0.0.1:9901` by default.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

/// TLS certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Client-sent identity headers to strip.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeadersConfig {
    /// Every request header starting with this prefix is removed (compared
    /// case-insensitively, with `_` and `-` treated alike). The gateway sets
    /// its own identity headers under this prefix.
    pub prefix: String,
    /// More header names removed the same way (e.g. `x-remote-user`).
    pub also_strip: Vec<String>,
}

impl Default for IdentityHeadersConfig {
    fn default() -> Self {
        Self {
            prefix: "x-wasmgate-".to_owned(),
            also_strip: vec![
                "x-remote-user".to_owned(),
                "x-forwarded-user".to_owned(),
                "x-auth-request-user".to_owned(),
                "x-auth-request-email".to_owned(),
            ],
        }
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The sandbox secret, if sandbox-secret methods are used.
    pub sandbox_secret: Option<SecretSource>,
    /// The header that carries the sandbox secret.
    pub sandbox_secret_header: String,
    /// A cookie that may carry a bearer token (not read when unset).
    pub cookie: Option<String>,
    /// A query parameter that may carry a bearer token; only read on routes
    /// with `allow_query_token: true`.
    pub query_parameter: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, seconds.
    pub leeway_seconds: u64,
    /// Tokens whose `exp - iat` exceeds this are rejected (0 = no limit).
    pub max_token_lifetime_seconds: u64,
    /// Credentials longer than this are rejected before parsing, bytes.
    pub max_token_bytes: usize,
    /// Identity providers.
    pub providers: Vec<ProviderConfig>,
    /// The gateway's own tokens; disabled when absent.
    pub gateway_tokens: Option<GatewayTokensConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            sandbox_secret: None,
            sandbox_secret_header: "x-sandbox-secret".to_owned(),
            cookie: None,
            query_parameter: None,
            leeway_seconds: 30,
            max_token_lifetime_seconds: 0,
            max_token_bytes: 8 * 1024,
            providers: Vec::new(),
            gateway_tokens: None,
        }
    }
}

/// One OIDC identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name used in logs, metrics and bindings.
    pub name: String,
    /// The exact `iss` value (no normalisation: a trailing slash matters).
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Algorithms accepted from this provider's keys.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The JWKS URL; discovered from `{issuer}/.well-known/openid-configuration` when absent.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// When set, the token's `typ` header must equal this (e.g. `at+jwt`,
    /// RFC 9068), compared case-insensitively, so ID tokens are refused.
    #[serde(default)]
    pub required_typ: Option<String>,
    /// JWKS cache behaviour.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// The claims-mapper binding for this provider; the built-in
    /// `oidc-claims-mapper` with default settings when absent.
    #[serde(default)]
    pub claims_mapper: Option<BindingConfig>,
    /// The tenants this provider may assert. When set, a principal mapped
    /// from its claims whose tenant is not listed, or that has no tenant,
    /// is refused (403), whatever the claims-mapper returned. Unset: no
    /// bound (a startup warning says so if the mapper may take the tenant
    /// from a claim).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

/// JWKS caching and refresh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// Background refresh interval, seconds (shortened by `Cache-Control: max-age`, never below the cooldown).
    pub refresh_seconds: u64,
    /// Minimum time between two fetches triggered by unknown `kid`s, seconds.
    pub cooldown_seconds: u64,
    /// Last-good keys are used up to this long after the last successful fetch, seconds.
    pub max_staleness_seconds: u64,
    /// Timeout of one fetch, milliseconds.
    pub fetch_timeout_ms: u64,
    /// Largest accepted JWKS or discovery document, bytes.
    pub max_body_bytes: usize,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refresh_seconds: 300,
            cooldown_seconds: 10,
            max_staleness_seconds: 24 * 3600,
            fetch_timeout_ms: 5_000,
            max_body_bytes: 256 * 1024,
        }
    }
}

/// The gateway's own HMAC tokens. Keys come either inline (`active_key` and
/// `keys`) or from `keys_dir`, never both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTokensConfig {
    /// The `iss` of gateway tokens; must differ from every provider's issuer.
    #[serde(default = "default_gateway_issuer")]
    pub issuer: String,
    /// The `aud` of gateway tokens.
    #[serde(default = "default_gateway_issuer")]
    pub audience: String,
    /// Inline form: the version (`kid`) used to sign new tokens.
    #[serde(default)]
    pub active_key: Option<String>,
    /// Inline form: key versions that verify tokens (retired versions are
    /// removed from here; a change needs a restart).
    #[serde(default)]
    pub keys: BTreeMap<String, SecretSource>,
    /// Folder form, laid out as a mounted Kubernetes Secret: a file `active`
    /// naming the active version and one file per version holding its key.
    /// Watched and reloaded live.
    #[serde(default)]
    pub keys_dir: Option<PathBuf>,
    /// Revoked `jti`s, one per line (`JTI [EXP]`, `#` comments), laid out
    /// as a mounted ConfigMap would be. Watched and reloaded live.
    #[serde(default)]
    pub revoked_file: Option<PathBuf>,
}

impl GatewayTokensConfig {
    /// Inline keys: `active` signs, every entry of `keys` verifies.
    pub fn inline(active: &str, keys: BTreeMap<String, SecretSource>) -> Self {
        Self {
            issuer: default_gateway_issuer(),
            audience: default_gateway_issuer(),
            active_key: Some(active.to_owned()),
            keys,
            keys_dir: None,
            revoked_file: None,
        }
    }

    /// Keys from a folder.
    pub fn from_dir(keys_dir: PathBuf, revoked_file: Option<PathBuf>) -> Self {
        Self {
            issuer: default_gateway_issuer(),
            audience: default_gateway_issuer(),
            active_key: None,
            keys: BTreeMap::new(),
            keys_dir: Some(keys_dir),
            revoked_file,
        }
    }
}

fn default_gateway_issuer() -> String {
    "wasmgate".to_owned()
}

/// Limits and sources of policy components.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Folder that relative component paths are resolved against.
    pub dir: Option<PathBuf>,
    /// Deadline of one policy call, milliseconds.
    pub deadline_ms: u64,
    /// Linear memory cap of one instance, bytes.
    pub max_memory_bytes: usize,
    /// Instances that may exist at once across all components.
    pub max_instances: u32,
    /// Reuse an instance for the next call after a call that succeeded
    /// (after any failure the instance is dropped). Off: a fresh instance
    /// per call, so no state can survive between calls.
    pub instance_reuse: bool,
    /// Folder of the precompile cache: compiled components keyed by their
    /// SHA-256 and the engine's compatibility hash, so a restart or a swap
    /// back to a known component skips compilation. Created `0700`; refused
    /// if it is a symlink, not owned by the gateway's user, or open to
    /// group or others (loading a cached artifact runs its native code).
    /// Off when unset.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            deadline_ms: 50,
            max_memory_bytes: 16 * 1024 * 1024,
            max_instances: 1000,
            instance_reuse: true,
            cache_dir: None,
        }
    }
}

impl PluginsConfig {
    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// Which component serves a role, and its settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// `builtin:NAME` for an embedded default component, or a path to a
    /// `.wasm` component (relative paths are resolved against `plugins.dir`).
    pub plugin: String,
    /// Settings the component reads with `host.get-config`.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// A component evaluated next to this one on live traffic: its answer
    /// is compared, logged and counted, and never changes the outcome.
    #[serde(default)]
    pub shadow: Option<ShadowConfig>,
}

impl BindingConfig {
    /// A binding of an embedded component with no settings.
    pub fn builtin(name: &str) -> Self {
        Self { plugin: format!("builtin:{name}"), settings: BTreeMap::new(), shadow: None }
    }
}

/// The shadow of a binding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// `builtin:NAME` or a component path, as for the binding itself.
    pub plugin: String,
    /// Its settings; the active binding's settings when absent.
    #[serde(default)]
    pub settings: Option<BTreeMap<String, serde_json::Value>>,
}

/// Per-tenant overrides of the global authorizer and credential policy.
/// The tenant is the one the claims-mapper (or a gateway token) assigned
/// to the principal; calls without a principal or tenant use the global
/// bindings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicyConfig {
    /// The authorizer for this tenant's principals.
    #[serde(default)]
    pub authorizer: Option<BindingConfig>,
    /// The credential policy for this tenant's principals.
    #[serde(default)]
    pub credential_policy: Option<BindingConfig>,
}

/// The global policy bindings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The default classifier (routes may override it).
    pub classifier: BindingConfig,
    /// The authorizer.
    pub authorizer: BindingConfig,
    /// The credential policy.
    pub credential_policy: BindingConfig,
    /// Overrides of `authorizer` and `credential_policy` per tenant name.
    pub tenants: BTreeMap<String, TenantPolicyConfig>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            classifier: BindingConfig::builtin("default-classifier"),
            authorizer: BindingConfig::builtin("rbac-authorizer"),
            credential_policy: BindingConfig::builtin("default-credential-policy"),
            tenants: BTreeMap::new(),
        }
    }
}

/// One route: which calls it matches and where they go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name (logs, metrics, policy input).
    pub name: String,
    /// What the route matches.
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    /// `unix:///path/to.sock` or `http://host:port`.
    pub upstream: String,
    /// The upstream protocol; `h2` for gRPC routes and `http1` otherwise by default.
    #[serde(default)]
    pub upstream_protocol: Option<UpstreamProtocol>,
    /// Forward the client's `Authorization` header upstream.
    #[serde(default)]
    pub keep_authorization: bool,
    /// Accept a bearer token from the configured query parameter on this route.
    #[serde(default)]
    pub allow_query_token: bool,
    /// Let authorized HTTP/1.1 `Upgrade: websocket` calls through to an
    /// HTTP/1.1 upstream and join the two connections after its `101`.
    #[serde(default)]
    pub allow_upgrade: bool,
    /// Upstream response-header timeout, milliseconds (streams may run longer).
    #[serde(default = "default_upstream_timeout")]
    pub timeout_ms: u64,
    /// A classifier for this route instead of the global one.
    #[serde(default)]
    pub classifier: Option<BindingConfig>,
    /// Overrides of `requests.paths` for this route.
    #[serde(default)]
    pub paths: RoutePathOptions,
    /// Longest wait for the next piece of a request or response body,
    /// milliseconds (0: none).
    #[serde(default = "default_stream_idle_timeout")]
    pub stream_idle_timeout_ms: u64,
    /// Largest request body forwarded, bytes: 413 (gRPC
    /// RESOURCE_EXHAUSTED) past it.
    #[serde(default = "default_max_request_body")]
    pub max_request_body_bytes: u64,
    /// HTTP/1.1 upstreams: connections (so requests in flight) at most.
    #[serde(default = "default_upstream_connections")]
    pub max_connections: usize,
    /// HTTP/1.1 upstreams: requests that may wait for a free connection;
    /// past them, 503 at once.
    #[serde(default = "default_upstream_connections")]
    pub max_pending: usize,
    /// The `Host` the upstream receives.
    #[serde(default)]
    pub upstream_host: UpstreamHost,
}

fn default_stream_idle_timeout() -> u64 {
    300_000
}

fn default_max_request_body() -> u64 {
    256 << 20
}

fn default_upstream_connections() -> usize {
    1024
}

/// Which authority an upstream receives as `Host` (HTTP/1.1).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamHost {
    /// The upstream's own `host:port` (nginx's `proxy_pass` default); the
    /// client's for Unix-socket upstreams, which have none.
    #[default]
    Upstream,
    /// The client's authority, as Envoy forwards it; the client's is also
    /// in `X-Forwarded-Host` either way.
    Client,
}

/// Whether every call `later` matches is matched by `earlier` first.
fn shadows(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let covers = |prefix: &str, path: &str| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
    };
    match (&earlier.matches, &later.matches) {
        (RouteMatch::PathPrefix(a), RouteMatch::PathPrefix(b)) => covers(a, b.trim_end_matches('/')),
        (RouteMatch::PathPrefix(a), RouteMatch::GrpcService(s)) => covers(a, &format!("/{s}")),
        (RouteMatch::GrpcService(a), RouteMatch::GrpcService(b)) => a == b,
        (RouteMatch::GrpcService(_), RouteMatch::PathPrefix(_)) => false,
    }
}

fn default_upstream_timeout() -> u64 {
    30_000
}

/// How a route matches calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RouteMatch {
    /// A gRPC service by full name, e.g. `sandbox.v1.SandboxService`.
    GrpcService(String),
    /// An HTTP path prefix, matched on whole segments (`/v1` matches `/v1/x`, not `/v1x`).
    PathPrefix(String),
}

/// The protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c on cleartext).
    H2,
}

impl Config {
    /// Reads and checks a YAML config file. Every relative path in it is
    /// resolved against the file's folder and made absolute (see [`paths`]);
    /// relative component paths resolve against `plugins.dir`, which
    /// defaults to that folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut cfg = Self::from_yaml(&text)?;
        // Every path absolute once, against the file's canonical folder.
        paths::resolve(&mut cfg, &paths::base_dir(path));
        Ok(cfg)
    }

    /// Parses and checks YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.login.as_ref().map(LoginConfig::validate).transpose()?;
        self.server.validate()?;
        let prefix = self.identity_headers.prefix.to_ascii_lowercase();
        if prefix.len() < 3 || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return invalid(format!("identity_headers.prefix {prefix:?} must be 3+ header-name characters"));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.auth.providers {
            if !names.insert(p.name.as_str()) {
                return invalid(format!("provider name {:?} is used twice", p.name));
            }
            if p.audiences.is_empty() {
                return invalid(format!("provider {:?} needs at least one audience", p.name));
            }
            if p.algorithms.is_empty() {
                return invalid(format!("provider {:?} allows no algorithm", p.name));
            }
            if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
                return invalid(format!("provider {:?}: issuer must be an http(s) URL", p.name));
            }
            if self.auth.providers.iter().filter(|q| q.issuer == p.issuer).count() > 1 {
                return invalid(format!("issuer {:?} is configured twice", p.issuer));
            }
            if let Some(g) = &self.auth.gateway_tokens
                && g.issuer == p.issuer
            {
                return invalid(format!("gateway_tokens.issuer equals provider {:?}'s issuer", p.name));
            }
            if let Some(tenants) = &p.tenants {
                if tenants.is_empty() {
                    return invalid(format!("provider {:?}: tenants is empty (omit it for no bound)", p.name));
                }
                for (i, t) in tenants.iter().enumerate() {
                    if t.is_empty() || t.len() > 256 || !t.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                        return invalid(format!(
                            "provider {:?}: tenant {t:?} must be 1..=256 visible ASCII characters without commas",
                            p.name
                        ));
                    }
                    if tenants[..i].contains(t) {
                        return invalid(format!("provider {:?}: tenant {t:?} is listed twice", p.name));
                    }
                }
            }
        }
        if let Some(g) = &self.auth.gateway_tokens {
            match (&g.keys_dir, &g.active_key) {
                (Some(_), Some(_)) => {
                    return invalid("gateway_tokens: set either keys_dir or active_key and keys, not both".to_owned());
                }
                (Some(_), None) if !g.keys.is_empty() => {
                    return invalid("gateway_tokens: set either keys_dir or keys, not both".to_owned());
                }
                (Some(_), None) => {}
                (None, None) => return invalid("gateway_tokens needs keys_dir, or active_key and keys".to_owned()),
                (None, Some(active)) if !g.keys.contains_key(active) => {
                    return invalid(format!("gateway_tokens.active_key {active:?} is not among keys"));
                }
                (None, Some(_)) => {}
            }
        }
        if self.plugins.deadline_ms == 0 || self.plugins.deadline_ms > 10_000 {
            return invalid("plugins.deadline_ms must be within 1..=10000".to_owned());
        }
        if self.plugins.max_memory_bytes < 1 << 20 {
            return invalid("plugins.max_memory_bytes must be at least 1 MiB".to_owned());
        }
        for (tenant, t) in &self.policy.tenants {
            if tenant.is_empty() || tenant.len() > 256 {
                return invalid(format!("policy.tenants: tenant name {tenant:?} must be 1..=256 bytes"));
            }
            if t.authorizer.is_none() && t.credential_policy.is_none() {
                return invalid(format!("policy.tenants.{tenant} overrides nothing"));
            }
        }
        TrustedProxies::parse(&self.requests.trusted_proxies).map_err(ConfigError::Invalid)?;
        for h in &self.requests.strip_headers {
            if http::HeaderName::try_from(h.as_str()).is_err() {
                return invalid(format!("requests.strip_headers: {h:?} is not a header name"));
            }
        }
        let mut route_names = std::collections::HashSet::new();
        for r in &self.routes {
            if !route_names.insert(r.name.as_str()) {
                return invalid(format!("route name {:?} is used twice", r.name));
            }
            if !(r.upstream.starts_with("unix://") || r.upstream.starts_with("http://")) {
                return invalid(format!("route {:?}: upstream must be unix:///path or http://host:port", r.name));
            }
            if let RouteMatch::PathPrefix(p) = &r.matches
                && !p.starts_with('/')
            {
                return invalid(format!("route {:?}: path_prefix must start with '/'", r.name));
            }
            if let RouteMatch::PathPrefix(p) = &r.matches
                && crate::canonical::canonicalize(p, &r.paths.over(&self.requests.paths)).as_deref() != Ok(p.as_str())
            {
                return invalid(format!(
                    "route {:?}: path_prefix {p:?} is not a canonical path (no dot-segments, repeated slashes or escapes that decode), so no request could match it",
                    r.name
                ));
            }
            if r.allow_upgrade && r.upstream_protocol == Some(UpstreamProtocol::H2) {
                return invalid(format!("route {:?}: allow_upgrade needs an http1 upstream", r.name));
            }
            if r.allow_upgrade && matches!(r.matches, RouteMatch::GrpcService(_)) {
                return invalid(format!("route {:?}: allow_upgrade does not apply to gRPC routes", r.name));
            }
            if r.max_connections == 0 {
                return invalid(format!("route {:?}: max_connections must be at least 1", r.name));
            }
            if let Some(earlier) = self.routes.iter().take_while(|e| !std::ptr::eq(*e, r)).find(|e| shadows(e, r)) {
                return invalid(format!(
                    "route {:?} can never match: route {:?} before it matches every call it would",
                    r.name, earlier.name
                ));
            }
            if r.allow_query_token && self.auth.query_parameter.is_none() {
                return invalid(format!("route {:?} allows query tokens but auth.query_parameter is unset", r.name));
            }
        }
        Ok(())
    }
}

/// What a provider's principals may carry as their tenant, as far as the
/// configuration tells.
enum TenantBound<'a> {
    /// Only these (`tenants`, or the built-in mapper's fixed `tenant`).
    Only(Vec<&'a str>),
    /// None: the built-in mapper with neither `tenant` nor `tenant-claim`.
    NoTenant,
    /// Any: from a claim (`tenant-claim` named here) or decided by a custom
    /// component.
    Any(Option<String>),
}

/// A binding setting as the component reads it: strings as they are,
/// other values as JSON text.
fn setting_text(b: &BindingConfig, key: &str) -> Option<String> {
    b.settings.get(key).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

impl ProviderConfig {
    fn tenant_bound(&self) -> TenantBound<'_> {
        if let Some(t) = &self.tenants {
            return TenantBound::Only(t.iter().map(String::as_str).collect());
        }
        // Without a binding: the built-in mapper with no settings, no tenant.
        let Some(mapper) = &self.claims_mapper else { return TenantBound::NoTenant };
        if mapper.plugin != "builtin:oidc-claims-mapper" {
            return TenantBound::Any(None);
        }
        match (mapper.settings.get("tenant"), setting_text(mapper, "tenant-claim")) {
            (Some(serde_json::Value::String(t)), _) => TenantBound::Only(vec![t.as_str()]),
            (Some(_), claim) => TenantBound::Any(claim),
            (None, Some(claim)) => TenantBound::Any(Some(claim)),
            (None, None) => TenantBound::NoTenant,
        }
    }
}

impl Config {
    /// What `wasmgate serve` warns about at start: identity providers that
    /// can assert any tenant (`tenants` unset and the claims-mapper not
    /// pinned by a `tenant` setting), two providers that can assert the
    /// same tenant, and a pinned mapper whose tenant its provider's
    /// `tenants` refuses.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut asserted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in &self.auth.providers {
            match p.tenant_bound() {
                TenantBound::Only(tenants) => {
                    for t in tenants {
                        asserted.entry(t).or_default().push(&p.name);
                    }
                }
                TenantBound::NoTenant => {}
                TenantBound::Any(Some(claim)) => warnings.push(format!(
                    "provider {:?} takes the tenant from claim {claim:?} with no bound: its issuer can assert any \
                     tenant and get that tenant's policy and upstream credentials; list the tenants it may assert \
                     in its `tenants`, or pin the claims-mapper's `tenant` setting",
                    p.name
                )),
                TenantBound::Any(None) => warnings.push(format!(
                    "provider {:?} has no `tenants` and its claims-mapper is not pinned by a `tenant` setting: \
                     whatever tenant the mapper returns is trusted; list the tenants it may assert in its `tenants`",
                    p.name
                )),
            }
            if let (Some(tenants), Some(mapper)) = (&p.tenants, &p.claims_mapper)
                && mapper.plugin == "builtin:oidc-claims-mapper"
                && let Some(pinned) = setting_text(mapper, "tenant")
                && !tenants.contains(&pinned)
            {
                warnings.push(format!(
                    "provider {:?}: its claims-mapper pins tenant {pinned:?}, which its `tenants` {tenants:?} does \
                     not allow: every principal of this provider will be refused",
                    p.name
                ));
            }
        }
        for (tenant, providers) in asserted {
            if providers.len() > 1 {
                warnings.push(format!(
                    "providers {} can all assert tenant {tenant:?}: each of their issuers can act for that tenant",
                    providers.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_safe_defaults() {
        let cfg = Config::from_yaml("{}").expect("empty config is valid");
        assert_eq!(cfg.listen, default_listen());
        assert_eq!(cfg.identity_headers.prefix, "x-wasmgate-");
        assert!(cfg.auth.query_parameter.is_none());
        assert!(cfg.auth.providers.is_empty());
        assert_eq!(cfg.policy.authorizer.plugin, "builtin:rbac-authorizer");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let cfg = Config::from_yaml(include_str!("../../examples/wasmgate.yaml")).expect("example parses");
        assert_eq!(cfg.auth.providers.len(), 2);
        assert_eq!(cfg.routes.len(), 3);
        assert!(!format!("{cfg:?}").contains("hunter"), "secrets stay out of Debug");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_yaml("listen: 127.0.0.1:1\nlsiten: x\n").expect_err("typo must fail");
        assert!(err.to_string().contains("lsiten"), "{err}");
    }

    #[test]
    fn query_tokens_need_a_parameter_name() {
        let yaml = r#"
routes:
  - name: r
    match: { path_prefix: /v1 }
    upstream: http://127.0.0.1:1
    allow_query_token: true
"#;
        assert!(Config::from_yaml(yaml).is_err());
    }

    #[test]
    fn gateway_keys_are_inline_or_a_folder_not_both() {
        let both = "auth:\n  gateway_tokens:\n    keys_dir: /k\n    active_key: v1\n    keys: { v1: { value: x } }\n";
        assert!(Config::from_yaml(both).is_err());
        let dir_and_keys = "auth:\n  gateway_tokens:\n    keys_dir: /k\n    keys: { v1: { value: x } }\n";
        assert!(Config::from_yaml(dir_and_keys).is_err());
        assert!(Config::from_yaml("auth:\n  gateway_tokens: {}\n").is_err());
        let dir = "auth:\n  gateway_tokens:\n    keys_dir: keys\n    revoked_file: revoked/revoked\n";
        let cfg = Config::from_yaml(dir).expect("folder form");
        let g = cfg.auth.gateway_tokens.expect("gateway tokens");
        assert_eq!(g.keys_dir.as_deref(), Some(Path::new("keys")));
        let inline = "auth:\n  gateway_tokens:\n    active_key: v1\n    keys: { v1: { value: x } }\n";
        assert!(Config::from_yaml(inline).is_ok());
    }

    #[test]
    fn gateway_token_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wasmgate.yaml");
        std::fs::write(&path, "auth:\n  gateway_tokens:\n    keys_dir: keys\n    revoked_file: /abs/revoked\n")
            .expect("write");
        let g = Config::load(&path).expect("load").auth.gateway_tokens.expect("gateway tokens");
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(g.keys_dir, Some(canonical.join("keys")));
        assert_eq!(g.revoked_file.as_deref(), Some(Path::new("/abs/revoked")));
    }

    #[test]
    fn routes_shadowed_by_an_earlier_route_are_refused_naming_both() {
        let yaml = |first: &str, second: &str| {
            format!(
                "routes:\n  - {{ name: a, match: {first}, upstream: \"http://127.0.0.1:1\" }}\n  - {{ name: b, match: {second}, upstream: \"http://127.0.0.1:2\" }}\n"
            )
        };
        for (first, second) in [
            ("{ path_prefix: /v1 }", "{ path_prefix: /v1 }"),
            ("{ path_prefix: /v1 }", "{ path_prefix: /v1/x }"),
            ("{ path_prefix: / }", "{ path_prefix: /v1 }"),
            ("{ path_prefix: / }", "{ grpc_service: pkg.Svc }"),
            ("{ path_prefix: /pkg.Svc }", "{ grpc_service: pkg.Svc }"),
            ("{ grpc_service: pkg.Svc }", "{ grpc_service: pkg.Svc }"),
        ] {
            let err = Config::from_yaml(&yaml(first, second)).expect_err(&format!("{first} shadows {second}"));
            assert!(err.to_string().contains(r#"route "b" can never match: route "a""#), "{err}");
        }
        for (first, second) in [
            ("{ path_prefix: /v1/x }", "{ path_prefix: /v1 }"),
            ("{ path_prefix: /v1 }", "{ path_prefix: /v10 }"),
            ("{ grpc_service: pkg.Svc }", "{ path_prefix: / }"),
            ("{ grpc_service: pkg.Svc }", "{ grpc_service: pkg.Svc2 }"),
        ] {
            assert!(Config::from_yaml(&yaml(first, second)).is_ok(), "{first} then {second}");
        }
    }

    #[test]
    fn a_zero_timeout_means_none_and_limits_have_defaults() {
        let cfg = Config::from_yaml(
            "routes:\n  - { name: a, match: { path_prefix: / }, upstream: \"http://127.0.0.1:1\", timeout_ms: 0 }\n",
        )
        .expect("timeout_ms: 0 is documented as none");
        let r = &cfg.routes[0];
        assert_eq!((r.timeout_ms, r.stream_idle_timeout_ms, r.max_request_body_bytes), (0, 300_000, 256 << 20));
        assert_eq!(r.upstream_host, UpstreamHost::Upstream);
        let zero = "routes:\n  - { name: a, match: { path_prefix: / }, upstream: \"http://127.0.0.1:1\", max_connections: 0 }\n";
        assert!(Config::from_yaml(zero).is_err());
    }

    #[test]
    fn provider_without_audience_is_rejected() {
        let yaml = r#"
auth:
  providers:
    - name: kc
      issuer: https://kc.example/realms/a
      audiences: []
"#;
        assert!(Config::from_yaml(yaml).is_err());
    }

    fn provider_yaml(name: &str, extra: &str) -> String {
        format!("    - name: {name}\n      issuer: https://{name}.example/\n      audiences: [api]\n{extra}")
    }

    #[test]
    fn provider_tenants_are_checked_and_unbounded_tenants_warned_about() {
        let cfg = |providers: &[String]| Config::from_yaml(&format!("auth:\n  providers:\n{}", providers.concat()));
        for bad in ["[]", "[\"\"]", "[a, a]", "[\"a,b\"]", "[\"a b\"]"] {
            let p = provider_yaml("x", &format!("      tenants: {bad}\n"));
            assert!(cfg(&[p]).is_err(), "tenants: {bad}");
        }
        let claim = "      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }\n";
        let pinned = |t: &str| {
            format!("      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant: {t} }} }}\n")
        };
        let custom = "      claims_mapper: { plugin: mapper.wasm }\n";

        // Bounded, distinct tenants, or no tenant at all: no warning.
        let quiet = [
            provider_yaml("acme", &format!("{claim}      tenants: [acme]\n")),
            provider_yaml("globex", &pinned("globex")),
            provider_yaml("plain", ""),
            provider_yaml("corp", &format!("{custom}      tenants: [corp, corp-eu]\n")),
        ];
        assert_eq!(cfg(&quiet).expect("valid").startup_warnings(), Vec::<String>::new());

        let w = cfg(&[provider_yaml("acme", claim)]).expect("valid").startup_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains(r#"provider "acme" takes the tenant from claim "tenant" with no bound"#), "{w:?}");
        let w = cfg(&[provider_yaml("corp", custom)]).expect("valid").startup_warnings();
        assert!(w.len() == 1 && w[0].contains(r#"provider "corp" has no `tenants`"#), "{w:?}");

        let overlap = [
            provider_yaml("acme", &pinned("acme")),
            provider_yaml("globex", &format!("{claim}      tenants: [globex, acme]\n")),
        ];
        let w = cfg(&overlap).expect("valid").startup_warnings();
        let both =
            r#"providers "acme", "globex" can all assert tenant "acme": each of their issuers can act for that tenant"#;
        assert_eq!(w, vec![both]);

        let refused = [provider_yaml("acme", &format!("{}      tenants: [globex]\n", pinned("acme")))];
        let w = cfg(&refused).expect("valid").startup_warnings();
        assert!(w.len() == 1 && w[0].contains("every principal of this provider will be refused"), "{w:?}");
    }
}
