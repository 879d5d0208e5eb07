//! The gateway's configuration: the YAML file given to `wasmgate serve`.
//!
//! Every section has production defaults; `docs/config.md` is the reference
//! and `examples/wasmgate.yaml` a commented example. Unknown keys are
//! rejected so a typo never silently weakens a setting.
//!
//! Each section is a module that owns its types and checks itself with its
//! own error type: [`server`](ServerConfig) (and `tls`), [`requests`](RequestsConfig),
//! [`auth`](AuthConfig) (and `identity_headers`), [`plugins`](PluginsConfig) and
//! [`policy`](PolicyConfig), [`routes`](RouteConfig), [`drivers`](DriversConfig),
//! [`login`](LoginConfig) and [`admin`](AdminConfig). This module keeps [`Config`],
//! loading, and the checks across sections. A config is checked once, when
//! it is loaded ([`Config::load`], [`Config::from_yaml`]).

mod admin;
mod auth;
mod decision_log;
mod drivers;
mod login;
pub mod overrides;
pub mod paths;
mod policy;
mod requests;
mod routes;
mod schema;
mod secret;
mod server;
mod shutdown;
mod telemetry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use admin::{AdminConfig, AdminConfigError};
pub use auth::{
    AuthConfig, AuthConfigError, GatewayTokensConfig, IdentityHeadersConfig, JwksConfig, ProviderConfig,
    TokenCacheConfig,
};
pub use decision_log::{
    DecisionLogConfig, DecisionLogConfigError, FileSinkConfig, HttpSinkConfig, MASKABLE_FIELDS, SinkConfig,
};
pub use drivers::{CredentialCacheConfig, DriverConfig, DriversConfig, DriversConfigError, RetryConfig};
pub use login::{LoginConfig, LoginConfigError, WELL_KNOWN_PATH as LOGIN_WELL_KNOWN_PATH};
pub use overrides::{OverrideError, Overrides};
pub use policy::{BindingConfig, PluginsConfig, PolicyConfig, PolicyConfigError, ShadowConfig, TenantPolicyConfig};
pub use requests::{
    EscapedSlashes, PathOptions, RequestsConfig, RequestsConfigError, RoutePathOptions, TrustedProxies,
};
pub use routes::{RouteConfig, RouteConfigError, RouteMatch, UpstreamHost, UpstreamProtocol};
pub use schema::schema;
pub use secret::{SecretError, SecretSource, SecretValue};
pub use server::{Http1Config, Http2Config, ServerConfig, ServerConfigError, TlsConfig};
pub use shutdown::{ShutdownConfig, ShutdownConfigError};
pub use telemetry::{
    BatchConfig as TracingBatchConfig, OtlpProtocol, SamplerConfig, TelemetryConfig, TelemetryConfigError,
    TracingConfig,
};

/// Errors while reading or checking the configuration. A section's error
/// is its own type, shown after `invalid config: ` and naming the key.
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
    /// The YAML is malformed or has unknown keys (or `drivers:`, which
    /// checks itself while it is read, is refused).
    #[error("invalid config: {0}")]
    Parse(serde_norway::Error),
    /// An override (`--set`, `WASMGATE__…`) cannot be applied.
    #[error("invalid config: {0}")]
    Override(OverrideError),
    /// The file with its overrides applied is malformed or has unknown keys.
    #[error("invalid config with the overrides {overrides}: {source}")]
    OverriddenParse {
        /// The overridden paths, comma-separated.
        overrides: String,
        /// Why.
        source: serde_norway::Error,
    },
    /// `server:` is refused.
    #[error("invalid config: {0}")]
    Server(ServerConfigError),
    /// `login:` is refused.
    #[error("invalid config: {0}")]
    Login(LoginConfigError),
    /// `auth:` or `identity_headers:` is refused.
    #[error("invalid config: {0}")]
    Auth(AuthConfigError),
    /// `plugins:` or `policy:` is refused.
    #[error("invalid config: {0}")]
    Policy(PolicyConfigError),
    /// `requests:` is refused.
    #[error("invalid config: {0}")]
    Requests(RequestsConfigError),
    /// A route is refused (alone, or against another section).
    #[error("invalid config: {0}")]
    Routes(RouteConfigError),
    /// A secret cannot be read from its source.
    #[error("invalid config: {0}")]
    Secret(SecretError),
    /// `workers` is out of range.
    #[error("invalid config: workers must be 1 to {MAX_WORKERS}, not {0}")]
    Workers(usize),
    /// `decision_log:` is refused.
    #[error("invalid config: {0}")]
    DecisionLog(DecisionLogConfigError),
    /// `telemetry:` is refused.
    #[error("invalid config: {0}")]
    Telemetry(TelemetryConfigError),
    /// `admin:` is refused.
    #[error("invalid config: {0}")]
    Admin(AdminConfigError),
    /// `shutdown:` is refused.
    #[error("invalid config: {0}")]
    Shutdown(ShutdownConfigError),
}

/// `From` each section's error, so `?` wraps it. The section error is the
/// message, not a separate cause: the text is said once.
macro_rules! from_section_errors {
    ($($variant:ident($error:ty)),* $(,)?) => {$(
        impl From<$error> for ConfigError {
            fn from(e: $error) -> Self {
                Self::$variant(e)
            }
        }
    )*};
}

from_section_errors!(
    Server(ServerConfigError),
    Login(LoginConfigError),
    Auth(AuthConfigError),
    Policy(PolicyConfigError),
    Requests(RequestsConfigError),
    Routes(RouteConfigError),
    Secret(SecretError),
    DecisionLog(DecisionLogConfigError),
    Telemetry(TelemetryConfigError),
    Admin(AdminConfigError),
    Shutdown(ShutdownConfigError),
    Override(OverrideError),
);

/// The most `workers` a config may ask for.
pub const MAX_WORKERS: usize = 1024;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The async runtime's worker threads (1–1024), like Envoy's
    /// `--concurrency` and HAProxy's `nbthread`; the available parallelism
    /// when absent. Read at start.
    #[serde(default)]
    pub workers: Option<usize>,
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
    #[schemars(with = "AuthConfig", skip_serializing)]
    pub auth: AuthConfig,
    /// Policy components and their limits.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Which component serves which role.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Routes, tried in order; the first match wins.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    #[schemars(with = "Vec<RouteConfig>", skip_serializing)]
    pub routes: Vec<RouteConfig>,
    /// Drivers on Unix sockets (credentials); see `docs/drivers.md`.
    #[serde(default, deserialize_with = "DriversConfig::deserialize_checked")]
    #[schemars(with = "DriversConfig")]
    pub drivers: DriversConfig,
    /// What `wasmgate login` uses, served at `/.well-known/wasmgate-login`;
    /// that path answers 404 when absent.
    #[serde(default)]
    pub login: Option<LoginConfig>,
    /// Limits of the main listener's HTTP/1.1 and HTTP/2 serving.
    #[serde(default)]
    pub server: ServerConfig,
    /// Where each call's decision record goes and what it shows; JSON lines
    /// on stderr when absent.
    #[serde(default, with = "serde_norway::with::singleton_map_recursive")]
    #[schemars(with = "DecisionLogConfig", skip_serializing)]
    pub decision_log: DecisionLogConfig,
    /// OpenTelemetry traces (OTLP); off when absent. Read at start only.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// What SIGTERM and SIGINT do: readiness off, keep serving for
    /// `drain_delay_ms`, then `grace_ms` for calls in flight.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Whether [`Config::validate`] passed when this value was built
    /// ([`Config::load`], [`Config::from_yaml`]); false for a config
    /// deserialized some other way, which [`Config::ensure_valid`] then checks.
    #[serde(skip)]
    validated: bool,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Config {
    /// Reads and checks a YAML config file, with the process's installed
    /// overrides applied ([`overrides::install`]; none unless `serve`
    /// installed them). Every relative path in it is resolved against the
    /// file's folder and made absolute (see [`paths`]); relative component
    /// paths resolve against `plugins.dir`, which defaults to that folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, overrides::installed())
    }

    /// [`Config::load`] with `overrides` instead of the installed ones.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let mut cfg = if overrides.is_empty() {
            // Straight from the text: errors keep their line and column.
            Self::from_yaml(&text)?
        } else {
            Self::from_tree(Self::merge(&text, overrides)?, overrides)?
        };
        // Every path absolute once, against the file's canonical folder.
        paths::resolve(&mut cfg, &paths::base_dir(path));
        Ok(cfg)
    }

    /// The YAML tree of the file with `overrides` applied, before it is
    /// deserialized (what `config check` shows, redacted).
    pub fn merged_tree(path: &Path, overrides: &Overrides) -> Result<serde_norway::Value, ConfigError> {
        Self::merge(&read(path)?, overrides)
    }

    fn merge(text: &str, overrides: &Overrides) -> Result<serde_norway::Value, ConfigError> {
        let mut tree: serde_norway::Value = serde_norway::from_str(text).map_err(ConfigError::Parse)?;
        tree.apply_merge().map_err(ConfigError::Parse)?;
        overrides.apply(&mut tree)?;
        Ok(tree)
    }

    fn from_tree(tree: serde_norway::Value, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut cfg: Self = serde_norway::from_value(tree).map_err(|source| ConfigError::OverriddenParse {
            overrides: overrides.iter().map(|o| o.path()).collect::<Vec<_>>().join(", "),
            source,
        })?;
        cfg.validate()?;
        cfg.validated = true;
        Ok(cfg)
    }

    /// Parses and checks YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut cfg: Self = serde_norway::from_str(text).map_err(ConfigError::Parse)?;
        cfg.validate()?;
        cfg.validated = true;
        Ok(cfg)
    }

    /// Checks every section, then the rules across sections. Loading
    /// already did: call it again only after changing fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // `drivers:` checked itself while it was deserialized.
        self.login.as_ref().map(LoginConfig::validate).transpose()?;
        self.server.validate()?;
        self.decision_log.validate()?;
        self.shutdown.validate()?;
        self.admin.as_ref().map(AdminConfig::validate).transpose()?;
        self.identity_headers.validate()?;
        self.auth.validate()?;
        self.plugins.validate()?;
        self.policy.validate()?;
        self.requests.validate()?;
        self.telemetry.validate()?;
        routes::validate(&self.routes, &self.requests.paths)?;
        self.validate_across_sections()
    }

    /// The rules that tie one section to another.
    fn validate_across_sections(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.workers
            && !(1..=MAX_WORKERS).contains(&n)
        {
            return Err(ConfigError::Workers(n));
        }
        // Bindings outside `policy:` serve classifiers and claims-mappers,
        // which have no decision cache to opt out of.
        for r in &self.routes {
            r.classifier
                .as_ref()
                .map_or(Ok(()), |b| b.not_an_authorizer(|| format!("routes.{}.classifier", r.name)))?;
        }
        for p in &self.auth.providers {
            let at = || format!("auth.providers.{}.claims_mapper", p.name);
            p.claims_mapper.as_ref().map_or(Ok(()), |b| b.not_an_authorizer(at))?;
        }
        if self.admin.as_ref().is_some_and(|a| a.require_scope.is_some())
            && self.auth.providers.is_empty()
            && self.auth.gateway_tokens.is_none()
        {
            return Err(AdminConfigError::ScopeWithoutAuthentication.into());
        }
        match self.routes.iter().find(|r| r.allow_query_token) {
            Some(r) if self.auth.query_parameter.is_none() => {
                Err(RouteConfigError::QueryTokenWithoutParameter(r.name.clone()).into())
            }
            _ => Ok(()),
        }
    }

    /// Checks the config unless loading already did, for those that take a
    /// config from their caller (the gateway at start and on reload).
    pub(crate) fn ensure_valid(&self) -> Result<(), ConfigError> {
        if self.validated { Ok(()) } else { self.validate() }
    }

    /// What `wasmgate serve` warns about at start: identity providers that
    /// can assert any tenant (`tenants` unset and the claims-mapper not
    /// pinned by a `tenant` setting), two providers that can assert the
    /// same tenant, and a pinned mapper whose tenant its provider's
    /// `tenants` refuses.
    pub fn startup_warnings(&self) -> Vec<String> {
        self.auth.tenant_warnings()
    }
}

#[cfg(test)]
mod tests;
