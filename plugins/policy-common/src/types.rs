//! Plain mirrors of the types of `wit/policy.wit` (package
//! `wasmgate:policy@0.1.0`).

use serde::Deserialize;
use std::fmt;

/// How a method must be authenticated (`auth-class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthClass {
    /// No credential is required.
    Unauthenticated,
    /// Only the sandbox secret is accepted.
    SandboxSecret,
    /// The sandbox secret if sent, otherwise a bearer token.
    DualAuth,
    /// A bearer token is required.
    Bearer,
}

impl fmt::Display for AuthClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unauthenticated => "unauthenticated",
            Self::SandboxSecret => "sandbox-secret",
            Self::DualAuth => "dual-auth",
            Self::Bearer => "bearer",
        })
    }
}

/// A classifier's answer (`classification`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The authentication the method requires.
    pub class: AuthClass,
    /// Scopes the caller must hold, all of them.
    pub required_scopes: Vec<String>,
}

/// Which kind of credential authenticated the call (`credential-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// No credential.
    None,
    /// The deployment's sandbox secret.
    SandboxSecret,
    /// An OIDC JWT.
    OidcToken,
    /// A token minted by the gateway.
    GatewayToken,
}

/// Who is calling (`principal`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// Stable subject identifier.
    pub subject: String,
    /// The tenant the subject acts for, if known.
    pub tenant: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// An authorizer's verdict (`decision`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the call through.
    Allow,
    /// Refuse it, with a short reason for the gateway's log.
    Deny(String),
}

/// One entry of the credentials catalogue (`credential-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    /// The credential's name.
    pub name: String,
    /// The scopes it carries upstream.
    pub scopes: Vec<String>,
}

/// A credential to inject upstream (`credential-use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialUse {
    /// A name from the catalogue.
    pub credential: String,
    /// The header to set.
    pub header: String,
    /// Text put before the token.
    pub prefix: String,
}

/// A deliberate failure (`policy-error`); every variant fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Settings missing or malformed.
    InvalidConfig(String),
    /// Input that cannot be interpreted.
    InvalidInput(String),
    /// Anything else.
    Internal(String),
}

/// Severity of a message a component wants the host to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Debugging detail.
    Debug,
    /// Something unexpected that did not fail the call.
    Warn,
}
