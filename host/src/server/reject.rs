//! The one place where failures become responses.
//!
//! HTTP callers get RFC 6750 `WWW-Authenticate` challenges on 401, 403 for
//! denials and 503 when a dependency is unavailable; gRPC callers get the
//! matching status (16, 7, 14, ...) as a trailers-only response. Bodies and
//! messages are fixed strings: reasons go to the log, never to the client.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

use crate::auth::{AuthError, AuthFailureKind};

/// Why a call is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The request itself is malformed or ambiguous (a path or target the
    /// upstream could read differently, conflicting `Host`s): 400, or gRPC
    /// INVALID_ARGUMENT, never forwarded.
    BadRequest,
    /// No credential where one is required.
    MissingCredential,
    /// The request carries credentials in an invalid way (e.g. two tokens).
    InvalidRequest,
    /// The credential is invalid, expired or not accepted.
    InvalidToken,
    /// Authenticated, but policy denies the call (or failed closed).
    Forbidden,
    /// A dependency (keys, driver, upstream) is unavailable.
    Unavailable,
    /// The upstream credentials the call needs cannot be had (credentials
    /// driver down, hung or slow; never replaced by a fallback).
    CredentialsUnavailable,
    /// No route matches the call.
    NoRoute,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The upstream answered with something that is not a valid response
    /// (malformed, oversized, or reset before its head): 502.
    BadGateway,
    /// The request body is larger than the route allows: 413, or gRPC
    /// RESOURCE_EXHAUSTED.
    PayloadTooLarge,
    /// An `Upgrade` the route does not allow: 501.
    UpgradeRefused,
    /// Every upstream connection and the wait queue are full: 503, or gRPC
    /// RESOURCE_EXHAUSTED, at once.
    UpstreamExhausted,
}

impl From<&AuthError> for Rejection {
    fn from(e: &AuthError) -> Self {
        match e.kind() {
            AuthFailureKind::Missing => Self::MissingCredential,
            AuthFailureKind::InvalidRequest => Self::InvalidRequest,
            AuthFailureKind::InvalidToken => Self::InvalidToken,
            AuthFailureKind::Unavailable => Self::Unavailable,
        }
    }
}

impl From<&crate::credentials::CredentialError> for Rejection {
    fn from(_: &crate::credentials::CredentialError) -> Self {
        Self::CredentialsUnavailable
    }
}

impl Rejection {
    /// The label used in metrics and decision logs.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::MissingCredential | Self::InvalidRequest | Self::InvalidToken => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::CredentialsUnavailable => "credentials_unavailable",
            Self::NoRoute => "no_route",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::BadGateway => "bad_gateway",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UpgradeRefused => "upgrade_refused",
            Self::UpstreamExhausted => "upstream_exhausted",
        }
    }

    fn http_status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::MissingCredential | Self::InvalidRequest | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unavailable | Self::CredentialsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpgradeRefused => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamExhausted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// gRPC status code and message.
    fn grpc_status(self) -> (u8, &'static str) {
        match self {
            Self::BadRequest => (3, "invalid request"),
            Self::MissingCredential => (16, "missing credentials"),
            Self::InvalidRequest => (16, "invalid credentials in request"),
            Self::InvalidToken => (16, "invalid or expired credentials"),
            Self::Forbidden => (7, "permission denied"),
            Self::Unavailable => (14, "service unavailable"),
            Self::CredentialsUnavailable => (14, "upstream credentials unavailable"),
            Self::NoRoute => (12, "unknown service"),
            Self::UpstreamTimeout => (4, "upstream timed out"),
            Self::BadGateway => (14, "upstream error"),
            Self::PayloadTooLarge => (8, "request too large"),
            Self::UpgradeRefused => (12, "upgrade not supported"),
            Self::UpstreamExhausted => (8, "upstream busy"),
        }
    }

    fn challenge(self) -> Option<&'static str> {
        match self {
            Self::MissingCredential => Some(r#"Bearer realm="wasmgate""#),
            Self::InvalidRequest => Some(r#"Bearer realm="wasmgate", error="invalid_request""#),
            Self::InvalidToken => Some(r#"Bearer realm="wasmgate", error="invalid_token""#),
            _ => None,
        }
    }

    /// The response for an HTTP or a gRPC caller.
    pub fn into_response(self, grpc: bool) -> Response<Body> {
        if grpc {
            let (code, message) = self.grpc_status();
            let mut resp = Response::new(Body::empty());
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(u16::from(code)));
            h.insert("grpc-message", HeaderValue::from_static(message));
            if let Some(c) = self.challenge() {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
            }
            return resp;
        }
        let status = self.http_status();
        let body = format!("{{\"error\":\"{}\"}}\n", self.outcome());
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(c) = self.challenge() {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_401_carries_an_rfc6750_challenge() {
        let r = Rejection::InvalidToken.into_response(false);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="wasmgate", error="invalid_token""#);
        let r = Rejection::MissingCredential.into_response(false);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="wasmgate""#);
    }

    #[test]
    fn grpc_rejections_are_trailers_only_with_matching_codes() {
        for (rej, code) in [
            (Rejection::BadRequest, "3"),
            (Rejection::InvalidToken, "16"),
            (Rejection::Forbidden, "7"),
            (Rejection::Unavailable, "14"),
            (Rejection::CredentialsUnavailable, "14"),
            (Rejection::NoRoute, "12"),
            (Rejection::BadGateway, "14"),
        ] {
            let r = rej.into_response(true);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()["grpc-status"], code);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Rejection::BadRequest.into_response(false).status(), StatusCode::BAD_REQUEST);
        assert_eq!(Rejection::Forbidden.into_response(false).status(), StatusCode::FORBIDDEN);
        assert_eq!(Rejection::Unavailable.into_response(false).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Rejection::BadGateway.into_response(false).status(), StatusCode::BAD_GATEWAY);
        let r = Rejection::CredentialsUnavailable.into_response(false);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
