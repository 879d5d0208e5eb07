//! Credential injection on the request path, with a warm cache:
//! - `warm_resolve_and_header`: `CredentialResolver::resolve` plus building
//!   the upstream header value;
//! - `injection_step`: the whole pipeline step: the cached catalogue, the
//!   embedded credential policy choosing (one WebAssembly call), resolve and
//!   header value (target ≤ 5 µs).
//!
//! A minimal credentials driver serves on a Unix socket inside the benchmark;
//! after the first call every iteration is a cache hit.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeMap;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use wasmgate::config::{CredentialCacheConfig, DriverConfig, RetryConfig};
use wasmgate::credentials::CredentialResolver;
use wasmgate::drivers::Driver;

use wasmgate::config::PluginsConfig;
use wasmgate::identity::{CallInfo, CredentialUse, Principal, Protocol};
use wasmgate::plugins::{Binding, PluginEngine, builtin_bytes};
use wasmgate_proto::credentials::credentials_driver_server::{CredentialsDriver, CredentialsDriverServer};
use wasmgate_proto::credentials::{
    ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest, ResolveCredentialResponse,
};

struct OneToken;

#[tonic::async_trait]
impl CredentialsDriver for OneToken {
    async fn resolve_credential(
        &self,
        _request: Request<ResolveCredentialRequest>,
    ) -> Result<Response<ResolveCredentialResponse>, Status> {
        Ok(Response::new(ResolveCredentialResponse {
            token: "ghp_".to_owned() + &"x".repeat(36),
            expires_at_ms: 0,
            token_type: "Bearer".into(),
        }))
    }

    async fn list_credentials(
        &self,
        _request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        Ok(Response::new(ListCredentialsResponse {
            credentials: vec![wasmgate_proto::credentials::CredentialInfo { name: "github".into(), scopes: vec![] }],
        }))
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let socket: PathBuf = dir.path().join("credentials.sock");
    let resolver = rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CredentialsDriverServer::new(OneToken))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        let cfg = DriverConfig {
            socket: socket.clone(),
            timeout_ms: 1_000,
            connect: RetryConfig::default(),
            health_interval_ms: 5_000,
            required: true,
        };
        let cache = CredentialCacheConfig { default_ttl_ms: 3_600_000, ..CredentialCacheConfig::default() };
        let tasks = wasmgate::tasks::Tasks::new();
        let driver = Driver::new("credentials", &cfg);
        driver.start(&tasks);
        let resolver = CredentialResolver::new(driver, &cache);
        resolver.start(&tasks);
        resolver.resolve("github").await.expect("first resolve");
        resolver
    });
    let use_ = CredentialUse { credential: "github".into(), header: "authorization".into(), prefix: "Bearer ".into() };

    let mut g = c.benchmark_group("credentials");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("warm_resolve_and_header", |b| {
        b.to_async(&rt).iter(|| async {
            let cred = resolver.resolve(black_box("github")).await.expect("resolve");
            cred.header_value(black_box(&use_)).expect("header")
        })
    });

    // The whole step as the pipeline runs it.
    let engine = PluginEngine::new(&PluginsConfig::default()).expect("engine");
    let plugin = rt
        .block_on(engine.load("policy", builtin_bytes("default-credential-policy").expect("embedded")))
        .expect("loads");
    let settings: BTreeMap<String, serde_json::Value> =
        [("rules".to_owned(), serde_json::json!([{ "match": "/v1/*", "credential": "github" }]))].into();
    let policy = Binding::new(&engine, plugin, &settings);
    let call = CallInfo {
        protocol: Protocol::Http,
        http_method: "GET".into(),
        path: "/v1/repos".into(),
        grpc_service: String::new(),
        grpc_method: String::new(),
        route: "api".into(),
        authority: "gw".into(),
    };
    let principal = Principal { subject: "alice".into(), tenant: Some("acme".into()), ..Principal::default() };
    g.bench_function("injection_step", |b| {
        b.to_async(&rt).iter(|| async {
            let catalogue = resolver.catalogue().await.expect("catalogue");
            let uses = policy.select_credentials(&call, Some(&principal), &catalogue).await.expect("policy");
            let mut out = Vec::with_capacity(uses.len());
            for u in &uses {
                let cred = resolver.resolve(&u.credential).await.expect("resolve");
                out.push(cred.header_value(u).expect("header"));
            }
            assert_eq!(out.len(), 1);
            out
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
