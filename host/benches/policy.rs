//! One call to each default component, and the whole policy stage
//! (classify + map + authorize), with instance reuse (the default) and with
//! a fresh instance per call (`plugins.instance_reuse: false`), side by side.
//!
//! `*/policy-stage/classify+map+authorize` calls the three components
//! directly, every time. `*/pipeline-stage/...` is the stage as the gateway
//! runs it for a known token: the classification and principal caches, and
//! the authorizer through the decision cache (`decision-cache`) or asked on
//! every call (`cache_decisions-false`, what the gateway did before the
//! decision cache).
//! Run: `cargo bench -p wasmgate --bench policy`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use wasmgate::auth::{Verified, VerifiedToken};
use wasmgate::config::{Config, PluginsConfig};
use wasmgate::identity::{
    AuthKind, Authentication, AuthzRequest, CallInfo, CredentialInfo, Decision, Protocol, TokenSource,
};
use wasmgate::plugins::{Binding, PluginEngine, PolicySet, builtin_bytes};
use wasmgate::server::PolicyStage;

fn settings(v: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    serde_json::from_value(v).expect("settings map")
}

fn bench(c: &mut Criterion) {
    run(c, true, None);
    run(c, false, None);
    // Other builds of the same components (say, another `opt-level`),
    // measured with reuse in the same run: folders holding
    // `default_classifier.wasm` etc., separated by `:`.
    if let Some(dirs) = std::env::var_os("WASMGATE_BENCH_PLUGIN_DIRS") {
        for dir in std::env::split_paths(&dirs) {
            run(c, true, Some(&dir));
        }
    }
}

fn run(c: &mut Criterion, reuse: bool, dir: Option<&std::path::Path>) {
    let mut mode = if reuse { "reuse" } else { "fresh" }.to_owned();
    if let Some(dir) = dir {
        mode = format!("{mode}-{}", dir.file_name().unwrap_or_default().to_string_lossy());
    }
    let mode = mode.as_str();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let engine =
        PluginEngine::new(&PluginsConfig { instance_reuse: reuse, ..PluginsConfig::default() }).expect("engine");
    let load = |name: &str| {
        let bytes = match dir {
            None => builtin_bytes(name).expect("embedded").to_vec(),
            Some(dir) => std::fs::read(dir.join(format!("{}.wasm", name.replace('-', "_")))).expect("component"),
        };
        rt.block_on(engine.load(name, &bytes)).expect("load")
    };

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
    if dir.is_none() {
        pipeline_stage(c, &rt, &engine, mode, &call, &claims);
    }
}

/// The gateway's own policy stage for a known token, with the decision
/// cache on and off, on the same settings as the direct calls above.
fn pipeline_stage(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    engine: &PluginEngine,
    mode: &str,
    call: &CallInfo,
    claims: &str,
) {
    let token = Verified::Oidc {
        provider: Arc::from("dev"),
        token: Arc::new(VerifiedToken::new(
            claims.to_owned(),
            "bob".into(),
            4_000_000_000,
            "https://idp.example/realms/demo".into(),
        )),
        source: TokenSource::AuthorizationHeader,
    };
    let method = http::Method::POST;
    for cache in [true, false] {
        let label = if cache { "decision-cache" } else { "cache_decisions-false" };
        let cfg = Config::from_yaml(&stage_config(cache)).expect("config");
        let policy = rt.block_on(PolicySet::build(engine, &cfg, 1, None)).expect("policy set");
        let stage = PolicyStage::default();
        let held = &Cell::new(Some(call.clone()));
        let (policy, stage, method, token) = (&policy, &stage, &method, &token);
        let once = move || async move {
            let call = held.take().expect("the call");
            let (call, decision) = stage.run(policy, 0, method, call, token).await;
            held.set(Some(call));
            decision.expect("decided")
        };
        assert_eq!(rt.block_on(once()), Decision::Allow);
        c.bench_function(&format!("{mode}/pipeline-stage/{label}"), |b| b.to_async(rt).iter(once));
    }
}

fn stage_config(cache_decisions: bool) -> String {
    format!(
        r#"
auth:
  providers:
    - name: dev
      issuer: "https://idp.example/realms/demo"
      audiences: [wasmgate]
      algorithms: [ES256]
      claims_mapper: {{ plugin: builtin:oidc-claims-mapper, settings: {{ tenant-claim: tenant }} }}
policy:
  classifier:
    plugin: builtin:default-classifier
    settings:
      wildcard-scope: "sandbox:all"
      methods:
        - {{ match: "/grpc.health.v1.Health/*", class: unauthenticated }}
        - {{ match: "/sandbox.v1.SandboxService/GetSandbox", class: dual-auth, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/ListSandboxes", class: bearer, scopes: [sandbox.read] }}
        - {{ match: "/sandbox.v1.SandboxService/CreateSandbox", class: bearer, scopes: [sandbox.write] }}
        - {{ match: "/sandbox.v1.SandboxService/UpdateConfig", class: bearer, scopes: [sandbox.admin] }}
  authorizer:
    plugin: builtin:rbac-authorizer
    cache_decisions: {cache_decisions}
    settings:
      wildcard-scope: "sandbox:all"
      admin-methods: ["/sandbox.v1.SandboxService/UpdateConfig"]
      sandbox-methods: ["/sandbox.v1.SandboxService/GetSandbox"]
"#
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
