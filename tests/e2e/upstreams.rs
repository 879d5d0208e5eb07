//! Upstreams that misbehave, through the real binary: every malformed
//! response is 502 with its cause, a stalled body hits the idle timeout, an
//! oversized request body is 413, an HTTP/1.1 upstream's connections are
//! capped with 503 past the wait queue, and no upgrade is relayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::nginx::raw;
use crate::support::{self, Env};

/// A scripted HTTP/1.1 upstream: the request path picks the answer.
struct Scripted {
    port: u16,
    /// The most connections that were open at once.
    max_open: Arc<AtomicUsize>,
}

async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

impl Scripted {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let max_open = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let max = max_open.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    // Counted open until the peer closes or the script ends.
                    struct Close(Arc<AtomicUsize>);
                    impl Drop for Close {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _close = Close(open);
                    let Some(head) = read_head(&mut s).await else { return };
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    let answer: Vec<u8> = match path.as_str() {
                        "/up/garbage" => b"this is not http\r\n\r\n".to_vec(),
                        "/up/status2000" => b"HTTP/1.1 2000 Huh\r\ncontent-length: 0\r\n\r\n".to_vec(),
                        "/up/badheader" => b"HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n".to_vec(),
                        "/up/twolengths" => {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab".to_vec()
                        }
                        "/up/hugeheader" => {
                            format!("HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n", "a".repeat(1 << 20))
                                .into_bytes()
                        }
                        "/up/closed" => Vec::new(),
                        "/up/101" => {
                            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                                .to_vec()
                        }
                        "/up/stall" => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789").await;
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                        "/up/hang" => {
                            // Until the gateway gives up on the request.
                            let mut sink = [0u8; 64];
                            let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut sink)).await;
                            return;
                        }
                        "/up/sink" => {
                            // Read the body to its end, then answer.
                            let mut rest = Vec::new();
                            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()
                        }
                        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                    };
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self { port, max_open }
    }
}

async fn gateway(upstream: &Scripted, route_extra: &str) -> Env {
    let port = upstream.port;
    let extra = route_extra.to_owned();
    support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/up/*\", class: unauthenticated }\n",
            1,
        );
        format!("{y}  - name: up\n    match: {{ path_prefix: /up }}\n    upstream: \"http://127.0.0.1:{port}\"\n{extra}")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_responses_are_502_with_their_cause() {
    let up = Scripted::start().await;
    let env = gateway(&up, "    timeout_ms: 3000\n").await;
    let c = reqwest::Client::new();
    for (path, status, kind) in [
        ("/up/garbage", 502, "protocol"),
        ("/up/status2000", 502, "protocol"),
        ("/up/badheader", 502, "protocol"),
        ("/up/twolengths", 502, "protocol"),
        ("/up/hugeheader", 502, "too_large"),
        ("/up/closed", 502, "reset"),
        ("/up/101", 502, "protocol"),
        ("/up/hang", 504, "timeout"),
    ] {
        let r = c.get(env.url(path)).send().await.expect("send");
        assert_eq!(r.status(), status, "{path}; log:\n{}", env.logs());
        let logs = env.logs();
        let line = logs
            .lines()
            .rev()
            .find(|l| l.contains("upstream request failed"))
            .unwrap_or_else(|| panic!("{path}: no upstream failure logged:\n{logs}"));
        assert!(line.contains(&format!("kind=\"{kind}\"")) || line.contains(&format!("kind={kind}")), "{path}: {line}");
    }
    let r = c.get(env.url("/up/fine")).send().await.expect("send");
    assert_eq!(r.status(), 200);
}

/// The decision records of `path` once there is one (the writer runs
/// beside the call): the JSON lines the default stderr sink writes.
async fn decisions(env: &Env, path: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = crate::decision_log::records_for(env, path);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_has_one_decision_record_written_after_the_upstream_answered() {
    let up = Scripted::start().await;
    let env = gateway(&up, "    timeout_ms: 3000\n").await;
    let c = reqwest::Client::new();
    let cases = [
        ("/up/fine", 200, vec![("outcome", json!("allow")), ("status", json!(200)), ("upstream_status", json!(200))]),
        (
            "/up/garbage",
            502,
            vec![("outcome", json!("allow")), ("status", json!(502)), ("upstream_failure", json!("protocol"))],
        ),
        (
            "/up/hang",
            504,
            vec![("outcome", json!("allow")), ("status", json!(504)), ("upstream_failure", json!("timeout"))],
        ),
        ("/nowhere", 404, vec![("outcome", json!("no_route")), ("status", json!(404))]),
    ];
    for (path, status, want) in &cases {
        let r = c.get(env.url(path)).send().await.expect("send");
        assert_eq!(r.status(), *status, "{path}");
        // Built when the response head is known: the upstream's answer (or
        // failure) is in it, and the client got the same decision id.
        let id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).expect("x-decision-id").to_owned();
        let records = decisions(&env, path).await;
        assert_eq!(records.len(), 1, "{path}: one record per call:\n{}", env.logs());
        let record = &records[0];
        assert_eq!(record["decision_id"], id.as_str(), "{record}");
        for (field, value) in want {
            assert_eq!(&record[field], value, "{path}: `{field}` in\n{record}");
        }
        if *path == "/up/garbage" {
            let reason = record["reason"].as_str().unwrap_or_default();
            assert!(reason.starts_with("upstream protocol: "), "{record}");
        }
        assert!(record["phases_us"]["sanitize"].as_u64().is_some(), "{path}: phase timings\n{record}");
        if *status != 200 {
            assert!(record.get("upstream_status").is_none(), "{path}: no upstream status without a response");
        }
    }
    // Still one each, once every record had time to be written.
    for (path, ..) in &cases {
        assert_eq!(crate::decision_log::records_for(&env, path).len(), 1, "{path}:\n{}", env.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_503_at_once() {
    // Port 1: nothing listens there, and no test can bind it (a free port
    // picked here could be taken by another test's listener meanwhile).
    let port = 1;
    let env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/down/*\", class: unauthenticated }\n",
            1,
        );
        format!("{y}  - name: down\n    match: {{ path_prefix: /down }}\n    upstream: \"http://127.0.0.1:{port}\"\n")
    })
    .await;
    let started = Instant::now();
    let r = reqwest::get(env.url("/down/x")).await.expect("send");
    assert_eq!(r.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(env.logs().contains("kind=\"connect\"") || env.logs().contains("kind=connect"), "{}", env.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_response_body_hits_the_idle_timeout() {
    let up = Scripted::start().await;
    let env = gateway(&up, "    stream_idle_timeout_ms: 300\n").await;
    let started = Instant::now();
    let r = reqwest::get(env.url("/up/stall")).await.expect("the head arrives");
    assert_eq!(r.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), r.bytes()).await.expect("the body ends, cut off");
    assert!(body.is_err(), "a stalled body is cut off, not completed");
    assert!(started.elapsed() < Duration::from_secs(5), "cut at the idle timeout: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_past_the_route_limit_are_413() {
    let up = Scripted::start().await;
    let env = gateway(&up, "    max_request_body_bytes: 1024\n").await;
    let c = reqwest::Client::new();
    let r = c.post(env.url("/up/sink")).body(vec![b'x'; 1024]).send().await.expect("send");
    assert_eq!(r.status(), 200, "at the limit");
    let r = c.post(env.url("/up/sink")).body(vec![b'x'; 1025]).send().await.expect("send");
    assert_eq!(r.status(), 413, "declared over the limit");
    // Chunked, no length declared: cut off while streaming.
    let mut request =
        b"POST /up/sink HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        request.extend_from_slice(format!("200\r\n{}\r\n", "y".repeat(512)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw(env.addr, &request).await;
    assert_eq!(status, 413, "streamed over the limit: {body}; log:\n{}", env.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_upstream_connections_are_capped_and_the_rest_refused_at_once() {
    let up = Scripted::start().await;
    let env = gateway(&up, "    max_connections: 4\n    max_pending: 4\n    timeout_ms: 20000\n").await;
    let c = reqwest::Client::new();
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            let url = env.url("/up/hang");
            tokio::spawn(async move { c.get(url).timeout(Duration::from_secs(3)).send().await.map(|r| r.status()) })
        })
        .collect();
    // While the first calls are held, the upstream has at most 4.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let most = up.max_open.load(Ordering::SeqCst);
    assert!((1..=4).contains(&most), "at most 4 upstream connections at once, saw {most}");
    let mut refused = 0;
    for call in calls {
        if let Ok(Ok(status)) = call.await
            && status == 503
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 12, "4 in flight, 4 waiting, the other 12 refused");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_refused_and_never_relayed() {
    let up = Scripted::start().await;
    let env = gateway(&up, "").await;
    let request = b"GET /up/ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (status, _) = raw(env.addr, request).await;
    assert_eq!(status, 501, "log:\n{}", env.logs());
    // An h2c upgrade offer is ignored, as a server may: answered in HTTP/1.1.
    let request =
        b"GET /up/x HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n\
                    HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let (status, body) = raw(env.addr, request).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_upstream_that_dies_mid_stream_is_unavailable_not_internal() {
    // An h2 upstream that sends the response head and one message, then
    // resets the stream.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(s).await else { return };
                // The connection is polled here; each stream runs beside it.
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let resp = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(resp, false) else { return };
                        let _ = send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        send.send_reset(h2::Reason::INTERNAL_ERROR);
                    });
                }
            });
        }
    });
    let env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/dying.v1.Svc/*\", class: unauthenticated }\n",
            1,
        );
        format!("{y}  - name: dying\n    match: {{ grpc_service: dying.v1.Svc }}\n    upstream: \"http://127.0.0.1:{port}\"\n")
    })
    .await;
    let tcp = TcpStream::connect(env.addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.expect("ready");
    let req = http::Request::builder()
        .method("POST")
        .uri("http://gw.test/dying.v1.Svc/Watch")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (resp, mut body) = send.send_request(req, false).expect("send");
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true).expect("body");
    let resp = resp.await.expect("the head is relayed");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        chunk.expect("no reset reaches the client");
    }
    let trailers =
        body.trailers().await.expect("trailers").unwrap_or_else(|| panic!("no trailers; log:\n{}", env.logs()));
    assert_eq!(trailers["grpc-status"], "14", "UNAVAILABLE, retryable; log:\n{}", env.logs());
}

/// An h2 upstream allowing 10 streams per connection: `Hold` answers its
/// head and keeps the stream open, `Quick` answers at once.
async fn limited_upstream() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (count, live) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            live.fetch_add(1, Ordering::SeqCst);
            let live = live.clone();
            tokio::spawn(async move {
                struct Closed(Arc<AtomicUsize>);
                impl Drop for Closed {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _closed = Closed(live);
                let Ok(mut conn) = h2::server::Builder::new().max_concurrent_streams(10).handshake(s).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let resp = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(resp, false) else { return };
                        if req.uri().path().ends_with("/Hold") {
                            let _ = send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
                            tokio::time::sleep(Duration::from_secs(20)).await;
                        }
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = send.send_trailers(trailers);
                    });
                }
            });
        }
    });
    (port, accepted, open)
}

async fn grpc_call(send: &h2::client::SendRequest<bytes::Bytes>, method: &str) -> http::Response<h2::RecvStream> {
    support::grpc_unary(send, &format!("/limited.v1.Svc/{method}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_upstream_limit_open_more_connections_and_never_stall_others() {
    let (port, accepted, open) = limited_upstream().await;
    let env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/limited.v1.Svc/*\", class: unauthenticated }\n",
            1,
        );
        format!(
            "{y}  - name: limited\n    match: {{ grpc_service: limited.v1.Svc }}\n    upstream: \"http://127.0.0.1:{port}\"\n    max_connections: 6\n    max_pending: 2\n    timeout_ms: 3000\n"
        )
    })
    .await;
    // 50 long streams from one client: five full upstream connections.
    let attacker = support::h2c(env.addr).await;
    let mut held = Vec::new();
    for _ in 0..50 {
        let resp = tokio::time::timeout(Duration::from_secs(5), grpc_call(&attacker, "Hold"))
            .await
            .expect("each stream gets its head");
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("grpc-status").is_none(), "a real stream, not a rejection");
        held.push(resp);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5, "10 streams per upstream connection");

    // Another client's unary call completes meanwhile, at once.
    let other = support::h2c(env.addr).await;
    let started = Instant::now();
    let quick = tokio::time::timeout(Duration::from_secs(2), grpc_call(&other, "Quick")).await.expect("not stalled");
    let mut body = quick.into_body();
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.expect("trailers").expect("present");
    assert_eq!(trailers["grpc-status"], "0", "log:\n{}", env.logs());
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

    // Fill the sixth connection; two more wait; the next is refused at once.
    for _ in 0..10 {
        held.push(grpc_call(&attacker, "Hold").await);
    }
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let c = attacker.clone();
            tokio::spawn(async move { grpc_call(&c, "Hold").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let refused = grpc_call(&other, "Quick").await;
    assert_eq!(refused.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED; log:\n{}", env.logs());
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once: {:?}", started.elapsed());
    assert_eq!(accepted.load(Ordering::SeqCst), 6);
    for w in waiting {
        w.abort();
    }
    // Once the streams end, the connections the burst opened close; one
    // idle connection is kept.
    drop(held);
    drop(attacker);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.load(Ordering::SeqCst) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open.load(Ordering::SeqCst), 1, "idle upstream connections beyond one are closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_authorized_then_joined_to_the_upstream() {
    // A WebSocket upstream: answers 101, then echoes every byte.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else { return };
                seen.lock().expect("lock").push(head);
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let env = support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/ws/*\", class: bearer, scopes: [sandbox.read] }\n",
            1,
        );
        format!("{y}  - name: ws\n    match: {{ path_prefix: /ws }}\n    upstream: \"http://127.0.0.1:{port}\"\n    allow_upgrade: true\n")
    })
    .await;
    let upgrade = |auth: &str| {
        format!(
            "GET /ws/chat HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Wasmgate-Subject: root\r\n\r\n"
        )
    };
    // Without a token: 401 before anything reaches the upstream.
    let mut s = TcpStream::connect(env.addr).await.expect("connect");
    s.write_all(upgrade("").as_bytes()).await.expect("write");
    let head = read_head(&mut s).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(heads.lock().expect("lock").is_empty());

    // With one: 101, then bytes both ways.
    let mut s = TcpStream::connect(env.addr).await.expect("connect");
    let auth = format!("Authorization: Bearer {}\r\n", env.user());
    s.write_all(upgrade(&auth).as_bytes()).await.expect("write");
    let head = read_head(&mut s).await.expect("a response");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}\nlog:\n{}", env.logs());
    assert!(lower.contains("upgrade: websocket") && lower.contains("connection: upgrade"), "{head}");
    assert!(lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    // A masked text frame "hi", echoed back by the upstream.
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    s.write_all(&frame).await.expect("write frame");
    let mut echoed = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed)).await.expect("in time").expect("read");
    assert_eq!(echoed, frame);
    let upstream_head = heads.lock().expect("lock")[0].to_ascii_lowercase();
    assert!(upstream_head.contains("upgrade: websocket"), "{upstream_head}");
    assert!(upstream_head.contains("x-wasmgate-subject: bob"), "identity set by the gateway: {upstream_head}");
    assert!(!upstream_head.contains("authorization"), "{upstream_head}");
}
