//! One call to each default component, and the whole policy stage
//! (classify + map + authorize), with instance reuse (the default) and with
//! a fresh instance per call (`plugins.instance_reuse: false`), side by side.
//! Run: `cargo bench -p wasmgate --bench policy`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use wasmgate::config::PluginsConfig;
use wasmgate::identity::{
    AuthKind, Authentication, AuthzRequest, CallInfo, CredentialInfo, Decision, Protocol, TokenSource,
};
use wasmgate::plugins::{Binding, PluginEngine, builtin_bytes};

fn settings(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    serde_json::from_value(v).expect("settings map")
}

fn bench(c: &mut Criterion) {
    run(c, true);
    run(c, false);
}

fn run(c: &mut Criterion, reuse: bool) {
    let mode = if reuse { "reuse" } else { "fresh" };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine =
        PluginEngine::new(&PluginsConfig { instance_reuse: reuse, ..PluginsConfig::default() }).expect("engine");
    let load = |name: &str| rt.block_on(engine.load(name, builtin_bytes(name).expect("embedded"))).expect("load");

    let classifier = Binding::new(
        &engine,
        load("default-classifier"),
        &settings(json!({
            "wildcard-scope": "sandbox:all",
            "methods": [
                {"match": "/grpc.health.v1.Health/*", "class": "unauthenticated"},
                {"match": "/sandbox.v1.SandboxService/GetSandbox", "class": "dual-auth", "scopes": ["sandbox.read"]},
                {"match": "/sandbox.v1.SandboxService/ListSandboxes", "class": "bearer", "scopes": ["sandbox.read"]},
                {"match": "/sandbox.v1.SandboxService/CreateSandbox", "class": "bearer", "scopes": ["sandbox.write"]},
                {"match": "/sandbox.v1.SandboxService/UpdateConfig", "class": "bearer", "scopes": ["sandbox.admin"]},
            ]
        })),
    );
    let mapper = Binding::new(&engine, load("oidc-claims-mapper"), &settings(json!({"tenant-claim": "tenant"})));
    let authorizer = Binding::new(
        &engine,
        load("rbac-authorizer"),
        &settings(json!({
            "wildcard-scope": "sandbox:all",
            "admin-methods": ["/sandbox.v1.SandboxService/UpdateConfig"],
            "sandbox-methods": ["/sandbox.v1.SandboxService/GetSandbox"],
        })),
    );
    let credentials = Binding::new(&engine, load("default-credential-policy"), &BTreeMap::new());

    let call = CallInfo {
        protocol: Protocol::Grpc,
        http_method: "POST".into(),
        path: "/sandbox.v1.SandboxService/ListSandboxes".into(),
        grpc_service: "sandbox.v1.SandboxService".into(),
        grpc_method: "ListSandboxes".into(),
        route: "sandbox-grpc".into(),
        authority: "gateway.example".into(),
    };
    let claims = json!({
        "iss": "https://idp.example/realms/demo", "aud": "wasmgate", "sub": "bob",
        "iat": 1_700_000_000, "exp": 1_700_003_600, "azp": "cli",
        "realm_access": {"roles": ["user", "offline_access"]},
        "resource_access": {"account": {"roles": ["view-profile"]}},
        "scope": "openid profile sandbox.read sandbox.write", "groups": ["/eng"], "tenant": "acme",
    })
    .to_string();
    let catalogue = vec![CredentialInfo { name: "registry".into(), scopes: vec!["pull".into()] }];

    c.bench_function(&format!("{mode}/classifier/classify"), |b| {
        b.to_async(&rt).iter(|| async { classifier.classify(black_box(&call)).await.expect("classify") })
    });
    c.bench_function(&format!("{mode}/claims-mapper/map-claims"), |b| {
        b.to_async(&rt).iter(|| async { mapper.map_claims("dev", black_box(&claims)).await.expect("map") })
    });
    let principal = rt.block_on(mapper.map_claims("dev", &claims)).expect("map");
    let request = AuthzRequest {
        call: call.clone(),
        classification: rt.block_on(classifier.classify(&call)).expect("classify"),
        authentication: Authentication {
            kind: AuthKind::OidcToken,
            source: TokenSource::AuthorizationHeader,
            provider: Some("dev".into()),
            principal: Some(principal.clone()),
        },
    };
    assert_eq!(rt.block_on(authorizer.authorize(&request)).expect("authorize"), Decision::Allow);
    c.bench_function(&format!("{mode}/authorizer/authorize"), |b| {
        b.to_async(&rt).iter(|| async { authorizer.authorize(black_box(&request)).await.expect("authz") })
    });
    c.bench_function(&format!("{mode}/credential-policy/select-credentials"), |b| {
        b.to_async(&rt).iter(|| async {
            credentials.select_credentials(black_box(&call), Some(&principal), &catalogue).await.expect("select")
        })
    });
    c.bench_function(&format!("{mode}/policy-stage/classify+map+authorize"), |b| {
        b.to_async(&rt).iter(|| async {
            let classification = classifier.classify(black_box(&call)).await.expect("classify");
            let principal = mapper.map_claims("dev", black_box(&claims)).await.expect("map");
            let request = AuthzRequest {
                call: call.clone(),
                classification,
                authentication: Authentication {
                    kind: AuthKind::OidcToken,
                    source: TokenSource::AuthorizationHeader,
                    provider: Some("dev".into()),
                    principal: Some(principal),
                },
            };
            authorizer.authorize(&request).await.expect("authorize")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
