//! Live policy through the real binary: per-tenant bindings for two identity
//! providers, shadow evaluation, rejected hot-swap candidates, a Kubernetes
//! symlink swap, and 50 swaps under concurrent load.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasmgate::demo::{DEMO_AUDIENCE, DevIssuer};

use crate::support::{self, Env, free_port, now, start};

fn http() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().expect("client")
}

/// A plugin folder whose files are replaced the way an operator or a
/// ConfigMap does it: written beside, then renamed over.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn put(&self, name: &str, bytes: &[u8]) {
        let tmp = self.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, self.path().join(name)).expect("rename");
    }

    fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.path().join(name));
    }
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(support::fixture(name)).expect("fixture")
}

fn rbac_bytes() -> Vec<u8> {
    wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded").to_vec()
}

/// A component whose only core module fails validation (`i64.const` where
/// the function returns `i32`): it parses, but does not compile.
fn component_that_does_not_compile() -> Vec<u8> {
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // core module header
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: (func (result i32))
        0x03, 0x02, 0x01, 0x00, // one function of that type
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x42, 0x00, 0x0b, // body: i64.const 0, end
    ];
    let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, 0x01, module.len() as u8];
    c.extend_from_slice(module);
    c
}

/// Adds an admin listener and `plugins:` settings to the demo config.
fn with_plugins(yaml: String, admin: SocketAddr, plugins: &str) -> String {
    yaml.replacen("policy:", &format!("admin: {{ listen: \"{admin}\" }}\nplugins:\n{plugins}policy:"), 1)
}

async fn admin_status(c: &reqwest::Client, admin: SocketAddr) -> Value {
    c.get(format!("http://{admin}/admin/plugins")).send().await.expect("admin").json().await.expect("json")
}

async fn caller(env: &Env, c: &reqwest::Client, token: &str) -> (u16, Value) {
    let r = c.get(env.url("/v1/caller")).bearer_auth(token).send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put_config(env: &Env, c: &reqwest::Client, token: &str) -> u16 {
    c.put(env.url("/v1/config"))
        .bearer_auth(token)
        .json(&json!({"max_sandboxes": 7, "default_image": "x"}))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_providers_map_to_two_tenants_with_their_own_authorizers() {
    // Provider "dev" (Keycloak layout, tenant from a claim) → tenant acme,
    // served by the global role-based authorizer. Provider "globex" (roles in
    // a namespaced claim, fixed tenant) → tenant globex, served by its own
    // authorizer binding in auth-only mode.
    let globex = DevIssuer::start().await.expect("second issuer");
    let admin = free_port();
    let globex_issuer = globex.issuer().to_owned();
    let env = start(|y| {
        let provider = format!(
            "  providers:\n    - name: globex\n      issuer: \"{globex_issuer}\"\n      audiences: [\"{DEMO_AUDIENCE}\"]\n      algorithms: [ES256]\n      claims_mapper:\n        plugin: builtin:oidc-claims-mapper\n        settings:\n          tenant: globex\n          roles-claims: [[\"https://example.com/roles\"]]\n"
        );
        let tenants = "  tenants:\n    globex:\n      authorizer:\n        plugin: builtin:rbac-authorizer\n        settings: { admin-role: \"\", user-role: \"\", wildcard-scope: \"sandbox:all\" }\nroutes:";
        with_plugins(y.replacen("  providers:\n", &provider, 1).replacen("routes:", tenants, 1), admin, "")
    })
    .await;
    let c = http();
    let acme_user = env.token("bob", &["user"], "sandbox.read sandbox.admin");
    let globex_user = globex
        .sign(&json!({
            "iss": globex.issuer(), "aud": DEMO_AUDIENCE, "sub": "gina", "iat": now(), "exp": now() + 600,
            "https://example.com/roles": ["user"], "scope": "sandbox.read sandbox.admin",
        }))
        .expect("sign");

    // Both at once, each mapped by its provider's layout.
    let (a, b) = tokio::join!(caller(&env, &c, &acme_user), caller(&env, &c, &globex_user));
    assert_eq!(a.0, 200, "{}", env.logs());
    assert_eq!(b.0, 200, "{}", env.logs());
    let (ah, bh) = (&a.1["identity_headers"], &b.1["identity_headers"]);
    assert_eq!((ah["x-wasmgate-tenant"].as_str(), ah["x-wasmgate-provider"].as_str()), (Some("acme"), Some("dev")));
    assert_eq!(
        (bh["x-wasmgate-tenant"].as_str(), bh["x-wasmgate-provider"].as_str()),
        (Some("globex"), Some("globex"))
    );
    assert_eq!(ah["x-wasmgate-roles"].as_str(), Some("user"));
    assert_eq!(bh["x-wasmgate-roles"].as_str(), Some("user"), "the namespaced roles claim is read for globex");

    // The same admin method: the global authorizer refuses a user, globex's own allows any principal holding the scope.
    assert_eq!(put_config(&env, &c, &acme_user).await, 403);
    assert_eq!(put_config(&env, &c, &globex_user).await, 200);

    // A namespaced roles claim means nothing to the Keycloak-layout mapper.
    let mut claims = env.claims("carol");
    claims.as_object_mut().expect("object").remove("realm_access");
    claims["https://example.com/roles"] = json!(["admin"]);
    assert_eq!(caller(&env, &c, &env.sign(claims)).await.0, 403);

    let status = admin_status(&c, admin).await;
    let bindings = status["bindings"].as_array().expect("bindings");
    assert!(
        bindings.iter().any(|b| b["role"] == "authorizer" && b["scope"] == json!({"kind": "tenant", "name": "globex"})),
        "{status}"
    );
    assert!(
        bindings
            .iter()
            .any(|b| b["role"] == "claims-mapper" && b["scope"] == json!({"kind": "provider", "name": "globex"})),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_authorizer_is_compared_and_counted_but_never_decides() {
    let admin = free_port();
    let shadow = support::path_str(&support::fixture("misbehaving_authorizer"));
    let env = start(|y| {
        let y = y.replacen(
            "  authorizer:\n    plugin: builtin:rbac-authorizer\n",
            &format!("  authorizer:\n    plugin: builtin:rbac-authorizer\n    shadow: {{ plugin: \"{shadow}\" }}\n"),
            1,
        );
        with_plugins(y, admin, "  deadline_ms: 100\n")
    })
    .await;
    let c = http();
    let user = env.user();
    // rbac denies a user the admin method; the shadow (allows everything) disagrees.
    assert_eq!(put_config(&env, &c, &user).await, 403, "the shadow never decides");
    // Both allow.
    assert_eq!(caller(&env, &c, &user).await.0, 200);
    // The shadow traps or loops: the outcome and its latency stay the active one's.
    for path in ["/v1/trap", "/v1/loop"] {
        let started = Instant::now();
        let r = c.get(env.url(path)).bearer_auth(&user).send().await.expect("send");
        assert_eq!(r.status(), 403, "{path}");
        assert!(started.elapsed() < Duration::from_millis(90), "{path} waited for the shadow: {:?}", started.elapsed());
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let status = admin_status(&c, admin).await;
        let b = status["bindings"]
            .as_array()
            .and_then(|v| v.iter().find(|b| b["role"] == "authorizer" && b["scope"]["kind"] == "global").cloned())
            .expect("global authorizer binding");
        assert_eq!(b["shadow"], "misbehaving_authorizer", "{status}");
        let counts = b["shadow_counts"].clone();
        if counts["disagreements"].as_u64() >= Some(3) && counts["agreements"].as_u64() >= Some(1) {
            let plugin = status["plugins"]
                .as_array()
                .and_then(|v| v.iter().find(|p| p["name"] == "misbehaving_authorizer").cloned())
                .expect("shadow plugin listed");
            assert_eq!(plugin["shadow_disagreements"], counts["disagreements"], "{status}");
            break counts;
        }
        assert!(Instant::now() < deadline, "shadow counts never arrived: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(counts["disagreements"], 3, "admin method, trap and loop: {counts}");
    assert_eq!(counts["agreements"], 1, "{counts}");

    let logs = env.logs();
    // Each call's one decision record says what the shadow answered, or
    // that it had not yet when the response head was known.
    let records = crate::decision_log::records(&logs);
    for path in ["/v1/trap", "/v1/loop"] {
        let record = records.iter().find(|r| r["path"] == path).expect("a record");
        assert!(["pending", "failed (trap)", "failed (timeout)"].iter().any(|s| record["shadow"] == *s), "{record}");
    }
    assert!(records.iter().any(|r| r["shadow"] == "allow" || r["shadow"] == "pending"), "{logs}");
    assert!(
        logs.contains("shadow disagrees")
            && logs.contains("active_outcome=deny")
            && logs.contains("shadow_outcome=allow"),
        "{logs}"
    );
    assert!(
        logs.contains("shadow_outcome=failed (timeout)") && logs.contains("shadow_outcome=failed (trap)"),
        "{logs}"
    );
    let metrics = c.get(format!("http://{admin}/metrics")).send().await.expect("metrics").text().await.expect("body");
    let line = "wasmgate_shadow_evaluations_total{role=\"authorizer\",active=\"rbac-authorizer\",shadow=\"misbehaving_authorizer\",result=\"disagree\"} 3";
    assert!(metrics.contains(line), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_candidates_name_the_reason_and_the_old_version_keeps_serving() {
    let folder = Folder::new();
    folder.put("authz.wasm", &rbac_bytes());
    let admin = free_port();
    let dir = support::path_str(folder.path());
    let env = start(|y| {
        with_plugins(y, admin, &format!("  dir: \"{dir}\"\n"))
            .replace("plugin: builtin:rbac-authorizer", "plugin: authz.wasm")
    })
    .await;
    let c = http();
    let user = env.user();
    let reload = || async { c.post(format!("http://{admin}/admin/reload")).send().await.expect("reload") };
    let wrong_case = "settings: { admin-methods: [/v1/config] }\ncases:\n  - name: users may change the config\n    authorize:\n      call: { path: /v1/config, http-method: PUT }\n      classification: { class: bearer, required-scopes: [sandbox.read] }\n      authentication: { kind: oidc-token, source: authorization-header, principal: { subject: bob, roles: [user], scopes: [sandbox.read] } }\n    expect: allow\n";

    /// What, the component bytes, a cases file beside it, and what the rejection must say.
    type Candidate<'a> = (&'a str, Vec<u8>, Option<&'a str>, &'a [&'a str]);
    let candidates: Vec<Candidate> = vec![
        ("not a component", b"definitely not wasm".to_vec(), None, &["not a valid WebAssembly component"]),
        ("wrong world", fixture_bytes("wrong_world"), None, &["exports none of the policy interfaces"]),
        ("trap during instantiation", fixture_bytes("trap_on_instantiate"), None, &["instantiation failed"]),
        (
            "compile error",
            component_that_does_not_compile(),
            None,
            &["not a valid WebAssembly component", "type mismatch"],
        ),
        (
            "failing golden case",
            rbac_bytes(),
            Some(wrong_case),
            &["golden case \"users may change the config\" failed"],
        ),
    ];
    for (what, bytes, cases, expected) in candidates {
        if let Some(text) = cases {
            folder.put("authz.cases.yaml", text.as_bytes());
        }
        folder.put("authz.wasm", &bytes);
        let r = reload().await;
        assert_eq!(r.status(), 422, "{what} must be rejected");
        let body: Value = r.json().await.expect("json");
        let error = body["error"].as_str().unwrap_or_default();
        for e in expected {
            assert!(error.contains(e), "{what}: {e:?} not in {error:?}");
        }
        // The last good set (rbac) still decides.
        assert_eq!(put_config(&env, &c, &user).await, 403, "{what}: old version serving");
        assert_eq!(caller(&env, &c, &user).await.0, 200, "{what}: old version serving");
        let status = admin_status(&c, admin).await;
        assert!(status["reload"]["last_error"].as_str().is_some_and(|e| e.contains(expected[0])), "{status}");
        folder.remove("authz.cases.yaml");
    }

    // A candidate whose golden cases pass is taken, and says so.
    let right_case = wrong_case.replace("expect: allow", "expect: { deny: admin method }");
    folder.put("authz.cases.yaml", right_case.as_bytes());
    folder.put("authz.wasm", &rbac_bytes());
    let r = reload().await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let status = admin_status(&c, admin).await;
    let authz = status["plugins"]
        .as_array()
        .and_then(|v| v.iter().find(|p| p["name"] == "authz").cloned())
        .expect("authz listed");
    assert_eq!(authz["golden_cases"], 1, "{status}");
    assert_eq!(authz["source"], "authz.wasm", "{status}");
    assert_eq!(authz["wit"], "wasmgate:policy@0.1.0");
    assert!(authz["loaded_at_unix"].as_u64() > Some(0));
    assert_eq!(authz["bindings"], json!([{"role": "authorizer", "scope": {"kind": "global"}, "shadow": false}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_symlink_swap_of_the_plugin_folder_is_picked_up() {
    // The layout a ConfigMap or Secret volume has: authz.wasm → ..data/authz.wasm,
    // ..data → ..v1; an update writes ..v2 and renames a new ..data link over the old.
    let folder = Folder::new();
    let root = folder.path();
    std::fs::create_dir(root.join("..v1")).expect("mkdir");
    std::fs::write(root.join("..v1/authz.wasm"), rbac_bytes()).expect("write");
    std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/authz.wasm", root.join("authz.wasm")).expect("symlink");
    let admin = free_port();
    let dir = support::path_str(root);
    let env = start(|y| {
        with_plugins(y, admin, &format!("  dir: \"{dir}\"\n"))
            .replace("plugin: builtin:rbac-authorizer", "plugin: authz.wasm")
    })
    .await;
    let c = http();
    let user = env.user();
    assert_eq!(put_config(&env, &c, &user).await, 403);

    std::fs::create_dir(root.join("..v2")).expect("mkdir");
    std::fs::write(root.join("..v2/authz.wasm"), fixture_bytes("misbehaving_authorizer")).expect("write");
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).expect("symlink");
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("atomic swap");

    let deadline = Instant::now() + Duration::from_secs(10);
    while put_config(&env, &c, &user).await != 200 {
        assert!(Instant::now() < deadline, "symlink swap not picked up; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The version a response was mapped by (`version-A` or `version-B` in the roles header).
fn version_of(body: &Value) -> Option<char> {
    let roles = body["identity_headers"]["x-wasmgate-roles"].as_str()?;
    roles.split(',').find_map(|r| r.trim().strip_prefix("version-")).and_then(|v| v.chars().next())
}

fn versioned_mapper(version: u8) -> Vec<u8> {
    let mut bytes = fixture_bytes("versioned_mapper");
    let marker = b"WASMGATE-FIXTURE-VERSION:A";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("version marker present");
    bytes[at + marker.len() - 1] = version;
    bytes
}

async fn generation(c: &reqwest::Client, admin: SocketAddr) -> u64 {
    admin_status(c, admin).await["generation"].as_u64().expect("generation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_concurrent_load_fail_no_call_and_in_flight_calls_finish_on_the_old_version() {
    let folder = Folder::new();
    let cache = tempfile::tempdir().expect("cache dir");
    let (a, b) = (versioned_mapper(b'A'), versioned_mapper(b'B'));
    folder.put("mapper.wasm", &a);
    let admin = free_port();
    let (dir, cache_dir) = (support::path_str(folder.path()), support::path_str(&cache.path().join("cache")));
    let env = Arc::new(
        start(|y| {
            with_plugins(y, admin, &format!("  dir: \"{dir}\"\n  cache_dir: \"{cache_dir}\"\n  deadline_ms: 10000\n"))
                .replace("plugin: builtin:oidc-claims-mapper", "plugin: mapper.wasm")
        })
        .await,
    );
    let c = http();
    let token = env.token("bob", &["user"], "sandbox.read");
    let (status, body) = caller(&env, &c, &token).await;
    assert_eq!((status, version_of(&body)), (200, Some('A')), "{body}");

    // Load: 8 clients calling as fast as they can; every answer must be a
    // success mapped by one version or the other.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (env, stop, calls, failures, token) =
            (env.clone(), stop.clone(), calls.clone(), failures.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let c = http();
            let mut first_failure = None;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = caller(&env, &c, &token).await;
                calls.fetch_add(1, Ordering::Relaxed);
                if status != 200 || version_of(&body).is_none() {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_failure.get_or_insert(format!("{status} {body}"));
                }
            }
            first_failure
        }));
    }

    let mut live = Vec::new();
    let mut gen_now = generation(&c, admin).await;
    for i in 0..50 {
        let written = Instant::now();
        folder.put("mapper.wasm", if i % 2 == 0 { &b } else { &a });
        let deadline = written + Duration::from_secs(20);
        loop {
            let g = generation(&c, admin).await;
            if g > gen_now {
                gen_now = g;
                break;
            }
            assert!(Instant::now() < deadline, "swap {i} not live in 20 s; log:\n{}", env.logs());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        live.push(written.elapsed());
    }
    // Let the load see the last version too, then stop it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        if let Some(f) = w.await.expect("worker") {
            panic!("a call failed during the swaps: {f}");
        }
    }
    let (calls, failures) = (calls.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    assert_eq!(failures, 0);
    assert!(calls >= 1000, "only {calls} calls during 50 swaps");
    let (_, body) = caller(&env, &c, &token).await;
    assert_eq!(version_of(&body), Some('A'), "the 50th swap (to A) serves");
    live.sort();
    eprintln!(
        "50 swaps under load: {calls} calls, 0 failed; write→live median {:?}, max {:?}",
        live[live.len() / 2],
        live[live.len() - 1]
    );

    // In flight across a swap: a call whose mapping spins for a while is
    // started on A, B is swapped in meanwhile, and the call still answers A.
    let spin_token = |spin: u64, sub: &str| {
        let mut claims = env.claims(sub);
        claims["roles"] = json!(["user"]);
        claims["spin"] = json!(spin);
        env.sign(claims)
    };
    let probe = Instant::now();
    assert_eq!(caller(&env, &c, &spin_token(20_000_000, "probe")).await.0, 200);
    let per_spin = probe.elapsed().as_secs_f64() / 20_000_000.0;
    let spin = ((1.5 / per_spin) as u64).clamp(20_000_000, 20_000_000_000);
    let slow_token = spin_token(spin, "slow");
    let slow = {
        let (env, token) = (env.clone(), slow_token.clone());
        tokio::spawn(async move { caller(&env, &http(), &token).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    folder.put("mapper.wasm", &b);
    let deadline = Instant::now() + Duration::from_secs(20);
    while generation(&c, admin).await == gen_now {
        assert!(Instant::now() < deadline, "swap not live");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!slow.is_finished(), "the slow call must still be in flight when B goes live (raise the spin)");
    let (_, fresh) = caller(&env, &c, &token).await;
    assert_eq!(version_of(&fresh), Some('B'), "new calls get B");
    let (status, old) = slow.await.expect("slow call");
    assert_eq!((status, version_of(&old)), (200, Some('A')), "the in-flight call finished on A: {old}");

    // Every version was compiled once; the swaps back found it in the precompile cache.
    let cached = std::fs::read_dir(cache.path().join("cache")).expect("cache dir").count();
    assert!(cached >= 2, "{cached} artifacts cached");
}

/// The principal a token mapped to is kept in its token-cache entry for the
/// policy generation that mapped it: after a hot swap of the claims mapper
/// the same (cached) token is mapped again by the new mapper, never served
/// the old principal; and with the cache off (`max_bytes: 0`) every call
/// maps afresh and still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_swapped_mapper_maps_a_cached_token_again() {
    for max_bytes in ["16777216", "0"] {
        let folder = Folder::new();
        folder.put("mapper.wasm", &versioned_mapper(b'A'));
        let admin = free_port();
        let dir = support::path_str(folder.path());
        let env = start(|y| {
            with_plugins(y, admin, &format!("  dir: \"{dir}\"\n"))
                .replace("plugin: builtin:oidc-claims-mapper", "plugin: mapper.wasm")
                .replacen("auth:\n", &format!("auth:\n  token_cache: {{ max_bytes: {max_bytes} }}\n"), 1)
        })
        .await;
        let c = http();
        let token = env.token("bob", &["user"], "sandbox.read");
        for _ in 0..3 {
            let (status, body) = caller(&env, &c, &token).await;
            assert_eq!((status, version_of(&body)), (200, Some('A')), "max_bytes {max_bytes}: {body}");
        }
        let before = generation(&c, admin).await;
        folder.put("mapper.wasm", &versioned_mapper(b'B'));
        let deadline = Instant::now() + Duration::from_secs(20);
        while generation(&c, admin).await == before {
            assert!(Instant::now() < deadline, "swap not live; log:\n{}", env.logs());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..3 {
            let (status, body) = caller(&env, &c, &token).await;
            assert_eq!((status, version_of(&body)), (200, Some('B')), "max_bytes {max_bytes}: {body}");
        }
    }
}
