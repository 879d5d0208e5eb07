//! Route matching, on the canonical path.

use std::path::PathBuf;

use crate::canonical::{self, PathError, PathOptions};
use crate::config::{RouteConfig, RouteMatch, UpstreamProtocol};

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

/// The routes, tried in order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
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
        Ok(Self { routes, paths: *paths })
    }

    /// The first route matching the canonical `path`, with its index.
    pub fn find(&self, path: &str) -> Option<(usize, &Route)> {
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
mod tests {
    use super::*;

    fn route(m: RouteMatch) -> RouteConfig {
        RouteConfig {
            name: "r".into(),
            matches: m,
            upstream: "unix:///tmp/x.sock".into(),
            upstream_protocol: None,
            keep_authorization: false,
            allow_query_token: false,
            allow_upgrade: false,
            timeout_ms: 1000,
            classifier: None,
            paths: Default::default(),
            stream_idle_timeout_ms: 0,
            max_request_body_bytes: 1 << 20,
            max_connections: 8,
            max_pending: 8,
            upstream_host: Default::default(),
        }
    }

    fn table(cfgs: &[RouteConfig]) -> RouteTable {
        RouteTable::new(cfgs, &PathOptions::default()).expect("valid")
    }

    #[test]
    fn grpc_service_matches_whole_service_names() {
        let t = table(&[route(RouteMatch::GrpcService("sandbox.v1.SandboxService".into()))]);
        assert!(t.find("/sandbox.v1.SandboxService/GetSandbox").is_some());
        assert!(t.find("/sandbox.v1.SandboxServiceX/GetSandbox").is_none());
        assert!(t.find("/sandbox.v1.SandboxService/").is_none());
        assert!(t.find("/sandbox.v1.SandboxService/a/b").is_none());
        assert_eq!(t.routes()[0].protocol, UpstreamProtocol::H2);
    }

    #[test]
    fn path_prefix_matches_whole_segments() {
        let t = table(&[route(RouteMatch::PathPrefix("/v1".into()))]);
        assert!(t.find("/v1").is_some());
        assert!(t.find("/v1/x").is_some());
        assert!(t.find("/v1x").is_none());
        assert_eq!(t.routes()[0].protocol, UpstreamProtocol::Http1);
    }

    #[test]
    fn upstreams_parse() {
        let mut r = route(RouteMatch::PathPrefix("/".into()));
        r.upstream = "http://127.0.0.1:9000".into();
        assert_eq!(
            Route::new(&r, &PathOptions::default()).expect("valid").target,
            Target::Tcp("127.0.0.1:9000".into())
        );
        r.upstream = "unix://relative.sock".into();
        assert!(Route::new(&r, &PathOptions::default()).is_err());
    }

    #[test]
    fn requests_route_on_their_canonical_path() {
        let public = RouteConfig { name: "public".into(), ..route(RouteMatch::PathPrefix("/public".into())) };
        let api = RouteConfig { name: "api".into(), ..route(RouteMatch::PathPrefix("/api".into())) };
        let t = table(&[public, api]);
        let (_, r, p) = t.resolve("/public/../api/x").expect("resolves");
        assert_eq!((r.cfg.name.as_str(), p.as_str()), ("api", "/api/x"));
        let (_, r, p) = t.resolve("/public//%2e%2e/api/x").expect("resolves");
        assert_eq!((r.cfg.name.as_str(), p.as_str()), ("api", "/api/x"));
        assert_eq!(t.resolve("/public/..%2fapi/x").err(), Some(Unresolved::Path(PathError::EncodedSlash)));
        assert_eq!(t.resolve("/nowhere/../x").err(), Some(Unresolved::NoRoute("/x".into())));
        assert_eq!(t.resolve("/..").err(), Some(Unresolved::Path(PathError::AboveRoot)));
    }

    #[test]
    fn a_route_that_reads_escaped_slashes_differently_must_still_match() {
        let mut files = RouteConfig { name: "files".into(), ..route(RouteMatch::PathPrefix("/files".into())) };
        files.paths.escaped_slashes = Some(canonical::EscapedSlashes::Unescape);
        let api = RouteConfig { name: "api".into(), ..route(RouteMatch::PathPrefix("/api".into())) };
        let mut keep = RouteConfig { name: "blobs".into(), ..route(RouteMatch::PathPrefix("/blobs".into())) };
        keep.paths.escaped_slashes = Some(canonical::EscapedSlashes::Keep);
        let t = table(&[files, api, keep]);
        let (_, r, p) = t.resolve("/files/a%2Fb").expect("unescaped on its route");
        assert_eq!((r.cfg.name.as_str(), p.as_str()), ("files", "/files/a/b"));
        // Decoded, this path leaves the route it was matched on.
        assert_eq!(t.resolve("/files/..%2Fapi/x").err(), Some(Unresolved::Ambiguous));
        let (_, r, p) = t.resolve("/blobs/a%2fb").expect("kept on its route");
        assert_eq!((r.cfg.name.as_str(), p.as_str()), ("blobs", "/blobs/a%2Fb"));
        assert_eq!(t.resolve("/blobs/..%2F..%2Fapi").err(), Some(Unresolved::Path(PathError::AmbiguousDotSegment)));
        assert_eq!(t.resolve("/api/a%2Fb").err(), Some(Unresolved::Path(PathError::EncodedSlash)));
    }
}
