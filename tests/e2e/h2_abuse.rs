//! HTTP/2 abuse through the real binary. Malformed header blocks go out as
//! raw frames with hand-encoded HPACK (the `h2` crate refuses to send them);
//! the rapid reset (CVE-2023-44487) comes from the `h2` crate's client; the
//! CONTINUATION flood (CVE-2024-27316 class) from raw frames again. Other
//! clients keep being served meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::framing::{Recorder, with_recorder};
use crate::support;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame size").to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a `prefix_bits` prefix (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, first: u8, prefix_bits: u32, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Fields as HPACK literals without indexing with literal names (RFC 7541
/// §6.2.2): exactly these bytes, in this order, no Huffman, no table.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// `:status` of a response header block from the gateway: the first field,
/// either indexed from the static table or a literal with name index 8 and a
/// (Huffman-coded) three-digit value.
fn status(block: &[u8]) -> u16 {
    let mut b = block;
    while let [first, rest @ ..] = b
        && first & 0xe0 == 0x20
    {
        b = rest; // dynamic table size update
    }
    match b {
        [i, ..] if i & 0x80 != 0 => match i & 0x7f {
            8 => 200,
            9 => 204,
            10 => 206,
            11 => 304,
            12 => 400,
            13 => 404,
            14 => 500,
            _ => 0,
        },
        [i, len, value @ ..] if (i & 0xc0 == 0x40 && i & 0x3f == 8) || (i & 0xe0 == 0 && i & 0x0f == 8) => {
            let n = usize::from(len & 0x7f);
            let value = value.get(..n).unwrap_or_default();
            let text =
                if len & 0x80 == 0 { String::from_utf8_lossy(value).into_owned() } else { huffman_digits(value) };
            text.parse().unwrap_or(0)
        }
        _ => 0,
    }
}

/// Decodes up to three Huffman-coded digits (RFC 7541 Appendix B: `0`-`2`
/// are `00000`-`00010`, `3`-`9` are `011001`-`011111`).
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let take = |at: usize, n: usize| bits.get(at..at + n).map(|s| s.iter().fold(0u8, |acc, b| acc << 1 | b));
    let (mut at, mut out) = (0, String::new());
    while out.len() < 3 {
        match take(at, 5) {
            Some(c) if c <= 2 => {
                out.push(char::from(b'0' + c));
                at += 5;
            }
            _ => match take(at, 6) {
                Some(c) if (0b011001..=0b011111).contains(&c) => {
                    out.push(char::from(b'0' + (c & 7) + 2));
                    at += 6;
                }
                _ => break,
            },
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A response header block on the stream, with its status.
    Response(u16),
    /// RST_STREAM on the stream, with its error code.
    Reset(u32),
    /// GOAWAY, with its error code.
    GoAway(u32),
    /// The connection ended without either.
    Closed,
    Timeout,
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A hand-driven HTTP/2 client connection.
struct RawH2 {
    rd: OwnedReadHalf,
    wr: Option<OwnedWriteHalf>,
    buf: Vec<u8>,
    /// The gateway's SETTINGS.
    settings: Vec<(u16, u32)>,
    /// The last stream id and debug data of the GOAWAY received, if any.
    go_away_last_stream: u32,
    go_away_debug: String,
}

impl RawH2 {
    async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect to the gateway");
        tcp.set_nodelay(true).expect("nodelay");
        let (rd, mut wr) = tcp.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        wr.write_all(&hello).await.expect("preface");
        Self {
            rd,
            wr: Some(wr),
            buf: Vec::new(),
            settings: Vec::new(),
            go_away_last_stream: 0,
            go_away_debug: String::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        if let Some(wr) = self.wr.as_mut() {
            let _ = wr.write_all(bytes).await;
        }
    }

    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16 | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    return Some(Frame { kind: head[3], flags: head[4], stream, payload: head[9..].to_vec() });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// What the gateway did with `stream`, or with the connection.
    async fn outcome(&mut self, stream: u32) -> Outcome {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let f = match tokio::time::timeout_at(deadline, self.next_frame()).await {
                Err(_) => return Outcome::Timeout,
                Ok(None) => return Outcome::Closed,
                Ok(Some(f)) => f,
            };
            match f.kind {
                SETTINGS if f.flags & ACK == 0 => {
                    for s in f.payload.chunks_exact(6) {
                        self.settings
                            .push((u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])));
                    }
                    self.send(&frame(SETTINGS, ACK, 0, &[])).await;
                }
                HEADERS if f.stream == stream => return Outcome::Response(status(&f.payload)),
                RST_STREAM if f.stream == stream && f.payload.len() >= 4 => {
                    return Outcome::Reset(u32::from_be_bytes([
                        f.payload[0],
                        f.payload[1],
                        f.payload[2],
                        f.payload[3],
                    ]));
                }
                GOAWAY if f.payload.len() >= 8 => {
                    let last = u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]);
                    self.go_away_last_stream = last & 0x7fff_ffff;
                    self.go_away_debug = String::from_utf8_lossy(&f.payload[8..]).into_owned();
                    return Outcome::GoAway(u32::from_be_bytes([
                        f.payload[4],
                        f.payload[5],
                        f.payload[6],
                        f.payload[7],
                    ]));
                }
                _ => {}
            }
        }
    }

    /// Whether the gateway closes the connection within 5 s.
    async fn closes(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.next_frame()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(_)) => {}
            }
        }
    }
}

/// Header fields, as given.
type Fields<'a> = Vec<(&'a str, &'a str)>;

fn request(path: &str) -> Fields<'_> {
    vec![(":method", "GET"), (":scheme", "http"), (":authority", "gw"), (":path", path)]
}

fn with<'a>(mut fields: Fields<'a>, extra: &[(&'a str, &'a str)]) -> Fields<'a> {
    fields.extend_from_slice(extra);
    fields
}

/// One request on a new connection, as one HEADERS frame.
async fn send_one(addr: SocketAddr, fields: &[(&str, &str)]) -> (Outcome, Vec<(u16, u32)>) {
    let mut c = RawH2::connect(addr).await;
    c.send(&frame(HEADERS, END_STREAM | END_HEADERS, 1, &hpack(fields))).await;
    let outcome = c.outcome(1).await;
    (outcome, c.settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_malformed_header_blocks_are_refused_and_never_forwarded() {
    let upstream = Recorder::start().await;
    let server = "server:\n  http2:\n    max_concurrent_streams: 100\n    max_header_list_size: 32768\n";
    let env = support::start(|y| with_recorder(y, upstream.addr, server)).await;
    let addr = env.addr;
    let reset = Outcome::Reset(PROTOCOL_ERROR);
    let go_away = Outcome::GoAway(PROTOCOL_ERROR);

    let cases: Vec<(&str, Fields, Outcome)> = vec![
        ("connection", with(request("/rec/h2-connection"), &[("connection", "keep-alive")]), reset),
        ("keep-alive", with(request("/rec/h2-keep-alive"), &[("keep-alive", "timeout=5")]), reset),
        ("proxy-connection", with(request("/rec/h2-proxy-connection"), &[("proxy-connection", "close")]), reset),
        ("transfer-encoding", with(request("/rec/h2-transfer-encoding"), &[("transfer-encoding", "chunked")]), reset),
        ("upgrade", with(request("/rec/h2-upgrade"), &[("upgrade", "h2c")]), reset),
        ("te-gzip", with(request("/rec/h2-te-gzip"), &[("te", "gzip")]), reset),
        ("upper-case-name", with(request("/rec/h2-upper-case-name"), &[("X-Upper", "1")]), go_away),
        ("upper-case-pseudo", with(request("/rec/h2-upper-case-pseudo"), &[(":PATH", "/rec/x")]), go_away),
        ("unknown-pseudo", with(request("/rec/h2-unknown-pseudo"), &[(":foo", "bar")]), go_away),
        (
            "pseudo-after-regular",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "gw"),
                ("x-a", "1"),
                (":path", "/rec/h2-pseudo-after-regular"),
            ],
            reset,
        ),
        ("duplicated-path", with(request("/rec/h2-duplicated-path"), &[(":path", "/rec/h2-duplicated-path-2")]), reset),
        ("duplicated-method", with(request("/rec/h2-duplicated-method"), &[(":method", "POST")]), reset),
        ("missing-method", request("/rec/h2-missing-method")[1..].to_vec(), reset),
        ("missing-scheme", vec![(":method", "GET"), (":authority", "gw"), (":path", "/rec/h2-missing-scheme")], reset),
        ("missing-path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "gw")], reset),
        // h2 accepts this one (no :authority to build a URI with): refused by the gateway.
        ("missing-path-and-authority", vec![(":method", "GET"), (":scheme", "http")], Outcome::Response(400)),
        ("empty-path", request(""), reset),
        ("status-in-request", with(request("/rec/h2-status-in-request"), &[(":status", "200")]), reset),
    ];
    let mut wrong = Vec::new();
    for (name, fields, want) in &cases {
        let (got, _) = send_one(addr, fields).await;
        let forwarded = upstream.seen().contains(&format!("/rec/h2-{name}"));
        eprintln!("{name}: {got:?}, forwarded {forwarded}");
        if got != *want || forwarded {
            wrong.push(format!("{name}: want {want:?}, not forwarded; got {got:?}, forwarded {forwarded}"));
        }
    }
    assert!(wrong.is_empty(), "{}\nlog:\n{}", wrong.join("\n"), env.logs());

    // A header list over server.http2.max_header_list_size (32 KiB here),
    // spread over HEADERS and CONTINUATION frames: 431, not forwarded.
    let big = "a".repeat(40_000);
    let block = hpack(&with(request("/rec/h2-too-large"), &[("x-big", &big)]));
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut c = RawH2::connect(addr).await;
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() { END_HEADERS } else { 0 };
        let (kind, flags) = if i == 0 { (HEADERS, END_STREAM | last) } else { (CONTINUATION, last) };
        c.send(&frame(kind, flags, 1, piece)).await;
    }
    assert_eq!(c.outcome(1).await, Outcome::Response(431), "log:\n{}", env.logs());
    assert_eq!(upstream.connections(), 0, "nothing was forwarded:\n{}", upstream.seen());

    // Well-formed raw requests are served (so the encoder above is right and
    // the refusals are about the defect in each case), `te: trailers` too.
    let (got, settings) = send_one(addr, &request("/rec/h2-ok")).await;
    assert_eq!(got, Outcome::Response(200), "log:\n{}", env.logs());
    let (got, _) = send_one(addr, &with(request("/rec/h2-te-trailers"), &[("te", "trailers")])).await;
    assert_eq!(got, Outcome::Response(200));
    let seen = upstream.seen();
    assert!(seen.contains("/rec/h2-ok") && seen.contains("/rec/h2-te-trailers"), "{seen}");
    // The limits configured in `server.http2` are what the gateway announces.
    assert!(settings.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 100)), "{settings:?}");
    assert!(settings.contains(&(SETTINGS_MAX_HEADER_LIST_SIZE, 32768)), "{settings:?}");
}

/// Rapid reset with the `h2` crate's client: open a stream, reset it at once,
/// as fast as the client goes, until the gateway ends the connection (or
/// `for_at_most` passes). Returns the streams opened and how it ended.
async fn rapid_reset(addr: SocketAddr, token: &str, for_at_most: Duration) -> (usize, Result<(), h2::Error>) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let (started, mut opened, mut send) = (Instant::now(), 0usize, Some(send));
    while let Some(ready) = send.take()
        && started.elapsed() < for_at_most
    {
        let Ok(mut ready) = ready.ready().await else { break };
        let req = http::Request::get(format!("http://{addr}/v1/sandboxes"))
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("request");
        let Ok((response, mut stream)) = ready.send_request(req, false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        drop(response);
        opened += 1;
        send = Some(ready);
        if opened.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
    }
    drop(send);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await.expect("the connection ends").expect("join");
    (opened, ended)
}

/// Rapid reset in raw frames: HEADERS then RST_STREAM(CANCEL) on streams 1,
/// 3, 5, ... in batches of 100 pairs, until the gateway ends the connection.
/// Returns the streams the gateway had seen when it sent GOAWAY (from its
/// last stream id), what it did, the GOAWAY debug data and whether it then
/// closed the connection.
async fn raw_rapid_reset(addr: SocketAddr) -> (u32, Outcome, String, bool) {
    let mut c = RawH2::connect(addr).await;
    let mut wr = c.wr.take().expect("writer");
    let writer = tokio::spawn(async move {
        let block = hpack(&request("/v1/sandboxes"));
        let (mut sent, mut id) = (0usize, 1u32);
        while sent < 100_000 {
            let mut batch = Vec::new();
            for _ in 0..100 {
                batch.extend(frame(HEADERS, END_HEADERS, id, &block));
                batch.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
                id += 2;
                sent += 1;
            }
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
        sent
    });
    let outcome = c.outcome(0).await;
    let closed = c.closes().await;
    writer.await.expect("writer");
    (c.go_away_last_stream.div_ceil(2), outcome, c.go_away_debug, closed)
}

/// A HEADERS frame without END_HEADERS, then CONTINUATION frames that never
/// end the block. Returns the CONTINUATION frames written, what the gateway
/// did and whether it then closed the connection.
async fn continuation_flood(addr: SocketAddr) -> (usize, Outcome, bool) {
    let mut c = RawH2::connect(addr).await;
    let mut wr = c.wr.take().expect("writer");
    let writer = tokio::spawn(async move {
        let headers = frame(HEADERS, END_STREAM, 1, &hpack(&request("/v1/sandboxes")));
        if wr.write_all(&headers).await.is_err() {
            return 0;
        }
        let filler = "a".repeat(1000);
        let mut sent = 0usize;
        while sent < 50_000 {
            let more = frame(CONTINUATION, 0, 1, &hpack(&[("x-flood", &filler)]));
            if wr.write_all(&more).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let outcome = c.outcome(1).await;
    let closed = c.closes().await;
    let sent = writer.await.expect("writer");
    (sent, outcome, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_and_continuation_floods_are_cut_off_while_others_are_served() {
    let env = support::start(|y| y).await;
    let addr = env.addr;
    let token = env.admin();
    let attack_for = Duration::from_secs(4);

    // Each attacker reconnects as soon as the gateway has cut it off.
    let resets = {
        let token = token.clone();
        tokio::spawn(async move {
            let (started, mut runs) = (Instant::now(), Vec::new());
            while started.elapsed() < attack_for {
                runs.push(rapid_reset(addr, &token, Duration::from_secs(8)).await);
            }
            runs
        })
    };
    let raw_resets = tokio::spawn(async move {
        let (started, mut runs) = (Instant::now(), Vec::new());
        while started.elapsed() < attack_for {
            runs.push(raw_rapid_reset(addr).await);
        }
        runs
    });
    let floods = tokio::spawn(async move {
        let (started, mut runs) = (Instant::now(), Vec::new());
        while started.elapsed() < attack_for {
            runs.push(continuation_flood(addr).await);
        }
        runs
    });

    // Meanwhile, normal callers on their own connections, HTTP/2 and HTTP/1.1.
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("client");
    let h1 = reqwest::Client::builder().http1_only().build().expect("client");
    let (started, mut latencies) = (Instant::now(), Vec::new());
    while started.elapsed() < attack_for {
        for (client, version) in [(&h2c, reqwest::Version::HTTP_2), (&h1, reqwest::Version::HTTP_11)] {
            let t = Instant::now();
            let r = client.get(env.url("/v1/sandboxes")).bearer_auth(&token).send().await.expect("served");
            assert_eq!(r.status(), 200, "log:\n{}", env.logs());
            assert_eq!(r.version(), version);
            latencies.push(t.elapsed());
        }
    }

    let resets = resets.await.expect("rapid reset task");
    let raw_resets = raw_resets.await.expect("raw rapid reset task");
    let floods = floods.await.expect("flood task");
    latencies.sort();
    let max = latencies.last().copied().unwrap_or_default();
    let median = latencies[latencies.len() / 2];
    let calm = |e: &h2::Error| e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    let by_go_away = resets.iter().filter(|(_, e)| e.as_ref().is_err_and(calm)).count();
    eprintln!(
        "h2-crate rapid reset: {} connections cut off ({by_go_away} by GOAWAY ENHANCE_YOUR_CALM, the rest by the \
         socket closing under a client still writing); streams opened per connection: {}",
        resets.len(),
        spread(resets.iter().map(|r| r.0 as u64))
    );
    eprintln!(
        "raw rapid reset: {} connections cut off by GOAWAY; streams the gateway had seen: {}",
        raw_resets.len(),
        spread(raw_resets.iter().map(|r| u64::from(r.0)))
    );
    eprintln!(
        "CONTINUATION flood: {} connections cut off by GOAWAY; CONTINUATION frames written: {}",
        floods.len(),
        spread(floods.iter().map(|f| f.0 as u64))
    );
    eprintln!("normal calls during the attacks: {}, median {median:?}, max {max:?}", latencies.len());

    assert!(!resets.is_empty() && !raw_resets.is_empty() && !floods.is_empty());
    for (opened, ended) in &resets {
        // GOAWAY(ENHANCE_YOUR_CALM), or the socket closed under a client that
        // was still writing (the GOAWAY was then in flight): cut off either way.
        let err = ended.as_ref().expect_err("the gateway ends a rapid-reset connection");
        let closed = err
            .get_io()
            .is_some_and(|e| matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset));
        assert!(calm(err) || closed, "after {opened} streams: {err:?}");
    }
    assert!(by_go_away > 0, "at least one h2-crate attacker read the GOAWAY");
    for (seen, outcome, debug, closed) in &raw_resets {
        assert_eq!(*outcome, Outcome::GoAway(ENHANCE_YOUR_CALM), "after {seen} streams");
        assert_eq!(debug, "too_many_resets");
        assert!(*closed, "the attacking connection is closed");
        assert!(*seen < 1000, "the gateway took {seen} streams before it reacted");
    }
    for (sent, outcome, closed) in &floods {
        assert_eq!(*outcome, Outcome::GoAway(ENHANCE_YOUR_CALM), "after {sent} CONTINUATION frames");
        assert!(*closed, "the flooding connection is closed");
    }
    assert!(latencies.len() >= 10, "only {} normal calls in {attack_for:?}", latencies.len());
    assert!(max < Duration::from_secs(2), "a normal call took {max:?} during the attacks");
    let r = reqwest::get(env.url("/readyz")).await.expect("readyz");
    assert_eq!(r.status(), 200, "the gateway is still ready");
}

/// `min / median / max` of some counts.
fn spread(values: impl Iterator<Item = u64>) -> String {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(min), Some(median), Some(max)) => format!("min {min}, median {median}, max {max}"),
        _ => "none".to_owned(),
    }
}
