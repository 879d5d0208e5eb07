//! HTTP/1.1 framing through the real binary: every request here goes out as
//! raw bytes over TCP (an HTTP client library would normalize it), to a
//! route whose upstream records every byte it receives, so "nothing was
//! forwarded" is observed, not assumed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support;

/// A tiny HTTP/1.1 upstream: records every byte and every connection,
/// answers each complete request with `200 upstream`.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind recorder");
        let addr = listener.local_addr().expect("recorder address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let seen = s.clone();
                tokio::spawn(async move {
                    let mut conn = Vec::new();
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return,
                        };
                        seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                        conn.extend_from_slice(&buf[..n]);
                        if let Some(end) = request_end(&conn) {
                            conn.drain(..end);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nupstream\n";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, seen, connections }
    }

    /// Connections the gateway opened to this upstream.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Everything received, lossily as text.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("lock")).into_owned()
    }
}

/// Where the first complete request in `buf` ends (head plus a
/// `Content-Length` or chunked body).
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse::<usize>());
    if let Some(Ok(n)) = length {
        return (buf.len() >= head_end + n).then_some(head_end + n);
    }
    if head.contains("transfer-encoding: chunked") {
        let body = &buf[head_end..];
        return body.windows(5).position(|w| w == b"0\r\n\r\n").map(|p| head_end + p + 5);
    }
    Some(head_end)
}

/// A route `/rec` to `upstream`, first in the list, unauthenticated; then
/// `extra` appended (top-level YAML).
pub fn with_recorder(yaml: String, upstream: SocketAddr, extra: &str) -> String {
    let route = format!(
        "\nroutes:\n  - name: recorder\n    match: {{ path_prefix: /rec }}\n    upstream: \"http://{upstream}\"\n"
    );
    let open = "        - { match: \"/v1/healthz\", class: unauthenticated }\n";
    assert!(yaml.contains("\nroutes:\n") && yaml.contains(open), "the demo config changed shape:\n{yaml}");
    let yaml = yaml.replacen("\nroutes:\n", &route, 1).replacen(
        open,
        &format!("        - {{ match: \"/rec/*\", class: unauthenticated }}\n{open}"),
        1,
    );
    format!("{yaml}\n{extra}")
}

/// What came back on one raw connection.
#[derive(Debug)]
pub struct Exchange {
    pub status: Option<u16>,
    pub text: String,
    /// The gateway closed the connection (EOF or reset) within the timeout.
    pub closed: bool,
}

/// Writes `bytes` on a new connection and reads until the gateway closes it
/// (or 10 s pass).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Exchange {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the gateway");
    // The gateway may answer and close before it read everything: a failed
    // write is part of the outcome, not a test error.
    let _ = stream.write_all(bytes).await;
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> Exchange {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    exchange(got, closed)
}

fn exchange(got: Vec<u8>, closed: bool) -> Exchange {
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok());
    Exchange { status, text, closed }
}

fn request(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("POST /rec/{path} HTTP/1.1\r\nHost: gw\r\n{headers}\r\n{body}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http1_framing_is_refused_closed_and_never_forwarded() {
    let upstream = Recorder::start().await;
    // A smaller head limit than the default, to show it is configurable.
    let server = "server:\n  http1:\n    max_request_head_bytes: 16384\n";
    let env = support::start(|y| with_recorder(y, upstream.addr, server)).await;

    let long_line =
        format!("GET /rec/long-request-line/{} HTTP/1.1\r\nHost: gw\r\n\r\n", "a".repeat(20_000)).into_bytes();
    let big_section = request(
        "big-header-section",
        &"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(400),
        "",
    );
    let many_fields = request("too-many-fields", &(0..120).map(|i| format!("X-F{i}: 1\r\n")).collect::<String>(), "");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("cl-and-te", request("cl-and-te", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400),
        ("te-and-cl", request("te-and-cl", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"), 400),
        ("two-lengths", request("two-lengths", "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400),
        ("equal-lengths", request("equal-lengths", "Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 400),
        ("length-list", request("length-list", "Content-Length: 5, 5\r\n", "hello"), 400),
        ("te-gzip", request("te-gzip", "Transfer-Encoding: gzip\r\n", ""), 400),
        ("te-identity", request("te-identity", "Transfer-Encoding: identity\r\n", ""), 400),
        ("te-gzip-chunked", request("te-gzip-chunked", "Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 400),
        (
            "te-chunked-chunked",
            request("te-chunked-chunked", "Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "te-two-fields",
            request("te-two-fields", "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "te-http10",
            b"POST /rec/te-http10 HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        ("obs-fold", request("obs-fold", "X-Folded: a\r\n b\r\n", ""), 400),
        ("obs-fold-tab", request("obs-fold-tab", "X-Folded: a\r\n\tContent-Length: 5\r\n", "hello"), 400),
        ("nul-in-value", request("nul-in-value", "X-A: a\0b\r\n", ""), 400),
        ("cr-in-value", request("cr-in-value", "X-A: a\rb\r\n", ""), 400),
        ("lf-in-value", request("lf-in-value", "X-A: a\nX-Injected: b\r\n", ""), 400),
        ("lf-line-ends", b"GET /rec/lf-line-ends HTTP/1.1\nHost: gw\n\n".to_vec(), 400),
        ("space-before-colon", request("space-before-colon", "Content-Length : 5\r\n", "hello"), 400),
        ("long-request-line", long_line, 431),
        ("big-header-section", big_section, 431),
        ("too-many-fields", many_fields, 431),
    ];
    let mut wrong = Vec::new();
    for (name, bytes, want) in &cases {
        let got = raw(env.addr, bytes).await;
        let forwarded = upstream.seen().contains(&format!("/rec/{name}"));
        eprintln!("{name}: status {:?}, closed {}, forwarded {forwarded}", got.status, got.closed);
        if got.status != Some(*want) || !got.closed || forwarded {
            wrong.push(format!("{name}: want {want}, closed, not forwarded; got {got:?}, forwarded {forwarded}"));
        }
    }
    assert!(wrong.is_empty(), "{}\nlog:\n{}", wrong.join("\n"), env.logs());
    assert_eq!(upstream.connections(), 0, "nothing was forwarded:\n{}", upstream.seen());

    // The same requests, well framed, are forwarded: the refusals above are
    // about framing, not about the route.
    let ok = raw(env.addr, &request("ok-length", "Content-Length: 5\r\nConnection: close\r\n", "hello")).await;
    assert_eq!(ok.status, Some(200), "{ok:?}; log:\n{}", env.logs());
    let chunked =
        request("ok-chunked", "Transfer-Encoding: chunked\r\nConnection: close\r\n", "5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(raw(env.addr, &chunked).await.status, Some(200));
    let near_limit =
        request("ok-near-limit", &format!("X-Filler: {}\r\nConnection: close\r\n", "a".repeat(12_000)), "");
    assert_eq!(raw(env.addr, &near_limit).await.status, Some(200), "a 12 KB head is under the 16 KiB limit");
    let seen = upstream.seen();
    for path in ["/rec/ok-length", "/rec/ok-chunked", "/rec/ok-near-limit"] {
        assert!(seen.contains(path), "{path} missing upstream:\n{seen}");
    }

    // Keep-alive: a good request is served, then a smuggling attempt on the
    // same connection is refused and the connection closed.
    let mut stream = TcpStream::connect(env.addr).await.expect("connect");
    stream.write_all(&request("keep-alive-1", "Content-Length: 5\r\n", "hello")).await.expect("write");
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !first.ends_with(b"upstream\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("first response in time")
            .expect("read");
        assert!(n > 0, "closed before the first response: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    let smuggle = request("keep-alive-2", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n");
    stream.write_all(&smuggle).await.expect("write");
    let second = read_to_close(&mut stream).await;
    assert_eq!(second.status, Some(400), "{second:?}");
    assert!(second.closed && second.text.to_ascii_lowercase().contains("connection: close"), "{second:?}");
    let seen = upstream.seen();
    assert!(seen.contains("/rec/keep-alive-1") && !seen.contains("/rec/keep-alive-2"), "{seen}");
    assert!(env.logs().contains("refused a malformed HTTP/1.1 request"), "{}", env.logs());
}
