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
    for kind in
        [CredentialKind::None, CredentialKind::SandboxSecret, CredentialKind::OidcToken, CredentialKind::GatewayToken]
    {
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
        let d =
            decide(&cfg, "/sandbox.v1.SandboxService/DeleteSandbox", class, &[], CredentialKind::SandboxSecret, None);
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
    denied_with(bearer(&cfg, "/v1/users/delete", &[], &user), "role user may not call admin method /v1/users/delete");
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

#[test]
fn an_authz_request_decides_like_its_fields() {
    use wasmgate_plugin_sdk::{Authentication, CallInfo, Classification, Protocol, TokenSource};
    let cfg = config(&[]);
    let user = principal(&["user"], &["storage.read:/a"]);
    let request = |path: &str, principal: Option<Principal>| AuthzRequest {
        call: CallInfo {
            protocol: Protocol::Http,
            http_method: "GET".into(),
            path: path.into(),
            grpc_service: String::new(),
            grpc_method: String::new(),
            route: "r".into(),
            authority: "gw.example".into(),
        },
        classification: Classification::bearer(["storage.read:/a/b"]),
        authentication: Authentication {
            kind: CredentialKind::OidcToken,
            source: TokenSource::AuthorizationHeader,
            provider: Some("idp".into()),
            principal,
        },
    };
    let allowed = request("/v1/x", Some(user.clone()));
    let input = AuthzInput::from(&allowed);
    assert_eq!((input.path, input.class, input.kind), ("/v1/x", AuthClass::Bearer, CredentialKind::OidcToken));
    assert_eq!(input.required_scopes, ["storage.read:/a/b"]);
    assert_eq!(input.principal, Some(&user));
    assert_eq!(cfg.authorize(&input), Decision::Allow);
    denied_with(cfg.authorize(&AuthzInput::from(&request("/v1/users/delete", Some(user)))), "admin method");
    denied_with(cfg.authorize(&AuthzInput::from(&request("/v1/x", None))), "without a principal");
}
