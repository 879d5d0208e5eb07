//! The gateway's vocabulary for calls and callers, shared by authentication,
//! policy and forwarding. These mirror the WIT `types` interface; the
//! conversions to and from the generated bindings live in `plugins`. They
//! deserialize from the kebab-case form golden cases write them in.

use std::fmt;

use serde::Deserialize;

/// How a method must be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// gRPC.
    Grpc,
}

/// A call as policy sees it.
///
/// Deserialized, only `path` is required: the protocol defaults to HTTP,
/// the method to `GET` (`POST` for gRPC), the gRPC service and method to
/// those of the path, route and authority to empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "fields::CallInfo")]
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

impl CallInfo {
    /// A call of `protocol` to `path` (without query); for gRPC the service
    /// and method are those of the path ([`CallInfo::grpc_parts`]).
    pub fn new(
        protocol: Protocol,
        http_method: impl Into<String>,
        path: impl Into<String>,
        route: impl Into<String>,
        authority: impl Into<String>,
    ) -> Self {
        let path = path.into();
        let (grpc_service, grpc_method) = match protocol {
            Protocol::Grpc => {
                let (service, method) = Self::grpc_parts(&path);
                (service.to_owned(), method.to_owned())
            }
            Protocol::Http => (String::new(), String::new()),
        };
        Self {
            protocol,
            http_method: http_method.into(),
            path,
            grpc_service,
            grpc_method,
            route: route.into(),
            authority: authority.into(),
        }
    }

    /// The service and method of a gRPC path: `/package.Service/Method`
    /// gives `("package.Service", "Method")`; a missing part is empty.
    pub fn grpc_parts(path: &str) -> (&str, &str) {
        let mut it = path.trim_start_matches('/').splitn(2, '/');
        (it.next().unwrap_or_default(), it.next().unwrap_or_default())
    }
}

/// The fields of a deserialized [`CallInfo`], before the defaults that
/// depend on the protocol; named like it so that messages name it.
mod fields {
    use serde::Deserialize;

    use super::Protocol;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct CallInfo {
        #[serde(default)]
        pub(super) protocol: Option<Protocol>,
        #[serde(default)]
        pub(super) http_method: Option<String>,
        pub(super) path: String,
        #[serde(default)]
        pub(super) grpc_service: Option<String>,
        #[serde(default)]
        pub(super) grpc_method: Option<String>,
        #[serde(default)]
        pub(super) route: String,
        #[serde(default)]
        pub(super) authority: String,
    }
}

impl From<fields::CallInfo> for CallInfo {
    fn from(f: fields::CallInfo) -> Self {
        let protocol = f.protocol.unwrap_or(Protocol::Http);
        let method =
            f.http_method.unwrap_or_else(|| if protocol == Protocol::Grpc { "POST" } else { "GET" }.to_owned());
        let mut call = Self::new(protocol, method, f.path, f.route, f.authority);
        if let Some(service) = f.grpc_service {
            call.grpc_service = service;
        }
        if let Some(method) = f.grpc_method {
            call.grpc_method = method;
        }
        call
    }
}

/// A classifier's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Classification {
    /// Required authentication.
    pub class: AuthClass,
    /// Required scopes.
    #[serde(default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// None presented.
    #[default]
    None,
    /// The sandbox secret.
    SandboxSecret,
    /// An OIDC JWT.
    OidcToken,
    /// A gateway token.
    GatewayToken,
}

impl AuthKind {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSource {
    /// Nowhere.
    #[default]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// Subject.
    pub subject: String,
    /// Tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The outcome of authentication. Deserialized, every field is optional
/// ([`Authentication::anonymous`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    /// Credential kind.
    #[serde(default)]
    pub kind: AuthKind,
    /// Where it came from.
    #[serde(default)]
    pub source: TokenSource,
    /// The provider's name (OIDC only).
    #[serde(default)]
    pub provider: Option<String>,
    /// The principal (tokens only).
    #[serde(default)]
    pub principal: Option<Principal>,
}

impl Authentication {
    /// No credential.
    pub fn anonymous() -> Self {
        Self { kind: AuthKind::None, source: TokenSource::None, provider: None, principal: None }
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialInfo {
    /// Name.
    pub name: String,
    /// Upstream scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// "Inject credential X as header H with prefix P".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[cfg(test)]
mod tests;
