//! Route matching.

use std::path::PathBuf;

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
}

impl Route {
    /// Parses a route's upstream.
    pub fn new(cfg: &RouteConfig) -> Result<Self, String> {
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
        Ok(Self { cfg: cfg.clone(), target, protocol })
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
pub struct RouteTable(Vec<Route>);

impl RouteTable {
    /// From the config.
    pub fn new(cfgs: &[RouteConfig]) -> Result<Self, String> {
        cfgs.iter().map(Route::new).collect::<Result<Vec<_>, _>>().map(Self)
    }

    /// The first route matching `path`, with its index.
    pub fn find(&self, path: &str) -> Option<(usize, &Route)> {
        self.0.iter().enumerate().find(|(_, r)| r.matches(path))
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.0
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
            timeout_ms: 1000,
            classifier: None,
        }
    }

    #[test]
    fn grpc_service_matches_whole_service_names() {
        let t = RouteTable::new(&[route(RouteMatch::GrpcService("sandbox.v1.SandboxService".into()))]).expect("valid");
        assert!(t.find("/sandbox.v1.SandboxService/GetSandbox").is_some());
        assert!(t.find("/sandbox.v1.SandboxServiceX/GetSandbox").is_none());
        assert!(t.find("/sandbox.v1.SandboxService/").is_none());
        assert!(t.find("/sandbox.v1.SandboxService/a/b").is_none());
        assert_eq!(t.routes()[0].protocol, UpstreamProtocol::H2);
    }

    #[test]
    fn path_prefix_matches_whole_segments() {
        let t = RouteTable::new(&[route(RouteMatch::PathPrefix("/v1".into()))]).expect("valid");
        assert!(t.find("/v1").is_some());
        assert!(t.find("/v1/x").is_some());
        assert!(t.find("/v1x").is_none());
        assert_eq!(t.routes()[0].protocol, UpstreamProtocol::Http1);
    }

    #[test]
    fn upstreams_parse() {
        let mut r = route(RouteMatch::PathPrefix("/".into()));
        r.upstream = "http://127.0.0.1:9000".into();
        assert_eq!(Route::new(&r).expect("valid").target, Target::Tcp("127.0.0.1:9000".into()));
        r.upstream = "unix://relative.sock".into();
        assert!(Route::new(&r).is_err());
    }
}
