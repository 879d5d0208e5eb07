//! Reload honesty through the real binary: an edit of the config file that
//! only a restart applies is logged as `restart required: <keys>` and shown
//! in `/admin/plugins` until the file matches again; the policy part of an
//! edit is applied as always.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, free_port};

/// Replaces the config file the way a ConfigMap update or `mv` does.
fn write_config(path: &Path, text: &str) {
    let tmp = path.with_file_name(".wasmgate.yaml.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_edits_are_named_until_reverted_and_policy_edits_apply() {
    let admin = free_port();
    let env = support::start(|y| y.replacen("auth:\n", &format!("admin: {{ listen: \"{admin}\" }}\nauth:\n"), 1)).await;
    let c = reqwest::Client::new();
    let status = || async {
        let r = c.get(format!("http://{admin}/admin/plugins")).send().await.expect("admin");
        r.json::<Value>().await.expect("json")["reload"].clone()
    };
    let eventually = |what: &'static str, ok: fn(&Value) -> bool| {
        let status = &status;
        let env = &env;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let s = status().await;
                if ok(&s) {
                    return s;
                }
                assert!(Instant::now() < deadline, "{what}: {s}; log:\n{}", env.logs());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let list = |s: &Value| -> Vec<String> {
        s["restart_required"]
            .as_array()
            .expect("restart_required is a list")
            .iter()
            .map(|k| k.as_str().expect("a key").to_owned())
            .collect()
    };
    let user_lists = || async {
        let r = c.get(env.url("/v1/sandboxes")).bearer_auth(env.user()).send().await.expect("send");
        r.status().as_u16()
    };

    let started = status().await;
    assert!(list(&started).is_empty(), "{started}");
    assert_eq!(started["generation"], 1);
    assert_eq!(user_lists().await, 200, "log:\n{}", env.logs());

    // Restart-only: the listener's address and a route's timeout.
    let path = env.dir().join("wasmgate.yaml");
    let original = std::fs::read_to_string(&path).expect("config");
    let moved = format!("127.0.0.1:{}", free_port().port());
    let listen_line = format!("listen: \"{}\"", env.addr);
    assert!(original.contains(&listen_line), "{original}");
    let restart_only = original.replacen(&listen_line, &format!("listen: \"{moved}\""), 1).replacen(
        "    match: { path_prefix: /v1 }\n",
        "    match: { path_prefix: /v1 }\n    timeout_ms: 1234\n",
        1,
    );
    assert_ne!(restart_only, original);
    write_config(&path, &restart_only);
    let s = eventually("restart required shown", |s| !s["restart_required"].as_array().is_none_or(Vec::is_empty)).await;
    assert_eq!(list(&s), ["listen", "routes[sandbox-rest].timeout_ms"], "{s}");
    let logs = env.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("restart required: listen, routes[sandbox-rest].timeout_ms"))
        .unwrap_or_else(|| panic!("no restart warning:\n{logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    // Not applied: the gateway still serves where it started.
    assert_eq!(user_lists().await, 200, "still on {}", env.addr);
    assert!(std::net::TcpStream::connect(&moved).is_err(), "nothing listens on the new address");

    // The policy in the same file: applied, while the restart-only keys stay named.
    let with_policy = restart_only.replacen("user-role: user", "user-role: nobody", 1);
    assert_ne!(with_policy, restart_only);
    write_config(&path, &with_policy);
    let deadline = Instant::now() + Duration::from_secs(20);
    while user_lists().await != 403 {
        assert!(Instant::now() < deadline, "users never lost their role in the new policy; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = status().await;
    assert_eq!(list(&s), ["listen", "routes[sandbox-rest].timeout_ms"], "still named: {s}");

    // Back to the started values, keeping the new policy: nothing left to restart for.
    write_config(&path, &original.replacen("user-role: user", "user-role: nobody", 1));
    let s =
        eventually("restart required cleared", |s| s["restart_required"].as_array().is_some_and(Vec::is_empty)).await;
    assert!(s["last_error"].is_null(), "{s}");
    assert!(env.logs().contains("restart no longer required"), "{}", env.logs());
    assert_eq!(user_lists().await, 403, "the policy edit stays applied");
}
