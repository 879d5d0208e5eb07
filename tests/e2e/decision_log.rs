//! The decision log through the real binary: each call's JSON record and
//! its fields, masking, the file sink's rotation and a full disk, and the
//! HTTP sink when its receiver is down, slow or failing, then recovers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::support::{self, Env, free_port};

/// Every decision record in `text`: the JSON lines with a `decision_id`, an
/// `outcome` and a `policy` (the default sink writes them on stderr, beside
/// the log, whose request-scoped lines may carry a decision id too).
pub fn records(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("decision_id").is_some() && v.get("outcome").is_some() && v["policy"].is_object())
        .collect()
}

/// The records of calls on `path` in the gateway's stderr so far.
pub fn records_for(env: &Env, path: &str) -> Vec<Value> {
    records(&env.logs()).into_iter().filter(|r| r["path"] == path).collect()
}

/// The gateway's stderr once `ready` holds for it, polled for up to 10 s
/// (the last read after that): a decision record, and the reason in it, is
/// written beside the call, not before its response.
pub async fn logs_when(env: &Env, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = env.logs();
        if ready(&logs) || Instant::now() > deadline {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it gives a value or `secs` pass.
async fn eventually<T>(secs: u64, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo config with an admin listener and `decision_log:` as given.
async fn gateway(admin: SocketAddr, decision_log: &str) -> Env {
    let extra = format!("admin: {{ listen: \"{admin}\" }}\n{decision_log}");
    support::start(move |y| format!("{y}{extra}")).await
}

/// The value of one sample (name and labels exactly as written) in `/metrics`.
async fn metric(admin: SocketAddr, sample: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics")).await.expect("metrics").text().await.expect("body");
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
}

/// Polls `/metrics` until `sample` is at least `at_least`.
async fn metric_reaches(admin: SocketAddr, sample: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(admin, sample).await;
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{sample} stayed at {v}, below {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn written(sink: &str) -> String {
    format!("wasmgate_decision_log_records_total{{sink=\"{sink}\",result=\"written\"}}")
}

fn dropped(sink: &str) -> String {
    format!("wasmgate_decision_log_records_total{{sink=\"{sink}\",result=\"dropped\"}}")
}

fn retried(sink: &str) -> String {
    format!("wasmgate_decision_log_records_total{{sink=\"{sink}\",result=\"retried\"}}")
}

/// Calls `path` with `token`; the status and the `x-decision-id` header.
async fn call(env: &Env, path: &str, token: &str) -> (u16, String) {
    let r = env.client.get(env.url(path)).bearer_auth(token).send().await.expect("send");
    let id = r.headers().get("x-decision-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (r.status().as_u16(), id)
}

/// The record with `id` on stderr, waited for.
async fn record_with_id(env: &Env, id: &str) -> Value {
    eventually(10, || records(&env.logs()).into_iter().find(|r| r["decision_id"] == id))
        .await
        .unwrap_or_else(|| panic!("no record with decision id {id}:\n{}", env.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_denied_calls_have_one_full_record_each() {
    let admin = free_port();
    let env = gateway(admin, "").await;
    let (status, allowed_id) = call(&env, "/v1/sandboxes", &env.admin()).await;
    assert_eq!(status, 200, "{}", env.logs());
    assert_eq!(allowed_id.len(), 32, "128 bits of hex: {allowed_id}");
    let (status, denied_id) = call(&env, "/v1/config", &env.user()).await;
    assert_eq!(status, 403);

    let plugins: Value =
        reqwest::get(format!("http://{admin}/admin/plugins")).await.expect("admin").json().await.expect("json");
    let sha_of = |name: &str| -> String {
        plugins["plugins"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["name"] == name))
            .and_then(|p| p["sha256"].as_str())
            .unwrap_or_else(|| panic!("{name} not in /admin/plugins: {plugins}"))
            .to_owned()
    };

    let allowed = record_with_id(&env, &allowed_id).await;
    let ts = allowed["timestamp"].as_str().expect("timestamp");
    assert!(ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "RFC 3339 UTC: {ts}");
    for (field, want) in [
        ("route", "sandbox-rest"),
        ("method", "GET"),
        ("path", "/v1/sandboxes"),
        ("class", "bearer"),
        ("credential", "oidc-token"),
        ("provider", "dev"),
        ("subject", "alice"),
        ("tenant", "acme"),
        ("outcome", "allow"),
    ] {
        assert_eq!(allowed[field], want, "{field} in {allowed}");
    }
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["upstream_status"], 200);
    assert!(allowed.get("reason").is_none() && allowed.get("trace_id").is_none(), "{allowed}");
    assert_eq!(allowed["policy"]["generation"], plugins["generation"]);
    let components = allowed["policy"]["components"].as_array().expect("components");
    let roles: Vec<&str> = components.iter().filter_map(|c| c["role"].as_str()).collect();
    assert_eq!(roles, ["classifier", "claims-mapper", "authorizer"], "{allowed}");
    for c in components {
        let name = c["name"].as_str().expect("name");
        assert_eq!(c["sha256"], sha_of(name), "{name}: the digest /admin/plugins shows");
    }
    let phases = allowed["phases_us"].as_object().expect("phases");
    let names: Vec<&str> = phases.keys().map(String::as_str).collect();
    for p in ["sanitize", "route", "classify", "authenticate", "map", "authorize", "credentials", "forward"] {
        assert!(names.contains(&p), "{p} timed: {allowed}");
    }
    assert!(allowed["duration_us"].as_u64().is_some(), "{allowed}");

    let denied = record_with_id(&env, &denied_id).await;
    assert_eq!(denied["outcome"], "forbidden", "{denied}");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["subject"], "bob");
    assert!(denied["reason"].as_str().is_some_and(|r| !r.is_empty()), "{denied}");
    assert!(denied.get("upstream_status").is_none(), "not forwarded: {denied}");
    assert_eq!(denied["policy"]["components"].as_array().map(Vec::len), Some(3), "{denied}");

    // A token that fails verification: its contents are nowhere in the record.
    let forged = format!("{}x", env.admin());
    let (status, forged_id) = call(&env, "/v1/sandboxes", &forged).await;
    assert_eq!(status, 401);
    let refused = record_with_id(&env, &forged_id).await;
    assert_eq!(refused["outcome"], "unauthenticated", "{refused}");
    let text = refused.to_string();
    for part in forged.split('.') {
        assert!(!text.contains(part), "token part in the record: {text}");
    }
    // A gRPC call the gateway refuses: trailers-only, its gRPC status in
    // the record beside the HTTP one.
    let mut grpc = env.grpc().await;
    let err =
        grpc.list_sandboxes(wasmgate_proto::sandbox::ListSandboxesRequest::default()).await.expect_err("no token");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let path = "/sandbox.v1.SandboxService/ListSandboxes";
    let r = eventually(10, || records_for(&env, path).pop()).await.unwrap_or_else(|| panic!("{}", env.logs()));
    assert_eq!(
        (r["outcome"].as_str(), r["status"].as_u64(), r["grpc_status"].as_u64()),
        (Some("unauthenticated"), Some(200), Some(16)),
        "{r}"
    );
    assert_eq!(r["route"], "sandbox-grpc");
    // One record per call.
    assert_eq!(records(&env.logs()).iter().filter(|r| r["decision_id"] == allowed_id.as_str()).count(), 1);
    metric_reaches(admin, &written("stderr"), 4.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_fields_are_absent_and_hashed_fields_are_keyed_hashes() {
    let admin = free_port();
    let env = gateway(
        admin,
        "decision_log:\n  drop_fields: [tenant, path]\n  hash_fields: [subject]\n  hash_key: { value: \"audit-key\" }\n",
    )
    .await;
    let (status, id) = call(&env, "/v1/sandboxes", &env.admin()).await;
    assert_eq!(status, 200);
    let r = record_with_id(&env, &id).await;
    assert!(r.get("tenant").is_none() && r.get("path").is_none(), "dropped: {r}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"audit-key");
    let expected = hex::encode(aws_lc_rs::hmac::sign(&key, b"alice").as_ref());
    assert_eq!(r["subject"], expected, "HMAC-SHA256 of the subject: {r}");
    assert!(!r.to_string().contains("alice"), "{r}");
    // The same subject, the same hash: calls can still be correlated.
    let (_, id2) = call(&env, "/v1/sandboxes", &env.admin()).await;
    assert_eq!(record_with_id(&env, &id2).await["subject"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_leaves_out_allowed_decisions_but_keeps_every_denial() {
    let admin = free_port();
    let env = gateway(admin, "decision_log:\n  sample_allowed: 0.0\n").await;
    for _ in 0..3 {
        assert_eq!(call(&env, "/v1/sandboxes", &env.admin()).await.0, 200);
    }
    let (status, denied) = call(&env, "/v1/config", &env.user()).await;
    assert_eq!(status, 403);
    // Records are written in order: once the denial's is there, any record
    // of the allowed calls before it would be too.
    record_with_id(&env, &denied).await;
    assert!(records_for(&env, "/v1/sandboxes").is_empty(), "allowed decisions sampled out:\n{}", env.logs());
    assert_eq!(records(&env.logs()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_rotates_by_size_and_keeps_max_files() {
    let admin = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("decisions.log");
    let env = gateway(
        admin,
        &format!(
            "decision_log:\n  sink: {{ file: {{ path: \"{}\", max_bytes: 4000, max_files: 2 }} }}\n",
            path.display()
        ),
    )
    .await;
    let token = env.admin();
    let mut last = String::new();
    for _ in 0..60 {
        let (status, id) = call(&env, "/v1/sandboxes", &token).await;
        assert_eq!(status, 200);
        last = id;
    }
    metric_reaches(admin, &written("file"), 60.0).await;
    assert_eq!(metric(admin, &dropped("file")).await, 0.0);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["decisions.log", "decisions.log.1", "decisions.log.2"], "rotated, at most 2 kept");
    for name in &names {
        let text = std::fs::read_to_string(dir.path().join(name)).expect("read");
        assert!(text.len() <= 4000, "{name}: {} bytes", text.len());
        let lines = records(&text);
        assert_eq!(lines.len(), text.lines().count(), "{name}: whole JSON lines only");
        assert!(!lines.is_empty(), "{name} is empty");
    }
    let current = records(&std::fs::read_to_string(&path).expect("read"));
    assert_eq!(current.last().map(|r| r["decision_id"].clone()), Some(Value::from(last)), "newest in the current file");
    assert!(records(&env.logs()).is_empty(), "the file sink replaces stderr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_drops_and_counts_and_calls_still_succeed() {
    let admin = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("decisions.log");
    // Every write to /dev/full fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
    let env = gateway(
        admin,
        &format!("decision_log:\n  sink: {{ file: {{ path: \"{}\", max_bytes: 100000 }} }}\n", path.display()),
    )
    .await;
    let token = env.admin();
    for _ in 0..20 {
        assert_eq!(call(&env, "/v1/sandboxes", &token).await.0, 200);
    }
    metric_reaches(admin, &dropped("file"), 20.0).await;
    assert_eq!(metric(admin, &written("file")).await, 0.0);
    // The disk has room again: the sink reopens the file and writes.
    std::fs::remove_file(&path).expect("unlink");
    let (_, id) = call(&env, "/v1/sandboxes", &token).await;
    let found = eventually(10, || {
        let text = std::fs::read_to_string(&path).ok()?;
        records(&text).into_iter().find(|r| r["decision_id"] == id.as_str())
    })
    .await;
    assert!(found.is_some(), "no record written after the disk recovered:\n{}", env.logs());
}

/// How the in-test decision-log receiver answers.
const UP: u8 = 0;
const FAIL_500: u8 = 1;
const SLOW: u8 = 2;

/// An OPA-style decision-log receiver: counts POSTs, keeps the records of
/// those it accepts and the `authorization` header it saw.
#[derive(Clone, Default)]
struct Receiver {
    mode: Arc<AtomicU8>,
    posts: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Value>>>,
    authorization: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    async fn serve(&self, addr: SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the receiver");
        let me = self.clone();
        let app = axum::Router::new().route(
            "/logs",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let me = me.clone();
                async move {
                    me.posts.fetch_add(1, Ordering::SeqCst);
                    *me.authorization.lock().await =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    match me.mode.load(Ordering::SeqCst) {
                        FAIL_500 => return http::StatusCode::INTERNAL_SERVER_ERROR,
                        SLOW => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            return http::StatusCode::OK;
                        }
                        _ => {}
                    }
                    let Ok(Value::Array(batch)) = serde_json::from_slice::<Value>(&body) else {
                        return http::StatusCode::BAD_REQUEST;
                    };
                    me.records.lock().await.extend(batch);
                    http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    async fn has(&self, id: &str) -> bool {
        self.records.lock().await.iter().any(|r| r["decision_id"] == id)
    }
}

fn http_sink(receiver: SocketAddr, batch_interval_ms: u64) -> String {
    format!(
        "decision_log:\n  sink:\n    http:\n      url: \"http://{receiver}/logs\"\n      batch_size: 5\n      batch_interval_ms: \
         {batch_interval_ms}\n      timeout_ms: 300\n      max_retries: 1\n      retry_base_ms: 50\n      bearer_token: {{ \
         value: \"sink-token\" }}\n"
    )
}

/// Makes `n` calls that must succeed; the last one's decision id.
async fn calls_succeed(env: &Env, n: usize) -> String {
    let token = env.admin();
    let mut id = String::new();
    for _ in 0..n {
        let (status, got) = call(env, "/v1/sandboxes", &token).await;
        assert_eq!(status, 200, "a call failed while the sink was failing:\n{}", env.logs());
        id = got;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_down_slow_or_failing_never_fails_calls_and_delivers_once_it_recovers() {
    let admin = free_port();
    // Nothing listens there yet: connection refused.
    let addr = free_port();
    let env = gateway(admin, &http_sink(addr, 100)).await;
    let receiver = Receiver::default();

    // Down.
    calls_succeed(&env, 5).await;
    let down = metric_reaches(admin, &dropped("http"), 5.0).await;
    metric_reaches(admin, &retried("http"), 5.0).await;

    // Up, but answering 500: retried, then dropped.
    receiver.mode.store(FAIL_500, Ordering::SeqCst);
    receiver.serve(addr).await;
    calls_succeed(&env, 5).await;
    let failing = metric_reaches(admin, &dropped("http"), down + 5.0).await;
    assert!(receiver.posts.load(Ordering::SeqCst) >= 2, "a batch and its retry reached the receiver");
    assert!(receiver.records.lock().await.is_empty());

    // Slower than the sink's timeout: each attempt times out; dropped.
    receiver.mode.store(SLOW, Ordering::SeqCst);
    calls_succeed(&env, 5).await;
    metric_reaches(admin, &dropped("http"), failing + 5.0).await;

    // Recovered: batches arrive, with the bearer token.
    receiver.mode.store(UP, Ordering::SeqCst);
    let before = metric(admin, &written("http")).await;
    let id = calls_succeed(&env, 7).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !receiver.has(&id).await {
        assert!(Instant::now() < deadline, "the receiver never got {id}:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    metric_reaches(admin, &written("http"), before + 7.0).await;
    assert_eq!(receiver.authorization.lock().await.as_deref(), Some("Bearer sink-token"));
    let got = receiver.records.lock().await.clone();
    let r = got.iter().find(|r| r["decision_id"] == id.as_str()).expect("the record");
    assert_eq!(r["outcome"], "allow");
    assert_eq!(r["subject"], "alice");
    assert!(!env.logs().contains("sink-token"), "the sink's token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_sends_what_it_holds_at_shutdown() {
    let admin = free_port();
    let addr = free_port();
    let receiver = Receiver::default();
    receiver.serve(addr).await;
    // A batch that would wait a minute to fill.
    let env = gateway(admin, &http_sink(addr, 60_000).replace("batch_size: 5", "batch_size: 1000")).await;
    let id = calls_succeed(&env, 3).await;
    assert!(!receiver.has(&id).await, "nothing sent before the batch is due");
    let status =
        std::process::Command::new("kill").args(["-TERM", &env.pid().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !receiver.has(&id).await {
        assert!(Instant::now() < deadline, "the held batch was not sent at shutdown:\n{}", env.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.records.lock().await.len(), 3, "each call once");
}
