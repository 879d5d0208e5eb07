//! The default role- and scope-based authorizer.
//!
//! Settings:
//! - `admin-role` (string, default `admin`): holders may call any method.
//! - `user-role` (string, default `user`): holders may call any method not
//!   matching `admin-methods`.
//! - `admin-methods` (JSON list of patterns, default `[]`).
//! - `sandbox-methods` (JSON list of patterns, default `[]`): the only
//!   methods a sandbox-secret caller may reach.
//! - `wildcard-scope` (string, default `wasmgate:all`): covers every scope.
//!
//! When both `admin-role` and `user-role` are empty strings the authorizer
//! runs in auth-only mode: any principal passes the role check. Scopes are
//! always checked for token callers.
//!
//! Rules, in order:
//! 1. class `unauthenticated` → allow, whatever the credential.
//! 2. sandbox secret → allow only on a `sandbox-secret` or `dual-auth`
//!    method matching `sandbox-methods`; scopes do not apply.
//! 3. no credential → deny (defence in depth: the host should have refused).
//! 4. tokens: not on a `sandbox-secret` method; a principal must be present;
//!    the role check (admin → any method, user → non-admin methods, neither →
//!    deny); then every required scope must be covered by a held scope.
//!    Scopes never widen what the roles allow.
//!
//! # Scopes
//! A scope is `name` or `name:resource` (split at the first `:`), where a
//! resource is a `/`-separated path. A held scope covers a required one when
//! - it is the wildcard scope; or
//! - both are plain names and equal (case-sensitive); or
//! - the held scope is the bare `name` and the required one is
//!   `name:resource` with a valid resource; or
//! - both are `name:resource` with the same name, valid resources, and the
//!   required resource equals the held one or lies below it segment-wise
//!   (`/a` covers `/a` and `/a/b`, not `/ab`).
//!
//! A held `name:resource` never covers the bare `name`. A resource is valid
//! only if it starts with `/` and has no `.` or `..` segment and no empty
//! segment except a single trailing `/`; an invalid resource never matches,
//! on either side. (So a scope such as `urn:x` whose "resource" does not
//! start with `/` can only be satisfied by the wildcard scope.)

use crate::classifier::wildcard_scope;
use crate::pattern::PatternSet;
use crate::settings::{self, Settings, invalid};
use wasmgate_plugin_sdk::{AuthClass, AuthzRequest, CredentialKind, Decision, PolicyError, Principal};

/// Default of `admin-role`.
pub const DEFAULT_ADMIN_ROLE: &str = "admin";
/// Default of `user-role`.
pub const DEFAULT_USER_ROLE: &str = "user";

/// What the authorizer needs to know about one call.
#[derive(Debug, Clone, Copy)]
pub struct AuthzInput<'a> {
    /// `call.path`.
    pub path: &'a str,
    /// The classifier's class for the call.
    pub class: AuthClass,
    /// The classifier's required scopes.
    pub required_scopes: &'a [String],
    /// Which credential authenticated the call.
    pub kind: CredentialKind,
    /// The principal, for token callers.
    pub principal: Option<&'a Principal>,
}

impl<'a> From<&'a AuthzRequest> for AuthzInput<'a> {
    /// The fields of an `authorize` request the authorizer looks at.
    fn from(request: &'a AuthzRequest) -> Self {
        AuthzInput {
            path: &request.call.path,
            class: request.classification.class,
            required_scopes: &request.classification.required_scopes,
            kind: request.authentication.kind,
            principal: request.authentication.principal.as_ref(),
        }
    }
}

/// The parsed settings of the authorizer.
#[derive(Debug, Clone)]
pub struct AuthorizerConfig {
    admin_role: String,
    user_role: String,
    admin_methods: PatternSet,
    sandbox_methods: PatternSet,
    wildcard_scope: String,
}

fn pattern_set(s: &(impl Settings + ?Sized), key: &str) -> Result<PatternSet, PolicyError> {
    let patterns: Vec<String> = settings::json(s, key)?.unwrap_or_default();
    PatternSet::from_patterns(patterns).map_err(|e| invalid(key, e))
}

impl AuthorizerConfig {
    /// Reads and validates the settings.
    pub fn from_settings(s: &(impl Settings + ?Sized)) -> Result<Self, PolicyError> {
        Ok(Self {
            admin_role: settings::string(s, "admin-role", DEFAULT_ADMIN_ROLE),
            user_role: settings::string(s, "user-role", DEFAULT_USER_ROLE),
            admin_methods: pattern_set(s, "admin-methods")?,
            sandbox_methods: pattern_set(s, "sandbox-methods")?,
            wildcard_scope: wildcard_scope(s)?,
        })
    }

    /// Whether both roles are empty: any principal passes the role check.
    pub fn auth_only(&self) -> bool {
        self.admin_role.is_empty() && self.user_role.is_empty()
    }

    /// Decides one call.
    pub fn authorize(&self, input: &AuthzInput<'_>) -> Decision {
        let path = input.path;
        if input.class == AuthClass::Unauthenticated {
            return Decision::Allow;
        }
        match input.kind {
            CredentialKind::None => {
                return Decision::deny(format!("no credential for {} method {path}", input.class));
            }
            CredentialKind::SandboxSecret => {
                if !matches!(input.class, AuthClass::SandboxSecret | AuthClass::DualAuth) {
                    return Decision::deny(format!("sandbox secret not accepted for {} method {path}", input.class));
                }
                if !self.sandbox_methods.matches(path) {
                    return Decision::deny(format!("sandbox secret may not call {path}"));
                }
                return Decision::Allow;
            }
            CredentialKind::OidcToken | CredentialKind::GatewayToken => {}
        }
        if input.class == AuthClass::SandboxSecret {
            return Decision::deny(format!("method {path} accepts only the sandbox secret"));
        }
        let Some(principal) = input.principal else {
            return Decision::deny("token without a principal");
        };
        if let Some(reason) = self.role_denial(principal, path) {
            return Decision::deny(reason);
        }
        for required in input.required_scopes {
            if !principal.scopes.iter().any(|held| covers(held, required, &self.wildcard_scope)) {
                return Decision::deny(format!("missing scope {required}"));
            }
        }
        Decision::Allow
    }

    fn role_denial(&self, principal: &Principal, path: &str) -> Option<String> {
        if self.auth_only() {
            return None;
        }
        let has = |role: &str| !role.is_empty() && principal.roles.iter().any(|r| r == role);
        if has(&self.admin_role) {
            return None;
        }
        if has(&self.user_role) {
            if self.admin_methods.matches(path) {
                return Some(format!("role {} may not call admin method {path}", self.user_role));
            }
            return None;
        }
        let wanted: Vec<&str> =
            [self.admin_role.as_str(), self.user_role.as_str()].into_iter().filter(|r| !r.is_empty()).collect();
        Some(format!("principal lacks role {}", wanted.join(" or ")))
    }
}

/// Splits a scope into its name and optional resource.
fn split_scope(scope: &str) -> (&str, Option<&str>) {
    match scope.split_once(':') {
        Some((name, resource)) => (name, Some(resource)),
        None => (scope, None),
    }
}

/// The resource without a trailing `/` (the root `/` stays `/`), or `None`
/// when the resource is invalid.
fn normalise_resource(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix('/')?;
    if rest.is_empty() {
        return Some("/");
    }
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    if trimmed.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return None;
    }
    Some(&resource[..trimmed.len() + 1])
}

/// Whether the held resource covers the required one, segment-wise.
fn resource_covers(held: &str, required: &str) -> bool {
    let (Some(held), Some(required)) = (normalise_resource(held), normalise_resource(required)) else {
        return false;
    };
    if held == "/" || held == required {
        return true;
    }
    required.strip_prefix(held).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the held scope covers the required scope (see the module docs).
pub fn covers(held: &str, required: &str, wildcard: &str) -> bool {
    if !wildcard.is_empty() && held == wildcard {
        return true;
    }
    let (held_name, held_resource) = split_scope(held);
    let (required_name, required_resource) = split_scope(required);
    if held_name.is_empty() || held_name != required_name {
        return false;
    }
    match (held_resource, required_resource) {
        (None, None) => true,
        (None, Some(required)) => normalise_resource(required).is_some(),
        (Some(_), None) => false,
        (Some(held), Some(required)) => resource_covers(held, required),
    }
}

#[cfg(test)]
mod tests;
