//! Test harness: the real `wasmgate` binary, a real OIDC issuer serving
//! discovery and JWKS over HTTP on loopback, and the real sample driver on a
//! Unix socket.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use wasmgate::demo::{DEMO_AUDIENCE, DevClaims, DevIssuer};
use wasmgate_proto::sandbox::sandbox_service_client::SandboxServiceClient;

pub const SECRET: &str = "e2e-sandbox-secret-0123456789abcdef";

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A running gateway process with its issuer and driver.
pub struct Env {
    /// Holds the config, log and driver socket; removed on drop.
    _dir: tempfile::TempDir,
    pub issuer: DevIssuer,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    base: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wasmgate")
}

pub fn fixture(name: &str) -> PathBuf {
    wasmgate::plugins::fixture_path(name)
}

/// Starts the driver and issuer in this process and the gateway binary with
/// the demo config, changed by `edit` (YAML text in, YAML text out).
pub async fn start(edit: impl FnOnce(String) -> String) -> Env {
    start_with(edit, None).await
}

/// Like [`start`]; with `tls_root` the gateway is reached over HTTPS as
/// `localhost`, trusting that certificate.
pub async fn start_with(edit: impl FnOnce(String) -> String, tls_root: Option<reqwest::Certificate>) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("driver.sock");
    let listener = sandbox_driver::bind(&socket).expect("bind driver socket");
    tokio::spawn(async move {
        let _ = sandbox_driver::serve(listener, std::future::pending()).await;
    });
    let issuer = DevIssuer::start().await.expect("dev issuer");
    let addr = free_port();
    let yaml = edit(wasmgate::demo::demo_config(addr, issuer.issuer(), &socket, SECRET));
    let cfg_path = dir.path().join("wasmgate.yaml");
    std::fs::write(&cfg_path, yaml).expect("write config");
    let log = dir.path().join("wasmgate.log");
    let child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("WASMGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start wasmgate");
    let (client, base) = match tls_root {
        None => (reqwest::Client::new(), format!("http://{addr}")),
        Some(root) => (
            reqwest::Client::builder()
                .add_root_certificate(root)
                .resolve("localhost", addr)
                .build()
                .expect("tls client"),
            format!("https://localhost:{}", addr.port()),
        ),
    };
    let mut env = Env { _dir: dir, issuer, addr, client, base, child, log };
    env.wait_ready().await;
    env
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let client = self.client.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited ({status}) before it was ready; log:\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "gateway not ready in 60 s; log:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn token(&self, subject: &str, roles: &[&str], scope: &str) -> String {
        self.issuer
            .mint(&DevClaims { subject, audience: DEMO_AUDIENCE, roles, scope, tenant: "acme", ttl_seconds: 600 })
            .expect("mint")
    }

    pub fn admin(&self) -> String {
        self.token("alice", &["admin"], "sandbox.read sandbox.write sandbox.admin")
    }

    pub fn user(&self) -> String {
        self.token("bob", &["user"], "sandbox.read sandbox.write")
    }

    pub fn sign(&self, claims: Value) -> String {
        self.issuer.sign(&claims).expect("sign")
    }

    pub fn claims(&self, subject: &str) -> Value {
        json!({
            "iss": self.issuer.issuer(), "aud": DEMO_AUDIENCE, "sub": subject,
            "iat": now(), "exp": now() + 600,
            "realm_access": {"roles": ["admin"]}, "scope": "sandbox.read", "tenant": "acme",
        })
    }

    pub async fn grpc(&self) -> SandboxServiceClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(self.url(""))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to gateway");
        SandboxServiceClient::new(channel)
    }
}

pub fn with_bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {token}").parse().expect("metadata");
    req.metadata_mut().insert("authorization", v);
    req
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Like [`start`], but the gateway runs from its own working directory (the
/// returned [`Env::dir`]) and gets `config` as written, e.g. a relative
/// `gateway.yaml`: the config text (the demo config changed by `edit`) is
/// written to `dir/config` unless `prepare` (called first, with `dir` and
/// the text) already put something there.
pub async fn start_in_dir(config: &str, edit: impl FnOnce(String) -> String, prepare: impl FnOnce(&Path, &str)) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("driver.sock");
    let listener = sandbox_driver::bind(&socket).expect("bind driver socket");
    tokio::spawn(async move {
        let _ = sandbox_driver::serve(listener, std::future::pending()).await;
    });
    let issuer = DevIssuer::start().await.expect("dev issuer");
    let addr = free_port();
    let yaml = edit(wasmgate::demo::demo_config(addr, issuer.issuer(), &socket, SECRET));
    prepare(dir.path(), &yaml);
    let cfg_path = dir.path().join(config);
    if cfg_path.symlink_metadata().is_err() {
        std::fs::write(&cfg_path, &yaml).expect("write config");
    }
    let log = dir.path().join("wasmgate.log");
    let child = Command::new(bin())
        .args(["serve", "--config", config])
        .current_dir(dir.path())
        .env("WASMGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start wasmgate");
    let base = format!("http://{addr}");
    let mut env = Env { _dir: dir, issuer, addr, client: reqwest::Client::new(), base, child, log };
    env.wait_ready().await;
    env
}

impl Env {
    /// The folder holding the config, the log and the driver socket (the
    /// gateway's working directory for [`start_in_dir`]).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The gateway process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to the gateway, as the kubelet does.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits up to `within` for the gateway to exit; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the gateway") {
                return status;
            }
            assert!(Instant::now() < deadline, "gateway still running after {within:?}; log:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An h2c client connection to `addr`, driven in the background; requests
/// built by hand reach the gateway exactly as written.
pub async fn h2c(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        h2::client::Builder::new().initial_max_send_streams(1000).handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Starts a gRPC call with an empty message on `path` (not normalized by
/// any client library) and returns its response head, or the
/// trailers-only rejection, once it arrives.
pub async fn grpc_unary(send: &h2::client::SendRequest<bytes::Bytes>, path: &str) -> http::Response<h2::RecvStream> {
    let mut send = send.clone().ready().await.expect("ready");
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://gw.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (resp, mut body) = send.send_request(req, false).expect("send");
    // A gateway that refuses the call at once (a trailers-only answer, then
    // RST_STREAM(NO_ERROR)) may have closed the stream before the message
    // is sent: the send then fails with `InactiveStreamId`, and the answer
    // is still what the call got. Any other failure shows in the response.
    if let Err(e) = body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true) {
        assert!(e.is_reset() || e.reason().is_some() || e.to_string().contains("inactive stream"), "body: {e}");
    }
    resp.await.expect("response head")
}
