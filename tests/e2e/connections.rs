//! Client connections through the real binary: `server.max_connections`,
//! the first-byte, head and idle timeouts, HTTP/2 PING keep-alive, and the
//! gateway's file descriptors while clients hold sockets open. Every socket
//! is on loopback, bounded in number, and closed when its test ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmgate_proto::sandbox::WatchSandboxesRequest;

use crate::support::{self, Env, with_bearer};

/// The gateway's open file descriptors.
fn fds(env: &Env) -> usize {
    pid_fds(env.pid())
}

fn pid_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the gateway's /proc/PID/fd").count()
}

/// The demo config with `server:` set to `server` (YAML lines, indented).
fn with_server(server: &'static str) -> impl FnOnce(String) -> String {
    move |yaml| format!("server:\n{server}\n{yaml}")
}

/// A client that opens a new connection for every request.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

/// Reads until the gateway closes `s` (EOF or reset) or `within` passes;
/// how long it took, and the bytes read.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((started.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the gateway has closed `s` (without waiting).
fn is_closed(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to the gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_past_max_connections_leave_room_for_normal_clients_with_fds_bounded() {
    const MAX: usize = 32;
    const SILENT: usize = 200;
    // Timeouts far beyond the test: only the connection limit is at work.
    let env = support::start(with_server(
        "  max_connections: 32\n  first_byte_timeout_seconds: 300\n  http1: { header_read_timeout_seconds: 300 }",
    ))
    .await;
    assert!(env.logs().contains("open-file limit"), "the fd limit is logged at start:\n{}", env.logs());
    let before = fds(&env);
    let mut silent = Vec::new();
    let mut most = before;
    for i in 0..SILENT {
        silent.push(connect(env.addr).await);
        if i % 20 == 0 {
            most = most.max(fds(&env));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    most = most.max(fds(&env));

    // New connections, one per request, and a keep-alive one, all served.
    let fresh = fresh_connections();
    let keep_alive = reqwest::Client::builder().http1_only().timeout(Duration::from_secs(3)).build().expect("client");
    for i in 0..20 {
        let started = Instant::now();
        let client = if i % 2 == 0 { &fresh } else { &keep_alive };
        let r = client.get(env.url("/v1/healthz")).send().await.expect("a normal request is served");
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2), "request {i} took {:?}", started.elapsed());
        most = most.max(fds(&env));
        // The attacker keeps opening connections meanwhile.
        silent.push(connect(env.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    most = most.max(fds(&env));
    let open = silent.iter().filter(|s| !is_closed(s)).count();
    eprintln!(
        "gateway fds: {before} before, at most {most} with {} silent connections ({open} left open)",
        silent.len()
    );
    assert!(open <= MAX, "{open} of {} silent connections still open, limit {MAX}", silent.len());
    // Each connection is one descriptor; allow a few for connections being
    // evicted (the accept loop waits once 8 are), upstream connections and
    // the like.
    assert!(
        most <= before + MAX + 16,
        "the gateway held {most} fds with {} silent connections (before: {before}, limit {MAX})",
        silent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_with_every_connection_busy_a_new_one_is_closed_at_once() {
    let env = support::start(with_server("  max_connections: 3")).await;
    let user = env.user();
    let mut watches = Vec::new();
    for _ in 0..3 {
        let mut client = env.grpc().await;
        let stream = client
            .watch_sandboxes(with_bearer(WatchSandboxesRequest { max_events: 0 }, &user))
            .await
            .expect("a watch stream")
            .into_inner();
        watches.push((client, stream));
    }
    // Three connections, each with a request in flight: a fourth is closed
    // at once, even one that sends a request.
    let mut s = connect(env.addr).await;
    let _ = s.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    let (took, got) = closed_within(&mut s, Duration::from_secs(2)).await.expect("the fourth connection is closed");
    assert!(got.is_empty(), "nothing is served on it: {}", String::from_utf8_lossy(&got));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert!(env.logs().contains("connection limit reached"), "{}", env.logs());
    // The watches were not disturbed; once one ends, there is room again.
    watches.truncate(2);
    let deadline = Instant::now() + Duration::from_secs(5);
    let client = fresh_connections();
    loop {
        if let Ok(r) = client.get(env.url("/v1/healthz")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(Instant::now() < deadline, "no room after a watch ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_or_too_little_are_closed_on_time() {
    let env =
        support::start(with_server("  first_byte_timeout_seconds: 1\n  http1: { header_read_timeout_seconds: 3 }"))
            .await;
    let addr = env.addr;
    let silent = tokio::spawn(async move {
        let mut s = connect(addr).await;
        closed_within(&mut s, Duration::from_secs(6)).await
    });
    // The first head is timed from the connection's start, not its first
    // byte: a slow head and a slow HTTP/2 preface (while the version is
    // still being detected) both get 3 s.
    let trickle = |first: &'static [u8], rest: &'static [u8]| {
        tokio::spawn(async move {
            let started = Instant::now();
            let mut s = connect(addr).await;
            s.write_all(first).await.expect("first bytes");
            let mut rest = rest.iter();
            while started.elapsed() < Duration::from_secs(8) {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if is_closed(&s) {
                    return Some(started.elapsed());
                }
                if let Some(&b) = rest.next()
                    && s.write_all(&[b]).await.is_err()
                {
                    return Some(started.elapsed());
                }
            }
            None
        })
    };
    let slow_head = trickle(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ", b"xxxxxxxxxxxxxxxxxxxx");
    // 8 more bytes at 400 ms each would complete the preface after 3.2 s.
    let slow_preface = trickle(b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n");

    let (took, got) = silent.await.expect("join").expect("a silent connection is closed");
    assert!(got.is_empty());
    assert!((Duration::from_millis(800)..Duration::from_millis(2500)).contains(&took), "silent closed after {took:?}");
    for (name, task) in [("slow head", slow_head), ("slow preface", slow_preface)] {
        let took = task.await.expect("join").unwrap_or_else(|| panic!("{name}: not closed"));
        assert!(
            (Duration::from_millis(2500)..Duration::from_millis(5000)).contains(&took),
            "{name}: closed after {took:?}"
        );
    }
    // A client that sends at once is unaffected.
    let r = fresh_connections().get(env.url("/v1/healthz")).send().await.expect("served");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_and_http2_connections_are_closed_after_their_idle_timeouts() {
    let env = support::start(with_server(
        "  http1: { idle_timeout_seconds: 2 }\n  http2: { idle_timeout_seconds: 4, keep_alive_interval_seconds: 1, keep_alive_timeout_seconds: 1 }",
    ))
    .await;
    let addr = env.addr;
    const REQUEST: &[u8] = b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\n\r\n";

    // HTTP/1.1 keep-alive: requests 1 s apart keep the connection; 2 s idle
    // after the last response closes it.
    let http1 = tokio::spawn(async move {
        let mut s = connect(addr).await;
        let mut buf = [0u8; 4096];
        for _ in 0..4 {
            s.write_all(REQUEST).await.expect("request");
            let n = s.read(&mut buf).await.expect("response");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        s.write_all(REQUEST).await.expect("request");
        let _ = s.read(&mut buf).await.expect("response");
        closed_within(&mut s, Duration::from_secs(6)).await.map(|(took, _)| took)
    });

    // HTTP/2 with the `h2` crate (it answers PINGs): one request, then no
    // stream: GOAWAY after 4 s.
    let http2 = tokio::spawn(async move {
        let tcp = connect(addr).await;
        let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let conn = tokio::spawn(conn);
        let mut send = send.ready().await.expect("ready");
        let req = http::Request::get(format!("http://{addr}/v1/healthz")).body(()).expect("request");
        let (response, _) = send.send_request(req, true).expect("send");
        let response = response.await.expect("response");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let _ = chunk.expect("body");
        }
        drop(body);
        let idle_from = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
        (idle_from.elapsed(), ended.is_ok(), send)
    });

    // HTTP/2 from a client that never answers a PING: a PING after 1 s
    // without frames, the connection closed 1 s later.
    let deaf = tokio::spawn(async move {
        let mut s = connect(addr).await;
        // Preface, empty SETTINGS, and nothing more (no SETTINGS ACK, no PING ACK).
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        s.write_all(&hello).await.expect("preface");
        let (took, got) = closed_within(&mut s, Duration::from_secs(6)).await.expect("closed");
        (took, frame_types(&got))
    });

    let took = http1.await.expect("join").expect("the idle keep-alive connection is closed");
    assert!((Duration::from_millis(1500)..Duration::from_millis(3500)).contains(&took), "HTTP/1.1 idle: {took:?}");
    let (took, ended, _send) = http2.await.expect("join");
    assert!(ended, "the idle HTTP/2 connection is closed");
    assert!((Duration::from_millis(3000)..Duration::from_millis(6500)).contains(&took), "HTTP/2 idle: {took:?}");
    let (took, frames) = deaf.await.expect("join");
    assert!(frames.contains(&0x6), "the gateway sent a PING: frames {frames:?}");
    assert!((Duration::from_millis(1500)..Duration::from_millis(3500)).contains(&took), "PING timeout: {took:?}");
}

/// The frame types in a run of HTTP/2 frames from the gateway.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = bytes.get(9 + len..).unwrap_or_default();
    }
    types
}

/// The gateway with the demo config, started under a low open-file limit
/// (`soft`, `hard`), as a shell's `ulimit` sets it.
struct Limited {
    _dir: tempfile::TempDir,
    _issuer: wasmgate::demo::DevIssuer,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Limited {
    async fn start(soft: u32, hard: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("driver.sock");
        let listener = sandbox_driver::bind(&socket).expect("bind driver socket");
        tokio::spawn(async move {
            let _ = sandbox_driver::serve(listener, std::future::pending()).await;
        });
        let issuer = wasmgate::demo::DevIssuer::start().await.expect("dev issuer");
        let addr = support::free_port();
        let cfg = dir.path().join("wasmgate.yaml");
        std::fs::write(&cfg, wasmgate::demo::demo_config(addr, issuer.issuer(), &socket, support::SECRET))
            .expect("write config");
        let log = dir.path().join("wasmgate.log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" serve --config \"$1\""))
            .arg(support::bin())
            .arg(&cfg)
            .env("WASMGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start wasmgate");
        let mut gw = Self { _dir: dir, _issuer: issuer, addr, child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = fresh_connections();
        loop {
            if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
                && r.status() == 200
            {
                return gw;
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("gateway exited ({status}); log:\n{}", gw.logs());
            }
            assert!(Instant::now() < deadline, "gateway not ready; log:\n{}", gw.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_open_file_limit_silent_connections_cannot_exhaust_descriptors() {
    // The finding: with the fd limit at 256, 300 silent connections made
    // every normal request time out and the log wrote `accept failed` 20
    // times a second. Started with a soft limit of 128 and a hard one of
    // 256, the gateway raises the soft limit to 256 and holds at most 128
    // client connections (half the limit, below the default 10000).
    let gw = Limited::start(128, 256).await;
    let logs = gw.logs();
    assert!(logs.contains("raised the open-file limit"), "{logs}");
    assert!(logs.contains("more than half the open-file limit"), "{logs}");
    let pid = gw.child.id();
    let mut silent = Vec::new();
    let mut most = 0;
    for i in 0..300 {
        silent.push(connect(gw.addr).await);
        if i % 25 == 0 {
            most = most.max(pid_fds(pid));
        }
    }
    let client = fresh_connections();
    for i in 0..20 {
        let started = Instant::now();
        let r = client.get(format!("http://{}/v1/healthz", gw.addr)).send().await.expect("a normal request is served");
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(2), "request {i} took {:?}", started.elapsed());
        most = most.max(pid_fds(pid));
    }
    let open = silent.iter().filter(|s| !is_closed(s)).count();
    eprintln!("gateway fds: at most {most} of 256 with 300 silent connections ({open} left open)");
    assert!(open <= 128, "{open} silent connections open");
    assert!(most < 200, "{most} fds");
    let logs = gw.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_at_once_and_lets_requests_in_flight_finish() {
    // No drain delay: this is the stage after it (tests/e2e/lifecycle.rs has the delay).
    let env = support::start(|y| format!("shutdown: {{ drain_delay_ms: 0 }}\n{y}")).await;
    let addr = env.addr;
    let mut silent = connect(addr).await;
    let mut partial = connect(addr).await;
    partial.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\n").await.expect("part of a head");
    let mut keep_alive = connect(addr).await;
    keep_alive.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await.expect("request");
    let mut buf = [0u8; 4096];
    let n = keep_alive.read(&mut buf).await.expect("response");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut busy = connect(addr).await;
    busy.write_all(b"POST /v1/healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nab").await.expect("head");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let status = Command::new("kill").args(["-TERM", &env.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    for (name, s) in [("silent", &mut silent), ("mid-head", &mut partial), ("keep-alive", &mut keep_alive)] {
        let (took, _) = closed_within(s, Duration::from_secs(5)).await.unwrap_or_else(|| panic!("{name} not closed"));
        assert!(took < Duration::from_secs(1), "{name} closed after {took:?}");
    }
    // The request in flight finishes and gets its answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    busy.write_all(b"cde").await.expect("the rest of the body");
    let (_, got) = closed_within(&mut busy, Duration::from_secs(5)).await.expect("answered, then closed");
    assert!(got.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&got));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(env.pid()) {
        assert!(Instant::now() < deadline, "still running 10 s after SIGTERM; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
