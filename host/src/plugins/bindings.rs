//! Generated bindings for `wit/policy.wit` and the conversions between them
//! and the gateway's own types. Nothing generated leaves this module.

#![allow(missing_docs, missing_debug_implementations, unused_qualifications, clippy::all)]

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-bundle",
        // Async so WASI's streams never block a tokio worker; calls run on
        // fibers whose stacks come from the pooling allocator.
        imports: { default: async },
        exports: { default: async },
    });
}

pub(super) use generated::PolicyBundle;
pub(super) use generated::exports::wasmgate::policy::{authorizer, claims_mapper, classifier, credential_policy};
pub(super) use generated::wasmgate::policy::host::{Host, LogLevel};
pub(super) use generated::wasmgate::policy::types as wit;

use crate::identity as id;

impl From<&id::CallInfo> for wit::CallInfo {
    fn from(c: &id::CallInfo) -> Self {
        Self {
            protocol: match c.protocol {
                id::Protocol::Http => wit::Protocol::Http,
                id::Protocol::Grpc => wit::Protocol::Grpc,
            },
            http_method: c.http_method.clone(),
            path: c.path.clone(),
            grpc_service: c.grpc_service.clone(),
            grpc_method: c.grpc_method.clone(),
            route: c.route.clone(),
            authority: c.authority.clone(),
        }
    }
}

pub(super) fn auth_class_from_wit(c: wit::AuthClass) -> id::AuthClass {
    match c {
        wit::AuthClass::Unauthenticated => id::AuthClass::Unauthenticated,
        wit::AuthClass::SandboxSecret => id::AuthClass::SandboxSecret,
        wit::AuthClass::DualAuth => id::AuthClass::DualAuth,
        wit::AuthClass::Bearer => id::AuthClass::Bearer,
    }
}

fn auth_class_to_wit(c: id::AuthClass) -> wit::AuthClass {
    match c {
        id::AuthClass::Unauthenticated => wit::AuthClass::Unauthenticated,
        id::AuthClass::SandboxSecret => wit::AuthClass::SandboxSecret,
        id::AuthClass::DualAuth => wit::AuthClass::DualAuth,
        id::AuthClass::Bearer => wit::AuthClass::Bearer,
    }
}

impl From<&id::Principal> for wit::Principal {
    fn from(p: &id::Principal) -> Self {
        Self {
            subject: p.subject.clone(),
            tenant: p.tenant.clone(),
            roles: p.roles.clone(),
            scopes: p.scopes.clone(),
            groups: p.groups.clone(),
        }
    }
}

impl From<wit::Principal> for id::Principal {
    fn from(p: wit::Principal) -> Self {
        Self { subject: p.subject, tenant: p.tenant, roles: p.roles, scopes: p.scopes, groups: p.groups }
    }
}

impl From<&id::AuthzRequest> for wit::AuthzRequest {
    fn from(r: &id::AuthzRequest) -> Self {
        let a = &r.authentication;
        Self {
            call: (&r.call).into(),
            classification: wit::Classification {
                class: auth_class_to_wit(r.classification.class),
                required_scopes: r.classification.required_scopes.clone(),
            },
            authentication: wit::Authentication {
                kind: match a.kind {
                    id::CredentialKind::None => wit::CredentialKind::None,
                    id::CredentialKind::SandboxSecret => wit::CredentialKind::SandboxSecret,
                    id::CredentialKind::OidcToken => wit::CredentialKind::OidcToken,
                    id::CredentialKind::GatewayToken => wit::CredentialKind::GatewayToken,
                },
                source: match a.source {
                    id::TokenSource::None => wit::TokenSource::None,
                    id::TokenSource::AuthorizationHeader => wit::TokenSource::AuthorizationHeader,
                    id::TokenSource::Cookie => wit::TokenSource::Cookie,
                    id::TokenSource::QueryParameter => wit::TokenSource::QueryParameter,
                    id::TokenSource::SandboxHeader => wit::TokenSource::SandboxHeader,
                },
                provider: a.provider.clone(),
                principal: a.principal.as_ref().map(Into::into),
            },
        }
    }
}

impl From<&id::CredentialInfo> for wit::CredentialInfo {
    fn from(c: &id::CredentialInfo) -> Self {
        Self { name: c.name.clone(), scopes: c.scopes.clone() }
    }
}

pub(super) fn policy_error_text(e: &wit::PolicyError) -> String {
    match e {
        wit::PolicyError::InvalidConfig(m) => format!("invalid-config: {m}"),
        wit::PolicyError::InvalidInput(m) => format!("invalid-input: {m}"),
        wit::PolicyError::Internal(m) => format!("internal: {m}"),
    }
}
