//! Traces through the real binary, exported to real OTLP receivers started
//! here (the collector's gRPC `TraceService`, and `POST /v1/traces` for
//! OTLP/HTTP): the server span continues the client's trace, the phases
//! and the upstream call are its children, and the upstream gets the
//! upstream span as its parent. With tracing off, the client's trace
//! headers reach the upstream untouched.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{self, Env};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

/// A span received, with its resource's attributes.
type Got = (Vec<KeyValue>, Span);

/// What a receiver got: every span, with its resource's attributes.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Got>>>);

impl Received {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut all = self.0.lock().expect("lock");
        for rs in req.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    all.push((resource.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<Got> {
        self.0.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for the spans received (20 s at most).
    async fn wait_for(&self, what: &str, done: impl Fn(&[Got]) -> bool, env: &Env) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if done(&self.spans()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received in 20 s; got {:#?}\nlog:\n{}",
                self.spans().iter().map(|(_, s)| &s.name).collect::<Vec<_>>(),
                env.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Collector(Received);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP/gRPC receiver on loopback: its address and what it receives.
async fn grpc_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let service = TraceServiceServer::new(Collector(received.clone()));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (format!("http://{addr}"), received)
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on loopback.
async fn http_receiver() -> (String, Received) {
    use prost::Message as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                let protobuf = headers.get("content-type").is_some_and(|v| v == "application/x-protobuf");
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) if protobuf => {
                        sink.add(req);
                        let ok = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                        (http::StatusCode::OK, [("content-type", "application/x-protobuf")], ok)
                    }
                    _ => (http::StatusCode::BAD_REQUEST, [("content-type", "text/plain")], b"bad".to_vec()),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), received)
}

/// An HTTP/1.1 upstream answering 200 `ok`, keeping each request head.
async fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    seen.lock().expect("lock").push(String::from_utf8_lossy(&buf).to_lowercase());
                    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, heads)
}

/// The header `name` of a request head (lowercased).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// The gateway with a bearer route `up` to the upstream on `port`, and
/// `telemetry` (YAML, top level) if given.
async fn gateway(port: u16, telemetry: Option<String>) -> Env {
    support::start(move |y| {
        let y = y.replacen(
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
            "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/up/*\", class: bearer, scopes: [sandbox.read] }\n",
            1,
        );
        let telemetry = telemetry.unwrap_or_default();
        format!("{y}  - name: up\n    match: {{ path_prefix: /up }}\n    upstream: \"http://127.0.0.1:{port}\"\n{telemetry}")
    })
    .await
}

fn tracing_yaml(endpoint: &str, protocol: &str, delay_ms: u64) -> String {
    format!(
        "telemetry:\n  tracing:\n    endpoint: \"{endpoint}\"\n    protocol: {protocol}\n    service_name: wasmgate-e2e\n    batch: {{ scheduled_delay_ms: {delay_ms} }}\n"
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v: &Any| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(&span.attributes, key) {
        Some(AnyValue::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(&span.attributes, key) {
        Some(AnyValue::IntValue(i)) => Some(*i),
        _ => None,
    }
}

async fn call(env: &Env, path: &str, token: &str) -> (u16, String) {
    let r = env
        .client
        .get(env.url(path))
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE}-{CLIENT_PARENT}-01"))
        .header("tracestate", "vendor=1")
        .send()
        .await
        .expect("send");
    let id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (r.status().as_u16(), id)
}

fn servers(spans: &[Got]) -> Vec<&Span> {
    spans.iter().map(|(_, s)| s).filter(|s| s.kind == SpanKind::Server as i32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_receives_the_call_its_phases_and_the_upstream_span_in_the_clients_trace() {
    let (endpoint, received) = grpc_receiver().await;
    let (port, heads) = upstream().await;
    let env = gateway(port, Some(tracing_yaml(&endpoint, "grpc", 50))).await;
    let token = env.user();
    let (status, first_id) = call(&env, "/up/x", &token).await;
    assert_eq!(status, 200, "log:\n{}", env.logs());
    let (status, second_id) = call(&env, "/up/x", &token).await;
    assert_eq!(status, 200);
    received
        .wait_for(
            "two server spans and two upstream spans",
            |s| servers(s).len() >= 2 && s.iter().filter(|(_, s)| s.kind == SpanKind::Client as i32).count() >= 2,
            &env,
        )
        .await;
    let spans = received.spans();
    let (resource, _) = &spans[0];
    assert!(
        matches!(attr(resource, "service.name"), Some(AnyValue::StringValue(s)) if s == "wasmgate-e2e"),
        "{resource:?}"
    );
    assert!(matches!(attr(resource, "service.version"), Some(AnyValue::StringValue(s)) if !s.is_empty()));

    for (n, decision_id) in [(0, &first_id), (1, &second_id)] {
        let server = servers(&spans)
            .into_iter()
            .find(|s| str_attr(s, "wasmgate.decision_id") == Some(decision_id.as_str()))
            .unwrap_or_else(|| panic!("no server span for call {n} ({decision_id})"));
        assert_eq!(hex(&server.trace_id), TRACE, "the client's trace");
        assert_eq!(hex(&server.parent_span_id), CLIENT_PARENT, "the client's span is the parent");
        assert_eq!(server.name, "GET up");
        assert_eq!(str_attr(server, "http.request.method"), Some("GET"));
        assert_eq!(str_attr(server, "http.route"), Some("up"));
        assert_eq!(str_attr(server, "url.path"), Some("/up/x"));
        assert_eq!(int_attr(server, "http.response.status_code"), Some(200));
        assert_eq!(str_attr(server, "server.address"), Some("127.0.0.1"));
        assert!(str_attr(server, "error.type").is_none());

        let children: Vec<&Span> =
            spans.iter().map(|(_, s)| s).filter(|s| s.parent_span_id == server.span_id).collect();
        let named = |name: &str| children.iter().copied().find(|s| s.name == name);
        let auth = named("authenticate").unwrap_or_else(|| panic!("no authenticate span: {children:#?}"));
        assert_eq!(str_attr(auth, "wasmgate.credential.kind"), Some("oidc-token"));
        assert_eq!(str_attr(auth, "wasmgate.auth.provider"), Some("dev"));
        // The first call verifies the token; the second finds it cached.
        assert_eq!(str_attr(auth, "wasmgate.auth.cache"), Some(if n == 0 { "miss" } else { "hit" }));
        let authz = named("policy authorizer").unwrap_or_else(|| panic!("no authorizer span: {children:#?}"));
        assert_eq!(str_attr(authz, "wasmgate.role"), Some("authorizer"));
        assert_eq!(str_attr(authz, "wasmgate.component"), Some("rbac-authorizer"));
        let sha = str_attr(authz, "wasmgate.component.sha256").unwrap_or_default();
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "digest {sha:?}");
        assert_eq!(str_attr(authz, "wasmgate.decision"), Some("allow"));
        if n == 0 {
            // Classification and the principal are cached after the first call.
            assert!(named("policy classifier").is_some(), "{children:#?}");
            assert!(named("policy claims-mapper").is_some(), "{children:#?}");
        }
        assert!(named("credentials").is_some(), "no credentials span: {children:#?}");
        let up = children
            .iter()
            .copied()
            .find(|s| s.kind == SpanKind::Client as i32)
            .unwrap_or_else(|| panic!("no upstream span: {children:#?}"));
        assert_eq!(int_attr(up, "http.response.status_code"), Some(200));
        assert_eq!(int_attr(up, "server.port"), Some(i64::from(port)));
        for child in &children {
            assert_eq!(hex(&child.trace_id), TRACE);
        }

        // The upstream's parent is the upstream span, in the same trace.
        let heads = heads.lock().expect("lock").clone();
        let want = format!("00-{TRACE}-{}-01", hex(&up.span_id));
        let head = heads
            .iter()
            .find(|h| header(h, "traceparent") == Some(want.as_str()))
            .unwrap_or_else(|| panic!("no upstream request with traceparent {want}: {heads:#?}"));
        assert_eq!(header(head, "tracestate"), Some("vendor=1"), "{head}");
    }
    // The decision record carries the trace id.
    let logs = crate::decision_log::logs_when(&env, |l| {
        crate::decision_log::records(l).iter().any(|r| r["decision_id"] == first_id.as_str())
    })
    .await;
    let records = crate::decision_log::records(&logs);
    let record = records.iter().find(|r| r["decision_id"] == first_id.as_str());
    assert!(record.is_some_and(|r| r["trace_id"] == TRACE), "decision record with trace_id:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_receives_spans_and_a_rejected_call_is_traced_too() {
    let (endpoint, received) = http_receiver().await;
    let (port, _heads) = upstream().await;
    let env = gateway(port, Some(tracing_yaml(&endpoint, "http", 50))).await;
    let (status, ok_id) = call(&env, "/up/x", &env.user()).await;
    assert_eq!(status, 200, "log:\n{}", env.logs());
    let (status, denied_id) = call(&env, "/up/x", "not-a-token").await;
    assert_eq!(status, 401);
    received.wait_for("two server spans", |s| servers(s).len() >= 2, &env).await;
    let spans = received.spans();
    let by_id = |id: &str| {
        servers(&spans)
            .into_iter()
            .find(|s| str_attr(s, "wasmgate.decision_id") == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no server span for {id}"))
    };
    let ok = by_id(&ok_id);
    assert_eq!(hex(&ok.trace_id), TRACE);
    assert_eq!(int_attr(&ok, "http.response.status_code"), Some(200));
    let denied = by_id(&denied_id);
    assert_eq!(int_attr(&denied, "http.response.status_code"), Some(401));
    // A 4xx is not a server error.
    assert!(str_attr(&denied, "error.type").is_none());
    let auth = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.parent_span_id == denied.span_id && s.name == "authenticate")
        .expect("authenticate span of the denied call");
    assert_eq!(str_attr(auth, "error.type"), Some("unauthenticated"));
    assert!(!spans.iter().any(|(_, s)| s.parent_span_id == denied.span_id && s.kind == SpanKind::Client as i32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_at_sigterm_are_exported() {
    let (endpoint, received) = grpc_receiver().await;
    let (port, _heads) = upstream().await;
    // A batch delay far longer than the test: only the shutdown flush
    // can send the span.
    let env = gateway(port, Some(tracing_yaml(&endpoint, "grpc", 60_000))).await;
    let (status, id) = call(&env, "/up/x", &env.user()).await;
    assert_eq!(status, 200);
    assert!(servers(&received.spans()).is_empty(), "exported before the batch delay");
    let status = Command::new("kill").args(["-TERM", &env.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    received
        .wait_for(
            "the call's server span, flushed at shutdown",
            |s| servers(s).iter().any(|s| str_attr(s, "wasmgate.decision_id") == Some(id.as_str())),
            &env,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_off_passes_the_clients_trace_headers_through_unchanged() {
    let (port, heads) = upstream().await;
    let env = gateway(port, None).await;
    let (status, _) = call(&env, "/up/x", &env.user()).await;
    assert_eq!(status, 200, "log:\n{}", env.logs());
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "{heads:#?}");
    assert_eq!(header(&heads[0], "traceparent"), Some(format!("00-{TRACE}-{CLIENT_PARENT}-01").as_str()));
    assert_eq!(header(&heads[0], "tracestate"), Some("vendor=1"));
}

/// The gateway binary with `--log-format json`, tracing to `endpoint` and
/// a route `dead` to a port nothing listens on; its log file is returned
/// with it (the child is killed on drop).
struct JsonGateway {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _issuer: wasmgate::demo::DevIssuer,
}

impl Drop for JsonGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn json_gateway(endpoint: &str) -> JsonGateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("driver.sock");
    let listener = sandbox_driver::bind(&socket).expect("bind driver socket");
    tokio::spawn(async move {
        let _ = sandbox_driver::serve(listener, std::future::pending()).await;
    });
    let issuer = wasmgate::demo::DevIssuer::start().await.expect("dev issuer");
    let addr = support::free_port();
    let dead = support::free_port().port();
    let yaml = wasmgate::demo::demo_config(addr, issuer.issuer(), &socket, support::SECRET).replacen(
        "        - { match: \"/v1/healthz\", class: unauthenticated }\n",
        "        - { match: \"/v1/healthz\", class: unauthenticated }\n        - { match: \"/dead/*\", class: unauthenticated }\n",
        1,
    );
    let yaml = format!(
        "{yaml}  - name: dead\n    match: {{ path_prefix: /dead }}\n    upstream: \"http://127.0.0.1:{dead}\"\n{}",
        tracing_yaml(endpoint, "grpc", 50)
    );
    let cfg = dir.path().join("wasmgate.yaml");
    std::fs::write(&cfg, yaml).expect("write config");
    let log = dir.path().join("wasmgate.log");
    let child = Command::new(support::bin())
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&cfg)
        .env("WASMGATE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start wasmgate");
    let gw = JsonGateway { child, addr, log, _dir: dir, _issuer: issuer };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{}/readyz", gw.addr)).await
            && r.status() == 200
        {
            return gw;
        }
        assert!(Instant::now() < deadline, "not ready in 60 s:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl JsonGateway {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_of_a_call_are_flat_and_carry_its_trace_and_decision_ids() {
    let (endpoint, _received) = grpc_receiver().await;
    let gw = json_gateway(&endpoint).await;
    let r = reqwest::Client::new()
        .get(format!("http://{}/dead/x", gw.addr))
        .header("traceparent", format!("00-{TRACE}-{CLIENT_PARENT}-01"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503, "{}", gw.logs());
    let id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // The record is written beside the response: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !crate::decision_log::records(&gw.logs()).iter().any(|r| r["decision_id"] == id.as_str())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = gw.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect();
    // The upstream failure warning, written inside the call.
    let warning = lines
        .iter()
        .find(|l| l["message"] == "upstream request failed")
        .unwrap_or_else(|| panic!("no upstream failure line:\n{logs}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["kind"], "connect", "event fields at the top level: {warning}");
    assert_eq!(warning["route"], "dead");
    assert_eq!(warning["decision_id"], id.as_str(), "{warning}");
    assert_eq!(warning["trace_id"], TRACE, "{warning}");
    assert!(warning.get("fields").is_none() && warning.get("span").is_none(), "{warning}");
    // The decision record: its own ids, once each, flat.
    let records = crate::decision_log::records(&logs);
    let record = records
        .iter()
        .find(|r| r["decision_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no decision record:\n{logs}"));
    assert_eq!(record["decision_id"], id.as_str());
    assert_eq!(record["trace_id"], TRACE);
    assert_eq!(record["status"], 503);
    // A line outside any call has no ids.
    let serving = lines.iter().find(|l| l["message"] == "wasmgate serving").expect("start line");
    assert!(serving.get("decision_id").is_none() && serving.get("trace_id").is_none(), "{serving}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_neither_fails_calls_nor_keeps_the_gateway_from_stopping() {
    let dead = support::free_port();
    let (port, heads) = upstream().await;
    let env = gateway(port, Some(tracing_yaml(&format!("http://{dead}"), "grpc", 10))).await;
    for _ in 0..5 {
        let (status, _) = call(&env, "/up/x", &env.user()).await;
        assert_eq!(status, 200, "log:\n{}", env.logs());
    }
    // Still traced: the upstream got the gateway's span as its parent.
    let heads = heads.lock().expect("lock").clone();
    assert!(
        heads.iter().all(|h| header(h, "traceparent").is_some_and(|v| v.contains(TRACE) && !v.contains(CLIENT_PARENT))),
        "{heads:#?}"
    );
    let status = Command::new("kill").args(["-TERM", &env.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exited(env.pid()) {
        assert!(Instant::now() < deadline, "still running 30 s after SIGTERM; log:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.logs().contains("wasmgate stopped"), "{}", env.logs());
}

fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_follows_a_sampled_parent_and_applies_its_ratio_to_new_traces() {
    let (endpoint, received) = grpc_receiver().await;
    let (port, heads) = upstream().await;
    let yaml = format!(
        "telemetry:\n  tracing:\n    endpoint: \"{endpoint}\"\n    sampler: {{ ratio: 0.0 }}\n    batch: {{ scheduled_delay_ms: 10 }}\n"
    );
    let env = gateway(port, Some(yaml)).await;
    // First a call that starts its own trace: with ratio 0 it is not kept.
    let r = env.client.get(env.url("/up/x")).bearer_auth(env.user()).send().await.expect("send");
    assert_eq!(r.status(), 200);
    let root_id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // Then one whose client sampled its trace: kept.
    let (status, sampled_id) = call(&env, "/up/x", &env.user()).await;
    assert_eq!(status, 200);
    received
        .wait_for(
            "the sampled call's server span",
            |s| servers(s).iter().any(|s| str_attr(s, "wasmgate.decision_id") == Some(sampled_id.as_str())),
            &env,
        )
        .await;
    // Spans are exported in the order they end: the first call's would be here.
    assert!(
        !servers(&received.spans()).iter().any(|s| str_attr(s, "wasmgate.decision_id") == Some(root_id.as_str())),
        "an unsampled root trace was exported"
    );
    // The unsampled trace still propagates, flagged not sampled.
    let heads = heads.lock().expect("lock").clone();
    let first = header(&heads[0], "traceparent").unwrap_or_default();
    assert!(first.starts_with("00-") && first.ends_with("-00") && !first.contains(TRACE), "{first}");
    let second = header(&heads[1], "traceparent").unwrap_or_default();
    assert!(second.starts_with(&format!("00-{TRACE}-")) && second.ends_with("-01"), "{second}");
}
