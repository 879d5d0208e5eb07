//! `routes:` — which calls each route matches and where they go. Routes
//! are tried in order and the first match wins, so a route that an earlier
//! one always matches first is refused.

use serde::Deserialize;

use super::{BindingConfig, PathOptions, RoutePathOptions};

/// Why a route is refused. Each names the route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteConfigError {
    /// Two routes share a name.
    #[error("route name {0:?} is used twice")]
    DuplicateName(String),
    /// `upstream` is neither `unix://` nor `http://`.
    #[error("route {0:?}: upstream must be unix:///path or http://host:port")]
    Upstream(String),
    /// `match.path_prefix` is relative.
    #[error("route {0:?}: path_prefix must start with '/'")]
    PrefixNotAbsolute(String),
    /// `match.path_prefix` changes when canonicalized.
    #[error(
        "route {route:?}: path_prefix {prefix:?} is not a canonical path (no dot-segments, repeated slashes or escapes that decode), so no request could match it"
    )]
    PrefixNotCanonical {
        /// The route.
        route: String,
        /// Its prefix.
        prefix: String,
    },
    /// `allow_upgrade` with an HTTP/2 upstream.
    #[error("route {0:?}: allow_upgrade needs an http1 upstream")]
    UpgradeNeedsHttp1(String),
    /// `allow_upgrade` on a gRPC route.
    #[error("route {0:?}: allow_upgrade does not apply to gRPC routes")]
    UpgradeOnGrpc(String),
    /// `max_connections: 0`.
    #[error("route {0:?}: max_connections must be at least 1")]
    NoConnections(String),
    /// An earlier route matches every call this one would.
    #[error("route {route:?} can never match: route {earlier:?} before it matches every call it would")]
    Shadowed {
        /// The route that can never match.
        route: String,
        /// The earlier route that takes its calls.
        earlier: String,
    },
    /// `allow_query_token` without `auth.query_parameter` (a check across
    /// sections, made by [`super::Config::validate`]).
    #[error("route {0:?} allows query tokens but auth.query_parameter is unset")]
    QueryTokenWithoutParameter(String),
}

/// One route: which calls it matches and where they go.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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

fn default_upstream_timeout() -> u64 {
    30_000
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
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
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

/// How a route matches calls.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum RouteMatch {
    /// A gRPC service by full name, e.g. `sandbox.v1.SandboxService`.
    GrpcService(String),
    /// An HTTP path prefix, matched on whole segments (`/v1` matches `/v1/x`, not `/v1x`).
    PathPrefix(String),
}

/// The protocol spoken to an upstream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c on cleartext).
    H2,
}

/// Checks every route, in order, against `paths` (`requests.paths`, which
/// a route's own `paths` override): unique names, usable upstreams and
/// prefixes, options that fit the route, and none shadowed by an earlier one.
pub(super) fn validate(routes: &[RouteConfig], paths: &PathOptions) -> Result<(), RouteConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        if !names.insert(r.name.as_str()) {
            return Err(RouteConfigError::DuplicateName(r.name.clone()));
        }
        r.validate(paths)?;
        if let Some(earlier) = routes[..i].iter().find(|e| shadows(e, r)) {
            return Err(RouteConfigError::Shadowed { route: r.name.clone(), earlier: earlier.name.clone() });
        }
    }
    Ok(())
}

impl RouteConfig {
    /// Checks this route alone.
    fn validate(&self, paths: &PathOptions) -> Result<(), RouteConfigError> {
        let name = || self.name.clone();
        if !(self.upstream.starts_with("unix://") || self.upstream.starts_with("http://")) {
            return Err(RouteConfigError::Upstream(name()));
        }
        if let RouteMatch::PathPrefix(p) = &self.matches {
            if !p.starts_with('/') {
                return Err(RouteConfigError::PrefixNotAbsolute(name()));
            }
            if crate::canonical::canonicalize(p, &self.paths.over(paths)).as_deref() != Ok(p.as_str()) {
                return Err(RouteConfigError::PrefixNotCanonical { route: name(), prefix: p.clone() });
            }
        }
        if self.allow_upgrade && self.upstream_protocol == Some(UpstreamProtocol::H2) {
            return Err(RouteConfigError::UpgradeNeedsHttp1(name()));
        }
        if self.allow_upgrade && matches!(self.matches, RouteMatch::GrpcService(_)) {
            return Err(RouteConfigError::UpgradeOnGrpc(name()));
        }
        if self.max_connections == 0 {
            return Err(RouteConfigError::NoConnections(name()));
        }
        Ok(())
    }
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
