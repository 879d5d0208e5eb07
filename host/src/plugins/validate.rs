//! Checks on what components return. The host never trusts a result: these
//! limits keep a faulty or hostile component from smuggling header
//! injection, oversized values or forbidden headers past the gateway.

use crate::identity::{Classification, CredentialInfo, CredentialUse, Principal};

const MAX_LIST: usize = 256;
const MAX_ITEM: usize = 256;
const MAX_SUBJECT: usize = 1024;
const MAX_SCOPES_REQUIRED: usize = 64;
const MAX_CREDENTIAL_USES: usize = 16;
const MAX_HEADER_NAME: usize = 64;
const MAX_PREFIX: usize = 64;
const MAX_REASON: usize = 512;

/// Headers a credential may never be injected as.
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
];

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

/// A credential policy's answer.
pub(super) fn credential_uses(uses: &[CredentialUse], catalogue: &[CredentialInfo]) -> Result<(), String> {
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
        if FORBIDDEN_HEADERS.contains(&h) || h.starts_with("x-wasmgate-") || h.starts_with("x-wasmgate_") {
            return Err(format!("header {h:?} may not carry a credential"));
        }
        if !headers.insert(h) {
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
        assert!(credential_uses(std::slice::from_ref(&ok), &cat).is_ok());
        for bad_header in ["Authorization", "host", "x-wasmgate-subject", "transfer-encoding", "a:b", "", "x y"] {
            let u = CredentialUse { header: bad_header.into(), ..ok.clone() };
            assert!(credential_uses(&[u], &cat).is_err(), "{bad_header}");
        }
        let unknown = CredentialUse { credential: "nope".into(), ..ok.clone() };
        assert!(credential_uses(&[unknown], &cat).is_err());
        let bad_prefix = CredentialUse { prefix: "Bearer\n".into(), ..ok.clone() };
        assert!(credential_uses(&[bad_prefix], &cat).is_err());
        assert!(credential_uses(&[ok.clone(), ok], &cat).is_err(), "duplicate header");
    }

    #[test]
    fn reasons_are_cleaned() {
        assert_eq!(reason("no\nway".into()), "noway");
        assert_eq!(reason("é".repeat(400)).len(), 512);
    }
}
