//! The renewal protocol against the in-process OAuth server.

use super::testing::{TestOAuthServer, TestServerOptions};
use super::*;
use crate::login::store::Credentials;

const GW: &str = "http://127.0.0.1:1";

fn entry_for(server: &TestOAuthServer, tokens: &testing::IssuedTokens, expires_at: u64) -> Entry {
    Entry {
        grant: Grant::DeviceCode,
        issuer: Some(server.issuer().to_owned()),
        token_endpoint: format!("{}/token", server.issuer()),
        client_id: "wasmgate-cli".into(),
        client_secret_file: None,
        scopes: vec![],
        audience: None,
        access_token: Secret::new(tokens.access_token.clone()),
        token_type: "Bearer".into(),
        expires_at: Some(expires_at),
        refresh_token: Some(Secret::new(tokens.refresh_token.clone())),
        updated_at: unix_now(),
    }
}

async fn store_with(dir: &Path, entry: Entry) -> CredentialsStore {
    let store = CredentialsStore::new(dir.join("credentials.json"));
    let mut c = Credentials::default();
    c.gateways.insert(GW.into(), entry);
    store.lock().await.expect("lock").write(&c).expect("write");
    store
}

fn stored(store: &CredentialsStore) -> Entry {
    store.read().expect("read").credentials.gateways[GW].clone()
}

fn rt(e: &Entry) -> String {
    e.refresh_token.as_ref().expect("refresh token").expose().to_owned()
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_the_rotated_refresh_token_persisted() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let issued = server.issue("wasmgate-cli").expect("issue");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), entry_for(&server, &issued, unix_now() + 10)).await;
    let http = HttpClient::new().expect("http");

    let token = access_token(&http, &store, GW).await.expect("token");
    assert_ne!(token.expose(), issued.access_token, "renewed: 10 s left is inside the margin");
    let after = stored(&store);
    assert_eq!(after.access_token, token);
    assert_eq!(Some(rt(&after)), server.latest_refresh_token(), "the rotated refresh token is on disk");
    assert_ne!(rt(&after), issued.refresh_token);
    assert!(after.expires_at.expect("expiry") > unix_now() + 200);

    // Fresh now: no further refresh.
    assert_eq!(access_token(&http, &store, GW).await.expect("token"), token);
    assert_eq!(server.stats().refreshes, 1);
}

#[tokio::test]
async fn checklist_39_invalid_grant_after_another_process_rotated_uses_its_tokens() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let issued = server.issue("wasmgate-cli").expect("issue");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), entry_for(&server, &issued, unix_now() - 1)).await;
    // Another process (not sharing our lock: say, on another host) rotates
    // the refresh token and writes the file while our request is in flight.
    let (path, old_rt, template) = (store.path().to_owned(), issued.refresh_token.clone(), stored(&store));
    server.before_next_refresh(move |server| {
        let theirs = server.rotate(&old_rt).expect("their rotation");
        let mut c = Credentials::default();
        let mut e = template;
        e.access_token = Secret::new(theirs.access_token);
        e.refresh_token = Some(Secret::new(theirs.refresh_token));
        e.expires_at = Some(unix_now() + theirs.expires_in);
        c.gateways.insert(GW.into(), e);
        std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("their write");
    });
    let http = HttpClient::new().expect("http");

    let token = access_token(&http, &store, GW).await.expect("their fresh token is used, not an error");
    let after = stored(&store);
    assert_eq!(after.access_token, token);
    assert_eq!(Some(rt(&after)), server.latest_refresh_token(), "their refresh token is kept");
    let stats = server.stats();
    assert_eq!((stats.refreshes, stats.reused_refresh_tokens), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn checklist_39_invalid_grant_with_a_newer_stored_refresh_token_retries_with_it() {
    let options = TestServerOptions { revoke_family_on_reuse: false, ..TestServerOptions::default() };
    let server = TestOAuthServer::start(options).await.expect("server");
    let issued = server.issue("wasmgate-cli").expect("issue");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), entry_for(&server, &issued, unix_now() - 1)).await;
    // The other process stored a newer refresh token but an access token
    // that is about to expire.
    let (path, old_rt, template) = (store.path().to_owned(), issued.refresh_token.clone(), stored(&store));
    server.before_next_refresh(move |server| {
        let theirs = server.rotate(&old_rt).expect("their rotation");
        let mut c = Credentials::default();
        let mut e = template;
        e.refresh_token = Some(Secret::new(theirs.refresh_token));
        e.expires_at = Some(unix_now() + 5);
        c.gateways.insert(GW.into(), e);
        std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("their write");
    });
    let http = HttpClient::new().expect("http");

    let token = access_token(&http, &store, GW).await.expect("renewed with the newer refresh token");
    let after = stored(&store);
    assert_eq!(after.access_token, token);
    assert_eq!(Some(rt(&after)), server.latest_refresh_token());
    assert_eq!(server.stats().refreshes, 2, "theirs, then ours with their refresh token");
}

#[tokio::test]
async fn checklist_39_invalid_grant_with_nothing_newer_stored_asks_to_log_in_again() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let issued = server.issue("wasmgate-cli").expect("issue");
    server.rotate(&issued.refresh_token).expect("consumed elsewhere, and the result lost");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), entry_for(&server, &issued, unix_now() - 1)).await;
    let before = std::fs::read(store.path()).expect("read");
    let http = HttpClient::new().expect("http");

    let err = access_token(&http, &store, GW).await.expect_err("gives up");
    assert!(matches!(err, AccessTokenError::LoginAgain { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("invalid_grant") && msg.contains("wasmgate login --gateway"), "{msg}");
    assert_eq!(std::fs::read(store.path()).expect("read"), before, "the file is left as it was");
}

#[tokio::test]
async fn concurrent_renewals_in_one_process_rotate_once() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let issued = server.issue("wasmgate-cli").expect("issue");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with(dir.path(), entry_for(&server, &issued, unix_now() - 1)).await;
    let http = HttpClient::new().expect("http");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (http, store) = (http.clone(), store.clone());
            tokio::spawn(async move { access_token(&http, &store, GW).await.map(|t| t.expose().to_owned()) })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("join").expect("token"));
    }
    assert_eq!(tokens.len(), 1, "all share the one renewed token");
    let stats = server.stats();
    assert_eq!((stats.refreshes, stats.refresh_invalid_grants), (1, 0), "{stats:?}");
    assert_eq!(Some(rt(&stored(&store))), server.latest_refresh_token());
}

#[tokio::test]
async fn client_credentials_tokens_are_renewed_from_the_secret_file() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "ci-secret\n").expect("secret");
    let http = HttpClient::new().expect("http");
    let token_url = checked_url("token", &format!("{}/token", server.issuer())).expect("url");
    let tokens =
        flows::client_credentials(&http, &token_url, "ci-bot", &read_secret_file(&secret_file).expect("s"), &[], None)
            .await
            .expect("client credentials");
    assert!(tokens.refresh_token.is_none());
    let entry = Entry {
        grant: Grant::ClientCredentials,
        issuer: None,
        token_endpoint: token_url.to_string(),
        client_id: "ci-bot".into(),
        client_secret_file: Some(secret_file.clone()),
        scopes: vec![],
        audience: None,
        access_token: tokens.access_token,
        token_type: "Bearer".into(),
        expires_at: Some(unix_now() - 1),
        refresh_token: None,
        updated_at: unix_now(),
    };
    let store = store_with(dir.path(), entry).await;
    let token = access_token(&http, &store, GW).await.expect("renewed");
    assert_eq!(stored(&store).access_token, token);
    assert_eq!(server.stats().client_credentials, 2);
    let claims = testing::claims_of(token.expose()).expect("claims");
    assert_eq!(claims["sub"], "ci-bot");

    std::fs::write(&secret_file, "wrong").expect("secret");
    let wrong = Secret::new("wrong");
    let err = flows::client_credentials(&http, &token_url, "ci-bot", &wrong, &[], None).await.expect_err("refused");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("wrong"), "no secret in messages: {err}");
}

#[tokio::test]
async fn the_device_flow_gives_up_when_the_code_expires() {
    let options =
        TestServerOptions { device_expires_in_seconds: 2, slow_down_on_poll: None, ..TestServerOptions::default() };
    let server = TestOAuthServer::start(options).await.expect("server");
    let http = HttpClient::new().expect("http");
    let settings = flows::LoginSettings {
        issuer: Some(server.issuer().to_owned()),
        device_authorization_endpoint: None,
        token_endpoint: None,
        client_id: "wasmgate-cli".into(),
        scopes: vec!["openid".into()],
        audience: None,
    };
    let endpoints = flows::endpoints(&http, &settings).await.expect("discovery");
    let started = std::time::Instant::now();
    let mut shown = None;
    let err = flows::device_flow(&http, &endpoints, &settings, |p| shown = Some(p.user_code.clone()))
        .await
        .expect_err("never approved");
    assert!(matches!(err, FlowError::Expired), "{err:?}");
    assert!(shown.is_some());
    assert!(started.elapsed() < Duration::from_secs(6), "stops at expires_in, not later");
    let stats = server.stats();
    assert!((2..=4).contains(&stats.device_polls) && stats.too_fast_polls == 0, "{stats:?}");
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let server = TestOAuthServer::start(TestServerOptions::default()).await.expect("server");
    let http = HttpClient::new().expect("http");
    let settings = flows::LoginSettings {
        issuer: Some(format!("{}/", server.issuer())),
        device_authorization_endpoint: None,
        token_endpoint: None,
        client_id: "wasmgate-cli".into(),
        scopes: vec![],
        audience: None,
    };
    let err = flows::endpoints(&http, &settings).await.expect_err("issuer mismatch");
    assert!(err.to_string().contains("names issuer"), "{err}");
}

#[test]
fn gateway_keys_are_normalised() {
    assert_eq!(gateway_key("https://GW.example:443/").expect("key"), "https://gw.example");
    assert_eq!(gateway_key("http://127.0.0.1:8080").expect("key"), "http://127.0.0.1:8080");
    assert_eq!(gateway_key("https://gw.example/api/").expect("key"), "https://gw.example/api");
    assert!(gateway_key("https://gw.example/?x=1").is_err());
    assert!(gateway_key("http://gw.example").is_err());
}
