//! `requests:`: how the gateway reads a request before any policy does:
//! path canonicalization, headers that rewrite a request after policy, and
//! which peers may set `X-Forwarded-*`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

pub use crate::canonical::{EscapedSlashes, PathOptions};

/// Why the `requests:` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestsConfigError {
    /// An entry of `trusted_proxies` (trimmed) is neither a CIDR nor an address.
    #[error("requests.trusted_proxies: {0:?} is not a CIDR or an IP address")]
    TrustedProxy(String),
    /// An entry of `strip_headers` is not a header name.
    #[error("requests.strip_headers: {0:?} is not a header name")]
    StripHeader(String),
}

/// Request hardening.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RequestsConfig {
    /// Path canonicalization for every route (routes may override it).
    pub paths: PathOptions,
    /// Request headers removed before policy runs, because upstream
    /// frameworks honour them to change the method or URL afterwards.
    /// Compared case-insensitively, with `_` read as `-`.
    pub strip_headers: Vec<String>,
    /// Peers (CIDRs, or single addresses) whose `X-Forwarded-*` and
    /// `Forwarded` headers are kept and appended to. From anyone else they
    /// are dropped and set from the connection.
    pub trusted_proxies: Vec<String>,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self {
            paths: PathOptions::default(),
            strip_headers: [
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
                "x-original-url",
                "x-rewrite-url",
            ]
            .map(str::to_owned)
            .to_vec(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl RequestsConfig {
    /// Checks the trusted proxies parse and the headers to strip are header names.
    pub(super) fn validate(&self) -> Result<(), RequestsConfigError> {
        TrustedProxies::parse(&self.trusted_proxies)?;
        if let Some(h) = self.strip_headers.iter().find(|h| http::HeaderName::try_from(h.as_str()).is_err()) {
            return Err(RequestsConfigError::StripHeader(h.clone()));
        }
        Ok(())
    }
}

/// Per-route overrides of `requests.paths`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutePathOptions {
    /// Overrides `requests.paths.escaped_slashes`.
    #[serde(default)]
    pub escaped_slashes: Option<EscapedSlashes>,
    /// Overrides `requests.paths.merge_slashes`.
    #[serde(default)]
    pub merge_slashes: Option<bool>,
}

impl RoutePathOptions {
    /// The options in force on a route.
    pub fn over(&self, global: &PathOptions) -> PathOptions {
        PathOptions {
            escaped_slashes: self.escaped_slashes.unwrap_or(global.escaped_slashes),
            merge_slashes: self.merge_slashes.unwrap_or(global.merge_slashes),
        }
    }
}

/// The parsed `trusted_proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) and plain addresses.
    pub fn parse(entries: &[String]) -> Result<Self, RequestsConfigError> {
        entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| RequestsConfigError::TrustedProxy(e.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 peer counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        let t =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into(), "2001:db8::/32".into()]).expect("valid");
        assert!(t.contains("10.1.2.3".parse().expect("ip")));
        assert!(t.contains("192.0.2.7".parse().expect("ip")));
        assert!(!t.contains("192.0.2.8".parse().expect("ip")));
        assert!(t.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(t.contains("2001:db8::1".parse().expect("ip")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        let err = TrustedProxies::parse(&[" proxy ".into()]).expect_err("a name");
        assert_eq!(err.to_string(), r#"requests.trusted_proxies: "proxy" is not a CIDR or an IP address"#);
        assert!(TrustedProxies::parse(&["proxy.internal".into()]).is_err());
    }

    #[test]
    fn headers_to_strip_must_be_header_names() {
        let mut cfg = RequestsConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        cfg.strip_headers.push("not a header".into());
        assert_eq!(cfg.validate(), Err(RequestsConfigError::StripHeader("not a header".into())));
    }

    #[test]
    fn route_overrides_apply_over_the_global_options() {
        let global = PathOptions::default();
        let o = RoutePathOptions { escaped_slashes: Some(EscapedSlashes::Keep), merge_slashes: None };
        assert_eq!(o.over(&global), PathOptions { escaped_slashes: EscapedSlashes::Keep, merge_slashes: true });
        assert_eq!(RoutePathOptions::default().over(&global), global);
    }
}
