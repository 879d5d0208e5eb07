//! Failure handling of the typed calls, on the misbehaving fixture and the
//! default components.

use std::time::Duration;

use super::*;
use crate::config::PluginsConfig;
use crate::plugins::{GuestErrorKind, builtin_bytes, fixture_path};

fn request(path: &str) -> id::AuthzRequest {
    id::AuthzRequest {
        call: id::CallInfo {
            protocol: id::Protocol::Http,
            http_method: "GET".into(),
            path: path.into(),
            grpc_service: String::new(),
            grpc_method: String::new(),
            route: "r".into(),
            authority: "a".into(),
        },
        classification: id::Classification { class: id::AuthClass::Unauthenticated, required_scopes: vec![] },
        authentication: id::Authentication::anonymous(),
    }
}

async fn misbehaving(reuse: bool) -> (PluginEngine, Binding) {
    let cfg =
        PluginsConfig { instance_reuse: reuse, deadline_ms: 20, max_memory_bytes: 4 << 20, ..PluginsConfig::default() };
    let engine = PluginEngine::new(&cfg).expect("engine");
    let plugin = engine.load_file(&fixture_path("misbehaving_authorizer")).await.expect("fixture loads");
    let binding = Binding::new(&engine, plugin, &BTreeMap::new());
    (engine, binding)
}

fn warm(b: &Binding) -> usize {
    b.pool.idle_len()
}

#[tokio::test]
async fn failures_are_classified_and_the_next_call_gets_a_fresh_instance() {
    for reuse in [true, false] {
        let (_engine, b) = misbehaving(reuse).await;
        assert_eq!(b.authorize(&request("/ok")).await.expect("allowed"), id::Decision::Allow);
        assert_eq!(warm(&b), usize::from(reuse), "a successful instance is kept only with reuse");
        let started = std::time::Instant::now();
        assert!(matches!(b.authorize(&request("/loop")).await, Err(PolicyError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(2), "deadline enforced: {:?}", started.elapsed());
        assert_eq!(warm(&b), 0, "the instance that timed out is not reused");
        assert!(matches!(b.authorize(&request("/grow")).await, Err(PolicyError::MemoryLimit { .. })));
        assert!(matches!(b.authorize(&request("/trap")).await, Err(PolicyError::Trap { .. })));
        assert_eq!(warm(&b), 0);
        assert_eq!(b.authorize(&request("/ok")).await.expect("allowed after traps"), id::Decision::Allow);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn checklist_30_a_looping_component_yields_and_never_holds_the_worker() {
    let cfg = PluginsConfig { deadline_ms: 300, ..PluginsConfig::default() };
    let engine = PluginEngine::new(&cfg).expect("engine");
    let plugin = engine.load_file(&fixture_path("misbehaving_authorizer")).await.expect("fixture loads");
    let b = Binding::new(&engine, plugin, &BTreeMap::new());
    // One worker thread: the timer only fires if the loop yields.
    let other = async {
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        started.elapsed()
    };
    let looping = request("/loop");
    let started = std::time::Instant::now();
    let (looped, waited) = tokio::join!(b.authorize(&looping), other);
    assert!(matches!(looped, Err(PolicyError::Timeout { .. })), "{looped:?}");
    assert!(waited < Duration::from_millis(100), "the worker was held for {waited:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "deadline: {took:?}");
}

#[tokio::test]
async fn wrong_world_and_wrong_role_are_refused_with_the_reason() {
    let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
    let err = engine.load_file(&fixture_path("wrong_world")).await.expect_err("not a policy component");
    let msg = err.to_string();
    assert!(msg.contains("exports none of the policy interfaces") && msg.contains("wasi:cli/run"), "{msg}");
    let err = engine.load("junk", b"\0asm not really").await.expect_err("not wasm");
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
    let classifier = engine.load("c", builtin_bytes("default-classifier").expect("embedded")).await.expect("loads");
    let b = Binding::new(&engine, classifier, &BTreeMap::new());
    let msg = b.require(Interface::Authorizer).expect_err("wrong role").to_string();
    assert!(msg.contains("does not export wasmgate:policy/authorizer@0.1.0"), "{msg}");
    assert!(matches!(b.authorize(&request("/x")).await, Err(PolicyError::NotBound { .. })));
}

#[tokio::test]
async fn guest_errors_fail_closed() {
    let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
    let plugin = engine.load("c", builtin_bytes("default-classifier").expect("embedded")).await.expect("loads");
    let settings: BTreeMap<String, serde_json::Value> =
        [("methods".to_owned(), serde_json::json!("not a list"))].into_iter().collect();
    let b = Binding::new(&engine, plugin, &settings);
    let err = b.classify(&request("/x").call).await.expect_err("bad settings");
    assert!(matches!(err, PolicyError::Guest { kind: GuestErrorKind::InvalidConfig, .. }), "{err}");
    assert!(err.to_string().contains("returned an error: invalid-config: "), "{err}");
}
