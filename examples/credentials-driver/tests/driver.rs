//! End-to-end tests: the driver serves on a real Unix socket and is called
//! with a tonic client; client credentials are fetched from a real HTTP token
//! endpoint (axum on loopback).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine as _;
use credentials_driver::config::{AuthStyle, OAuth2Config};
use credentials_driver::oauth::ClientCredentials;
use credentials_driver::statics::StaticCredentials;
use credentials_driver::{CredentialsService, bind, serve};
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use wasmgate_proto::credentials::credentials_driver_client::CredentialsDriverClient;
use wasmgate_proto::credentials::{ListCredentialsRequest, ResolveCredentialRequest};

const STEP: Duration = Duration::from_secs(10);

/// A driver serving `service` on a socket in a temp dir.
struct Served {
    dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
}

impl Served {
    async fn start(service: CredentialsService) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.sock");
        let listener = bind(&path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, service, async move {
            let _ = stopped.await;
        }));
        Self { dir, path, stop: Some(stop) }
    }

    async fn client(&self) -> CredentialsDriverClient<Channel> {
        CredentialsDriverClient::new(channel(&self.path).await)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn channel(path: &Path) -> Channel {
    let path = path.to_owned();
    Endpoint::from_static("http://driver.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

async fn resolve(c: &mut CredentialsDriverClient<Channel>, name: &str) -> Result<(String, i64, String), tonic::Status> {
    let r = tokio::time::timeout(STEP, c.resolve_credential(ResolveCredentialRequest { name: name.into() }))
        .await
        .unwrap()?
        .into_inner();
    Ok((r.token, r.expires_at_ms, r.token_type))
}

fn now_ms() -> i64 {
    credentials_driver::token::now_ms()
}

/// Polls `f` until it is true or `STEP` passes.
async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

fn static_service(file: &Path) -> (CredentialsService, credentials_driver::statics::Watch, Arc<StaticCredentials>) {
    let s = StaticCredentials::load(file).unwrap();
    let watch = s.watch(Duration::from_millis(20)).unwrap();
    (CredentialsService::new(Some(s.clone()), vec![]), watch, s)
}

#[tokio::test]
async fn socket_is_owner_only_stale_socket_replaced_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "credentials: [{name: a, token: t}]").unwrap();
    let (svc, _w, _s) = static_service(&f);
    let served = Served::start(svc).await;
    let meta = std::fs::symlink_metadata(&served.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Nothing left behind from the private staging folder.
    assert_eq!(std::fs::read_dir(served.dir.path()).unwrap().count(), 1);
    let mut health = HealthClient::new(channel(&served.path).await);
    for service in ["", credentials_driver::SERVICE_NAME] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32);
    }
    // A live socket is refused.
    assert_eq!(bind(&served.path).unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
    // A stale socket (nobody listening) is replaced.
    let stale = served.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(bind(&stale).is_ok());
    // A regular file is never removed.
    let file = served.dir.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    assert_eq!(bind(&file).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}

#[tokio::test]
async fn static_file_reload_expiry_and_unknown_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("static.yaml");
    let later = now_ms() + 3_600_000;
    std::fs::write(
        &f,
        format!(
            "credentials:\n  - {{name: github, token: v1, expires_at: {later}, scopes: [repo]}}\n  \
             - {{name: old, token: stale, expires_at: 2001-01-01T00:00:00Z}}\n"
        ),
    )
    .unwrap();
    let (svc, _w, statics) = static_service(&f);
    let served = Served::start(svc).await;
    let mut c = served.client().await;

    assert_eq!(resolve(&mut c, "github").await.unwrap(), ("v1".into(), later, "Bearer".into()));
    assert_eq!(resolve(&mut c, "old").await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(resolve(&mut c, "nope").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(resolve(&mut c, "bad name!").await.unwrap_err().code(), Code::InvalidArgument);
    let list = c.list_credentials(ListCredentialsRequest {}).await.unwrap().into_inner().credentials;
    let names: Vec<_> = list.iter().map(|c| (c.name.as_str(), c.scopes.clone())).collect();
    assert_eq!(names, vec![("github", vec!["repo".to_owned()]), ("old", vec![])]);

    // Rewritten in place: seen.
    std::fs::write(&f, "credentials: [{name: github, token: v2}]").unwrap();
    assert!(eventually(async || resolve(&mut c, "github").await.is_ok_and(|r| r.0 == "v2")).await);
    assert_eq!(resolve(&mut c, "old").await.unwrap_err().code(), Code::NotFound);

    // A broken file keeps the last good set.
    let before = statics.reloads();
    std::fs::write(&f, "credentials: [{name: github}]").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(statics.reloads(), before);
    assert_eq!(resolve(&mut c, "github").await.unwrap().0, "v2");
}

/// Kubernetes mounts a Secret as `name -> ..data/name`, `..data ->
/// ..<timestamp>`, and updates it by renaming a new `..data` symlink over the
/// old one: the file itself is never written.
#[tokio::test]
async fn static_file_reload_sees_kubernetes_data_symlink_swap() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen_dir = |n: u32, token: &str| {
        let g = d.join(format!("..2025_01_0{n}"));
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("static.yaml"), "credentials: [{name: k8s, token_file: token}]").unwrap();
        std::fs::write(g.join("token"), format!("{token}\n")).unwrap();
        g
    };
    let g1 = gen_dir(1, "first");
    symlink(g1.file_name().unwrap(), d.join("..data")).unwrap();
    symlink("..data/static.yaml", d.join("static.yaml")).unwrap();
    symlink("..data/token", d.join("token")).unwrap();

    let (svc, _w, _s) = static_service(&d.join("static.yaml"));
    let served = Served::start(svc).await;
    let mut c = served.client().await;
    assert_eq!(resolve(&mut c, "k8s").await.unwrap().0, "first");

    let g2 = gen_dir(2, "second");
    symlink(g2.file_name().unwrap(), d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(&g1).unwrap();
    assert!(eventually(async || resolve(&mut c, "k8s").await.is_ok_and(|r| r.0 == "second")).await);
}

/// A token endpoint that counts requests, checks the client's credentials,
/// and answers after a short delay (so concurrent callers overlap).
#[derive(Clone)]
struct TokenEndpoint {
    calls: Arc<AtomicUsize>,
    expires_in: u64,
    last_form: Arc<std::sync::Mutex<String>>,
}

async fn token(State(ep): State<TokenEndpoint>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let n = ep.calls.fetch_add(1, Ordering::SeqCst) + 1;
    *ep.last_form.lock().unwrap() = body.clone();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("gw:s3cret"));
    if basic != expected {
        return (StatusCode::UNAUTHORIZED, json, r#"{"error":"invalid_client"}"#.to_owned());
    }
    let form: Vec<(String, String)> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let dec =
                |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect();
    if !form.contains(&("grant_type".into(), "client_credentials".into())) {
        return (StatusCode::BAD_REQUEST, json, r#"{"error":"unsupported_grant_type"}"#.to_owned());
    }
    let body =
        serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": ep.expires_in});
    (StatusCode::OK, json, body.to_string())
}

async fn token_endpoint(expires_in: u64) -> (String, TokenEndpoint) {
    let ep = TokenEndpoint { calls: Arc::default(), expires_in, last_form: Arc::default() };
    let app = Router::new().route("/token", post(token)).with_state(ep.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/token"), ep)
}

fn oauth_config(url: &str, secret_file: &Path, refresh_ahead_secs: u64) -> OAuth2Config {
    OAuth2Config {
        name: "billing".into(),
        token_url: url.into(),
        client_id: "gw".into(),
        client_secret_file: secret_file.into(),
        scopes: vec!["billing.read".into(), "billing.write".into()],
        audience: Some("https://billing.example".into()),
        auth_style: AuthStyle::Basic,
        refresh_ahead_secs,
        default_ttl_secs: 300,
        timeout_ms: 5_000,
    }
}

#[tokio::test]
async fn client_credentials_fetch_single_flight_and_refresh_ahead() {
    let (url, ep) = token_endpoint(3).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    // Lifetime 3 s, refresh ahead 1.5 s (capped at half the lifetime).
    let source = ClientCredentials::new(oauth_config(&url, &secret, 60)).unwrap();
    let served = Served::start(CredentialsService::new(None, vec![source.clone()])).await;
    let client = served.client().await;

    // 50 concurrent resolves of a cold cache: one token request.
    let before = now_ms();
    let answers = futures_join((0..50).map(|_| {
        let mut c = client.clone();
        async move { resolve(&mut c, "billing").await.unwrap() }
    }))
    .await;
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1, "single flight");
    for (tok, exp, ty) in &answers {
        assert_eq!((tok.as_str(), ty.as_str()), ("tok-1", "Bearer"));
        assert!(*exp >= before + 3_000 && *exp <= now_ms() + 3_000);
    }
    let form = ep.last_form.lock().unwrap().clone();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(form.contains("scope=billing.read+billing.write"), "{form}");
    assert!(form.contains("audience=https%3A%2F%2Fbilling.example"), "{form}");
    assert!(!form.contains("s3cret"), "the secret travels in the Basic header only");

    // Warm: no request.
    let mut c = client.clone();
    assert_eq!(resolve(&mut c, "billing").await.unwrap().0, "tok-1");
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);

    // Inside the refresh-ahead window: the current token is still served while
    // exactly one background refresh runs; then the new token is served.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    for _ in 0..10 {
        assert_eq!(resolve(&mut c, "billing").await.unwrap().0, "tok-1");
    }
    assert!(eventually(async || resolve(&mut c, "billing").await.is_ok_and(|r| r.0 == "tok-2")).await);
    assert_eq!(ep.calls.load(Ordering::SeqCst), 2);
    assert_eq!(source.token_requests(), 2);
}

#[tokio::test]
async fn client_credentials_refused_is_unavailable_and_secret_never_in_errors() {
    let (url, ep) = token_endpoint(60).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "wrong-secret").unwrap();
    let source = ClientCredentials::new(oauth_config(&url, &secret, 10)).unwrap();
    let served = Served::start(CredentialsService::new(None, vec![source])).await;
    let mut c = served.client().await;
    let err = resolve(&mut c, "billing").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("invalid_client"), "{}", err.message());
    assert!(!err.message().contains("wrong-secret"));
    assert_eq!(ep.calls.load(Ordering::SeqCst), 1);

    // A rotated secret file is picked up without a restart.
    std::fs::write(&secret, "s3cret").unwrap();
    assert_eq!(resolve(&mut c, "billing").await.unwrap().0, "tok-2");

    // Unreachable endpoint: UNAVAILABLE too.
    let dead = ClientCredentials::new(oauth_config("http://127.0.0.1:9/token", &secret, 10)).unwrap();
    let served = Served::start(CredentialsService::new(None, vec![dead])).await;
    let mut c = served.client().await;
    assert_eq!(resolve(&mut c, "billing").await.unwrap_err().code(), Code::Unavailable);
}

/// Joins futures concurrently on the current task set.
async fn futures_join<F: Future + Send + 'static>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(tokio::time::timeout(STEP, h).await.unwrap().unwrap());
    }
    out
}
