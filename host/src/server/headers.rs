//! Header hygiene: client-sent identity headers out, gateway identity
//! headers in, credentials and hop-by-hop headers never forwarded.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::IdentityHeadersConfig;
use crate::identity::Authentication;

/// Lowercase, with `_` folded to `-`: the form two header names that a
/// server might treat alike share.
fn fold(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}

/// Removes client-sent identity headers.
#[derive(Debug, Clone)]
pub struct IdentityStripper {
    prefix: String,
    exact: Vec<String>,
}

impl IdentityStripper {
    /// From the config.
    pub fn new(cfg: &IdentityHeadersConfig) -> Self {
        Self { prefix: fold(&cfg.prefix), exact: cfg.also_strip.iter().map(|s| fold(s)).collect() }
    }

    /// The gateway's own header names (`<prefix>subject`, ...).
    pub fn gateway_header(&self, suffix: &str) -> HeaderName {
        HeaderName::try_from(format!("{}{suffix}", self.prefix))
            .unwrap_or_else(|_| HeaderName::from_static("x-wasmgate-invalid"))
    }

    fn matches(&self, name: &str) -> bool {
        let folded = fold(name);
        folded.starts_with(&self.prefix) || self.exact.contains(&folded)
    }

    /// Removes every header whose name matches, in any case and with `_`
    /// for `-`, every occurrence.
    pub fn strip(&self, headers: &mut HeaderMap) {
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

/// Hop-by-hop headers (RFC 9110 §7.6.1) and proxy leftovers that are never
/// forwarded. `te: trailers` is kept separately for gRPC.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let keep_te_trailers = headers
        .get_all(http::header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
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
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
    if keep_te_trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes one cookie from every `Cookie` header, keeping the others.
pub fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(http::header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(http::header::COOKIE);
    for v in values {
        let Ok(s) = v.to_str() else { continue };
        let kept: Vec<&str> = s
            .split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.split('=').next().map(str::trim) != Some(name))
            .collect();
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        {
            headers.append(http::header::COOKIE, v);
        }
    }
}

/// Removes one parameter from a query string.
pub fn remove_query_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
            !pair.is_empty() && decoded != name
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripper() -> IdentityStripper {
        IdentityStripper::new(&IdentityHeadersConfig::default())
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
            kind: crate::identity::CredentialKind::OidcToken,
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

    #[test]
    fn cookie_and_query_credentials_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; session=tok; b=2"));
        remove_cookie(&mut h, "session");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(remove_query_param("a=1&access_token=x&b=2", "access_token"), "a=1&b=2");
        assert_eq!(remove_query_param("access%5Ftoken=x", "access_token"), "");
    }
}
