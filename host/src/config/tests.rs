use super::*;

#[test]
fn empty_config_has_safe_defaults() {
    let cfg = Config::from_yaml("{}").expect("empty config is valid");
    assert_eq!(cfg.listen, default_listen());
    assert_eq!(cfg.identity_headers.prefix, "x-wasmgate-");
    assert!(cfg.auth.query_parameter.is_none());
    assert!(cfg.auth.providers.is_empty());
    assert_eq!(cfg.policy.authorizer.plugin, "builtin:rbac-authorizer");
}

#[test]
fn the_shipped_example_is_valid() {
    let cfg = Config::from_yaml(include_str!("../../../examples/wasmgate.yaml")).expect("example parses");
    assert_eq!(cfg.auth.providers.len(), 2);
    assert_eq!(cfg.routes.len(), 2);
    assert!(cfg.admin.as_ref().is_some_and(|a| a.control_listen.is_some() && a.require_scope.is_some()));
    assert!(!format!("{cfg:?}").contains("hunter"), "secrets stay out of Debug");
}

#[test]
fn unknown_keys_are_rejected() {
    let err = Config::from_yaml("listen: 127.0.0.1:1\nlsiten: x\n").expect_err("typo must fail");
    assert!(err.to_string().contains("lsiten"), "{err}");
}

#[test]
fn query_tokens_need_a_parameter_name() {
    let yaml = r#"
routes:
  - name: r
    match: { path_prefix: /v1 }
    upstream: http://127.0.0.1:1
    allow_query_token: true
"#;
    assert!(Config::from_yaml(yaml).is_err());
}

#[test]
fn gateway_keys_are_inline_or_a_folder_not_both() {
    let both = "auth:\n  gateway_tokens:\n    keys_dir: /k\n    active_key: v1\n    keys: { v1: { value: x } }\n";
    assert!(Config::from_yaml(both).is_err());
    let dir_and_keys = "auth:\n  gateway_tokens:\n    keys_dir: /k\n    keys: { v1: { value: x } }\n";
    assert!(Config::from_yaml(dir_and_keys).is_err());
    assert!(Config::from_yaml("auth:\n  gateway_tokens: {}\n").is_err());
    let dir = "auth:\n  gateway_tokens:\n    keys_dir: keys\n    revoked_file: revoked/revoked\n";
    let cfg = Config::from_yaml(dir).expect("folder form");
    let g = cfg.auth.gateway_tokens.expect("gateway tokens");
    assert_eq!(g.keys_dir.as_deref(), Some(Path::new("keys")));
    let inline = "auth:\n  gateway_tokens:\n    active_key: v1\n    keys: { v1: { value: x } }\n";
    assert!(Config::from_yaml(inline).is_ok());
}

#[test]
fn gateway_token_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wasmgate.yaml");
    std::fs::write(&path, "auth:\n  gateway_tokens:\n    keys_dir: keys\n    revoked_file: /abs/revoked\n")
        .expect("write");
    let g = Config::load(&path).expect("load").auth.gateway_tokens.expect("gateway tokens");
    let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(g.keys_dir, Some(canonical.join("keys")));
    assert_eq!(g.revoked_file.as_deref(), Some(Path::new("/abs/revoked")));
}

#[test]
fn routes_shadowed_by_an_earlier_route_are_refused_naming_both() {
    let yaml = |first: &str, second: &str| {
        format!(
            "routes:\n  - {{ name: a, match: {first}, upstream: \"http://127.0.0.1:1\" }}\n  - {{ name: b, match: {second}, upstream: \"http://127.0.0.1:2\" }}\n"
        )
    };
    for (first, second) in [
        ("{ path_prefix: /v1 }", "{ path_prefix: /v1 }"),
        ("{ path_prefix: /v1 }", "{ path_prefix: /v1/x }"),
        ("{ path_prefix: / }", "{ path_prefix: /v1 }"),
        ("{ path_prefix: / }", "{ grpc_service: pkg.Svc }"),
        ("{ path_prefix: /pkg.Svc }", "{ grpc_service: pkg.Svc }"),
        ("{ grpc_service: pkg.Svc }", "{ grpc_service: pkg.Svc }"),
    ] {
        let err = Config::from_yaml(&yaml(first, second)).expect_err(&format!("{first} shadows {second}"));
        assert!(err.to_string().contains(r#"route "b" can never match: route "a""#), "{err}");
    }
    for (first, second) in [
        ("{ path_prefix: /v1/x }", "{ path_prefix: /v1 }"),
        ("{ path_prefix: /v1 }", "{ path_prefix: /v10 }"),
        ("{ grpc_service: pkg.Svc }", "{ path_prefix: / }"),
        ("{ grpc_service: pkg.Svc }", "{ grpc_service: pkg.Svc2 }"),
    ] {
        assert!(Config::from_yaml(&yaml(first, second)).is_ok(), "{first} then {second}");
    }
}

#[test]
fn a_zero_timeout_means_none_and_limits_have_defaults() {
    let cfg = Config::from_yaml(
        "routes:\n  - { name: a, match: { path_prefix: / }, upstream: \"http://127.0.0.1:1\", timeout_ms: 0 }\n",
    )
    .expect("timeout_ms: 0 is documented as none");
    let r = &cfg.routes[0];
    assert_eq!((r.timeout_ms, r.stream_idle_timeout_ms, r.max_request_body_bytes), (0, 300_000, 256 << 20));
    assert_eq!(r.upstream_host, UpstreamHost::Upstream);
    let zero =
        "routes:\n  - { name: a, match: { path_prefix: / }, upstream: \"http://127.0.0.1:1\", max_connections: 0 }\n";
    assert!(Config::from_yaml(zero).is_err());
}

#[test]
fn provider_without_audience_is_rejected() {
    let yaml = r#"
auth:
  providers:
    - name: kc
      issuer: https://kc.example/realms/a
      audiences: []
"#;
    assert!(Config::from_yaml(yaml).is_err());
}

fn provider_yaml(name: &str, extra: &str) -> String {
    format!("    - name: {name}\n      issuer: https://{name}.example/\n      audiences: [api]\n{extra}")
}

#[test]
fn provider_tenants_are_checked_and_unbounded_tenants_warned_about() {
    let cfg = |providers: &[String]| Config::from_yaml(&format!("auth:\n  providers:\n{}", providers.concat()));
    for bad in ["[]", "[\"\"]", "[a, a]", "[\"a,b\"]", "[\"a b\"]"] {
        let p = provider_yaml("x", &format!("      tenants: {bad}\n"));
        assert!(cfg(&[p]).is_err(), "tenants: {bad}");
    }
    let claim = "      claims_mapper: { plugin: builtin:oidc-claims-mapper, settings: { tenant-claim: tenant } }\n";
    let pinned = |t: &str| {
        format!("      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant: {t} }} }}\n")
    };
    let custom = "      claims_mapper: { plugin: mapper.wasm }\n";

    // Bounded, distinct tenants, or no tenant at all: no warning.
    let quiet = [
        provider_yaml("acme", &format!("{claim}      tenants: [acme]\n")),
        provider_yaml("globex", &pinned("globex")),
        provider_yaml("plain", ""),
        provider_yaml("corp", &format!("{custom}      tenants: [corp, corp-eu]\n")),
    ];
    assert_eq!(cfg(&quiet).expect("valid").startup_warnings(), Vec::<String>::new());

    let w = cfg(&[provider_yaml("acme", claim)]).expect("valid").startup_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(r#"provider "acme" takes the tenant from claim "tenant" with no bound"#), "{w:?}");
    let w = cfg(&[provider_yaml("corp", custom)]).expect("valid").startup_warnings();
    assert!(w.len() == 1 && w[0].contains(r#"provider "corp" has no `tenants`"#), "{w:?}");

    let overlap = [
        provider_yaml("acme", &pinned("acme")),
        provider_yaml("globex", &format!("{claim}      tenants: [globex, acme]\n")),
    ];
    let w = cfg(&overlap).expect("valid").startup_warnings();
    let both =
        r#"providers "acme", "globex" can all assert tenant "acme": each of their issuers can act for that tenant"#;
    assert_eq!(w, vec![both]);

    let refused = [provider_yaml("acme", &format!("{}      tenants: [globex]\n", pinned("acme")))];
    let w = cfg(&refused).expect("valid").startup_warnings();
    assert!(w.len() == 1 && w[0].contains("every principal of this provider will be refused"), "{w:?}");
}

/// Every refusal of `Config::validate`, with the message it gives (the
/// same text the tests, the docs and operators' alerts match on).
#[test]
fn every_refusal_says_what_it_always_said_naming_the_key() {
    let providers = |ps: &[String]| format!("auth:\n  providers:\n{}", ps.concat());
    let gateway = |g: &str| format!("auth:\n  gateway_tokens: {g}\n");
    let route = |fields: &str| format!("routes:\n  - {{ name: r, upstream: \"http://127.0.0.1:1\", {fields} }}\n");
    let cases = [
        (
            "identity_headers: { prefix: X! }".to_owned(),
            r#"identity_headers.prefix "x!" must be 3+ header-name characters"#,
        ),
        (
            providers(&[
                "    - { name: a, issuer: \"https://x/\", audiences: [api] }\n".to_owned(),
                "    - { name: a, issuer: \"https://y/\", audiences: [api] }\n".to_owned(),
            ]),
            r#"provider name "a" is used twice"#,
        ),
        (
            providers(&["    - { name: a, issuer: \"https://a/\", audiences: [] }\n".to_owned()]),
            r#"provider "a" needs at least one audience"#,
        ),
        (providers(&[provider_yaml("a", "      algorithms: []\n")]), r#"provider "a" allows no algorithm"#),
        (
            providers(&["    - { name: a, issuer: a.example, audiences: [api] }\n".to_owned()]),
            r#"provider "a": issuer must be an http(s) URL"#,
        ),
        (
            providers(&[
                "    - { name: a, issuer: \"https://x/\", audiences: [api] }\n".to_owned(),
                "    - { name: b, issuer: \"https://x/\", audiences: [api] }\n".to_owned(),
            ]),
            r#"issuer "https://x/" is configured twice"#,
        ),
        (
            format!(
                "{}  gateway_tokens: {{ issuer: \"https://a.example/\", keys_dir: /k }}\n",
                providers(&[provider_yaml("a", "")])
            ),
            r#"gateway_tokens.issuer equals provider "a"'s issuer"#,
        ),
        (
            providers(&[provider_yaml("a", "      tenants: []\n")]),
            r#"provider "a": tenants is empty (omit it for no bound)"#,
        ),
        (
            providers(&[provider_yaml("a", "      tenants: [\"t u\"]\n")]),
            r#"provider "a": tenant "t u" must be 1..=256 visible ASCII characters without commas"#,
        ),
        (providers(&[provider_yaml("a", "      tenants: [t, t]\n")]), r#"provider "a": tenant "t" is listed twice"#),
        (
            gateway("{ keys_dir: /k, active_key: v1, keys: { v1: { value: x } } }"),
            "gateway_tokens: set either keys_dir or active_key and keys, not both",
        ),
        (
            gateway("{ keys_dir: /k, keys: { v1: { value: x } } }"),
            "gateway_tokens: set either keys_dir or keys, not both",
        ),
        (gateway("{}"), "gateway_tokens needs keys_dir, or active_key and keys"),
        (
            gateway("{ active_key: v2, keys: { v1: { value: x } } }"),
            r#"gateway_tokens.active_key "v2" is not among keys"#,
        ),
        ("plugins: { deadline_ms: 0 }".to_owned(), "plugins.deadline_ms must be within 1..=10000"),
        ("plugins: { max_memory_bytes: 1000 }".to_owned(), "plugins.max_memory_bytes must be at least 1 MiB"),
        ("policy: { tenants: { \"\": {} } }".to_owned(), r#"policy.tenants: tenant name "" must be 1..=256 bytes"#),
        ("policy: { tenants: { acme: {} } }".to_owned(), "policy.tenants.acme overrides nothing"),
        (
            "requests: { trusted_proxies: [\" proxy \"] }".to_owned(),
            r#"requests.trusted_proxies: "proxy" is not a CIDR or an IP address"#,
        ),
        ("requests: { strip_headers: [\"a b\"] }".to_owned(), r#"requests.strip_headers: "a b" is not a header name"#),
        (
            format!(
                "{}{}",
                route("match: { path_prefix: /a }"),
                "  - { name: r, match: { path_prefix: /b }, upstream: \"http://127.0.0.1:1\" }\n"
            ),
            r#"route name "r" is used twice"#,
        ),
        (
            "routes:\n  - { name: r, match: { path_prefix: / }, upstream: \"https://x\" }\n".to_owned(),
            r#"route "r": upstream must be unix:///path or http://host:port"#,
        ),
        (route("match: { path_prefix: v1 }"), r#"route "r": path_prefix must start with '/'"#),
        (
            route("match: { path_prefix: /a//b }"),
            r#"route "r": path_prefix "/a//b" is not a canonical path (no dot-segments, repeated slashes or escapes that decode), so no request could match it"#,
        ),
        (
            route("match: { path_prefix: / }, allow_upgrade: true, upstream_protocol: h2"),
            r#"route "r": allow_upgrade needs an http1 upstream"#,
        ),
        (
            route("match: { grpc_service: pkg.Svc }, allow_upgrade: true"),
            r#"route "r": allow_upgrade does not apply to gRPC routes"#,
        ),
        (route("match: { path_prefix: / }, max_connections: 0"), r#"route "r": max_connections must be at least 1"#),
        (
            route("match: { path_prefix: / }, allow_query_token: true"),
            r#"route "r" allows query tokens but auth.query_parameter is unset"#,
        ),
        ("server: { max_connections: 0 }".to_owned(), "server.max_connections must be within 1..=1000000, got 0"),
        ("login: { issuer: \"https://id\", client_id: \"\" }".to_owned(), "login: client_id must not be empty"),
    ];
    for (yaml, message) in cases {
        let err = Config::from_yaml(&yaml).expect_err(message);
        assert_eq!(err.to_string(), format!("invalid config: {message}"), "{yaml}");
        assert!(std::error::Error::source(&err).is_none(), "the message is said once: {err:?}");
    }
}

#[test]
fn each_section_refuses_with_its_own_error_type() {
    let err = |yaml: &str| Config::from_yaml(yaml).expect_err(yaml);
    assert!(matches!(err("server: { max_connections: 0 }"), ConfigError::Server(e) if e.key == "max_connections"));
    assert!(matches!(err("login: { client_id: cli }"), ConfigError::Login(LoginConfigError::NoEndpoints)));
    assert!(matches!(err("auth: { gateway_tokens: {} }"), ConfigError::Auth(AuthConfigError::NoGatewayKeys)));
    assert!(matches!(err("plugins: { deadline_ms: 0 }"), ConfigError::Policy(PolicyConfigError::Deadline)));
    assert!(matches!(
        err("requests: { strip_headers: [\"a b\"] }"),
        ConfigError::Requests(RequestsConfigError::StripHeader(_))
    ));
    assert!(matches!(
        err("routes:\n  - { name: r, match: { path_prefix: / }, upstream: x }\n"),
        ConfigError::Routes(RouteConfigError::Upstream(r)) if r == "r"
    ));
    // `drivers:` checks itself while it is read: the YAML error says where.
    let e = err("drivers:\n  credentials: { socket: c, timeout_ms: 0 }\n");
    assert!(matches!(e, ConfigError::Parse(_)), "{e:?}");
    assert!(e.to_string().contains("drivers.credentials.timeout_ms must be 1..=60000"), "{e}");
}

#[test]
fn a_loaded_config_is_checked_once_and_any_other_when_it_is_used() {
    let loaded = Config::from_yaml("{}").expect("valid");
    assert!(loaded.validated && loaded.ensure_valid().is_ok());
    // Deserialized without `from_yaml`: not trusted until checked.
    let raw: Config = serde_norway::from_str("plugins: { deadline_ms: 0 }").expect("parses");
    assert!(!raw.validated);
    let e = raw.ensure_valid().expect_err("checked when used");
    assert_eq!(e.to_string(), "invalid config: plugins.deadline_ms must be within 1..=10000");
    assert!(Config::from_yaml("validated: true\n").is_err(), "the marker is not a YAML key");
}

#[test]
fn an_admin_scope_needs_something_that_verifies_tokens() {
    let err = Config::from_yaml("admin: { require_scope: wasmgate:admin }\n").expect_err("nothing verifies a token");
    assert!(err.to_string().contains("admin.require_scope needs a way to verify bearer tokens"), "{err}");
    let yaml = "admin: { require_scope: wasmgate:admin }\nauth:\n  gateway_tokens:\n    active_key: v1\n    keys:\n      v1: { value: \"0123456789abcdef0123456789abcdef\" }\n";
    Config::from_yaml(yaml).expect("gateway tokens verify admin tokens");
}

#[test]
fn workers_default_to_the_runtime_and_are_bounded() {
    assert_eq!(Config::from_yaml("{}").expect("empty").workers, None);
    assert_eq!(Config::from_yaml("workers: 1").expect("one").workers, Some(1));
    assert_eq!(Config::from_yaml("workers: 1024").expect("max").workers, Some(MAX_WORKERS));
    for bad in ["workers: 0", "workers: 1025"] {
        let e = Config::from_yaml(bad).expect_err(bad);
        assert!(matches!(e, ConfigError::Workers(_)), "{bad}: {e}");
        assert!(e.to_string().contains("workers must be 1 to 1024"), "{e}");
    }
    assert!(matches!(Config::from_yaml("workers: -1"), Err(ConfigError::Parse(_))));
}
