//! Requests the upstream reads exactly as the policy did: the real binary in
//! front of a real nginx, which resolves dot-segments, `%2e` and repeated
//! slashes and decodes escapes before choosing a location, as most real
//! upstreams do. Requests go out as raw bytes: an HTTP client library would
//! normalize the path before sending it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, Env, free_port};

/// A real nginx on loopback with an open location `/public/`, a protected
/// one `/api/`, and a log of every URI it resolved.
pub struct Nginx {
    _dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
    access_log: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("nginx is not installed: `bash scripts/setup.sh` installs Debian's nginx-light");
}

impl Nginx {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port().port();
        let d = dir.path().display();
        for t in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path().join(t)).expect("temp folder");
        }
        let conf = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format resolved '$uri $request_uri';
    access_log {d}/access.log resolved;
    server {{
        listen 127.0.0.1:{port};
        location /public/ {{ return 200 "public $uri\n"; }}
        location /api/ {{ return 200 "PROTECTED $uri\n"; }}
        location / {{ return 404 "other $uri\n"; }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let access_log = dir.path().join("access.log");
        Self { _dir: dir, child, port, access_log }
    }

    /// `(resolved $uri, $request_uri as received)` of every request served.
    pub fn served(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect()
    }
}

/// An upstream that answers every request with its own request head, and
/// keeps each head it received.
pub struct Echo {
    pub port: u16,
    pub heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Echo {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let port = listener.local_addr().expect("addr").port();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    seen.lock().expect("lock").push(head.clone());
                    let resp =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}", head.len());
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Self { port, heads }
    }
}

/// The demo gateway with an nginx route behind it (`/public/*` open,
/// everything else on that route bearer) and an echo route `/echo` (open).
async fn gateway(nginx: &Nginx, echo: &Echo) -> Env {
    let (port, echo) = (nginx.port, echo.port);
    support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/public/*\", class: unauthenticated }\n        - { match: \"/echo/*\", class: unauthenticated }\n        - { match: \"/api/*\", class: bearer, scopes: [sandbox.read] }\n",
            1,
        );
        format!(
            "{y}  - name: echo\n    match: {{ path_prefix: /echo }}\n    upstream: \"http://127.0.0.1:{echo}\"\n  - name: web\n    match: {{ path_prefix: / }}\n    upstream: \"http://127.0.0.1:{port}\"\n"
        )
    })
    .await
}

/// One raw HTTP/1.1 request; returns the status and the body.
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra}Connection: close\r\n\r\n").into_bytes()
}

/// Every way we know of to spell `/api/x` under the open `/public/` prefix.
const BYPASSES: &[&str] = &[
    "/public/../api/x",
    "/public/%2e%2e/api/x",
    "/public/%2E%2E/api/x",
    "/public/.%2e/api/x",
    "/public/%2e./api/x",
    "/public/..%2fapi/x",
    "/public/..%2Fapi/x",
    "/public/%2e%2e%2fapi/x",
    "/public/x/../../api/x",
    "/public/./../api/x",
    "/public//../api/x",
    "/public/x//../../api/x",
    "/public/..%5capi/x",
    "/public/%252e%252e/api/x",
    "/public/%252e%252e%252fapi/x",
    "/public/..;/api/x",
    "/public/%2e%2e;/api/x",
    "/public/..;jsessionid=1/api/x",
    "/public%2f..%2fapi/x",
    "/public/%00/../../api/x",
    "/public/..%00/api/x",
    "/public/../../api/x",
    "/public/%2e%2e/%2e%2e/api/x",
    "//api/x",
    "/./api/x",
    "/public/../API/../api/x",
    "/%70ublic/../api/x",
    "/public/%2e%2e%5c/api/x",
    "/public/..%c0%af../api/x",
    "/public/%u002e%u002e/api/x",
    "http://gw.test/public/../api/x",
    "http://gw.test/public/%2e%2e/api/x",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_under_an_open_prefix_reaches_a_protected_location() {
    let nginx = Nginx::start();
    let echo = Echo::start().await;
    let env = gateway(&nginx, &echo).await;

    // Normal paths still work, and nginx receives the canonical path.
    let (status, body) = raw(env.addr, &get("/public/hello", "")).await;
    assert_eq!((status, body.as_str()), (200, "public /public/hello\n"), "log:\n{}", env.logs());
    let (status, body) = raw(env.addr, &get("/public/a/./b/../c%2Dd?q=/../api", "")).await;
    assert_eq!((status, body.as_str()), (200, "public /public/a/c-d\n"));
    let (status, _) = raw(env.addr, &get("/api/x", "")).await;
    assert_eq!(status, 401, "the protected location needs a token");
    let auth = format!("Authorization: Bearer {}\r\n", env.user());
    let (status, body) = raw(env.addr, &get("/api/x", &auth)).await;
    assert_eq!((status, body.as_str()), (200, "PROTECTED /api/x\n"));
    let (status, body) = raw(env.addr, &get("/public/../api/x", &auth)).await;
    assert_eq!((status, body.as_str()), (200, "PROTECTED /api/x\n"), "a token holder gets the canonical path");

    let before = nginx.served().len();
    let mut table = Vec::new();
    for target in BYPASSES {
        let (status, body) = raw(env.addr, &get(target, "")).await;
        table.push(format!("{status} {target}"));
        assert!(status == 400 || status == 401, "{target}: {status} {body}\nlog:\n{}", env.logs());
        assert!(!body.contains("PROTECTED"), "{target} reached the protected location");
    }
    // A fullwidth solidus is a character, not a separator, for nginx too.
    let (status, body) = raw(env.addr, &get("/public/..%ef%bc%8fapi/x", "")).await;
    assert_eq!((status, body.as_str()), (200, "public /public/..\u{ff0f}api/x\n"));
    println!("{}", table.join("\n"));
    let served = nginx.served();
    assert_eq!(served.len(), before + 1, "no bypass attempt was forwarded at all: {:?}", &served[before..]);

    // Every request nginx served was sent in canonical form: what it
    // resolved is what it received.
    for (resolved, received) in &served {
        let received_path = received.split('?').next().unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(received_path).decode_utf8_lossy();
        // nginx's log writes bytes outside ASCII as `\xHH`.
        let resolved =
            percent_encoding::percent_decode_str(&resolved.replace("\\x", "%")).decode_utf8_lossy().into_owned();
        assert_eq!(resolved, decoded, "nginx resolved {received} differently");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rewriting_headers_and_spoofed_forwarding_never_reach_the_upstream() {
    let nginx = Nginx::start();
    let echo = Echo::start().await;
    let env = gateway(&nginx, &echo).await;
    let headers = "X-HTTP-Method-Override: DELETE\r\nX_Original_URL: /api/x\r\nX-Rewrite-URL: /api/x\r\n\
                   x-method-override: PUT\r\nX-Forwarded-For: 10.9.9.9\r\nX-Forwarded-Host: admin.internal\r\n\
                   X-Forwarded-Proto: https\r\nForwarded: for=10.9.9.9\r\nX-Real-IP: 10.9.9.9\r\n";
    let (status, body) = raw(env.addr, &get("/echo/a/%2e%2e/b?x=%2e%2e", headers)).await;
    assert_eq!(status, 200, "{body}\nlog:\n{}", env.logs());
    let lower = body.to_ascii_lowercase();
    assert!(lower.starts_with("get /echo/b?x=%2e%2e http/1.1\r\n"), "canonical path, query untouched: {body}");
    for gone in ["override", "original", "rewrite", "10.9.9.9", "admin.internal", "https", "forwarded: ", "x-real-ip"] {
        assert!(!lower.contains(gone), "{gone} reached the upstream: {body}");
    }
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\r\n"), "set from the connection: {body}");
    assert!(lower.contains("x-forwarded-proto: http\r\n"), "{body}");
    assert!(lower.contains("x-forwarded-host: gw.test\r\n"), "{body}");
    assert_eq!(echo.heads.lock().expect("lock").len(), 1);
    drop(nginx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_keeps_its_forwarding_headers() {
    let nginx = Nginx::start();
    let echo = Echo::start().await;
    let (port, echo_port) = (nginx.port, echo.port);
    let env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/echo/*\", class: unauthenticated }\n",
            1,
        );
        format!(
            "requests:\n  trusted_proxies: [127.0.0.0/8]\n{y}  - name: echo\n    match: {{ path_prefix: /echo }}\n    upstream: \"http://127.0.0.1:{echo_port}\"\n  - name: web\n    match: {{ path_prefix: / }}\n    upstream: \"http://127.0.0.1:{port}\"\n"
        )
    })
    .await;
    let headers = "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\nX-HTTP-Method-Override: DELETE\r\n";
    let (status, body) = raw(env.addr, &get("/echo/x", headers)).await;
    assert_eq!(status, 200, "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 198.51.100.7, 127.0.0.1\r\n"), "{body}");
    assert!(lower.contains("x-forwarded-proto: https\r\n"), "{body}");
    assert!(!lower.contains("override"), "override headers are stripped even from a trusted proxy: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_segment_cannot_turn_a_user_call_into_an_admin_method() {
    // The sample driver serves /v1/config; the authorizer's admin-methods
    // name it. The user's call must be judged as the call it really is.
    let env = support::start(|y| y).await;
    let auth = format!("Authorization: Bearer {}\r\n", env.user());
    for target in ["/v1/sandboxes/../config", "/v1/sandboxes/%2e%2e/config", "/v1//sandboxes/../config"] {
        let request = format!(
            "PUT {target} HTTP/1.1\r\nHost: gw.test\r\n{auth}content-type: application/json\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let (status, body) = raw(env.addr, request.as_bytes()).await;
        assert_eq!(status, 403, "{target}: {body}");
    }
    let admin = format!("Authorization: Bearer {}\r\n", env.admin());
    let (status, body) = raw(env.addr, &get("/v1/sandboxes/../config", &admin)).await;
    assert_eq!(status, 200, "the admin reaches the canonical method: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_and_hosts_that_could_be_read_two_ways_are_refused() {
    let nginx = Nginx::start();
    let echo = Echo::start().await;
    let env = gateway(&nginx, &echo).await;
    for (request, why) in [
        ("GET /public/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n", "two Host headers"),
        ("GET http://a.test/public/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n", "absolute-form vs Host"),
        ("GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n", "no Host"),
        ("GET /public/x HTTP/1.1\r\nHost: user@a.test\r\nConnection: close\r\n\r\n", "userinfo in Host"),
    ] {
        let (status, body) = raw(env.addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{why}: {body}");
    }
    let (status, body) =
        raw(env.addr, b"GET http://gw.test/public/./y HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "public /public/y\n"), "absolute-form is read like origin-form");
    let logs = crate::decision_log::logs_when(&env, |l| l.contains("two Host headers")).await;
    assert!(logs.contains("two Host headers"), "the reason is logged");
}

/// Sends one gRPC-framed unary request over h2c with a hand-picked path (no
/// client library normalizes it) and returns the response's grpc-status.
async fn grpc_status_for(addr: std::net::SocketAddr, path: &str) -> String {
    let resp = support::grpc_unary(&support::h2c(addr).await, path).await;
    if let Some(s) = resp.headers().get("grpc-status") {
        return s.to_str().expect("ascii").to_owned();
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk;
    }
    let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
    trailers.get("grpc-status").map(|s| s.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_paths_that_are_not_service_and_method_are_invalid_arguments() {
    let env = support::start(|y| y).await;
    for path in [
        "/sandbox.v1.SandboxService/GetCaller/x",
        "/sandbox.v1.SandboxService/../sandbox.v1.SandboxService/UpdateConfig",
        "/x/../sandbox.v1.SandboxService/UpdateConfig",
        "/sandbox.v1.SandboxService/%55pdateConfig",
        "/sandbox.v1.SandboxService//UpdateConfig",
        "/sandbox.v1.SandboxService",
        "/sandbox.v1.SandboxService/.",
    ] {
        assert_eq!(grpc_status_for(env.addr, path).await, "3", "{path}; log:\n{}", env.logs());
    }
    // A well-formed call without credentials is judged by policy: 16.
    assert_eq!(grpc_status_for(env.addr, "/sandbox.v1.SandboxService/ListSandboxes").await, "16");
    let needle = "a gRPC path must be /<service>/<method>";
    assert!(crate::decision_log::logs_when(&env, |l| l.contains(needle)).await.contains(needle));
}
