//! Why authentication failed, and how each failure is answered.

use std::sync::Arc;

use crate::jose::JwtError;
use crate::tokens::GatewayTokenError;

/// How an authentication failure is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailureKind {
    /// No credential: 401 without an `error` parameter.
    Missing,
    /// A malformed request (e.g. two credentials): 401 `error="invalid_request"`.
    InvalidRequest,
    /// The credential is invalid: 401 `error="invalid_token"`.
    InvalidToken,
    /// Keys are not available (JWKS unreachable, nothing usable): 503.
    Unavailable,
}

/// Why a token or secret was refused. Never carries token contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// The strict pre-parse failed.
    #[error(transparent)]
    Malformed(#[from] JwtError),
    /// Longer than `max_token_bytes`.
    #[error("credential too large")]
    TooLarge,
    /// `iss` names no configured provider or the gateway.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// No `kid` while the provider has several keys.
    #[error("token has no kid")]
    MissingKid,
    /// The `kid` is not in the provider's key set (even after a refetch).
    #[error("unknown kid")]
    UnknownKid,
    /// Header `alg` differs from the key's algorithm.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` plus leeway.
    #[error("token expired")]
    Expired,
    /// Before `nbf` minus leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` in the future beyond leeway.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp - iat` above the configured maximum.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// A claim is missing or has the wrong type.
    #[error("claim {0:?} missing or malformed")]
    Claim(&'static str),
    /// `aud` does not name us.
    #[error("audience mismatch")]
    Audience,
    /// `iss` mismatch after routing.
    #[error("issuer mismatch")]
    Issuer,
    /// `typ` differs from the provider's `required_typ`.
    #[error("token type not accepted")]
    Typ,
    /// The sandbox secret does not match.
    #[error("sandbox secret mismatch")]
    SandboxSecretMismatch,
    /// A sandbox secret was required but none is configured (fail closed).
    #[error("sandbox secret not configured")]
    SandboxSecretNotConfigured,
    /// A gateway token was refused.
    #[error("gateway token: {0}")]
    Gateway(GatewayTokenError),
}

/// Authentication errors. Messages never contain secrets or token contents.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented.
    #[error("no credentials presented")]
    Missing,
    /// The request is malformed (e.g. credentials in two places).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The credential is invalid.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenRejection),
    /// The provider has no usable keys.
    #[error("identity provider {provider:?} has no usable keys")]
    Unavailable {
        /// The provider's name.
        provider: Arc<str>,
    },
    /// The configuration cannot be used.
    #[error("authentication configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// How the failure maps to a response.
    pub fn kind(&self) -> AuthFailureKind {
        match self {
            Self::Missing => AuthFailureKind::Missing,
            Self::InvalidRequest(_) => AuthFailureKind::InvalidRequest,
            Self::InvalidToken(_) => AuthFailureKind::InvalidToken,
            Self::Unavailable { .. } | Self::Config(_) => AuthFailureKind::Unavailable,
        }
    }

    /// A short, stable reason for logs and metrics (never secrets).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::InvalidRequest(r) => r,
            Self::Unavailable { .. } => "keys_unavailable",
            Self::Config(_) => "config",
            Self::InvalidToken(r) => match r {
                TokenRejection::Malformed(_) => "malformed_token",
                TokenRejection::TooLarge => "token_too_large",
                TokenRejection::UnknownIssuer => "unknown_issuer",
                TokenRejection::MissingKid => "missing_kid",
                TokenRejection::UnknownKid => "unknown_kid",
                TokenRejection::AlgorithmMismatch => "algorithm_mismatch",
                TokenRejection::BadSignature => "bad_signature",
                TokenRejection::Expired => "expired",
                TokenRejection::NotYetValid => "not_yet_valid",
                TokenRejection::IssuedInFuture => "issued_in_future",
                TokenRejection::LifetimeTooLong => "lifetime_too_long",
                TokenRejection::Claim(_) => "bad_claim",
                TokenRejection::Audience => "audience_mismatch",
                TokenRejection::Issuer => "issuer_mismatch",
                TokenRejection::Typ => "typ_mismatch",
                TokenRejection::SandboxSecretMismatch => "sandbox_secret_mismatch",
                TokenRejection::SandboxSecretNotConfigured => "sandbox_secret_not_configured",
                TokenRejection::Gateway(GatewayTokenError::Revoked) => "gateway_token_revoked",
                TokenRejection::Gateway(_) => "gateway_token_invalid",
            },
        }
    }
}
