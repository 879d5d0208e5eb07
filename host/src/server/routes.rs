//! Route matching, on the canonical path.

use std::path::PathBuf;

mod index;

use crate::canonical::{self, PathError, PathOptions};
use crate::config::{RouteConfig, RouteMatch, UpstreamProtocol};
use index::RouteIndex;

/// Where a route forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix domain socket.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

/// One route, ready to match.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its config.
    pub cfg: RouteConfig,
    /// Parsed upstream.
    pub target: Target,
    /// Protocol spoken upstream.
    pub protocol: UpstreamProtocol,
    /// Path canonicalization in force on this route.
    pub paths: PathOptions,
}

impl Route {
    /// Parses a route's upstream; `paths` are the global path options.
    pub fn new(cfg: &RouteConfig, paths: &PathOptions) -> Result<Self, String> {
        let target = if let Some(path) = cfg.upstream.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("route {:?}: unix upstream must be an absolute path", cfg.name));
            }
            Target::Unix(PathBuf::from(path))
        } else if let Some(hostport) = cfg.upstream.strip_prefix("http://") {
            let hostport = hostport.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') {
                return Err(format!("route {:?}: http upstream must be http://host:port", cfg.name));
            }
            Target::Tcp(hostport.to_owned())
        } else {
            return Err(format!("route {:?}: unsupported upstream {:?}", cfg.name, cfg.upstream));
        };
        let protocol = cfg.upstream_protocol.unwrap_or(match cfg.matches {
            RouteMatch::GrpcService(_) => UpstreamProtocol::H2,
            RouteMatch::PathPrefix(_) => UpstreamProtocol::Http1,
        });
        Ok(Self { cfg: cfg.clone(), target, protocol, paths: cfg.paths.over(paths) })
    }

    /// Whether this route matches `path`, by itself: the reference the
    /// index is checked against.
    #[cfg(test)]
    fn matches(&self, path: &str) -> bool {
        match &self.cfg.matches {
            RouteMatch::GrpcService(service) => path
                .strip_prefix('/')
                .and_then(|p| p.strip_prefix(service.as_str()))
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1 && !rest[1..].contains('/')),
            RouteMatch::PathPrefix(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                prefix.is_empty()
                    || path == prefix
                    || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// The routes, tried in order: the first matching one wins, found through
/// an index built once per table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    index: RouteIndex,
    paths: PathOptions,
}

/// Why a request target resolves to no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// The path is refused (400).
    Path(PathError),
    /// Canonicalized under its route's options, the path matches another
    /// route (400): the two readings of the request disagree.
    Ambiguous,
    /// No route matches the canonical path (404).
    NoRoute(String),
}

impl RouteTable {
    /// From the config, with the global path options.
    pub fn new(cfgs: &[RouteConfig], paths: &PathOptions) -> Result<Self, String> {
        let routes = cfgs.iter().map(|c| Route::new(c, paths)).collect::<Result<Vec<_>, _>>()?;
        let index = RouteIndex::new(routes.iter().map(|r| &r.cfg.matches));
        Ok(Self { routes, index, paths: *paths })
    }

    /// The first route matching the canonical `path`, with its index.
    pub fn find(&self, path: &str) -> Option<(usize, &Route)> {
        self.index.find(path).map(|i| (i, &self.routes[i]))
    }

    /// [`Self::find`] by trying every route in order: the reference.
    #[cfg(test)]
    fn find_linear(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| r.matches(path))
    }

    /// The route of a request path as received and its canonical path
    /// under that route's options. A first pass, with escaped slashes kept
    /// opaque, picks the route; when that route reads paths differently
    /// from the global options the path is canonicalized again under its
    /// own, and must still match the same route.
    pub fn resolve(&self, raw: &str) -> Result<(usize, &Route, String), Unresolved> {
        let first = canonical::for_routing(raw, self.paths.merge_slashes).map_err(Unresolved::Path)?;
        let Some((idx, route)) = self.find(&first.path) else {
            return Err(Unresolved::NoRoute(first.path));
        };
        if !first.had_escaped_slash && route.paths.merge_slashes == self.paths.merge_slashes {
            return Ok((idx, route, first.path));
        }
        let second = canonical::for_route(raw, &route.paths).map_err(Unresolved::Path)?;
        match self.find(&second.path) {
            Some((i, _)) if i == idx => Ok((idx, route, second.path)),
            _ => Err(Unresolved::Ambiguous),
        }
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests;
