//! Which inputs a gateway can send: refused when it never can, a warning
//! when it never does but a case may test on purpose.

use super::CaseCall;
use crate::identity as id;
use crate::plugins::validate;

/// Refuses inputs no gateway can send; returns warnings for combinations a
/// gateway never produces but an author may test on purpose, as defence in
/// depth (a bearer method without a token reaches no authorizer: the
/// gateway answers 401 first).
pub(super) fn check(call: &CaseCall) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    match call {
        CaseCall::Classify(c) => check_call(c, &mut warnings)?,
        CaseCall::MapClaims { .. } => {}
        CaseCall::Authorize(r) => {
            check_call(&r.call, &mut warnings)?;
            validate::classification(&r.classification).map_err(|e| format!("classification: {e}"))?;
            check_authentication(&r.authentication)?;
            warnings.extend(class_and_kind(r.classification.class, &r.authentication));
        }
        CaseCall::SelectCredentials { call, principal, .. } => {
            check_call(call, &mut warnings)?;
            if let Some(p) = principal {
                validate::principal(p).map_err(|e| format!("principal: {e}"))?;
            }
        }
    }
    Ok(warnings)
}

fn check_call(c: &id::CallInfo, warnings: &mut Vec<String>) -> Result<(), String> {
    match c.protocol {
        id::Protocol::Grpc => {
            if c.http_method != "POST" {
                return Err(format!("call.http-method {:?}: gRPC calls are always POST", c.http_method));
            }
            if !crate::canonical::is_grpc_path(&c.path) {
                return Err(format!("call.path {:?} is not a gRPC path (/package.Service/Method)", c.path));
            }
            let (service, method) = id::CallInfo::grpc_parts(&c.path);
            if c.grpc_service != service || c.grpc_method != method {
                return Err(format!(
                    "call.grpc-service/grpc-method {:?}/{:?} differ from the path {:?} (the gateway derives them from it; \
                     leave them out)",
                    c.grpc_service, c.grpc_method, c.path
                ));
            }
        }
        id::Protocol::Http => {
            if !c.grpc_service.is_empty() || !c.grpc_method.is_empty() {
                return Err("call.grpc-service and grpc-method are set only for gRPC calls (protocol: grpc)".to_owned());
            }
        }
    }
    if c.http_method.is_empty() || !c.http_method.bytes().all(|b| b.is_ascii_uppercase()) {
        warnings.push(format!("call.http-method {:?} is not an upper-case method name such as GET", c.http_method));
    }
    match crate::canonical::canonicalize(&c.path, &crate::canonical::PathOptions::default()) {
        Ok(canonical) if canonical != c.path => warnings.push(format!(
            "call.path {:?} is not canonical: with the default `requests.paths` the gateway passes it as {canonical:?}",
            c.path
        )),
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "call.path {:?}: with the default `requests.paths` the gateway refuses it before any policy ({e})",
            c.path
        )),
    }
    Ok(())
}

/// What `authentication` can be: none (nothing presented), the sandbox
/// secret (no principal), or a verified token with the principal it maps to.
fn check_authentication(a: &id::Authentication) -> Result<(), String> {
    use id::{AuthKind as K, TokenSource as S};
    let token_source = matches!(a.source, S::AuthorizationHeader | S::Cookie | S::QueryParameter);
    let kind = a.kind.as_str();
    match a.kind {
        K::None | K::SandboxSecret if a.principal.is_some() => {
            return Err(format!(
                "authentication kind {kind} never carries a principal: the gateway passes one only with oidc-token or \
                 gateway-token"
            ));
        }
        K::None if a.source != S::None => {
            return Err("authentication kind none (nothing presented) has source none".to_owned());
        }
        K::SandboxSecret if a.source != S::SandboxHeader => {
            return Err("authentication kind sandbox-secret has source sandbox-header".to_owned());
        }
        K::OidcToken | K::GatewayToken if !token_source => {
            return Err(format!(
                "authentication kind {kind} has source authorization-header, cookie or query-parameter"
            ));
        }
        K::OidcToken | K::GatewayToken if a.principal.is_none() => {
            return Err(format!(
                "authentication kind {kind} needs a principal: the gateway asks the authorizer about a token only \
                 once it has one (a token that maps to none is refused with 403 before)"
            ));
        }
        _ => {}
    }
    if a.provider.is_some() && a.kind != K::OidcToken {
        return Err(format!("authentication kind {kind} has no provider: only oidc-token names one"));
    }
    if let Some(p) = &a.principal {
        validate::principal(p).map_err(|e| format!("principal: {e}"))?;
    }
    Ok(())
}

/// A classification and an authentication the gateway never combines: it
/// authenticates by class, so e.g. a bearer method reaches the authorizer
/// only with a verified token.
fn class_and_kind(class: id::AuthClass, a: &id::Authentication) -> Option<String> {
    use id::{AuthClass as C, AuthKind as K};
    let kind = a.kind.as_str();
    let possible = matches!(
        (class, a.kind),
        (C::Unauthenticated, K::None)
            | (C::SandboxSecret, K::SandboxSecret)
            | (C::Bearer, K::OidcToken | K::GatewayToken)
            | (C::DualAuth, K::SandboxSecret | K::OidcToken | K::GatewayToken)
    );
    if !possible {
        let needs = match class {
            C::Unauthenticated => "none (the gateway authenticates nothing on an unauthenticated method)",
            C::SandboxSecret => "sandbox-secret",
            C::Bearer => "oidc-token or gateway-token (without one the gateway answers 401 before the authorizer)",
            C::DualAuth => "sandbox-secret, oidc-token or gateway-token",
        };
        return Some(format!(
            "the gateway never asks the authorizer about a {} method with authentication kind {kind}: it is always {needs}",
            class.as_str()
        ));
    }
    if a.kind == K::OidcToken && a.provider.is_none() {
        return Some("authentication kind oidc-token without a provider: the gateway always names it".to_owned());
    }
    None
}
