//! Finding the credentials a request presents, before its class is known.
//!
//! Lengths are checked before any parsing so that a 1 MB header costs one
//! comparison; every scan is linear.

use std::fmt;

use http::header::{AUTHORIZATION, COOKIE, HeaderName};
use http::{HeaderMap, Uri};

use crate::config::SecretValue;
use crate::identity::{BearerToken, TokenSource};

/// Where credentials are looked for.
#[derive(Debug, Clone)]
pub(crate) struct ExtractConfig {
    pub sandbox_header: HeaderName,
    pub cookie: Option<String>,
    pub query_parameter: Option<String>,
    pub max_token_bytes: usize,
}

/// The credentials a request presents. `Debug` never shows them.
#[derive(Default, Clone)]
pub struct Presented {
    pub(crate) bearer: Option<(BearerToken, TokenSource)>,
    pub(crate) sandbox_secret: Option<SecretValue>,
    /// A bearer token was found in more than one place, or an
    /// `Authorization` header (or cookie, or query parameter) was repeated.
    pub(crate) bearer_conflict: bool,
    /// The `Authorization` header is a malformed Bearer credential.
    pub(crate) bearer_malformed: bool,
    /// A bearer credential is longer than `max_token_bytes`.
    pub(crate) bearer_oversized: bool,
    /// The sandbox-secret header was repeated.
    pub(crate) sandbox_conflict: bool,
    /// The sandbox secret is longer than `max_token_bytes`.
    pub(crate) sandbox_oversized: bool,
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("bearer", &self.bearer)
            .field("sandbox_secret", &self.sandbox_secret)
            .field("bearer_conflict", &self.bearer_conflict)
            .field("bearer_malformed", &self.bearer_malformed)
            .field("bearer_oversized", &self.bearer_oversized)
            .field("sandbox_conflict", &self.sandbox_conflict)
            .field("sandbox_oversized", &self.sandbox_oversized)
            .finish()
    }
}

impl Presented {
    /// The bearer token and where it was found, if exactly one was presented.
    pub fn bearer(&self) -> Option<(&BearerToken, TokenSource)> {
        self.bearer.as_ref().map(|(t, s)| (t, *s))
    }

    /// True when the sandbox-secret header was present (even if empty or repeated).
    pub fn has_sandbox_secret(&self) -> bool {
        self.sandbox_secret.is_some() || self.sandbox_conflict || self.sandbox_oversized
    }

    /// True when the request presents some bearer credential (valid or not).
    pub fn has_bearer(&self) -> bool {
        self.bearer.is_some() || self.bearer_conflict || self.bearer_malformed || self.bearer_oversized
    }

    /// Records one bearer candidate from `source`.
    fn add_bearer(&mut self, token: &str, source: TokenSource, max: usize) {
        if self.has_bearer() {
            self.bearer_conflict = true;
            return;
        }
        if token.len() > max {
            self.bearer_oversized = true;
        } else if !is_b64token(token) {
            self.bearer_malformed = true;
        } else {
            self.bearer = Some((BearerToken::new(token), source));
        }
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Splits `Bearer <token>`; `None` for other schemes.
enum AuthHeader<'a> {
    Bearer(&'a str),
    OtherScheme,
    Malformed,
}

fn parse_authorization(value: &[u8]) -> AuthHeader<'_> {
    let Ok(s) = std::str::from_utf8(value) else {
        return AuthHeader::Malformed;
    };
    let Some((scheme, rest)) = s.split_once(' ') else {
        return if s.eq_ignore_ascii_case("bearer") { AuthHeader::Malformed } else { AuthHeader::OtherScheme };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return AuthHeader::OtherScheme;
    }
    // Exactly one space, then one token with no further whitespace.
    if rest.is_empty() || rest.bytes().any(|b| b == b' ' || b == b'\t') {
        return AuthHeader::Malformed;
    }
    AuthHeader::Bearer(rest)
}

pub(crate) fn extract(cfg: &ExtractConfig, headers: &HeaderMap, uri: &Uri, allow_query: bool) -> Presented {
    let max = cfg.max_token_bytes;
    let mut p = Presented::default();

    // Authorization (more than one header is always a conflict).
    let mut auth = headers.get_all(AUTHORIZATION).iter();
    if let Some(first) = auth.next() {
        if auth.next().is_some() {
            p.bearer_conflict = true;
        } else if first.len() > max.saturating_add(16) {
            p.bearer_oversized = true;
        } else {
            match parse_authorization(first.as_bytes()) {
                AuthHeader::Bearer(t) => p.add_bearer(t, TokenSource::AuthorizationHeader, max),
                AuthHeader::OtherScheme => {}
                AuthHeader::Malformed => p.bearer_malformed = true,
            }
        }
    }

    // The configured cookie, across every Cookie header.
    if let Some(name) = &cfg.cookie {
        for value in headers.get_all(COOKIE) {
            let Ok(s) = value.to_str() else { continue };
            for pair in s.split(';') {
                let Some((n, v)) = pair.trim_start().split_once('=') else {
                    continue;
                };
                if n.trim_end() != name {
                    continue;
                }
                let v = v.trim_end();
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
                p.add_bearer(v, TokenSource::Cookie, max);
            }
        }
    }

    // The configured query parameter, only where the route allows it.
    if allow_query
        && let Some(name) = &cfg.query_parameter
        && let Some(query) = uri.query()
    {
        for pair in query.split('&') {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded_name = percent_encoding::percent_decode_str(n).decode_utf8();
            if !matches!(decoded_name, Ok(ref d) if d == name) {
                continue;
            }
            if v.len() > max.saturating_mul(3) {
                p.add_bearer(v, TokenSource::QueryParameter, max);
                continue;
            }
            match percent_encoding::percent_decode_str(v).decode_utf8() {
                Ok(d) => p.add_bearer(&d, TokenSource::QueryParameter, max),
                Err(_) => {
                    if p.has_bearer() {
                        p.bearer_conflict = true;
                    } else {
                        p.bearer_malformed = true;
                    }
                }
            }
        }
    }

    // The sandbox secret.
    let mut sandbox = headers.get_all(&cfg.sandbox_header).iter();
    if let Some(first) = sandbox.next() {
        if sandbox.next().is_some() {
            p.sandbox_conflict = true;
        } else if first.len() > max {
            p.sandbox_oversized = true;
        } else {
            p.sandbox_secret = Some(SecretValue::new(first.as_bytes()));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cfg() -> ExtractConfig {
        ExtractConfig {
            sandbox_header: HeaderName::from_static("x-sandbox-secret"),
            cookie: Some("session".into()),
            query_parameter: Some("access_token".into()),
            max_token_bytes: 64,
        }
    }

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_str(v).expect("header value"));
        }
        m
    }

    fn root() -> Uri {
        Uri::from_static("/")
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer a.b.c", "bearer a.b.c", "BEARER a.b.c"] {
            let p = extract(&cfg(), &h(&[("authorization", v)]), &root(), false);
            let (t, s) = p.bearer().expect("bearer");
            assert_eq!(t.expose(), "a.b.c");
            assert_eq!(s, TokenSource::AuthorizationHeader);
        }
    }

    #[test]
    fn malformed_bearer_headers_are_flagged() {
        for v in ["Bearer", "Bearer ", "Bearer  a.b.c", "Bearer a.b.c d", "Bearer a,b", "Bearer a=b"] {
            let p = extract(&cfg(), &h(&[("authorization", v)]), &root(), false);
            assert!(p.bearer().is_none() && p.bearer_malformed, "{v:?}");
        }
        // Other schemes are simply not bearer credentials.
        let p = extract(&cfg(), &h(&[("authorization", "Basic dXNlcjpwYXNz")]), &root(), false);
        assert!(!p.has_bearer());
    }

    #[test]
    fn two_authorization_headers_or_two_places_conflict() {
        let p = extract(
            &cfg(),
            &h(&[("authorization", "Bearer a.b.c"), ("authorization", "Bearer a.b.c")]),
            &root(),
            false,
        );
        assert!(p.bearer_conflict && p.bearer().is_none());
        let p =
            extract(&cfg(), &h(&[("authorization", "Bearer a.b.c"), ("cookie", "x=1; session=a.b.c")]), &root(), false);
        assert!(p.bearer_conflict);
        let uri = Uri::from_static("/x?access_token=a.b.c");
        let p = extract(&cfg(), &h(&[("authorization", "Bearer a.b.c")]), &uri, true);
        assert!(p.bearer_conflict);
        let uri = Uri::from_static("/x?access_token=a.b.c&access_token=a.b.c");
        let p = extract(&cfg(), &HeaderMap::new(), &uri, true);
        assert!(p.bearer_conflict);
    }

    #[test]
    fn query_token_only_when_allowed() {
        let uri = Uri::from_static("/x?a=1&access_token=a.b.c");
        assert!(!extract(&cfg(), &HeaderMap::new(), &uri, false).has_bearer());
        let p = extract(&cfg(), &HeaderMap::new(), &uri, true);
        assert_eq!(p.bearer().map(|(t, s)| (t.expose(), s)), Some(("a.b.c", TokenSource::QueryParameter)));
    }

    #[test]
    fn cookie_token_found() {
        let p = extract(&cfg(), &h(&[("cookie", "a=b; session=\"x.y.z\"")]), &root(), false);
        assert_eq!(p.bearer().map(|(t, s)| (t.expose(), s)), Some(("x.y.z", TokenSource::Cookie)));
    }

    /// Checklist 29: oversized credentials are flagged without being parsed or copied.
    #[test]
    fn checklist_29_oversized_credentials_flagged() {
        let big = format!("Bearer {}", "A".repeat(1 << 20));
        let p = extract(&cfg(), &h(&[("authorization", &big)]), &root(), false);
        assert!(p.bearer_oversized && p.bearer().is_none());
        let dots = format!("Bearer {}", ".".repeat(100_000));
        let p = extract(&cfg(), &h(&[("authorization", &dots)]), &root(), false);
        assert!(p.bearer_oversized);
        let p = extract(&cfg(), &h(&[("x-sandbox-secret", &"s".repeat(65))]), &root(), false);
        assert!(p.sandbox_oversized && p.sandbox_secret.is_none());
    }

    #[test]
    fn debug_redacts() {
        let p = extract(
            &cfg(),
            &h(&[("authorization", "Bearer topsecret.b.c"), ("x-sandbox-secret", "hunter2")]),
            &root(),
            false,
        );
        let d = format!("{p:?}");
        assert!(!d.contains("topsecret") && !d.contains("hunter2"), "{d}");
    }
}
