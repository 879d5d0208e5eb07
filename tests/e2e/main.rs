//! End-to-end tests: the real wasmgate binary, a real OIDC issuer over HTTP,
//! the real sample driver on a Unix socket, real HTTP and gRPC clients.

mod admin;
mod config_check;
mod connections;
mod credentials;
mod decision_log;
mod decisions;
mod first_hour;
mod framing;
mod gateway_tokens;
mod h2_abuse;
mod lifecycle;
mod login;
mod metrics;
mod nginx;
mod policy;
mod reload_honesty;
mod support;
mod tenants;
mod traces;
mod upstreams;

use std::time::{Duration, Instant};

use support::{SECRET, start, with_bearer};
use tonic::Code;
use wasmgate_proto::sandbox::{
    CreateSandboxRequest, DriverConfig, GetCallerRequest, ListSandboxesRequest, UpdateConfigRequest,
    WatchSandboxesRequest,
};

fn http() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_are_allowed_unauthenticated_or_forbidden() {
    let env = start(|y| y).await;
    let c = http();

    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(env.admin()).send().await.expect("send");
    assert_eq!(r.status(), 200, "admin lists sandboxes; log:\n{}", env.logs());

    let r = c.get(env.url("/v1/sandboxes")).send().await.expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="wasmgate""#);

    // Flip one character inside the signature.
    let mut forged = env.admin().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(&forged).send().await.expect("send");
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().expect("ascii").contains("invalid_token"));
    let body = r.text().await.expect("body");
    assert!(!body.contains("signature"), "no internals in client messages: {body}");

    let r = c
        .put(env.url("/v1/config"))
        .bearer_auth(env.user())
        .json(&serde_json::json!({"max_sandboxes": 5, "default_image": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403, "a user may not call an admin method");

    // A token for another audience, and an expired one.
    let mut other_aud = env.claims("carol");
    other_aud["aud"] = "someone-else".into();
    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(env.sign(other_aud)).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let mut expired = env.claims("carol");
    expired["exp"] = (support::now() - 3600).into();
    expired["iat"] = (support::now() - 7200).into();
    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(env.sign(expired)).send().await.expect("send");
    assert_eq!(r.status(), 401);

    // Scopes never escalate beyond roles: the wildcard scope without a role is denied.
    let no_role = env.token("dave", &[], "sandbox:all");
    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(no_role).send().await.expect("send");
    assert_eq!(r.status(), 403);

    // The sandbox secret reaches only the methods listed for it.
    let r = c.get(env.url("/v1/caller")).header("x-sandbox-secret", SECRET).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let r = c
        .get(env.url("/v1/caller"))
        .header("x-sandbox-secret", &SECRET[..SECRET.len() - 1])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "a near-miss secret is rejected");
    let r = c.get(env.url("/v1/sandboxes")).header("x-sandbox-secret", SECRET).send().await.expect("send");
    assert_eq!(r.status(), 401, "bearer-only methods ignore the sandbox secret");

    let r = c.get(env.url("/nowhere")).send().await.expect("send");
    assert_eq!(r.status(), 404);
    let r = c.get(env.url("/healthz")).send().await.expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_and_streaming_through_the_gateway() {
    let env = start(|y| y).await;
    let mut client = env.grpc().await;
    let admin = env.admin();
    let user = env.user();

    let created = client
        .create_sandbox(with_bearer(CreateSandboxRequest { name: "one".into(), image: "debian:stable".into() }, &user))
        .await
        .expect("user creates a sandbox")
        .into_inner();
    assert_eq!(created.tenant, "acme", "tenant comes from the gateway's identity header");
    assert_eq!(created.created_by, "bob");

    let listed = client
        .list_sandboxes(with_bearer(ListSandboxesRequest::default(), &admin))
        .await
        .expect("admin lists")
        .into_inner();
    assert!(listed.sandboxes.iter().any(|s| s.id == created.id));

    let err = client.list_sandboxes(ListSandboxesRequest::default()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = client
        .update_config(with_bearer(
            UpdateConfigRequest { config: Some(DriverConfig { max_sandboxes: 3, default_image: "x".into() }) },
            &user,
        ))
        .await
        .expect_err("user may not update config");
    assert_eq!(err.code(), Code::PermissionDenied);

    client
        .update_config(with_bearer(
            UpdateConfigRequest { config: Some(DriverConfig { max_sandboxes: 50, default_image: "x".into() }) },
            &admin,
        ))
        .await
        .expect("admin updates config");

    // Server streaming: one EXISTING event, then a CREATED one made while watching.
    let mut stream = client
        .watch_sandboxes(with_bearer(WatchSandboxesRequest { max_events: 2 }, &user))
        .await
        .expect("watch")
        .into_inner();
    let first = stream.message().await.expect("first event").expect("an event");
    assert_eq!(first.sandbox.expect("sandbox").id, created.id);
    let mut other = env.grpc().await;
    other
        .create_sandbox(with_bearer(CreateSandboxRequest { name: "two".into(), image: String::new() }, &user))
        .await
        .expect("create while watching");
    let second = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("event in time")
        .expect("stream ok")
        .expect("an event");
    assert_eq!(second.sandbox.expect("sandbox").name, "two");
    assert!(stream.message().await.expect("clean end").is_none(), "stream ends after max_events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_driver() {
    let env = start(|y| y).await;
    let mut client = env.grpc().await;
    let mut req = with_bearer(GetCallerRequest {}, &env.user());
    for (k, v) in [
        ("x-wasmgate-subject", "mallory"),
        ("x-wasmgate-tenant", "evil"),
        ("x_wasmgate_roles", "admin"),
        ("x-wasmgate-scopes", "sandbox:all"),
        ("x-remote-user", "mallory"),
    ] {
        req.metadata_mut()
            .insert(tonic::metadata::MetadataKey::from_bytes(k.as_bytes()).expect("key"), v.parse().expect("value"));
    }
    let caller = client.get_caller(req).await.expect("get caller").into_inner();
    assert_eq!(caller.identity_headers.get("x-wasmgate-subject").map(String::as_str), Some("bob"));
    assert_eq!(caller.identity_headers.get("x-wasmgate-tenant").map(String::as_str), Some("acme"));
    assert_eq!(caller.identity_headers.get("x-wasmgate-roles").map(String::as_str), Some("user"));
    assert!(!caller.authorization_present, "Authorization is dropped upstream by default");
    assert!(!caller.header_names.iter().any(|h| h.contains("remote-user") || h.starts_with("x_")));

    // On a sandbox-secret call there is no principal: no subject at all, and
    // the secret itself is not forwarded.
    let c = http();
    let r = c
        .get(env.url("/v1/caller"))
        .header("x-sandbox-secret", SECRET)
        .header("X-WASMGATE-SUBJECT", "mallory")
        .header("x_wasmgate_subject", "mallory")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    let text = body.to_string();
    assert!(!text.contains("mallory"), "{text}");
    assert!(!text.contains(SECRET), "the sandbox secret never reaches the driver: {text}");
}

/// Serves `/v1/*` without authentication so the misbehaving authorizer is
/// what decides; it loops, grows memory or traps depending on the path.
fn misbehaving(yaml: String, admin: std::net::SocketAddr) -> String {
    let plugin = support::path_str(&support::fixture("misbehaving_authorizer"));
    yaml.replace(
        "        - { match: \"/v1/healthz\", class: unauthenticated }",
        "        - { match: \"/v1/*\", class: unauthenticated }",
    )
    .replace("plugin: builtin:rbac-authorizer", &format!("plugin: \"{plugin}\""))
    .replacen(
        "policy:",
        &format!(
            "admin: {{ listen: \"{admin}\" }}\nplugins:\n  deadline_ms: 100\n  max_memory_bytes: 8388608\npolicy:"
        ),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_components_fail_closed_and_the_next_call_succeeds() {
    let admin = support::free_port();
    let env = start(|y| misbehaving(y, admin)).await;
    let c = http();
    for path in ["/v1/loop", "/v1/grow", "/v1/trap"] {
        let started = Instant::now();
        let r = c.get(env.url(path)).send().await.unwrap_or_else(|e| panic!("{path}: {e}; log:\n{}", env.logs()));
        assert_eq!(r.status(), 403, "{path} fails closed; log:\n{}", env.logs());
        assert!(started.elapsed() < Duration::from_secs(5), "{path} took {:?}", started.elapsed());
        let r = c.get(env.url("/v1/healthz")).send().await.expect("send");
        assert_eq!(r.status(), 200, "the call after {path} gets a fresh instance");
    }
    let logs = decision_log::logs_when(&env, |l| l.contains("trapped")).await;
    assert!(logs.contains("exceeded its deadline"), "{logs}");
    assert!(logs.contains("exceeded its memory limit"), "{logs}");
    assert!(logs.contains("trapped"), "{logs}");

    // Each failure is counted on the admin listener.
    let metrics = c.get(format!("http://{admin}/metrics")).send().await.expect("metrics").text().await.expect("body");
    for kind in ["timeout", "memory_limit", "trap"] {
        let line = format!("wasmgate_policy_failures_total{{plugin=\"misbehaving_authorizer\",kind=\"{kind}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_the_wrong_world_is_refused_clearly() {
    let out = std::process::Command::new(support::bin())
        .args(["plugin", "check"])
        .arg(support::fixture("wrong_world"))
        .output()
        .expect("run plugin check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("exports none of the policy interfaces"), "{text}");
    assert!(text.contains("wasmgate:policy/authorizer@0.1.0"), "names what it expected: {text}");

    let out = std::process::Command::new(support::bin())
        .args(["plugin", "check"])
        .arg(support::fixture("misbehaving_authorizer"))
        .output()
        .expect("run plugin check");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("authorizer"));

    // A classifier bound as the authorizer: the gateway refuses to start and says why.
    let dir = tempfile::tempdir().expect("tempdir");
    let classifier = dir.path().join("classifier.wasm");
    std::fs::write(&classifier, wasmgate::plugins::builtin_bytes("default-classifier").expect("embedded"))
        .expect("write");
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!("listen: 127.0.0.1:0\npolicy:\n  authorizer:\n    plugin: \"{}\"\n", classifier.display()),
    )
    .expect("write");
    let out =
        std::process::Command::new(support::bin()).args(["serve", "--config"]).arg(&cfg).output().expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not export wasmgate:policy/authorizer@0.1.0"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped_on_unauthenticated_routes_too() {
    let env = start(|y| {
        y.replace(
            "{ match: \"/v1/caller\", class: dual-auth, scopes: [sandbox.read] }",
            "{ match: \"/v1/caller\", class: unauthenticated }",
        )
    })
    .await;
    let r = http()
        .get(env.url("/v1/caller"))
        .header("x-wasmgate-subject", "mallory")
        .header("X-Wasmgate-Roles", "admin")
        .header("x_wasmgate_tenant", "evil")
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    let text = body.to_string();
    assert!(!text.contains("mallory") && !text.contains("evil"), "{text}");
    assert_eq!(body["identity_headers"]["x-wasmgate-auth-kind"], "none", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_http1_and_h2_via_alpn() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let tls = format!("tls: {{ cert: \"{}\", key: \"{}\" }}\nauth:", cert_path.display(), key_path.display());
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("root");
    let env = support::start_with(|y| y.replacen("auth:", &tls, 1), Some(root.clone())).await;
    let addr = env.addr;
    for h2 in [false, true] {
        let mut b = reqwest::Client::builder().add_root_certificate(root.clone()).resolve("localhost", addr);
        b = if h2 { b.http2_prior_knowledge() } else { b.http1_only() };
        let client = b.build().expect("client");
        let url = format!("https://localhost:{}/v1/sandboxes", addr.port());
        let r = client.get(&url).bearer_auth(env.admin()).send().await.expect("send over TLS");
        assert_eq!(r.status(), 200, "h2={h2}");
        assert_eq!(r.version(), if h2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 });
        let r = client.get(&url).send().await.expect("send over TLS");
        assert_eq!(r.status(), 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_swapped_in_the_plugin_folder_serves_the_next_call() {
    let plugins = tempfile::tempdir().expect("tempdir");
    let authz = plugins.path().join("authz.wasm");
    let replace = |bytes: &[u8]| {
        // Write beside, then rename: what an operator or a ConfigMap does.
        let tmp = plugins.path().join(".authz.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, &authz).expect("rename");
    };
    replace(wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded"));
    let dir = plugins.path().display().to_string();
    let admin = support::free_port();
    let env = start(|y| {
        y.replacen("policy:", &format!("admin: {{ listen: \"{admin}\" }}\nplugins:\n  dir: \"{dir}\"\npolicy:"), 1)
            .replace("plugin: builtin:rbac-authorizer", "plugin: authz.wasm")
    })
    .await;
    let c = http();
    let put = || {
        c.put(env.url("/v1/config"))
            .bearer_auth(env.user())
            .json(&serde_json::json!({"max_sandboxes": 7, "default_image": "x"}))
            .send()
    };
    assert_eq!(put().await.expect("send").status(), 403, "rbac: a user may not call an admin method");

    // The fixture allows everything but its misbehaviour paths.
    replace(&std::fs::read(support::fixture("misbehaving_authorizer")).expect("fixture"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = put().await.expect("send").status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 403, "only the old or the new decision, never a failure");
        assert!(Instant::now() < deadline, "swap not live within 10 s; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken candidate is rejected and the last good one keeps serving.
    replace(b"not a component");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(put().await.expect("send").status(), 200);
    let logs = env.logs();
    assert!(logs.contains("policy reload rejected") && logs.contains("authz"), "{logs}");

    // The admin surface shows the rejection; a forced reload reports the reason too.
    let status: serde_json::Value =
        c.get(format!("http://{admin}/admin/plugins")).send().await.expect("admin").json().await.expect("json");
    assert!(status["reload"]["last_error"].as_str().is_some_and(|e| e.contains("authz")), "{status}");
    assert!(status["reload"]["consecutive_failures"].as_u64() >= Some(1), "{status}");
    let r = c.post(format!("http://{admin}/admin/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 422);
    replace(wasmgate::plugins::builtin_bytes("rbac-authorizer").expect("embedded"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.post(format!("http://{admin}/admin/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 200);
    assert_eq!(put().await.expect("send").status(), 403, "rbac is back");
}
