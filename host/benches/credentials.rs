//! Credential resolution on the request path: a warm-cache
//! `CredentialResolver::resolve` plus building the upstream header value.
//!
//! A minimal credentials driver serves on a Unix socket inside the benchmark;
//! after the first call every iteration is a cache hit (target ≤ 5 µs).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use wasmgate::config::{CredentialCacheConfig, DriverConfig, RetryConfig};
use wasmgate::credentials::CredentialResolver;
use wasmgate::drivers::Driver;
use wasmgate::identity::CredentialUse;
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
        Ok(Response::new(ListCredentialsResponse { credentials: vec![] }))
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
        let resolver = CredentialResolver::new(Driver::start("credentials", &cfg), &cache);
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
