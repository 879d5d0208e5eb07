//! Gateway tokens through the real binary: minted, rotated, retired and
//! revoked with the CLI while the gateway runs, never restarted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{bin, path_str, start};

/// Runs `wasmgate ARGS`; returns stdout, panics with stderr on failure.
fn cli(args: &[&str]) -> (String, String) {
    let out = Command::new(bin()).args(args).env("WASMGATE_LOG", "warn").output().expect("run wasmgate");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wasmgate {args:?} failed:\n{stderr}");
    (stdout.trim().to_owned(), stderr.into_owned())
}

/// `token mint`: the token and its jti.
fn mint(config: &Path, subject: &str) -> (String, String) {
    let c = path_str(config);
    let args = ["token", "mint", "--config", &c, "--subject", subject, "--tenant", "acme", "--role", "user"];
    let (token, info) = cli(&[&args[..], &["--scope", "sandbox.read", "--ttl", "1h"]].concat());
    let jti = info
        .split_whitespace()
        .find_map(|w| w.strip_prefix("jti="))
        .unwrap_or_else(|| panic!("no jti in {info:?}"))
        .to_owned();
    (token, jti)
}

/// A key folder laid out as the kubelet mounts a Secret.
fn secret_folder(dir: &Path) {
    let ts = dir.join("..2026_01_01_00_00_00.1");
    std::fs::create_dir_all(&ts).expect("mkdir");
    std::fs::write(ts.join("active"), "v1\n").expect("write");
    std::fs::write(ts.join("v1"), "e2e-gateway-token-key-v1-0123456789abcdef\n").expect("write");
    for name in ["active", "v1"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).expect("link");
    }
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.join("..data")).expect("link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_tokens_rotate_retire_and_revoke_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    secret_folder(&keys);
    let revoked = dir.path().join("lists").join("revoked");
    std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
    std::fs::write(&revoked, "# revoked gateway tokens\n").expect("write");
    let section = format!(
        "  gateway_tokens:\n    keys_dir: \"{}\"\n    revoked_file: \"{}\"\n",
        path_str(&keys),
        path_str(&revoked)
    );
    // The operator's config for the CLI names the same files as the gateway's.
    let config = dir.path().join("cli.yaml");
    std::fs::write(&config, format!("auth:\n{section}")).expect("write");
    let env = start(|y| y.replacen("auth:\n", &format!("auth:\n{section}"), 1)).await;
    let c = reqwest::Client::new();
    let status = |token: String| {
        let req = c.get(env.url("/v1/sandboxes")).bearer_auth(token);
        async move { req.send().await.expect("send").status().as_u16() }
    };
    let eventually = |what: &'static str, token: String, want: u16| {
        let status = &status;
        let env = &env;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let got = status(token.clone()).await;
                if got == want {
                    return;
                }
                assert!(Instant::now() < deadline, "{what}: still {got}, want {want}; log:\n{}", env.logs());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };

    let (old, _) = mint(&config, "svc-a");
    assert_eq!(status(old.clone()).await, 200, "a minted token is accepted; log:\n{}", env.logs());

    let (active, _) = cli(&["keys", "rotate", "--keys-dir", &path_str(&keys)]);
    assert_eq!(active, "v2");
    let (new, new_jti) = mint(&config, "svc-b");
    eventually("token of the new version after rotate", new.clone(), 200).await;
    assert_eq!(status(old.clone()).await, 200, "the old version verifies until retired");

    cli(&["keys", "retire", "--config", &path_str(&config), "v1"]);
    eventually("token of the retired version", old.clone(), 401).await;
    assert_eq!(status(new.clone()).await, 200);

    cli(&["token", "revoke", "--config", &path_str(&config), &new_jti, "--expires-at", "4102444800"]);
    eventually("revoked token", new.clone(), 401).await;
    let (other, _) = mint(&config, "svc-c");
    assert_eq!(status(other).await, 200, "other tokens of the same version still pass");

    let logs = env.logs();
    assert!(logs.contains("gateway token keys reloaded"), "{logs}");
    assert!(logs.contains("gateway token revocation list reloaded"), "{logs}");
    assert!(!logs.contains("e2e-gateway-token-key"), "keys never in logs");
}
