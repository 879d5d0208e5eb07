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
            return Decision::deny("token without a principal".to_owned());
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
mod tests {
    use super::*;

    const ADMIN_METHODS: &str = r#"["/admin.v1.AdminService/*", "/v1/users/delete"]"#;
    const SANDBOX_METHODS: &str = r#"["/sandbox.v1.SandboxService/Report*"]"#;

    fn config(extra: &[(&str, &str)]) -> AuthorizerConfig {
        let mut s: Vec<(&str, &str)> = extra.to_vec();
        s.push(("admin-methods", ADMIN_METHODS));
        s.push(("sandbox-methods", SANDBOX_METHODS));
        AuthorizerConfig::from_settings(s.as_slice()).expect("valid settings")
    }

    fn principal(roles: &[&str], scopes: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            tenant: None,
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            groups: Vec::new(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn decide(
        cfg: &AuthorizerConfig,
        path: &str,
        class: AuthClass,
        required: &[&str],
        kind: CredentialKind,
        principal: Option<&Principal>,
    ) -> Decision {
        let required = strings(required);
        cfg.authorize(&AuthzInput { path, class, required_scopes: &required, kind, principal })
    }

    fn bearer(cfg: &AuthorizerConfig, path: &str, required: &[&str], p: &Principal) -> Decision {
        decide(cfg, path, AuthClass::Bearer, required, CredentialKind::OidcToken, Some(p))
    }

    fn denied_with(d: Decision, needle: &str) {
        match d {
            Decision::Deny(reason) => assert!(reason.contains(needle), "{reason}"),
            Decision::Allow => panic!("allowed, expected deny containing {needle:?}"),
        }
    }

    #[test]
    fn unauthenticated_class_allows_any_credential() {
        let cfg = config(&[]);
        for kind in [
            CredentialKind::None,
            CredentialKind::SandboxSecret,
            CredentialKind::OidcToken,
            CredentialKind::GatewayToken,
        ] {
            let d = decide(&cfg, "/v1/health", AuthClass::Unauthenticated, &[], kind, None);
            assert_eq!(d, Decision::Allow, "{kind:?}");
        }
    }

    #[test]
    fn no_credential_on_protected_class_is_denied() {
        let cfg = config(&[]);
        for class in [AuthClass::SandboxSecret, AuthClass::DualAuth, AuthClass::Bearer] {
            let d = decide(&cfg, "/x", class, &[], CredentialKind::None, None);
            denied_with(d, "no credential");
        }
    }

    #[test]
    fn sandbox_secret_only_reaches_sandbox_methods_and_ignores_scopes() {
        let cfg = config(&[]);
        let path = "/sandbox.v1.SandboxService/ReportStatus";
        for class in [AuthClass::SandboxSecret, AuthClass::DualAuth] {
            let d = decide(&cfg, path, class, &["sandbox.use"], CredentialKind::SandboxSecret, None);
            assert_eq!(d, Decision::Allow);
            let d = decide(
                &cfg,
                "/sandbox.v1.SandboxService/DeleteSandbox",
                class,
                &[],
                CredentialKind::SandboxSecret,
                None,
            );
            denied_with(d, "sandbox secret may not call");
        }
        // Not on a bearer-only method, even if listed.
        let d = decide(&cfg, path, AuthClass::Bearer, &[], CredentialKind::SandboxSecret, None);
        denied_with(d, "not accepted");
    }

    #[test]
    fn sandbox_methods_default_to_none() {
        let cfg = AuthorizerConfig::from_settings(&[]).expect("defaults");
        let d = decide(&cfg, "/anything", AuthClass::SandboxSecret, &[], CredentialKind::SandboxSecret, None);
        denied_with(d, "sandbox secret may not call");
    }

    #[test]
    fn tokens_are_refused_on_sandbox_secret_methods() {
        let cfg = config(&[]);
        let admin = principal(&["admin"], &["wasmgate:all"]);
        let d = decide(
            &cfg,
            "/sandbox.v1.SandboxService/ReportStatus",
            AuthClass::SandboxSecret,
            &[],
            CredentialKind::GatewayToken,
            Some(&admin),
        );
        denied_with(d, "only the sandbox secret");
    }

    #[test]
    fn token_without_principal_is_denied() {
        let cfg = config(&[]);
        let d = decide(&cfg, "/x", AuthClass::DualAuth, &[], CredentialKind::GatewayToken, None);
        denied_with(d, "without a principal");
    }

    #[test]
    fn admin_may_call_anything_with_scopes() {
        let cfg = config(&[]);
        let admin = principal(&["admin"], &["admin.write"]);
        assert_eq!(bearer(&cfg, "/admin.v1.AdminService/Purge", &["admin.write"], &admin), Decision::Allow);
        assert_eq!(bearer(&cfg, "/v1/other", &[], &admin), Decision::Allow);
        // Admins still need the scopes.
        denied_with(bearer(&cfg, "/v1/other", &["storage.read"], &admin), "missing scope storage.read");
    }

    #[test]
    fn user_may_not_call_admin_methods() {
        let cfg = config(&[]);
        let user = principal(&["user"], &["x"]);
        assert_eq!(bearer(&cfg, "/v1/users/list", &["x"], &user), Decision::Allow);
        denied_with(
            bearer(&cfg, "/v1/users/delete", &[], &user),
            "role user may not call admin method /v1/users/delete",
        );
        denied_with(bearer(&cfg, "/admin.v1.AdminService/Purge", &[], &user), "admin method");
    }

    #[test]
    fn no_role_is_denied() {
        let cfg = config(&[]);
        let nobody = principal(&["viewer"], &["wasmgate:all"]);
        denied_with(bearer(&cfg, "/v1/users/list", &[], &nobody), "lacks role admin or user");
    }

    #[test]
    fn wildcard_scope_never_escalates_beyond_roles() {
        let cfg = config(&[]);
        let user = principal(&["user"], &["wasmgate:all"]);
        denied_with(bearer(&cfg, "/admin.v1.AdminService/Purge", &["wasmgate:all"], &user), "admin method");
        let roleless = principal(&[], &["wasmgate:all"]);
        denied_with(bearer(&cfg, "/v1/x", &["wasmgate:all"], &roleless), "lacks role");
        // Within the role's reach the wildcard covers any scope.
        assert_eq!(bearer(&cfg, "/v1/x", &["storage.read:/a", "wasmgate:all", "y"], &user), Decision::Allow);
    }

    #[test]
    fn custom_roles_and_wildcard() {
        let cfg = config(&[("admin-role", "ops"), ("user-role", "member"), ("wildcard-scope", "gw:*")]);
        let ops = principal(&["ops"], &["gw:*"]);
        assert_eq!(bearer(&cfg, "/v1/users/delete", &["anything"], &ops), Decision::Allow);
        let admin_by_default_name = principal(&["admin"], &["gw:*"]);
        denied_with(bearer(&cfg, "/v1/x", &[], &admin_by_default_name), "lacks role ops or member");
        let member = principal(&["member"], &["wasmgate:all"]);
        denied_with(bearer(&cfg, "/v1/x", &["a"], &member), "missing scope a");
    }

    #[test]
    fn auth_only_mode_skips_roles_but_checks_scopes() {
        let cfg = config(&[("admin-role", ""), ("user-role", "")]);
        assert!(cfg.auth_only());
        let anyone = principal(&[], &["storage.read"]);
        assert_eq!(bearer(&cfg, "/admin.v1.AdminService/Purge", &["storage.read"], &anyone), Decision::Allow);
        denied_with(bearer(&cfg, "/v1/x", &["storage.write"], &anyone), "missing scope storage.write");
        // Tokens still need a principal; sandbox rules still apply.
        let d = decide(&cfg, "/v1/x", AuthClass::Bearer, &[], CredentialKind::OidcToken, None);
        denied_with(d, "without a principal");
    }

    #[test]
    fn one_empty_role_disables_only_that_role() {
        let cfg = config(&[("admin-role", "")]);
        assert!(!cfg.auth_only());
        let user = principal(&["user"], &[]);
        assert_eq!(bearer(&cfg, "/v1/x", &[], &user), Decision::Allow);
        denied_with(bearer(&cfg, "/v1/users/delete", &[], &user), "admin method");
        // Holding an empty-named role does not count.
        let blank = principal(&[""], &[]);
        denied_with(bearer(&cfg, "/v1/x", &[], &blank), "lacks role user");
    }

    #[test]
    fn every_required_scope_must_be_covered() {
        let cfg = config(&[]);
        let user = principal(&["user"], &["a", "b"]);
        assert_eq!(bearer(&cfg, "/v1/x", &["a", "b"], &user), Decision::Allow);
        denied_with(bearer(&cfg, "/v1/x", &["a", "c"], &user), "missing scope c");
        // Case-sensitive exact equality.
        denied_with(bearer(&cfg, "/v1/x", &["A"], &user), "missing scope A");
    }

    #[test]
    fn hierarchical_resource_scopes() {
        let w = "wasmgate:all";
        assert!(covers("storage.read:/a", "storage.read:/a", w));
        assert!(covers("storage.read:/a", "storage.read:/a/b", w));
        assert!(covers("storage.read:/a", "storage.read:/a/b/c/", w));
        assert!(covers("storage.read:/a/", "storage.read:/a/b", w));
        assert!(covers("storage.read:/a/", "storage.read:/a", w));
        assert!(!covers("storage.read:/a", "storage.read:/ab", w));
        assert!(!covers("storage.read:/a/b", "storage.read:/a", w));
        assert!(!covers("storage.read:/a", "storage.write:/a/b", w));
        assert!(!covers("storage.read:/a", "storage.read", w));
        assert!(covers("storage.read", "storage.read", w));
        assert!(covers("storage.read", "storage.read:/a/b", w));
        assert!(!covers("storage.read", "storage.readx:/a", w));
        assert!(!covers("storage", "storage.read", w));
        assert!(covers("storage.read:/", "storage.read:/any/thing", w));
    }

    #[test]
    fn invalid_resources_never_match() {
        let w = "wasmgate:all";
        for bad in [
            "storage.read:/a/../b",
            "storage.read:/a/..",
            "storage.read:/a/./b",
            "storage.read:/.",
            "storage.read:/a//b",
            "storage.read://a",
            "storage.read:/a//",
            "storage.read:a/b",
            "storage.read:",
        ] {
            assert!(!covers(bad, bad, w), "held {bad} covered itself");
            assert!(!covers("storage.read:/a", bad, w), "required {bad}");
            assert!(!covers("storage.read:/", bad, w), "required {bad}");
            assert!(!covers("storage.read", bad, w), "required {bad}");
            assert!(!covers(bad, "storage.read:/a/b", w), "held {bad}");
        }
        // `..` inside a segment name is an ordinary name.
        assert!(covers("storage.read:/a..b", "storage.read:/a..b/c", w));
    }

    #[test]
    fn wildcard_covers_everything() {
        let w = "wasmgate:all";
        assert!(covers(w, "storage.read:/a/b", w));
        assert!(covers(w, "anything", w));
        assert!(covers(w, w, w));
        assert!(!covers("wasmgate", "wasmgate:all", w));
        assert!(!covers("wasmgate:al", "wasmgate:all", w));
    }

    #[test]
    fn resource_scope_through_the_authorizer() {
        let cfg = config(&[]);
        let user = principal(&["user"], &["storage.read:/a"]);
        assert_eq!(bearer(&cfg, "/v1/x", &["storage.read:/a/b"], &user), Decision::Allow);
        denied_with(bearer(&cfg, "/v1/x", &["storage.read:/ab"], &user), "missing scope storage.read:/ab");
        denied_with(bearer(&cfg, "/v1/x", &["storage.read:/a/../b"], &user), "missing scope");
    }

    #[test]
    fn malformed_settings_are_invalid_config() {
        for (key, value) in [
            ("admin-methods", "[\"x\"]"),
            ("admin-methods", "\"/a\""),
            ("sandbox-methods", "[\"/a\", \"/a\"]"),
            ("sandbox-methods", "[\"/a*b\"]"),
            ("wildcard-scope", ""),
        ] {
            match AuthorizerConfig::from_settings(&[(key, value)]) {
                Err(PolicyError::InvalidConfig(m)) => assert!(m.contains(key), "{m}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
    }
}
