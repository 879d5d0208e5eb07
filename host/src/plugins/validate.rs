//! Checks on what components return. The host never trusts a result: these
//! limits keep a faulty or hostile component from smuggling header
//! injection, oversized values or forbidden headers past the gateway, or a
//! principal of a tenant its identity provider may not assert.

use crate::config::{AuthConfig, Config, IdentityHeadersConfig, RequestsConfig};
use crate::identity::{Classification, CredentialInfo, CredentialUse, Principal};

const MAX_LIST: usize = 256;
const MAX_ITEM: usize = 256;
const MAX_SUBJECT: usize = 1024;
const MAX_SCOPES_REQUIRED: usize = 64;
const MAX_CREDENTIAL_USES: usize = 16;
const MAX_HEADER_NAME: usize = 64;
const MAX_PREFIX: usize = 64;
const MAX_REASON: usize = 512;

/// Headers a credential may never be injected as, whatever the
/// configuration (compared after [`fold`]).
const FORBIDDEN_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "grpc-timeout",
    "grpc-encoding",
    "grpc-accept-encoding",
    "cookie",
    "set-cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    // Method and URL overrides: upstream frameworks honour them to rewrite
    // the call after policy has run.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Lowercase, with `_` read as `-`: the form two header names that an
/// upstream might treat alike share. The identity-header stripper and the
/// credential-header checks compare names in this form.
pub(crate) fn fold(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}

/// The header names of one configuration that a credential may not be
/// injected as, beyond [`FORBIDDEN_HEADERS`]: every name under the identity
/// prefix (the gateway's own identity headers live there), every name in
/// `identity_headers.also_strip` and `requests.strip_headers`, the
/// sandbox-secret header and a header named like the token cookie.
/// `authorization` stays allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReservedHeaders {
    /// Folded.
    prefix: String,
    /// Folded.
    exact: Vec<String>,
}

impl Default for ReservedHeaders {
    /// The defaults' names: `x-wasmgate-`, the default `also_strip` and
    /// `strip_headers`, `x-sandbox-secret`.
    fn default() -> Self {
        Self::new(&IdentityHeadersConfig::default(), &AuthConfig::default(), &RequestsConfig::default())
    }
}

impl ReservedHeaders {
    /// The names `cfg` reserves.
    pub(crate) fn from_config(cfg: &Config) -> Self {
        Self::new(&cfg.identity_headers, &cfg.auth, &cfg.requests)
    }

    fn new(identity: &IdentityHeadersConfig, auth: &AuthConfig, requests: &RequestsConfig) -> Self {
        let mut exact: Vec<String> =
            identity.also_strip.iter().chain(&requests.strip_headers).map(|s| fold(s)).collect();
        exact.push(fold(&auth.sandbox_secret_header));
        exact.extend(auth.cookie.as_deref().map(fold));
        Self { prefix: fold(&identity.prefix), exact }
    }

    /// Whether `header` (a lowercase name) may not carry a credential.
    fn refuses(&self, header: &str) -> bool {
        let folded = fold(header);
        FORBIDDEN_HEADERS.contains(&folded.as_str()) || folded.starts_with(&self.prefix) || self.exact.contains(&folded)
    }
}

/// A visible-ASCII token usable in a header value list: no spaces, commas,
/// controls or non-ASCII.
fn is_token_item(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ITEM && s.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

fn list(name: &str, items: &[String]) -> Result<(), String> {
    if items.len() > MAX_LIST {
        return Err(format!("{name}: {} entries (max {MAX_LIST})", items.len()));
    }
    if let Some(bad) = items.iter().position(|s| !is_token_item(s)) {
        return Err(format!("{name}[{bad}] is empty, too long, or has spaces, commas or control characters"));
    }
    Ok(())
}

/// A classifier's answer.
pub(super) fn classification(c: &Classification) -> Result<(), String> {
    if c.required_scopes.len() > MAX_SCOPES_REQUIRED {
        return Err(format!("{} required scopes (max {MAX_SCOPES_REQUIRED})", c.required_scopes.len()));
    }
    list("required-scopes", &c.required_scopes)
}

/// A claims-mapper's answer; every value may end up in an upstream header.
pub(super) fn principal(p: &Principal) -> Result<(), String> {
    if p.subject.is_empty()
        || p.subject.len() > MAX_SUBJECT
        || !p.subject.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err("subject is empty, too long, or not printable ASCII".to_owned());
    }
    if let Some(t) = &p.tenant
        && !is_token_item(t)
    {
        return Err("tenant is empty, too long, or not a token".to_owned());
    }
    list("roles", &p.roles)?;
    list("scopes", &p.scopes)?;
    list("groups", &p.groups)
}

/// A principal mapped from the claims of `provider`, which may assert only
/// `tenants` (its `tenants` setting): the tenant must be one of them. A
/// principal without a tenant is refused too, so a provider confined to
/// tenants never yields a principal that the global (tenant-less) bindings
/// would serve.
pub(super) fn provider_tenant(provider: &str, tenants: &[String], p: &Principal) -> Result<(), String> {
    match &p.tenant {
        Some(t) if tenants.iter().any(|allowed| allowed == t) => Ok(()),
        Some(t) => Err(format!("tenant {t:?} is not allowed for provider {provider:?}")),
        None => Err(format!("no tenant, and provider {provider:?} may assert only the tenants {tenants:?}")),
    }
}

/// A deny reason, kept for the log only: truncated and stripped of controls.
pub(super) fn reason(r: String) -> String {
    let mut out: String = r.chars().filter(|c| !c.is_control()).collect();
    if out.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// A credential policy's answer; `reserved` are the configuration's
/// headers a credential may not be injected as.
pub(super) fn credential_uses(
    uses: &[CredentialUse],
    catalogue: &[CredentialInfo],
    reserved: &ReservedHeaders,
) -> Result<(), String> {
    if uses.len() > MAX_CREDENTIAL_USES {
        return Err(format!("{} credentials (max {MAX_CREDENTIAL_USES})", uses.len()));
    }
    let mut headers = std::collections::HashSet::new();
    for u in uses {
        if !catalogue.iter().any(|c| c.name == u.credential) {
            return Err(format!("credential {:?} is not in the catalogue", u.credential));
        }
        let h = u.header.as_str();
        let valid_name = !h.is_empty()
            && h.len() <= MAX_HEADER_NAME
            && h.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(format!("header {h:?} is not a lowercase header name"));
        }
        if reserved.refuses(h) {
            return Err(format!("header {h:?} may not carry a credential"));
        }
        if !headers.insert(fold(h)) {
            return Err(format!("header {h:?} is set twice"));
        }
        if u.prefix.len() > MAX_PREFIX || !u.prefix.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err("prefix is too long or not printable ASCII".to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_fold_to_lowercase_with_dashes() {
        assert_eq!(fold("X-Wasmgate_Subject"), "x-wasmgate-subject");
        assert_eq!(fold("content_LENGTH"), "content-length");
        assert_eq!(fold(""), "");
    }

    fn principal_with(subject: &str, roles: &[&str]) -> Principal {
        Principal {
            subject: subject.to_owned(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            ..Principal::default()
        }
    }

    #[test]
    fn principal_values_cannot_inject_headers() {
        assert!(principal(&principal_with("alice", &["admin"])).is_ok());
        assert!(principal(&principal_with("alice\r\nx-evil: 1", &[])).is_err());
        assert!(principal(&principal_with("", &[])).is_err());
        assert!(principal(&principal_with("alice", &["a,b"])).is_err());
        assert!(principal(&principal_with("alice", &["a b"])).is_err());
        assert!(principal(&principal_with("alice", &[&"x".repeat(300)])).is_err());
        let many: Vec<String> = (0..300).map(|i| format!("r{i}")).collect();
        let mut p = principal_with("alice", &[]);
        p.roles = many;
        assert!(principal(&p).is_err());
    }

    #[test]
    fn credential_headers_are_checked() {
        let cat = vec![CredentialInfo { name: "github".into(), scopes: vec![] }];
        let ok =
            CredentialUse { credential: "github".into(), header: "authorization".into(), prefix: "Bearer ".into() };
        let defaults = ReservedHeaders::default();
        assert!(credential_uses(std::slice::from_ref(&ok), &cat, &defaults).is_ok());
        for bad_header in [
            "Authorization",
            "host",
            "x-wasmgate-subject",
            "x_wasmgate_tenant",
            "transfer-encoding",
            "content_length",
            "x-forwarded-for",
            "x_forwarded_host",
            "forwarded",
            "x-http-method-override",
            "x-original-url",
            "x-remote-user",
            "x-sandbox-secret",
            "a:b",
            "",
            "x y",
        ] {
            let u = CredentialUse { header: bad_header.into(), ..ok.clone() };
            assert!(credential_uses(&[u], &cat, &defaults).is_err(), "{bad_header}");
        }
        let unknown = CredentialUse { credential: "nope".into(), ..ok.clone() };
        assert!(credential_uses(&[unknown], &cat, &defaults).is_err());
        let bad_prefix = CredentialUse { prefix: "Bearer\n".into(), ..ok.clone() };
        assert!(credential_uses(&[bad_prefix], &cat, &defaults).is_err());
        assert!(credential_uses(&[ok.clone(), ok.clone()], &cat, &defaults).is_err(), "duplicate header");
        let (dash, underscore) = (
            CredentialUse { header: "x-upstream-key".into(), ..ok.clone() },
            CredentialUse { header: "x_upstream_key".into(), ..ok },
        );
        assert!(credential_uses(&[dash, underscore], &cat, &defaults).is_err(), "the same header twice, folded");
    }

    #[test]
    fn credential_headers_reserved_by_a_non_default_configuration_are_refused() {
        let cfg = Config::from_yaml(
            "identity_headers:\n  prefix: X-Corp_\n  also_strip: [X-Employee_Id]\nrequests:\n  strip_headers: [X-Legacy-Route]\nauth:\n  sandbox_secret_header: X-Box-Key\n  cookie: corp_session\n",
        )
        .expect("config");
        let reserved = ReservedHeaders::from_config(&cfg);
        let cat = vec![CredentialInfo { name: "github".into(), scopes: vec![] }];
        let header = |h: &str| {
            let u = CredentialUse { credential: "github".into(), header: h.into(), prefix: String::new() };
            credential_uses(&[u], &cat, &reserved)
        };
        for refused in [
            "x-corp-subject",
            "x_corp_tenant",
            "x-corp-",
            "x-employee-id",
            "x_employee_id",
            "x-legacy-route",
            "x-box-key",
            "corp-session",
            "corp_session",
            "x-forwarded-proto",
            "x-original-url",
            "host",
        ] {
            let err = header(refused).expect_err(refused);
            assert!(err.contains("may not carry a credential"), "{refused}: {err}");
        }
        // The configured prefix replaces the default one; the default
        // also_strip names are no longer stripped, so no longer reserved.
        for allowed in
            ["authorization", "x-wasmgate-subject", "x-remote-user", "x-sandbox-secret", "x-corp", "x-corpus"]
        {
            assert!(header(allowed).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn a_provider_with_tenants_yields_only_principals_of_those_tenants() {
        let tenants = vec!["globex".to_owned(), "globex-eu".to_owned()];
        let of = |tenant: Option<&str>| Principal { tenant: tenant.map(str::to_owned), ..principal_with("gina", &[]) };
        assert!(provider_tenant("globex", &tenants, &of(Some("globex"))).is_ok());
        assert!(provider_tenant("globex", &tenants, &of(Some("globex-eu"))).is_ok());
        let err = provider_tenant("globex", &tenants, &of(Some("acme"))).expect_err("another tenant");
        assert_eq!(err, r#"tenant "acme" is not allowed for provider "globex""#);
        assert!(provider_tenant("globex", &tenants, &of(Some("Globex"))).is_err(), "compared exactly");
        let err = provider_tenant("globex", &tenants, &of(None)).expect_err("no tenant");
        assert!(err.contains("no tenant") && err.contains(r#"provider "globex""#), "{err}");
    }

    #[test]
    fn reasons_are_cleaned() {
        assert_eq!(reason("no\nway".into()), "noway");
        assert_eq!(reason("é".repeat(400)).len(), 512);
    }
}
