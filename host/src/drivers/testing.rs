//! In-process drivers on real Unix sockets, for tests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use wasmgate_proto::credentials::credentials_driver_server::{CredentialsDriver, CredentialsDriverServer};
use wasmgate_proto::credentials::{
    CredentialInfo, ListCredentialsRequest, ListCredentialsResponse, ResolveCredentialRequest,
    ResolveCredentialResponse,
};

use crate::config::{CredentialCacheConfig, DriverConfig, RetryConfig};

/// A credentials driver that counts calls. It knows the names in `known`;
/// `token-N` is the N-th resolve's token; it answers after `delay_ms`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountingDriver {
    pub resolves: Arc<AtomicUsize>,
    pub lists: Arc<AtomicUsize>,
    pub delay_ms: Arc<AtomicU64>,
    /// Lifetime of each token, ms; 0 answers `expires_at_ms = 0`.
    pub lifetime_ms: Arc<AtomicI64>,
    pub known: Arc<Vec<String>>,
}

impl CountingDriver {
    pub fn new(known: &[&str], lifetime_ms: i64) -> Self {
        Self {
            known: Arc::new(known.iter().map(|s| (*s).to_owned()).collect()),
            lifetime_ms: Arc::new(AtomicI64::new(lifetime_ms)),
            ..Self::default()
        }
    }

    pub fn with_delay(self, ms: u64) -> Self {
        self.delay_ms.store(ms, Ordering::SeqCst);
        self
    }

    pub fn resolves(&self) -> usize {
        self.resolves.load(Ordering::SeqCst)
    }

    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    async fn pause(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

#[tonic::async_trait]
impl CredentialsDriver for CountingDriver {
    async fn resolve_credential(
        &self,
        request: Request<ResolveCredentialRequest>,
    ) -> Result<Response<ResolveCredentialResponse>, Status> {
        let n = self.resolves.fetch_add(1, Ordering::SeqCst) + 1;
        self.pause().await;
        let name = request.into_inner().name;
        if !self.known.contains(&name) {
            return Err(Status::not_found("unknown credential"));
        }
        let lifetime = self.lifetime_ms.load(Ordering::SeqCst);
        let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
        Ok(Response::new(ResolveCredentialResponse {
            token: format!("token-{n}"),
            expires_at_ms: if lifetime == 0 { 0 } else { now + lifetime },
            token_type: "Bearer".into(),
        }))
    }

    async fn list_credentials(
        &self,
        _request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.pause().await;
        let credentials =
            self.known.iter().map(|n| CredentialInfo { name: n.clone(), scopes: vec![format!("{n}.read")] }).collect();
        Ok(Response::new(ListCredentialsResponse { credentials }))
    }
}

/// A server on a Unix socket; stops when dropped.
#[derive(Debug)]
pub(crate) struct TestServer {
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `driver` and gRPC health on `path`.
    pub async fn serve(path: &Path, driver: CountingDriver) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(CredentialsDriverServer::new(driver))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { stop: Some(stop), done: Some(done) }
    }

    /// A socket that accepts connections and never answers.
    pub fn hung(path: &Path) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        let done = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        Self { stop: None, done: Some(done) }
    }

    /// Stops serving and closes open connections.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.abort();
            let _ = d.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(d) = &self.done {
            d.abort();
        }
    }
}

/// A driver config for `socket` with short test timings.
pub(crate) fn driver_config(socket: &Path, timeout_ms: u64) -> DriverConfig {
    DriverConfig {
        socket: socket.to_owned(),
        timeout_ms,
        connect: RetryConfig { attempts: 3, interval_ms: 20, max_backoff_ms: 100 },
        health_interval_ms: 200,
        required: true,
    }
}

/// Cache settings for tests.
pub(crate) fn cache_config(skew_ms: u64, ahead_ms: u64, default_ttl_ms: u64) -> CredentialCacheConfig {
    CredentialCacheConfig {
        refresh_skew_ms: skew_ms,
        refresh_ahead_ms: ahead_ms,
        default_ttl_ms,
        catalogue_ttl_ms: 300,
    }
}

/// A fresh temp dir and a socket path in it.
pub(crate) fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driver.sock");
    (dir, path)
}

/// Polls `f` every 10 ms until true, for at most 5 s.
pub(crate) async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
