//! Upstream credentials through the real binary and the reference
//! credentials driver on a Unix socket: the credential policy picks, the
//! gateway resolves and injects; a driver that is down gives 503 and a
//! failing `/readyz`, never a forwarded call without its credential, and
//! the gateway reconnects when the driver comes back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use wasmgate_proto::credentials::credentials_driver_server::{CredentialsDriver, CredentialsDriverServer};
use wasmgate_proto::credentials::{
    CredentialInfo, ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest,
    ResolveCredentialResponse,
};

use crate::support::{self, start};

/// A credentials driver that counts its calls and takes 100 ms to resolve,
/// so concurrent misses overlap.
#[derive(Clone, Default)]
struct CountingDriver {
    resolves: Arc<AtomicU64>,
    lists: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl CredentialsDriver for CountingDriver {
    async fn resolve_credential(
        &self,
        request: tonic::Request<ResolveCredentialRequest>,
    ) -> Result<tonic::Response<ResolveCredentialResponse>, tonic::Status> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(tonic::Response::new(ResolveCredentialResponse {
            token: format!("counted-{}", request.into_inner().name),
            expires_at_ms: 0,
            token_type: "Bearer".into(),
        }))
    }

    async fn list_credentials(
        &self,
        _request: tonic::Request<ListCredentialsRequest>,
    ) -> Result<tonic::Response<ListCredentialsResponse>, tonic::Status> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(ListCredentialsResponse {
            credentials: vec![CredentialInfo { name: "cred-a".into(), scopes: vec![] }],
        }))
    }
}

/// An upstream that answers with the `authorization` header it received.
async fn echo_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            axum::Json(json!({ "authorization": auth }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

/// Runs the reference credentials driver on `socket` until the returned
/// sender is dropped or fired.
/// A running reference driver; [`DriverStop::now`] stops it and returns
/// once it has (graceful: its connections are closed, not just announced).
struct DriverStop {
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<()>,
}

impl DriverStop {
    async fn now(self) {
        self.stop.send(()).expect("stop driver");
        tokio::time::timeout(Duration::from_secs(10), self.served).await.expect("the driver stops").expect("join");
    }
}

fn run_driver(config: &Path, socket: &Path) -> (DriverStop, credentials_driver::Driver) {
    let cfg = credentials_driver::config::Config::load(config).expect("driver config");
    let driver = credentials_driver::Driver::start(&cfg).expect("driver starts");
    let listener = credentials_driver::bind(socket).expect("bind driver socket");
    let (stop, stopped) = oneshot::channel::<()>();
    let service = driver.service.clone();
    let served = tokio::spawn(async move {
        let _ = credentials_driver::serve(listener, service, async {
            let _ = stopped.await;
        })
        .await;
    });
    (DriverStop { stop, served }, driver)
}

fn driver_files(dir: &Path) -> (PathBuf, PathBuf) {
    let expires = (std::time::SystemTime::now() + Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let creds = dir.join("creds.yaml");
    std::fs::write(
        &creds,
        format!(
            "credentials:\n  - {{ name: cred-a, token: token-a-0123456789, expires_at: {expires} }}\n  - {{ name: cred-b, token: token-b-0123456789, expires_at: {expires} }}\n"
        ),
    )
    .expect("credentials file");
    let cfg = dir.join("driver.yaml");
    std::fs::write(&cfg, format!("static: {{ file: \"{}\" }}\n", creds.display())).expect("driver config");
    (cfg, dir.join("credentials.sock"))
}

async fn echo(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(url).header("authorization", "Bearer from-the-client").send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The demo config plus a credentials driver on `sock`, rules for `/echo/a`
/// and `/echo/b`, and a route `/echo` to `upstream`.
fn with_echo_route(y: String, sock: &str, upstream: SocketAddr) -> String {
    let y = y.replacen(
        "policy:\n",
        &format!(
            "drivers:\n  credentials: {{ socket: \"{sock}\", timeout_ms: 500, health_interval_ms: 100, connect: {{ interval_ms: 100, max_backoff_ms: 200 }} }}\npolicy:\n  credential_policy:\n    plugin: builtin:default-credential-policy\n    settings:\n      rules:\n        - {{ match: \"/echo/a\", credential: cred-a }}\n        - {{ match: \"/echo/b\", credential: cred-b }}\n"
        ),
        1,
    );
    let y = y.replace(
        "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
        "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/echo/*\", class: unauthenticated }\n",
    );
    format!("{y}  - name: echo\n    match: {{ path_prefix: /echo }}\n    upstream: \"http://{upstream}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_on_a_cold_credential_make_one_driver_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("counting.sock");
    let driver = CountingDriver::default();
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let server = driver.clone();
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(CredentialsDriverServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    let (upstream, hits) = echo_upstream().await;
    let sock = support::path_str(&socket);
    let env = start(|y| with_echo_route(y, &sock, upstream)).await;
    let c = reqwest::Client::new();
    let calls: Vec<_> = (0..100).map(|_| echo(&c, env.url("/echo/a"))).collect();
    let answers = futures::future::join_all(calls).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}; log:\n{}", env.logs());
        assert_eq!(body["authorization"], "Bearer counted-cred-a");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 100);
    assert_eq!(driver.resolves.load(Ordering::SeqCst), 1, "100 concurrent misses share one ResolveCredential");
    assert_eq!(driver.lists.load(Ordering::SeqCst), 1, "and one ListCredentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_injected_and_a_down_driver_is_503_then_reconnects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (driver_cfg, socket) = driver_files(dir.path());
    let (stop, _driver) = run_driver(&driver_cfg, &socket);
    let (upstream, hits) = echo_upstream().await;
    let sock = support::path_str(&socket);
    let env = start(|y| with_echo_route(y, &sock, upstream)).await;
    let c = reqwest::Client::new();

    // Injected: the policy's credential replaces whatever the client sent.
    let (status, body) = echo(&c, env.url("/echo/a")).await;
    assert_eq!(status, 200, "{body}; log:\n{}", env.logs());
    assert_eq!(body["authorization"], "Bearer token-a-0123456789");
    // No rule, no credential: the client's Authorization is still removed.
    let (status, body) = echo(&c, env.url("/echo/none")).await;
    assert_eq!((status, &body["authorization"]), (200, &Value::Null));
    assert!(!env.logs().contains("token-a-0123456789"), "a credential reached the log");

    // The driver goes away: a credential not cached yet cannot be had → 503,
    // and the call is not forwarded without it.
    // Stopped, not just asked to: a call racing the driver's GOAWAY could
    // still be answered on the open connection.
    stop.now().await;
    let _ = std::fs::remove_file(&socket);
    let before = hits.load(Ordering::Relaxed);
    let started = Instant::now();
    let r = c.get(env.url("/echo/b")).send().await.expect("send");
    assert_eq!(r.status(), 503);
    // Bounded by the driver deadline (500 ms) plus scheduling on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5), "a missing socket does not hang: {:?}", started.elapsed());
    assert_eq!(r.text().await.expect("body").trim(), r#"{"error":"credentials_unavailable"}"#);
    assert_eq!(hits.load(Ordering::Relaxed), before, "never forwarded without its credential");
    // A credential cached before the outage is still valid and still served.
    assert_eq!(echo(&c, env.url("/echo/a")).await.0, 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.get(env.url("/readyz")).send().await.expect("readyz");
        let (status, text) = (r.status(), r.text().await.unwrap_or_default());
        if status == 503 && text.contains("driver credentials: not ready") {
            break;
        }
        assert!(Instant::now() < deadline, "readyz never reflected the driver: {status} {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unavailable = |l: &str| l.contains("credentials_unavailable") || l.contains("credentials driver unavailable");
    let logs = crate::decision_log::logs_when(&env, unavailable).await;
    assert!(unavailable(&logs), "{logs}");

    // The driver comes back on the same socket: the gateway reconnects by itself.
    let (_stop, _driver) = run_driver(&driver_cfg, &socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = echo(&c, env.url("/echo/b")).await;
        if status == 200 {
            assert_eq!(body["authorization"], "Bearer token-b-0123456789");
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect: {status}; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.get(env.url("/readyz")).send().await.expect("readyz").status() != 200 {
        assert!(Instant::now() < deadline, "readyz never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
