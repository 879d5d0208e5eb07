//! Convenience constructors and queries on the WIT types.

use std::fmt;

use crate::{AuthClass, Classification, CredentialUse, Decision, PolicyError, Principal};

impl fmt::Display for AuthClass {
    /// The WIT name (`unauthenticated`, `sandbox-secret`, `dual-auth`,
    /// `bearer`), as in settings and deny reasons.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthClass::Unauthenticated => "unauthenticated",
            AuthClass::SandboxSecret => "sandbox-secret",
            AuthClass::DualAuth => "dual-auth",
            AuthClass::Bearer => "bearer",
        })
    }
}

impl PolicyError {
    /// `invalid-config`: the component's settings are missing or malformed.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        PolicyError::InvalidConfig(message.into())
    }

    /// `invalid-input`: the input (claims, call) cannot be interpreted.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        PolicyError::InvalidInput(message.into())
    }

    /// `internal`: any other failure.
    pub fn internal(message: impl Into<String>) -> Self {
        PolicyError::Internal(message.into())
    }
}

impl Decision {
    /// `deny(reason)`. The reason is logged by the gateway (truncated to
    /// 512 bytes) and never shown to the client; keep token contents out.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny(reason.into())
    }

    /// Whether this is `allow`.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl Classification {
    /// A classification of `class` requiring `scopes`.
    pub fn new<S: Into<String>>(class: AuthClass, scopes: impl IntoIterator<Item = S>) -> Self {
        Classification { class, required_scopes: scopes.into_iter().map(Into::into).collect() }
    }

    /// No credential required (the authorizer is still asked).
    pub fn unauthenticated() -> Self {
        Self::new::<String>(AuthClass::Unauthenticated, [])
    }

    /// A bearer token holding every scope of `scopes` is required.
    pub fn bearer<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> Self {
        Self::new(AuthClass::Bearer, scopes)
    }
}

impl Principal {
    /// A principal with `subject` and nothing else.
    pub fn new(subject: impl Into<String>) -> Self {
        Principal { subject: subject.into(), tenant: None, roles: Vec::new(), scopes: Vec::new(), groups: Vec::new() }
    }

    /// Whether the principal holds the role `role` (exact, case-sensitive).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal holds the scope `scope` verbatim (no resource
    /// or wildcard matching).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the principal is in the group `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

impl CredentialUse {
    /// Injects `credential` as `authorization: Bearer <token>`.
    pub fn bearer(credential: impl Into<String>) -> Self {
        CredentialUse {
            credential: credential.into(),
            header: "authorization".to_owned(),
            prefix: "Bearer ".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        assert_eq!(Classification::unauthenticated().class, AuthClass::Unauthenticated);
        assert_eq!(Classification::bearer(["a", "b"]).required_scopes, vec!["a".to_owned(), "b".to_owned()]);
        assert!(Decision::Allow.is_allow());
        assert!(!Decision::deny("no").is_allow());
        let mut p = Principal::new("alice");
        p.roles.push("admin".to_owned());
        assert!(p.has_role("admin") && !p.has_role("Admin"));
        assert!(!p.has_scope("x") && !p.in_group("g"));
        assert!(matches!(PolicyError::invalid_config("x"), PolicyError::InvalidConfig(m) if m == "x"));
        assert_eq!(CredentialUse::bearer("s").prefix, "Bearer ");
    }

    #[test]
    fn auth_classes_print_their_wit_names() {
        let names: Vec<String> =
            [AuthClass::Unauthenticated, AuthClass::SandboxSecret, AuthClass::DualAuth, AuthClass::Bearer]
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(names, ["unauthenticated", "sandbox-secret", "dual-auth", "bearer"]);
    }

    #[test]
    fn types_compare_and_print_for_assert_eq() {
        assert_eq!(Decision::deny("no tenant"), Decision::Deny("no tenant".to_owned()));
        assert_ne!(Decision::Allow, Decision::deny("x"));
        let mut a = Principal::new("alice");
        a.tenant = Some("acme".to_owned());
        let mut b = Principal::new("alice");
        assert_ne!(a, b);
        b.tenant = Some("acme".to_owned());
        assert_eq!(a, b);
        assert_eq!(Classification::bearer(["x"]), Classification::new(AuthClass::Bearer, ["x"]));
        assert_eq!(PolicyError::invalid_input("m"), PolicyError::InvalidInput("m".to_owned()));
        assert_eq!(CredentialUse::bearer("s"), CredentialUse::bearer("s"));
        let set: std::collections::HashSet<Principal> = [a.clone(), b].into_iter().collect();
        assert_eq!(set.len(), 1, "Hash agrees with Eq");
        assert!(format!("{:?}", Decision::deny("why")).contains("why"));
        assert!(format!("{a:?}").contains("acme"));
    }

    #[test]
    fn the_plugin_guide_states_the_sdk_toolchain() {
        let manifest = include_str!("../Cargo.toml");
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("rust-version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .expect("the SDK states its own rust-version");
        let guide = include_str!("../../../docs/plugins.md");
        assert!(
            guide.contains(&format!("The SDK needs Rust {version} or later")),
            "docs/plugins.md must state the SDK's rust-version {version}"
        );
    }
}
