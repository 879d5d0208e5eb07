//! The gateway's vocabulary for calls and callers, shared by authentication,
//! policy and forwarding. These mirror the WIT `types` interface; the
//! conversions to and from the generated bindings live in `plugins`.

use std::fmt;

/// How a method must be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthClass {
    /// No credential required.
    Unauthenticated,
    /// Only the sandbox secret.
    SandboxSecret,
    /// Sandbox secret if present, else bearer.
    DualAuth,
    /// A bearer token.
    Bearer,
}

impl AuthClass {
    /// The lowercase name used in config, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::SandboxSecret => "sandbox-secret",
            Self::DualAuth => "dual-auth",
            Self::Bearer => "bearer",
        }
    }
}

/// The wire protocol of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// gRPC.
    Grpc,
}

/// A call as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallInfo {
    /// Wire protocol.
    pub protocol: Protocol,
    /// HTTP method.
    pub http_method: String,
    /// Path without query.
    pub path: String,
    /// gRPC service, empty for HTTP.
    pub grpc_service: String,
    /// gRPC method, empty for HTTP.
    pub grpc_method: String,
    /// Matched route's name.
    pub route: String,
    /// Authority / Host.
    pub authority: String,
}

/// A classifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Required authentication.
    pub class: AuthClass,
    /// Required scopes.
    pub required_scopes: Vec<String>,
}

impl Classification {
    /// What the gateway assumes when no classifier can answer: the strictest
    /// class with an unsatisfiable scope, so the call is denied.
    pub fn fail_closed() -> Self {
        Self { class: AuthClass::Bearer, required_scopes: vec!["wasmgate:unclassifiable".to_owned()] }
    }
}

/// Which kind of credential authenticated a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// None presented.
    None,
    /// The sandbox secret.
    SandboxSecret,
    /// An OIDC JWT.
    OidcToken,
    /// A gateway token.
    GatewayToken,
}

impl CredentialKind {
    /// Lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SandboxSecret => "sandbox-secret",
            Self::OidcToken => "oidc-token",
            Self::GatewayToken => "gateway-token",
        }
    }
}

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// Nowhere.
    None,
    /// `Authorization: Bearer`.
    AuthorizationHeader,
    /// The configured cookie.
    Cookie,
    /// The configured query parameter.
    QueryParameter,
    /// The sandbox-secret header.
    SandboxHeader,
}

impl TokenSource {
    /// Lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AuthorizationHeader => "authorization-header",
            Self::Cookie => "cookie",
            Self::QueryParameter => "query-parameter",
            Self::SandboxHeader => "sandbox-header",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// Subject.
    pub subject: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// The outcome of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Credential kind.
    pub kind: CredentialKind,
    /// Where it came from.
    pub source: TokenSource,
    /// The provider's name (OIDC only).
    pub provider: Option<String>,
    /// The principal (tokens only).
    pub principal: Option<Principal>,
}

impl Authentication {
    /// No credential.
    pub fn anonymous() -> Self {
        Self { kind: CredentialKind::None, source: TokenSource::None, provider: None, principal: None }
    }
}

/// What the authorizer is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzRequest {
    /// The call.
    pub call: CallInfo,
    /// Its classification.
    pub classification: Classification,
    /// Who authenticated.
    pub authentication: Authentication,
}

/// An authorizer's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, with a reason for the log.
    Deny(String),
}

/// A credential the driver can resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    /// Name.
    pub name: String,
    /// Upstream scopes.
    pub scopes: Vec<String>,
}

/// "Inject credential X as header H with prefix P".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialUse {
    /// Catalogue name.
    pub credential: String,
    /// Header name (validated).
    pub header: String,
    /// Value prefix.
    pub prefix: String,
}

/// A bearer token as presented by a client. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken([redacted; {} bytes])", self.0.len())
    }
}
