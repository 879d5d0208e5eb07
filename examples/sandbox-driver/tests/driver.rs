//! End-to-end tests: the driver serves on a real Unix socket in a temp dir and
//! is exercised with a tonic client (HTTP/2) and a plain hyper HTTP/1.1 client.
#![allow(clippy::unwrap_used)]

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use wasmgate_proto::sandbox::sandbox_event::Kind;
use wasmgate_proto::sandbox::sandbox_service_client::SandboxServiceClient;
use wasmgate_proto::sandbox::{
    CreateSandboxRequest, DeleteSandboxRequest, DriverConfig, GetCallerRequest, GetConfigRequest, GetSandboxRequest,
    ListSandboxesRequest, SandboxState, UpdateConfigRequest, WatchSandboxesRequest,
};

/// Upper bound for any single await in these tests, so a bug hangs nothing.
const STEP: Duration = Duration::from_secs(10);

struct Driver {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Driver {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("driver.sock");
        let listener = sandbox_driver::bind(&path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sandbox_driver::serve(listener, async move {
            let _ = stopped.await;
        }));
        Self { _dir: dir, path, stop: Some(stop), task }
    }

    async fn grpc(&self) -> SandboxServiceClient<Channel> {
        SandboxServiceClient::new(channel(&self.path).await)
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(STEP, &mut self.task).await.unwrap().unwrap().unwrap();
    }
}

async fn channel(path: &Path) -> Channel {
    let path = path.to_owned();
    // The URI is ignored: every connection goes to the Unix socket.
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

fn with_identity<T>(msg: T, tenant: &str, subject: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("x-wasmgate-tenant", MetadataValue::try_from(tenant).unwrap());
    req.metadata_mut().insert("x-wasmgate-subject", MetadataValue::try_from(subject).unwrap());
    req
}

fn create_req(name: &str, image: &str) -> CreateSandboxRequest {
    CreateSandboxRequest { name: name.into(), image: image.into() }
}

#[tokio::test]
async fn grpc_create_get_list_delete() {
    let driver = Driver::start().await;
    let mut client = driver.grpc().await;

    let a =
        client.create_sandbox(with_identity(create_req("a", "alpine:3"), "acme", "alice")).await.unwrap().into_inner();
    assert_eq!(a.id, "sbx-000001");
    assert_eq!(a.tenant, "acme");
    assert_eq!(a.created_by, "alice");
    assert_eq!(a.image, "alpine:3");
    assert_eq!(a.state, i32::from(SandboxState::Running));

    // Without identity headers tenant and creator are empty; image defaults.
    let b = client.create_sandbox(create_req("b", "")).await.unwrap().into_inner();
    assert_eq!(b.id, "sbx-000002");
    assert_eq!((b.tenant.as_str(), b.created_by.as_str()), ("", ""));
    assert_eq!(b.image, "debian:stable");

    let got = client.get_sandbox(GetSandboxRequest { id: a.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, a);

    let all = client.list_sandboxes(ListSandboxesRequest::default()).await.unwrap().into_inner().sandboxes;
    assert_eq!(all, vec![a.clone(), b.clone()]);
    let acme =
        client.list_sandboxes(ListSandboxesRequest { tenant: "acme".into() }).await.unwrap().into_inner().sandboxes;
    assert_eq!(acme, vec![a.clone()]);

    let deleted = client.delete_sandbox(DeleteSandboxRequest { id: a.id.clone() }).await.unwrap().into_inner();
    assert!(deleted.deleted);

    let err = client.get_sandbox(GetSandboxRequest { id: a.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.delete_sandbox(DeleteSandboxRequest { id: a.id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.create_sandbox(create_req("", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    driver.shutdown().await;
}

#[tokio::test]
async fn grpc_config_limits_creation() {
    let driver = Driver::start().await;
    let mut client = driver.grpc().await;

    let config = client.get_config(GetConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(config.max_sandboxes, 100);
    assert_eq!(config.default_image, "debian:stable");

    let new = DriverConfig { max_sandboxes: 1, default_image: "busybox".into() };
    let updated = client.update_config(UpdateConfigRequest { config: Some(new.clone()) }).await.unwrap().into_inner();
    assert_eq!(updated, new);
    let err = client.update_config(UpdateConfigRequest { config: None }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let first = client.create_sandbox(create_req("one", "")).await.unwrap().into_inner();
    assert_eq!(first.image, "busybox");
    let err = client.create_sandbox(create_req("two", "")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    driver.shutdown().await;
}

#[tokio::test]
async fn grpc_watch_streams_existing_then_changes() {
    let driver = Driver::start().await;
    let mut client = driver.grpc().await;
    let a = client.create_sandbox(create_req("a", "")).await.unwrap().into_inner();

    // The subscription exists once the response headers have arrived.
    let mut stream = client.watch_sandboxes(WatchSandboxesRequest { max_events: 3 }).await.unwrap().into_inner();
    let b = client.create_sandbox(create_req("b", "")).await.unwrap().into_inner();
    client.delete_sandbox(DeleteSandboxRequest { id: a.id.clone() }).await.unwrap();
    // A fourth change that the stream must not deliver (max_events = 3).
    client.delete_sandbox(DeleteSandboxRequest { id: b.id.clone() }).await.unwrap();

    let mut events = Vec::new();
    while let Some(ev) = tokio::time::timeout(STEP, stream.next()).await.unwrap() {
        events.push(ev.unwrap());
    }
    let summary: Vec<(Kind, String, SandboxState)> = events
        .into_iter()
        .map(|ev| {
            let kind = ev.kind();
            let s = ev.sandbox.unwrap();
            (kind, s.id.clone(), s.state())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (Kind::Existing, a.id.clone(), SandboxState::Running),
            (Kind::Created, b.id.clone(), SandboxState::Running),
            (Kind::Deleted, a.id.clone(), SandboxState::Deleted),
        ]
    );

    driver.shutdown().await;
}

#[tokio::test]
async fn unbounded_watch_ends_on_client_drop_and_on_shutdown() {
    let driver = Driver::start().await;
    let mut client = driver.grpc().await;

    // A watcher that goes away must not disturb the server.
    let dropped = client.watch_sandboxes(WatchSandboxesRequest { max_events: 0 }).await.unwrap().into_inner();
    drop(dropped);
    client.create_sandbox(create_req("after-drop", "")).await.unwrap();

    let mut stream = client.watch_sandboxes(WatchSandboxesRequest { max_events: 0 }).await.unwrap().into_inner();
    let first = tokio::time::timeout(STEP, stream.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.kind(), Kind::Existing);

    // Shutdown ends the open stream cleanly and serve() returns promptly.
    driver.shutdown().await;
    let end = tokio::time::timeout(STEP, stream.next()).await.unwrap();
    assert!(end.is_none(), "stream should end cleanly, got {end:?}");
}

#[tokio::test]
async fn grpc_get_caller_reports_headers_as_received() {
    let driver = Driver::start().await;
    let mut client = driver.grpc().await;

    let mut req = with_identity(GetCallerRequest {}, "acme", "alice");
    req.metadata_mut().insert("x-custom", MetadataValue::from_static("1"));
    let caller = client.get_caller(req).await.unwrap().into_inner();
    assert_eq!(caller.identity_headers.len(), 2);
    assert_eq!(caller.identity_headers["x-wasmgate-tenant"], "acme");
    assert_eq!(caller.identity_headers["x-wasmgate-subject"], "alice");
    assert!(!caller.authorization_present);
    for name in ["content-type", "te", "x-custom", "x-wasmgate-tenant"] {
        assert!(caller.header_names.iter().any(|n| n == name), "{name} missing from {:?}", caller.header_names);
    }
    let mut sorted = caller.header_names.clone();
    sorted.sort();
    assert_eq!(sorted, caller.header_names);

    let mut req = tonic::Request::new(GetCallerRequest {});
    req.metadata_mut().insert("authorization", MetadataValue::from_static("Bearer x"));
    let caller = client.get_caller(req).await.unwrap().into_inner();
    assert!(caller.authorization_present);
    assert!(caller.identity_headers.is_empty());
    assert!(caller.header_names.iter().any(|n| n == "authorization"));

    driver.shutdown().await;
}

#[tokio::test]
async fn grpc_health_is_serving() {
    let driver = Driver::start().await;
    let mut health = HealthClient::new(channel(&driver.path).await);
    for service in ["", "sandbox.v1.SandboxService"] {
        let resp = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "service {service:?}");
    }
    let err = health.check(HealthCheckRequest { service: "nope.v1.Nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    driver.shutdown().await;
}

/// Sends one HTTP/1.1 request over a fresh Unix socket connection and returns
/// status and parsed JSON body.
async fn http1(
    path: &Path,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let stream = UnixStream::connect(path).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(uri).header("host", "driver");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let bytes = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&v).unwrap())
        }
        None => Bytes::new(),
    };
    let resp =
        tokio::time::timeout(STEP, sender.send_request(req.body(Full::new(bytes)).unwrap())).await.unwrap().unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let json = if body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&body).unwrap() };
    (status, json)
}

#[tokio::test]
async fn rest_facade_over_http1() {
    let driver = Driver::start().await;
    let p = driver.path.as_path();
    let identity = [("x-wasmgate-tenant", "acme"), ("x-wasmgate-subject", "bob")];

    let (status, body) = http1(p, "GET", "/v1/healthz", &[], None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("SERVING")));

    let (status, created) =
        http1(p, "POST", "/v1/sandboxes", &identity, Some(serde_json::json!({ "name": "web", "image": "nginx" })))
            .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], "sbx-000001");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["created_by"], "bob");
    assert_eq!(created["image"], "nginx");
    assert_eq!(created["state"], "RUNNING");

    // Also visible over gRPC: both front ends share one store.
    let got =
        driver.grpc().await.get_sandbox(GetSandboxRequest { id: "sbx-000001".into() }).await.unwrap().into_inner();
    assert_eq!(got.name, "web");

    let (status, got) = http1(p, "GET", "/v1/sandboxes/sbx-000001", &[], None).await;
    assert_eq!((status, &got), (200, &created));
    let (status, list) = http1(p, "GET", "/v1/sandboxes", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(list["sandboxes"], serde_json::json!([created]));
    let (_, list) = http1(p, "GET", "/v1/sandboxes?tenant=other", &[], None).await;
    assert_eq!(list["sandboxes"], serde_json::json!([]));

    let (status, body) = http1(p, "DELETE", "/v1/sandboxes/sbx-000001", &[], None).await;
    assert_eq!((status, body["deleted"].as_bool()), (200, Some(true)));
    let (status, body) = http1(p, "GET", "/v1/sandboxes/sbx-000001", &[], None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, _) = http1(p, "DELETE", "/v1/sandboxes/sbx-000001", &[], None).await;
    assert_eq!(status, 404);

    let (status, config) = http1(p, "GET", "/v1/config", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(config, serde_json::json!({ "max_sandboxes": 100, "default_image": "debian:stable" }));
    let new = serde_json::json!({ "max_sandboxes": 0, "default_image": "busybox" });
    let (status, config) = http1(p, "PUT", "/v1/config", &[], Some(new.clone())).await;
    assert_eq!((status, &config), (200, &new));
    let (status, body) = http1(p, "POST", "/v1/sandboxes", &[], Some(serde_json::json!({ "name": "x" }))).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "RESOURCE_EXHAUSTED");

    let (status, caller) =
        http1(p, "GET", "/v1/caller", &[("x-wasmgate-tenant", "acme"), ("authorization", "Bearer t")], None).await;
    assert_eq!(status, 200);
    assert_eq!(
        caller,
        serde_json::json!({
            "identity_headers": { "x-wasmgate-tenant": "acme" },
            "authorization_present": true,
            "header_names": ["authorization", "host", "x-wasmgate-tenant"],
        })
    );

    let (status, body) = http1(p, "GET", "/v1/nope", &[], None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")));

    driver.shutdown().await;
}

#[tokio::test]
async fn bind_replaces_stale_socket_and_restricts_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");

    let first = sandbox_driver::bind(&path).unwrap();
    drop(first); // leaves a stale socket file behind
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let _second = sandbox_driver::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = sandbox_driver::bind(&file).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}
