//! `wasmgate login`, `wasmgate call` and `wasmgate token print` as real
//! processes, against the real gateway and an in-process OAuth server over
//! HTTP whose tokens the gateway verifies.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use wasmgate::demo::DEMO_AUDIENCE;
use wasmgate::login::store::{Credentials, CredentialsStore, Entry, Grant, Secret};
use wasmgate::login::testing::{TestOAuthServer, TestServerOptions};

use crate::support::{bin, now, path_str, start};

/// The demo config plus a provider for the OAuth server and a `login:`
/// section pointing at it.
fn with_login(yaml: String, issuer: &str) -> String {
    let provider = format!(
        r#"
    - name: login
      issuer: "{issuer}"
      audiences: ["{DEMO_AUDIENCE}"]
      algorithms: [ES256]
      claims_mapper:
        plugin: builtin:oidc-claims-mapper
        settings:
          tenant-claim: tenant"#
    );
    let yaml = yaml.replacen("  providers:", &format!("  providers:{provider}"), 1);
    format!(
        "{yaml}\nlogin:\n  issuer: \"{issuer}\"\n  client_id: wasmgate-cli\n  scopes: [openid, offline_access, sandbox.read]\n"
    )
}

/// Runs `wasmgate ARGS --credentials FILE` to completion off the runtime.
async fn wasmgate(args: &[&str], credentials: &Path) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--credentials").arg(credentials).env("WASMGATE_LOG", "warn");
    tokio::task::spawn_blocking(move || cmd.output().expect("run wasmgate")).await.expect("join")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn stored(path: &Path, gateway: &str) -> Entry {
    let creds: Credentials = serde_json::from_slice(&std::fs::read(path).expect("read credentials")).expect("json");
    creds.gateways.get(gateway).cloned().unwrap_or_else(|| panic!("no entry for {gateway}"))
}

fn refresh_token(e: &Entry) -> String {
    e.refresh_token.as_ref().expect("a refresh token").expose().to_owned()
}

/// Makes the stored access token look expired, as time passing would.
fn expire(path: &Path, gateway: &str) {
    let mut creds: Credentials = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    creds.gateways.get_mut(gateway).expect("entry").expires_at = Some(now() as u64 - 1);
    std::fs::write(path, serde_json::to_vec(&creds).expect("json")).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_device_flow_then_an_authenticated_call_then_a_refresh_with_rotation() {
    let oauth = TestOAuthServer::start(TestServerOptions::default()).await.expect("oauth server");
    let issuer = oauth.issuer().to_owned();
    let env = start(move |y| with_login(y, &issuer)).await;
    let gateway = env.url("");
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("config/wasmgate/credentials.json");

    // The gateway publishes its login settings, unauthenticated.
    let r = env.client.get(env.url("/.well-known/wasmgate-login")).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.expect("json");
    assert_eq!((doc["issuer"].as_str(), doc["client_id"].as_str()), (Some(oauth.issuer()), Some("wasmgate-cli")));

    // `wasmgate login`: the user approves the code it prints while it polls.
    let mut child = Command::new(bin())
        .args(["login", "--gateway", &gateway, "--credentials"])
        .arg(&creds)
        .env("WASMGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start login");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (code, rx) = tokio::task::spawn_blocking(move || {
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("the login prompt");
            if let Some(code) = line.split("enter the code: ").nth(1) {
                return (code.trim().to_owned(), rx);
            }
        }
    })
    .await
    .expect("join");
    assert!(oauth.approve(&code), "the printed code {code:?} is the server's");
    let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    // Every line up to the end of stderr: the reader thread may not have
    // forwarded the last ones yet when the process has exited.
    let rest: Vec<String> = tokio::task::spawn_blocking(move || rx.iter().collect()).await.expect("join");
    assert!(status.success(), "login failed: {rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("Logged in to")), "{rest:?}");
    let stats = oauth.stats();
    assert_eq!(stats.slow_downs, 1, "{stats:?}");
    assert_eq!(stats.too_fast_polls, 0, "slow_down and the interval are honoured: {stats:?}");
    assert!(stats.device_polls >= 3, "{stats:?}");

    let meta = std::fs::metadata(&creds).expect("credentials file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let first = stored(&creds, &gateway);
    assert_eq!(first.grant, Grant::DeviceCode);
    assert_eq!(Some(refresh_token(&first)), oauth.latest_refresh_token());

    // An authenticated call through the gateway with the stored token.
    let out = wasmgate(&["call", "--gateway", &gateway, "/v1/sandboxes"], &creds).await;
    assert!(out.status.success(), "{}\n{}\ngateway log:\n{}", text(&out.stderr), text(&out.stdout), env.logs());
    assert!(text(&out.stderr).contains("HTTP 200"), "{}", text(&out.stderr));
    // A user may not change the driver's config: 403, exit 2.
    let out = wasmgate(&["call", "--gateway", &gateway, "-X", "PUT", "/v1/config", "-d", "{}"], &creds).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("HTTP 403"), "{}", text(&out.stderr));

    // Expiry: `token print` refreshes, the rotated refresh token is stored.
    expire(&creds, &gateway);
    let out = wasmgate(&["token", "print", "--gateway", &gateway], &creds).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout).trim().to_owned();
    let second = stored(&creds, &gateway);
    assert_ne!(printed, first.access_token.expose());
    assert_eq!(printed, second.access_token.expose());
    assert_ne!(refresh_token(&second), refresh_token(&first), "rotated");
    assert_eq!(Some(refresh_token(&second)), oauth.latest_refresh_token());
    assert_eq!(std::fs::metadata(&creds).expect("stat").permissions().mode() & 0o777, 0o600);
    let stats = oauth.stats();
    assert_eq!((stats.refreshes, stats.refresh_invalid_grants), (1, 0), "{stats:?}");
    let out = wasmgate(&["call", "--gateway", &gateway, "/v1/sandboxes"], &creds).await;
    assert!(out.status.success(), "the refreshed token works: {}", text(&out.stderr));

    // Client credentials for CI, into the same file.
    let secret = dir.path().join("ci-bot.secret");
    std::fs::write(&secret, "ci-secret\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = wasmgate(
        &["login", "--gateway", &gateway, "--client-credentials", "--client-id", "ci-bot", "--client-secret-file"]
            .into_iter()
            .chain([path_str(&secret).as_str()])
            .collect::<Vec<_>>(),
        &creds,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ci = stored(&creds, &gateway);
    assert_eq!(
        (ci.grant, ci.client_id.as_str(), ci.refresh_token.is_none()),
        (Grant::ClientCredentials, "ci-bot", true)
    );
    assert!(!std::fs::read_to_string(&creds).expect("read").contains("\"ci-secret\""), "the secret is not stored");
    let out = wasmgate(&["call", "--gateway", &gateway, "/v1/sandboxes"], &creds).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Not logged in: a clear error, non-zero.
    let out = wasmgate(&["token", "print", "--gateway", &gateway], &dir.path().join("none.json")).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not logged in"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ten_processes_refreshing_one_credentials_file_lose_no_refresh_token() {
    let oauth = TestOAuthServer::start(TestServerOptions::default()).await.expect("oauth server");
    let issued = oauth.issue("wasmgate-cli").expect("issue");
    let gateway = "http://127.0.0.1:9";
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("credentials.json");
    let mut creds = Credentials::default();
    creds.gateways.insert(
        gateway.to_owned(),
        Entry {
            grant: Grant::DeviceCode,
            issuer: Some(oauth.issuer().to_owned()),
            token_endpoint: format!("{}/token", oauth.issuer()),
            client_id: "wasmgate-cli".into(),
            client_secret_file: None,
            scopes: vec![],
            audience: None,
            access_token: Secret::new(issued.access_token),
            token_type: "bearer".into(),
            expires_at: Some(now() as u64 - 1),
            refresh_token: Some(Secret::new(issued.refresh_token)),
            updated_at: now() as u64,
        },
    );
    let store = CredentialsStore::new(&path);
    store.lock().await.expect("lock").write(&creds).expect("write");

    for round in 1..=2u32 {
        let children: Vec<_> = (0..10)
            .map(|_| {
                Command::new(bin())
                    .args(["token", "print", "--gateway", gateway, "--credentials"])
                    .arg(&path)
                    .env("WASMGATE_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start token print")
            })
            .collect();
        let outputs = tokio::task::spawn_blocking(move || {
            children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect::<Vec<_>>()
        })
        .await
        .expect("join");
        let mut printed = std::collections::HashSet::new();
        for out in &outputs {
            assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
            assert!(!text(&out.stderr).contains("invalid_grant"), "{}", text(&out.stderr));
            printed.insert(text(&out.stdout).trim().to_owned());
        }
        let entry = stored(&path, gateway);
        assert_eq!(printed.len(), 1, "round {round}: every process got the one renewed token");
        assert!(printed.contains(entry.access_token.expose()));
        let stats = oauth.stats();
        assert_eq!(stats.refreshes, round, "round {round}: one rotation per expiry: {stats:?}");
        assert_eq!((stats.refresh_invalid_grants, stats.reused_refresh_tokens), (0, 0), "{stats:?}");
        assert_eq!(Some(refresh_token(&entry)), oauth.latest_refresh_token(), "the chain's latest is on disk");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        expire(&path, gateway);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_settings_are_404_without_a_login_section_and_login_says_so() {
    let env = start(|y| y).await;
    let r = env.client.get(env.url("/.well-known/wasmgate-login")).send().await.expect("send");
    assert_eq!(r.status(), 404);
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials.json");
    let out = wasmgate(&["login", "--gateway", &env.url("")], &creds).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not offer login"), "{}", text(&out.stderr));
    assert!(!creds.exists(), "nothing written");
}
