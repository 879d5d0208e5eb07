//! Hot-swap latency of the real binary: the time from a component file
//! being renamed into the plugin folder to the first call answered by the
//! new version, measured by a client calling in a tight loop.
//!
//! Two scenarios, side by side in one run, each swapping a Rust
//! claims-mapper between two versions (the `versioned_mapper` fixture with
//! its version byte patched):
//! - **cold**: no precompile cache; every swap compiles the component;
//! - **warm cache**: `plugins.cache_dir` set and both versions already
//!   compiled once, so every swap loads the compiled artifact from disk.
//!
//! Run: `cargo bench -p wasmgate --bench swap` (optionally `-- SWAPS`).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmgate::demo::{DEMO_AUDIENCE, DevClaims, DevIssuer};

const SECRET: &str = "bench-sandbox-secret-0123456789abcdef";

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn versioned_mapper(version: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(wasmgate::plugins::fixture_path("versioned_mapper")).expect("fixture");
    let marker = b"WASMGATE-FIXTURE-VERSION:A";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("marker");
    bytes[at + marker.len() - 1] = version;
    bytes
}

struct Gateway {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(issuer: &DevIssuer, socket: &Path, plugins: &Path, cache: Option<&Path>, config_dir: &Path) -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_port();
    let mut yaml = wasmgate::demo::demo_config(addr, issuer.issuer(), socket, SECRET)
        .replace("plugin: builtin:oidc-claims-mapper", "plugin: mapper.wasm");
    let cache_line = cache.map(|c| format!("  cache_dir: \"{}\"\n", c.display())).unwrap_or_default();
    yaml = yaml.replacen("policy:", &format!("plugins:\n  dir: \"{}\"\n{cache_line}policy:", plugins.display()), 1);
    let cfg = config_dir.join("wasmgate.yaml");
    std::fs::write(&cfg, yaml).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("WASMGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wasmgate");
    let gw = Gateway { child, addr, _dir: dir };
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.get(format!("http://{addr}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "gateway not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw
}

async fn observed(c: &reqwest::Client, gw: &Gateway, token: &str) -> Value {
    let r = c.get(format!("http://{}/v1/caller", gw.addr)).bearer_auth(token).send().await.expect("call");
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.expect("json")["identity_headers"].clone()
}

fn version(headers: &Value) -> Option<char> {
    headers["x-wasmgate-roles"].as_str()?.split(',').find_map(|r| r.strip_prefix("version-"))?.chars().next()
}

/// Swaps `swaps` times and returns each write→first-new-answer latency.
async fn measure(
    c: &reqwest::Client,
    gw: &Gateway,
    token: &str,
    swaps: usize,
    mut change: impl FnMut(usize),
    is_new: impl Fn(usize, &Value) -> bool,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(swaps);
    for i in 0..swaps {
        // Let the watcher go quiet so each swap is measured on its own.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let written = Instant::now();
        change(i);
        loop {
            if is_new(i, &observed(c, gw, token).await) {
                break;
            }
            assert!(written.elapsed() < Duration::from_secs(30), "swap {i} never became live");
        }
        out.push(written.elapsed());
    }
    out
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} n={:<3} median {:>7.1} ms   p90 {:>7.1} ms   max {:>7.1} ms",
        v.len(),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
        ms(v[v.len() - 1])
    );
}

#[tokio::main]
async fn main() {
    let swaps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let work = tempfile::tempdir().expect("tempdir");
    let socket = work.path().join("driver.sock");
    let listener = sandbox_driver::bind(&socket).expect("driver socket");
    tokio::spawn(async move {
        let _ = sandbox_driver::serve(listener, std::future::pending()).await;
    });
    let issuer = DevIssuer::start().await.expect("issuer");
    let token = issuer
        .mint(&DevClaims {
            subject: "bench",
            audience: DEMO_AUDIENCE,
            roles: &["user"],
            scope: "sandbox.read",
            tenant: "acme",
            ttl_seconds: 3600,
        })
        .expect("token");
    let c = reqwest::Client::new();
    let versions = [versioned_mapper(b'A'), versioned_mapper(b'B')];
    let next = |i: usize| &versions[(i + 1) % 2];
    let expect = |i: usize| if i.is_multiple_of(2) { 'B' } else { 'A' };

    // Cold: no cache, every swap compiles.
    let plugins = tempfile::tempdir().expect("plugins");
    put(plugins.path(), "mapper.wasm", &versions[0]);
    let cfg_dir = tempfile::tempdir().expect("cfg");
    let gw = start(&issuer, &socket, plugins.path(), None, cfg_dir.path()).await;
    assert_eq!(version(&observed(&c, &gw, &token).await), Some('A'));
    let cold = measure(
        &c,
        &gw,
        &token,
        swaps,
        |i| put(plugins.path(), "mapper.wasm", next(i)),
        |i, h| version(h) == Some(expect(i)),
    )
    .await;
    drop(gw);

    // Warm cache: both versions compiled once before measuring.
    let plugins = tempfile::tempdir().expect("plugins");
    let cache = tempfile::tempdir().expect("cache");
    let cache_dir = cache.path().join("c");
    put(plugins.path(), "mapper.wasm", &versions[0]);
    let gw = start(&issuer, &socket, plugins.path(), Some(&cache_dir), cfg_dir.path()).await;
    let _ = measure(
        &c,
        &gw,
        &token,
        2,
        |i| put(plugins.path(), "mapper.wasm", next(i)),
        |i, h| version(h) == Some(expect(i)),
    )
    .await;
    let warm = measure(
        &c,
        &gw,
        &token,
        swaps,
        |i| put(plugins.path(), "mapper.wasm", next(i)),
        |i, h| version(h) == Some(expect(i)),
    )
    .await;
    drop(gw);

    println!("hot swap, write → first call answered by the new version ({swaps} swaps each, real binary):");
    report("cold (compile on every swap)", cold);
    report("warm precompile cache", warm);
    let size = std::fs::metadata(wasmgate::plugins::fixture_path("versioned_mapper")).map(|m| m.len()).unwrap_or(0);
    println!("component: versioned_mapper.wasm, {size} bytes");
}
