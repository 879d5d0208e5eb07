//! Header hygiene: client-sent identity headers out, gateway identity
//! headers in, credentials and hop-by-hop headers never forwarded.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{IdentityHeadersConfig, TrustedProxies};
use crate::identity::Authentication;

/// Header names are compared folded (lowercase, `_` as `-`), the same way
/// the credential-header checks compare them.
use crate::plugins::validate::fold;

/// Whether `name` (a header name: lowercase already) folds to `folded`,
/// without building the folded string.
fn folds_to(name: &str, folded: &str) -> bool {
    name.len() == folded.len() && folds_with_prefix(name, folded)
}

/// Whether `name` (a header name: lowercase already) folded starts with
/// `folded`.
fn folds_with_prefix(name: &str, folded: &str) -> bool {
    let name = name.as_bytes();
    name.len() >= folded.len()
        && name
            .iter()
            .zip(folded.as_bytes())
            .all(|(&n, &f)| (if n == b'_' { b'-' } else { n.to_ascii_lowercase() }) == f)
}

/// The suffixes of the gateway's identity headers, in [`IdentityHeaders`]'s
/// `names` order.
const SUFFIXES: [&str; 7] = ["auth-kind", "provider", "subject", "tenant", "roles", "scopes", "groups"];

/// The gateway's identity headers (`<prefix>subject`, ...): every
/// client-sent one is stripped, and the gateway sets its own for the
/// upstream once the call is authorized.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    prefix: String,
    exact: Vec<String>,
    /// `<prefix><suffix>` for each of [`SUFFIXES`], parsed once.
    names: Vec<HeaderName>,
}

impl IdentityHeaders {
    /// From the config.
    pub fn new(cfg: &IdentityHeadersConfig) -> Self {
        let prefix = fold(&cfg.prefix);
        let names = SUFFIXES
            .iter()
            .map(|suffix| {
                HeaderName::try_from(format!("{prefix}{suffix}"))
                    .unwrap_or_else(|_| HeaderName::from_static("x-wasmgate-invalid"))
            })
            .collect();
        Self { prefix, exact: cfg.also_strip.iter().map(|s| fold(s)).collect(), names }
    }

    /// The gateway's own header names (`<prefix>subject`, ...).
    pub fn gateway_header(&self, suffix: &str) -> HeaderName {
        match SUFFIXES.iter().position(|s| *s == suffix) {
            Some(i) => self.names[i].clone(),
            None => HeaderName::try_from(format!("{}{suffix}", self.prefix))
                .unwrap_or_else(|_| HeaderName::from_static("x-wasmgate-invalid")),
        }
    }

    fn matches(&self, name: &str) -> bool {
        folds_with_prefix(name, &self.prefix) || self.exact.iter().any(|e| folds_to(name, e))
    }

    /// Removes every header whose name matches, in any case and with `_`
    /// for `-`, every occurrence.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if !headers.keys().any(|n| self.matches(n.as_str())) {
            return;
        }
        let doomed: Vec<HeaderName> = headers.keys().filter(|n| self.matches(n.as_str())).cloned().collect();
        for name in doomed {
            headers.remove(&name);
        }
    }

    /// Sets the gateway's identity headers for an authenticated call.
    pub fn set_identity(&self, headers: &mut HeaderMap, auth: &Authentication) {
        headers.insert(self.gateway_header("auth-kind"), HeaderValue::from_static(auth.kind.as_str()));
        if let Some(provider) = &auth.provider
            && let Ok(v) = HeaderValue::from_str(provider)
        {
            headers.insert(self.gateway_header("provider"), v);
        }
        let Some(p) = &auth.principal else { return };
        // Principal values were validated (printable ASCII, no commas in
        // lists) when the component returned them; a value that still does
        // not fit a header is left out rather than forwarded mangled.
        let mut set = |suffix: &str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(self.gateway_header(suffix), v);
            }
        };
        set("subject", &p.subject);
        if let Some(t) = &p.tenant {
            set("tenant", t);
        }
        set("roles", &p.roles.join(","));
        set("scopes", &p.scopes.join(" "));
        if !p.groups.is_empty() {
            set("groups", &p.groups.join(","));
        }
    }
}

/// Header names removed in every spelling a server might treat alike
/// (any case, `_` for `-`).
#[derive(Debug, Clone, Default)]
pub struct HeaderNames(Vec<String>);

impl HeaderNames {
    /// The names, as configured.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        Self(names.iter().map(|n| fold(n.as_ref())).collect())
    }

    fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|e| folds_to(name, e))
    }

    /// Removes every header whose name is in the set, every occurrence.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if self.0.is_empty() || !headers.keys().any(|n| self.matches(n.as_str())) {
            return;
        }
        let doomed: Vec<HeaderName> = headers.keys().filter(|n| self.matches(n.as_str())).cloned().collect();
        for name in doomed {
            headers.remove(&name);
        }
    }
}

/// Headers through which a proxy tells the upstream who the client is and
/// how it connected. Only a trusted proxy may send them.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
];

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` from the connection; what a
/// client sent is dropped unless its peer address is a trusted proxy, whose
/// `X-Forwarded-For` is then appended to.
#[derive(Debug, Clone)]
pub struct Forwarding {
    trusted: TrustedProxies,
    names: HeaderNames,
    proto: &'static str,
}

impl Forwarding {
    /// With the trusted proxies, and whether the listener is TLS.
    pub fn new(trusted: TrustedProxies, tls: bool) -> Self {
        Self { trusted, names: HeaderNames::new(FORWARDING), proto: if tls { "https" } else { "http" } }
    }

    /// Applies to a request from `peer` for `authority` (empty when the
    /// request named none).
    pub fn apply(&self, headers: &mut HeaderMap, peer: Option<IpAddr>, authority: &str) {
        let trusted = peer.is_some_and(|ip| self.trusted.contains(ip));
        let mut chain = String::new();
        if trusted {
            for v in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
                if !chain.is_empty() {
                    chain.push_str(", ");
                }
                chain.push_str(v.trim());
            }
        } else {
            self.names.strip(headers);
        }
        if let Some(ip) = peer {
            if !chain.is_empty() {
                chain.push_str(", ");
            }
            use std::fmt::Write as _;
            let _ = write!(chain, "{ip}");
        }
        if let Ok(v) = HeaderValue::from_str(&chain)
            && !chain.is_empty()
        {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(self.proto));
        }
        if !(trusted && headers.contains_key(&X_FORWARDED_HOST))
            && let Ok(v) = HeaderValue::from_str(authority)
            && !authority.is_empty()
        {
            headers.insert(X_FORWARDED_HOST.clone(), v);
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and proxy leftovers that are never
/// forwarded. `te: trailers` is kept separately for gRPC.
static HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let keep_te_trailers = headers
        .get_all(http::header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    if headers.contains_key(http::header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::try_from(t.trim()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    if keep_te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_without_allocating_agrees_with_fold() {
        let names = [
            "x-wasmgate-subject",
            "x_wasmgate_subject",
            "X-Wasmgate-Roles",
            "x-wasmgate",
            "x-wasm",
            "",
            "forwarded",
            "x_forwarded-for",
        ];
        for name in names {
            for other in names {
                let (f, o) = (fold(name), fold(other));
                assert_eq!(folds_to(name, &o), f == o, "{name} {other}");
                assert_eq!(folds_with_prefix(name, &o), f.starts_with(&o), "{name} {other}");
            }
        }
    }

    fn stripper() -> IdentityHeaders {
        IdentityHeaders::new(&IdentityHeadersConfig::default())
    }

    #[test]
    fn strips_every_case_and_underscore_variant() {
        let mut h = HeaderMap::new();
        for name in [
            "x-wasmgate-subject",
            "X-WASMGATE-TENANT",
            "x_wasmgate_roles",
            "X_Wasmgate-Scopes",
            "x-remote-user",
            "X_Forwarded_User",
        ] {
            h.append(HeaderName::try_from(name).expect("valid name"), HeaderValue::from_static("evil"));
        }
        h.append("x-wasmgate-subject", HeaderValue::from_static("evil2"));
        h.insert("x-request-id", HeaderValue::from_static("keep"));
        stripper().strip(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-request-id"));
    }

    #[test]
    fn sets_identity_headers() {
        let mut h = HeaderMap::new();
        let auth = Authentication {
            kind: crate::identity::AuthKind::OidcToken,
            source: crate::identity::TokenSource::AuthorizationHeader,
            provider: Some("kc".into()),
            principal: Some(crate::identity::Principal {
                subject: "alice".into(),
                tenant: Some("acme".into()),
                roles: vec!["admin".into(), "user".into()],
                scopes: vec!["a".into(), "b:/x".into()],
                groups: vec![],
            }),
        };
        stripper().set_identity(&mut h, &auth);
        assert_eq!(h["x-wasmgate-subject"], "alice");
        assert_eq!(h["x-wasmgate-tenant"], "acme");
        assert_eq!(h["x-wasmgate-roles"], "admin,user");
        assert_eq!(h["x-wasmgate-scopes"], "a b:/x");
        assert_eq!(h["x-wasmgate-auth-kind"], "oidc-token");
        assert_eq!(h["x-wasmgate-provider"], "kc");
    }

    #[test]
    fn override_headers_are_removed_in_every_spelling() {
        let mut h = HeaderMap::new();
        for name in ["X-HTTP-Method-Override", "x_http_method", "X-Original-URL", "x_rewrite_url", "x-method-override"]
        {
            h.append(HeaderName::try_from(name).expect("valid name"), HeaderValue::from_static("DELETE"));
        }
        h.insert("x-request-id", HeaderValue::from_static("keep"));
        let defaults = crate::config::RequestsConfig::default();
        HeaderNames::new(&defaults.strip_headers).strip(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn forwarded_headers_come_from_the_connection_unless_the_peer_is_trusted() {
        let spoofed = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
            h.insert("x_forwarded_for", HeaderValue::from_static("10.0.0.2"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
            h.insert("x-forwarded-host", HeaderValue::from_static("admin.internal"));
            h.insert("forwarded", HeaderValue::from_static("for=10.0.0.1"));
            h.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
            h
        };
        let trusted = TrustedProxies::parse(&["192.0.2.0/24".into()]).expect("valid");
        let f = Forwarding::new(trusted, false);

        let mut h = spoofed();
        f.apply(&mut h, Some("203.0.113.9".parse().expect("ip")), "api.example");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        for gone in ["forwarded", "x-real-ip", "x_forwarded_for"] {
            assert!(!h.contains_key(gone), "{gone}: {h:?}");
        }

        let mut h = spoofed();
        f.apply(&mut h, Some("192.0.2.5".parse().expect("ip")), "api.example");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.5");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "admin.internal");
        assert!(h.contains_key("forwarded"));
    }

    #[test]
    fn hop_by_hop_removed_but_te_trailers_kept() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("upgrade"));
        assert_eq!(h["te"], "trailers");
    }
}
