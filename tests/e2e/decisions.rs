//! The decision cache through the real binary: a repeated call is decided
//! from the cache (its decision record says so), a reload asks again, an
//! authorizer bound with `cache_decisions: false` is asked every call, and
//! a failing authorizer is asked again (its failures counted per call).

use std::net::SocketAddr;

use serde_json::Value;

use crate::decision_log::records;
use crate::support::{self, Env, free_port};

async fn gateway(admin: SocketAddr, edit: impl FnOnce(String) -> String) -> Env {
    support::start(move |y| format!("{}admin: {{ listen: \"{admin}\" }}\n", edit(y))).await
}

/// Calls `path` with `token`: the status and the decision id.
async fn call(env: &Env, path: &str, token: &str) -> (u16, String) {
    let r = env.client.get(env.url(path)).bearer_auth(token).send().await.expect("send");
    let id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (r.status().as_u16(), id)
}

/// The authorizer's entry of the record of call `id`, once written.
async fn authorizer_entry(env: &Env, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(r) = records(&env.logs()).into_iter().find(|r| r["decision_id"] == id) {
            let components = r["policy"]["components"].as_array().expect("components");
            return components.iter().find(|c| c["role"] == "authorizer").cloned().expect("an authorizer entry");
        }
        assert!(std::time::Instant::now() < deadline, "no record {id}:\n{}", env.logs());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether call `id` was decided from the cache.
async fn cached(env: &Env, id: &str) -> bool {
    let entry = authorizer_entry(env, id).await;
    match entry.get("cached") {
        None => false,
        Some(v) => {
            assert_eq!(v, true, "written only when true: {entry}");
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_call_is_decided_from_the_cache_until_a_reload() {
    let admin = free_port();
    let env = gateway(admin, |y| y).await;
    let user = env.user();
    let mut ids = Vec::new();
    for (path, status) in [("/v1/sandboxes", 200), ("/v1/config", 403)] {
        for _ in 0..2 {
            let (got, id) = call(&env, path, &user).await;
            assert_eq!(got, status, "{path}: {}", env.logs());
            ids.push(id);
        }
    }
    let flags: Vec<bool> = futures::future::join_all(ids.iter().map(|id| cached(&env, id))).await;
    assert_eq!(flags, [false, true, false, true], "the second of each is cached, the deny too");
    let denied: Vec<Value> = records(&env.logs()).into_iter().filter(|r| r["path"] == "/v1/config").collect();
    assert_eq!(denied[0]["reason"], denied[1]["reason"], "a cached deny keeps its reason");
    // Another principal is another input.
    let (status, id) = call(&env, "/v1/sandboxes", &env.admin()).await;
    assert_eq!(status, 200);
    assert!(!cached(&env, &id).await);

    let r = reqwest::Client::new().post(format!("http://{admin}/admin/reload")).send().await.expect("reload");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let (status, id) = call(&env, "/v1/sandboxes", &user).await;
    assert_eq!(status, 200);
    assert!(!cached(&env, &id).await, "a new policy generation asks the authorizer again");
    let (_, id) = call(&env, "/v1/sandboxes", &user).await;
    assert!(cached(&env, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_authorizer_is_asked_every_call_and_failures_are_never_cached() {
    let admin = free_port();
    let fixture = support::path_str(&support::fixture("misbehaving_authorizer"));
    let env = gateway(admin, |y| {
        y.replacen(
            "  authorizer:\n    plugin: builtin:rbac-authorizer\n",
            &format!("  authorizer:\n    plugin: \"{fixture}\"\n"),
            1,
        )
    })
    .await;
    let user = env.user();
    // The fixture traps on `/trap`: each call fails closed and is counted.
    for _ in 0..3 {
        let (status, id) = call(&env, "/v1/trap", &user).await;
        assert_eq!(status, 403, "{}", env.logs());
        assert!(!cached(&env, &id).await);
    }
    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.expect("metrics").text().await.expect("body");
    let line = "wasmgate_policy_failures_total{plugin=\"misbehaving_authorizer\",kind=\"trap\"} 3";
    assert!(metrics.contains(line), "every call reached the component: {metrics}");
    // Its allows are cached like any other.
    let (_, first) = call(&env, "/v1/sandboxes", &user).await;
    let (_, second) = call(&env, "/v1/sandboxes", &user).await;
    assert_eq!((cached(&env, &first).await, cached(&env, &second).await), (false, true));

    let opted_out = gateway(free_port(), |y| {
        y.replacen(
            "  authorizer:\n    plugin: builtin:rbac-authorizer\n",
            "  authorizer:\n    plugin: builtin:rbac-authorizer\n    cache_decisions: false\n",
            1,
        )
    })
    .await;
    let user = opted_out.user();
    for _ in 0..3 {
        let (status, id) = call(&opted_out, "/v1/sandboxes", &user).await;
        assert_eq!(status, 200, "{}", opted_out.logs());
        assert!(!cached(&opted_out, &id).await, "asked every call");
    }
}
