//! The admin listeners through the real binary: read-only endpoints on
//! `admin.listen`, the reload on `admin.control_listen` only, and
//! `admin.require_scope` checked by the gateway's own authentication.

use std::process::Command;

use crate::support::{self, bin, free_port, path_str};

const SCOPE: &str = "wasmgate:admin";

/// The gateway-token section, inline keys: the gateway and `token mint`
/// read the same.
const GATEWAY_TOKENS: &str = "  gateway_tokens:\n    active_key: v1\n    keys:\n      v1: { value: \"e2e-admin-gateway-token-key-0123456789abcdef\" }\n";

/// `wasmgate token mint` with `scopes`.
fn mint(config: &std::path::Path, scopes: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["token", "mint", "--config", &path_str(config), "--subject", "ops", "--tenant", "acme"])
        .args(["--role", "user", "--ttl", "1h"])
        .args(scopes.iter().flat_map(|s| ["--scope", s]))
        .env("WASMGATE_LOG", "warn")
        .output()
        .expect("run wasmgate token mint");
    assert!(out.status.success(), "token mint: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_control_listeners_are_split_and_reload_needs_the_admin_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli_config = dir.path().join("cli.yaml");
    std::fs::write(&cli_config, format!("auth:\n{GATEWAY_TOKENS}")).expect("write");
    let (read_only, control) = (free_port(), free_port());
    let env = support::start(|y| {
        let admin = format!(
            "admin: {{ listen: \"{read_only}\", control_listen: \"{control}\", require_scope: \"{SCOPE}\" }}\n"
        );
        format!("{admin}{}", y.replacen("auth:\n", &format!("auth:\n  cookie: wasmgate_token\n{GATEWAY_TOKENS}"), 1))
    })
    .await;
    let c = reqwest::Client::new();
    let ro = |path: &str| format!("http://{read_only}{path}");
    let ctl = |path: &str| format!("http://{control}{path}");

    // Read-only: metrics, plugins, status; no reload there.
    let r = c.get(ro("/metrics")).send().await.expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("# EOF"));
    assert_eq!(c.get(ro("/admin/plugins")).send().await.expect("plugins").status(), 200);
    let status: serde_json::Value =
        c.get(ro("/admin/status")).send().await.expect("status").json().await.expect("json");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["draining"], false, "{status}");
    assert_eq!(status["generation"], 1, "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"), "{status}");
    assert!(status["uptime_seconds"].is_u64() && status["reload"]["consecutive_failures"] == 0, "{status}");
    let r = c.post(ro("/admin/reload")).bearer_auth(mint(&cli_config, &[SCOPE])).send().await.expect("reload");
    assert_eq!(r.status(), 404, "no reload on the read-only listener");
    // The control listener serves only the mutating endpoints.
    assert_eq!(c.get(ctl("/metrics")).send().await.expect("metrics").status(), 404);

    // Reload: 401 without a valid token, 403 without the scope, 200 with it.
    let r = c.post(ctl("/admin/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="wasmgate""#);
    let r = c.post(ctl("/admin/reload")).bearer_auth("not.a.token").send().await.expect("reload");
    assert_eq!(r.status(), 401);
    let mut forged = mint(&cli_config, &[SCOPE]).into_bytes();
    let i = forged.len() - 5;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let r = c.post(ctl("/admin/reload")).bearer_auth(String::from_utf8(forged).expect("ascii")).send().await;
    assert_eq!(r.expect("reload").status(), 401, "a forged signature");
    let r =
        c.post(ctl("/admin/reload")).bearer_auth(mint(&cli_config, &["sandbox.read"])).send().await.expect("reload");
    assert_eq!(r.status(), 403, "a valid token without the admin scope");
    let oidc_without = env.token("alice", &["admin"], "sandbox.read sandbox.admin");
    let r = c.post(ctl("/admin/reload")).bearer_auth(oidc_without).send().await.expect("reload");
    assert_eq!(r.status(), 403, "an OIDC token without the admin scope");
    // A token in a cookie (accepted by routes) is never enough for a
    // mutating call: it would ride on the browser's ambient credentials.
    let r = c
        .post(ctl("/admin/reload"))
        .header("cookie", format!("wasmgate_token={}", mint(&cli_config, &[SCOPE])))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().expect("ascii").contains("invalid_request"));

    let token = mint(&cli_config, &["sandbox.read", SCOPE]);
    let r = c.post(ctl("/admin/reload")).bearer_auth(&token).send().await.expect("reload");
    assert_eq!(r.status(), 200, "log:\n{}", env.logs());
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["generation"], 2);
    let oidc = env.token("alice", &["admin"], &format!("sandbox.read {SCOPE}"));
    let r = c.post(ctl("/admin/reload")).bearer_auth(oidc).send().await.expect("reload");
    assert_eq!(r.status(), 200, "an OIDC token with the scope; log:\n{}", env.logs());
    let status: serde_json::Value =
        c.get(ro("/admin/status")).send().await.expect("status").json().await.expect("json");
    assert_eq!(status["generation"], 3, "{status}");

    let logs = env.logs();
    assert!(logs.contains("admin reload refused") && logs.contains("admin reload requested"), "{logs}");
    assert!(!logs.contains(&token), "tokens never in logs");
}

#[test]
fn the_same_address_for_both_admin_listeners_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let cfg = dir.path().join("wasmgate.yaml");
    std::fs::write(&cfg, format!("admin: {{ listen: \"{addr}\", control_listen: \"{addr}\" }}\n")).expect("write");
    let out = Command::new(bin()).args(["serve", "--config"]).arg(&cfg).output().expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin.control_listen must differ from admin.listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sets_the_runtime_threads_and_status_shows_them() {
    for workers in [1, 3] {
        let listen = free_port();
        let env = support::start(|y| format!("workers: {workers}\nadmin: {{ listen: \"{listen}\" }}\n{y}")).await;
        let status: serde_json::Value =
            reqwest::get(format!("http://{listen}/admin/status")).await.expect("status").json().await.expect("json");
        assert_eq!(status["workers"], workers, "{status}\n{}", env.logs());
    }
}
