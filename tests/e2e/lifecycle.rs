//! The gateway's life through the real binary: SIGTERM turns readiness off
//! at once, the listener keeps serving for `shutdown.drain_delay_ms`, then
//! stops accepting while calls in flight finish within `shutdown.grace_ms`;
//! the gateway's own `grpc.health.v1.Health`; and a rolling restart under
//! load, seen by a client that follows readiness as a load balancer does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{self, Env};

/// How long the slow upstream call takes: longer than the drain delay, so
/// it is still in flight when the gateway stops accepting.
const SLOW: Duration = Duration::from_secs(4);

/// An HTTP upstream: `/up/fast` answers at once, `/up/slow` after [`SLOW`].
struct Upstream {
    port: u16,
    /// Slow calls received so far.
    slow_started: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start() -> Self {
        let slow_started = Arc::new(AtomicUsize::new(0));
        let started = slow_started.clone();
        let app = axum::Router::new().route("/up/fast", get(|| async { "fast" })).route(
            "/up/slow",
            get(move || {
                started.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(SLOW).await;
                    "slow"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, slow_started }
    }
}

/// The demo config with `shutdown:` set and a route `/up` to `upstream`,
/// unauthenticated.
async fn gateway(upstream: &Upstream, shutdown: &str) -> Env {
    let (port, shutdown) = (upstream.port, shutdown.to_owned());
    support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/up/*\", class: unauthenticated }\n",
            1,
        );
        format!(
            "shutdown: {shutdown}\n{y}  - name: up\n    match: {{ path_prefix: /up }}\n    upstream: \"http://127.0.0.1:{port}\"\n"
        )
    })
    .await
}

/// Polls `probe` until it returns true, at most `within`.
async fn eventually<F: Future<Output = bool>>(what: &str, env: &Env, within: Duration, mut probe: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that opens a new connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_serves_through_the_drain_then_finishes_calls_in_flight_and_exits_0() {
    let upstream = Upstream::start().await;
    let mut env = gateway(&upstream, "{ drain_delay_ms: 3000, grace_ms: 15000 }").await;
    let c = fresh_connections();
    let ready = c.get(env.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    // A keep-alive connection opened before the signal.
    let kept = reqwest::Client::builder().http1_only().build().expect("client");
    let r = kept.get(env.url("/up/fast")).send().await.expect("fast");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("connection").is_none_or(|v| v != "close"), "keep-alive before the drain");
    // An HTTP/2 connection opened before the signal, with one call done.
    let tcp = tokio::net::TcpStream::connect(env.addr).await.expect("connect");
    let (h2, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let h2_closed = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/up/fast", env.addr)).body(()).expect("request");
    let (resp, _) = h2.ready().await.expect("ready").send_request(req, true).expect("send");
    assert_eq!(resp.await.expect("h2 response").status(), 200);

    // A slow call in flight when the signal comes.
    let slow = tokio::spawn(c.get(env.url("/up/slow")).send());
    let started = upstream.slow_started.clone();
    eventually("the slow call reaches the upstream", &env, Duration::from_secs(10), || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    env.terminate();

    // Readiness off at once, while calls are still served.
    eventually("/readyz turns 503", &env, Duration::from_secs(5), || {
        let req = c.get(env.url("/readyz")).send();
        async move { req.await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    let body = c.get(env.url("/readyz")).send().await.expect("readyz during the drain").text().await.expect("body");
    assert!(body.contains("shutting down"), "{body}");
    let r = c.get(env.url("/up/fast")).send().await.expect("a new connection during the drain delay is served");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close", "draining: the client goes elsewhere next time");
    let r = kept.get(env.url("/up/fast")).send().await.expect("the kept-alive connection is served");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    // The HTTP/2 connection got its GOAWAY and closed, while the listener
    // still accepts.
    tokio::time::timeout(Duration::from_secs(5), h2_closed).await.expect("h2 connection closed").expect("join").ok();
    tokio::net::TcpStream::connect(env.addr).await.expect("still accepting during the drain delay");

    // Then new connections are refused.
    let addr = env.addr;
    eventually("new connections refused after the drain delay", &env, Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    // The call in flight still completes, within the grace period.
    let r = slow.await.expect("join").expect("the slow call in flight completes");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "slow");

    let status = env.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", env.logs());
    let logs = env.logs();
    assert!(logs.contains("readiness is now off") && logs.contains("stopped accepting"), "{logs}");
    assert!(logs.contains("every connection finished"), "the slow call finished within the grace: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_still_running_after_the_grace_period_are_closed() {
    let upstream = Upstream::start().await;
    let mut env = gateway(&upstream, "{ drain_delay_ms: 0, grace_ms: 500 }").await;
    let slow = tokio::spawn(fresh_connections().get(env.url("/up/slow")).send());
    let started = upstream.slow_started.clone();
    eventually("the slow call reaches the upstream", &env, Duration::from_secs(10), || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    env.terminate();
    let status = env.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", env.logs());
    assert!(slow.await.expect("join").is_err(), "cut after the grace period");
    assert!(env.logs().contains("still open after the grace period"), "{}", env.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_drain_short() {
    let upstream = Upstream::start().await;
    // A drain that would outlast the test: only the second signal ends it.
    let mut env = gateway(&upstream, "{ drain_delay_ms: 600000, grace_ms: 600000 }").await;
    let slow = tokio::spawn(fresh_connections().get(env.url("/up/slow")).send());
    let started = upstream.slow_started.clone();
    eventually("the slow call reaches the upstream", &env, Duration::from_secs(10), || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    env.terminate();
    let c = fresh_connections();
    eventually("/readyz turns 503", &env, Duration::from_secs(5), || {
        let req = c.get(env.url("/readyz")).send();
        async move { req.await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    env.terminate();
    let status = env.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", env.logs());
    assert!(slow.await.expect("join").is_err(), "the call in flight was cut");
    let logs = env.logs();
    assert!(logs.contains("second shutdown signal") && logs.contains("told to stop now"), "{logs}");
}

async fn health(env: &Env) -> HealthClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(env.url("")).expect("endpoint").connect().await.expect("connect");
    HealthClient::new(channel)
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.to_owned() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_is_served_by_the_gateway_and_turns_not_serving_at_sigterm() {
    let upstream = Upstream::start().await;
    // A route for grpc.health.v1.Health to the upstream: the gateway's own
    // service comes first, knows `wasmgate`, and says so at start.
    let port = upstream.port;
    let mut env = support::start(move |y| {
        format!(
            "shutdown: {{ drain_delay_ms: 3000, grace_ms: 5000 }}\n{y}  - name: health-grpc\n    match: {{ grpc_service: grpc.health.v1.Health }}\n    upstream: \"http://127.0.0.1:{port}\"\n"
        )
    })
    .await;
    let mut client = health(&env).await;
    for service in ["", "wasmgate"] {
        let r = client.check(check(service)).await.expect("check").into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let err = client.check(check("sandbox.v1.SandboxService")).await.expect_err("unknown to the gateway");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let logs = env.logs();
    assert!(
        logs.contains("serves grpc.health.v1.Health itself") && logs.contains("health-grpc"),
        "the shadowed route is named at start: {logs}"
    );

    let mut watch = client.watch(check("")).await.expect("watch").into_inner();
    let first = watch.message().await.expect("watch message").expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let mut unknown = client.watch(check("other")).await.expect("watch").into_inner();
    let r = unknown.message().await.expect("watch message").expect("a status");
    assert_eq!(r.status(), ServingStatus::ServiceUnknown);

    env.terminate();
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("a status change within 10 s")
        .expect("watch message")
        .expect("a second status");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop((watch, unknown));
    // A new connection during the drain delay sees it too.
    let mut again = health(&env).await;
    let r = again.check(check("wasmgate")).await.expect("check during the drain").into_inner();
    assert_eq!(r.status(), ServingStatus::NotServing);
    drop((client, again));
    let status = env.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", env.logs());
}

/// One gateway as a load balancer sees it.
struct Backend {
    url: String,
    ready: AtomicBool,
    served: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_drops_no_call_for_a_client_that_follows_readiness() {
    let upstream = Upstream::start().await;
    let shutdown = "{ drain_delay_ms: 2000, grace_ms: 10000 }";
    let mut old = gateway(&upstream, shutdown).await;
    let backends: Arc<std::sync::Mutex<Vec<Arc<Backend>>>> = Arc::default();
    let add = |env: &Env| {
        let b = Arc::new(Backend { url: env.url(""), ready: AtomicBool::new(true), served: AtomicUsize::new(0) });
        backends.lock().expect("lock").push(b.clone());
        b
    };
    let old_backend = add(&old);
    let stop = Arc::new(AtomicBool::new(false));
    let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();

    // The load balancer's health checks: /readyz of each backend every 100 ms.
    let checker = {
        let (backends, stop) = (backends.clone(), stop.clone());
        let c = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let list: Vec<_> = backends.lock().expect("lock").clone();
                for b in list {
                    let ok = c.get(format!("{}/readyz", b.url)).send().await.is_ok_and(|r| r.status() == 200);
                    b.ready.store(ok, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The load: six workers sending to ready backends, round robin, on
    // keep-alive connections: four over HTTP/1.1, two over HTTP/2 (h2c).
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (backends, stop, failures) = (backends.clone(), stop.clone(), failures.clone());
            let c = reqwest::Client::builder().timeout(Duration::from_secs(10));
            let c = if w < 4 { c.http1_only() } else { c.http2_prior_knowledge() }.build().expect("client");
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::SeqCst) {
                    let ready: Vec<_> = backends
                        .lock()
                        .expect("lock")
                        .iter()
                        .filter(|b| b.ready.load(Ordering::SeqCst))
                        .cloned()
                        .collect();
                    if ready.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    i += 1;
                    let b = &ready[i % ready.len()];
                    match c.get(format!("{}/up/fast", b.url)).send().await {
                        Ok(r) if r.status() == 200 => {
                            b.served.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failures.lock().expect("lock").push(format!("{}: status {}", b.url, r.status())),
                        Err(e) => failures.lock().expect("lock").push(format!("{}: {e:?}", b.url)),
                    }
                }
            })
        })
        .collect();

    let served = |b: &Backend| b.served.load(Ordering::SeqCst);
    eventually("the old gateway serves load", &old, Duration::from_secs(10), || {
        let n = served(&old_backend);
        async move { n >= 50 }
    })
    .await;
    // The new instance comes up beside it, then the old one is told to stop.
    let new = gateway(&upstream, shutdown).await;
    let new_backend = add(&new);
    eventually("the new gateway serves load", &new, Duration::from_secs(10), || {
        let n = served(&new_backend);
        async move { n >= 50 }
    })
    .await;
    old.terminate();
    let status = old.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "old gateway's exit status {status}; log:\n{}", old.logs());
    let after = served(&new_backend);
    eventually("the new gateway serves on alone", &new, Duration::from_secs(10), || {
        let n = served(&new_backend);
        async move { n >= after + 50 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    checker.await.expect("checker");

    let failures = failures.lock().expect("lock").clone();
    let counts: HashMap<&str, usize> = [("old", served(&old_backend)), ("new", served(&new_backend))].into();
    eprintln!("rolling restart: calls served {counts:?}, failed {}", failures.len());
    assert!(
        failures.is_empty(),
        "{} failed calls ({counts:?}): {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(counts["old"] >= 50 && counts["new"] >= 100, "{counts:?}");
    assert!(!old.logs().contains("still open after the grace period"), "{}", old.logs());
}

/// Reads a response head (up to the blank line).
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await.expect("in time").expect("read");
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_outlives_the_listener_and_holds_the_exit_until_it_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A WebSocket upstream: answers 101, then echoes every byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/ws/*\", class: unauthenticated }\n",
            1,
        );
        format!(
            "shutdown: {{ drain_delay_ms: 0, grace_ms: 15000 }}\n{y}  - name: ws\n    match: {{ path_prefix: /ws }}\n    upstream: \"http://127.0.0.1:{port}\"\n    allow_upgrade: true\n"
        )
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.expect("connect");
    s.write_all(
        b"GET /ws/chat HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let head = read_head(&mut s).await;
    assert!(head.to_ascii_lowercase().starts_with("http/1.1 101"), "{head}\nlog:\n{}", env.logs());
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    let mut echoed = [0u8; 8];
    s.write_all(&frame).await.expect("write frame");
    s.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(echoed, frame);

    env.terminate();
    let addr = env.addr;
    eventually("new connections refused", &env, Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    // The tunnel still carries bytes, and the gateway waits for it.
    s.write_all(&frame).await.expect("write frame after the listener stopped");
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed)).await.expect("in time").expect("echo");
    assert_eq!(echoed, frame);
    let logs = env.logs();
    assert!(logs.contains("stopped accepting") && !logs.contains("every connection finished"), "{logs}");

    // The client ends the tunnel: the gateway finishes and exits 0 before the grace is over.
    s.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    drop(s);
    let status = env.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", env.logs());
    let logs = env.logs();
    assert!(logs.contains("every connection finished") && !logs.contains("still open after"), "{logs}");
}
