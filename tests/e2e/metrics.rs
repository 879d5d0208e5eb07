//! `/metrics` on the admin listener of the real binary, after real calls: a
//! real JWKS server (the dev issuer), a scripted upstream that answers 5xx,
//! hangs or closes, a port nothing listens on, a credentials driver over a
//! Unix socket that can be made to fail, and edits of the gateway-token key
//! folder and revocation list. Each family must be there with the expected
//! labels and counts, and no label may carry a path, a subject or a token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wasmgate_proto::credentials::credentials_driver_server::{CredentialsDriver, CredentialsDriverServer};
use wasmgate_proto::credentials::{
    CredentialInfo, ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest,
    ResolveCredentialResponse,
};

use crate::support::{self, free_port, path_str};

/// A credentials driver whose `ResolveCredential` answers `UNAVAILABLE`
/// while `failing` is set. Its credentials have no expiry, so the
/// gateway caches them for `default_ttl_ms`.
#[derive(Clone, Default)]
struct SwitchDriver {
    failing: Arc<AtomicBool>,
    resolves: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl CredentialsDriver for SwitchDriver {
    async fn resolve_credential(
        &self,
        request: tonic::Request<ResolveCredentialRequest>,
    ) -> Result<tonic::Response<ResolveCredentialResponse>, tonic::Status> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("the vault is sealed"));
        }
        Ok(tonic::Response::new(ResolveCredentialResponse {
            token: format!("metrics-secret-{}", request.into_inner().name),
            expires_at_ms: 0,
            token_type: "Bearer".into(),
        }))
    }

    async fn list_credentials(
        &self,
        _request: tonic::Request<ListCredentialsRequest>,
    ) -> Result<tonic::Response<ListCredentialsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListCredentialsResponse {
            credentials: vec![CredentialInfo { name: "cred-a".into(), scopes: vec![] }],
        }))
    }
}

fn serve_driver(socket: &Path, driver: SwitchDriver) {
    let listener = tokio::net::UnixListener::bind(socket).expect("bind driver socket");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(CredentialsDriverServer::new(driver))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
}

/// An HTTP/1.1 upstream: `/up/5xx/N` answers status N, `/up/hang` never
/// answers, `/up/closed` closes without an answer, anything else is 200.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
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
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let answer = match path.as_str() {
                    "/up/hang" => {
                        let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await;
                        return;
                    }
                    "/up/closed" => String::new(),
                    p => match p.strip_prefix("/up/5xx/") {
                        Some(code) => format!("HTTP/1.1 {code} Upstream Trouble\r\ncontent-length: 0\r\n\r\n"),
                        None => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned(),
                    },
                };
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// Writes `contents` to `path` the way an operator should: beside it, then
/// renamed into place, so the watch never reads half a file.
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).expect("name")));
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The value of the first sample `name` whose labels include `labels`
/// (in any order).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let have: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split(',').collect() };
        labels.iter().all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str())).then(|| value.parse().ok())?
    })
}

struct Scraper {
    client: reqwest::Client,
    admin: SocketAddr,
}

impl Scraper {
    async fn text(&self) -> String {
        let r = self.client.get(format!("http://{}/metrics", self.admin)).send().await.expect("scrape");
        assert_eq!(r.status(), 200);
        r.text().await.expect("body")
    }

    /// Polls until the sample exists and `ok` holds for it; returns the
    /// last scrape.
    async fn until(&self, name: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text().await;
            if sample(&text, name, labels).is_some_and(&ok) {
                return text;
            }
            assert!(Instant::now() < deadline, "{name}{labels:?} never as expected:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_upstreams_keys_drivers_credentials_and_reloads_after_real_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("credentials.sock");
    let driver = SwitchDriver::default();
    serve_driver(&socket, driver.clone());
    let port = upstream().await;
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("mkdir");
    std::fs::write(keys.join("active"), "v1\n").expect("write");
    std::fs::write(keys.join("v1"), "metrics-gateway-token-key-v1-0123456789abcdef\n").expect("write");
    std::fs::create_dir(dir.path().join("lists")).expect("mkdir");
    let revoked = dir.path().join("lists").join("revoked");
    std::fs::write(&revoked, "# revoked gateway tokens\n").expect("write");
    let admin = free_port();
    let sock = path_str(&socket);
    let (keys_s, revoked_s) = (path_str(&keys), path_str(&revoked));
    let env = support::start(move |y| {
        let y = y
            .replacen(
                "auth:\n",
                &format!("admin: {{ listen: \"{admin}\" }}\nauth:\n  gateway_tokens:\n    keys_dir: \"{keys_s}\"\n    revoked_file: \"{revoked_s}\"\n"),
                1,
            )
            .replacen(
                "policy:\n",
                &format!(
                    "drivers:\n  credentials: {{ socket: \"{sock}\", timeout_ms: 500, health_interval_ms: 100 }}\n  credential_cache: {{ default_ttl_ms: 5000, refresh_ahead_ms: 3000 }}\npolicy:\n  credential_policy:\n    plugin: builtin:default-credential-policy\n    settings:\n      rules:\n        - {{ match: \"/up/cred\", credential: cred-a }}\n"
                ),
                1,
            )
            .replacen(
                "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
                "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/up/*\", class: unauthenticated }\n        - { match: \"/down/*\", class: unauthenticated }\n",
                1,
            );
        // Port 1: nothing listens there, and no test can bind it.
        format!(
            "{y}  - name: up\n    match: {{ path_prefix: /up }}\n    upstream: \"http://127.0.0.1:{port}\"\n    timeout_ms: 500\n  - name: down\n    match: {{ path_prefix: /down }}\n    upstream: \"http://127.0.0.1:1\"\n"
        )
    })
    .await;
    let c = reqwest::Client::new();
    let scrape = Scraper { client: c.clone(), admin };
    let get = |path: &'static str| {
        let req = c.get(env.url(path));
        async move { req.send().await.expect("send").status().as_u16() }
    };

    // A call through the real JWKS: the dev issuer's key verified the token.
    let r = c.get(env.url("/v1/sandboxes")).bearer_auth(env.user()).send().await.expect("send");
    assert_eq!(r.status(), 200, "log:\n{}", env.logs());
    for (path, status) in [
        ("/up/ok", 200),
        ("/up/ok", 200),
        ("/up/5xx/502", 502),
        ("/up/5xx/503", 503),
        ("/up/5xx/504", 504),
        ("/up/hang", 504),
        ("/up/closed", 502),
        ("/down/x", 503),
        ("/up/cred", 200),
        ("/up/cred", 200),
    ] {
        assert_eq!(get(path).await, status, "{path}; log:\n{}", env.logs());
    }
    let text = scrape.text().await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
    };

    // The build.
    let info = text.lines().find(|l| l.starts_with("wasmgate_build_info{")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        info.contains("wit=\"wasmgate:policy@0.1.0\"") && info.contains("version=\"") && info.ends_with(" 1"),
        "{info}"
    );

    // Upstreams: its own 5xx by class, the gateway's failures by kind, every request sent timed.
    assert_eq!(value("wasmgate_upstream_responses_total", &[("route", "up"), ("status_class", "5xx")]), 3.0);
    assert_eq!(value("wasmgate_upstream_responses_total", &[("route", "up"), ("status_class", "2xx")]), 4.0);
    assert_eq!(value("wasmgate_upstream_failures_total", &[("route", "up"), ("kind", "timeout")]), 1.0);
    assert_eq!(value("wasmgate_upstream_failures_total", &[("route", "up"), ("kind", "reset")]), 1.0);
    assert_eq!(value("wasmgate_upstream_failures_total", &[("route", "down"), ("kind", "connect")]), 1.0);
    assert_eq!(value("wasmgate_upstream_request_duration_seconds_count", &[("route", "up")]), 9.0);
    assert!(
        value("wasmgate_upstream_request_duration_seconds_sum", &[("route", "up")]) >= 0.5,
        "the timeout waited 500 ms"
    );
    assert_eq!(value("wasmgate_upstream_request_duration_seconds_bucket", &[("route", "up"), ("le", "+Inf")]), 9.0);

    // What the clients got, and the pipeline by route.
    let client_5xx = [("route", "up"), ("method", "GET"), ("status_class", "5xx")];
    assert_eq!(value("http_server_request_duration_seconds_count", &client_5xx), 5.0);
    assert_eq!(value("wasmgate_pipeline_duration_seconds_count", &[("route", "up")]), 9.0);
    assert_eq!(value("wasmgate_pipeline_duration_seconds_count", &[("route", "sandbox-rest")]), 1.0);
    assert!(sample(&text, "wasmgate_pipeline_duration_seconds_bucket", &[("le", "0.000001")]).is_some(), "1 µs bucket");
    assert!(sample(&text, "wasmgate_pipeline_duration_seconds_bucket", &[("le", "1.0")]).is_some(), "1 s bucket");
    assert!(!text.contains("wasmgate_pipeline_seconds"), "the old name is gone");

    // The real JWKS: fetched, its key counted, its age computable.
    assert!(value("wasmgate_jwks_fetches_total", &[("provider", "dev"), ("result", "success")]) >= 1.0);
    assert!(value("wasmgate_jwks_keys", &[("provider", "dev")]) >= 1.0);
    let fetched_at = value("wasmgate_jwks_last_success_timestamp_seconds", &[("provider", "dev")]);
    let now = support::now() as f64;
    assert!(fetched_at > now - 300.0 && fetched_at <= now + 1.0, "{fetched_at} vs {now}");

    // The credentials driver: one miss fetched, one hit; per method.
    assert_eq!(value("wasmgate_credential_cache_lookups_total", &[("result", "miss")]), 1.0);
    assert_eq!(value("wasmgate_credential_cache_lookups_total", &[("result", "hit")]), 1.0);
    let resolve_ok = [("driver", "credentials"), ("method", "ResolveCredential"), ("result", "ok")];
    assert_eq!(value("wasmgate_driver_calls_total", &resolve_ok), 1.0);
    let list_ok = [("driver", "credentials"), ("method", "ListCredentials"), ("result", "ok")];
    assert!(value("wasmgate_driver_calls_total", &list_ok) >= 1.0);
    let resolve = [("driver", "credentials"), ("method", "ResolveCredential")];
    assert_eq!(value("wasmgate_driver_call_duration_seconds_count", &resolve), 1.0);

    // The driver starts failing: the refresh ahead of expiry (from 2.5 s)
    // fails and is counted; once stale (5 s) the miss fails as unavailable.
    driver.failing.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        // 200 while the cached credential is fresh, 503 once it is stale.
        let status = get("/up/cred").await;
        let text = scrape.text().await;
        let failed = sample(&text, "wasmgate_credential_refresh_failures_total", &[]).unwrap_or(0.0);
        if failed >= 1.0 && status == 503 {
            break text;
        }
        assert!(status == 200 || status == 503, "{status}");
        assert!(Instant::now() < deadline, "no refresh failure and stale miss (last status {status}):\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let unavailable = [("driver", "credentials"), ("method", "ResolveCredential"), ("result", "unavailable")];
    assert!(sample(&text, "wasmgate_driver_calls_total", &unavailable).is_some_and(|v| v >= 2.0), "{text}");
    assert!(sample(&text, "wasmgate_credential_cache_lookups_total", &[("result", "miss")]).is_some_and(|v| v >= 2.0));

    // A key rotation and a revocation: each a reload that changed its set.
    replace(&keys.join("v2"), b"metrics-gateway-token-key-v2-0123456789abcdef\n");
    replace(&keys.join("active"), b"v2\n");
    scrape.until("wasmgate_gateway_key_reloads_total", &[("result", "success")], |v| v >= 1.0).await;
    replace(&revoked, b"# revoked gateway tokens\nsome-jti 4102444800\n");
    scrape.until("wasmgate_revocation_list_reloads_total", &[("result", "success")], |v| v >= 1.0).await;
    // Edits that are rejected: an active version that is not there, a list that is not text.
    replace(&keys.join("active"), b"v9\n");
    scrape.until("wasmgate_gateway_key_reloads_total", &[("result", "failure")], |v| v >= 1.0).await;
    replace(&revoked, b"\xff\xfe not text\n");
    let text = scrape.until("wasmgate_revocation_list_reloads_total", &[("result", "failure")], |v| v >= 1.0).await;

    // Nothing high-cardinality or secret in any label.
    for leak in ["/up/", "/v1/", "bob", "acme", "some-jti", "metrics-secret", "metrics-gateway-token-key"] {
        assert!(!text.contains(leak), "{leak:?} in the metrics:\n{text}");
    }
    assert!(!env.logs().contains("metrics-secret-cred-a"), "a credential reached the log");
}
