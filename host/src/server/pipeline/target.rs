//! The request target: one authority, the canonical target, upgrades.

use http::request::Parts;

/// The one authority of a request: the target's (absolute-form, or h2
/// `:authority`) or the `Host` header's, which must agree. Two `Host`
/// headers, a malformed one, or none on an HTTP/1.1 request are refused.
pub(super) fn request_authority(parts: &Parts) -> Result<String, &'static str> {
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("two Host headers");
    }
    let host = host.map(|h| h.to_str().map_err(|_| "Host is not visible ASCII")).transpose()?;
    let valid = |a: &str| -> Result<String, &'static str> {
        match http::uri::Authority::try_from(a) {
            Ok(parsed) if !a.contains('@') && !parsed.host().is_empty() => Ok(a.to_owned()),
            _ => Err("malformed authority"),
        }
    };
    match (parts.uri.authority().map(http::uri::Authority::as_str), host) {
        (Some(target), Some(h)) if !target.eq_ignore_ascii_case(h) => Err("Host differs from the target's authority"),
        (Some(a), _) | (None, Some(a)) => valid(a),
        (None, None) if parts.version == http::Version::HTTP_11 => Err("HTTP/1.1 request without Host"),
        (None, None) => Ok(String::new()),
    }
}

/// The protocol a request asks to switch to, if any: HTTP/1.1 `Upgrade`
/// (an `h2c` upgrade is ignored, as servers may, and answered in HTTP/1.1)
/// or a `CONNECT`. The gateway negotiates none of them.
pub(super) fn upgrade_requested(parts: &Parts) -> Option<String> {
    if parts.method == http::Method::CONNECT {
        return Some("CONNECT".to_owned());
    }
    let wanted: Vec<&str> = parts
        .headers
        .get_all(http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    (!wanted.is_empty()).then(|| wanted.join(", "))
}

/// Rewrites the request target to origin-form with the canonical path and
/// the query exactly as received.
pub(super) fn set_target(parts: &mut Parts, path: &str) -> Result<(), http::uri::InvalidUri> {
    let pq = match parts.uri.query() {
        None => http::uri::PathAndQuery::try_from(path)?,
        Some(q) => http::uri::PathAndQuery::try_from(format!("{path}?{q}"))?,
    };
    parts.uri = http::Uri::from(pq);
    Ok(())
}
