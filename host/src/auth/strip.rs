//! Removing the client's credentials from a request before it is
//! forwarded: they authenticate the caller to the gateway, never to the
//! upstream. The names come from [`ExtractConfig`], the same ones
//! [`super::extract`] reads them from.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};

use super::extract::ExtractConfig;

/// Removes `Authorization` (unless `keep_authorization`), the sandbox-secret
/// header, the token cookie and, when the route accepts query tokens
/// (`allow_query_token`), the token query parameter.
pub(super) fn strip(
    cfg: &ExtractConfig,
    parts: &mut http::request::Parts,
    keep_authorization: bool,
    allow_query_token: bool,
) {
    let headers = &mut parts.headers;
    if !keep_authorization {
        headers.remove(AUTHORIZATION);
    }
    // The sandbox secret and a token cookie never leave the gateway.
    headers.remove(&cfg.sandbox_header);
    if let Some(cookie) = &cfg.cookie {
        remove_cookie(headers, cookie);
    }
    if let (Some(param), Some(query)) = (&cfg.query_parameter, parts.uri.query())
        && allow_query_token
    {
        let kept = remove_query_param(query, param);
        let pq = if kept.is_empty() { parts.uri.path().to_owned() } else { format!("{}?{kept}", parts.uri.path()) };
        if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
            let mut uri = parts.uri.clone().into_parts();
            uri.path_and_query = Some(pq);
            if let Ok(u) = http::Uri::from_parts(uri) {
                parts.uri = u;
            }
        }
    }
}

/// Removes one cookie from every `Cookie` header, keeping the others.
fn remove_cookie(headers: &mut HeaderMap, name: &str) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(COOKIE);
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
            headers.append(COOKIE, v);
        }
    }
}

/// Removes one parameter (matched after percent-decoding its name) from a
/// query string.
fn remove_query_param(query: &str, name: &str) -> String {
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
    use http::HeaderName;

    use super::*;

    #[test]
    fn cookie_and_query_credentials_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; session=tok; b=2"));
        remove_cookie(&mut h, "session");
        assert_eq!(h["cookie"], "a=1; b=2");
        assert_eq!(remove_query_param("a=1&access_token=x&b=2", "access_token"), "a=1&b=2");
        assert_eq!(remove_query_param("access%5Ftoken=x", "access_token"), "");
    }

    fn cfg() -> ExtractConfig {
        ExtractConfig {
            sandbox_header: HeaderName::from_static("x-sandbox-secret"),
            cookie: Some("session".into()),
            query_parameter: Some("access_token".into()),
            max_token_bytes: 8192,
        }
    }

    fn parts(uri: &str) -> http::request::Parts {
        let (mut parts, ()) = http::Request::get(uri).body(()).expect("request").into_parts();
        let h = &mut parts.headers;
        h.insert("authorization", HeaderValue::from_static("Bearer tok"));
        h.insert("x-sandbox-secret", HeaderValue::from_static("s3cret"));
        h.append("cookie", HeaderValue::from_static("session=tok"));
        h.append("cookie", HeaderValue::from_static("a=1; session=tok"));
        h.insert("x-request-id", HeaderValue::from_static("keep"));
        parts
    }

    #[test]
    fn strips_every_credential_the_gateway_reads() {
        let mut p = parts("/v1/x?a=1&access_token=tok");
        strip(&cfg(), &mut p, false, true);
        assert!(!p.headers.contains_key("authorization"));
        assert!(!p.headers.contains_key("x-sandbox-secret"));
        assert_eq!(p.headers.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1"]);
        assert_eq!(p.headers["x-request-id"], "keep");
        assert_eq!(p.uri, "/v1/x?a=1");

        let mut p = parts("/v1/x?access_token=tok");
        strip(&cfg(), &mut p, false, true);
        assert_eq!(p.uri, "/v1/x", "an emptied query goes");
    }

    #[test]
    fn keeps_authorization_and_the_query_when_the_route_says_so() {
        let mut p = parts("/v1/x?access_token=tok");
        strip(&cfg(), &mut p, true, false);
        assert_eq!(p.headers["authorization"], "Bearer tok");
        assert!(!p.headers.contains_key("x-sandbox-secret"), "the sandbox secret always goes");
        assert_eq!(p.uri, "/v1/x?access_token=tok", "a route without query tokens never read it");
    }
}
