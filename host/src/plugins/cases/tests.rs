use std::sync::Arc;

use super::*;
use crate::config::PluginsConfig;
use crate::plugins::{Plugin, PluginEngine, builtin_bytes};

const RBAC_CASES: &str = r#"
settings:
  admin-methods: ["/admin/*"]
cases:
  - name: user calls a user method
    authorize:
      call: { path: /v1/things }
      authentication:
        kind: oidc-token
        source: authorization-header
        principal: { subject: alice, roles: [user] }
    expect: allow
  - name: user calls an admin method
    authorize:
      call: { path: /admin/x }
      authentication: { kind: oidc-token, source: authorization-header, principal: { subject: alice, roles: [user] } }
    expect: { deny: "admin method" }
  - name: no credential
    authorize: { call: { path: /v1/things } }
    expect: deny
  - name: malformed settings fail
    settings: { admin-methods: 7 }
    authorize: { call: { path: /v1/things } }
    expect: { error: invalid-config }
"#;

async fn rbac() -> (PluginEngine, Arc<Plugin>) {
    let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
    let plugin = engine.load("rbac", builtin_bytes("rbac-authorizer").expect("embedded")).await.expect("loads");
    (engine, plugin)
}

#[tokio::test]
async fn passing_cases_pass_and_a_wrong_expectation_is_reported() {
    let (engine, plugin) = rbac().await;
    let file = CaseFile::parse(Path::new("rbac.cases.yaml"), RBAC_CASES).expect("parses");
    let results = file.run(&engine, &plugin).await;
    assert_eq!(results.len(), 4);
    for r in &results {
        assert!(r.failure.is_none(), "{}: {:?}", r.name, r.failure);
    }

    let wrong = RBAC_CASES.replace("expect: allow", "expect: deny");
    let file = CaseFile::parse(Path::new("rbac.cases.yaml"), &wrong).expect("parses");
    let results = file.run(&engine, &plugin).await;
    let failure = results[0].failure.as_deref().expect("mismatch reported");
    assert!(failure.contains("expected \"deny\", got allow"), "{failure}");
    assert!(results[1..].iter().all(|r| r.failure.is_none()));
}

#[tokio::test]
async fn a_case_for_an_interface_the_component_lacks_fails() {
    let (engine, plugin) = rbac().await;
    let text = "cases:\n  - name: c\n    classify: { path: /x }\n    expect: { class: bearer }\n";
    let file = CaseFile::parse(Path::new("x.cases.yaml"), text).expect("parses");
    let failure = file.run(&engine, &plugin).await[0].failure.clone().expect("fails");
    assert!(failure.contains("does not export"), "{failure}");
}

#[test]
fn inputs_the_gateway_never_sends_are_refused() {
    let p = Path::new("x.cases.yaml");
    let tok = "source: authorization-header, principal: { subject: a }";
    let refused = [
        ("a principal without a credential", "authorize: { call: { path: /x }, authentication: { principal: { subject: a } } }".to_owned(), "never carries a principal"),
        ("a sandbox-secret caller with a principal", "authorize: { call: { path: /x }, authentication: { kind: sandbox-secret, source: sandbox-header, principal: { subject: a } } }".to_owned(), "never carries a principal"),
        ("nothing presented, from a header", "authorize: { call: { path: /x }, authentication: { source: authorization-header } }".to_owned(), "source none"),
        ("a token without its principal", "authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, provider: kc } }".to_owned(), "needs a principal"),
        ("a token from the sandbox header", "authorize: { call: { path: /x }, authentication: { kind: gateway-token, source: sandbox-header, principal: { subject: a } } }".to_owned(), "has source"),
        ("a gateway token with a provider", format!("authorize: {{ call: {{ path: /x }}, authentication: {{ kind: gateway-token, provider: kc, {tok} }} }}"), "only oidc-token"),
        ("a principal the host would refuse", "authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, provider: kc, principal: { subject: a, roles: [\"a b\"] } } }".to_owned(), "roles[0]"),
        ("an empty subject", "select-credentials: { call: { path: /x }, principal: { subject: \"\" } }".to_owned(), "subject is empty"),
        ("a gRPC GET", "classify: { protocol: grpc, http-method: GET, path: /a.B/C }".to_owned(), "always POST"),
        ("a gRPC call off a gRPC path", "classify: { protocol: grpc, path: /v1/things/1 }".to_owned(), "not a gRPC path"),
        ("a gRPC service other than the path's", "classify: { protocol: grpc, path: /a.B/C, grpc-service: x.Y }".to_owned(), "differ from the path"),
        ("an HTTP call with a gRPC method", "classify: { path: /x, grpc-method: C }".to_owned(), "only for gRPC"),
        ("too many required scopes", format!("authorize: {{ call: {{ path: /x }}, classification: {{ class: bearer, required-scopes: [{}] }} }}", (0..65).map(|i| format!("s{i}")).collect::<Vec<_>>().join(", ")), "required scopes"),
    ];
    for (what, call, expected) in refused {
        let text = format!("cases:\n  - name: c\n    {call}\n    expect: allow\n");
        let err = CaseFile::parse(p, &text).expect_err(what).to_string();
        assert!(err.contains(expected) && err.contains("case \"c\""), "{what}: {err}");
    }
}

#[test]
fn combinations_the_gateway_never_produces_are_accepted_with_a_warning() {
    let p = Path::new("x.cases.yaml");
    let text = r#"
cases:
  - { name: no token, authorize: { call: { path: /x } }, expect: deny }
  - name: secret on a bearer method
    authorize: { call: { path: /x }, authentication: { kind: sandbox-secret, source: sandbox-header } }
    expect: deny
  - name: no provider
    authorize: { call: { path: /x }, authentication: { kind: oidc-token, source: cookie, principal: { subject: a } } }
    expect: deny
  - { name: dot segments, classify: { path: /a/../b }, expect: error }
  - { name: open, authorize: { call: { path: /x }, classification: { class: unauthenticated } }, expect: allow }
  - name: token
    authorize:
      call: { protocol: grpc, path: /a.B/C }
      authentication: { kind: gateway-token, source: authorization-header, principal: { subject: a } }
    expect: allow
"#;
    let file = CaseFile::parse(p, text).expect("accepted");
    let w = file.warnings();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(w[0].starts_with("case \"no token\"") && w[0].contains("401"), "{}", w[0]);
    assert!(w[1].starts_with("case \"secret on a bearer method\"") && w[1].contains("sandbox-secret"), "{}", w[1]);
    assert!(w[2].contains("without a provider"), "{}", w[2]);
    assert!(w[3].starts_with("case \"dot segments\"") && w[3].contains("\"/b\""), "{}", w[3]);
}

#[test]
fn cases_are_found_beside_the_component_then_beside_the_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path().join("only-acme");
    let release = krate.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).expect("mkdir");
    let wasm = release.join("only_acme.wasm");
    assert_eq!(
        cases_candidates_for(&wasm),
        [release.join("only_acme.cases.yaml"), krate.join("only_acme.cases.yaml"), krate.join("only-acme.cases.yaml")]
    );
    assert!(CaseFile::find(&wasm).expect("none").is_none());
    let text = "cases:\n  - { name: c, classify: { path: /x }, expect: error }\n";
    std::fs::write(krate.join("only-acme.cases.yaml"), text).expect("write");
    let found = CaseFile::find(&wasm).expect("readable").expect("found beside the crate");
    assert_eq!(found.path(), krate.join("only-acme.cases.yaml"));
    std::fs::write(release.join("only_acme.cases.yaml"), text).expect("write");
    let found = CaseFile::find(&wasm).expect("readable").expect("found");
    assert_eq!(found.path(), release.join("only_acme.cases.yaml"), "beside the component first");
    assert_eq!(cases_candidates_for(Path::new("/p/authz.wasm")), [PathBuf::from("/p/authz.cases.yaml")]);
}

#[test]
fn malformed_files_are_refused_with_the_case_named() {
    let p = Path::new("x.cases.yaml");
    assert!(CaseFile::parse(p, "cases: []").is_err());
    let two_calls =
        "cases:\n  - name: a\n    classify: { path: /x }\n    authorize: { call: { path: /x } }\n    expect: allow\n";
    let msg = CaseFile::parse(p, two_calls).expect_err("two calls").to_string();
    assert!(msg.contains("\"a\"") && msg.contains("exactly one"), "{msg}");
    let dup = "cases:\n  - { name: a, classify: { path: /x }, expect: error }\n  - { name: a, classify: { path: /x }, expect: error }\n";
    assert!(CaseFile::parse(p, dup).expect_err("duplicate").to_string().contains("twice"));
    let unknown = "cases:\n  - { name: a, clasify: { path: /x }, expect: error }\n";
    assert!(CaseFile::parse(p, unknown).is_err());
    let grpc = "cases:\n  - { name: g, classify: { protocol: grpc, path: /a.B/C }, expect: error }\n";
    let file = CaseFile::parse(p, grpc).expect("parses");
    let CaseCall::Classify(call) = &file.cases[0].call else { panic!("classify") };
    assert_eq!(
        (call.grpc_service.as_str(), call.grpc_method.as_str(), call.http_method.as_str()),
        ("a.B", "C", "POST")
    );
}
